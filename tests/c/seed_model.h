/* The seed network (20 -> 13 ReLU -> 8 sigmoid -> 3, cross-entropy) built through the C API, shared by
 * the reference test and the threads test. Every function stops the test on the first failure. */
#ifndef SEED_MODEL_H
#define SEED_MODEL_H

#include "bp_test.h"

enum { SEED_N = 500, SEED_IN = 20, SEED_H1 = 13, SEED_H2 = 8, SEED_OUT = 3 };

typedef struct {
    bp_graph *g;
    bp_tensor X, y, W1, W2, W3, b3;
} seed_model;

static inline double seed_kaiming_bound(int fan_in) {
    double a = sqrt(5.0);
    double gain = sqrt(2.0 / (1.0 + a * a));
    return sqrt(3.0) * (gain / sqrt((double)fan_in));
}

static inline bp_tensor seed_param(bp_graph *g, const int64_t *dims, size_t ndim, double bound) {
    bp_tensor p;
    OK(bp_tensor_rand(g, BP_DTYPE_F32, dims, ndim, -bound, bound, &p));
    OK(bp_tensor_set_persistent(g, p, true));
    OK(bp_tensor_set_requires_grad(g, p, true));
    return p;
}

/* torch.manual_seed(212); X = rand(500, 20) * 100; y = randint(0, 3, (500,)); then the layers in order. */
static inline void seed_init(seed_model *m) {
    const int64_t xd[2] = {SEED_N, SEED_IN}, yd[1] = {SEED_N};
    const int64_t w1[2] = {SEED_H1, SEED_IN}, w2[2] = {SEED_H2, SEED_H1}, w3[2] = {SEED_OUT, SEED_H2}, b3[1] = {SEED_OUT};
    bp_tensor x01;
    OK(bp_graph_new(&m->g));
    OK(bp_graph_manual_seed(m->g, 212));
    OK(bp_tensor_rand(m->g, BP_DTYPE_F32, xd, 2, 0.0, 1.0, &x01));
    OK(bp_mul_scalar(m->g, x01, 100.0, &m->X));
    OK(bp_tensor_randint(m->g, 0, 3, yd, 1, &m->y));
    OK(bp_tensor_set_persistent(m->g, m->X, true));
    OK(bp_tensor_set_persistent(m->g, m->y, true));
    m->W1 = seed_param(m->g, w1, 2, seed_kaiming_bound(SEED_IN));
    m->W2 = seed_param(m->g, w2, 2, seed_kaiming_bound(SEED_H1));
    m->W3 = seed_param(m->g, w3, 2, seed_kaiming_bound(SEED_H2));
    m->b3 = seed_param(m->g, b3, 1, 1.0 / sqrt((double)SEED_H2));
}

/* The forward pass; the intermediates are written when the pointers are not NULL. */
static inline bp_tensor seed_forward(seed_model *m, bp_tensor *h1_out, bp_tensor *h2_out, bp_tensor *z_out) {
    bp_tensor a, h1, b, h2, z, loss;
    OK(bp_linear(m->g, m->X, m->W1, NULL, &a));
    OK(bp_relu(m->g, a, &h1));
    OK(bp_linear(m->g, h1, m->W2, NULL, &b));
    OK(bp_sigmoid(m->g, b, &h2));
    OK(bp_linear(m->g, h2, m->W3, &m->b3, &z));
    OK(bp_cross_entropy(m->g, z, m->y, &loss));
    if (h1_out) *h1_out = h1;
    if (h2_out) *h2_out = h2;
    if (z_out) *z_out = z;
    return loss;
}

/* One SGD step (lr) after a fresh forward and backward; returns the loss before the update. */
static inline double seed_sgd_step(seed_model *m, double lr) {
    bp_tensor *params[4] = {&m->W1, &m->W2, &m->W3, &m->b3};
    double loss_value;
    for (int p = 0; p < 4; p++) OK(bp_zero_grad(m->g, *params[p]));
    OK(bp_graph_reset(m->g));
    bp_tensor loss = seed_forward(m, NULL, NULL, NULL);
    OK(bp_tensor_item(m->g, loss, &loss_value));
    OK(bp_backward(m->g, loss, NULL, false, false));
    OK(bp_graph_set_grad_enabled(m->g, false, NULL));
    for (int p = 0; p < 4; p++) {
        bp_tensor gp, scaled, updated;
        OK(bp_grad(m->g, *params[p], &gp));
        OK(bp_mul_scalar(m->g, gp, lr, &scaled));
        OK(bp_sub(m->g, *params[p], scaled, &updated));
        OK(bp_tensor_assign(m->g, *params[p], updated));
    }
    OK(bp_graph_set_grad_enabled(m->g, true, NULL));
    return loss_value;
}

#endif

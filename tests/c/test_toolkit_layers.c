/* The toolkit's remaining layers, initialisers, RMSprop and cosine annealing from C: each checked
 * against its defining formula. */
#include "bp_test.h"

/* Reads a float tensor of at most 256 elements. */
static size_t read_all(bp_graph *g, bp_tensor t, float *out) {
    size_t n = 0;
    OK(bp_tensor_numel(g, t, &n));
    CHECK(n <= 256);
    OK(bp_tensor_read_f32(g, t, out, n));
    return n;
}

static void test_embedding_picks_rows_of_its_weight(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_tensor w, idx, out;
    const int64_t ids[3] = {4, 0, 4}, id_dims[1] = {3};
    float wv[15], ov[9];
    size_t n = 0, k;
    OK(bp_graph_new(&g));
    OK(bp_model_new(&m));
    OK(bp_model_add_embedding(m, g, "emb", 5, 3));
    OK(bp_model_parameters(m, &w, 1, &n));
    CHECK(n == 1);
    read_all(g, w, wv);
    OK(bp_tensor_from_i64(g, ids, 3, id_dims, 1, &idx));
    OK(bp_model_forward(m, g, idx, &out));
    CHECK(read_all(g, out, ov) == 9);
    for (k = 0; k < 3; k++) {
        CHECK(ov[k] == wv[12 + k]);
        CHECK(ov[3 + k] == wv[k]);
        CHECK(ov[6 + k] == wv[12 + k]);
    }
    FAILS(bp_model_add_embedding(NULL, g, "x", 5, 3), BP_ERR_INVALID_ARGUMENT);
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_layer_norm_normalises_the_last_dimension(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_tensor x, y;
    const int64_t shape[1] = {4}, xdims[2] = {2, 4};
    const float xv[8] = {1, 2, 3, 4, -10, 0, 10, 20};
    float yv[8];
    int r, k;
    OK(bp_graph_new(&g));
    OK(bp_model_new(&m));
    OK(bp_model_add_layer_norm(m, g, "ln", shape, 1, 1e-5, true));
    OK(bp_tensor_from_f32(g, xv, 8, xdims, 2, &x));
    OK(bp_model_forward(m, g, x, &y));
    read_all(g, y, yv);
    for (r = 0; r < 2; r++) {
        double mean = 0, var = 0;
        for (k = 0; k < 4; k++) mean += yv[4 * r + k] / 4.0;
        for (k = 0; k < 4; k++) var += (yv[4 * r + k] - mean) * (yv[4 * r + k] - mean) / 4.0;
        CHECK_NEAR(mean, 0.0, 1e-6);
        CHECK_NEAR(var, 1.0, 1e-3);
    }
    /* (1 - 2.5) / sqrt(1.25 + 1e-5) */
    CHECK_NEAR(yv[0], -1.5 / sqrt(1.25 + 1e-5), 1e-5);
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_model_zero_grad_drops_every_gradient(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_tensor p[2], x, y, s, gr;
    const float xv[3] = {1, 2, 3};
    const int64_t xdims[2] = {1, 3};
    size_t n = 0, i;
    OK(bp_graph_new(&g));
    OK(bp_model_new(&m));
    OK(bp_model_add_linear(m, g, NULL, 3, 2, true));
    OK(bp_tensor_from_f32(g, xv, 3, xdims, 2, &x));
    OK(bp_model_forward(m, g, x, &y));
    OK(bp_sum(g, y, NULL, 0, false, &s));
    OK(bp_backward(g, s, NULL, false, false));
    OK(bp_model_parameters(m, p, 2, &n));
    CHECK(n == 2);
    for (i = 0; i < n; i++) {
        OK(bp_grad(g, p[i], &gr));
        CHECK(!bp_tensor_is_null(gr));
    }
    OK(bp_model_zero_grad(m, g));
    for (i = 0; i < n; i++) {
        OK(bp_grad(g, p[i], &gr));
        CHECK(bp_tensor_is_null(gr));
    }
    FAILS(bp_model_zero_grad(m, NULL), BP_ERR_INVALID_ARGUMENT);
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

static void test_initialisers_follow_their_bounds(void) {
    bp_graph *g = NULL;
    bp_tensor t, v;
    const int64_t dims[2] = {16, 12}, vdims[1] = {256};
    float a[256];
    size_t n, i;
    double bound, mean = 0, var = 0;
    OK(bp_graph_new(&g));
    OK(bp_graph_manual_seed(g, 1));
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 2, &t));

    OK(bp_init_uniform(g, t, -0.5, 0.25));
    n = read_all(g, t, a);
    for (i = 0; i < n; i++) CHECK(a[i] >= -0.5f && a[i] < 0.25f);
    CHECK(a[0] != a[1]);

    bound = 1.0 * sqrt(6.0 / (12 + 16)); /* fan_in 12, fan_out 16 */
    OK(bp_init_xavier(g, t, 1.0, false));
    read_all(g, t, a);
    for (i = 0; i < n; i++) CHECK(fabs(a[i]) <= bound);

    bound = sqrt(2.0) * sqrt(3.0 / 12); /* ReLU gain, fan_in */
    OK(bp_init_kaiming(g, t, BP_NONLINEARITY_RELU, 0.0, false, false));
    read_all(g, t, a);
    for (i = 0; i < n; i++) CHECK(fabs(a[i]) <= bound);
    bound = sqrt(2.0) * sqrt(3.0 / 16); /* fan_out */
    OK(bp_init_kaiming(g, t, BP_NONLINEARITY_RELU, 0.0, true, false));
    read_all(g, t, a);
    for (i = 0; i < n; i++) CHECK(fabs(a[i]) <= bound);

    OK(bp_tensor_new(g, BP_DTYPE_F32, vdims, 1, &v));
    OK(bp_init_normal(g, v, 2.0, 0.5));
    read_all(g, v, a);
    for (i = 0; i < 256; i++) mean += a[i] / 256.0;
    for (i = 0; i < 256; i++) var += (a[i] - mean) * (a[i] - mean) / 256.0;
    CHECK_NEAR(mean, 2.0, 0.15);
    CHECK_NEAR(sqrt(var), 0.5, 0.1);
    CHECK(bp_init_xavier(g, v, 1.0, false) != BP_OK); /* a 1-D tensor has no fan-in and fan-out */
    CHECK(bp_init_kaiming(g, v, 99, 0.0, false, false) != BP_OK);
    OK(bp_graph_free(g));
}

static void test_rmsprop_and_cosine_annealing_follow_pytorch(void) {
    bp_graph *g = NULL;
    bp_model *m = NULL;
    bp_optimizer *opt = NULL;
    bp_schedule *sched = NULL;
    bp_tensor p[1], x, y, s;
    const float xv[2] = {1.0f, -2.0f}, w0[2] = {0.5f, 0.25f};
    const int64_t xdims[2] = {1, 2};
    float w[2];
    size_t n = 0;
    double lr = 0;
    OK(bp_graph_new(&g));
    OK(bp_model_new(&m));
    OK(bp_model_add_linear(m, g, NULL, 2, 1, false));
    OK(bp_model_parameters(m, p, 1, &n));
    OK(bp_tensor_write_f32(g, p[0], w0, 2));
    OK(bp_optimizer_new_rmsprop(g, m, 0.01, 0.99, 1e-8, 0.0, 0.0, false, &opt));
    OK(bp_tensor_from_f32(g, xv, 2, xdims, 2, &x));
    OK(bp_model_forward(m, g, x, &y));
    OK(bp_sum(g, y, NULL, 0, false, &s));
    OK(bp_backward(g, s, NULL, false, false));
    OK(bp_optimizer_step(opt, g));
    OK(bp_tensor_read_f32(g, p[0], w, 2));
    /* grad = x; v = 0.01 g²; w -= 0.01 g / (sqrt(v) + eps) = w - 0.1 sign(g) */
    CHECK_NEAR(w[0], 0.5 - 0.01 * 1.0 / (sqrt(0.01) + 1e-8), 1e-6);
    CHECK_NEAR(w[1], 0.25 + 0.01 * 2.0 / (sqrt(0.04) + 1e-8), 1e-6);

    OK(bp_optimizer_set_lr(opt, 1.0));
    OK(bp_schedule_new_cosine(opt, 4, 0.0, &sched));
    OK(bp_schedule_step(sched, opt));
    OK(bp_optimizer_lr(opt, &lr));
    CHECK_NEAR(lr, (1.0 + cos(3.14159265358979323846 / 4)) / 2.0, 1e-12);
    OK(bp_schedule_step(sched, opt));
    OK(bp_schedule_step(sched, opt));
    OK(bp_schedule_step(sched, opt));
    OK(bp_optimizer_lr(opt, &lr));
    CHECK_NEAR(lr, 0.0, 1e-12);
    FAILS(bp_schedule_new_cosine(NULL, 4, 0.0, &sched), BP_ERR_INVALID_ARGUMENT);
    OK(bp_schedule_free(sched));
    OK(bp_optimizer_free(opt));
    OK(bp_model_free(m));
    OK(bp_graph_free(g));
}

int main(void) {
    test_embedding_picks_rows_of_its_weight();
    test_layer_norm_normalises_the_last_dimension();
    test_model_zero_grad_drops_every_gradient();
    test_initialisers_follow_their_bounds();
    test_rmsprop_and_cosine_annealing_follow_pytorch();
    return bp_test_finish("test_toolkit_layers");
}

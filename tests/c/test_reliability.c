/* Reliability promises seen from C (docs/RELIABILITY.md): anomaly mode names the op in forward and in
 * backward; a training step that exceeds the graph's memory limit fails with BP_ERR_OUT_OF_MEMORY in
 * forward or in backward and the graph stays usable (the same step succeeds after a reset with a
 * larger limit and gives the unlimited graph's numbers); shapes whose element count overflows are
 * rejected before any allocation. Runs under valgrind memcheck too (ctest label "memcheck"). */
#include "bp_test.h"

#include <stdint.h>

static const int64_t d4[1] = {4};

static void anomaly_in_forward_names_the_op(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    OK(bp_graph_set_anomaly_detection(g, true));
    const double v[4] = {1, 2, 0, 4};
    bp_tensor x = t64_param(g, v, 4, d4, 1), y = {0, 0, 0}, before = y;
    FAILS(bp_log(g, x, &y), BP_ERR_ANOMALY); /* log(0) = -inf */
    CHECK(strstr(bp_last_error_message(), "'log'") != NULL);
    CHECK(strstr(bp_last_error_message(), "forward") != NULL);
    CHECK(memcmp(&y, &before, sizeof y) == 0);
    OK(bp_exp(g, x, &y)); /* the graph stays usable */
    OK(bp_graph_free(g));
}

static void anomaly_in_backward_names_the_op(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    OK(bp_graph_set_anomaly_detection(g, true));
    const double v[4] = {1, 4, 0, 9};
    bp_tensor x = t64_param(g, v, 4, d4, 1), r, s;
    OK(bp_sqrt(g, x, &r)); /* sqrt(0) = 0 is finite; its gradient 1/(2·sqrt(0)) is not */
    OK(bp_sum(g, r, NULL, 0, false, &s));
    FAILS(bp_backward(g, s, NULL, false, false), BP_ERR_ANOMALY);
    CHECK(strstr(bp_last_error_message(), "backward of 'sqrt'") != NULL);
    /* With detection off the same backward runs and yields the infinity. */
    OK(bp_graph_reset(g));
    OK(bp_graph_set_anomaly_detection(g, false));
    x = t64_param(g, v, 4, d4, 1);
    OK(bp_sqrt(g, x, &r));
    OK(bp_sum(g, r, NULL, 0, false, &s));
    OK(bp_backward(g, s, NULL, false, false));
    bp_tensor gx;
    double gv[4];
    OK(bp_grad(g, x, &gx));
    OK(bp_tensor_read_f64(g, gx, gv, 4));
    CHECK(isinf(gv[2]));
    CHECK_NEAR(gv[1], 0.25, 1e-12);
    OK(bp_graph_free(g));
}

/* One step of a 32→32→1 MLP on a batch of 64 in graph g; returns the status of the first call that
 * fails (or BP_OK) and the loss and the gradient's first element on success. */
static bp_status mlp_step(bp_graph *g, bp_tensor w1, bp_tensor w2, bp_tensor x, double *loss, float *g0) {
    bp_status s;
    bp_tensor h, a, z, l, gw;
    if ((s = bp_matmul_t(g, x, w1, false, true, &h)) != BP_OK) return s;
    if ((s = bp_tanh(g, h, &a)) != BP_OK) return s;
    if ((s = bp_matmul_t(g, a, w2, false, true, &z)) != BP_OK) return s;
    if ((s = bp_mean(g, z, NULL, 0, false, &l)) != BP_OK) return s;
    if ((s = bp_backward(g, l, NULL, false, false)) != BP_OK) return s;
    if ((s = bp_tensor_item(g, l, loss)) != BP_OK) return s;
    if ((s = bp_grad(g, w1, &gw)) != BP_OK) return s;
    float buf[32 * 32];
    if ((s = bp_tensor_read_f32(g, gw, buf, 32 * 32)) != BP_OK) return s;
    *g0 = buf[0];
    return BP_OK;
}

static void setup_mlp(bp_graph *g, bp_tensor *w1, bp_tensor *w2, bp_tensor *x) {
    const int64_t dw1[2] = {32, 32}, dw2[2] = {1, 32}, dx[2] = {64, 32};
    OK(bp_graph_manual_seed(g, 7));
    OK(bp_tensor_rand(g, BP_DTYPE_F32, dw1, 2, -0.2, 0.2, w1));
    OK(bp_tensor_rand(g, BP_DTYPE_F32, dw2, 2, -0.2, 0.2, w2));
    OK(bp_tensor_randn(g, BP_DTYPE_F32, dx, 2, 0, 1, x));
    bp_tensor all[3] = {*w1, *w2, *x};
    for (int i = 0; i < 3; i++) OK(bp_tensor_set_persistent(g, all[i], true));
    OK(bp_tensor_set_requires_grad(g, *w1, true));
    OK(bp_tensor_set_requires_grad(g, *w2, true));
}

static void a_step_over_the_memory_limit_fails_cleanly_and_the_graph_stays_usable(void) {
    bp_graph *ref, *g;
    bp_tensor w1, w2, x;
    double want_loss, loss;
    float want_g0, g0;
    OK(bp_graph_new(&ref));
    setup_mlp(ref, &w1, &w2, &x);
    OK(mlp_step(ref, w1, w2, x, &want_loss, &want_g0));
    OK(bp_graph_free(ref));

    /* Limits from "parameters only" upwards: each fails in forward or in backward, cleanly. */
    OK(bp_graph_new(&g));
    setup_mlp(g, &w1, &w2, &x);
    size_t used = 0;
    OK(bp_graph_memory_used(g, &used, NULL));
    int failures = 0;
    for (size_t extra = 0; extra <= 64 * 32 * 4 * 3; extra += 64 * 32) {
        OK(bp_graph_reset(g));
        OK(bp_zero_grad(g, w1));
        OK(bp_zero_grad(g, w2));
        OK(bp_graph_set_memory_limit(g, used + extra));
        bp_status s = mlp_step(g, w1, w2, x, &loss, &g0);
        if (s != BP_OK) {
            CHECK(s == BP_ERR_OUT_OF_MEMORY);
            CHECK(strstr(bp_last_error_message(), "memory limit") != NULL);
            failures++;
        }
    }
    CHECK(failures > 1);
    /* The graph is still usable: without the limit the step gives the reference numbers exactly. */
    OK(bp_graph_reset(g));
    OK(bp_zero_grad(g, w1));
    OK(bp_zero_grad(g, w2));
    OK(bp_graph_set_memory_limit(g, SIZE_MAX));
    OK(mlp_step(g, w1, w2, x, &loss, &g0));
    CHECK(loss == want_loss);
    CHECK(g0 == want_g0);
    OK(bp_graph_free(g));
}

static void overflowing_shapes_are_rejected_before_allocating(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    const int64_t shapes[4][3] = {
        {INT64_MAX, 2, 1}, {INT64_C(1) << 32, INT64_C(1) << 32, 2}, {INT64_C(1) << 62, 4, 1}, {3, INT64_C(1) << 61, 8}};
    bp_tensor t = {0, 0, 0}, before = t, x;
    for (int i = 0; i < 4; i++) {
        bp_status s = bp_tensor_new(g, BP_DTYPE_F64, shapes[i], 3, &t);
        CHECK(s == BP_ERR_SHAPE_MISMATCH || s == BP_ERR_OUT_OF_MEMORY);
        CHECK(memcmp(&t, &before, sizeof t) == 0);
    }
    const double v[4] = {1, 2, 3, 4};
    x = t64(g, v, 4, d4, 1);
    const int64_t huge[3] = {INT64_C(1) << 40, INT64_C(1) << 40, 4};
    FAILS(bp_expand(g, x, huge, 3, &t), BP_ERR_SHAPE_MISMATCH);
    size_t used = 0;
    OK(bp_graph_memory_used(g, &used, NULL));
    CHECK(used == 4 * sizeof(double)); /* nothing was allocated for the refused shapes */
    OK(bp_graph_free(g));
}

int main(void) {
    anomaly_in_forward_names_the_op();
    anomaly_in_backward_names_the_op();
    a_step_over_the_memory_limit_fails_cleanly_and_the_graph_stays_usable();
    overflowing_shapes_are_rejected_before_allocating();
    return bp_test_finish("reliability");
}

/* Every autograd rule of the engine, pinned from C, with each of its error cases. */
#include "bp_test.h"

static const int64_t d3[1] = {3};
static const double xv[3] = {1, 2, 3};

static bp_graph *fresh(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    return g;
}

static double grad_at(bp_graph *g, bp_tensor t, size_t i) {
    bp_tensor gt;
    double v[8];
    size_t n;
    OK(bp_grad(g, t, &gt));
    CHECK(!bp_tensor_is_null(gt));
    if (bp_tensor_is_null(gt)) return NAN;
    OK(bp_tensor_numel(g, gt, &n));
    OK(bp_tensor_read_f64(g, gt, v, n));
    return v[i];
}

/* loss = sum(x * x) */
static bp_tensor square_sum(bp_graph *g, bp_tensor x) {
    bp_tensor y, s;
    OK(bp_mul(g, x, x, &y));
    OK(bp_sum(g, y, NULL, 0, false, &s));
    return s;
}

static void requires_grad_is_per_leaf_and_flows_to_results(void) {
    bp_graph *g = fresh();
    bp_tensor a = t64(g, xv, 3, d3, 1), b = t64_param(g, xv, 3, d3, 1), c, d;
    bool rg = true, leaf = false;
    const char *fn = "x";
    OK(bp_exp(g, a, &c));
    OK(bp_tensor_requires_grad(g, c, &rg));
    CHECK(!rg);
    OK(bp_tensor_is_leaf(g, c, &leaf));
    CHECK(leaf);
    OK(bp_tensor_grad_fn(g, c, &fn));
    CHECK(fn == NULL);
    OK(bp_add(g, a, b, &d));
    OK(bp_tensor_requires_grad(g, d, &rg));
    CHECK(rg);
    OK(bp_tensor_is_leaf(g, d, &leaf));
    CHECK(!leaf);
    OK(bp_tensor_grad_fn(g, d, &fn));
    CHECK(fn != NULL && strcmp(fn, "add") == 0);
    /* A leaf without a gradient yet reports the null handle. */
    bp_tensor gb = {1, 1, 1};
    OK(bp_grad(g, b, &gb));
    CHECK(bp_tensor_is_null(gb));
    /* Only floating-point leaves can require grad; only leaves can change the flag. */
    bp_tensor i;
    OK(bp_tensor_new(g, BP_DTYPE_I64, d3, 1, &i));
    FAILS(bp_tensor_set_requires_grad(g, i, true), BP_ERR_DTYPE);
    FAILS(bp_tensor_set_requires_grad(g, d, false), BP_ERR_AUTOGRAD);
    OK(bp_graph_free(g));
}

static void grad_accumulates_until_zeroed(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1);
    OK(bp_backward(g, square_sum(g, x), NULL, false, false));
    CHECK_NEAR(grad_at(g, x, 1), 4, 0);
    OK(bp_backward(g, square_sum(g, x), NULL, false, false));
    CHECK_NEAR(grad_at(g, x, 1), 8, 0);
    OK(bp_zero_grad(g, x));
    bp_tensor gx;
    OK(bp_grad(g, x, &gx));
    CHECK(bp_tensor_is_null(gx));
    OK(bp_backward(g, square_sum(g, x), NULL, false, false));
    CHECK_NEAR(grad_at(g, x, 2), 6, 0);
    OK(bp_graph_free(g));
}

static void non_leaf_grad_needs_retain_grad(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), h, h2, s, c, gh;
    OK(bp_mul_scalar(g, x, 2, &h));
    OK(bp_mul_scalar(g, x, 3, &h2));
    OK(bp_tensor_retain_grad(g, h2));
    OK(bp_add(g, h, h2, &c));
    OK(bp_sum(g, c, NULL, 0, false, &s));
    OK(bp_backward(g, s, NULL, false, false));
    FAILS(bp_grad(g, h, &gh), BP_ERR_AUTOGRAD);
    CHECK_NEAR(grad_at(g, h2, 0), 1, 0);
    CHECK_NEAR(grad_at(g, x, 0), 5, 0);
    bp_tensor plain = t64(g, xv, 3, d3, 1);
    FAILS(bp_tensor_retain_grad(g, plain), BP_ERR_AUTOGRAD);
    OK(bp_graph_free(g));
}

static void second_backward_needs_retain_graph(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1);
    bp_tensor s = square_sum(g, x);
    OK(bp_backward(g, s, NULL, true, false));
    OK(bp_backward(g, s, NULL, false, false)); /* the first one kept the saved values */
    CHECK_NEAR(grad_at(g, x, 0), 4, 0);
    FAILS(bp_backward(g, s, NULL, false, false), BP_ERR_AUTOGRAD);
    CHECK(strstr(bp_last_error_message(), "retain_graph") != NULL);
    OK(bp_graph_free(g));
}

static void non_scalar_root_needs_an_explicit_gradient(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), y, seed;
    const double w[3] = {1, 10, 100};
    OK(bp_mul(g, x, x, &y));
    FAILS(bp_backward(g, y, NULL, true, false), BP_ERR_AUTOGRAD);
    const int64_t d2[1] = {2};
    bp_tensor wrong = t64(g, w, 2, d2, 1);
    FAILS(bp_backward(g, y, &wrong, true, false), BP_ERR_SHAPE_MISMATCH);
    seed = t64(g, w, 3, d3, 1);
    float wf[3] = {1, 10, 100};
    bp_tensor seed32;
    OK(bp_tensor_from_f32(g, wf, 3, d3, 1, &seed32));
    FAILS(bp_backward(g, y, &seed32, true, false), BP_ERR_DTYPE);
    OK(bp_backward(g, y, &seed, false, false));
    CHECK_NEAR(grad_at(g, x, 1), 2 * 2 * 10, 0);
    CHECK_NEAR(grad_at(g, x, 2), 2 * 3 * 100, 0);
    /* A root that does not require grad cannot be differentiated. */
    bp_tensor plain = t64(g, xv, 1, NULL, 0);
    FAILS(bp_backward(g, plain, NULL, false, false), BP_ERR_AUTOGRAD);
    OK(bp_graph_free(g));
}

static void functional_grad_leaves_grad_alone_and_builds_higher_derivatives(void) {
    bp_graph *g = fresh();
    const double three = 3;
    bp_tensor x = t64_param(g, &three, 1, NULL, 0), y, dy, d2y, d3y, gx;
    double v = 0;
    OK(bp_pow(g, x, 3, &y));
    OK(bp_grad_of(g, &y, 1, &x, 1, NULL, 0, false, true, &dy, 1));
    OK(bp_tensor_item(g, dy, &v));
    CHECK_NEAR(v, 27, 1e-12); /* 3x^2 */
    OK(bp_grad_of(g, &dy, 1, &x, 1, NULL, 0, false, true, &d2y, 1));
    OK(bp_tensor_item(g, d2y, &v));
    CHECK_NEAR(v, 18, 1e-12); /* 6x */
    OK(bp_grad_of(g, &d2y, 1, &x, 1, NULL, 0, false, false, &d3y, 1));
    OK(bp_tensor_item(g, d3y, &v));
    CHECK_NEAR(v, 6, 1e-12);
    OK(bp_grad(g, x, &gx));
    CHECK(bp_tensor_is_null(gx)); /* .grad untouched */

    /* backward with create_graph: the accumulated gradient is differentiable. */
    bp_tensor z, gz, d2z;
    OK(bp_mul(g, x, x, &z));
    OK(bp_backward(g, z, NULL, false, true));
    OK(bp_grad(g, x, &gz));
    OK(bp_grad_of(g, &gz, 1, &x, 1, NULL, 0, false, false, &d2z, 1));
    OK(bp_tensor_item(g, d2z, &v));
    CHECK_NEAR(v, 2, 1e-12);

    /* grad_outputs weight the outputs; the null handle seeds 1. */
    bp_tensor w = t64(g, &three, 1, NULL, 0), outs[2], gos[2], gsum;
    bp_tensor null_handle = {0, 0, 0};
    OK(bp_mul_scalar(g, x, 2, &outs[0]));
    OK(bp_mul_scalar(g, x, 5, &outs[1]));
    gos[0] = w;
    gos[1] = null_handle;
    OK(bp_grad_of(g, outs, 2, &x, 1, gos, 2, false, false, &gsum, 1));
    OK(bp_tensor_item(g, gsum, &v));
    CHECK_NEAR(v, 2 * 3 + 5, 0);

    /* Errors: an input the output does not use, an input without requires_grad, bad lengths. */
    bp_tensor unused = t64_param(g, &three, 1, NULL, 0), plain = t64(g, &three, 1, NULL, 0), out[2];
    OK(bp_pow(g, x, 2, &y));
    FAILS(bp_grad_of(g, &y, 1, &unused, 1, NULL, 0, true, false, out, 1), BP_ERR_AUTOGRAD);
    FAILS(bp_grad_of(g, &y, 1, &plain, 1, NULL, 0, true, false, out, 1), BP_ERR_AUTOGRAD);
    FAILS(bp_grad_of(g, &y, 1, &x, 1, NULL, 0, true, false, out, 2), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_grad_of(g, &y, 1, &x, 1, gos, 2, true, false, out, 1), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_grad_of(g, &y, 0, &x, 1, NULL, 0, true, false, out, 1), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
}

static void no_grad_mode_records_nothing(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), y;
    bool prev = false, enabled = true, rg = true;
    size_t nodes_before, nodes_after;
    OK(bp_graph_node_count(g, &nodes_before));
    OK(bp_graph_set_grad_enabled(g, false, &prev));
    CHECK(prev);
    OK(bp_graph_is_grad_enabled(g, &enabled));
    CHECK(!enabled);
    OK(bp_exp(g, x, &y));
    OK(bp_tensor_requires_grad(g, y, &rg));
    CHECK(!rg);
    OK(bp_graph_node_count(g, &nodes_after));
    CHECK(nodes_after == nodes_before);
    FAILS(bp_backward(g, y, NULL, false, false), BP_ERR_AUTOGRAD);
    OK(bp_graph_set_grad_enabled(g, true, &prev));
    CHECK(!prev);
    OK(bp_exp(g, x, &y));
    OK(bp_tensor_requires_grad(g, y, &rg));
    CHECK(rg);
    OK(bp_graph_free(g));
}

static void detach_cuts_history_and_copies(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), y, d, s;
    bool rg = true, leaf = false;
    OK(bp_mul_scalar(g, x, 2, &y));
    OK(bp_detach(g, y, &d));
    OK(bp_tensor_requires_grad(g, d, &rg));
    CHECK(!rg);
    OK(bp_tensor_is_leaf(g, d, &leaf));
    CHECK(leaf);
    const double two_x[3] = {2, 4, 6}, other[3] = {9, 9, 9};
    check_values64(g, d, two_x, 3, 0, "detach values");
    OK(bp_tensor_write_f64(g, d, other, 3));
    check_values64(g, y, two_x, 3, 0, "detach copies: writing the copy leaves the original");
    /* x * detach(x): the detached factor is a constant, so d/dx = detach(x). */
    OK(bp_detach(g, x, &d));
    OK(bp_mul(g, x, d, &y));
    OK(bp_sum(g, y, NULL, 0, false, &s));
    OK(bp_backward(g, s, NULL, false, false));
    CHECK_NEAR(grad_at(g, x, 2), 3, 0);
    OK(bp_graph_free(g));
}

static void writing_a_saved_tensor_in_place_breaks_backward(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), e, s;
    OK(bp_exp(g, x, &e)); /* exp saves its output */
    OK(bp_sum(g, e, NULL, 0, false, &s));
    const double zeros[3] = {0, 0, 0};
    OK(bp_tensor_write_f64(g, e, zeros, 3));
    FAILS(bp_backward(g, s, NULL, false, false), BP_ERR_AUTOGRAD);
    CHECK(strstr(bp_last_error_message(), "inplace") != NULL);
    /* Writing an input that mul saved, likewise. */
    bp_tensor y = t64_param(g, xv, 3, d3, 1), p;
    OK(bp_mul(g, x, y, &p));
    OK(bp_sum(g, p, NULL, 0, false, &s));
    OK(bp_tensor_write_f64(g, y, zeros, 3));
    FAILS(bp_backward(g, s, NULL, false, false), BP_ERR_AUTOGRAD);
    OK(bp_graph_free(g));
}

static void freeing_a_saved_tensor_breaks_backward(void) {
    bp_graph *g = fresh();
    bp_tensor x = t64_param(g, xv, 3, d3, 1), w = t64(g, xv, 3, d3, 1), p, s;
    OK(bp_mul(g, x, w, &p)); /* mul saves w to compute d/dx */
    OK(bp_sum(g, p, NULL, 0, false, &s));
    OK(bp_tensor_free(g, w));
    FAILS(bp_backward(g, s, NULL, false, false), BP_ERR_AUTOGRAD);
    CHECK(strstr(bp_last_error_message(), "freed") != NULL);
    OK(bp_graph_free(g));
}

static void an_op_without_a_gradient_fails_by_name(void) {
    bp_graph *g = fresh();
    const int64_t d13[2] = {1, 3}, d1[1] = {1}, target[1] = {2};
    bp_tensor logits = t64_param(g, xv, 3, d13, 2), t, loss, gl, gsum, second;
    OK(bp_tensor_from_i64(g, target, 1, d1, 1, &t));
    OK(bp_cross_entropy(g, logits, t, &loss));
    OK(bp_grad_of(g, &loss, 1, &logits, 1, NULL, 0, false, true, &gl, 1));
    OK(bp_sum(g, gl, NULL, 0, false, &gsum));
    FAILS(bp_grad_of(g, &gsum, 1, &logits, 1, NULL, 0, false, false, &second, 1), BP_ERR_AUTOGRAD);
    CHECK(strstr(bp_last_error_message(), "cross_entropy_backward") != NULL);
    OK(bp_graph_free(g));
}

static void anomaly_detection_names_the_op(void) {
    bp_graph *g = fresh();
    const double neg[3] = {-1, 2, 3};
    bp_tensor x = t64_param(g, neg, 3, d3, 1), y;
    OK(bp_log(g, x, &y)); /* NaN is allowed while detection is off */
    OK(bp_graph_set_anomaly_detection(g, true));
    FAILS(bp_log(g, x, &y), BP_ERR_ANOMALY);
    CHECK(strstr(bp_last_error_message(), "log") != NULL);
    OK(bp_graph_set_anomaly_detection(g, false));
    OK(bp_graph_free(g));
}

static void reset_keeps_parameters_and_their_gradients(void) {
    bp_graph *g = fresh();
    bp_tensor w = t64_param(g, xv, 3, d3, 1), gw;
    OK(bp_tensor_set_persistent(g, w, true));
    OK(bp_backward(g, square_sum(g, w), NULL, false, false));
    OK(bp_graph_reset(g));
    CHECK_NEAR(grad_at(g, w, 2), 6, 0);
    size_t nodes = 1;
    OK(bp_graph_node_count(g, &nodes));
    CHECK(nodes == 0);
    /* After reset the parameter is a leaf again and a new step accumulates into the kept gradient. */
    OK(bp_backward(g, square_sum(g, w), NULL, false, false));
    CHECK_NEAR(grad_at(g, w, 2), 12, 0);
    OK(bp_grad(g, w, &gw));
    OK(bp_graph_free(g));
}

int main(void) {
    requires_grad_is_per_leaf_and_flows_to_results();
    grad_accumulates_until_zeroed();
    non_leaf_grad_needs_retain_grad();
    second_backward_needs_retain_graph();
    non_scalar_root_needs_an_explicit_gradient();
    functional_grad_leaves_grad_alone_and_builds_higher_derivatives();
    no_grad_mode_records_nothing();
    detach_cuts_history_and_copies();
    writing_a_saved_tensor_in_place_breaks_backward();
    freeing_a_saved_tensor_breaks_backward();
    an_op_without_a_gradient_fails_by_name();
    anomaly_detection_names_the_op();
    reset_keeps_parameters_and_their_gradients();
    return bp_test_finish("semantics");
}

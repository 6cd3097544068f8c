/* Reductions and softmax: forward values, keepdim shapes, gradients, error cases. */
#include "bp_test.h"

static const int64_t d23[2] = {2, 3};
static const double v[6] = {1, -2, 3, 4, 5, -6};

static bp_status op_sum_all(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_sum(g, in[0], NULL, 0, false, out); }
static bp_status op_sum_rows(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[1] = {-1};
    return bp_sum(g, in[0], d, 1, true, out);
}
static bp_status op_mean0(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[1] = {0};
    return bp_mean(g, in[0], d, 1, false, out);
}
static bp_status op_max1(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[1] = {1};
    return bp_max(g, in[0], d, 1, false, out);
}
static bp_status op_softmax(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_softmax(g, in[0], 1, out); }
static bp_status op_log_softmax(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_log_softmax(g, in[0], 0, out); }

int main(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor x = t64_param(g, v, 6, d23, 2), y;

    const double sum_all[1] = {5}, sum_rows[2] = {2, 3}, mean0[3] = {2.5, 1.5, -1.5}, max1[2] = {3, 5};
    const int64_t d21[2] = {2, 1};
    OK(op_sum_all(g, &x, &y));
    check_values64(g, y, sum_all, 1, 0, "sum all");
    check_dims(g, y, NULL, 0, "sum all is a scalar");
    OK(op_sum_rows(g, &x, &y));
    check_values64(g, y, sum_rows, 2, 0, "sum dim -1 keepdim");
    check_dims(g, y, d21, 2, "keepdim shape");
    OK(op_mean0(g, &x, &y));
    check_values64(g, y, mean0, 3, 1e-15, "mean dim 0");
    OK(op_max1(g, &x, &y));
    check_values64(g, y, max1, 2, 0, "max dim 1");

    /* Softmax rows sum to 1 and match exp(x)/sum(exp(x)). */
    double sm[6], lsm[6];
    for (int r = 0; r < 2; r++) {
        double s = 0;
        for (int c = 0; c < 3; c++) s += exp(v[r * 3 + c]);
        for (int c = 0; c < 3; c++) sm[r * 3 + c] = exp(v[r * 3 + c]) / s;
    }
    for (int c = 0; c < 3; c++) {
        double s = log(exp(v[c]) + exp(v[3 + c]));
        lsm[c] = v[c] - s;
        lsm[3 + c] = v[3 + c] - s;
    }
    OK(op_softmax(g, &x, &y));
    check_values64(g, y, sm, 6, 1e-14, "softmax dim 1");
    OK(op_log_softmax(g, &x, &y));
    check_values64(g, y, lsm, 6, 1e-14, "log_softmax dim 0");

    gradcheck(g, "sum all", op_sum_all, &x, 1);
    gradcheck(g, "sum keepdim", op_sum_rows, &x, 1);
    gradcheck(g, "mean", op_mean0, &x, 1);
    gradcheck(g, "max", op_max1, &x, 1);
    gradcheck(g, "softmax", op_softmax, &x, 1);
    gradcheck(g, "log_softmax", op_log_softmax, &x, 1);

    /* max splits the gradient evenly among ties (torch.amax). */
    const double ties[3] = {2, 2, 1}, half[3] = {0.5, 0.5, 0};
    const int64_t d3[1] = {3};
    bp_tensor t = t64_param(g, ties, 3, d3, 1), m, gt;
    OK(bp_max(g, t, NULL, 0, false, &m));
    OK(bp_backward(g, m, NULL, false, false));
    OK(bp_grad(g, t, &gt));
    check_values64(g, gt, half, 3, 0, "max ties");

    /* Errors: a dimension out of range, a repeated dimension, too many dimensions. */
    const int64_t bad[1] = {2}, twice[2] = {0, -2}, many[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    FAILS(bp_sum(g, x, bad, 1, false, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_sum(g, x, twice, 2, false, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_mean(g, x, many, 9, false, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_softmax(g, x, 5, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_sum(g, x, NULL, 1, false, &y), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
    return bp_test_finish("ops_reduce");
}

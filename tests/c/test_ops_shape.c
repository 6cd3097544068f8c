/* Shape ops: reshape (with -1), permute, transpose, expand, sum_to, concat, slice, slice_scatter:
 * forward values, gradients and error cases. */
#include "bp_test.h"

static const int64_t d23[2] = {2, 3};
static const double v[6] = {1, 2, 3, 4, 5, 6};

static bp_status op_reshape(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[2] = {3, -1};
    return bp_reshape(g, in[0], d, 2, out);
}
static bp_status op_permute(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t p[2] = {1, 0};
    return bp_permute(g, in[0], p, 2, out);
}
static bp_status op_transpose(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_transpose(g, in[0], 0, -1, out); }
static bp_status op_expand(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[3] = {4, 2, 3};
    return bp_expand(g, in[0], d, 3, out);
}
static bp_status op_sum_to(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[2] = {1, 3};
    return bp_sum_to(g, in[0], d, 2, out);
}
static bp_status op_concat(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_concat(g, in, 2, 0, out); }
static bp_status op_slice(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_slice(g, in[0], 1, 0, 3, 2, out); }
static bp_status op_slice_scatter(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[2] = {2, 7};
    return bp_slice_scatter(g, in[0], d, 2, 1, 1, 2, out);
}

int main(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor x = t64_param(g, v, 6, d23, 2), y;

    const int64_t d32[2] = {3, 2}, d423[3] = {4, 2, 3}, d13[2] = {1, 3}, d43[2] = {4, 3}, d22[2] = {2, 2}, d27[2] = {2, 7};
    const double tr[6] = {1, 4, 2, 5, 3, 6}, colsum[3] = {5, 7, 9}, sl[4] = {1, 3, 4, 6};
    const double sc[14] = {0, 1, 0, 2, 0, 3, 0, 0, 4, 0, 5, 0, 6, 0};
    OK(op_reshape(g, &x, &y));
    check_dims(g, y, d32, 2, "reshape -1");
    check_values64(g, y, v, 6, 0, "reshape keeps order");
    OK(op_permute(g, &x, &y));
    check_values64(g, y, tr, 6, 0, "permute");
    OK(op_transpose(g, &x, &y));
    check_values64(g, y, tr, 6, 0, "transpose");
    OK(op_expand(g, &x, &y));
    check_dims(g, y, d423, 3, "expand");
    OK(op_sum_to(g, &x, &y));
    check_dims(g, y, d13, 2, "sum_to");
    check_values64(g, y, colsum, 3, 0, "sum_to");
    bp_tensor pair[2] = {x, t64_param(g, v, 6, d23, 2)};
    OK(op_concat(g, pair, &y));
    check_dims(g, y, d43, 2, "concat");
    OK(op_slice(g, &x, &y));
    check_dims(g, y, d22, 2, "slice step 2");
    check_values64(g, y, sl, 4, 0, "slice");
    OK(op_slice_scatter(g, &x, &y));
    check_dims(g, y, d27, 2, "slice_scatter");
    check_values64(g, y, sc, 14, 0, "slice_scatter");

    /* expand and sum_to give the input itself when the shape already fits. */
    OK(bp_expand(g, x, d23, 2, &y));
    CHECK(memcmp(&x, &y, sizeof x) == 0);

    gradcheck(g, "reshape", op_reshape, &x, 1);
    gradcheck(g, "permute", op_permute, &x, 1);
    gradcheck(g, "transpose", op_transpose, &x, 1);
    gradcheck(g, "expand", op_expand, &x, 1);
    gradcheck(g, "sum_to", op_sum_to, &x, 1);
    gradcheck(g, "concat", op_concat, pair, 2);
    gradcheck(g, "slice", op_slice, &x, 1);
    gradcheck(g, "slice_scatter", op_slice_scatter, &x, 1);

    /* Errors. */
    const int64_t bad_numel[2] = {4, 2}, two_infer[2] = {-1, -1}, bad_perm[2] = {0, 0}, d5[1] = {5};
    FAILS(bp_reshape(g, x, bad_numel, 2, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_reshape(g, x, two_infer, 2, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_permute(g, x, bad_perm, 2, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_permute(g, x, bad_perm, 1, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_expand(g, x, d5, 1, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_slice(g, x, 1, 0, 3, 0, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_slice(g, x, 2, 0, 3, 1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_slice_scatter(g, x, d27, 2, 1, 6, 2, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_slice_scatter(g, x, d27, 2, 9, 0, 1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_slice_scatter(g, x, d27, 2, 1, -1, 1, &y), BP_ERR_INVALID_ARGUMENT);
    bp_tensor mismatched[2] = {x, t64(g, v, 6, d32, 2)};
    FAILS(bp_concat(g, mismatched, 2, 1, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_concat(g, NULL, 2, 0, &y), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
    return bp_test_finish("ops_shape");
}

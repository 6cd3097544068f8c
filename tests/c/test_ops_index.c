/* Indexing ops: index_select, index_add, gather, scatter_add: forward values, gradients (with respect
 * to the data; indices are int64 and take no gradient) and error cases. */
#include "bp_test.h"

static const int64_t d23[2] = {2, 3};
static const double v[6] = {1, 2, 3, 4, 5, 6};
static bp_tensor idx1, idx2; /* made in main, read by the ops below */

static bp_status op_index_select(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_index_select(g, in[0], 1, idx1, out); }
static bp_status op_index_add(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_index_add(g, in[0], -1, idx1, 4, out); }
static bp_status op_gather(bp_graph *g, const bp_tensor *in, bp_tensor *out) { return bp_gather(g, in[0], 1, idx2, out); }
static bp_status op_scatter_add(bp_graph *g, const bp_tensor *in, bp_tensor *out) {
    const int64_t d[2] = {2, 4};
    return bp_scatter_add(g, in[0], 1, idx2, d, 2, out);
}

int main(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    const int64_t i1[3] = {2, 0, 2}, i2[4] = {0, 0, 2, 1}, d3[1] = {3}, d22[2] = {2, 2};
    OK(bp_tensor_from_i64(g, i1, 3, d3, 1, &idx1));
    OK(bp_tensor_from_i64(g, i2, 4, d22, 2, &idx2));
    bp_tensor x = t64_param(g, v, 6, d23, 2), y;

    const double sel[6] = {3, 1, 3, 6, 4, 6};
    const double add[8] = {2, 0, 4, 0, 5, 0, 10, 0};
    const double gat[4] = {1, 1, 6, 5};
    OK(op_index_select(g, &x, &y));
    check_values64(g, y, sel, 6, 0, "index_select");
    OK(op_index_add(g, &x, &y));
    check_values64(g, y, add, 8, 0, "index_add");
    OK(op_gather(g, &x, &y));
    check_values64(g, y, gat, 4, 0, "gather");

    const double src[4] = {1, 2, 1, 2};
    bp_tensor s = t64_param(g, src, 4, d22, 2);
    OK(op_scatter_add(g, &s, &y));
    /* row 0: src 1 and 2 both land at column 0; row 1: 1 at column 2, 2 at column 1 */
    const double sca2[8] = {3, 0, 0, 0, 0, 2, 1, 0};
    check_values64(g, y, sca2, 8, 0, "scatter_add");

    gradcheck(g, "index_select", op_index_select, &x, 1);
    gradcheck(g, "index_add", op_index_add, &x, 1);
    gradcheck(g, "gather", op_gather, &x, 1);
    gradcheck(g, "scatter_add", op_scatter_add, &s, 1);

    /* Errors: out-of-range and negative indices, float indices, a dimension out of range. */
    const int64_t bad[3] = {0, 3, 1}, neg[3] = {0, -1, 1};
    bp_tensor badi, negi, fidx;
    OK(bp_tensor_from_i64(g, bad, 3, d3, 1, &badi));
    OK(bp_tensor_from_i64(g, neg, 3, d3, 1, &negi));
    OK(bp_tensor_new(g, BP_DTYPE_F64, d3, 1, &fidx));
    FAILS(bp_index_select(g, x, 1, badi, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_index_select(g, x, 1, negi, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_index_select(g, x, 1, fidx, &y), BP_ERR_DTYPE);
    FAILS(bp_index_select(g, x, 2, idx1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_index_add(g, x, 1, idx1, 2, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_index_add(g, x, 0, idx1, 4, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_index_add(g, x, 5, idx1, 4, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_gather(g, x, 1, idx1, &y), BP_ERR_SHAPE_MISMATCH);
    const int64_t dsmall[2] = {1, 4};
    FAILS(bp_scatter_add(g, s, 1, idx2, dsmall, 2, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_scatter_add(g, s, 3, idx2, d22, 2, &y), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
    return bp_test_finish("ops_index");
}

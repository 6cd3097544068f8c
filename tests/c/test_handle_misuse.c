/* Misuse is answered with an error, never undefined behaviour or an abort: NULL pointers, misaligned
 * outputs, stale, forged, null and cross-graph tensor handles, freed and forged graph pointers, bad
 * enum integers and shapes, and a panic inside the library. Failed calls leave their outputs alone. */
#include "bp_test.h"

static const int64_t d3[1] = {3};

static void null_pointers(void) {
    bp_graph *g;
    bp_tensor t, sentinel = {77, 77, 77};
    size_t n = 0, count_before, count_after;
    OK(bp_graph_new(&g));
    OK(bp_tensor_new(g, BP_DTYPE_F32, d3, 1, &t));
    FAILS(bp_graph_new(NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_new(NULL, BP_DTYPE_F32, d3, 1, &t), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_graph_reset(NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_numel(NULL, t, &n), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_numel(g, t, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, NULL, 1, &t), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_from_f32(g, NULL, 3, d3, 1, &t), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_read_f32(g, t, NULL, 3), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_write_f32(g, t, NULL, 3), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_shape(g, t, NULL, 8, &n), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_graph_to_dot(g, t, NULL, 0, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_grad(g, t, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_grad_of(g, NULL, 1, &t, 1, NULL, 0, false, false, &t, 1), BP_ERR_INVALID_ARGUMENT);
    /* A NULL output is caught before any work: the op creates nothing. */
    OK(bp_graph_tensor_count(g, &count_before));
    FAILS(bp_exp(g, t, NULL), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, d3, 1, NULL), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_tensor_count(g, &count_after));
    CHECK(count_before == count_after);
    /* A misaligned output pointer is refused. */
    unsigned char raw[sizeof(bp_tensor) * 2];
    FAILS(bp_exp(g, t, (bp_tensor *)(void *)(raw + 1)), BP_ERR_INVALID_ARGUMENT);
    /* Failed calls leave outputs untouched. */
    bp_tensor out = sentinel;
    FAILS(bp_tensor_new(g, 9, d3, 1, &out), BP_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&out, &sentinel, sizeof out) == 0);
    OK(bp_graph_free(g));
}

static void stale_forged_null_and_foreign_handles(void) {
    bp_graph *g, *h;
    bp_tensor t, u, y, foreign;
    size_t n;
    OK(bp_graph_new(&g));
    OK(bp_graph_new(&h));
    OK(bp_tensor_new(g, BP_DTYPE_F64, d3, 1, &t));
    OK(bp_tensor_new(h, BP_DTYPE_F64, d3, 1, &foreign));

    /* Stale after free, even when the slot is reused by a new tensor. */
    OK(bp_tensor_new(g, BP_DTYPE_F64, d3, 1, &u));
    OK(bp_tensor_free(g, u));
    FAILS(bp_exp(g, u, &y), BP_ERR_INVALID_HANDLE);
    OK(bp_tensor_new(g, BP_DTYPE_F64, d3, 1, &y));
    CHECK(y.index == u.index);
    FAILS(bp_tensor_numel(g, u, &n), BP_ERR_INVALID_HANDLE);

    /* Forged: a slot that does not exist, a wrong generation, the null handle. */
    bp_tensor forged = t;
    forged.index = 100000;
    FAILS(bp_tensor_numel(g, forged, &n), BP_ERR_INVALID_HANDLE);
    forged = t;
    forged.generation += 1000;
    FAILS(bp_tensor_numel(g, forged, &n), BP_ERR_INVALID_HANDLE);
    bp_tensor null_handle = {0, 0, 0};
    FAILS(bp_relu(g, null_handle, &y), BP_ERR_INVALID_HANDLE);

    /* A handle of another graph, alone or mixed with a good one. */
    FAILS(bp_tensor_numel(g, foreign, &n), BP_ERR_INVALID_HANDLE);
    FAILS(bp_add(g, t, foreign, &y), BP_ERR_INVALID_HANDLE);
    FAILS(bp_backward(g, foreign, NULL, false, false), BP_ERR_INVALID_HANDLE);
    bp_tensor pair[2] = {t, foreign};
    FAILS(bp_concat(g, pair, 2, 0, &y), BP_ERR_INVALID_HANDLE);

    /* Stale after reset. */
    OK(bp_graph_reset(g));
    FAILS(bp_tensor_numel(g, t, &n), BP_ERR_INVALID_HANDLE);
    OK(bp_graph_free(g));
    OK(bp_graph_free(h));
}

static void freed_and_forged_graphs(void) {
    bp_graph *g;
    bp_tensor t;
    OK(bp_graph_free(NULL)); /* a no-op */
    OK(bp_graph_new(&g));
    OK(bp_tensor_new(g, BP_DTYPE_F32, d3, 1, &t));
    OK(bp_graph_free(g));
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, d3, 1, &t), BP_ERR_INVALID_HANDLE);
    FAILS(bp_graph_reset(g), BP_ERR_INVALID_HANDLE);
    FAILS(bp_graph_free(g), BP_ERR_INVALID_HANDLE); /* double free is detected, not a crash */

    /* A pointer to readable memory that is not a graph. */
    uint64_t not_a_graph[16];
    memset(not_a_graph, 0, sizeof not_a_graph);
    FAILS(bp_graph_reset((bp_graph *)(void *)not_a_graph), BP_ERR_INVALID_HANDLE);
    FAILS(bp_graph_free((bp_graph *)(void *)not_a_graph), BP_ERR_INVALID_HANDLE);
    FAILS(bp_graph_reset((bp_graph *)(void *)((char *)not_a_graph + 1)), BP_ERR_INVALID_HANDLE);
}

static void bad_integers_and_shapes(void) {
    bp_graph *g;
    bp_tensor t, y;
    OK(bp_graph_new(&g));
    OK(bp_tensor_new(g, BP_DTYPE_F64, d3, 1, &t));
    FAILS(bp_tensor_new(g, -1, d3, 1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_rand(g, 3, d3, 1, 0, 1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_mse_loss(g, t, t, -1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_binary_cross_entropy_with_logits(g, t, t, 3, &y), BP_ERR_INVALID_ARGUMENT);
    const int64_t negative[2] = {2, -3}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, negative, 2, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, nine, 9, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, d3, SIZE_MAX, &y), BP_ERR_SHAPE_MISMATCH);
    FAILS(bp_tensor_from_f64(g, (const double *)d3, SIZE_MAX, d3, 1, &y), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_concat(g, &t, SIZE_MAX, 0, &y), BP_ERR_INVALID_ARGUMENT);
    int64_t dims[1];
    size_t n;
    const int64_t d22[2] = {2, 2};
    bp_tensor m;
    OK(bp_tensor_new(g, BP_DTYPE_F32, d22, 2, &m));
    FAILS(bp_tensor_shape(g, m, dims, 1, &n), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
}

static void a_panic_is_an_internal_error(void) {
    FAILS(bp_debug_trigger_panic(), BP_ERR_INTERNAL);
    CHECK(strstr(bp_last_error_message(), "bp_debug_trigger_panic") != NULL);
    /* The library keeps working afterwards. */
    bp_graph *g;
    OK(bp_graph_new(&g));
    OK(bp_graph_free(g));
}

static void messages_describe_the_last_failure(void) {
    bp_graph *g;
    bp_tensor a, b, y;
    const int64_t d2[1] = {2};
    OK(bp_graph_new(&g));
    OK(bp_tensor_new(g, BP_DTYPE_F32, d3, 1, &a));
    OK(bp_tensor_new(g, BP_DTYPE_F32, d2, 1, &b));
    FAILS(bp_add(g, a, b, &y), BP_ERR_SHAPE_MISMATCH);
    CHECK(strstr(bp_last_error_message(), "broadcast") != NULL);
    OK(bp_graph_free(g));
}

int main(void) {
    null_pointers();
    stale_forged_null_and_foreign_handles();
    freed_and_forged_graphs();
    bad_integers_and_shapes();
    a_panic_is_an_internal_error();
    messages_describe_the_last_failure();
    return bp_test_finish("handle_misuse");
}

/* Tensor lifecycle: creating tensors every way, querying them, reading and writing data, freeing,
 * persistence across reset, memory accounting and limits, DOT export, versions and status names. */
#include "bp_test.h"

static void creation_and_queries(bp_graph *g) {
    const int64_t dims[3] = {2, 3, 4};
    bp_tensor t;
    size_t ndim = 0, numel = 0;
    int64_t got[8];
    bp_dtype dt = -1;
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 3, &t));
    OK(bp_tensor_ndim(g, t, &ndim));
    CHECK(ndim == 3);
    OK(bp_tensor_numel(g, t, &numel));
    CHECK(numel == 24);
    OK(bp_tensor_shape(g, t, got, 8, &ndim));
    CHECK(ndim == 3 && got[0] == 2 && got[1] == 3 && got[2] == 4);
    OK(bp_tensor_dtype(g, t, &dt));
    CHECK(dt == BP_DTYPE_F32);
    float zeros[24];
    memset(zeros, 0xff, sizeof zeros);
    OK(bp_tensor_read_f32(g, t, zeros, 24));
    for (int i = 0; i < 24; i++) CHECK(zeros[i] == 0.0f);

    /* A scalar: rank 0, one element, dims may be NULL. */
    bp_tensor s;
    double v = 0;
    OK(bp_tensor_full(g, BP_DTYPE_F64, NULL, 0, 2.5, &s));
    OK(bp_tensor_ndim(g, s, &ndim));
    CHECK(ndim == 0);
    OK(bp_tensor_item(g, s, &v));
    CHECK(v == 2.5);
    /* bp_tensor_shape of a scalar accepts a NULL buffer with capacity 0. */
    OK(bp_tensor_shape(g, s, NULL, 0, &ndim));
    CHECK(ndim == 0);

    /* A shape with a zero dimension holds no elements and reads with a NULL buffer. */
    const int64_t empty_dims[2] = {0, 5};
    bp_tensor e;
    OK(bp_tensor_new(g, BP_DTYPE_F32, empty_dims, 2, &e));
    OK(bp_tensor_numel(g, e, &numel));
    CHECK(numel == 0);
    OK(bp_tensor_read_f32(g, e, NULL, 0));

    /* int64 full must be an integer. */
    bp_tensor i;
    OK(bp_tensor_full(g, BP_DTYPE_I64, dims, 1, 7, &i));
    int64_t iv[2];
    OK(bp_tensor_read_i64(g, i, iv, 2));
    CHECK(iv[0] == 7 && iv[1] == 7);
    FAILS(bp_tensor_full(g, BP_DTYPE_I64, dims, 1, 0.5, &i), BP_ERR_INVALID_ARGUMENT);

    /* arange as torch.arange. */
    bp_tensor a;
    double av[4];
    OK(bp_tensor_arange(g, 1.0, 3.0, 0.5, BP_DTYPE_F64, &a));
    OK(bp_tensor_numel(g, a, &numel));
    CHECK(numel == 4);
    OK(bp_tensor_read_f64(g, a, av, 4));
    CHECK(av[0] == 1.0 && av[3] == 2.5);
    FAILS(bp_tensor_arange(g, 0, 1, 0, BP_DTYPE_F64, &a), BP_ERR_INVALID_ARGUMENT);
}

static void data_round_trips(bp_graph *g) {
    const int64_t dims[2] = {2, 2};
    const float f[4] = {1.5f, -2.0f, 3.25f, 0.0f};
    const double d[4] = {1e-300, 2.0, -3.0, 4.0};
    const int64_t i[4] = {INT64_MIN, -1, 0, INT64_MAX};
    float fo[4];
    double dout[4];
    int64_t io[4];
    bp_tensor tf, td, ti;
    OK(bp_tensor_from_f32(g, f, 4, dims, 2, &tf));
    OK(bp_tensor_from_f64(g, d, 4, dims, 2, &td));
    OK(bp_tensor_from_i64(g, i, 4, dims, 2, &ti));
    OK(bp_tensor_read_f32(g, tf, fo, 4));
    OK(bp_tensor_read_f64(g, td, dout, 4));
    OK(bp_tensor_read_i64(g, ti, io, 4));
    CHECK(memcmp(f, fo, sizeof f) == 0 && memcmp(d, dout, sizeof d) == 0 && memcmp(i, io, sizeof i) == 0);

    /* Writes replace the values and bump the version counter. */
    uint32_t v0 = 99, v1 = 99;
    const float f2[4] = {9, 8, 7, 6};
    OK(bp_tensor_version(g, tf, &v0));
    OK(bp_tensor_write_f32(g, tf, f2, 4));
    OK(bp_tensor_version(g, tf, &v1));
    CHECK(v1 == v0 + 1);
    OK(bp_tensor_read_f32(g, tf, fo, 4));
    CHECK(memcmp(f2, fo, sizeof f2) == 0);
    OK(bp_tensor_write_f64(g, td, d, 4));
    OK(bp_tensor_write_i64(g, ti, i, 4));

    /* Wrong lengths and wrong element types are errors that leave the buffers alone. */
    float keep[5] = {42, 42, 42, 42, 42};
    FAILS(bp_tensor_read_f32(g, tf, keep, 5), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_read_f32(g, tf, keep, 3), BP_ERR_INVALID_ARGUMENT);
    CHECK(keep[0] == 42 && keep[4] == 42);
    FAILS(bp_tensor_read_f32(g, td, keep, 4), BP_ERR_DTYPE);
    FAILS(bp_tensor_read_i64(g, tf, io, 4), BP_ERR_DTYPE);
    FAILS(bp_tensor_write_f32(g, tf, f, 3), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_write_f64(g, tf, d, 4), BP_ERR_DTYPE);
    FAILS(bp_tensor_write_i64(g, td, i, 4), BP_ERR_DTYPE);
    FAILS(bp_tensor_from_f32(g, f, 3, dims, 2, &tf), BP_ERR_INVALID_ARGUMENT);
    double item = 0;
    FAILS(bp_tensor_item(g, tf, &item), BP_ERR_SHAPE_MISMATCH);

    /* assign copies values in place; shapes and types must agree. */
    bp_tensor copy;
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 2, &copy));
    OK(bp_tensor_assign(g, copy, tf));
    OK(bp_tensor_read_f32(g, copy, fo, 4));
    CHECK(memcmp(f2, fo, sizeof f2) == 0);
    FAILS(bp_tensor_assign(g, copy, td), BP_ERR_DTYPE);
    bp_tensor small;
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 1, &small));
    FAILS(bp_tensor_assign(g, copy, small), BP_ERR_SHAPE_MISMATCH);
}

static void random_tensors(bp_graph *g) {
    const int64_t dims[1] = {1000};
    bp_tensor r, n, k, r2;
    float rv[1000], rv2[1000];
    double nv[1000];
    int64_t kv[1000];
    OK(bp_graph_manual_seed(g, 7));
    OK(bp_tensor_rand(g, BP_DTYPE_F32, dims, 1, -2.0, 3.0, &r));
    OK(bp_tensor_randn(g, BP_DTYPE_F64, dims, 1, 1.0, 0.5, &n));
    OK(bp_tensor_randint(g, 5, 9, dims, 1, &k));
    OK(bp_tensor_read_f32(g, r, rv, 1000));
    OK(bp_tensor_read_f64(g, n, nv, 1000));
    OK(bp_tensor_read_i64(g, k, kv, 1000));
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        CHECK(rv[i] >= -2.0f && rv[i] < 3.0f);
        CHECK(kv[i] >= 5 && kv[i] < 9);
        mean += nv[i] / 1000;
    }
    CHECK(fabs(mean - 1.0) < 0.1);
    /* The same seed draws the same numbers. */
    OK(bp_graph_manual_seed(g, 7));
    OK(bp_tensor_rand(g, BP_DTYPE_F32, dims, 1, -2.0, 3.0, &r2));
    OK(bp_tensor_read_f32(g, r2, rv2, 1000));
    CHECK(memcmp(rv, rv2, sizeof rv) == 0);
    FAILS(bp_tensor_rand(g, BP_DTYPE_I64, dims, 1, 0, 1, &r), BP_ERR_DTYPE);

    /* A saved generator state resumes the exact sequence, normal samples included. */
    uint32_t state[BP_GENERATOR_STATE_WORDS], bad[BP_GENERATOR_STATE_WORDS];
    OK(bp_tensor_randn(g, BP_DTYPE_F64, dims, 1, 0, 1, &n));
    OK(bp_graph_get_generator_state(g, state, BP_GENERATOR_STATE_WORDS));
    OK(bp_tensor_randn(g, BP_DTYPE_F64, dims, 1, 0, 1, &n));
    OK(bp_tensor_read_f64(g, n, nv, 1000));
    OK(bp_graph_manual_seed(g, 99));
    OK(bp_graph_set_generator_state(g, state, BP_GENERATOR_STATE_WORDS));
    double again[1000];
    OK(bp_tensor_randn(g, BP_DTYPE_F64, dims, 1, 0, 1, &n));
    OK(bp_tensor_read_f64(g, n, again, 1000));
    CHECK(memcmp(nv, again, sizeof again) == 0);
    memcpy(bad, state, sizeof bad);
    bad[2] = 100000; /* a position past the end of the state */
    FAILS(bp_graph_set_generator_state(g, bad, BP_GENERATOR_STATE_WORDS), BP_ERR_FORMAT);
    FAILS(bp_graph_set_generator_state(g, state, 10), BP_ERR_FORMAT);
    FAILS(bp_graph_get_generator_state(g, state, 10), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_tensor_randint(g, 3, 3, dims, 1, &k), BP_ERR_INVALID_ARGUMENT);
}

static void free_reset_and_persistence(void) {
    bp_graph *g;
    OK(bp_graph_new(&g));
    const int64_t dims[1] = {4};
    bp_tensor p, tmp, gone;
    size_t count = 0, used = 0, pooled = 0;
    bool persistent = false;
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 1, &p));
    OK(bp_tensor_set_persistent(g, p, true));
    OK(bp_tensor_is_persistent(g, p, &persistent));
    CHECK(persistent);
    OK(bp_tensor_new(g, BP_DTYPE_F32, dims, 1, &tmp));
    OK(bp_tensor_new(g, BP_DTYPE_F64, dims, 1, &gone));
    OK(bp_graph_tensor_count(g, &count));
    CHECK(count == 3);
    OK(bp_graph_memory_used(g, &used, NULL));
    CHECK(used == 16 + 16 + 32);

    /* Freeing makes every copy of the handle stale; the null handle and a NULL graph are no-ops. */
    OK(bp_tensor_free(g, gone));
    FAILS(bp_tensor_free(g, gone), BP_ERR_INVALID_HANDLE);
    size_t n = 0;
    FAILS(bp_tensor_numel(g, gone, &n), BP_ERR_INVALID_HANDLE);
    bp_tensor null_handle = {0, 0, 0};
    CHECK(bp_tensor_is_null(null_handle));
    CHECK(!bp_tensor_is_null(p));
    OK(bp_tensor_free(g, null_handle));
    OK(bp_tensor_free(NULL, p));

    /* reset drops step-scoped tensors and keeps persistent ones; the buffers go to the pool. */
    OK(bp_graph_reset(g));
    OK(bp_graph_tensor_count(g, &count));
    CHECK(count == 1);
    FAILS(bp_tensor_numel(g, tmp, &n), BP_ERR_INVALID_HANDLE);
    OK(bp_tensor_numel(g, p, &n));
    CHECK(n == 4);
    OK(bp_graph_memory_used(g, &used, &pooled));
    CHECK(used == 16 && pooled > 0);

    /* Only leaves can be persistent. */
    bp_tensor leaf, y;
    OK(bp_tensor_full(g, BP_DTYPE_F32, dims, 1, 1.0, &leaf));
    OK(bp_tensor_set_requires_grad(g, leaf, true));
    OK(bp_exp(g, leaf, &y));
    FAILS(bp_tensor_set_persistent(g, y, true), BP_ERR_INVALID_ARGUMENT);
    OK(bp_graph_free(g));
}

static void memory_limit(void) {
    bp_graph *g;
    size_t limit = 0;
    OK(bp_graph_new(&g));
    OK(bp_graph_memory_limit(g, &limit));
    CHECK(limit == SIZE_MAX);
    OK(bp_graph_set_memory_limit(g, 1000));
    OK(bp_graph_memory_limit(g, &limit));
    CHECK(limit == 1000);
    const int64_t big[1] = {1000}, small[1] = {100};
    bp_tensor t = {0, 0, 0}, before = t;
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, big, 1, &t), BP_ERR_OUT_OF_MEMORY);
    CHECK(memcmp(&t, &before, sizeof t) == 0); /* outputs untouched on failure */
    OK(bp_tensor_new(g, BP_DTYPE_F32, small, 1, &t)); /* the graph stays usable */
    FAILS(bp_graph_set_memory_limit(g, 10), BP_ERR_OUT_OF_MEMORY);
    /* A shape past 2^40 elements is refused before any allocation. */
    const int64_t huge[2] = {INT64_C(1) << 31, INT64_C(1) << 31};
    FAILS(bp_tensor_new(g, BP_DTYPE_F32, huge, 2, &t), BP_ERR_SHAPE_MISMATCH);
    OK(bp_graph_free(g));
}

static void dot_export(bp_graph *g) {
    const int64_t dims[1] = {3};
    bp_tensor x, y;
    size_t size = 0, size2 = 0;
    OK(bp_tensor_full(g, BP_DTYPE_F32, dims, 1, 1.0, &x));
    OK(bp_tensor_set_requires_grad(g, x, true));
    OK(bp_tanh(g, x, &y));
    OK(bp_graph_to_dot(g, y, NULL, 0, &size));
    CHECK(size > 10);
    char *buf = (char *)malloc(size);
    FAILS(bp_graph_to_dot(g, y, buf, size - 1, &size2), BP_ERR_INVALID_ARGUMENT);
    CHECK(size2 == 0);
    OK(bp_graph_to_dot(g, y, buf, size, &size2));
    CHECK(size2 == size && strlen(buf) + 1 == size);
    CHECK(strstr(buf, "digraph") != NULL && strstr(buf, "tanh") != NULL);
    free(buf);
    FAILS(bp_graph_to_dot(g, y, NULL, 5, &size2), BP_ERR_INVALID_ARGUMENT);
}

static void versions_and_names(void) {
    CHECK(bp_version() == BP_VERSION_NUMBER);
    CHECK(strcmp(bp_version_string(), BP_VERSION_STRING) == 0);
    CHECK(strcmp(bp_status_name(BP_OK), "BP_OK") == 0);
    CHECK(strcmp(bp_status_name(BP_ERR_SHAPE_MISMATCH), "BP_ERR_SHAPE_MISMATCH") == 0);
    CHECK(strcmp(bp_status_name(BP_ERR_UNSUPPORTED), "BP_ERR_UNSUPPORTED") == 0);
    CHECK(strcmp(bp_status_name(12345), "BP_ERR_UNKNOWN") == 0);
    /* The pinned numbers. */
    CHECK(BP_OK == 0 && BP_ERR_INVALID_ARGUMENT == 1 && BP_ERR_SHAPE_MISMATCH == 2 && BP_ERR_INVALID_HANDLE == 3);
    CHECK(BP_ERR_OUT_OF_MEMORY == 4 && BP_ERR_AUTOGRAD == 5 && BP_ERR_DTYPE == 6 && BP_ERR_IO == 7);
    CHECK(BP_ERR_FORMAT == 8 && BP_ERR_ANOMALY == 9 && BP_ERR_INTERNAL == 10 && BP_ERR_UNSUPPORTED == 11);
}

int main(void) {
    bp_graph *g = NULL;
    OK(bp_graph_new(&g));
    creation_and_queries(g);
    data_round_trips(g);
    random_tensors(g);
    dot_export(g);
    OK(bp_graph_free(g));
    free_reset_and_persistence();
    memory_limit();
    versions_and_names();
    return bp_test_finish("tensor_lifecycle");
}

/* The collective hook of data-parallel training, with fake in-process collectives: the startup
 * broadcast lands in the parameters, the all-reduce is called once per step on the whole flat gradient
 * buffer and the runtime divides by the world size, a failing callback fails the step with
 * BP_ERR_COLLECTIVE, and a sharded loader splits epochs without overlap. */
#include "bp_test.h"

/* A fake world of 2 ranks in which the other rank always holds exactly what this one holds: the sum
 * of a buffer over the ranks is twice the buffer, and rank 0's parameters are `root_values`. */
typedef struct {
    int all_reduces;
    int broadcasts;
    size_t last_len;
    int fail_with; /* non-zero: the all-reduce fails with this code (a dead peer, a timeout) */
    const float *root_values;
} mirror;

static int32_t mirror_all_reduce(void *user, float *buf, size_t len) {
    mirror *m = (mirror *)user;
    m->all_reduces++;
    m->last_len = len;
    if (m->fail_with) return m->fail_with;
    for (size_t i = 0; i < len; i++) buf[i] *= 2.0f;
    return 0;
}

static int32_t mirror_broadcast(void *user, float *buf, size_t len) {
    mirror *m = (mirror *)user;
    m->broadcasts++;
    memcpy(buf, m->root_values, len * sizeof(float));
    return 0;
}

enum { IN = 4, OUT = 3, ROWS = 5, NPARAM = IN * OUT + OUT };

/* W [3,4] and b [3] as persistent leaves requiring grad, filled with `values` (W then b). */
static void make_params(bp_graph *g, const float *values, bp_tensor *w, bp_tensor *b) {
    const int64_t wd[2] = {OUT, IN}, bd[1] = {OUT};
    OK(bp_tensor_from_f32(g, values, IN * OUT, wd, 2, w));
    OK(bp_tensor_from_f32(g, values + IN * OUT, OUT, bd, 1, b));
    bp_tensor ps[2] = {*w, *b};
    for (int i = 0; i < 2; i++) {
        OK(bp_tensor_set_requires_grad(g, ps[i], true));
        OK(bp_tensor_set_persistent(g, ps[i], true));
    }
}

static bp_tensor loss_of(bp_graph *g, bp_tensor w, bp_tensor b) {
    float x[ROWS * IN];
    for (int i = 0; i < ROWS * IN; i++) x[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
    const int64_t y[ROWS] = {0, 2, 1, 1, 0}, xd[2] = {ROWS, IN}, yd[1] = {ROWS};
    bp_tensor xt, yt, logits, loss;
    OK(bp_tensor_from_f32(g, x, ROWS * IN, xd, 2, &xt));
    OK(bp_tensor_from_i64(g, y, ROWS, yd, 1, &yt));
    OK(bp_linear(g, xt, w, &b, &logits));
    OK(bp_cross_entropy(g, logits, yt, &loss));
    return loss;
}

static void startup_sync_and_averaged_gradients_match_a_plain_backward(void) {
    float root[NPARAM], own[NPARAM];
    for (int i = 0; i < NPARAM; i++) {
        root[i] = 0.05f * (float)(i % 7) - 0.1f;
        own[i] = 1.0f; /* this rank's own initialisation, overwritten by the broadcast */
    }
    mirror m = {0, 0, 0, 0, root};
    bp_collective c = {&m, 1, 2, mirror_all_reduce, mirror_broadcast};

    bp_graph *g, *ref;
    OK(bp_graph_new(&g));
    OK(bp_graph_new(&ref));
    bp_tensor w, b, rw, rb;
    make_params(g, own, &w, &b);
    make_params(ref, root, &rw, &rb);
    bp_tensor ps[2] = {w, b};
    bp_data_parallel *dp = NULL;
    OK(bp_data_parallel_new(g, ps, 2, &c, &dp));
    CHECK(m.broadcasts == 1);

    float *params, *grads;
    size_t np, ng;
    OK(bp_data_parallel_parameters(g, dp, &params, &np));
    CHECK(np == NPARAM);
    CHECK(memcmp(params, root, sizeof root) == 0);
    float wv[IN * OUT];
    OK(bp_tensor_read_f32(g, w, wv, IN * OUT));
    CHECK(memcmp(wv, root, sizeof wv) == 0);

    for (int step = 0; step < 2; step++) {
        bp_tensor loss = loss_of(g, w, b), rloss = loss_of(ref, rw, rb);
        OK(bp_zero_grad(g, w));
        OK(bp_zero_grad(g, b));
        OK(bp_data_parallel_backward(g, dp, loss));
        OK(bp_zero_grad(ref, rw));
        OK(bp_zero_grad(ref, rb));
        OK(bp_backward(ref, rloss, NULL, false, false));
        CHECK(m.all_reduces == step + 1);
        CHECK(m.last_len == NPARAM);

        /* Sum over 2 identical ranks, divided by 2: the plain gradient, bit for bit. */
        float expect[NPARAM];
        bp_tensor gw, gb;
        OK(bp_grad(ref, rw, &gw));
        OK(bp_grad(ref, rb, &gb));
        OK(bp_tensor_read_f32(ref, gw, expect, IN * OUT));
        OK(bp_tensor_read_f32(ref, gb, expect + IN * OUT, OUT));
        OK(bp_data_parallel_gradients(g, dp, &grads, &ng));
        CHECK(ng == NPARAM);
        for (int i = 0; i < NPARAM; i++) CHECK_NEAR(grads[i], expect[i], 0.0);

        /* The gradient tensors are views of the flat buffer. */
        bp_tensor gwt;
        float gwv[IN * OUT];
        OK(bp_grad(g, w, &gwt));
        OK(bp_tensor_read_f32(g, gwt, gwv, IN * OUT));
        CHECK(memcmp(gwv, grads, sizeof gwv) == 0);

        /* An SGD step through the flat buffers, on both sides. */
        OK(bp_data_parallel_parameters(g, dp, &params, &np));
        for (size_t i = 0; i < np; i++) params[i] -= 0.5f * grads[i];
        float rv[NPARAM];
        OK(bp_tensor_read_f32(ref, rw, rv, IN * OUT));
        OK(bp_tensor_read_f32(ref, rb, rv + IN * OUT, OUT));
        for (int i = 0; i < NPARAM; i++) rv[i] -= 0.5f * expect[i];
        OK(bp_tensor_write_f32(ref, rw, rv, IN * OUT));
        OK(bp_tensor_write_f32(ref, rb, rv + IN * OUT, OUT));
        OK(bp_graph_reset(g));
        OK(bp_graph_reset(ref));
    }
    float final_w[IN * OUT], ref_w[IN * OUT];
    OK(bp_tensor_read_f32(g, w, final_w, IN * OUT));
    OK(bp_tensor_read_f32(ref, rw, ref_w, IN * OUT));
    CHECK(memcmp(final_w, ref_w, sizeof ref_w) == 0);

    /* zero_grad keeps the flat gradient and zeroes it in place. */
    OK(bp_zero_grad(g, w));
    OK(bp_zero_grad(g, b));
    OK(bp_data_parallel_gradients(g, dp, &grads, &ng));
    for (size_t i = 0; i < ng; i++) CHECK(grads[i] == 0.0f);

    /* A later sync (after rank 0 alone loaded a checkpoint) broadcasts again. */
    OK(bp_data_parallel_sync_parameters(g, dp));
    CHECK(m.broadcasts == 2);
    OK(bp_data_parallel_parameters(g, dp, &params, &np));
    CHECK(memcmp(params, root, sizeof root) == 0);

    bp_comm_stats st;
    OK(bp_data_parallel_stats(dp, &st));
    CHECK(st.all_reduces == 2);
    CHECK(st.all_reduce_bytes == 2 * NPARAM * sizeof(float));

    OK(bp_data_parallel_free(dp));
    OK(bp_graph_free(g));
    OK(bp_graph_free(ref));
}

static void a_failing_collective_fails_the_step_with_bp_err_collective(void) {
    float init[NPARAM] = {0};
    mirror m = {0, 0, 0, 0, init};
    bp_collective c = {&m, 0, 2, mirror_all_reduce, mirror_broadcast};
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor w, b;
    make_params(g, init, &w, &b);
    bp_tensor ps[2] = {w, b};
    bp_data_parallel *dp;
    OK(bp_data_parallel_new(g, ps, 2, &c, &dp));
    m.fail_with = 7;
    FAILS(bp_data_parallel_backward(g, dp, loss_of(g, w, b)), BP_ERR_COLLECTIVE);
    CHECK(strstr(bp_last_error_message(), "code 7") != NULL);
    FAILS(bp_data_parallel_average_gradients(g, dp), BP_ERR_COLLECTIVE);
    OK(bp_data_parallel_free(dp));
    FAILS(bp_data_parallel_free(dp), BP_ERR_INVALID_HANDLE); /* a use after free is detected */
    OK(bp_graph_free(g));
}

static void bad_collectives_are_refused(void) {
    float init[NPARAM] = {0};
    bp_graph *g;
    OK(bp_graph_new(&g));
    bp_tensor w, b;
    make_params(g, init, &w, &b);
    bp_tensor ps[2] = {w, b};
    bp_data_parallel *dp = NULL;
    bp_collective bad_rank = {NULL, 2, 2, mirror_all_reduce, mirror_broadcast};
    FAILS(bp_data_parallel_new(g, ps, 2, &bad_rank, &dp), BP_ERR_INVALID_ARGUMENT);
    bp_collective no_callbacks = {NULL, 0, 2, NULL, NULL};
    FAILS(bp_data_parallel_new(g, ps, 2, &no_callbacks, &dp), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_data_parallel_new(g, ps, 2, NULL, &dp), BP_ERR_INVALID_ARGUMENT);
    CHECK(dp == NULL);
    FAILS(bp_data_parallel_backward(g, NULL, w), BP_ERR_INVALID_ARGUMENT);
    OK(bp_data_parallel_free(NULL));
    /* One rank needs no transport: the flat buffers alone. */
    bp_collective alone = {NULL, 0, 1, NULL, NULL};
    OK(bp_data_parallel_new(g, ps, 2, &alone, &dp));
    OK(bp_data_parallel_backward(g, dp, loss_of(g, w, b)));
    OK(bp_data_parallel_free(dp));
    OK(bp_graph_free(g));
}

/* Rows whose single feature is their own index: a batch's features name its rows. */
static void the_sharded_loader_splits_every_epoch_without_overlap(void) {
    enum { N = 10, WORLD = 3, B = 3 };
    float features[N];
    int64_t labels[N] = {0};
    for (int i = 0; i < N; i++) features[i] = (float)i;
    bp_dataset *data;
    bp_graph *g;
    OK(bp_dataset_new(features, N, labels, N, 1, &data));
    OK(bp_graph_new(&g));
    int seen[N] = {0};
    int total = 0;
    for (int r = 0; r < WORLD; r++) {
        bp_loader *l;
        OK(bp_loader_new(N, B, true, 11, &l));
        OK(bp_loader_shard(l, r, WORLD));
        size_t nb;
        OK(bp_loader_batches_per_epoch(l, &nb));
        CHECK(nb == 2); /* ceil(10 / 3) = 4 rows per rank: batches of 3 and 1 */
        OK(bp_loader_start_epoch(l));
        uint64_t epochs;
        OK(bp_loader_epoch(l, &epochs));
        CHECK(epochs == 1);
        for (;;) {
            bp_tensor x, y;
            bool more;
            size_t count;
            float rows[B];
            OK(bp_loader_next_batch(l, g, data, &x, &y, &more));
            if (!more) break;
            OK(bp_tensor_numel(g, x, &count));
            OK(bp_tensor_read_f32(g, x, rows, count));
            for (size_t i = 0; i < count; i++) {
                seen[(int)rows[i]]++;
                total++;
            }
            OK(bp_graph_reset(g));
        }
        OK(bp_loader_free(l));
    }
    CHECK(total == 12); /* padded to a multiple of 3 */
    int twice = 0;
    for (int i = 0; i < N; i++) {
        CHECK(seen[i] >= 1); /* nothing dropped */
        twice += seen[i] == 2;
    }
    CHECK(twice == 2); /* the padding repeats two rows */
    bp_loader *l;
    OK(bp_loader_new(N, B, true, 11, &l));
    FAILS(bp_loader_shard(l, 3, 3), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_loader_shard(l, -1, 3), BP_ERR_INVALID_ARGUMENT);
    FAILS(bp_loader_shard(NULL, 0, 1), BP_ERR_INVALID_ARGUMENT);
    OK(bp_loader_free(l));
    OK(bp_graph_free(g));
    OK(bp_dataset_free(data));
}

int main(void) {
    startup_sync_and_averaged_gradients_match_a_plain_backward();
    a_failing_collective_fails_the_step_with_bp_err_collective();
    bad_collectives_are_refused();
    the_sharded_loader_splits_every_epoch_without_overlap();
    return bp_test_finish("test_distributed");
}

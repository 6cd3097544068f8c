/* Data-parallel training of an MLP on the UCI optical-digits data set over MPI, through backprop's C
 * ABI: every rank builds the same model, bp_data_parallel_new broadcasts rank 0's parameters, a
 * bp_sampler gives each rank its own shard of every (seeded) epoch, and each step ends with one
 * all-reduce of the flat gradient buffer. SGD with momentum runs on the flat buffers directly.
 *
 *   mpirun -np 2 ./digits_mpi --data data/digits                 # 2 processes on this machine
 *   mpirun -np 8 --hostfile hosts ./digits_mpi --data ...         # 8 processes over the machines listed
 *   ./digits_mpi --compare a.bin b.bin --tol 1e-5                 # max |a - b| of two saved runs (no MPI)
 *
 * Options: --data DIR (data/digits), --epochs E (10), --batch B per rank (32), --rows N (first N training
 * rows; 0 = all), --hidden H (64), --lr (0.05), --momentum (0.9), --seed S (0), --timeout SECONDS (60),
 * --save-params FILE (rank 0 writes the final flat parameters), --checkpoint FILE (rank 0 writes one
 * after every epoch), --resume (rank 0 reads --checkpoint and every rank continues from it),
 * --die-at-step K / --stall-at-step K (rank 1 exits / stops answering at step K: failure tests),
 * --min-accuracy A (exit 1 if rank 0's test accuracy is below A), --quiet.
 * Output: one line per epoch on rank 0, then "result:" lines (throughput, all-reduce time).
 */
#define _POSIX_C_SOURCE 200809L
#include "bp.h"
#include "bp_mpi.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FEATURES 64
#define CLASSES 10

typedef struct {
    const char *data, *save_params, *checkpoint, *compare_a, *compare_b;
    int epochs, batch, rows, hidden, resume, die_at, stall_at, quiet;
    double lr, momentum, timeout, tol, min_accuracy;
    uint64_t seed;
} options;

static bp_mpi *g_mpi; /* for fail() */

static void fail(const char *what, bp_status s) {
    char why[512];
    snprintf(why, sizeof why, "%s: %s: %s", what, bp_status_name(s), bp_last_error_message());
    if (g_mpi) bp_mpi_abort(g_mpi, 2, why);
    fprintf(stderr, "digits_mpi: %s\n", why);
    exit(2);
}
#define CALL(x)                                                                                      \
    do {                                                                                             \
        bp_status s_ = (x);                                                                          \
        if (s_ != BP_OK) fail(#x, s_);                                                               \
    } while (0)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ----- data ------------------------------------------------------------------------------------ */

typedef struct {
    float *x; /* rows × 64, standardised */
    int64_t *y;
    size_t n;
} dataset;

static void load(const char *dir, int limit_rows, dataset *train, dataset *test) {
    char path[1024];
    snprintf(path, sizeof path, "%s/digits.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "digits_mpi: cannot open %s\n", path);
        exit(2);
    }
    enum { MAX_ROWS = 1797 };
    static float xs[MAX_ROWS * FEATURES];
    static int64_t ys[MAX_ROWS];
    size_t n = 0;
    while (n < MAX_ROWS) {
        int ok = 1;
        for (int j = 0; j < FEATURES && ok; j++) ok = fscanf(f, "%f,", &xs[n * FEATURES + j]) == 1;
        long label;
        if (!ok || fscanf(f, "%ld", &label) != 1) break;
        ys[n++] = label;
    }
    fclose(f);
    static char is_test[MAX_ROWS];
    snprintf(path, sizeof path, "%s/digits_test_rows.txt", dir);
    f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "digits_mpi: cannot open %s\n", path);
        exit(2);
    }
    long r;
    while (fscanf(f, "%ld", &r) == 1)
        if (r >= 0 && (size_t)r < n) is_test[r] = 1;
    fclose(f);
    train->x = malloc(n * FEATURES * sizeof(float));
    test->x = malloc(n * FEATURES * sizeof(float));
    train->y = malloc(n * sizeof(int64_t));
    test->y = malloc(n * sizeof(int64_t));
    train->n = test->n = 0;
    for (size_t i = 0; i < n; i++) {
        dataset *d = is_test[i] ? test : train;
        if (d == train && limit_rows > 0 && train->n >= (size_t)limit_rows) continue;
        memcpy(d->x + d->n * FEATURES, xs + i * FEATURES, FEATURES * sizeof(float));
        d->y[d->n++] = ys[i];
    }
    /* Standardise with the training set's statistics (a constant column stays 0). */
    for (int j = 0; j < FEATURES; j++) {
        double s = 0, ss = 0;
        for (size_t i = 0; i < train->n; i++) s += train->x[i * FEATURES + j];
        double mean = s / (double)train->n;
        for (size_t i = 0; i < train->n; i++) ss += pow(train->x[i * FEATURES + j] - mean, 2);
        double sd = sqrt(ss / (double)train->n);
        if (sd == 0) sd = 1;
        for (size_t i = 0; i < train->n; i++) train->x[i * FEATURES + j] = (float)((train->x[i * FEATURES + j] - mean) / sd);
        for (size_t i = 0; i < test->n; i++) test->x[i * FEATURES + j] = (float)((test->x[i * FEATURES + j] - mean) / sd);
    }
}

/* ----- model ----------------------------------------------------------------------------------- */

typedef struct {
    bp_tensor w1, b1, w2, b2;
} mlp;

static bp_tensor param(bp_graph *g, int64_t rows, int64_t cols, double bound) {
    const int64_t dims[2] = {rows, cols};
    bp_tensor t;
    CALL(bp_tensor_rand(g, BP_DTYPE_F32, dims, cols ? 2 : 1, -bound, bound, &t));
    CALL(bp_tensor_set_requires_grad(g, t, true));
    CALL(bp_tensor_set_persistent(g, t, true));
    return t;
}

/* PyTorch's nn.Linear initialisation: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias. */
static mlp make_mlp(bp_graph *g, int hidden) {
    mlp m;
    double b1 = 1.0 / sqrt((double)FEATURES), b2 = 1.0 / sqrt((double)hidden);
    m.w1 = param(g, hidden, FEATURES, b1);
    m.b1 = param(g, hidden, 0, b1);
    m.w2 = param(g, CLASSES, hidden, b2);
    m.b2 = param(g, CLASSES, 0, b2);
    return m;
}

static bp_tensor forward(bp_graph *g, const mlp *m, const float *x, size_t rows) {
    const int64_t dims[2] = {(int64_t)rows, FEATURES};
    bp_tensor xt, h, a, out;
    CALL(bp_tensor_from_f32(g, x, rows * FEATURES, dims, 2, &xt));
    CALL(bp_linear(g, xt, m->w1, &m->b1, &h));
    CALL(bp_relu(g, h, &a));
    CALL(bp_linear(g, a, m->w2, &m->b2, &out));
    return out;
}

static double accuracy(bp_graph *g, const mlp *m, const dataset *d) {
    bool prev;
    CALL(bp_graph_set_grad_enabled(g, false, &prev));
    bp_tensor logits = forward(g, m, d->x, d->n);
    float *out = malloc(d->n * CLASSES * sizeof(float));
    CALL(bp_tensor_read_f32(g, logits, out, d->n * CLASSES));
    size_t right = 0;
    for (size_t i = 0; i < d->n; i++) {
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (out[i * CLASSES + c] > out[i * CLASSES + best]) best = c;
        right += best == d->y[i];
    }
    free(out);
    CALL(bp_graph_reset(g));
    CALL(bp_graph_set_grad_enabled(g, prev, NULL));
    return (double)right / (double)d->n;
}

/* ----- files ----------------------------------------------------------------------------------- */

/* A checkpoint: "BPDPCKPT", the epochs done, the element count, the parameters, the momentum buffer.
 * Written to a temporary file and renamed, so a crash mid-write leaves the previous one intact. */
static void save_checkpoint(const char *path, uint64_t epochs_done, const float *params, const float *mom, uint64_t n) {
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite("BPDPCKPT", 1, 8, f) == 8 && fwrite(&epochs_done, 8, 1, f) == 1 && fwrite(&n, 8, 1, f) == 1 &&
             fwrite(params, sizeof(float), n, f) == n && fwrite(mom, sizeof(float), n, f) == n;
    if (f) ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "digits_mpi: cannot write the checkpoint %s\n", path);
        bp_mpi_abort(g_mpi, 2, "checkpoint write failed");
    }
}

static int load_checkpoint(const char *path, uint64_t *epochs_done, float *params, float *mom, uint64_t n) {
    FILE *f = fopen(path, "rb");
    char magic[8];
    uint64_t count = 0;
    int ok = f && fread(magic, 1, 8, f) == 8 && memcmp(magic, "BPDPCKPT", 8) == 0 && fread(epochs_done, 8, 1, f) == 1 &&
             fread(&count, 8, 1, f) == 1 && count == n && fread(params, sizeof(float), n, f) == n &&
             fread(mom, sizeof(float), n, f) == n;
    if (f) fclose(f);
    return ok;
}

static float *read_params(const char *path, uint64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f || fread(n, 8, 1, f) != 1) {
        fprintf(stderr, "digits_mpi: cannot read %s\n", path);
        exit(2);
    }
    float *p = malloc(*n * sizeof(float));
    if (fread(p, sizeof(float), *n, f) != *n) {
        fprintf(stderr, "digits_mpi: %s is truncated\n", path);
        exit(2);
    }
    fclose(f);
    return p;
}

static int compare(const options *o) {
    uint64_t na, nb;
    float *a = read_params(o->compare_a, &na), *b = read_params(o->compare_b, &nb);
    if (na != nb) {
        printf("compare: %llu vs %llu parameters\n", (unsigned long long)na, (unsigned long long)nb);
        return 1;
    }
    double worst = 0;
    for (uint64_t i = 0; i < na; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
    printf("compare: %llu parameters, max abs diff %.3e (tolerance %.1e)\n", (unsigned long long)na, worst, o->tol);
    free(a);
    free(b);
    return worst <= o->tol ? 0 : 1;
}

/* ----- main ------------------------------------------------------------------------------------ */

static void parse(int argc, char **argv, options *o) {
    *o = (options){"data/digits", NULL, NULL, NULL, NULL, 10, 32, 0, 64, 0, -1, -1, 0, 0.05, 0.9, 60.0, 1e-5, 0.0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
        if (OPT("--data")) o->data = v;
        else if (OPT("--epochs")) o->epochs = atoi(v);
        else if (OPT("--batch")) o->batch = atoi(v);
        else if (OPT("--rows")) o->rows = atoi(v);
        else if (OPT("--hidden")) o->hidden = atoi(v);
        else if (OPT("--lr")) o->lr = atof(v);
        else if (OPT("--momentum")) o->momentum = atof(v);
        else if (OPT("--seed")) o->seed = strtoull(v, NULL, 10);
        else if (OPT("--timeout")) o->timeout = atof(v);
        else if (OPT("--save-params")) o->save_params = v;
        else if (OPT("--checkpoint")) o->checkpoint = v;
        else if (OPT("--die-at-step")) o->die_at = atoi(v);
        else if (OPT("--stall-at-step")) o->stall_at = atoi(v);
        else if (OPT("--tol")) o->tol = atof(v);
        else if (OPT("--min-accuracy")) o->min_accuracy = atof(v);
        else if (strcmp(a, "--compare") == 0 && i + 2 < argc) {
            o->compare_a = argv[++i];
            o->compare_b = argv[++i];
        } else if (strcmp(a, "--resume") == 0) o->resume = 1;
        else if (strcmp(a, "--quiet") == 0) o->quiet = 1;
        else {
            fprintf(stderr, "digits_mpi: unknown or incomplete option %s (see the comment at the top of digits_mpi.c)\n", a);
            exit(2);
        }
#undef OPT
    }
    if (o->batch < 1 || o->epochs < 0 || o->hidden < 1) {
        fprintf(stderr, "digits_mpi: --batch and --hidden must be positive, --epochs non-negative\n");
        exit(2);
    }
}

int main(int argc, char **argv) {
    options o;
    parse(argc, argv, &o);
    if (o.compare_a) return compare(&o);

    if (bp_mpi_init(&argc, &argv, o.timeout, &g_mpi) != 0) {
        fprintf(stderr, "digits_mpi: MPI initialisation failed\n");
        return 2;
    }
    const int rank = bp_mpi_rank(g_mpi), world = bp_mpi_world_size(g_mpi);
    dataset train, test;
    load(o.data, o.rows, &train, &test);

    bp_graph *g;
    CALL(bp_graph_new(&g));
    /* Each rank draws its own initialisation; the startup broadcast replaces it with rank 0's. */
    CALL(bp_graph_manual_seed(g, o.seed + 1000u * (uint64_t)rank));
    mlp m = make_mlp(g, o.hidden);
    bp_tensor params[4] = {m.w1, m.b1, m.w2, m.b2};
    bp_collective coll = bp_mpi_collective(g_mpi);
    bp_data_parallel *dp;
    CALL(bp_data_parallel_new(g, params, 4, &coll, &dp));
    float *p, *grad;
    size_t n;
    CALL(bp_data_parallel_parameters(g, dp, &p, &n));
    float *mom = calloc(n, sizeof(float));

    bp_sampler *sampler;
    CALL(bp_sampler_new(train.n, (size_t)o.batch, 1, o.seed, 0, rank, world, &sampler));
    uint64_t start_epoch = 0;
    if (o.resume && o.checkpoint) {
        /* Rank 0 reads its checkpoint; everything else comes from it through broadcasts. */
        float epochs_f = 0;
        if (rank == 0) {
            uint64_t done = 0;
            CALL(bp_data_parallel_parameters(g, dp, &p, &n));
            if (!load_checkpoint(o.checkpoint, &done, p, mom, n)) bp_mpi_abort(g_mpi, 2, "cannot read the checkpoint to resume from");
            epochs_f = (float)done;
        }
        CALL(bp_data_parallel_sync_parameters(g, dp));
        if (bp_mpi_broadcast_f32(g_mpi, mom, n) || bp_mpi_broadcast_f32(g_mpi, &epochs_f, 1))
            bp_mpi_abort(g_mpi, 3, "the resume broadcast failed");
        start_epoch = (uint64_t)epochs_f;
        /* The sampler's permutations are seeded: replaying the finished epochs' draws puts every rank
         * exactly where the checkpoint was taken. */
        for (uint64_t e = 0; e < start_epoch; e++) CALL(bp_sampler_start_epoch(sampler));
        if (rank == 0 && !o.quiet) printf("resumed from %s after epoch %llu\n", o.checkpoint, (unsigned long long)start_epoch);
    }

    int64_t *rows = malloc((size_t)o.batch * sizeof(int64_t));
    float *xb = malloc((size_t)o.batch * FEATURES * sizeof(float));
    int64_t *yb = malloc((size_t)o.batch * sizeof(int64_t));
    long step = 0;
    double train_seconds = 0;
    size_t samples = 0;
    if (rank == 0 && !o.quiet)
        printf("digits_mpi: %d rank(s), %zu training rows (%zu per rank per epoch), batch %d per rank (%d global), %zu parameters\n",
               world, train.n, (train.n + (size_t)world - 1) / (size_t)world, o.batch, o.batch * world, n);
    for (uint64_t epoch = start_epoch; epoch < (uint64_t)o.epochs; epoch++) {
        CALL(bp_sampler_start_epoch(sampler));
        double t0 = now(), loss_sum = 0;
        long batches = 0;
        for (;;) {
            size_t count;
            CALL(bp_sampler_next(sampler, rows, (size_t)o.batch, &count));
            if (count == 0) break;
            step++;
            if (rank == 1 && step == o.die_at) {
                fprintf(stderr, "digits_mpi: rank 1 exits on purpose at step %ld (--die-at-step)\n", step);
                exit(3);
            }
            if (rank == 1 && step == o.stall_at) {
                fprintf(stderr, "digits_mpi: rank 1 stops answering at step %ld (--stall-at-step)\n", step);
                for (;;) sleep(1000);
            }
            for (size_t i = 0; i < count; i++) {
                memcpy(xb + i * FEATURES, train.x + rows[i] * FEATURES, FEATURES * sizeof(float));
                yb[i] = train.y[rows[i]];
            }
            bp_tensor logits = forward(g, &m, xb, count), y, loss;
            const int64_t yd[1] = {(int64_t)count};
            CALL(bp_tensor_from_i64(g, yb, count, yd, 1, &y));
            CALL(bp_cross_entropy(g, logits, y, &loss));
            double l;
            CALL(bp_tensor_item(g, loss, &l));
            loss_sum += l;
            batches++;
            /* Gradients: zero the flat buffer, backward + one all-reduce + averaging. */
            CALL(bp_data_parallel_gradients(g, dp, &grad, &n));
            memset(grad, 0, n * sizeof(float));
            bp_status s = bp_data_parallel_backward(g, dp, loss);
            if (s == BP_ERR_COLLECTIVE) {
                char why[600];
                snprintf(why, sizeof why, "step %ld: %s", step, bp_last_error_message());
                bp_mpi_abort(g_mpi, 4, why);
            }
            CALL(s);
            /* SGD with momentum (PyTorch's rule) on the flat buffers. */
            CALL(bp_data_parallel_gradients(g, dp, &grad, &n));
            CALL(bp_data_parallel_parameters(g, dp, &p, &n));
            const float lr = (float)o.lr, mu = (float)o.momentum;
            const int first = step == 1 && start_epoch == 0;
            for (size_t i = 0; i < n; i++) {
                mom[i] = first ? grad[i] : mu * mom[i] + grad[i];
                p[i] -= lr * mom[i];
            }
            CALL(bp_graph_reset(g));
            samples += count;
        }
        double dt = now() - t0;
        train_seconds += dt;
        if (rank == 0 && !o.quiet) printf("epoch %llu: mean loss %.4f over %ld steps, %.2f s\n", (unsigned long long)epoch + 1, loss_sum / (double)batches, batches, dt);
        if (rank == 0 && o.checkpoint) {
            CALL(bp_data_parallel_parameters(g, dp, &p, &n));
            save_checkpoint(o.checkpoint, epoch + 1, p, mom, n);
        }
    }

    bp_comm_stats st;
    CALL(bp_data_parallel_stats(dp, &st));
    int status = 0;
    if (rank == 0) {
        double acc = accuracy(g, &m, &test);
        double global_samples = (double)samples * world;
        printf("result: ranks %d, steps %ld, train seconds %.3f, samples/s %.0f, allreduce seconds %.3f (%.1f%%), allreduce calls %llu, bytes per allreduce %zu, test accuracy %.4f\n",
               world, step, train_seconds, train_seconds > 0 ? global_samples / train_seconds : 0.0, st.all_reduce_seconds,
               train_seconds > 0 ? 100.0 * st.all_reduce_seconds / train_seconds : 0.0, (unsigned long long)st.all_reduces,
               n * sizeof(float), acc);
        if (acc < o.min_accuracy) {
            fprintf(stderr, "digits_mpi: test accuracy %.4f is below --min-accuracy %.4f\n", acc, o.min_accuracy);
            status = 1;
        }
        if (o.save_params) {
            CALL(bp_data_parallel_parameters(g, dp, &p, &n));
            FILE *f = fopen(o.save_params, "wb");
            uint64_t n64 = n;
            if (!f || fwrite(&n64, 8, 1, f) != 1 || fwrite(p, sizeof(float), n, f) != n || fclose(f) != 0) {
                fprintf(stderr, "digits_mpi: cannot write %s\n", o.save_params);
                status = 2;
            }
        }
    }
    /* Every rank must agree that the run finished (a peer that failed late is caught here too). */
    if (bp_mpi_barrier(g_mpi) != 0) bp_mpi_abort(g_mpi, 4, "the final barrier failed");
    free(rows);
    free(xb);
    free(yb);
    free(mom);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
    CALL(bp_sampler_free(sampler));
    CALL(bp_data_parallel_free(dp));
    CALL(bp_graph_free(g));
    bp_mpi_finalize(g_mpi);
    return status;
}

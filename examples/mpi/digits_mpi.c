/* The digits example (workload D: examples/c/digits.c) in data-parallel mode over MPI: the same model,
 * optimizer and data through backprop's C ABI, with three additions:
 *   - bp_data_parallel_new flattens the model's parameters and broadcasts rank 0's values (startup sync);
 *   - bp_loader_shard gives each rank its own slice of every seeded epoch;
 *   - bp_data_parallel_backward ends each step with one all-reduce of the flat gradient buffer.
 * With N ranks and a batch of B per rank, every step sees N·B rows: the same steps as one process with
 * batch N·B (the test mpi.matches_single_process checks it).
 *
 *   mpirun -np 2 ./digits_mpi --data data/digits                      # 2 processes on this machine
 *   mpirun -np 8 --hostfile hosts ./digits_mpi --data /shared/digits    # 8 processes on the listed hosts
 *   ./digits_mpi --compare a.bin b.bin --tol 1e-5                      # max |a - b| of two saved runs
 *
 * Options: --data DIR (data/digits), --epochs E (30), --batch B per rank (32), --lr (1e-3, Adam),
 * --hidden H (128), --rows N (train on the first N training rows; 0 = all), --seed S (0),
 * --timeout SECONDS (60, for every collective), --save-params FILE (rank 0 writes the final flat
 * parameters), --checkpoint FILE (rank 0 writes model, Adam state and loader position after every
 * epoch), --resume (every rank restores --checkpoint, written by rank 0, and goes on; the file must be
 * readable by every rank: same machine or a shared file system), --min-accuracy A (exit 1 when rank 0's
 * test accuracy is below A), --die-at-step K / --stall-at-step K (rank 1 exits / stops answering at
 * its step K: the failure tests), --allreduce-only N (no training: time N all-reduces of the gradient
 * buffer alone, the communication cost without compute or load imbalance), --quiet (no per-epoch lines).
 * Rank 0 prints one line per epoch and a final "result:" line: throughput, all-reduce time, accuracy.
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

enum { CLASSES = 10, MAX_ROWS = 4096, MAX_PARAMS = 8 };

typedef struct {
    const char *data, *save_params, *checkpoint, *compare_a, *compare_b;
    int epochs, batch, rows, hidden, resume, die_at, stall_at, quiet, allreduce_only;
    double lr, timeout, tol, min_accuracy;
    uint64_t seed;
} options;

static bp_mpi *g_mpi; /* for fail(): a failure on one rank must end the whole job */

static void fail(const char *what, bp_status s) {
    char why[768];
    snprintf(why, sizeof why, "%s: %s: %s", what, bp_status_name(s), bp_last_error_message());
    if (g_mpi) bp_mpi_abort(g_mpi, s == BP_ERR_COLLECTIVE ? 4 : 2, why);
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

static void parse(int argc, char **argv, options *o) {
    *o = (options){"data/digits", NULL, NULL, NULL, NULL, 30, 32, 0, 128, 0, -1, -1, 0, 0, 1e-3, 60.0, 1e-5, 0.0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && ++i)
        if (OPT("--data")) o->data = v;
        else if (OPT("--epochs")) o->epochs = atoi(v);
        else if (OPT("--batch")) o->batch = atoi(v);
        else if (OPT("--lr")) o->lr = atof(v);
        else if (OPT("--hidden")) o->hidden = atoi(v);
        else if (OPT("--rows")) o->rows = atoi(v);
        else if (OPT("--seed")) o->seed = strtoull(v, NULL, 10);
        else if (OPT("--timeout")) o->timeout = atof(v);
        else if (OPT("--save-params")) o->save_params = v;
        else if (OPT("--checkpoint")) o->checkpoint = v;
        else if (OPT("--die-at-step")) o->die_at = atoi(v);
        else if (OPT("--stall-at-step")) o->stall_at = atoi(v);
        else if (OPT("--tol")) o->tol = atof(v);
        else if (OPT("--min-accuracy")) o->min_accuracy = atof(v);
        else if (OPT("--allreduce-only")) o->allreduce_only = atoi(v);
        else if (strcmp(a, "--compare") == 0 && i + 2 < argc) {
            o->compare_a = argv[++i];
            o->compare_b = argv[++i];
        } else if (strcmp(a, "--resume") == 0) o->resume = 1;
        else if (strcmp(a, "--quiet") == 0) o->quiet = 1;
        else {
            fprintf(stderr, "digits_mpi: unknown or incomplete option %s (see the top of digits_mpi.c)\n", a);
            exit(2);
        }
#undef OPT
    }
    if (o->batch < 1 || o->epochs < 0 || o->hidden < 1 || o->rows < 0) {
        fprintf(stderr, "digits_mpi: --batch and --hidden must be positive, --epochs and --rows non-negative\n");
        exit(2);
    }
}

/* ----- parameter files (--save-params, --compare) ---------------------------------------------- */

static float *read_params(const char *path, uint64_t *n) {
    FILE *f = fopen(path, "rb");
    float *p = NULL;
    if (f && fread(n, sizeof *n, 1, f) == 1 && *n < (1u << 30) && (p = malloc(*n * sizeof(float))) &&
        fread(p, sizeof(float), *n, f) == *n) {
        fclose(f);
        return p;
    }
    fprintf(stderr, "digits_mpi: cannot read %s\n", path);
    exit(2);
}

static int compare(const options *o) {
    uint64_t na, nb;
    float *a = read_params(o->compare_a, &na), *b = read_params(o->compare_b, &nb);
    double worst = 0;
    if (na != nb) {
        printf("compare: %llu vs %llu parameters\n", (unsigned long long)na, (unsigned long long)nb);
        return 1;
    }
    for (uint64_t i = 0; i < na; i++) worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
    printf("compare: %llu parameters, max abs diff %.3e (tolerance %.1e)\n", (unsigned long long)na, worst, o->tol);
    free(a);
    free(b);
    return worst <= o->tol ? 0 : 1;
}

static void save_params(const char *path, const float *p, size_t n) {
    FILE *f = fopen(path, "wb");
    uint64_t n64 = n;
    int ok = f && fwrite(&n64, sizeof n64, 1, f) == 1 && fwrite(p, sizeof(float), n, f) == n;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok) bp_mpi_abort(g_mpi, 2, "cannot write --save-params");
}

/* ----- data ------------------------------------------------------------------------------------ */

/* The fixed split of examples/c/digits.c, standardised with the training rows' statistics; with
 * `rows` > 0 only the first `rows` training rows are kept. */
static void load(const options *o, bp_dataset **train, bp_dataset **test) {
    static size_t test_rows[MAX_ROWS], rest[MAX_ROWS];
    char path[4096];
    size_t n_test = 0, n, dim;
    snprintf(path, sizeof path, "%s/digits_test_rows.txt", o->data);
    FILE *f = fopen(path, "r");
    if (!f) bp_mpi_abort(g_mpi, 2, "cannot open digits_test_rows.txt (see --data)");
    while (n_test < MAX_ROWS && fscanf(f, "%zu", &test_rows[n_test]) == 1) n_test++;
    fclose(f);
    bp_dataset *all;
    snprintf(path, sizeof path, "%s/digits.csv", o->data);
    CALL(bp_dataset_load_csv(path, -1, false, &all));
    CALL(bp_dataset_split(all, test_rows, n_test, train, test));
    CALL(bp_dataset_free(all));
    CALL(bp_dataset_size(*train, &n, &dim));
    if (o->rows > 0 && (size_t)o->rows < n) {
        bp_dataset *kept, *dropped;
        for (size_t i = (size_t)o->rows; i < n; i++) rest[i - (size_t)o->rows] = i;
        CALL(bp_dataset_split(*train, rest, n - (size_t)o->rows, &kept, &dropped));
        CALL(bp_dataset_free(*train));
        CALL(bp_dataset_free(dropped));
        *train = kept;
    }
    double *mean = malloc(dim * sizeof *mean), *sd = malloc(dim * sizeof *sd);
    CALL(bp_dataset_column_stats(*train, mean, sd, dim));
    CALL(bp_dataset_standardize(*train, mean, sd, dim));
    CALL(bp_dataset_standardize(*test, mean, sd, dim));
    free(mean);
    free(sd);
}

static double accuracy(bp_graph *g, bp_model *model, bp_dataset *data) {
    bp_tensor x, y, logits;
    double acc;
    CALL(bp_dataset_to_tensors(data, g, &x, &y));
    CALL(bp_model_predict(model, g, x, &logits));
    CALL(bp_accuracy(g, logits, y, &acc));
    CALL(bp_graph_reset(g));
    return acc;
}

/* ----- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    options o;
    parse(argc, argv, &o);
    if (o.compare_a) return compare(&o);

    if (bp_mpi_init(&argc, &argv, o.timeout, &g_mpi) != 0) {
        fprintf(stderr, "digits_mpi: MPI initialisation failed\n");
        return 2;
    }
    const int rank = bp_mpi_rank(g_mpi), world = bp_mpi_world_size(g_mpi);
    bp_dataset *train, *test;
    load(&o, &train, &test);
    size_t n_train, dim;
    CALL(bp_dataset_size(train, &n_train, &dim));

    /* The model and optimizer of examples/c/digits.c. Each rank draws its own initialisation (seeded by
     * its rank) to show that the startup broadcast makes them equal. */
    bp_graph *g;
    bp_model *model;
    bp_optimizer *opt;
    bp_loader *loader;
    CALL(bp_graph_new(&g));
    CALL(bp_graph_manual_seed(g, o.seed + 1000u * (uint64_t)rank));
    CALL(bp_model_new(&model));
    CALL(bp_model_add_linear(model, g, NULL, dim, (size_t)o.hidden, true));
    CALL(bp_model_add_layer(model, NULL, BP_LAYER_RELU, 0.0));
    CALL(bp_model_add_linear(model, g, NULL, (size_t)o.hidden, CLASSES, true));
    CALL(bp_optimizer_new_adam(g, model, o.lr, 0.9, 0.999, 1e-8, 0.0, false, &opt));
    /* Every rank: the same rows, batch size and seed; its own shard. */
    CALL(bp_loader_new(n_train, (size_t)o.batch, true, o.seed, &loader));
    CALL(bp_loader_shard(loader, rank, world));

    if (o.resume) {
        if (!o.checkpoint) bp_mpi_abort(g_mpi, 2, "--resume needs --checkpoint");
        /* Rank 0's checkpoint is every rank's state: the parameters and Adam's buffers are the same on
         * every rank after each step, and so is the sharded loader's state (one permutation, one
         * position). */
        CALL(bp_checkpoint_load(o.checkpoint, g, model, opt, NULL, loader));
    }
    bp_tensor params[MAX_PARAMS];
    size_t n_params;
    CALL(bp_model_parameters(model, params, MAX_PARAMS, &n_params));
    bp_collective coll = bp_mpi_collective(g_mpi);
    bp_data_parallel *dp;
    CALL(bp_data_parallel_new(g, params, n_params, &coll, &dp));
    float *flat;
    size_t n_flat;
    CALL(bp_data_parallel_parameters(g, dp, &flat, &n_flat));
    if (o.allreduce_only > 0) {
        /* The all-reduce alone, after a barrier so that no rank waits for another's compute. */
        if (bp_mpi_barrier(g_mpi) != 0) bp_mpi_abort(g_mpi, 4, "barrier failed");
        double t0 = now();
        for (int i = 0; i < o.allreduce_only; i++) CALL(bp_data_parallel_average_gradients(g, dp));
        double dt = now() - t0;
        if (rank == 0)
            printf("allreduce-only: ranks %d, %d calls of %zu bytes, %.1f us per call\n", world, o.allreduce_only,
                   n_flat * sizeof(float), 1e6 * dt / o.allreduce_only);
        o.epochs = 0;
    }
    uint64_t epoch;
    CALL(bp_loader_epoch(loader, &epoch));
    if (rank == 0 && !o.quiet) {
        if (o.resume) printf("resumed from %s after epoch %llu\n", o.checkpoint, (unsigned long long)epoch);
        printf("digits_mpi: %d rank(s), %zu training rows (%zu per rank per epoch), batch %d per rank (%d global), %zu parameters\n",
               world, n_train, (n_train + (size_t)world - 1) / (size_t)world, o.batch, o.batch * world, n_flat);
    }

    long step = 0;
    size_t samples = 0;
    double train_seconds = 0;
    for (; epoch < (uint64_t)o.epochs; epoch++) {
        double t0 = now(), loss_sum = 0;
        long batches = 0;
        CALL(bp_loader_start_epoch(loader));
        for (;;) {
            bp_tensor x, y, logits, loss;
            bool more;
            size_t b;
            double l;
            CALL(bp_loader_next_batch(loader, g, train, &x, &y, &more));
            if (!more) break;
            step++;
            if (rank == 1 && step == o.die_at) {
                fprintf(stderr, "digits_mpi: rank 1 exits on purpose at step %ld (--die-at-step)\n", step);
                exit(3);
            }
            if (rank == 1 && step == o.stall_at) {
                fprintf(stderr, "digits_mpi: rank 1 stops answering at step %ld (--stall-at-step)\n", step);
                for (;;) sleep(1000);
            }
            CALL(bp_optimizer_zero_grad(opt, g)); /* zeroes the flat gradient buffer in place */
            CALL(bp_model_forward(model, g, x, &logits));
            CALL(bp_cross_entropy(g, logits, y, &loss));
            CALL(bp_data_parallel_backward(g, dp, loss)); /* backward + one all-reduce + averaging */
            CALL(bp_optimizer_step(opt, g));
            CALL(bp_tensor_item(g, loss, &l));
            CALL(bp_tensor_numel(g, y, &b));
            loss_sum += l;
            batches++;
            samples += b;
            CALL(bp_graph_reset(g));
        }
        double dt = now() - t0;
        train_seconds += dt;
        if (rank == 0 && !o.quiet)
            printf("epoch %2llu  rank 0 mean loss %.4f  %ld steps  %.3f s\n", (unsigned long long)epoch + 1,
                   loss_sum / (double)(batches ? batches : 1), batches, dt);
        if (rank == 0 && o.checkpoint) CALL(bp_checkpoint_save(o.checkpoint, g, model, opt, NULL, loader));
    }

    bp_comm_stats st;
    CALL(bp_data_parallel_stats(dp, &st));
    int status = 0;
    if (rank == 0) {
        double acc = accuracy(g, model, test);
        double global_rows = (double)samples * world;
        printf("result: ranks %d, steps %ld, train seconds %.3f, samples/s %.0f, allreduce seconds %.3f (%.1f%%), "
               "allreduce calls %llu, bytes per allreduce %zu, test accuracy %.4f\n",
               world, step, train_seconds, train_seconds > 0 ? global_rows / train_seconds : 0.0, st.all_reduce_seconds,
               train_seconds > 0 ? 100.0 * st.all_reduce_seconds / train_seconds : 0.0,
               (unsigned long long)st.all_reduces, n_flat * sizeof(float), acc);
        if (acc < o.min_accuracy) {
            fprintf(stderr, "digits_mpi: test accuracy %.4f is below --min-accuracy %.4f\n", acc, o.min_accuracy);
            status = 1;
        }
        if (o.save_params) {
            CALL(bp_data_parallel_parameters(g, dp, &flat, &n_flat));
            save_params(o.save_params, flat, n_flat);
        }
    }
    /* Every rank agrees that the run finished: a peer that failed late is caught here too. */
    if (bp_mpi_barrier(g_mpi) != 0) bp_mpi_abort(g_mpi, 4, "the final barrier failed");
    CALL(bp_data_parallel_free(dp));
    CALL(bp_loader_free(loader));
    CALL(bp_optimizer_free(opt));
    CALL(bp_model_free(model));
    CALL(bp_graph_free(g));
    CALL(bp_dataset_free(train));
    CALL(bp_dataset_free(test));
    bp_mpi_finalize(g_mpi);
    return status;
}

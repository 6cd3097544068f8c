/* Several threads each train their own graph at the same time (no shared state, no global lock); every
 * thread's losses and final weights equal the single-threaded run's bit for bit. */
#include "seed_model.h"

#include <pthread.h>

enum { THREADS = 4, STEPS = 5 };

typedef struct {
    double losses[STEPS];
    float w1[SEED_H1 * SEED_IN];
    int failed;
} run_result;

static void train(run_result *r) {
    seed_model m;
    seed_init(&m);
    for (int s = 0; s < STEPS; s++) r->losses[s] = seed_sgd_step(&m, 0.01);
    OK(bp_tensor_read_f32(m.g, m.W1, r->w1, SEED_H1 * SEED_IN));
    /* Errors are per thread: a failure here must not show up in another thread's message. */
    bp_tensor stale = {0, 0, 0};
    r->failed = bp_tensor_numel(m.g, stale, NULL) != BP_ERR_INVALID_ARGUMENT ||
                strstr(bp_last_error_message(), "numel_out") == NULL;
    OK(bp_graph_free(m.g));
}

static void *thread_main(void *arg) {
    train((run_result *)arg);
    return NULL;
}

int main(void) {
    run_result reference, results[THREADS];
    pthread_t threads[THREADS];
    memset(&reference, 0, sizeof reference);
    memset(results, 0, sizeof results);
    train(&reference);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&threads[t], NULL, thread_main, &results[t]) == 0);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(threads[t], NULL) == 0);
    for (int t = 0; t < THREADS; t++) {
        CHECK(!results[t].failed);
        CHECK(memcmp(results[t].losses, reference.losses, sizeof reference.losses) == 0);
        CHECK(memcmp(results[t].w1, reference.w1, sizeof reference.w1) == 0);
    }
    CHECK(reference.losses[STEPS - 1] < reference.losses[0]);
    return bp_test_finish("threads");
}

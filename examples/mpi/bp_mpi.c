/* bp_mpi: backprop's collective hook over MPI (see bp_mpi.h). */
#define _POSIX_C_SOURCE 200809L
#include "bp_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct bp_mpi {
    MPI_Comm comm;
    int rank;
    int world;
    double timeout;
    int owns_mpi;
    double allreduce_seconds;
    unsigned long allreduces;
};

static void report_mpi_error(const bp_mpi *m, const char *what, int code) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, msg, &len);
    fprintf(stderr, "bp_mpi: rank %d: %s failed: %s\n", m->rank, what, msg);
}

/* Polls a nonblocking collective until it completes or the deadline passes. Spinning for the first
 * millisecond keeps the latency of a fast collective low; after that the poll sleeps 100 us between
 * tests so a rank waiting for a slow peer does not burn a core another rank may need. */
static int wait_with_deadline(bp_mpi *m, MPI_Request *req, const char *what, size_t len) {
    double start = MPI_Wtime();
    struct timespec nap = {0, 100000};
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) {
            report_mpi_error(m, what, rc);
            return BP_MPI_ERR_MPI;
        }
        if (done) return 0;
        double waited = MPI_Wtime() - start;
        if (waited > m->timeout) {
            fprintf(stderr,
                    "bp_mpi: rank %d: %s of %zu floats timed out after %.1f s: a peer rank died, hangs, or "
                    "fell out of step; the job must be aborted\n",
                    m->rank, what, len, m->timeout);
            return BP_MPI_ERR_TIMEOUT;
        }
        if (waited > 1e-3) nanosleep(&nap, NULL);
    }
}

static int32_t mpi_all_reduce(void *user, float *buf, size_t len) {
    bp_mpi *m = (bp_mpi *)user;
    if (len > (size_t)INT_MAX) return BP_MPI_ERR_TOO_LARGE;
    double t = MPI_Wtime();
    MPI_Request req;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)len, MPI_FLOAT, MPI_SUM, m->comm, &req);
    if (rc != MPI_SUCCESS) {
        report_mpi_error(m, "MPI_Iallreduce", rc);
        return BP_MPI_ERR_MPI;
    }
    rc = wait_with_deadline(m, &req, "all-reduce", len);
    m->allreduce_seconds += MPI_Wtime() - t;
    m->allreduces++;
    return rc;
}

static int32_t mpi_broadcast(void *user, float *buf, size_t len) {
    return bp_mpi_broadcast_f32((bp_mpi *)user, buf, len);
}

int bp_mpi_broadcast_f32(bp_mpi *m, float *buf, size_t len) {
    if (len > (size_t)INT_MAX) return BP_MPI_ERR_TOO_LARGE;
    MPI_Request req;
    int rc = MPI_Ibcast(buf, (int)len, MPI_FLOAT, 0, m->comm, &req);
    if (rc != MPI_SUCCESS) {
        report_mpi_error(m, "MPI_Ibcast", rc);
        return BP_MPI_ERR_MPI;
    }
    return wait_with_deadline(m, &req, "broadcast", len);
}

int bp_mpi_barrier(bp_mpi *m) {
    MPI_Request req;
    int rc = MPI_Ibarrier(m->comm, &req);
    if (rc != MPI_SUCCESS) {
        report_mpi_error(m, "MPI_Ibarrier", rc);
        return BP_MPI_ERR_MPI;
    }
    return wait_with_deadline(m, &req, "barrier", 0);
}

int bp_mpi_init(int *argc, char ***argv, double timeout_seconds, bp_mpi **out) {
    bp_mpi *m = (bp_mpi *)calloc(1, sizeof *m);
    if (!m) return BP_MPI_ERR_MPI;
    int initialised = 0;
    MPI_Initialized(&initialised);
    if (!initialised) {
        if (MPI_Init(argc, argv) != MPI_SUCCESS) {
            free(m);
            return BP_MPI_ERR_MPI;
        }
        m->owns_mpi = 1;
    }
    /* A private communicator: the host's own MPI traffic cannot interleave with the collectives. */
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->rank);
    MPI_Comm_size(m->comm, &m->world);
    m->timeout = timeout_seconds > 0 ? timeout_seconds : 60.0;
    *out = m;
    return 0;
}

bp_collective bp_mpi_collective(bp_mpi *m) {
    bp_collective c;
    c.user = m;
    c.rank = m->rank;
    c.world_size = m->world;
    c.all_reduce = mpi_all_reduce;
    c.broadcast = mpi_broadcast;
    return c;
}

int bp_mpi_rank(const bp_mpi *m) { return m->rank; }

int bp_mpi_world_size(const bp_mpi *m) { return m->world; }

double bp_mpi_allreduce_seconds(const bp_mpi *m, unsigned long *calls) {
    if (calls) *calls = m->allreduces;
    return m->allreduce_seconds;
}

void bp_mpi_abort(bp_mpi *m, int code, const char *why) {
    if (why) fprintf(stderr, "bp_mpi: rank %d: aborting the job: %s\n", m->rank, why);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1); /* MPI_Abort does not return; this is for the compiler */
}

void bp_mpi_finalize(bp_mpi *m) {
    if (!m) return;
    MPI_Comm_free(&m->comm);
    if (m->owns_mpi) MPI_Finalize();
    free(m);
}

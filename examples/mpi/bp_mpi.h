/* bp_mpi: the collective hook of backprop (bp_collective) implemented with MPI, for data-parallel
 * training over processes and machines. It is an optional part of the project: libbp itself has no MPI
 * dependency; link this file (and MPI) into your program only when you want MPI. Any other transport
 * (NCCL, Gloo, your own) plugs into the same bp_collective hook.
 *
 *   bp_mpi *mpi;
 *   bp_mpi_init(&argc, &argv, 60.0, &mpi);        // MPI_Init + a private communicator
 *   bp_collective c = bp_mpi_collective(mpi);      // rank, world size, the two callbacks
 *   bp_data_parallel_new(graph, params, n, &c, &dp);  // broadcasts rank 0's parameters
 *   ... bp_data_parallel_backward(graph, dp, loss) each step (one MPI all-reduce) ...
 *   bp_mpi_finalize(mpi);
 *
 * Failure: every collective is nonblocking (MPI_Iallreduce / MPI_Ibcast) and polled against a deadline.
 * When a peer does not take part in time (it died, hangs, or fell out of step) the callback prints a
 * clear message on stderr and returns BP_MPI_ERR_TIMEOUT, so the bp call fails with BP_ERR_COLLECTIVE
 * instead of hanging forever. The communicator is then unusable: call bp_mpi_abort to end the whole job.
 */
#ifndef BP_MPI_H
#define BP_MPI_H

#include "bp.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A collective timed out: a peer rank did not take part before the deadline. */
#define BP_MPI_ERR_TIMEOUT 1
/** MPI itself returned an error (the message is printed on stderr). */
#define BP_MPI_ERR_MPI 2
/** The buffer has more elements than one MPI call takes (INT_MAX). */
#define BP_MPI_ERR_TOO_LARGE 3

/** An MPI transport for bp_collective (opaque). */
typedef struct bp_mpi bp_mpi;

/** Initialises MPI (unless the host already did) and makes a private duplicate of MPI_COMM_WORLD whose
 * errors are returned rather than fatal. `timeout_seconds` bounds every collective. Returns 0 on
 * success. The caller owns *out and releases it with bp_mpi_finalize (or bp_mpi_abort). */
int bp_mpi_init(int *argc, char ***argv, double timeout_seconds, bp_mpi **out);

/** The bp_collective for this process: rank, world size, and the MPI callbacks (user = mpi). Valid
 * while `mpi` lives. */
bp_collective bp_mpi_collective(bp_mpi *mpi);

/** This process's rank. */
int bp_mpi_rank(const bp_mpi *mpi);

/** The number of ranks. */
int bp_mpi_world_size(const bp_mpi *mpi);

/** Broadcasts `buf[0..len]` from rank 0 with the same timeout (for the host's own state: an epoch
 * counter, optimizer buffers after a resume). Returns 0 or a BP_MPI_ERR_* code. */
int bp_mpi_broadcast_f32(bp_mpi *mpi, float *buf, size_t len);

/** Waits for every rank (with the timeout). Returns 0 or a BP_MPI_ERR_* code. */
int bp_mpi_barrier(bp_mpi *mpi);

/** Seconds spent inside MPI all-reduce calls so far, and how many. */
double bp_mpi_allreduce_seconds(const bp_mpi *mpi, unsigned long *calls);

/** Ends the whole job now (MPI_Abort) with `code`, after printing `why` (may be NULL) on stderr. */
void bp_mpi_abort(bp_mpi *mpi, int code, const char *why);

/** Frees the communicator and finalises MPI (if bp_mpi_init initialised it). NULL does nothing. */
void bp_mpi_finalize(bp_mpi *mpi);

#ifdef __cplusplus
}
#endif

#endif

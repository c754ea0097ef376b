/* src/core/pool.h - a small pool of persistent worker threads for data-parallel loops on the
 * host: kiln_pool_run(p, n, threads, fn, user) calls fn(user, i) once for every i in 0 .. n - 1,
 * spread over the calling thread and up to threads - 1 of the pool's workers, and returns when
 * every call has returned. The workers are started once (kiln_pool_create) and sleep on a
 * condition variable between runs, so a run costs a wake-up, not a thread start: what each
 * decoding step of Whisper (models/whisper/decode.c) needs for its rows.
 *
 * Which thread runs which i is not fixed (the threads take the next index in turn): fn must
 * write only what index i owns, so that the results do not depend on the thread count. fn cannot
 * fail; it must not call kiln_pool_run on the same pool.
 *
 * Thread safety: one kiln_pool_run at a time per pool (kiln_whisper is used from one thread at
 * a time). A NULL pool runs every call on the calling thread, in order. Not here: task queues,
 * futures, work stealing; nothing that outlives one run. Not a public header. */
#ifndef KILN_CORE_POOL_H
#define KILN_CORE_POOL_H

#include <stdint.h>

#include "kiln/status.h"

#define KILN_POOL_MAX_THREADS 64

typedef struct kiln_pool kiln_pool;
typedef void (*kiln_pool_fn)(void *user, int32_t i);

/* A pool of threads - 1 workers (threads 1 .. KILN_POOL_MAX_THREADS counts the calling thread).
 * Workers that cannot be started are done without (kiln_pool_threads says how many run);
 * KILN_ERR_INVALID_ARG for a count out of range, KILN_ERR_OUT_OF_MEMORY. */
kiln_status kiln_pool_create(int32_t threads, kiln_pool **out);
/* Stops and joins the workers, frees the pool (NULL: nothing). Not during a run. */
void kiln_pool_destroy(kiln_pool *p);
/* Threads a run may use: the workers started plus the calling thread (1 for NULL). */
int32_t kiln_pool_threads(const kiln_pool *p);
/* fn(user, i) for i in 0 .. n - 1 on at most `threads` threads (the caller included; <= 1 or a
 * NULL pool: the caller alone, i in order). */
void kiln_pool_run(kiln_pool *p, int32_t n, int32_t threads, kiln_pool_fn fn, void *user);

#endif

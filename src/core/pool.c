/* src/core/pool.c - kiln_pool (pool.h): persistent workers on POSIX threads (not C11's
 * thrd_create, which ThreadSanitizer does not see start a thread with glibc >= 2.34).
 *
 * One mutex guards the run's description; a run bumps `gen`, hands out threads - 1 tickets and
 * signals as many workers; a worker that wakes to a new generation takes a ticket (or, when none
 * is left, goes back to sleep), then claims indices from an atomic counter until none is left,
 * and the last worker out signals the caller. The caller claims indices too; once none is left
 * it takes back the tickets not taken yet (a worker that wakes late finds none: a run never waits
 * for a wake-up that would come too late to help) and waits for the workers that took one.
 * Workers never touch a run's data after counting themselves out, so the caller may reuse it at
 * once. */
#include "core/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/error.h"

struct kiln_pool {
  pthread_mutex_t lock;
  pthread_cond_t wake;   /* workers wait for a run (or quit) */
  pthread_cond_t idle;   /* the caller waits for the workers of a run */
  pthread_t tid[KILN_POOL_MAX_THREADS];
  int32_t workers;       /* started */
  int quit;
  uint64_t gen;          /* runs so far */
  int32_t tickets;       /* workers still wanted by this run */
  int32_t busy;          /* workers that took a ticket and are not done */
  /* the run */
  kiln_pool_fn fn;
  void *user;
  int32_t n;
  atomic_int next;       /* the next index to claim */
};

static void claim_all(kiln_pool *p) {
  for (int32_t i; (i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->n;) p->fn(p->user, i);
}

static void *worker(void *arg) {
  kiln_pool *p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->quit && (p->gen == seen || p->tickets == 0)) {
      seen = p->gen; /* a run with every ticket taken: not this worker's */
      pthread_cond_wait(&p->wake, &p->lock);
    }
    if (p->quit) break;
    seen = p->gen;
    p->tickets--;
    pthread_mutex_unlock(&p->lock);
    claim_all(p);
    pthread_mutex_lock(&p->lock);
    if (--p->busy == 0) pthread_cond_signal(&p->idle);
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

kiln_status kiln_pool_create(int32_t threads, kiln_pool **out) {
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_pool_create: NULL argument");
  if (threads < 1 || threads > KILN_POOL_MAX_THREADS)
    return kiln_error(KILN_ERR_INVALID_ARG, "thread pool: %d threads; give 1 to %d", threads, KILN_POOL_MAX_THREADS);
  kiln_pool *p = calloc(1, sizeof *p);
  if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "thread pool: out of memory");
  int have_lock = pthread_mutex_init(&p->lock, NULL) == 0;
  int have_wake = have_lock && pthread_cond_init(&p->wake, NULL) == 0;
  int have_idle = have_wake && pthread_cond_init(&p->idle, NULL) == 0;
  if (!have_idle) {
    if (have_wake) pthread_cond_destroy(&p->wake);
    if (have_lock) pthread_mutex_destroy(&p->lock);
    free(p);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "thread pool: cannot create a mutex or condition variable");
  }
  atomic_init(&p->next, 0);
  for (int32_t i = 0; i + 1 < threads; i++) /* a worker that cannot start is done without */
    if (pthread_create(&p->tid[p->workers], NULL, worker, p) == 0) p->workers++;
  *out = p;
  return KILN_OK;
}

void kiln_pool_destroy(kiln_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->quit = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (int32_t i = 0; i < p->workers; i++) pthread_join(p->tid[i], NULL);
  pthread_cond_destroy(&p->idle), pthread_cond_destroy(&p->wake);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

int32_t kiln_pool_threads(const kiln_pool *p) { return p ? p->workers + 1 : 1; }

void kiln_pool_run(kiln_pool *p, int32_t n, int32_t threads, kiln_pool_fn fn, void *user) {
  int32_t helpers = p ? threads - 1 : 0;
  if (p && helpers > p->workers) helpers = p->workers;
  if (helpers > n - 1) helpers = n - 1;
  if (helpers <= 0) {
    for (int32_t i = 0; i < n; i++) fn(user, i);
    return;
  }
  pthread_mutex_lock(&p->lock);
  p->fn = fn, p->user = user, p->n = n;
  atomic_store_explicit(&p->next, 0, memory_order_relaxed);
  p->tickets = helpers, p->busy = helpers;
  p->gen++;
  for (int32_t k = 0; k < helpers; k++) pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->lock);
  claim_all(p);
  pthread_mutex_lock(&p->lock);
  p->busy -= p->tickets; /* every index is claimed: the workers not awake yet are not waited for */
  p->tickets = 0;
  while (p->busy > 0) pthread_cond_wait(&p->idle, &p->lock);
  pthread_mutex_unlock(&p->lock);
}

/* src/models/whisper/decode_internal.h - shared by the decoding files (decode.c, beam.c,
 * transcribe.c): the state of one window's decoding as a task over decoder rows, and the step
 * that advances the tasks of several window slots together. Not a public header.
 *
 * A window's decoding (greedy, best_of samples, or beam search) is a dec_task that owns n
 * "storage rows": decoder rows of its slot (slot x G .. slot x G + G - 1 with G rows per slot,
 * kiln_whisper_set_beams / slots_reset) or, when n > G (only with one slot), KV copies stepped
 * through the G decoder rows in turns. dec_task_begin decodes the prompt, dec_step feeds every
 * task's next tokens (dec_task.next, -1: idle row) as one batch and dec_task_choose picks the
 * next tokens from the logits; a task is finished when dec_task.done is set. */
#ifndef KILN_DECODE_INTERNAL_H
#define KILN_DECODE_INTERNAL_H

#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/tokenizer.h"
#include "kiln/whisper.h"

typedef struct kiln_whisper_kv kiln_whisper_kv; /* whisper_internal.h */

#define DEC_MAX_SUPPRESS (KILN_WHISPER_MAX_SUPPRESS + 8)
#define DEC_MAX_BEAMS 63
#define DEC_MAX_ROWS 64 /* rows of one window: beams or best_of samples */

typedef struct dec_ctx {
  kiln_whisper *w;
  const kiln_whisper_options *o;
  kiln_tokenizer *tok;
  int32_t vocab, n_ctx, eot, sot, ts_begin, no_ts, no_speech, blank;
  int32_t suppress[DEC_MAX_SUPPRESS], n_suppress;
  int timestamps;
  int32_t max_initial;      /* timestamp index, or -1 */
  int32_t sample_len;
  int32_t *init, n_init;    /* [<|startofprev|> prompt] sot sequence */
  int32_t sot_index, sample_begin;
} dec_ctx;

kiln_status dec_ctx_init(dec_ctx *d, kiln_whisper *w, const kiln_whisper_options *o, const char *language,
                         const int32_t *prompt, int32_t n_prompt);
void dec_ctx_free(dec_ctx *d);
/* log(sum(exp(row[from:to]))) (kiln_row_logsumexp: within about 1e-6); -inf when all are -inf. */
double dec_logsumexp(const float *row, int32_t from, int32_t to);
/* Logit filters on row [vocab], given the n tokens so far (initial ones included). */
void dec_apply_filters(const dec_ctx *d, float *row, const int32_t *toks, int32_t n);
int32_t dec_sampled_length(const dec_ctx *d, const int32_t *seq, int32_t n);
/* MaximumLikelihoodRanker's score. */
double dec_rank_score(const kiln_whisper_options *o, double sum, int32_t length);
/* Fill a decoding result from a finished sequence (decode.c). */
kiln_status dec_fill_result(dec_ctx *d, const int32_t *seq, int32_t n, float sum, double T, double no_speech,
                            const char *language, kiln_whisper_decoding **out);
/* Language detection on the window encoded for decoder row `row` (its cache is emptied). */
kiln_status dec_detect_row(kiln_whisper *w, int32_t row, float *probs, const char **code);

/* Decoder rows each window decoding of options o needs: beam_size for beam search at T = 0,
 * best_of for sampling at T > 0 (over every temperature of the fallback), else 1. */
int32_t dec_rows_needed(const kiln_whisper_options *o, const double *temperatures, int32_t n_temperatures);

/* The storage rows of a task: decoder rows first .. first + n - 1 (kv NULL), or KV copies
 * kv[0 .. n - 1] stepped through decoder rows 0 .. phys - 1 (one slot only). */
typedef struct dec_rows {
  kiln_whisper *w;
  int32_t first, n, phys;
  kiln_whisper_kv **kv;
} dec_rows;

typedef struct beam_state beam_state;

typedef struct dec_task {
  dec_ctx d;
  dec_rows r;
  double T;
  const char *language;
  int32_t n;                /* storage rows used: beams, samples, or 1 */
  int32_t *next;            /* [n]: token storage row j feeds at the next step, -1: idle */
  float *logits;            /* [n, vocab]: storage rows' logits of the last step (fp32) */
  int32_t step;             /* tokens chosen so far per live row */
  double no_speech;
  int done;
  /* sampling and greedy: sample j lives in storage row j */
  int32_t *seq, *len;       /* [n, n_ctx + 2] initial and sampled tokens, their counts */
  float *sum;               /* [n] sums of log-probabilities */
  uint64_t *rng;            /* [n] one splitmix64 stream per sample */
  uint64_t rng_after;       /* the caller's generator state once the window is decoded */
  beam_state *beam;         /* beam search (T = 0 and beam_size > 0), else NULL */
} dec_task;

/* Begin decoding the window encoded for rows r (r.first / r.kv set by the caller; r.n is set
 * here) at temperature T: the prompt's last logits are chosen from at once, so the task may be
 * done on return. *rng: the caller's sampling generator (read here, advanced with rng_after by
 * the caller when the task is done). On error the task holds nothing (dec_task_free is fine). */
kiln_status dec_task_begin(dec_task *t, kiln_whisper *w, const kiln_whisper_options *o, const char *language,
                           const int32_t *prompt, int32_t n_prompt, double T, uint64_t rng, dec_rows r);
/* Choose the next tokens from t->logits (after a dec_step): dec_task_row for every row of
 * dec_task_rows in order, then dec_task_finish, all on the calling thread. */
kiln_status dec_task_choose(dec_task *t);
/* The choice in two parts, so that the rows of many tasks can be worked on by several threads
 * (dec_choose_step):
 * dec_task_rows: the storage rows whose logits the next choice reads, into rows[] (at most t->n;
 *   0 when done): the live samples' rows, or each beam's row once (the first step's beams
 *   share row 0).
 * dec_task_row: one of those rows' own work, on any thread: the logit filters on the row, its
 *   logsumexp and argmax, or sampled token (its own generator: t->rng[row]), or for beam search
 *   its top beam_size + 1 tokens. Writes only what the row owns (its logits, its sequence, sum,
 *   next token and generator; beam search: the row's statistics), so rows may run in any order
 *   and on any thread with the same results.
 * dec_task_finish: the rest, on the calling thread once every row is done: the step count and
 *   the end of the decoding; beam search's candidates, in beam order, and its row copies (engine
 *   calls). */
int32_t dec_task_rows(const dec_task *t, int32_t *rows);
void dec_task_row(dec_task *t, int32_t row);
kiln_status dec_task_finish(dec_task *t);
/* The finished task's decoding result. */
kiln_status dec_task_result(dec_task *t, kiln_whisper_decoding **out);
void dec_task_free(dec_task *t);

/* One step of the tasks[0 .. n_slots - 1] (NULL or done: the slot idles) whose slot s holds
 * decoder rows s x G .. s x G + G - 1: their live rows' tokens as one batch (idle rows step a
 * dummy token with an empty cache), then the host side (dec_choose_step) on the model's decode
 * thread pool (kiln_whisper_load_params.decode_threads). A task with KV-copy rows (only as the
 * one slot) steps in turns of G rows. */
kiln_status dec_step(kiln_whisper *w, dec_task *const *tasks, int32_t n_slots, int32_t G);

/* The host side of a step: for the live rows of tasks[0 .. n_slots - 1] (NULL or done: nothing),
 * row j of task t converted from logits (host memory, dtype, [rows, vocab]: row t->r.first + j)
 * into t->logits (logits NULL: t->logits holds them already), and dec_task_row, spread over
 * the pool's threads (core/pool.h; NULL: the calling thread), a thread for every
 * rows_per_thread rows at most (0: DEC_ROWS_PER_THREAD; bench/decode_host_bench measures
 * others); then dec_task_finish of each task in slot order. The results do not depend on the
 * pool. */
#define DEC_ROWS_PER_THREAD 2
typedef struct kiln_pool kiln_pool;
kiln_status dec_choose_step(kiln_pool *pool, dec_task *const *tasks, int32_t n_slots, const void *logits,
                            kiln_dtype dtype, int32_t rows_per_thread);

/* Beam search (beam.c) over a task's storage rows: dec_beam_rows, dec_beam_row and
 * dec_beam_finish are dec_task_rows, dec_task_row and dec_task_finish for beam search. */
kiln_status dec_beam_begin(dec_task *t);
int32_t dec_beam_rows(const dec_task *t, int32_t *rows);
void dec_beam_row(dec_task *t, int32_t row);
kiln_status dec_beam_finish(dec_task *t);
kiln_status dec_beam_result(dec_task *t, kiln_whisper_decoding **out);
void dec_beam_free(dec_task *t);

/* Rows: copy storage row src to dst (decoder rows or KV copies). */
kiln_status dec_rows_copy(dec_rows *r, int32_t dst, int32_t src);

#endif

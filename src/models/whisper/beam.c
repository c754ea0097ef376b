/* src/models/whisper/beam.c - beam search over one window as openai-whisper's BeamSearchDecoder
 * (beam_size, patience) with MaximumLikelihoodRanker (length_penalty) does it, for one audio.
 * The beams are the storage rows of a dec_task (decode_internal.h): decoder rows stepped
 * together as one batch (or KV copies when the engines have fewer rows). Reordering the beams
 * relabels rows: a new beam keeps its source's row when it is the first to claim it, and the
 * others get a copy of their source into a row that no new beam comes from, so no copy ever
 * overwrites a source still needed. Not here: the stepping (decode.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/whisper/decode_internal.h"
#include "models/whisper/whisper_internal.h"

typedef struct cand {
  int32_t src, token;
  float score;
} cand;

struct beam_state {
  dec_ctx *d;
  int32_t B, max_cand, L;  /* beams, finished candidates wanted, tokens per beam */
  int32_t *tok, *ntok;     /* [B, n_ctx + 2] current and next beams' tokens */
  float *sum;              /* [B] */
  float *logits;           /* [B storage rows, vocab] (the task's) */
  int32_t map[DEC_MAX_BEAMS]; /* the storage row of each beam */
  int32_t k;               /* tokens each beam proposes: B + 1 (at most 64) */
  double lse[DEC_MAX_BEAMS]; /* each beam's row: logsumexp, */
  int32_t *top;            /* [B, k] and its k largest entries (dec_beam_row) */
  cand *c;                 /* [B * (B + 1)] */
  int32_t *fin;            /* [cap, n_ctx + 2] finished sequences */
  int32_t *fin_n;          /* their lengths */
  float *fin_sum;
  int32_t n_fin, cap;
};

#define STRIDE(d) ((size_t)(d)->n_ctx + 2)
#define ROW(b, j) ((b)->logits + (size_t)(b)->map[j] * (size_t)(b)->d->vocab)

void dec_beam_free(dec_task *t) {
  beam_state *b = t->beam;
  if (!b) return;
  free(b->tok), free(b->ntok), free(b->sum), free(b->top), free(b->c);
  free(b->fin), free(b->fin_n), free(b->fin_sum);
  free(b);
  t->beam = NULL;
}

static kiln_status beam_alloc(beam_state *b, dec_ctx *d) {
  b->d = d;
  b->B = d->o->beam_size;
  b->max_cand = (int32_t)nearbyint(b->B * (d->o->patience > 0 ? d->o->patience : 1.0));
  if (b->max_cand < 1) return kiln_error(KILN_ERR_INVALID_ARG, "whisper: beam size %d with patience %g keeps no candidate",
                                         b->B, d->o->patience);
  b->cap = b->max_cand + b->B;
  b->k = b->B + 1 < 64 ? b->B + 1 : 64;
  size_t B = (size_t)b->B;
  b->tok = malloc(sizeof(int32_t) * B * STRIDE(d));
  b->ntok = malloc(sizeof(int32_t) * B * STRIDE(d));
  b->sum = calloc(B, sizeof(float));
  b->top = malloc(sizeof(int32_t) * B * (size_t)b->k);
  b->c = malloc(sizeof(cand) * B * (B + 1));
  b->fin = malloc(sizeof(int32_t) * (size_t)b->cap * STRIDE(d));
  b->fin_n = malloc(sizeof(int32_t) * (size_t)b->cap);
  b->fin_sum = malloc(sizeof(float) * (size_t)b->cap);
  if (!b->tok || !b->ntok || !b->sum || !b->top || !b->c || !b->fin || !b->fin_n || !b->fin_sum)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for beam search");
  return KILN_OK;
}

/* The k largest entries of row (ties: the lower index first). */
static void topk(const float *row, int32_t n, int32_t k, int32_t *idx) {
  int32_t got = 0;
  for (int32_t i = 0; i < n; i++) {
    if (got == k && !(row[i] > row[idx[k - 1]])) continue;
    int32_t p = got < k ? got++ : k - 1;
    while (p > 0 && row[i] > row[idx[p - 1]]) {
      idx[p] = idx[p - 1];
      p--;
    }
    idx[p] = i;
  }
}

/* STEP 1 of BeamSearchDecoder.update: candidates (a dict keyed by the whole sequence: a
 * repeated sequence keeps its first place and takes the last score and source), from each
 * beam's row statistics (dec_beam_row). */
static int32_t candidates(beam_state *b) {
  dec_ctx *d = b->d;
  int32_t n = 0, k = b->k;
  for (int32_t j = 0; j < b->B; j++) {
    const float *row = ROW(b, j);
    const int32_t *idx = b->top + (size_t)j * (size_t)k;
    double lse = b->lse[j];
    for (int32_t t = 0; t < k; t++) {
      float lp = (float)((double)row[idx[t]] - lse), score = b->sum[j] + lp;
      int32_t e = 0;
      for (; e < n; e++)
        if (b->c[e].token == idx[t] &&
            memcmp(b->tok + (size_t)b->c[e].src * STRIDE(d), b->tok + (size_t)j * STRIDE(d), sizeof(int32_t) * (size_t)b->L) == 0)
          break;
      b->c[e].src = j, b->c[e].token = idx[t], b->c[e].score = score;
      if (e == n) n++;
    }
  }
  for (int32_t i = 1; i < n; i++) { /* stable sort, best first (sorted(..., reverse=True)) */
    cand x = b->c[i];
    int32_t p = i;
    while (p > 0 && x.score > b->c[p - 1].score) {
      b->c[p] = b->c[p - 1];
      p--;
    }
    b->c[p] = x;
  }
  return n;
}

static void add_finished(beam_state *b, const int32_t *prefix, int32_t L, int32_t token, float score) {
  int32_t *f = b->fin + (size_t)b->n_fin * STRIDE(b->d);
  memcpy(f, prefix, sizeof(int32_t) * (size_t)L);
  f[L] = token;
  b->fin_n[b->n_fin] = L + 1;
  b->fin_sum[b->n_fin++] = score;
}

/* STEP 2: keep the best B unfinished sequences, collect the finished ones. 1 when done. */
static int update(beam_state *b, int32_t *src) {
  dec_ctx *d = b->d;
  int32_t n = candidates(b), saved = 0;
  for (int32_t i = 0; i < n && saved < b->B; i++) {
    const cand *c = &b->c[i];
    const int32_t *prefix = b->tok + (size_t)c->src * STRIDE(d);
    if (c->token == d->eot) {
      if (b->n_fin < b->max_cand) add_finished(b, prefix, b->L, c->token, c->score); /* sorted already */
      continue;
    }
    int32_t *t = b->ntok + (size_t)saved * STRIDE(d);
    memcpy(t, prefix, sizeof(int32_t) * (size_t)b->L);
    t[b->L] = c->token;
    b->sum[saved] = c->score;
    src[saved++] = c->src;
  }
  for (; saved < b->B; saved++) { /* cannot happen (B x B candidates are not <|endoftext|>): a guard */
    memcpy(b->ntok + (size_t)saved * STRIDE(d), b->ntok, sizeof(int32_t) * ((size_t)b->L + 1));
    b->sum[saved] = b->sum[0];
    src[saved] = src[0];
  }
  int32_t *t = b->tok;
  b->tok = b->ntok, b->ntok = t;
  b->L++;
  return b->n_fin >= b->max_cand;
}

/* New beam j continues old beam src[j]: it keeps its source's storage row when it is the first
 * to claim it; the others take rows no new beam comes from (so no source is overwritten) and
 * get a copy of their source's cache. */
static kiln_status reorder(dec_task *t, beam_state *b, const int32_t *src) {
  int32_t claimed[DEC_MAX_BEAMS] = {0}, map[DEC_MAX_BEAMS], free_row = 0;
  for (int32_t j = 0; j < b->B; j++) {
    int32_t r = b->map[src[j]];
    map[j] = claimed[r] ? -1 : r;
    claimed[r] = 1;
  }
  for (int32_t j = 0; j < b->B; j++) {
    if (map[j] >= 0) continue;
    while (claimed[free_row]) free_row++;
    claimed[free_row] = 1;
    KILN_TRY(dec_rows_copy(&t->r, free_row, b->map[src[j]]));
    map[j] = free_row;
  }
  memcpy(b->map, map, sizeof(int32_t) * (size_t)b->B);
  return KILN_OK;
}

/* finalize: unfinished beams fill up to B candidates, best first; then the ranker's choice. */
static int32_t finalize(beam_state *b) {
  dec_ctx *d = b->d;
  int32_t order[64], n = b->B < 64 ? b->B : 64;
  for (int32_t i = 0; i < n; i++) order[i] = i;
  for (int32_t i = 1; i < n; i++) /* descending by sum; ties: the later beam first (argsort()[::-1]) */
    for (int32_t p = i; p > 0 && b->sum[order[p]] >= b->sum[order[p - 1]]; p--) {
      int32_t t = order[p];
      order[p] = order[p - 1], order[p - 1] = t;
    }
  for (int32_t i = 0; i < n && b->n_fin < b->B; i++)
    add_finished(b, b->tok + (size_t)order[i] * STRIDE(d), b->L, d->eot, b->sum[order[i]]);
  int32_t best = 0;
  double best_score = -INFINITY;
  for (int32_t i = 0; i < b->n_fin; i++) {
    const int32_t *f = b->fin + (size_t)i * STRIDE(d);
    double s = dec_rank_score(d->o, b->fin_sum[i], dec_sampled_length(d, f, b->fin_n[i]));
    if (i == 0 || s > best_score) best = i, best_score = s;
  }
  return best;
}

/* The search starts with every beam on the prompt (storage row 0, its logits). */
kiln_status dec_beam_begin(dec_task *t) {
  dec_ctx *d = &t->d;
  beam_state *b = calloc(1, sizeof *b);
  if (!b) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for beam search");
  t->beam = b;
  KILN_TRY(beam_alloc(b, d));
  b->logits = t->logits;
  for (int32_t j = 0; j < b->B; j++) {
    memcpy(b->tok + (size_t)j * STRIDE(d), d->init, sizeof(int32_t) * (size_t)d->n_init);
    b->map[j] = 0;
  }
  b->L = d->n_init;
  return KILN_OK;
}

/* The first beam on storage row `row` (the first step's beams all share row 0; later each beam
 * has its own). */
static int32_t first_beam(const beam_state *b, int32_t row) {
  for (int32_t j = 0; j < b->B; j++)
    if (b->map[j] == row) return j;
  return 0;
}

int32_t dec_beam_rows(const dec_task *t, int32_t *rows) {
  const beam_state *b = t->beam;
  int32_t n = 0;
  for (int32_t j = 0; j < b->B; j++)
    if (first_beam(b, b->map[j]) == j) rows[n++] = b->map[j];
  return n;
}

/* The row's part of a step of BeamSearchDecoder: the logit filters (with the tokens of the first
 * beam on the row), then the row's logsumexp and its k largest entries. */
void dec_beam_row(dec_task *t, int32_t row) {
  dec_ctx *d = &t->d;
  beam_state *b = t->beam;
  int32_t j = first_beam(b, row);
  float *logits = ROW(b, j);
  dec_apply_filters(d, logits, b->tok + (size_t)j * STRIDE(d), b->L);
  b->lse[j] = dec_logsumexp(logits, 0, d->vocab);
  topk(logits, d->vocab, b->k, b->top + (size_t)j * (size_t)b->k);
}

/* The rest of the step once every row is done: update, and the rows of the next step. */
kiln_status dec_beam_finish(dec_task *t) {
  dec_ctx *d = &t->d;
  beam_state *b = t->beam;
  int32_t src[DEC_MAX_BEAMS];
  for (int32_t j = 0; j < b->B; j++) { /* beams sharing a row share its statistics */
    int32_t f = first_beam(b, b->map[j]);
    if (f == j) continue;
    b->lse[j] = b->lse[f];
    memcpy(b->top + (size_t)j * (size_t)b->k, b->top + (size_t)f * (size_t)b->k, sizeof(int32_t) * (size_t)b->k);
  }
  int done = update(b, src);
  t->step++;
  for (int32_t j = 0; j < t->n; j++) t->next[j] = -1;
  if (done || b->L > d->n_ctx || t->step == d->sample_len) {
    t->done = 1;
    return KILN_OK;
  }
  KILN_TRY(reorder(t, b, src));
  for (int32_t j = 0; j < b->B; j++) t->next[b->map[j]] = b->tok[(size_t)j * STRIDE(d) + (size_t)b->L - 1];
  return KILN_OK;
}

kiln_status dec_beam_result(dec_task *t, kiln_whisper_decoding **out) {
  beam_state *b = t->beam;
  int32_t best = finalize(b);
  return dec_fill_result(&t->d, b->fin + (size_t)best * STRIDE(b->d), b->fin_n[best], b->fin_sum[best], 0.0, t->no_speech,
                         t->language, out);
}

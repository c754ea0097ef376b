/* src/models/whisper/beam.c - beam search over one window as openai-whisper's BeamSearchDecoder
 * (beam_size, patience) with MaximumLikelihoodRanker (length_penalty) does it, for one audio.
 * The beams run one after the other: each beam's KV cache is kept in its own copy
 * (kiln_whisper_kv), loaded before its step and saved after it, so reordering the beams is
 * choosing which copy a new beam starts from. Not here: batching the beams through the engine. */
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

typedef struct beam_state {
  dec_ctx *d;
  int32_t B, max_cand, L;  /* beams, finished candidates wanted, tokens per beam */
  int32_t *tok, *ntok;     /* [B, n_ctx + 2] current and next beams' tokens */
  float *sum, *rows;       /* [B], [B, vocab] */
  kiln_whisper_kv **cur, **nxt; /* [B] each */
  int32_t *slot;           /* [B]: the cache copy each beam's row came from */
  cand *c;                 /* [B * (B + 1)] */
  int32_t *fin;            /* [cap, n_ctx + 2] finished sequences */
  int32_t *fin_n;          /* their lengths */
  float *fin_sum;
  int32_t n_fin, cap;
} beam_state;

#define STRIDE(d) ((size_t)(d)->n_ctx + 2)

static void beam_free(beam_state *b) {
  for (int32_t j = 0; b->cur && j < b->B; j++) kiln_whisper_kv_destroy(b->d->w, b->cur[j]);
  for (int32_t j = 0; b->nxt && j < b->B; j++) kiln_whisper_kv_destroy(b->d->w, b->nxt[j]);
  free(b->tok), free(b->ntok), free(b->sum), free(b->rows), free(b->cur), free(b->nxt), free(b->slot), free(b->c);
  free(b->fin), free(b->fin_n), free(b->fin_sum);
}

static kiln_status beam_alloc(beam_state *b, dec_ctx *d) {
  memset(b, 0, sizeof *b);
  b->d = d;
  b->B = d->o->beam_size;
  b->max_cand = (int32_t)nearbyint(b->B * (d->o->patience > 0 ? d->o->patience : 1.0));
  if (b->max_cand < 1) return kiln_error(KILN_ERR_INVALID_ARG, "whisper: beam size %d with patience %g keeps no candidate",
                                         b->B, d->o->patience);
  b->cap = b->max_cand + b->B;
  size_t B = (size_t)b->B;
  b->tok = malloc(sizeof(int32_t) * B * STRIDE(d));
  b->ntok = malloc(sizeof(int32_t) * B * STRIDE(d));
  b->sum = calloc(B, sizeof(float));
  b->rows = malloc(sizeof(float) * B * (size_t)d->vocab);
  b->cur = calloc(B, sizeof(void *));
  b->nxt = calloc(B, sizeof(void *));
  b->slot = calloc(B, sizeof(int32_t));
  b->c = malloc(sizeof(cand) * B * (B + 1));
  b->fin = malloc(sizeof(int32_t) * (size_t)b->cap * STRIDE(d));
  b->fin_n = malloc(sizeof(int32_t) * (size_t)b->cap);
  b->fin_sum = malloc(sizeof(float) * (size_t)b->cap);
  if (!b->tok || !b->ntok || !b->sum || !b->rows || !b->cur || !b->nxt || !b->slot || !b->c || !b->fin || !b->fin_n ||
      !b->fin_sum)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory for beam search");
  for (int32_t j = 0; j < b->B; j++) {
    KILN_TRY(kiln_whisper_kv_create(d->w, &b->cur[j]));
    KILN_TRY(kiln_whisper_kv_create(d->w, &b->nxt[j]));
  }
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
 * repeated sequence keeps its first place and takes the last score and source). */
static int32_t candidates(beam_state *b) {
  dec_ctx *d = b->d;
  int32_t n = 0, idx[64];
  int32_t k = b->B + 1 < 64 ? b->B + 1 : 64;
  for (int32_t j = 0; j < b->B; j++) {
    const float *row = b->rows + (size_t)j * d->vocab;
    double lse = dec_logsumexp(row, 0, d->vocab);
    topk(row, d->vocab, k, idx);
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
  int32_t *t = b->tok;
  b->tok = b->ntok, b->ntok = t;
  b->L++;
  return b->n_fin >= b->max_cand;
}

/* The next step of every beam, from the cache copy of its source. */
static kiln_status advance(beam_state *b, const int32_t *src) {
  dec_ctx *d = b->d;
  for (int32_t j = 0; j < b->B; j++) {
    int32_t tok = b->tok[(size_t)j * STRIDE(d) + (size_t)b->L - 1];
    KILN_TRY(kiln_whisper_kv_load(d->w, b->cur[b->slot[src[j]]]));
    KILN_TRY(kiln_whisper_decode(d->w, &tok, 1, NULL));
    KILN_TRY(kiln_whisper_last_logits(d->w, 0, b->rows + (size_t)j * d->vocab));
    KILN_TRY(kiln_whisper_kv_save(d->w, b->nxt[j]));
  }
  for (int32_t j = 0; j < b->B; j++) {
    kiln_whisper_kv *t = b->cur[j];
    b->cur[j] = b->nxt[j], b->nxt[j] = t;
    b->slot[j] = j;
  }
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

static kiln_status search(beam_state *b, double *no_speech) {
  dec_ctx *d = b->d;
  int32_t src[64];
  KILN_TRY(dec_first_step(d, no_speech));
  KILN_TRY(kiln_whisper_kv_save(d->w, b->cur[0]));
  for (int32_t j = 0; j < b->B; j++) {
    memcpy(b->tok + (size_t)j * STRIDE(d), d->init, sizeof(int32_t) * (size_t)d->n_init);
    memcpy(b->rows + (size_t)j * d->vocab, d->row, sizeof(float) * (size_t)d->vocab);
    b->slot[j] = 0;
  }
  b->L = d->n_init;
  for (int32_t i = 0; i < d->sample_len; i++) {
    for (int32_t j = 0; j < b->B; j++)
      dec_apply_filters(d, b->rows + (size_t)j * d->vocab, b->tok + (size_t)j * STRIDE(d), b->L);
    int done = update(b, src);
    if (done || b->L > d->n_ctx || i + 1 == d->sample_len) break;
    KILN_TRY(advance(b, src));
  }
  return KILN_OK;
}

kiln_status dec_beam_search(dec_ctx *d, const char *language, kiln_whisper_decoding **out) {
  if (d->o->beam_size > 63) return kiln_error(KILN_ERR_INVALID_ARG, "whisper: beam size %d is above 63", d->o->beam_size);
  beam_state b;
  double no_speech = NAN;
  kiln_status s = beam_alloc(&b, d);
  if (s == KILN_OK) s = search(&b, &no_speech);
  if (s == KILN_OK) {
    int32_t best = finalize(&b);
    s = dec_fill_result(d, b.fin + (size_t)best * STRIDE(d), b.fin_n[best], b.fin_sum[best], 0.0, no_speech, language, out);
  }
  beam_free(&b);
  return s;
}

/* src/models/whisper/decode_internal.h - shared by the decoding files (decode.c, beam.c,
 * transcribe.c): the state of one window's decoding. Not a public header. */
#ifndef KILN_DECODE_INTERNAL_H
#define KILN_DECODE_INTERNAL_H

#include <stdint.h>

#include "kiln/tokenizer.h"
#include "kiln/whisper.h"

#define DEC_MAX_SUPPRESS (KILN_WHISPER_MAX_SUPPRESS + 8)

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
  float *row;               /* [vocab] logits of the current step */
} dec_ctx;

kiln_status dec_ctx_init(dec_ctx *d, kiln_whisper *w, const kiln_whisper_options *o, const char *language,
                         const int32_t *prompt, int32_t n_prompt);
void dec_ctx_free(dec_ctx *d);
/* log(sum(exp(row[from:to]))) in double; -inf when all are -inf. */
double dec_logsumexp(const float *row, int32_t from, int32_t to);
/* Logit filters on row [vocab], given the n tokens so far (initial ones included). */
void dec_apply_filters(const dec_ctx *d, float *row, const int32_t *toks, int32_t n);
/* Decode the initial tokens from an empty cache: no-speech probability, last row in d->row. */
kiln_status dec_first_step(dec_ctx *d, double *no_speech);
int32_t dec_sampled_length(const dec_ctx *d, const int32_t *seq, int32_t n);
/* MaximumLikelihoodRanker's score. */
double dec_rank_score(const kiln_whisper_options *o, double sum, int32_t length);
kiln_status dec_beam_search(dec_ctx *d, const char *language, kiln_whisper_decoding **out);
/* Decode the window the runtime holds (encoded already) at temperature T. */
kiln_status dec_decode_encoded(kiln_whisper *w, const int32_t *prompt, int32_t n_prompt, double T,
                               const kiln_whisper_options *o, const char *language, uint64_t *rng,
                               kiln_whisper_decoding **out);
kiln_status dec_detect_encoded(kiln_whisper *w, float *probs, const char **code);
/* Fill a decoding result from a finished sequence (decode.c). */
kiln_status dec_fill_result(dec_ctx *d, const int32_t *seq, int32_t n, float sum, double T, double no_speech,
                            const char *language, kiln_whisper_decoding **out);

#endif

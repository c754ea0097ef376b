/* src/models/whisper/whisper_internal.h - shared by the Whisper network, build and runtime
 * files: JSON helpers and the manifest's name. Not a public header. */
#ifndef KILN_WHISPER_INTERNAL_H
#define KILN_WHISPER_INTERNAL_H

#include <cjson/cJSON.h>

#include "kiln/whisper.h"

#define KILN_WHISPER_MANIFEST "whisper.json"
#define KILN_WHISPER_FORMAT "kiln-whisper"
#define KILN_WHISPER_FORMAT_VERSION 2

/* Parse a JSON object file (KILN_ERR_IO when missing, KILN_ERR_FORMAT when malformed). */
kiln_status kiln_whisper_json_read(const char *path, cJSON **out);
/* Fill the config's geometry and token fields from a parsed config.json / manifest object
 * (`what` names the file in messages). */
kiln_status kiln_whisper_config_from_json(const cJSON *root, const char *what, kiln_whisper_config *c);
/* Read an int array field into out (at most KILN_WHISPER_MAX_SUPPRESS); absent: *n = -1. */
kiln_status kiln_whisper_json_ints(const cJSON *root, const char *key, const char *what, int32_t *out,
                                   int32_t *n);

/* The encoder (decoder = 0) or decoder network, as kiln_whisper_encoder_network /
 * _decoder_network, with options: fmha, the encoder's self-attention through the "fmha" plugin
 * (packed qkv layout); kv_int8, the KV cache in int8 (the encoder quantizes the cross-attention
 * keys/values, the decoder reads and writes int8 caches with scales; whisper_net.c). */
kiln_status kiln_whisper_network(const char *checkpoint_dir, int32_t max_batch, int decoder, int fmha, int kv_int8,
                                 kiln_network **out);

/* Longest token chunk a decoder run takes (the decoder profile's S): longer prompts are decoded
 * in chunks, so the activation arena stays bounded for max_rows sequences. */
int32_t kiln_whisper_max_chunk(int32_t max_rows, int32_t n_text_ctx);

/* ---- runtime internals for the decoding module (decode.c, transcribe.c) ---- */
#include "kiln/tokenizer.h"

kiln_tokenizer *kiln_whisper_tokenizer(const kiln_whisper *w);
/* Empty the KV cache, keeping the encoded window (a new decode of the same audio). */
void kiln_whisper_cache_reset(kiln_whisper *w);
/* Logits row `row` of the last decode step as fp32 [vocab]. */
kiln_status kiln_whisper_last_logits(kiln_whisper *w, int32_t row, float *out);

/* Decoder rows (whisper_runtime.c). The decoder keeps max_batch x max_beams rows of KV cache;
 * encoded window i serves rows i * beams .. (i + 1) * beams - 1 (beams: set_beams, 1 after an
 * encode). row_decode runs one row's tokens (a prompt; chunked), batch_step one token for each
 * of rows 0 .. rows - 1 together (a captured CUDA graph per batch size on the GPU) and writes
 * their logits [rows, vocab] fp32 (may be NULL). row_copy makes row dst's cache a copy of row
 * src's (beam reordering; rows dst < src or dst > src both fine as each is a distinct buffer
 * region). */
kiln_status kiln_whisper_set_beams(kiln_whisper *w, int32_t beams);
kiln_status kiln_whisper_row_decode(kiln_whisper *w, int32_t row, const int32_t *tokens, int32_t n);
kiln_status kiln_whisper_batch_step(kiln_whisper *w, int32_t rows, const int32_t *tokens, float *logits);
int32_t kiln_whisper_row_length(const kiln_whisper *w, int32_t row);
void kiln_whisper_row_reset(kiln_whisper *w, int32_t row, int32_t length);
kiln_status kiln_whisper_row_copy(kiln_whisper *w, int32_t dst, int32_t src);

/* A copy of the KV cache (self-attention keys/values and length), for beam search: save after a
 * beam's step, load before the next step of the beams that continue it. */
typedef struct kiln_whisper_kv kiln_whisper_kv;
kiln_status kiln_whisper_kv_create(kiln_whisper *w, kiln_whisper_kv **out);
kiln_status kiln_whisper_kv_save(kiln_whisper *w, kiln_whisper_kv *kv);
kiln_status kiln_whisper_kv_load(kiln_whisper *w, const kiln_whisper_kv *kv);
void kiln_whisper_kv_destroy(kiln_whisper *w, kiln_whisper_kv *kv);

#endif

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
/* After a batch_step with logits NULL: logits rows 0 .. rows - 1 to the host in one copy (one
 * wait on the GPU); *host receives them, [rows, vocab] in *dtype (the engines' precision), host
 * memory that stays valid and unchanged until the next decoder run; any thread may read it. */
kiln_status kiln_whisper_step_fetch(kiln_whisper *w, int32_t rows, const void **host, kiln_dtype *dtype);
/* The pool of the host side of decoding steps (core/pool.h): started at the first call with
 * kiln_whisper_decode_threads(w) threads, kept until kiln_whisper_destroy; NULL for 1 thread. */
typedef struct kiln_pool kiln_pool;
kiln_status kiln_whisper_decode_pool(kiln_whisper *w, kiln_pool **pool);
int32_t kiln_whisper_row_length(const kiln_whisper *w, int32_t row);
void kiln_whisper_row_reset(kiln_whisper *w, int32_t row, int32_t length);
kiln_status kiln_whisper_row_copy(kiln_whisper *w, int32_t dst, int32_t src);

/* Window slots (in-flight batching, transcribe.c): slots_reset empties every row, forgets the
 * encoded windows and sets the rows per window (beams); encode_slot_frames encodes the window
 * mel[:, f0 : f0 + take] (zeros after it, as pad_or_trim) of a whole file's log-mel
 * mel [n_mels x frames] held in engine memory (device memory for CUDA engines, host memory for
 * CPU engines) in the engine precision, into slot `slot` (kiln_whisper_encode_slot's rules). */
kiln_status kiln_whisper_slots_reset(kiln_whisper *w, int32_t beams);
kiln_status kiln_whisper_encode_slot_frames(kiln_whisper *w, int32_t slot, const void *mel, int64_t frames, int64_t f0,
                                            int64_t take);
/* Engine memory (device memory for CUDA engines, host memory otherwise) for the decoding module;
 * engine_free waits for the runtime's stream first. upload: host -> engine memory in stream order
 * (host memory may be reused when it returns). */
int kiln_whisper_is_cuda(const kiln_whisper *w);
void *kiln_whisper_stream(const kiln_whisper *w); /* cudaStream_t of CUDA engines, else NULL */
kiln_dtype kiln_whisper_precision(const kiln_whisper *w);
int32_t kiln_whisper_device(const kiln_whisper *w);
kiln_status kiln_whisper_engine_alloc(kiln_whisper *w, size_t bytes, void **p);
void kiln_whisper_engine_free(kiln_whisper *w, void *p);
kiln_status kiln_whisper_engine_upload(kiln_whisper *w, void *dst, const void *src, size_t bytes);

/* A copy of one row's KV cache (self-attention keys/values and length): decoding keeps rows there
 * when a window needs more rows than the engines have (beam search or best-of with engines built
 * with a smaller --max-beam), stepping them through the decoder rows in turns. */
typedef struct kiln_whisper_kv kiln_whisper_kv;
kiln_status kiln_whisper_kv_create(kiln_whisper *w, kiln_whisper_kv **out);
kiln_status kiln_whisper_kv_save(kiln_whisper *w, int32_t row, kiln_whisper_kv *kv);
kiln_status kiln_whisper_kv_load(kiln_whisper *w, int32_t row, const kiln_whisper_kv *kv);
kiln_status kiln_whisper_kv_copy(kiln_whisper *w, kiln_whisper_kv *dst, const kiln_whisper_kv *src);
void kiln_whisper_kv_destroy(kiln_whisper *w, kiln_whisper_kv *kv);

#endif

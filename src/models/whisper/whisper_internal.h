/* src/models/whisper/whisper_internal.h - shared by the Whisper network, build and runtime
 * files: JSON helpers and the manifest's name. Not a public header. */
#ifndef KILN_WHISPER_INTERNAL_H
#define KILN_WHISPER_INTERNAL_H

#include <cjson/cJSON.h>

#include "kiln/whisper.h"

#define KILN_WHISPER_MANIFEST "whisper.json"
#define KILN_WHISPER_FORMAT "kiln-whisper"
#define KILN_WHISPER_FORMAT_VERSION 1

/* Parse a JSON object file (KILN_ERR_IO when missing, KILN_ERR_FORMAT when malformed). */
kiln_status kiln_whisper_json_read(const char *path, cJSON **out);
/* Fill the config's geometry and token fields from a parsed config.json / manifest object
 * (`what` names the file in messages). */
kiln_status kiln_whisper_config_from_json(const cJSON *root, const char *what, kiln_whisper_config *c);
/* Read an int array field into out (at most KILN_WHISPER_MAX_SUPPRESS); absent: *n = -1. */
kiln_status kiln_whisper_json_ints(const cJSON *root, const char *key, const char *what, int32_t *out,
                                   int32_t *n);

/* ---- runtime internals for the decoding module (decode.c, transcribe.c) ---- */
#include "kiln/tokenizer.h"

kiln_tokenizer *kiln_whisper_tokenizer(const kiln_whisper *w);
/* Empty the KV cache, keeping the encoded window (a new decode of the same audio). */
void kiln_whisper_cache_reset(kiln_whisper *w);
/* Logits row `row` of the last decode step as fp32 [vocab]. */
kiln_status kiln_whisper_last_logits(kiln_whisper *w, int32_t row, float *out);

/* A copy of the KV cache (self-attention keys/values and length), for beam search: save after a
 * beam's step, load before the next step of the beams that continue it. */
typedef struct kiln_whisper_kv kiln_whisper_kv;
kiln_status kiln_whisper_kv_create(kiln_whisper *w, kiln_whisper_kv **out);
kiln_status kiln_whisper_kv_save(kiln_whisper *w, kiln_whisper_kv *kv);
kiln_status kiln_whisper_kv_load(kiln_whisper *w, const kiln_whisper_kv *kv);
void kiln_whisper_kv_destroy(kiln_whisper *w, kiln_whisper_kv *kv);

#endif

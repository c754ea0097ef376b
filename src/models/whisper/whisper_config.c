/* src/models/whisper/whisper_config.c - reading a Whisper checkpoint's config.json and
 * generation_config.json into kiln_whisper_config, with range checks. The tensor shapes are
 * checked against it where the networks are made (whisper_net.c); this file reads no weights. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "models/whisper/whisper_internal.h"

kiln_status kiln_whisper_json_read(const char *path, cJSON **out) {
  char *text = NULL;
  size_t len = 0;
  kiln_status s = kiln_read_file(path, (size_t)64 << 20, &text, &len);
  if (s != KILN_OK) return s;
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_FORMAT, "'%s' is not a JSON object; restore the file from the checkpoint", path);
  }
  *out = root;
  return KILN_OK;
}

/* An integer field in [lo, hi]; `dflt` when absent and dflt != INT_MIN. */
static kiln_status get_int(const cJSON *root, const char *key, const char *what, int32_t lo, int32_t hi, int32_t dflt,
                           int32_t *out) {
  const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!it && dflt != INT_MIN) {
    *out = dflt;
    return KILN_OK;
  }
  if (!it) return kiln_error(KILN_ERR_FORMAT, "%s has no \"%s\"; is this a Whisper checkpoint's config.json?", what, key);
  double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
  if (!cJSON_IsNumber(it) || v != (double)(int64_t)v || v < lo || v > hi)
    return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" must be an integer in %d..%d", what, key, lo, hi);
  *out = (int32_t)v;
  return KILN_OK;
}

kiln_status kiln_whisper_json_ints(const cJSON *root, const char *key, const char *what, int32_t *out, int32_t *n) {
  const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key), *it;
  if (!arr || cJSON_IsNull(arr)) {
    *n = -1;
    return KILN_OK;
  }
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > KILN_WHISPER_MAX_SUPPRESS)
    return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" must be an array of at most %d token ids", what, key,
                      KILN_WHISPER_MAX_SUPPRESS);
  int32_t k = 0;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > INT32_MAX)
      return kiln_error(KILN_ERR_FORMAT, "%s: \"%s\" holds something that is not a token id", what, key);
    out[k++] = (int32_t)it->valuedouble;
  }
  *n = k;
  return KILN_OK;
}

kiln_status kiln_whisper_config_from_json(const cJSON *root, const char *what, kiln_whisper_config *c) {
  KILN_TRY(get_int(root, "d_model", what, 1, 1 << 16, INT_MIN, &c->d_model));
  KILN_TRY(get_int(root, "encoder_layers", what, 1, 1024, INT_MIN, &c->encoder_layers));
  KILN_TRY(get_int(root, "encoder_attention_heads", what, 1, 1024, INT_MIN, &c->encoder_heads));
  KILN_TRY(get_int(root, "encoder_ffn_dim", what, 1, 1 << 20, INT_MIN, &c->encoder_ffn));
  KILN_TRY(get_int(root, "decoder_layers", what, 1, 1024, INT_MIN, &c->decoder_layers));
  KILN_TRY(get_int(root, "decoder_attention_heads", what, 1, 1024, INT_MIN, &c->decoder_heads));
  KILN_TRY(get_int(root, "decoder_ffn_dim", what, 1, 1 << 20, INT_MIN, &c->decoder_ffn));
  KILN_TRY(get_int(root, "num_mel_bins", what, 1, 1024, INT_MIN, &c->n_mels));
  KILN_TRY(get_int(root, "vocab_size", what, 1, 1 << 24, INT_MIN, &c->vocab_size));
  KILN_TRY(get_int(root, "max_source_positions", what, 1, 1 << 20, KILN_WHISPER_AUDIO_CTX, &c->n_audio_ctx));
  KILN_TRY(get_int(root, "max_target_positions", what, 1, 1 << 20, 448, &c->n_text_ctx));
  KILN_TRY(get_int(root, "eos_token_id", what, 0, c->vocab_size - 1, 50257, &c->eot));
  KILN_TRY(get_int(root, "decoder_start_token_id", what, 0, c->vocab_size - 1, 50258, &c->sot));
  if (c->n_mels != 80 && c->n_mels != 128)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: num_mel_bins is %d; kiln's front end computes 80 or 128", what, c->n_mels);
  if (c->n_audio_ctx != KILN_WHISPER_AUDIO_CTX)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: max_source_positions is %d; kiln runs 30 s windows (1500)", what,
                      c->n_audio_ctx);
  if (c->d_model % c->encoder_heads || c->d_model % c->decoder_heads)
    return kiln_error(KILN_ERR_FORMAT, "%s: d_model %d is not a multiple of the attention heads (%d, %d)", what, c->d_model,
                      c->encoder_heads, c->decoder_heads);
  return KILN_OK;
}

static kiln_status check_ids(const kiln_whisper_config *c, const int32_t *ids, int32_t n, const char *what) {
  for (int32_t i = 0; i < n; i++)
    if (ids[i] >= c->vocab_size)
      return kiln_error(KILN_ERR_FORMAT, "%s: token %d is outside the vocabulary (%d)", what, ids[i], c->vocab_size);
  return KILN_OK;
}

/* Suppress lists: generation_config.json first, then config.json. */
static kiln_status read_suppress(const char *dir, const cJSON *config, const char *config_path, kiln_whisper_config *c) {
  char path[4096];
  snprintf(path, sizeof path, "%s/generation_config.json", dir);
  cJSON *gen = NULL;
  kiln_status s = kiln_whisper_json_read(path, &gen);
  if (s == KILN_ERR_IO) gen = NULL;
  else if (s != KILN_OK) return s;
  c->n_suppress = c->n_begin_suppress = -1;
  if (gen) {
    s = kiln_whisper_json_ints(gen, "suppress_tokens", path, c->suppress, &c->n_suppress);
    if (s == KILN_OK) s = kiln_whisper_json_ints(gen, "begin_suppress_tokens", path, c->begin_suppress, &c->n_begin_suppress);
    cJSON_Delete(gen);
    KILN_TRY(s);
  }
  if (c->n_suppress < 0) KILN_TRY(kiln_whisper_json_ints(config, "suppress_tokens", config_path, c->suppress, &c->n_suppress));
  if (c->n_begin_suppress < 0)
    KILN_TRY(kiln_whisper_json_ints(config, "begin_suppress_tokens", config_path, c->begin_suppress, &c->n_begin_suppress));
  if (c->n_suppress < 0) c->n_suppress = 0;
  if (c->n_begin_suppress < 0) c->n_begin_suppress = 0;
  KILN_TRY(check_ids(c, c->suppress, c->n_suppress, "suppress_tokens"));
  return check_ids(c, c->begin_suppress, c->n_begin_suppress, "begin_suppress_tokens");
}

kiln_status kiln_whisper_config_load(const char *checkpoint_dir, kiln_whisper_config *out) {
  if (!checkpoint_dir || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_config_load: NULL argument");
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", checkpoint_dir);
  cJSON *root = NULL;
  kiln_status s = kiln_whisper_json_read(path, &root);
  if (s == KILN_ERR_IO)
    return kiln_error(KILN_ERR_IO, "no config.json in '%s'; pass a Hugging Face Whisper checkpoint folder", checkpoint_dir);
  if (s != KILN_OK) return s;
  kiln_whisper_config c;
  memset(&c, 0, sizeof c);
  s = kiln_whisper_config_from_json(root, path, &c);
  if (s == KILN_OK) s = read_suppress(checkpoint_dir, root, path, &c);
  cJSON_Delete(root);
  if (s == KILN_OK) *out = c;
  return s;
}

/* src/models/whisper/whisper_build.c - kiln_whisper_build(): a Whisper checkpoint folder ->
 * an engine folder (encoder.engine, decoder.engine, whisper.json manifest, tokenizer files).
 *
 * Manifest (whisper.json): {"format": "kiln-whisper", "version": 2, "encoder": "encoder.engine",
 * "decoder": "decoder.engine", "precision": "fp16", "target": "cuda"|"cpu", "max_batch": N, "max_beams": K,
 * "weight_only": "none"|"int8"|"int4" (and "group_size" for int4, "keep_float": the patterns of
 * weights kept float, "" for none, under weight_only; informative, not read back),
 * "kv_cache": "int8" or the precision's name (informative: the runtime reads the engines' dtypes),
 * the geometry under config.json's key names (d_model, encoder_layers, ..., vocab_size,
 * max_source_positions, max_target_positions, eos_token_id, decoder_start_token_id),
 * "suppress_tokens": [...], "begin_suppress_tokens": [...]}.
 * Not here: the networks (whisper_net.c) and running the engines (whisper_runtime.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/file.h"
#include "models/whisper/whisper_internal.h"

kiln_whisper_build_params kiln_whisper_build_default_params(void) {
  kiln_whisper_build_params p;
  kiln_build_params b = kiln_build_default_params();
  memset(&p, 0, sizeof p);
  p.target = b.target;
  p.precision = KILN_DTYPE_FP32;
  p.max_batch = 1;
  p.max_beams = 1;
  p.weight_only = b.weight_only;
  p.group_size = 64; /* not the generic 128: on whisper-base, KL to float 0.119 -> 0.090 (docs/quantization.md) */
  return p;
}

/* Files copied from the checkpoint: the tokenizer's (the first two are required) and configs. */
static const char *const copied_files[] = {"vocab.json",       "merges.txt",           "added_tokens.json",
                                           "tokenizer_config.json", "special_tokens_map.json", "normalizer.json",
                                           "tokenizer.json",   "preprocessor_config.json", "generation_config.json",
                                           "config.json"};

static kiln_status copy_file(const char *src_dir, const char *dst_dir, const char *name, int required) {
  char src[4096], dst[4096];
  snprintf(src, sizeof src, "%s/%s", src_dir, name);
  snprintf(dst, sizeof dst, "%s/%s", dst_dir, name);
  char *data = NULL;
  size_t size = 0;
  kiln_status s = kiln_read_file(src, (size_t)256 << 20, &data, &size);
  if (s == KILN_ERR_IO && !required) return KILN_OK;
  if (s != KILN_OK)
    return kiln_error_context(s, "the checkpoint needs the tokenizer files (vocab.json, merges.txt): ");
  FILE *f = fopen(dst, "wb");
  int bad = !f || fwrite(data, 1, size, f) != size;
  if (f && fclose(f) != 0) bad = 1;
  free(data);
  if (bad) return kiln_error(KILN_ERR_IO, "cannot write %s: %s; check the output folder", dst, strerror(errno));
  return KILN_OK;
}

static void add_ints(cJSON *root, const char *key, const int32_t *ids, int32_t n) {
  cJSON *arr = cJSON_AddArrayToObject(root, key);
  for (int32_t i = 0; arr && i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(ids[i]));
}

static kiln_status write_manifest(const char *out_dir, const kiln_whisper_config *c, const kiln_whisper_build_params *p) {
  cJSON *m = cJSON_CreateObject();
  if (!m) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing the manifest");
  cJSON_AddStringToObject(m, "format", KILN_WHISPER_FORMAT);
  cJSON_AddNumberToObject(m, "version", KILN_WHISPER_FORMAT_VERSION);
  cJSON_AddStringToObject(m, "encoder", "encoder.engine");
  cJSON_AddStringToObject(m, "decoder", "decoder.engine");
  cJSON_AddStringToObject(m, "precision", kiln_dtype_name(p->precision));
  cJSON_AddStringToObject(m, "target", p->target == KILN_TARGET_CUDA ? "cuda" : "cpu");
  cJSON_AddNumberToObject(m, "max_batch", p->max_batch);
  cJSON_AddNumberToObject(m, "max_beams", p->max_beams);
  static const char *const wo_names[] = {"none", "int8", "int4"};
  cJSON_AddStringToObject(m, "weight_only", p->weight_only >= 0 && p->weight_only <= 2 ? wo_names[p->weight_only] : "?");
  if (p->weight_only == KILN_WEIGHT_ONLY_INT4) cJSON_AddNumberToObject(m, "group_size", p->group_size);
  if (p->weight_only != KILN_WEIGHT_ONLY_NONE) cJSON_AddStringToObject(m, "keep_float", p->keep_float);
  cJSON_AddStringToObject(m, "kv_cache", p->kv_cache == KILN_DTYPE_INT8 ? "int8" : kiln_dtype_name(p->precision));
  const struct { const char *key; int32_t v; } f[] = {
      {"d_model", c->d_model},           {"encoder_layers", c->encoder_layers}, {"encoder_attention_heads", c->encoder_heads},
      {"encoder_ffn_dim", c->encoder_ffn}, {"decoder_layers", c->decoder_layers}, {"decoder_attention_heads", c->decoder_heads},
      {"decoder_ffn_dim", c->decoder_ffn}, {"num_mel_bins", c->n_mels},         {"vocab_size", c->vocab_size},
      {"max_source_positions", c->n_audio_ctx}, {"max_target_positions", c->n_text_ctx}, {"eos_token_id", c->eot},
      {"decoder_start_token_id", c->sot}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) cJSON_AddNumberToObject(m, f[i].key, f[i].v);
  add_ints(m, "suppress_tokens", c->suppress, c->n_suppress);
  add_ints(m, "begin_suppress_tokens", c->begin_suppress, c->n_begin_suppress);
  char *text = cJSON_Print(m);
  cJSON_Delete(m);
  if (!text) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing the manifest");
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", out_dir, KILN_WHISPER_MANIFEST);
  FILE *fp = fopen(path, "wb");
  int bad = !fp || fputs(text, fp) < 0 || fputc('\n', fp) == EOF;
  if (fp && fclose(fp) != 0) bad = 1;
  cJSON_free(text);
  if (bad) return kiln_error(KILN_ERR_IO, "cannot write %s: %s", path, strerror(errno));
  return KILN_OK;
}

static kiln_status build_one(const char *dir, const kiln_whisper_build_params *p, int decoder, const char *path) {
  kiln_network *net = NULL;
  /* the fused attention plugin serves fp16/bf16 CUDA encoders when kiln has it */
  int fmha = !decoder && p->target == KILN_TARGET_CUDA && p->precision != KILN_DTYPE_FP32 &&
             kiln_plugin_registry_find(kiln_plugin_registry_default(), "fmha", 1) != NULL;
  kiln_status s = kiln_whisper_network(dir, decoder ? p->max_batch * p->max_beams : p->max_batch, decoder, fmha,
                                       p->kv_cache == KILN_DTYPE_INT8, &net);
  if (s != KILN_OK) return s;
  kiln_build_params b = kiln_build_default_params();
  b.target = p->target;
  b.precision = p->precision;
  b.device = p->device;
  b.timing_cache = p->timing_cache;
  b.progress = p->progress;
  b.progress_user_data = p->progress_user_data;
  b.weight_only = p->weight_only;
  b.group_size = p->group_size;
  b.keep_float = p->keep_float;
  kiln_build_report r;
  s = kiln_build_to_file(net, &b, path, &r);
  kiln_network_destroy(net);
  if (s == KILN_OK)
    kiln_log(KILN_LOG_INFO, "%s: weights %zu B, %d matmuls quantized, %d left in %s; KV cache %s", path, r.weight_bytes,
             (int)r.num_quantized, (int)r.num_quantize_skipped, kiln_dtype_name(p->precision),
             p->kv_cache == KILN_DTYPE_INT8 ? "int8" : kiln_dtype_name(p->precision));
  return s == KILN_OK ? s : kiln_error_context(s, "building %s: ", path);
}

kiln_status kiln_whisper_build(const char *checkpoint_dir, const kiln_whisper_build_params *params, const char *out_dir) {
  if (!checkpoint_dir || !out_dir) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_build: NULL argument");
  kiln_whisper_build_params p = params ? *params : kiln_whisper_build_default_params();
  if (!kiln_dtype_is_float(p.precision))
    return kiln_error(KILN_ERR_UNSUPPORTED, "whisper engines compute in fp32, fp16 or bf16 (got %s)",
                      kiln_dtype_name(p.precision));
  if (p.kv_cache != KILN_DTYPE_INVALID && p.kv_cache != KILN_DTYPE_INT8 && p.kv_cache != p.precision)
    return kiln_error(KILN_ERR_UNSUPPORTED, "whisper build: a %s KV cache with %s engines; the KV cache is int8 or in the engines' "
                      "precision (--kv-cache int8 or %s)", kiln_dtype_name(p.kv_cache), kiln_dtype_name(p.precision),
                      kiln_dtype_name(p.precision));
  if (p.max_batch < 1 || p.max_beams < 1 || (int64_t)p.max_batch * p.max_beams > 4096)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper build: max_batch (%d) and max_beams (%d) must be >= 1 with a product <= 4096",
                      p.max_batch, p.max_beams);
  if (!p.keep_float) p.keep_float = p.weight_only == KILN_WEIGHT_ONLY_INT4 ? KILN_WHISPER_KEEP_FLOAT_INT4 : "";
  kiln_whisper_config c;
  KILN_TRY(kiln_whisper_config_load(checkpoint_dir, &c));
  if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
    return kiln_error(KILN_ERR_IO, "cannot create the output folder %s: %s", out_dir, strerror(errno));
  for (size_t i = 0; i < sizeof copied_files / sizeof copied_files[0]; i++)
    KILN_TRY(copy_file(checkpoint_dir, out_dir, copied_files[i], i < 2));
  char path[4096];
  snprintf(path, sizeof path, "%s/encoder.engine", out_dir);
  KILN_TRY(build_one(checkpoint_dir, &p, 0, path));
  snprintf(path, sizeof path, "%s/decoder.engine", out_dir);
  KILN_TRY(build_one(checkpoint_dir, &p, 1, path));
  return write_manifest(out_dir, &c, &p);
}

/* src/models/whisper/whisper_net.c - Whisper's encoder and decoder as kiln networks, with the
 * weights of a transformers checkpoint (safetensors, read through core/file.h's weight source).
 *
 * encoder: mel [B, n_mels, 3000] -> conv1d(k3, s1) + GELU -> conv1d(k3, s2) + GELU -> [B, 1500, d]
 *   + embed_positions -> N pre-LN blocks (self-attention, MLP) -> LayerNorm => encoder_out;
 *   per decoder layer i: cross_k.i = heads(encoder_out k_proj) (no bias), cross_v.i likewise.
 * decoder: embed_tokens(tokens [B, S]) + embed_positions(positions [B, S]) -> N blocks of
 *   self-attention (q, k, v as one matmul) over the KV cache kept in place (cache_k.i /
 *   cache_v.i inputs [Bc, H, n_text_ctx, Dh], written at lengths[b] by the layer itself),
 *   cross-attention over cross_k.i / cross_v.i (rows shared by the beams of a window), MLP ->
 *   LayerNorm -> logits = x embed_tokens^T [B, S, vocab]. S is at most kiln_whisper_max_chunk().
 * With an int8 KV cache (kv_int8), the encoder quantizes cross_k.i / cross_v.i into int8 codes
 * with cross_k_scale.i / cross_v_scale.i [B, H, 1500] (quantize_int8 layers: the encoder
 * network is the quantizing step, no extra kernel in the runtime), and the decoder takes int8
 * cache_k.i / cache_v.i with cache_k_scale.i / cache_v_scale.i [Bc, H, n_text_ctx] and the
 * cross ones likewise, its attention layers the _int8 forms (kiln/network.h: one scale per
 * cached vector, max|x| / 127, computed when the vector is written).
 * Only kiln's generic layers are used, so the same networks build for the CPU and CUDA; the
 * encoder can instead run its self-attention through the "fmha" plugin (fp16/bf16 on CUDA:
 * kiln_whisper_network's fmha), its q, k, v projections fused into one matmul.
 * Not here: building the engines (whisper_build.c) and running them (whisper_runtime.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "models/whisper/whisper_internal.h"

typedef struct wnet {
  kiln_network *net;
  kiln_weight_source *ws;
  kiln_whisper_config c;
  const char *dir;
  kiln_status s; /* first error; every helper returns -1 once it is set */
  int fmha;      /* encoder self-attention through the "fmha" plugin (packed qkv layout) */
  int kv_int8;   /* int8 KV cache: cross-attention keys/values quantized by the encoder */
} wnet;

static int32_t ok(wnet *w, int32_t id) {
  if (w->s == KILN_OK && id < 0) w->s = (kiln_status)id;
  return w->s == KILN_OK ? id : -1;
}

/* A checkpoint tensor of the given shape, as a constant. */
static int32_t weight(wnet *w, const char *name, int32_t rank, const int64_t *dims) {
  if (w->s != KILN_OK) return -1;
  int32_t id = kiln_weight_source_add(w->ws, w->net, name, rank, dims);
  if (id == KILN_ERR_NOT_FOUND)
    w->s = kiln_error(KILN_ERR_FORMAT, "checkpoint '%s' has no tensor \"%s\"; kiln reads transformers' Whisper names", w->dir,
                      name);
  else if (id == KILN_ERR_SHAPE)
    w->s = kiln_error_context(KILN_ERR_SHAPE, "config.json and model.safetensors disagree in '%s': ", w->dir);
  return ok(w, id);
}

static int32_t weight1(wnet *w, const char *prefix, const char *suffix, int64_t n) {
  char name[400];
  snprintf(name, sizeof name, "%s.%s", prefix, suffix);
  return weight(w, name, 1, &n);
}

/* y = x W^T (+ b): prefix.weight [n_out, n_in], prefix.bias [n_out] when bias. */
static int32_t linear(wnet *w, const char *prefix, int32_t x, int64_t n_out, int64_t n_in, int bias) {
  char name[400];
  int64_t dims[2] = {n_out, n_in};
  snprintf(name, sizeof name, "%s.weight", prefix);
  int32_t wt = weight(w, name, 2, dims);
  int32_t b = bias ? weight1(w, prefix, "bias", n_out) : -1;
  if (w->s != KILN_OK) return -1;
  return ok(w, kiln_network_add_matmul(w->net, prefix, x, wt, b));
}

static int32_t layernorm(wnet *w, const char *prefix, int32_t x) {
  int32_t g = weight1(w, prefix, "weight", w->c.d_model), b = weight1(w, prefix, "bias", w->c.d_model);
  if (w->s != KILN_OK) return -1;
  return ok(w, kiln_network_add_layernorm(w->net, prefix, x, g, b, 1e-5f));
}

/* [B, S, H*Dh] -> [B, H, S, Dh] */
static int32_t split_heads(wnet *w, int32_t x, int32_t heads) {
  if (w->s != KILN_OK) return -1;
  int64_t dims[4] = {0, 0, heads, w->c.d_model / heads};
  int32_t perm[4] = {0, 2, 1, 3};
  int32_t r = ok(w, kiln_network_add_reshape(w->net, NULL, x, 4, dims));
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_transpose(w->net, NULL, r, 4, perm));
}

/* [B, H, S, Dh] -> [B, S, H*Dh] */
static int32_t merge_heads(wnet *w, int32_t x) {
  if (w->s != KILN_OK) return -1;
  int64_t dims[3] = {0, 0, w->c.d_model};
  int32_t perm[4] = {0, 2, 1, 3};
  int32_t t = ok(w, kiln_network_add_transpose(w->net, NULL, x, 4, perm));
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_reshape(w->net, NULL, t, 3, dims));
}

static int32_t attention(wnet *w, const char *name, int32_t q, int32_t k, int32_t v, int32_t heads, int causal) {
  if (w->s != KILN_OK) return -1;
  float scale = (float)(1.0 / sqrt((double)(w->c.d_model / heads)));
  return ok(w, kiln_network_add_attention(w->net, name, q, k, v, scale, causal));
}

/* x + out_proj(attention(q_proj(h), k, v)) where h = LN(x); k, v already split into heads. */
static int32_t attention_out(wnet *w, const char *prefix, int32_t x, int32_t h, int32_t k, int32_t v, int32_t heads,
                             int causal) {
  char name[320];
  int64_t d = w->c.d_model;
  snprintf(name, sizeof name, "%s.q_proj", prefix);
  int32_t q = split_heads(w, linear(w, name, h, d, d, 1), heads);
  snprintf(name, sizeof name, "%s.attention", prefix);
  int32_t a = merge_heads(w, attention(w, name, q, k, v, heads, causal));
  snprintf(name, sizeof name, "%s.out_proj", prefix);
  int32_t o = linear(w, name, a, d, d, 1);
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_add(w->net, NULL, x, o));
}

/* x + fc2(GELU(fc1(LN(x)))) */
static int32_t mlp(wnet *w, const char *prefix, int32_t x, int64_t ffn) {
  char name[320];
  int64_t d = w->c.d_model;
  snprintf(name, sizeof name, "%s.final_layer_norm", prefix);
  int32_t h = layernorm(w, name, x);
  snprintf(name, sizeof name, "%s.fc1", prefix);
  h = linear(w, name, h, ffn, d, 1);
  h = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_activation(w->net, NULL, h, KILN_ACTIVATION_GELU));
  snprintf(name, sizeof name, "%s.fc2", prefix);
  h = linear(w, name, h, d, ffn, 1);
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_add(w->net, NULL, x, h));
}

/* Keys and values of `src` through prefix.k_proj (no bias) / prefix.v_proj, split into heads. */
static void project_kv(wnet *w, const char *prefix, int32_t src, int32_t heads, int32_t *k, int32_t *v) {
  char name[320];
  int64_t d = w->c.d_model;
  snprintf(name, sizeof name, "%s.k_proj", prefix);
  *k = split_heads(w, linear(w, name, src, d, d, 0), heads);
  snprintf(name, sizeof name, "%s.v_proj", prefix);
  *v = split_heads(w, linear(w, name, src, d, d, 1), heads);
}

static int32_t qkv_linear(wnet *w, const char *prefix, int32_t h);
static int32_t out_proj(wnet *w, const char *prefix, int32_t x, int32_t a);

/* Self-attention through the fused-attention plugin: qkv [B, S, 3d] is already the plugin's
 * packed layout [B, S, 3, H, Dh]; its output [B, S, H, Dh] is [B, S, d]. */
static int32_t fused_self_attention(wnet *w, const char *prefix, int32_t x, int32_t h, int32_t heads) {
  char name[320];
  int32_t qkv = qkv_linear(w, prefix, h), dh = w->c.d_model / heads, causal = 0;
  float scale = (float)(1.0 / sqrt((double)dh));
  int64_t packed[5] = {0, 0, 3, heads, dh}, merged[3] = {0, 0, w->c.d_model};
  kiln_plugin_field f[5] = {{"num_heads", KILN_PLUGIN_FIELD_INT32, 1, &heads},
                            {"head_size", KILN_PLUGIN_FIELD_INT32, 1, &dh},
                            {"scale", KILN_PLUGIN_FIELD_FLOAT32, 1, &scale},
                            {"causal", KILN_PLUGIN_FIELD_INT32, 1, &causal},
                            {"layout", KILN_PLUGIN_FIELD_STRING, 3, "qkv"}};
  int32_t r = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_reshape(w->net, NULL, qkv, 5, packed));
  snprintf(name, sizeof name, "%s.attention", prefix);
  int32_t a = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_plugin(w->net, name, "fmha", 1, 1, &r, 5, f));
  a = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_reshape(w->net, NULL, a, 3, merged));
  return out_proj(w, prefix, x, a);
}

static int32_t encoder_block(wnet *w, int32_t i, int32_t x) {
  char prefix[128], name[192];
  snprintf(prefix, sizeof prefix, "model.encoder.layers.%d", i);
  snprintf(name, sizeof name, "%s.self_attn_layer_norm", prefix);
  int32_t h = layernorm(w, name, x), k, v;
  snprintf(name, sizeof name, "%s.self_attn", prefix);
  if (w->fmha) {
    x = fused_self_attention(w, name, x, h, w->c.encoder_heads);
  } else {
    project_kv(w, name, h, w->c.encoder_heads, &k, &v);
    x = attention_out(w, name, x, h, k, v, w->c.encoder_heads, 0);
  }
  return mlp(w, prefix, x, w->c.encoder_ffn);
}

static void mark(wnet *w, int32_t id, const char *fmt, int32_t i) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  if (w->s == KILN_OK) w->s = kiln_network_mark_output(w->net, id, name);
}

static void set_profile(wnet *w, int32_t p, const char *fmt, int32_t i, const int64_t *mn, const int64_t *opt,
                        const int64_t *mx) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  if (w->s == KILN_OK) w->s = kiln_network_set_profile_dims(w->net, p, name, mn, opt, mx);
}

static void encoder_graph(wnet *w, int32_t max_batch) {
  const kiln_whisper_config *c = &w->c;
  int64_t d = c->d_model, frames = 2 * (int64_t)c->n_audio_ctx;
  int64_t mel_dims[3] = {-1, c->n_mels, frames}, c1[3] = {d, c->n_mels, 3}, c2[3] = {d, d, 3}, pos[2] = {c->n_audio_ctx, d};
  int32_t mel = ok(w, kiln_network_add_input(w->net, "mel", KILN_DTYPE_FP32, 3, mel_dims));
  int32_t w1 = weight(w, "model.encoder.conv1.weight", 3, c1), b1 = weight1(w, "model.encoder.conv1", "bias", d);
  int32_t w2 = weight(w, "model.encoder.conv2.weight", 3, c2), b2 = weight1(w, "model.encoder.conv2", "bias", d);
  int32_t pe = weight(w, "model.encoder.embed_positions.weight", 2, pos);
  if (w->s != KILN_OK) return;
  int32_t x = ok(w, kiln_network_add_conv1d(w->net, "conv1", mel, w1, b1, 1));
  x = ok(w, kiln_network_add_activation(w->net, "conv1.gelu", x, KILN_ACTIVATION_GELU));
  x = ok(w, kiln_network_add_conv1d(w->net, "conv2", x, w2, b2, 2));
  x = ok(w, kiln_network_add_activation(w->net, "conv2.gelu", x, KILN_ACTIVATION_GELU));
  int32_t perm[3] = {0, 2, 1};
  x = ok(w, kiln_network_add_transpose(w->net, "to_bsd", x, 3, perm)); /* [B, 1500, d] */
  x = ok(w, kiln_network_add_add(w->net, "add_positions", x, pe));
  for (int32_t i = 0; i < c->encoder_layers; i++) x = encoder_block(w, i, x);
  x = layernorm(w, "model.encoder.layer_norm", x);
  mark(w, x, "encoder_out", 0);
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    char prefix[128];
    int32_t k, v;
    snprintf(prefix, sizeof prefix, "model.decoder.layers.%d.encoder_attn", i);
    project_kv(w, prefix, x, c->decoder_heads, &k, &v);
    if (w->kv_int8) {
      char name[192];
      snprintf(name, sizeof name, "%s.k_quantize", prefix);
      k = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_quantize_int8(w->net, name, k));
      snprintf(name, sizeof name, "%s.v_quantize", prefix);
      v = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_quantize_int8(w->net, name, v));
      mark(w, k + 1, "cross_k_scale.%d", i);
      mark(w, v + 1, "cross_v_scale.%d", i);
    }
    mark(w, k, "cross_k.%d", i);
    mark(w, v, "cross_v.%d", i);
  }
  int32_t p = ok(w, kiln_network_add_profile(w->net));
  int64_t mn[3] = {1, c->n_mels, frames}, mx[3] = {max_batch, c->n_mels, frames};
  set_profile(w, p, "mel", 0, mn, mx, mx);
}

/* The self-attention's q, k and v projections as one [3d, d] matmul (k has no bias: zeros). */
static int32_t qkv_linear(wnet *w, const char *prefix, int32_t h) {
  int64_t d = w->c.d_model, wd[2] = {d, d}, bd[1] = {d}, qkv_w[2] = {3 * d, d}, qkv_b[1] = {3 * d};
  float *wt = w->s == KILN_OK ? malloc((size_t)(3 * d * d + 3 * d) * sizeof(float)) : NULL;
  if (w->s == KILN_OK && !wt) w->s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper network: out of memory");
  if (w->s != KILN_OK) return -1;
  float *bias = wt + 3 * d * d;
  const char *part[3] = {"q_proj", "k_proj", "v_proj"};
  char name[320];
  for (int i = 0; i < 3 && w->s == KILN_OK; i++) {
    snprintf(name, sizeof name, "%s.%s.weight", prefix, part[i]);
    kiln_status st = kiln_weight_source_read_f32(w->ws, name, 2, wd, wt + i * d * d);
    snprintf(name, sizeof name, "%s.%s.bias", prefix, part[i]);
    if (st == KILN_OK && i == 1) memset(bias + d, 0, (size_t)d * sizeof(float));
    else if (st == KILN_OK) st = kiln_weight_source_read_f32(w->ws, name, 1, bd, bias + i * d);
    if (st == KILN_ERR_NOT_FOUND)
      st = kiln_error(KILN_ERR_FORMAT, "checkpoint '%s' has no tensor \"%s\"; kiln reads transformers' Whisper names", w->dir,
                      name);
    w->s = st;
  }
  int32_t cw = -1, cb = -1;
  snprintf(name, sizeof name, "%s.qkv_proj.weight", prefix);
  if (w->s == KILN_OK) cw = ok(w, kiln_network_add_constant(w->net, name, KILN_DTYPE_FP32, 2, qkv_w, wt));
  snprintf(name, sizeof name, "%s.qkv_proj.bias", prefix);
  if (w->s == KILN_OK) cb = ok(w, kiln_network_add_constant(w->net, name, KILN_DTYPE_FP32, 1, qkv_b, bias));
  free(wt);
  snprintf(name, sizeof name, "%s.qkv_proj", prefix);
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_matmul(w->net, name, h, cw, cb));
}

/* x + out_proj(a) */
static int32_t out_proj(wnet *w, const char *prefix, int32_t x, int32_t a) {
  char name[320];
  snprintf(name, sizeof name, "%s.out_proj", prefix);
  int32_t o = linear(w, name, a, w->c.d_model, w->c.d_model, 1);
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_add(w->net, NULL, x, o));
}

static int32_t decoder_input(wnet *w, const char *fmt, int32_t i, kiln_dtype dt, int32_t rank, const int64_t *dims) {
  char name[64];
  snprintf(name, sizeof name, fmt, i);
  return w->s != KILN_OK ? -1 : ok(w, kiln_network_add_input(w->net, name, dt, rank, dims));
}

static int32_t decoder_block(wnet *w, int32_t i, int32_t x, int32_t lengths) {
  const kiln_whisper_config *c = &w->c;
  int64_t H = c->decoder_heads, dh = c->d_model / c->decoder_heads;
  int64_t cache_dims[4] = {-1, H, -1, dh}, cross_dims[4] = {-1, H, c->n_audio_ctx, dh}; /* T: up to n_text_ctx */
  float scale = (float)(1.0 / sqrt((double)dh));
  char prefix[128], name[192];
  kiln_dtype kv = w->kv_int8 ? KILN_DTYPE_INT8 : KILN_DTYPE_FP32;
  snprintf(prefix, sizeof prefix, "model.decoder.layers.%d", i);
  int32_t cache_k = decoder_input(w, "cache_k.%d", i, kv, 4, cache_dims);
  int32_t cache_v = decoder_input(w, "cache_v.%d", i, kv, 4, cache_dims);
  int32_t cross_k = decoder_input(w, "cross_k.%d", i, kv, 4, cross_dims);
  int32_t cross_v = decoder_input(w, "cross_v.%d", i, kv, 4, cross_dims);
  int32_t cache_ks = -1, cache_vs = -1, cross_ks = -1, cross_vs = -1; /* int8: scales [B, H, T] */
  if (w->kv_int8) {
    cache_ks = decoder_input(w, "cache_k_scale.%d", i, KILN_DTYPE_FP32, 3, cache_dims);
    cache_vs = decoder_input(w, "cache_v_scale.%d", i, KILN_DTYPE_FP32, 3, cache_dims);
    cross_ks = decoder_input(w, "cross_k_scale.%d", i, KILN_DTYPE_FP32, 3, cross_dims);
    cross_vs = decoder_input(w, "cross_v_scale.%d", i, KILN_DTYPE_FP32, 3, cross_dims);
  }

  snprintf(name, sizeof name, "%s.self_attn_layer_norm", prefix);
  int32_t h = layernorm(w, name, x);
  snprintf(name, sizeof name, "%s.self_attn", prefix);
  int32_t qkv = qkv_linear(w, name, h);
  snprintf(name, sizeof name, "%s.self_attn.attention", prefix);
  int32_t a = w->s != KILN_OK ? -1
              : w->kv_int8 ? ok(w, kiln_network_add_cached_self_attention_int8(w->net, name, qkv, cache_k, cache_v, cache_ks,
                                                                                cache_vs, lengths, (int32_t)H, scale))
                           : ok(w, kiln_network_add_cached_self_attention(w->net, name, qkv, cache_k, cache_v, lengths,
                                                                           (int32_t)H, scale));
  snprintf(name, sizeof name, "%s.self_attn", prefix);
  x = out_proj(w, name, x, a);

  snprintf(name, sizeof name, "%s.encoder_attn_layer_norm", prefix);
  h = layernorm(w, name, x);
  snprintf(name, sizeof name, "%s.encoder_attn.q_proj", prefix);
  int32_t q = linear(w, name, h, c->d_model, c->d_model, 1);
  snprintf(name, sizeof name, "%s.encoder_attn.attention", prefix);
  a = w->s != KILN_OK ? -1
      : w->kv_int8 ? ok(w, kiln_network_add_cross_attention_int8(w->net, name, q, cross_k, cross_v, cross_ks, cross_vs,
                                                                  (int32_t)H, scale))
                   : ok(w, kiln_network_add_cross_attention(w->net, name, q, cross_k, cross_v, (int32_t)H, scale));
  snprintf(name, sizeof name, "%s.encoder_attn", prefix);
  x = out_proj(w, name, x, a);
  return mlp(w, prefix, x, c->decoder_ffn);
}

int32_t kiln_whisper_max_chunk(int32_t max_rows, int32_t n_text_ctx) {
  int32_t s = max_rows > 0 ? 2048 / max_rows : 64;
  if (s > 64) s = 64;
  if (s < 8) s = 8;
  return s < n_text_ctx ? s : n_text_ctx;
}

static void decoder_profile(wnet *w, int32_t rows) {
  const kiln_whisper_config *c = &w->c;
  int64_t H = c->decoder_heads, dh = c->d_model / c->decoder_heads, n = c->n_text_ctx, A = c->n_audio_ctx;
  int64_t chunk = kiln_whisper_max_chunk(rows, c->n_text_ctx);
  int32_t p = ok(w, kiln_network_add_profile(w->net));
  int64_t tmn[2] = {1, 1}, topt[2] = {rows, 1}, tmx[2] = {rows, chunk};
  int64_t lmn[1] = {1}, lmx[1] = {rows};
  int64_t kmn[4] = {1, H, 1, dh}, kmx[4] = {rows, H, n, dh}; /* shorter caches: max_text_tokens */
  int64_t cmn[4] = {1, H, A, dh}, cmx[4] = {rows, H, A, dh};
  set_profile(w, p, "tokens", 0, tmn, topt, tmx);
  set_profile(w, p, "positions", 0, tmn, topt, tmx);
  set_profile(w, p, "lengths", 0, lmn, lmx, lmx);
  for (int32_t i = 0; i < c->decoder_layers; i++) {
    set_profile(w, p, "cache_k.%d", i, kmn, kmx, kmx);
    set_profile(w, p, "cache_v.%d", i, kmn, kmx, kmx);
    set_profile(w, p, "cross_k.%d", i, cmn, cmx, cmx);
    set_profile(w, p, "cross_v.%d", i, cmn, cmx, cmx);
    if (!w->kv_int8) continue;
    set_profile(w, p, "cache_k_scale.%d", i, kmn, kmx, kmx); /* the first three dims of the caches' */
    set_profile(w, p, "cache_v_scale.%d", i, kmn, kmx, kmx);
    set_profile(w, p, "cross_k_scale.%d", i, cmn, cmx, cmx);
    set_profile(w, p, "cross_v_scale.%d", i, cmn, cmx, cmx);
  }
}

static void decoder_graph(wnet *w, int32_t rows) {
  const kiln_whisper_config *c = &w->c;
  int64_t d = c->d_model, tok_dims[2] = {-1, -1}, len_dims[1] = {-1};
  int64_t emb[2] = {c->vocab_size, d}, pos[2] = {c->n_text_ctx, d};
  int32_t tokens = ok(w, kiln_network_add_input(w->net, "tokens", KILN_DTYPE_INT32, 2, tok_dims));
  int32_t positions = decoder_input(w, "positions", 0, KILN_DTYPE_INT32, 2, tok_dims);
  int32_t lengths = decoder_input(w, "lengths", 0, KILN_DTYPE_INT32, 1, len_dims);
  int32_t table = weight(w, "model.decoder.embed_tokens.weight", 2, emb);
  int32_t pe = weight(w, "model.decoder.embed_positions.weight", 2, pos);
  if (w->s != KILN_OK) return;
  int32_t x = ok(w, kiln_network_add_embedding(w->net, "embed_tokens", table, tokens));   /* [B, S, d] */
  int32_t px = ok(w, kiln_network_add_embedding(w->net, "embed_positions", pe, positions)); /* [B, S, d] */
  x = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_add(w->net, "add_positions", x, px));
  for (int32_t i = 0; i < c->decoder_layers; i++) x = decoder_block(w, i, x, lengths);
  x = layernorm(w, "model.decoder.layer_norm", x);
  /* tied output projection: logits = x embed_tokens^T, [B, S, vocab] */
  int32_t logits = w->s != KILN_OK ? -1 : ok(w, kiln_network_add_matmul(w->net, "logits", x, table, -1));
  mark(w, logits, "logits", 0);
  decoder_profile(w, rows);
}

kiln_status kiln_whisper_network(const char *dir, int32_t max_batch, int decoder, int fmha, int kv_int8, kiln_network **out) {
  if (!dir || !out) return kiln_error(KILN_ERR_INVALID_ARG, "whisper network: NULL argument");
  if (max_batch < 1 || max_batch > 4096)
    return kiln_error(KILN_ERR_INVALID_ARG, "whisper network: max_batch must be 1..4096 (got %d)", max_batch);
  wnet w;
  memset(&w, 0, sizeof w);
  w.dir = dir;
  w.fmha = fmha;
  w.kv_int8 = kv_int8;
  KILN_TRY(kiln_whisper_config_load(dir, &w.c));
  w.s = kiln_weight_source_open(dir, NULL, &w.ws);
  if (w.s != KILN_OK) return kiln_error_context(w.s, "whisper checkpoint '%s': ", dir);
  w.s = kiln_network_create(&w.net);
  if (w.s == KILN_OK) {
    if (decoder) decoder_graph(&w, max_batch);
    else encoder_graph(&w, max_batch);
  }
  kiln_weight_source_close(w.ws);
  if (w.s != KILN_OK) {
    kiln_network_destroy(w.net);
    return w.s;
  }
  *out = w.net;
  return KILN_OK;
}

kiln_status kiln_whisper_encoder_network(const char *checkpoint_dir, int32_t max_batch, kiln_network **out) {
  return kiln_whisper_network(checkpoint_dir, max_batch, 0, 0, 0, out);
}

kiln_status kiln_whisper_decoder_network(const char *checkpoint_dir, int32_t max_batch, kiln_network **out) {
  return kiln_whisper_network(checkpoint_dir, max_batch, 1, 0, 0, out);
}

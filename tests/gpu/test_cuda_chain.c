/* tests/gpu/test_cuda_chain.c - the persistent chain kernel (src/backends/cuda/chain.cu: a run of
 * decoding-step layers as one cooperative kernel, which the runtime tries before each layer of a
 * CUDA engine) inside whole engines. The network is a small Whisper-like decoder built through
 * the public API as whisper_net.c's decoder_block builds it: 2 blocks of layernorm -> packed qkv
 * matmul (bias) -> cached self-attention -> out_proj + residual -> layernorm -> q_proj ->
 * cross-attention -> out_proj + residual -> layernorm -> fc1 + GELU -> fc2 + residual, then
 * layernorm -> logits over 1037 tokens (no multiple of 16). The builder fuses it into the layers
 * the Whisper decoder gets (layernorm into the next matmul, GELU into fc1, the residual adds into
 * out_proj / fc2): 17 layers, checked. Weights are random and fp16-exact, so the CUDA engine
 * (fp16; fp16 weights, int8 per row, int4 in groups of 64 with the logits left fp16 as Whisper's
 * tied ones are, int4 in groups of 128) and the CPU engine (fp32, the same weight-only pass: the
 * same codes and scales; the oracle) compute from the same values. Each case runs the CUDA
 * engine with chains allowed wherever they apply (kiln_cuda_chain_allow(KILN_CUDA_CHAIN_ALWAYS),
 * not the default's batch-1 rule) and with chains off, from fresh copies of
 * the caches (self-attention writes them in place), and checks:
 *   - logits of both runs against the CPU's and against each other: max |diff| / max |ref| and
 *     the nmse (fp16 activations against fp32: a few ulps of fp16 through two blocks);
 *   - the caches: the new key / value of every row and head at position lengths[b] against the
 *     CPU's and between the two runs; every other position untouched, bit for bit. Positions at
 *     and past a row's length hold stale values 4x larger than the valid ones, so a kernel that
 *     attends to one (or reads position lengths[b] before writing it) shows in the logits;
 *   - chain launches (kiln_cuda_chain_launches): more after every run with chains allowed on
 *     sm_90+, none after a run with chains off; with a CUDA graph, some while the first step
 *     captures it and none from the host while later steps replay it.
 * Grid, for d 256 (4 heads of 64) and d 128 (4 heads of 32) and each weight format: rows B 1, 3,
 * 4, 16 with cross-attention rows Bk = B, and B 4 with Bk 1 (query rows sharing key rows); 1500
 * and 100 audio positions; caches of 448 and 64 positions; lengths 0, 1, 127, 128, 129, 300, T-1
 * rotated over the rows (values past T-1 become T-1, T-2, ...), random for rows past 7; one case
 * with more cache rows than rows (the extra rows untouched). For d 384 (Whisper tiny: 6 heads of
 * 64, fc2's K in two pieces of a unit) three of those shapes. And per format and d, one or
 * two sequences of 3 decoding steps from a CUDA graph captured with chains allowed, x and lengths
 * changed in their buffers between replays, against the same steps layer by layer, chains off.
 * The whole grid runs twice: with float caches, and with int8 caches (codes and a scale per
 * vector, kiln_network_add_*_attention_int8; the initial caches quantized here by network.h's rule
 * with fp16 scales, so both engines read the same codes and scales; caches compared as their
 * dequantized values). Prints the case count, the chain launches and the worst errors per format;
 * names every failing case. Exits 77 (skipped) without a GPU.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "backends/cuda/cuda_ops.h"
#include "check.h"
#include "gpu_test_util.h"
#include "kiln/kiln.h"

#define N_LAYERS 2
#define VOCAB 1037
#define MAX_ROWS 16
#define MAX_CAP 448
#define MAX_AUDIO 1500
#define GRAPH_STEPS 3
#define FUSED_LAYERS (8 * N_LAYERS + 1) /* per block 8 after fusion, and the logits */
#define TIMING_CACHE "test_cuda_chain.timing"

#define CUDA_REQUIRE(call)                                                                   \
  do {                                                                                       \
    cudaError_t cr_e_ = (call);                                                              \
    if (cr_e_ != cudaSuccess) GT_DIE("%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(cr_e_)); \
  } while (0)

typedef struct geom {
  int64_t d, H;
  int full; /* the whole shape grid, or a few shapes */
} geom;

typedef struct wmode {
  const char *name;
  kiln_weight_only wo;
  int32_t group;
  const char *keep_float; /* weights left fp16 under weight_only */
  double tol, nmse;       /* max |diff| / max |ref| and nmse bounds against the CPU */
} wmode;

typedef struct shape {
  int64_t B, Bk, Bc, A, T; /* rows, cross-attention rows, cache rows, audio positions, cache capacity */
} shape;

/* d 384 is Whisper tiny's: fc2's K of 1536 is more than one chain slot takes (1280 fp16 values,
 * or the staged x of 16 rows), so its K streams through consecutive slots of a unit. d 1280 is
 * Whisper large's: fc2's K of 5120 streams through several slots (fp16 and int8 weights; int4 at
 * 16 rows of x, whose staged x fits 1280 values). */
static const geom geoms[] = {{256, 4, 1}, {128, 4, 1}, {384, 6, 0}, {1280, 20, 0}};
/* Tolerances: this network with fp16 activations (a CPU fp16 engine) against the fp32 one came to
 * max |diff| / max |ref| <= 1.2e-3 and nmse <= 8e-7 over the whole grid, logits and new cache
 * vectors alike; attending to one stale entry moves the logits' nmse by 6e-4 at least (one more
 * valid-looking key: 2e-5 at length 300). The bounds leave 15x (max) and 25x (nmse) for the
 * GPU's other summation orders; int4 a little more (its weights scaled in fp16 in the kernels). */
static const wmode wmodes[] = {
    {"fp16", KILN_WEIGHT_ONLY_NONE, 128, NULL, 2e-2, 2e-5},
    {"int8", KILN_WEIGHT_ONLY_INT8, 0, NULL, 2e-2, 2e-5},
    {"int4-g64", KILN_WEIGHT_ONLY_INT4, 64, "logits.weight", 3e-2, 4e-5}, /* Whisper's mix: tied logits fp16 */
    {"int4-g128", KILN_WEIGHT_ONLY_INT4, 128, NULL, 3e-2, 4e-5},
};
#define N_MODES ((int)(sizeof wmodes / sizeof wmodes[0]))

/* Worst errors of one weight format: [0] chains on vs CPU, [1] off vs CPU, [2] on vs off, [3] caches. */
typedef struct worst {
  double rel[4], nmse[4];
} worst;

static cudaStream_t stream;
static int sm90; /* compute capability 9.x or newer: the chain must run */
static int n_cases, n_graph_steps, n_failed;
static int64_t n_launches, cache_same, cache_compared;
static worst worsts[2][N_MODES]; /* [int8 caches][format] */
static int kv8;                   /* this pass: int8 caches */
static char failed[64][160];

/* ---- host data ------------------------------------------------------------------------------ */

static float *floats(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!p) GT_DIE("out of host memory");
  return p;
}

static float *nan_floats(int64_t n) {
  float *p = floats(n);
  memset(p, 0xFF, sizeof(float) * (size_t)(n > 0 ? n : 1));
  return p;
}

static float *copy_floats(const float *v, int64_t n) {
  float *p = floats(n);
  memcpy(p, v, sizeof(float) * (size_t)n);
  return p;
}

/* Uniform in [lo, hi), rounded to fp16 values: the fp16 and fp32 engines read the same numbers. */
static void fill_fp16_exact(check_rng *r, float *v, int64_t n, float lo, float hi) {
  check_fill(r, v, n, lo, hi);
  for (int64_t i = 0; i < n; i++) v[i] = kiln_fp16_to_fp32(kiln_fp32_to_fp16(v[i]));
}

static float *random_floats(check_rng *r, int64_t n, float lo, float hi) {
  float *v = floats(n);
  fill_fp16_exact(r, v, n, lo, hi);
  return v;
}

/* ---- the network ---------------------------------------------------------------------------- */

typedef struct netb {
  kiln_network *net;
  check_rng *r;
  int64_t d, H, D;
  int bad; /* some call failed */
} netb;

static int32_t nb_ok(netb *b, int32_t id) {
  if (id < 0) b->bad = 1;
  return id;
}

static int32_t nb_const(netb *b, const char *name, int32_t rank, const int64_t *dims, float lo, float hi) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) n *= dims[i];
  float *v = random_floats(b->r, n, lo, hi);
  int32_t id = nb_ok(b, kiln_network_add_constant(b->net, name, KILN_DTYPE_FP32, rank, dims, v));
  free(v);
  return id;
}

/* y = x W^T + b, W [n_out, n_in] scaled for unit-variance outputs, b in [-0.1, 0.1). */
static int32_t nb_linear(netb *b, const char *prefix, const char *part, int32_t x, int64_t n_out, int64_t n_in) {
  char wn[128], bn[128], name[96];
  int64_t wd[2] = {n_out, n_in}, bd[1] = {n_out};
  float s = 1.7f / sqrtf((float)n_in);
  snprintf(name, sizeof name, "%s.%s", prefix, part);
  snprintf(wn, sizeof wn, "%s.weight", name);
  snprintf(bn, sizeof bn, "%s.bias", name);
  int32_t w = nb_const(b, wn, 2, wd, -s, s), bias = nb_const(b, bn, 1, bd, -0.1f, 0.1f);
  return nb_ok(b, kiln_network_add_matmul(b->net, name, x, w, bias));
}

static int32_t nb_layernorm(netb *b, const char *prefix, const char *part, int32_t x) {
  char gn[128], bn[128], name[96];
  int64_t dd[1] = {b->d};
  snprintf(name, sizeof name, "%s.%s", prefix, part);
  snprintf(gn, sizeof gn, "%s.weight", name);
  snprintf(bn, sizeof bn, "%s.bias", name);
  int32_t g = nb_const(b, gn, 1, dd, 0.5f, 1.5f), beta = nb_const(b, bn, 1, dd, -0.2f, 0.2f);
  return nb_ok(b, kiln_network_add_layernorm(b->net, name, x, g, beta, 1e-5f));
}

/* "cache_k.0", "cross_v.1", ... */
static const char *kv_name(char *buf, size_t n, int cross, int layer, int kv) {
  snprintf(buf, n, "%s_%s.%d", cross ? "cross" : "cache", kv ? "v" : "k", layer);
  return buf;
}

/* int8 caches' scales: "cache_k_scale.0", ... */
static const char *scale_name(char *buf, size_t n, int cross, int layer, int kv) {
  snprintf(buf, n, "%s_%s_scale.%d", cross ? "cross" : "cache", kv ? "v" : "k", layer);
  return buf;
}

static int32_t nb_kv_input(netb *b, int cross, int layer, int kv) {
  char name[32];
  int64_t dims[4] = {-1, b->H, -1, b->D}; /* [rows, H, T or A, D] */
  return nb_ok(b, kiln_network_add_input(b->net, kv_name(name, sizeof name, cross, layer, kv),
                                         kv8 ? KILN_DTYPE_INT8 : KILN_DTYPE_FP32, 4, dims));
}

static int32_t nb_scale_input(netb *b, int cross, int layer, int kv) {
  char name[32];
  int64_t dims[3] = {-1, b->H, -1}; /* [rows, H, T or A] */
  return nb_ok(b, kiln_network_add_input(b->net, scale_name(name, sizeof name, cross, layer, kv), KILN_DTYPE_FP32, 3, dims));
}

/* whisper_net.c's decoder_block with float caches. */
static int32_t nb_block(netb *b, int32_t i, int32_t x, int32_t lengths) {
  char p[64], name[128];
  int32_t H = (int32_t)b->H;
  float scale = (float)(1.0 / sqrt((double)b->D));
  int32_t ck = nb_kv_input(b, 0, i, 0), cv = nb_kv_input(b, 0, i, 1);
  int32_t xk = nb_kv_input(b, 1, i, 0), xv = nb_kv_input(b, 1, i, 1);
  int32_t sc[2][2] = {{-1, -1}, {-1, -1}}; /* [cross][kv]: int8 caches' scales */
  for (int c = 0; kv8 && c < 4; c++) sc[c / 2][c % 2] = nb_scale_input(b, c / 2, i, c % 2);
  snprintf(p, sizeof p, "model.decoder.layers.%d", i);
  int32_t h = nb_layernorm(b, p, "self_attn_layer_norm", x);
  int32_t qkv = nb_linear(b, p, "self_attn.qkv_proj", h, 3 * b->d, b->d);
  snprintf(name, sizeof name, "%s.self_attn.attention", p);
  int32_t a = nb_ok(b, kv8 ? kiln_network_add_cached_self_attention_int8(b->net, name, qkv, ck, cv, sc[0][0], sc[0][1],
                                                                          lengths, H, scale)
                           : kiln_network_add_cached_self_attention(b->net, name, qkv, ck, cv, lengths, H, scale));
  x = nb_ok(b, kiln_network_add_add(b->net, NULL, x, nb_linear(b, p, "self_attn.out_proj", a, b->d, b->d)));
  h = nb_layernorm(b, p, "encoder_attn_layer_norm", x);
  int32_t q = nb_linear(b, p, "encoder_attn.q_proj", h, b->d, b->d);
  snprintf(name, sizeof name, "%s.encoder_attn.attention", p);
  a = nb_ok(b, kv8 ? kiln_network_add_cross_attention_int8(b->net, name, q, xk, xv, sc[1][0], sc[1][1], H, scale)
                   : kiln_network_add_cross_attention(b->net, name, q, xk, xv, H, scale));
  x = nb_ok(b, kiln_network_add_add(b->net, NULL, x, nb_linear(b, p, "encoder_attn.out_proj", a, b->d, b->d)));
  h = nb_layernorm(b, p, "final_layer_norm", x);
  h = nb_linear(b, p, "fc1", h, 4 * b->d, b->d);
  h = nb_ok(b, kiln_network_add_activation(b->net, NULL, h, KILN_ACTIVATION_GELU));
  h = nb_linear(b, p, "fc2", h, b->d, 4 * b->d);
  return nb_ok(b, kiln_network_add_add(b->net, NULL, x, h));
}

static void nb_profile(netb *b) {
  int32_t p = nb_ok(b, kiln_network_add_profile(b->net));
  int64_t xmn[3] = {1, 1, b->d}, xmx[3] = {MAX_ROWS, 1, b->d}, lmn[1] = {1}, lmx[1] = {MAX_ROWS};
  int64_t kmn[4] = {1, b->H, 1, b->D}, kmx[4] = {MAX_ROWS, b->H, MAX_CAP, b->D}, amx[4] = {MAX_ROWS, b->H, MAX_AUDIO, b->D};
  int64_t smn[3] = {1, b->H, 1}; /* int8 caches' scales: kmx / amx's first three dims at most */
  kiln_status st = p < 0 ? KILN_ERR_INVALID_ARG : kiln_network_set_profile_dims(b->net, p, "x", xmn, xmx, xmx);
  if (st == KILN_OK) st = kiln_network_set_profile_dims(b->net, p, "lengths", lmn, lmx, lmx);
  for (int i = 0; i < N_LAYERS; i++)
    for (int c = 0; c < 4 && st == KILN_OK; c++) {
      char name[32];
      st = kiln_network_set_profile_dims(b->net, p, kv_name(name, sizeof name, c / 2, i, c % 2), kmn, c / 2 ? amx : kmx,
                                         c / 2 ? amx : kmx);
      if (st == KILN_OK && kv8) /* the scales: the caches' first three dims */
        st = kiln_network_set_profile_dims(b->net, p, scale_name(name, sizeof name, c / 2, i, c % 2), smn,
                                           c / 2 ? amx : kmx, c / 2 ? amx : kmx);
    }
  if (st != KILN_OK) b->bad = 1;
}

static kiln_network *make_network(const geom *g, check_rng *r) {
  netb b = {NULL, r, g->d, g->H, g->d / g->H, 0};
  if (kiln_network_create(&b.net) != KILN_OK) return NULL;
  int64_t xd[3] = {-1, 1, g->d}, ld[1] = {-1}, emb[2] = {VOCAB, g->d};
  int32_t x = nb_ok(&b, kiln_network_add_input(b.net, "x", KILN_DTYPE_FP32, 3, xd));
  int32_t lengths = nb_ok(&b, kiln_network_add_input(b.net, "lengths", KILN_DTYPE_INT32, 1, ld));
  for (int32_t i = 0; i < N_LAYERS; i++) x = nb_block(&b, i, x, lengths);
  x = nb_layernorm(&b, "model.decoder", "layer_norm", x);
  float s = 1.7f / sqrtf((float)g->d);
  int32_t w = nb_const(&b, "logits.weight", 2, emb, -s, s); /* Whisper's is the token table, without bias */
  int32_t logits = nb_ok(&b, kiln_network_add_matmul(b.net, "logits", x, w, -1));
  if (!b.bad && kiln_network_mark_output(b.net, logits, "logits") != KILN_OK) b.bad = 1;
  nb_profile(&b);
  if (b.bad) {
    fprintf(stderr, "building the network failed: %s\n", kiln_last_error());
    kiln_network_destroy(b.net);
    return NULL;
  }
  return b.net;
}

/* ---- engines -------------------------------------------------------------------------------- */

static kiln_dtype io_dtype(const kiln_engine *e, const char *name) {
  for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
    kiln_io_info info;
    if (kiln_engine_io(e, i, &info) == KILN_OK && strcmp(info.name, name) == 0) return info.dtype;
  }
  return KILN_DTYPE_INVALID;
}

/* The CUDA engine in fp16 or the CPU one in fp32, with the format's weight-only quantization. */
static kiln_engine *make_engine(const kiln_network *net, const wmode *m, kiln_target target) {
  kiln_build_params p = kiln_build_default_params();
  p.target = target;
  p.precision = target == KILN_TARGET_CUDA ? KILN_DTYPE_FP16 : KILN_DTYPE_FP32;
  p.weight_only = m->wo;
  p.group_size = m->group;
  p.keep_float = m->keep_float;
  p.timing_iterations = 3;
  p.timing_cache = target == KILN_TARGET_CUDA ? TIMING_CACHE : NULL;
  void *img = NULL;
  size_t n = 0;
  kiln_build_report rep;
  kiln_engine *e = NULL;
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  CHECK_OK(kiln_build(net, &p, &img, &n, &rep));
  if (!img) return NULL;
  CHECK_EQ_INT(rep.num_layers, FUSED_LAYERS); /* the fusions of the Whisper decoder */
  int quantized = m->wo == KILN_WEIGHT_ONLY_NONE ? 0 : 6 * N_LAYERS + (m->keep_float ? 0 : 1);
  CHECK_EQ_INT(rep.num_quantized, quantized);
  CHECK_EQ_INT(rep.num_quantize_skipped, m->wo != KILN_WEIGHT_ONLY_NONE && m->keep_float ? 1 : 0);
  CHECK_OK(kiln_engine_load_memory(img, n, &lp, &e));
  kiln_free(img);
  if (e) CHECK_EQ_INT(io_dtype(e, "x"), p.precision);
  if (e) CHECK_EQ_INT(io_dtype(e, "cache_k.0"), kv8 ? KILN_DTYPE_INT8 : p.precision);
  if (e && kv8) CHECK_EQ_INT(io_dtype(e, "cache_k_scale.0"), p.precision);
  return e;
}

/* ---- one case's inputs ---------------------------------------------------------------------- */

typedef struct case_data {
  shape s;
  int64_t d, H, D;
  float *x;                  /* [B, 1, d] */
  int32_t *len;              /* [B] */
  float *cache[N_LAYERS][2]; /* [Bc, H, T, D]: what earlier steps left (int8 caches: the codes' values) */
  float *cross[N_LAYERS][2]; /* [Bk, H, A, D] */
  int8_t *code[N_LAYERS][2][2]; /* int8 caches, [layer][kv][cross]: codes, and scales per vector */
  float *scl[N_LAYERS][2][2];
} case_data;

static int64_t n_cache(const case_data *c) { return c->s.Bc * c->H * c->s.T * c->D; }
static int64_t n_cross(const case_data *c) { return c->s.Bk * c->H * c->s.A * c->D; }

/* Lengths 0, 1, 127, 128, 129, 300, T-1 from position k on, over the first 7 rows (values past
 * T-1 become T-1, T-2, ...: each row its own), random below T for the rest. */
static void make_lengths(check_rng *r, int32_t *len, int64_t B, int64_t T, int k) {
  static const int64_t set[7] = {0, 1, 127, 128, 129, 300, -1};
  int64_t clamped = 0;
  for (int64_t b = 0; b < B; b++) {
    int64_t v = b < 7 ? set[(b + k) % 7] : (int64_t)check_uniform(r, 0, (float)T);
    if (b < 7 && (v < 0 || v > T - 1)) v = T - 1 - clamped++;
    len[b] = (int32_t)(v < 0 ? 0 : v > T - 1 ? T - 1 : v);
  }
}

/* Valid positions (below the row's length) in [-1, 1); stale ones (at or past it, and rows past
 * B) in [-4, 4): attending to one would show. */
static float *make_cache(check_rng *r, const case_data *c) {
  float *v = floats(n_cache(c));
  for (int64_t b = 0; b < c->s.Bc; b++)
    for (int64_t h = 0; h < c->H; h++)
      for (int64_t t = 0; t < c->s.T; t++) {
        float a = b < c->s.B && t < c->len[b] ? 1.0f : 4.0f;
        fill_fp16_exact(r, v + ((b * c->H + h) * c->s.T + t) * c->D, c->D, -a, a);
      }
  return v;
}

/* Codes and scales into the values they stand for: out[i * D + d] = code * scale. */
static float *dequantize_vectors(const int8_t *code, const float *scl, int64_t n, int64_t D) {
  float *v = floats(n * D);
  for (int64_t i = 0; i < n * D; i++) v[i] = (float)code[i] * scl[i / D];
  return v;
}

/* n vectors of D values quantized by the CPU backend (network.h's rule), scales in fp16 (what both
 * engines read); v becomes the dequantized values. */
static void quantize_vectors(float *v, int64_t n, int64_t D, int8_t **code, float **scl) {
  *code = malloc((size_t)(n * D > 0 ? n * D : 1));
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
  if (!*code || !h) GT_DIE("out of host memory");
  const kiln_dims xs = {2, {n, D}}, ss = {1, {n}};
  kiln_tensor x = kiln_tensor_contiguous(v, KILN_DTYPE_FP32, &xs), c = kiln_tensor_contiguous(*code, KILN_DTYPE_INT8, &xs);
  kiln_tensor sc = kiln_tensor_contiguous(h, KILN_DTYPE_FP16, &ss);
  CHECK_OK(kiln_cpu_quantize_int8(&x, &c, &sc));
  *scl = floats(n);
  for (int64_t i = 0; i < n; i++) (*scl)[i] = kiln_fp16_to_fp32(h[i]);
  float *dq = dequantize_vectors(*code, *scl, n, D);
  memcpy(v, dq, sizeof(float) * (size_t)(n * D));
  free(dq), free(h);
}

static void case_make(case_data *c, const geom *g, const shape *s, check_rng *r, int k) {
  memset(c, 0, sizeof *c);
  c->s = *s;
  c->d = g->d, c->H = g->H, c->D = g->d / g->H;
  c->x = random_floats(r, s->B * c->d, -1, 1);
  c->len = malloc(sizeof(int32_t) * (size_t)s->B);
  if (!c->len) GT_DIE("out of host memory");
  make_lengths(r, c->len, s->B, s->T, k);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      c->cache[i][kv] = make_cache(r, c);
      c->cross[i][kv] = random_floats(r, n_cross(c), -1, 1);
      if (kv8) {
        quantize_vectors(c->cache[i][kv], n_cache(c) / c->D, c->D, &c->code[i][kv][0], &c->scl[i][kv][0]);
        quantize_vectors(c->cross[i][kv], n_cross(c) / c->D, c->D, &c->code[i][kv][1], &c->scl[i][kv][1]);
      }
    }
}

static void case_free(case_data *c) {
  free(c->x), free(c->len);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      free(c->cache[i][kv]), free(c->cross[i][kv]);
      for (int cr = 0; cr < 2; cr++) free(c->code[i][kv][cr]), free(c->scl[i][kv][cr]);
    }
}

/* ---- running ---------------------------------------------------------------------------------- */

typedef struct bufs { /* what a context binds: device pointers (CUDA engine) or host ones (CPU) */
  void *x, *len, *logits, *cache[N_LAYERS][2], *cross[N_LAYERS][2];
  void *scale[N_LAYERS][2][2]; /* int8 caches: [layer][kv][cross] scales (the caches hold the codes) */
} bufs;

typedef struct result {
  float *logits;             /* [B, V] */
  float *cache[N_LAYERS][2]; /* the caches after the run */
} result;

static void result_free(result *r) {
  free(r->logits);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) free(r->cache[i][kv]);
  memset(r, 0, sizeof *r);
}

static kiln_status bind(kiln_context *ctx, const case_data *c, const bufs *b) {
  const shape *s = &c->s;
  kiln_dims xd = {3, {s->B, 1, c->d}}, ld = {1, {s->B}}, yd;
  kiln_dims kd[2] = {{4, {s->Bc, c->H, s->T, c->D}}, {4, {s->Bk, c->H, s->A, c->D}}};
  kiln_status st = kiln_context_set_input_shape(ctx, "x", &xd);
  if (st == KILN_OK) st = kiln_context_set_input_shape(ctx, "lengths", &ld);
  for (int i = 0; i < N_LAYERS; i++)
    for (int cr = 0; cr < 2; cr++)
      for (int kv = 0; kv < 2 && st == KILN_OK; kv++) {
        char name[32];
        kv_name(name, sizeof name, cr, i, kv);
        st = kiln_context_set_input_shape(ctx, name, &kd[cr]);
        if (st == KILN_OK) st = kiln_context_set_tensor(ctx, name, cr ? b->cross[i][kv] : b->cache[i][kv]);
        if (st != KILN_OK || !kv8) continue;
        kiln_dims sd = {3, {kd[cr].d[0], kd[cr].d[1], kd[cr].d[2]}};
        scale_name(name, sizeof name, cr, i, kv);
        st = kiln_context_set_input_shape(ctx, name, &sd);
        if (st == KILN_OK) st = kiln_context_set_tensor(ctx, name, b->scale[i][kv][cr]);
      }
  if (st == KILN_OK) st = kiln_context_set_tensor(ctx, "x", b->x);
  if (st == KILN_OK) st = kiln_context_set_tensor(ctx, "lengths", b->len);
  if (st == KILN_OK) st = kiln_context_set_tensor(ctx, "logits", b->logits);
  if (st == KILN_OK) st = kiln_context_get_shape(ctx, "logits", &yd);
  if (st == KILN_OK && !(yd.rank == 3 && yd.d[0] == s->B && yd.d[1] == 1 && yd.d[2] == VOCAB)) {
    char buf[96];
    fprintf(stderr, "logits have shape %s, expected [%lld, 1, %d]\n", kiln_dims_str(&yd, buf, sizeof buf), (long long)s->B,
            VOCAB);
    st = KILN_ERR_SHAPE;
  }
  return st;
}

/* The CPU engine (fp32) on copies of the caches (int8 caches: of their codes and scales, the
 * result holding their values after the run). */
static kiln_status run_cpu(kiln_context *ctx, const case_data *c, result *r) {
  bufs b;
  memset(&b, 0, sizeof b);
  int64_t nv = n_cache(c) / c->D;
  int8_t *codes[N_LAYERS][2] = {{NULL}};
  float *scales[N_LAYERS][2] = {{NULL}};
  r->logits = nan_floats(c->s.B * VOCAB);
  b.x = c->x, b.len = c->len, b.logits = r->logits;
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      b.cross[i][kv] = kv8 ? (void *)c->code[i][kv][1] : (void *)c->cross[i][kv];
      b.scale[i][kv][1] = c->scl[i][kv][1];
      if (kv8) {
        codes[i][kv] = malloc((size_t)n_cache(c) + 1);
        if (!codes[i][kv]) GT_DIE("out of host memory");
        memcpy(codes[i][kv], c->code[i][kv][0], (size_t)n_cache(c));
        scales[i][kv] = copy_floats(c->scl[i][kv][0], nv);
        b.cache[i][kv] = codes[i][kv], b.scale[i][kv][0] = scales[i][kv];
      } else {
        r->cache[i][kv] = copy_floats(c->cache[i][kv], n_cache(c));
        b.cache[i][kv] = r->cache[i][kv];
      }
    }
  kiln_status st = bind(ctx, c, &b);
  if (st == KILN_OK) st = kiln_context_enqueue(ctx, NULL);
  for (int i = 0; kv8 && i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      r->cache[i][kv] = dequantize_vectors(codes[i][kv], scales[i][kv], nv, c->D);
      free(codes[i][kv]), free(scales[i][kv]);
    }
  return st;
}

static void *dev_alloc(size_t bytes) {
  void *p = NULL;
  CUDA_REQUIRE(cudaMalloc(&p, bytes + 16));
  return p;
}

/* n floats into dst as fp16 (the CUDA engine's activations and caches). */
static void dev_put(void *dst, const float *v, int64_t n) {
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
  if (!h) GT_DIE("out of host memory");
  kiln_convert_floats(h, KILN_DTYPE_FP16, v, KILN_DTYPE_FP32, n);
  CUDA_REQUIRE(cudaMemcpy(dst, h, sizeof(uint16_t) * (size_t)n, cudaMemcpyHostToDevice));
  free(h);
}

static float *dev_get(const void *src, int64_t n) {
  uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
  float *v = floats(n);
  if (!h) GT_DIE("out of host memory");
  CUDA_REQUIRE(cudaMemcpy(h, src, sizeof(uint16_t) * (size_t)n, cudaMemcpyDeviceToHost));
  kiln_convert_floats(v, KILN_DTYPE_FP32, h, KILN_DTYPE_FP16, n);
  free(h);
  return v;
}

static void dev_put_bytes(void *dst, const void *src, size_t n) {
  CUDA_REQUIRE(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}

/* An int8 cache on the device (codes, fp16 scales) as the values it holds. */
static float *dev_get_int8(const void *codes, const void *scales, int64_t nv, int64_t D) {
  int8_t *q = malloc((size_t)(nv * D > 0 ? nv * D : 1));
  if (!q) GT_DIE("out of host memory");
  CUDA_REQUIRE(cudaMemcpy(q, codes, (size_t)(nv * D), cudaMemcpyDeviceToHost));
  float *sc = dev_get(scales, nv), *v = dequantize_vectors(q, sc, nv, D);
  free(q), free(sc);
  return v;
}

static void dev_put_lengths(void *dst, const int32_t *len, int64_t n) {
  CUDA_REQUIRE(cudaMemcpy(dst, len, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice));
}

static void gpu_make(bufs *g, const case_data *c) {
  g->x = dev_alloc(2 * (size_t)(c->s.B * c->d));
  g->len = dev_alloc(4 * (size_t)c->s.B);
  g->logits = dev_alloc(2 * (size_t)(c->s.B * VOCAB));
  dev_put(g->x, c->x, c->s.B * c->d);
  dev_put_lengths(g->len, c->len, c->s.B);
  memset(g->scale, 0, sizeof g->scale);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      g->cache[i][kv] = dev_alloc(2 * (size_t)n_cache(c));
      g->cross[i][kv] = dev_alloc(2 * (size_t)n_cross(c));
      if (!kv8) {
        dev_put(g->cross[i][kv], c->cross[i][kv], n_cross(c));
        continue;
      }
      g->scale[i][kv][0] = dev_alloc(2 * (size_t)(n_cache(c) / c->D));
      g->scale[i][kv][1] = dev_alloc(2 * (size_t)(n_cross(c) / c->D));
      dev_put_bytes(g->cross[i][kv], c->code[i][kv][1], (size_t)n_cross(c));
      dev_put(g->scale[i][kv][1], c->scl[i][kv][1], n_cross(c) / c->D);
    }
}

/* Fresh caches (self-attention wrote the last run's into them) and NaN logits. */
static void gpu_reset(const bufs *g, const case_data *c) {
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      if (!kv8) {
        dev_put(g->cache[i][kv], c->cache[i][kv], n_cache(c));
        continue;
      }
      dev_put_bytes(g->cache[i][kv], c->code[i][kv][0], (size_t)n_cache(c));
      dev_put(g->scale[i][kv][0], c->scl[i][kv][0], n_cache(c) / c->D);
    }
  CUDA_REQUIRE(cudaMemset(g->logits, 0xFF, 2 * (size_t)(c->s.B * VOCAB)));
}

static void gpu_fetch_caches(const bufs *g, const case_data *c, result *r) {
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++)
      r->cache[i][kv] = kv8 ? dev_get_int8(g->cache[i][kv], g->scale[i][kv][0], n_cache(c) / c->D, c->D)
                            : dev_get(g->cache[i][kv], n_cache(c));
}

static void gpu_free(bufs *g) {
  cudaFree(g->x), cudaFree(g->len), cudaFree(g->logits);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      cudaFree(g->cache[i][kv]), cudaFree(g->cross[i][kv]);
      for (int cr = 0; cr < 2; cr++) cudaFree(g->scale[i][kv][cr]);
    }
}

/* Waits for the stream; a fault there ends the test (the CUDA context is lost), naming the case. */
static void sync_or_die(const char *label) {
  cudaError_t e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) GT_DIE("case %s: the run failed on the GPU: %s", label, cudaGetErrorString(e));
}

/* One run of the CUDA engine from fresh caches, chains allowed or not; *launches gets the chain
 * kernels it launched. */
static kiln_status run_gpu(kiln_context *ctx, const bufs *g, const case_data *c, int allow, const char *label,
                           result *r, int64_t *launches) {
  gpu_reset(g, c);
  kiln_cuda_chain_allow(allow ? KILN_CUDA_CHAIN_ALWAYS : KILN_CUDA_CHAIN_OFF);
  int64_t before = kiln_cuda_chain_launches();
  kiln_status st = bind(ctx, c, g);
  if (st == KILN_OK) st = kiln_context_enqueue(ctx, stream);
  sync_or_die(label);
  *launches = kiln_cuda_chain_launches() - before;
  r->logits = dev_get(g->logits, c->s.B * VOCAB);
  gpu_fetch_caches(g, c, r);
  return st;
}

/* ---- checks ------------------------------------------------------------------------------------ */

/* max |got - want| / max |want| (infinity when got has a NaN or an Inf). */
static double rel_err(const float *got, const float *want, int64_t n) {
  double m = 0, ref = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - (double)want[i]);
    if (!(d <= m)) m = isnan(d) ? INFINITY : d;
    if (fabs((double)want[i]) > ref) ref = fabs((double)want[i]);
  }
  return m / (ref > 1e-30 ? ref : 1e-30);
}

static void expect_close(const char *label, const char *what, const float *got, const float *want, int64_t n,
                         const wmode *m, int slot, worst *w) {
  double e = rel_err(got, want, n), q = check_nmse_value(got, want, n);
  if (isnan(q)) q = INFINITY;
  if (e > w->rel[slot]) w->rel[slot] = e;
  if (q > w->nmse[slot]) w->nmse[slot] = q;
  if (!(e <= m->tol) || !(q <= m->nmse))
    CHECK_FAIL_("case %s: %s: max |diff| / max |ref| %.3g (limit %.3g), nmse %.3g (limit %.3g)", label, what, e, m->tol, q,
                m->nmse);
  else
    check_count_++;
}

static void expect_zero(const char *label, const char *what, int64_t n) {
  if (n) CHECK_FAIL_("case %s: %s: %lld elements", label, what, (long long)n);
  else check_count_++;
}

static void expect_launches(const char *label, int allow, int64_t launches) {
  n_launches += allow ? launches : 0;
  if (!allow && launches != 0)
    CHECK_FAIL_("case %s: %lld chain kernels launched with chains off", label, (long long)launches);
  else if (allow && sm90 && launches <= 0)
    CHECK_FAIL_("case %s: no chain kernel launched with chains allowed on sm_90+", label);
  else
    check_count_++;
}

/* 1 when one of steps [0, n) wrote row b's position t (lens[k][b] == t). */
static int written(int32_t *const *lens, int n, int64_t b, int64_t t) {
  for (int k = 0; k < n; k++)
    if (lens[k][b] == t) return 1;
  return 0;
}

/* The vectors of a cache at position len[b] of each row b < B, into out [B, H, D]. */
static void gather_new(const case_data *c, const int32_t *len, const float *cache, float *out) {
  int64_t H = c->H, T = c->s.T, D = c->D;
  for (int64_t b = 0; b < c->s.B; b++)
    for (int64_t h = 0; h < H; h++)
      memcpy(out + (b * H + h) * D, cache + ((b * H + h) * T + len[b]) * D, sizeof(float) * (size_t)D);
}

/* Elements of a cache after n_steps runs (got) that differ from its initial contents at the
 * positions no step wrote (rows past B included). */
static int64_t count_changed(const case_data *c, int32_t *const *lens, int n_steps, const float *init, const float *got) {
  int64_t bad = 0, H = c->H, T = c->s.T, D = c->D;
  for (int64_t b = 0; b < c->s.Bc; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++) {
        if (b < c->s.B && written(lens, n_steps, b, t)) continue;
        const float *x = init + ((b * H + h) * T + t) * D, *y = got + ((b * H + h) * T + t) * D;
        for (int64_t e = 0; e < D; e++) bad += !(y[e] == x[e]);
      }
  return bad;
}

static void check_cache(const case_data *c, const char *label, const wmode *m, worst *w, int layer, int kv,
                        const result *ref, const result *off, const result *on) {
  int64_t n = c->s.B * c->H * c->D;
  float *nr = floats(n), *noff = floats(n), *non = floats(n);
  const float *init = c->cache[layer][kv];
  int32_t *lens[1] = {c->len};
  char what[128], name[32];
  kv_name(name, sizeof name, 0, layer, kv);
  snprintf(what, sizeof what, "%s changed outside lengths[b] (cpu)", name);
  expect_zero(label, what, count_changed(c, lens, 1, init, ref->cache[layer][kv]));
  snprintf(what, sizeof what, "%s changed outside lengths[b] (chains off)", name);
  expect_zero(label, what, count_changed(c, lens, 1, init, off->cache[layer][kv]));
  snprintf(what, sizeof what, "%s changed outside lengths[b] (chains on)", name);
  expect_zero(label, what, count_changed(c, lens, 1, init, on->cache[layer][kv]));
  gather_new(c, c->len, ref->cache[layer][kv], nr);
  gather_new(c, c->len, off->cache[layer][kv], noff);
  gather_new(c, c->len, on->cache[layer][kv], non);
  snprintf(what, sizeof what, "new %s vectors, chains on vs cpu", name);
  expect_close(label, what, non, nr, n, m, 3, w);
  snprintf(what, sizeof what, "new %s vectors, chains off vs cpu", name);
  expect_close(label, what, noff, nr, n, m, 3, w);
  snprintf(what, sizeof what, "new %s vectors, chains on vs off", name);
  expect_close(label, what, non, noff, n, m, 3, w);
  for (int64_t i = 0; i < n; i++) cache_same += non[i] == noff[i];
  cache_compared += n;
  free(nr), free(noff), free(non);
}

/* ---- cases ------------------------------------------------------------------------------------ */

typedef struct config { /* one network: its engines and contexts */
  const geom *g;
  const wmode *m;
  worst *w;
  check_rng *r;
  kiln_engine *gpu, *cpu;
  kiln_context *gpu_ctx, *cpu_ctx;
} config;

static void case_label(char *buf, size_t n, const config *cf, const shape *s, const char *what) {
  snprintf(buf, n, "d%lld H%lld %s%s B%lld Bk%lld Bc%lld A%lld T%lld%s", (long long)cf->g->d, (long long)cf->g->H, cf->m->name,
           kv8 ? " kv-int8" : "",
           (long long)s->B, (long long)s->Bk, (long long)s->Bc, (long long)s->A, (long long)s->T, what);
}

static void note_failure(const char *label, int before) {
  if (check_failures_ == before) return;
  if (n_failed < (int)(sizeof failed / sizeof failed[0])) snprintf(failed[n_failed], sizeof failed[0], "%s", label);
  n_failed++;
}

static void run_case(const config *cf, const shape *s, int k) {
  case_data c;
  result ref = {0}, off = {0}, on = {0};
  bufs g;
  char label[160];
  int64_t l_off = 0, l_on = 0;
  int before = check_failures_;
  case_label(label, sizeof label, cf, s, "");
  case_make(&c, cf->g, s, cf->r, k);
  gpu_make(&g, &c);
  CHECK_OK(run_cpu(cf->cpu_ctx, &c, &ref));
  CHECK_OK(run_gpu(cf->gpu_ctx, &g, &c, 0, label, &off, &l_off));
  CHECK_OK(run_gpu(cf->gpu_ctx, &g, &c, 1, label, &on, &l_on));
  expect_launches(label, 0, l_off);
  expect_launches(label, 1, l_on);
  int64_t n = s->B * VOCAB;
  expect_close(label, "logits, chains on vs cpu", on.logits, ref.logits, n, cf->m, 0, cf->w);
  expect_close(label, "logits, chains off vs cpu", off.logits, ref.logits, n, cf->m, 1, cf->w);
  expect_close(label, "logits, chains on vs off", on.logits, off.logits, n, cf->m, 2, cf->w);
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) check_cache(&c, label, cf->m, cf->w, i, kv, &ref, &off, &on);
  n_cases++;
  note_failure(label, before);
  result_free(&ref), result_free(&off), result_free(&on);
  gpu_free(&g);
  case_free(&c);
}

/* Lengths of step k > 0 of a graph sequence: the next position (a decoding step), then random. */
static void step_lengths(check_rng *r, const case_data *c, int k, const int32_t *prev, int32_t *len) {
  for (int64_t b = 0; b < c->s.B; b++) {
    int64_t v = k == 1 ? prev[b] + 1 : (int64_t)check_uniform(r, 0, (float)c->s.T);
    if (v > c->s.T - 1) v = prev[b] / 2;
    len[b] = (int32_t)v;
  }
}

/* GRAPH_STEPS steps on the same buffers (x and lengths rewritten between them, the caches
 * carried over): ctx with chains allowed or off; logits[k] and launches[k] get step k's. */
static void run_steps(kiln_context *ctx, const bufs *g, const case_data *c, int allow, float *const *xs,
                      int32_t *const *lens, const char *label, float **logits, int64_t *launches) {
  gpu_reset(g, c);
  kiln_cuda_chain_allow(allow ? KILN_CUDA_CHAIN_ALWAYS : KILN_CUDA_CHAIN_OFF);
  CHECK_OK(bind(ctx, c, g));
  for (int k = 0; k < GRAPH_STEPS; k++) {
    int64_t before = kiln_cuda_chain_launches();
    dev_put(g->x, xs[k], c->s.B * c->d);
    dev_put_lengths(g->len, lens[k], c->s.B);
    CUDA_REQUIRE(cudaMemset(g->logits, 0xFF, 2 * (size_t)(c->s.B * VOCAB)));
    CHECK_OK(kiln_context_enqueue(ctx, stream));
    sync_or_die(label);
    launches[k] = kiln_cuda_chain_launches() - before;
    logits[k] = dev_get(g->logits, c->s.B * VOCAB);
  }
}

/* The graph's launches: the chain launched while step 0 captured it (sm_90+), and nothing from
 * the host while steps 1.. replayed it (a launch there: it was captured again, or not used). */
static void expect_graph_launches(const char *label, const int64_t *off, const int64_t *on) {
  int64_t replayed = 0, sum_off = 0;
  for (int k = 0; k < GRAPH_STEPS; k++) sum_off += off[k], replayed += k ? on[k] : 0;
  expect_launches(label, 0, sum_off);
  expect_launches(label, 1, on[0]);
  if (replayed) CHECK_FAIL_("case %s: %lld chain launches from the host while replaying the graph", label, (long long)replayed);
  else check_count_++;
}

static void check_steps(const case_data *c, const char *label, const wmode *m, worst *w, int32_t *const *lens,
                        float *const *on, float *const *off, const result *con, const result *coff) {
  int64_t n = c->s.B * c->H * c->D;
  float *von = floats(n), *voff = floats(n);
  char what[128], name[32];
  for (int k = 0; k < GRAPH_STEPS; k++) {
    snprintf(what, sizeof what, "step %d logits, chains on in a graph vs off", k);
    expect_close(label, what, on[k], off[k], c->s.B * VOCAB, m, 2, w);
  }
  for (int i = 0; i < N_LAYERS; i++)
    for (int kv = 0; kv < 2; kv++) {
      kv_name(name, sizeof name, 0, i, kv);
      for (int k = 0; k < GRAPH_STEPS; k++) { /* what the last step to write each position left */
        gather_new(c, lens[k], con->cache[i][kv], von);
        gather_new(c, lens[k], coff->cache[i][kv], voff);
        snprintf(what, sizeof what, "%s at step %d's lengths, chains on in a graph vs off", name, k);
        expect_close(label, what, von, voff, n, m, 3, w);
      }
      snprintf(what, sizeof what, "%s changed at positions no step wrote (graph)", name);
      expect_zero(label, what, count_changed(c, lens, GRAPH_STEPS, c->cache[i][kv], con->cache[i][kv]));
      snprintf(what, sizeof what, "%s changed at positions no step wrote (chains off)", name);
      expect_zero(label, what, count_changed(c, lens, GRAPH_STEPS, c->cache[i][kv], coff->cache[i][kv]));
    }
  free(von), free(voff);
}

/* A decoding loop's use: a graph captured with chains allowed, replayed with new x and lengths in
 * the bound buffers, against the same steps layer by layer with chains off. */
static void graph_case(const config *cf, const shape *s, int k) {
  case_data c;
  bufs g;
  result con = {0}, coff = {0};
  float *xs[GRAPH_STEPS], *on[GRAPH_STEPS], *off[GRAPH_STEPS];
  int32_t *lens[GRAPH_STEPS];
  char label[160];
  int64_t l_off[GRAPH_STEPS], l_on[GRAPH_STEPS];
  int before = check_failures_;
  kiln_context *gctx = NULL;
  case_label(label, sizeof label, cf, s, " (CUDA graph)");
  case_make(&c, cf->g, s, cf->r, k);
  xs[0] = c.x, lens[0] = c.len;
  for (int j = 1; j < GRAPH_STEPS; j++) {
    xs[j] = random_floats(cf->r, s->B * c.d, -1, 1);
    lens[j] = malloc(sizeof(int32_t) * (size_t)s->B);
    if (!lens[j]) GT_DIE("out of host memory");
    step_lengths(cf->r, &c, j, lens[j - 1], lens[j]);
  }
  gpu_make(&g, &c);
  run_steps(cf->gpu_ctx, &g, &c, 0, xs, lens, label, off, l_off);
  gpu_fetch_caches(&g, &c, &coff);
  CHECK_OK(kiln_context_create(cf->gpu, 0, &gctx)); /* a fresh one: no graph captured before */
  if (gctx) {
    CHECK_OK(kiln_context_set_cuda_graphs(gctx, 1));
    run_steps(gctx, &g, &c, 1, xs, lens, label, on, l_on);
    gpu_fetch_caches(&g, &c, &con);
    expect_graph_launches(label, l_off, l_on);
    check_steps(&c, label, cf->m, cf->w, lens, on, off, &con, &coff);
    for (int j = 0; j < GRAPH_STEPS; j++) free(on[j]);
    n_graph_steps += GRAPH_STEPS;
  }
  kiln_context_destroy(gctx);
  note_failure(label, before);
  for (int j = 0; j < GRAPH_STEPS; j++) free(off[j]);
  for (int j = 1; j < GRAPH_STEPS; j++) free(xs[j]), free(lens[j]);
  result_free(&con), result_free(&coff);
  gpu_free(&g);
  case_free(&c);
}

static int shape_list(const geom *g, shape *out) {
  static const int64_t caps[2] = {MAX_CAP, 64}, audio[2] = {MAX_AUDIO, 100}, rows[4] = {1, 3, 4, 16};
  int n = 0;
  if (!g->full) {
    out[n++] = (shape){1, 1, 1, MAX_AUDIO, MAX_CAP};
    out[n++] = (shape){16, 16, 16, MAX_AUDIO, MAX_CAP};
    out[n++] = (shape){4, 1, 4, 100, 64};
    return n;
  }
  for (int t = 0; t < 2; t++)
    for (int a = 0; a < 2; a++) {
      for (int b = 0; b < 4; b++) out[n++] = (shape){rows[b], rows[b], rows[b], audio[a], caps[t]};
      out[n++] = (shape){4, 1, 4, audio[a], caps[t]}; /* 4 query rows on one key row */
    }
  out[n++] = (shape){3, 3, 5, MAX_AUDIO, MAX_CAP}; /* cache rows 3 and 4: no row of the batch */
  return n;
}

/* Int8 caches: the CPU engine (fp32) rounds the scales of the vectors it appends to fp32, the GPU
 * to fp16, and a code then moves by one step now and then (1/127 of the vector's largest value);
 * chains on and off may also round a new vector's codes apart (their qkv differ in fp16 ulps). */
#define KV8_TOL 2.0
#define KV8_NMSE 10.0

static void run_config(const geom *g, const wmode *mode, worst *w, uint64_t seed) {
  check_rng r = {seed};
  wmode m8 = *mode;
  if (kv8) m8.tol *= KV8_TOL, m8.nmse *= KV8_NMSE;
  const wmode *m = &m8;
  config cf = {g, m, w, &r, NULL, NULL, NULL, NULL};
  shape shapes[32];
  int n = shape_list(g, shapes), before = n_cases;
  int64_t launches = n_launches;
  kiln_network *net = make_network(g, &r);
  CHECK(net != NULL);
  if (net) cf.gpu = make_engine(net, m, KILN_TARGET_CUDA);
  if (net) cf.cpu = make_engine(net, m, KILN_TARGET_CPU);
  kiln_network_destroy(net);
  if (cf.gpu) CHECK_OK(kiln_context_create(cf.gpu, 0, &cf.gpu_ctx));
  if (cf.cpu) CHECK_OK(kiln_context_create(cf.cpu, 0, &cf.cpu_ctx));
  for (int i = 0; cf.gpu_ctx && cf.cpu_ctx && i < n; i++) run_case(&cf, &shapes[i], i);
  if (cf.gpu_ctx && cf.cpu_ctx) {
    graph_case(&cf, &(shape){4, 1, 4, MAX_AUDIO, MAX_CAP}, 1);
    if (g->full) graph_case(&cf, &(shape){16, 16, 16, 100, 64}, 5);
  }
  fprintf(stderr, "d %lld, %lld heads of %lld, %s weights, %s caches: %d cases, %lld chain launches\n", (long long)g->d,
          (long long)g->H, (long long)(g->d / g->H), m->name, kv8 ? "int8" : "float", n_cases - before,
          (long long)(n_launches - launches));
  kiln_context_destroy(cf.gpu_ctx), kiln_context_destroy(cf.cpu_ctx);
  kiln_engine_destroy(cf.gpu), kiln_engine_destroy(cf.cpu);
}

static void summary(void) {
  static const char *slot[4] = {"logits on/cpu", "logits off/cpu", "logits on/off", "caches"};
  fprintf(stderr, "chain test: %d cases and %d graph steps ran, %lld chain kernels launched (sm_90+: %s); new cache "
          "vectors bit-identical with chains on and off: %lld of %lld\n", n_cases, n_graph_steps, (long long)n_launches,
          sm90 ? "yes" : "no", (long long)cache_same, (long long)cache_compared);
  for (int q = 0; q < 2; q++)
    for (int mi = 0; mi < N_MODES; mi++) {
      fprintf(stderr, "  %-9s %s caches, worst max|diff|/max|ref| (nmse):", wmodes[mi].name, q ? "int8 " : "float");
      for (int s = 0; s < 4; s++) fprintf(stderr, " %s %.3g (%.3g);", slot[s], worsts[q][mi].rel[s], worsts[q][mi].nmse[s]);
      fprintf(stderr, "\n");
    }
  for (int i = 0; i < n_failed && i < (int)(sizeof failed / sizeof failed[0]); i++)
    fprintf(stderr, "FAILED case %s\n", failed[i]);
  if (n_failed) fprintf(stderr, "%d cases failed\n", n_failed);
}

int main(void) {
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  kiln_log_set_level(KILN_LOG_ERROR);
  int major = 0;
  CUDA_REQUIRE(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
  sm90 = major >= 9;
  CUDA_REQUIRE(cudaStreamCreate(&stream));
  remove(TIMING_CACHE);
  for (kv8 = 0; kv8 < 2; kv8++)
    for (int gi = 0; gi < (int)(sizeof geoms / sizeof geoms[0]); gi++)
      for (int mi = 0; mi < N_MODES; mi++)
        run_config(&geoms[gi], &wmodes[mi], &worsts[kv8][mi], 1000003u * (uint64_t)(gi * 8 + mi + 1) + (uint64_t)kv8);
  kiln_cuda_chain_allow(KILN_CUDA_CHAIN_AUTO); /* the default */
  remove(TIMING_CACHE);
  cudaStreamDestroy(stream);
  summary();
  return check_report();
}

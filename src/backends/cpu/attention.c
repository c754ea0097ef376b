/* src/backends/cpu/attention.c - scaled dot-product attention, the reference for fused kernels.
 *
 *   q [B, H, Sq, D], k [B, H, Skv, D], v [B, H, Skv, D] -> y [B, H, Sq, D]
 *   y = softmax(q k^T * scale + mask) v
 * causal: key j is masked for query i when j > i + (Skv - Sq) (bottom-right aligned, as for a
 * decoder step against a KV cache); a query row whose keys are all masked yields zeros.
 * Per (b, h): scores [Sq, Skv] = q @ k^T (fp32 GEMM), scale + mask + row softmax, y = P @ v.
 * Also the decoder's attention over a KV cache kept in place (float or int8 caches) and the
 * int8 quantization of rows that makes int8 caches (see the sections below).
 * Not memory-efficient (holds the whole score matrix of one head): it is the oracle.
 */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_attention(const kiln_tensor *q, const kiln_tensor *k,
                                   const kiln_tensor *v, const kiln_tensor *y) {
  char sq[128], sk[128], sv[128];
  KILN_TRY(kiln_cpu_check_float(q, "attention", "q"));
  KILN_TRY(kiln_cpu_check_float(k, "attention", "k"));
  KILN_TRY(kiln_cpu_check_float(v, "attention", "v"));
  KILN_TRY(kiln_cpu_check_float(y, "attention", "y"));
  kiln_dims_str(&q->shape, sq, sizeof sq);
  kiln_dims_str(&k->shape, sk, sizeof sk);
  kiln_dims_str(&v->shape, sv, sizeof sv);
  int ok = q->shape.rank == 4 && kiln_dims_equal(&k->shape, &v->shape);
  for (int32_t i = 0; ok && i < 4; i++)
    if (i != 2 && q->shape.d[i] != k->shape.d[i]) ok = 0;
  if (!ok)
    return kiln_error(KILN_ERR_SHAPE,
                      "attention: q %s, k %s, v %s must be q [B, H, Sq, D] and k, v [B, H, Skv, D]",
                      sq, sk, sv);
  return kiln_cpu_check_same_shape(&y->shape, "y", &q->shape, "q", "attention");
}

static void mask_and_softmax(float *scores, int64_t sq, int64_t skv, float scale, int32_t causal) {
  for (int64_t i = 0; i < sq; i++) {
    float *row = scores + i * skv;
    int64_t last = causal ? i + (skv - sq) : skv - 1; /* last visible key */
    for (int64_t j = 0; j < skv; j++) row[j] = j <= last ? row[j] * scale : -INFINITY;
    kiln_cpu_softmax_row(row, skv);
  }
}

/* One head: out [sq, d] = softmax(q k^T * scale + mask) v; q rows ldq apart, k and v [skv, d]
 * contiguous, scores [sq, skv] scratch. No keys: zeros. */
static void attend(const float *q, int64_t ldq, const float *k, const float *v, int64_t sq, int64_t skv, int64_t d,
                   float scale, int32_t causal, float *scores, float *out) {
  if (skv == 0) {
    for (int64_t i = 0; i < sq * d; i++) out[i] = 0.0f; /* no keys: every row is masked */
    return;
  }
  kiln_cpu_gemm(1, sq, skv, d, q, ldq, k, d, scores, skv);
  mask_and_softmax(scores, sq, skv, scale, causal);
  kiln_cpu_gemm(0, sq, d, skv, scores, skv, v, d, out, d);
}

kiln_status kiln_cpu_attention(const kiln_tensor *q, const kiln_tensor *k, const kiln_tensor *v,
                               float scale, int32_t causal, kiln_tensor *y) {
  KILN_TRY(check_attention(q, k, v, y));
  int64_t heads = q->shape.d[0] * q->shape.d[1];
  int64_t sq = q->shape.d[2], skv = k->shape.d[2], d = q->shape.d[3];
  if (kiln_dims_count(&y->shape) == 0) return KILN_OK;

  kiln_cpu_f32 qv = {0}, kv = {0}, vv = {0};
  float *scores = malloc((size_t)(sq * skv + 1) * sizeof(float)); /* [Sq, Skv] */
  float *out = malloc((size_t)(sq * d) * sizeof(float));          /* [Sq, D] */
  kiln_status s = (scores && out) ? KILN_OK
                                  : kiln_error(KILN_ERR_OUT_OF_MEMORY,
                                               "attention: cannot allocate a %lldx%lld score "
                                               "matrix; use shorter sequences",
                                               (long long)sq, (long long)skv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(q, &qv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(k, &kv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(v, &vv);
  for (int64_t h = 0; s == KILN_OK && h < heads; h++) {
    attend(qv.data + h * sq * d, d, kv.data + h * skv * d, vv.data + h * skv * d, sq, skv, d, scale, causal, scores,
           out);
    kiln_cpu_store_f32(y, h * sq * d, out, sq * d);
  }
  kiln_cpu_f32_release(&qv);
  kiln_cpu_f32_release(&kv);
  kiln_cpu_f32_release(&vv);
  free(scores);
  free(out);
  return s;
}

/* ---- attention over a KV cache (KILN_OP_KV_ATTENTION, network.h) ------------------------------
 * Float caches hold the keys/values in the tensors' dtype. Int8 caches (cache_dtype INT8, two
 * more inputs: k_scale, v_scale [rows, H, T]) hold each cached vector of D values as D codes
 * and one scale, written by quantize_row (the rule of network.h) when the vector is appended,
 * and dequantized into fp32 rows before the attention. */

static void *elem(const kiln_tensor *t, int64_t i) { return (char *)t->data + kiln_dtype_bytes(t->dtype, i); }

/* x[d] (fp32) -> codes[d] and the scale, stored in element si of `scales` (its dtype):
 * s = max|x| / 127 rounded to that dtype, codes = round(x / s) (halves away from zero) clamped
 * to [-127, 127], all 0 when s is 0. The CUDA kernels apply the same operations in the same
 * order, so codes and scales agree bit for bit. */
static void quantize_row(const float *x, int64_t d, int8_t *codes, const kiln_tensor *scales, int64_t si) {
  float m = 0.0f;
  for (int64_t i = 0; i < d; i++) m = fmaxf(m, fabsf(x[i]));
  kiln_cpu_store(scales->data, scales->dtype, si, m / 127.0f);
  float s = kiln_cpu_load(scales->data, scales->dtype, si);
  for (int64_t i = 0; i < d; i++) codes[i] = s > 0.0f ? (int8_t)fminf(fmaxf(roundf(x[i] / s), -127.0f), 127.0f) : 0;
}

/* Rows [first, first + n) of D codes with their scales -> out[n, D] fp32. */
static void dequantize_rows(const kiln_tensor *codes, const kiln_tensor *scales, int64_t first, int64_t n, int64_t d,
                            float *out) {
  const int8_t *c = (const int8_t *)codes->data + first * d;
  for (int64_t j = 0; j < n; j++) {
    float s = kiln_cpu_load(scales->data, scales->dtype, first + j);
    for (int64_t i = 0; i < d; i++) out[j * d + i] = (float)c[j * d + i] * s;
  }
}

/* Self-attention: write the S new keys/values of every row into the caches at lengths[b]
 * (quantized when ks / vs, the int8 caches' scales, are given). */
static kiln_status append_kv(const kiln_tensor *qkv, const kiln_tensor *ck, const kiln_tensor *cv, const int32_t *len,
                             int64_t heads, const kiln_tensor *ks, const kiln_tensor *vs) {
  int64_t B = qkv->shape.d[0], S = qkv->shape.d[1], D = ck->shape.d[3], T = ck->shape.d[2], HD = heads * D;
  for (int64_t b = 0; b < B; b++)
    if (len[b] < 0 || len[b] + S > T)
      return kiln_error(KILN_ERR_INVALID_ARG, "kv_attention: row %lld has %d cached tokens; %lld more do not fit a cache of %lld",
                        (long long)b, len[b], (long long)S, (long long)T);
  float *row = ks ? malloc((size_t)(D + 1) * sizeof(float)) : NULL;
  if (ks && !row) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "kv_attention: out of memory");
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < heads; h++) {
        int64_t src = (b * S + s) * 3 * HD + h * D, pos = (b * heads + h) * T + len[b] + s, dst = pos * D;
        for (int32_t kv = 0; kv < 2; kv++) {
          const kiln_tensor *cache = kv ? cv : ck;
          const void *x = elem(qkv, src + (kv + 1) * HD);
          if (!ks) {
            kiln_convert_floats(elem(cache, dst), cache->dtype, x, qkv->dtype, D);
            continue;
          }
          kiln_convert_floats(row, KILN_DTYPE_FP32, x, qkv->dtype, D);
          quantize_row(row, D, (int8_t *)cache->data + dst, kv ? vs : ks, pos);
        }
      }
  free(row);
  return KILN_OK;
}

/* Checks of the int8 form: caches int8, scales float [rows, H, T] (the caches' first dims). */
static kiln_status check_kv_int8(const kiln_tensor *in, int32_t n_in) {
  const char *op = "kv_attention";
  KILN_TRY(kiln_cpu_check_dtype(&in[1], KILN_DTYPE_INT8, op, "int8 key cache"));
  KILN_TRY(kiln_cpu_check_dtype(&in[2], KILN_DTYPE_INT8, op, "int8 value cache"));
  for (int32_t i = n_in - 2; i < n_in; i++) {
    KILN_TRY(kiln_cpu_check_float(&in[i], op, "scales"));
    const kiln_dims *c = &in[1].shape, *s = &in[i].shape;
    if (c->rank != 4 || s->rank != 3 || s->d[0] != c->d[0] || s->d[1] != c->d[1] || s->d[2] != c->d[2]) {
      char a[128], b[128];
      return kiln_error(KILN_ERR_SHAPE, "kv_attention: scales %s do not match int8 caches %s (scales [rows, H, T])",
                        kiln_dims_str(s, a, sizeof a), kiln_dims_str(c, b, sizeof b));
    }
  }
  return kiln_dims_equal(&in[1].shape, &in[2].shape) && kiln_dims_equal(&in[n_in - 2].shape, &in[n_in - 1].shape)
             ? KILN_OK
             : kiln_error(KILN_ERR_SHAPE, "kv_attention: the key and value caches (and their scales) differ in shape");
}

kiln_status kiln_cpu_kv_attention(int32_t n_in, const kiln_tensor *in, int32_t heads, float scale, int32_t self,
                                  kiln_tensor *y) {
  int32_t base = self ? 4 : 3, q8 = n_in == base + 2;
  if (n_in != base && !q8)
    return kiln_error(KILN_ERR_INVALID_ARG, "kv_attention: %d inputs; expected %d (float caches) or %d (int8)", n_in, base,
                      base + 2);
  KILN_TRY(kiln_cpu_check_float(&in[0], "kv_attention", "q"));
  if (q8) KILN_TRY(check_kv_int8(in, n_in));
  else
    for (int32_t i = 1; i < 3; i++) KILN_TRY(kiln_cpu_check_float(&in[i], "kv_attention", "cache"));
  KILN_TRY(kiln_cpu_check_float(y, "kv_attention", "y"));
  const kiln_tensor *q = &in[0], *k = &in[1], *v = &in[2];
  const kiln_tensor *ks = q8 ? &in[n_in - 2] : NULL, *vs = q8 ? &in[n_in - 1] : NULL;
  int64_t B = q->shape.d[0], S = q->shape.d[1], D = k->shape.d[3], Tk = k->shape.d[2], HD = heads * D;
  int64_t ldq = self ? 3 * HD : HD, rep = self ? 1 : B / (k->shape.d[0] > 0 ? k->shape.d[0] : 1);
  const int32_t *len = self ? (const int32_t *)in[3].data : NULL;
  if (self) KILN_TRY(append_kv(q, k, v, len, heads, ks, vs));
  if (B * S * HD == 0) return KILN_OK;
  kiln_cpu_f32 qv = {0}, kv = {0}, vv = {0};
  size_t deq = q8 ? (size_t)(Tk * D) : 0; /* int8: one head's keys and values dequantized */
  float *scores = malloc((size_t)(S * Tk + 1) * sizeof(float)), *out = malloc((size_t)(S * D) * sizeof(float));
  float *kd = malloc((2 * deq + 1) * sizeof(float)), *vd = kd ? kd + deq : NULL;
  kiln_status s = scores && out && kd ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "kv_attention: out of memory");
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(q, &qv);
  if (s == KILN_OK && !q8) s = kiln_cpu_f32_acquire(k, &kv);
  if (s == KILN_OK && !q8) s = kiln_cpu_f32_acquire(v, &vv);
  for (int64_t b = 0; s == KILN_OK && b < B; b++)
    for (int64_t h = 0; h < heads; h++) {
      int64_t row = (b / rep) * heads + h, n_keys = self ? len[b] + S : Tk;
      const float *kr = q8 ? kd : kv.data + row * Tk * D, *vr = q8 ? vd : vv.data + row * Tk * D;
      if (q8) {
        dequantize_rows(k, ks, row * Tk, n_keys, D, kd);
        dequantize_rows(v, vs, row * Tk, n_keys, D, vd);
      }
      attend(qv.data + b * S * ldq + h * D, ldq, kr, vr, S, n_keys, D, scale, self, scores, out);
      for (int64_t i = 0; i < S; i++) kiln_cpu_store_f32(y, (b * S + i) * HD + h * D, out + i * D, D);
    }
  kiln_cpu_f32_release(&qv);
  kiln_cpu_f32_release(&kv);
  kiln_cpu_f32_release(&vv);
  free(scores);
  free(out);
  free(kd);
  return s;
}

/* ---- int8 quantization of rows (KILN_OP_QUANTIZE_INT8, network.h) ----------------------------- */

kiln_status kiln_cpu_quantize_int8(const kiln_tensor *x, kiln_tensor *codes, kiln_tensor *scales) {
  KILN_TRY(kiln_cpu_check_float(x, "quantize_int8", "x"));
  KILN_TRY(kiln_cpu_check_dtype(codes, KILN_DTYPE_INT8, "quantize_int8", "codes"));
  KILN_TRY(kiln_cpu_check_float(scales, "quantize_int8", "scales"));
  KILN_TRY(kiln_cpu_check_same_shape(&codes->shape, "codes", &x->shape, "x", "quantize_int8"));
  int64_t d = x->shape.rank ? x->shape.d[x->shape.rank - 1] : 0, n = kiln_dims_count(&x->shape);
  int64_t rows = d ? n / d : 0;
  if (x->shape.rank < 1 || kiln_dims_count(&scales->shape) != rows || scales->shape.rank != x->shape.rank - 1) {
    char a[128], b[128];
    return kiln_error(KILN_ERR_SHAPE, "quantize_int8: x %s needs scales of its leading dims; got %s",
                      kiln_dims_str(&x->shape, a, sizeof a), kiln_dims_str(&scales->shape, b, sizeof b));
  }
  if (n == 0) return KILN_OK;
  kiln_cpu_f32 xv = {0};
  KILN_TRY(kiln_cpu_f32_acquire(x, &xv));
  for (int64_t r = 0; r < rows; r++) quantize_row(xv.data + r * d, d, (int8_t *)codes->data + r * d, scales, r);
  kiln_cpu_f32_release(&xv);
  return KILN_OK;
}

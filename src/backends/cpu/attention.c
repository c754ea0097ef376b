/* src/backends/cpu/attention.c - scaled dot-product attention, the reference for fused kernels.
 *
 *   q [B, H, Sq, D], k [B, H, Skv, D], v [B, H, Skv, D] -> y [B, H, Sq, D]
 *   y = softmax(q k^T * scale + mask) v
 * causal: key j is masked for query i when j > i + (Skv - Sq) (bottom-right aligned, as for a
 * decoder step against a KV cache); a query row whose keys are all masked yields zeros.
 * Per (b, h): scores [Sq, Skv] = q @ k^T (fp32 GEMM), scale + mask + row softmax, y = P @ v.
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

/* ---- attention over a KV cache (KILN_OP_KV_ATTENTION, network.h) ------------------------------ */

static void *elem(const kiln_tensor *t, int64_t i) { return (char *)t->data + kiln_dtype_bytes(t->dtype, i); }

/* Self-attention: write the S new keys/values of every row into the caches at lengths[b]. */
static kiln_status append_kv(const kiln_tensor *qkv, const kiln_tensor *ck, const kiln_tensor *cv, const int32_t *len,
                             int64_t heads) {
  int64_t B = qkv->shape.d[0], S = qkv->shape.d[1], D = ck->shape.d[3], T = ck->shape.d[2], HD = heads * D;
  for (int64_t b = 0; b < B; b++) {
    if (len[b] < 0 || len[b] + S > T)
      return kiln_error(KILN_ERR_INVALID_ARG, "kv_attention: row %lld has %d cached tokens; %lld more do not fit a cache of %lld",
                        (long long)b, len[b], (long long)S, (long long)T);
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < heads; h++) {
        int64_t src = (b * S + s) * 3 * HD + h * D, dst = ((b * heads + h) * T + len[b] + s) * D;
        kiln_convert_floats(elem(ck, dst), ck->dtype, elem(qkv, src + HD), qkv->dtype, D);
        kiln_convert_floats(elem(cv, dst), cv->dtype, elem(qkv, src + 2 * HD), qkv->dtype, D);
      }
  }
  return KILN_OK;
}

kiln_status kiln_cpu_kv_attention(int32_t n_in, const kiln_tensor *in, int32_t heads, float scale, int32_t self,
                                  kiln_tensor *y) {
  if (n_in != (self ? 4 : 3))
    return kiln_error(KILN_ERR_INVALID_ARG, "kv_attention: %d inputs; expected %d", n_in, self ? 4 : 3);
  for (int32_t i = 0; i < 3; i++) KILN_TRY(kiln_cpu_check_float(&in[i], "kv_attention", i ? "cache" : "q"));
  KILN_TRY(kiln_cpu_check_float(y, "kv_attention", "y"));
  const kiln_tensor *q = &in[0], *k = &in[1], *v = &in[2];
  int64_t B = q->shape.d[0], S = q->shape.d[1], D = k->shape.d[3], Tk = k->shape.d[2], HD = heads * D;
  int64_t ldq = self ? 3 * HD : HD, rep = self ? 1 : B / (k->shape.d[0] > 0 ? k->shape.d[0] : 1);
  const int32_t *len = self ? (const int32_t *)in[3].data : NULL;
  if (self) KILN_TRY(append_kv(q, &in[1], &in[2], len, heads));
  if (B * S * HD == 0) return KILN_OK;
  kiln_cpu_f32 qv = {0}, kv = {0}, vv = {0};
  float *scores = malloc((size_t)(S * Tk + 1) * sizeof(float)), *out = malloc((size_t)(S * D) * sizeof(float));
  kiln_status s = scores && out ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "kv_attention: out of memory");
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(q, &qv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(k, &kv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(v, &vv);
  for (int64_t b = 0; s == KILN_OK && b < B; b++)
    for (int64_t h = 0; h < heads; h++) {
      int64_t kv_off = ((b / rep) * heads + h) * Tk * D, n_keys = self ? len[b] + S : Tk;
      attend(qv.data + b * S * ldq + h * D, ldq, kv.data + kv_off, vv.data + kv_off, S, n_keys, D, scale, self, scores,
             out);
      for (int64_t i = 0; i < S; i++) kiln_cpu_store_f32(y, (b * S + i) * HD + h * D, out + i * D, D);
    }
  kiln_cpu_f32_release(&qv);
  kiln_cpu_f32_release(&kv);
  kiln_cpu_f32_release(&vv);
  free(scores);
  free(out);
  return s;
}

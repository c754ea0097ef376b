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
    if (skv > 0) {
      kiln_cpu_gemm(1, sq, skv, d, qv.data + h * sq * d, d, kv.data + h * skv * d, d, scores, skv);
      mask_and_softmax(scores, sq, skv, scale, causal);
      kiln_cpu_gemm(0, sq, d, skv, scores, skv, vv.data + h * skv * d, d, out, d);
    } else {
      for (int64_t i = 0; i < sq * d; i++) out[i] = 0.0f; /* no keys: every row is masked */
    }
    kiln_cpu_store_f32(y, h * sq * d, out, sq * d);
  }
  kiln_cpu_f32_release(&qv);
  kiln_cpu_f32_release(&kv);
  kiln_cpu_f32_release(&vv);
  free(scores);
  free(out);
  return s;
}

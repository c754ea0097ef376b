/* tests/cpu/kv_ref.h - the naive double-precision reference of attention over a KV cache
 * (KILN_OP_KV_ATTENTION), shared by the float-cache and int8-cache tests (the int8 one passes
 * the dequantized caches). Test-only. */
#ifndef KILN_TESTS_CPU_KV_REF_H
#define KILN_TESTS_CPU_KV_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* want [B, S, H*D]: token s of query row b attends to the keys of key row b / rep, all `cap`
 * of them (cross-attention, self = 0) or 0 .. len[b] + s (self-attention: the cache already
 * appended to); k, v [rows, H, cap, D] fp32. Double precision. */
static inline void kv_reference(const float *q, int64_t ldq, const float *k, const float *v, const int32_t *len, int64_t B,
                                int64_t S, int64_t H, int64_t D, int64_t cap, int64_t rep, float scale, int self,
                                double *want) {
  double *p = malloc(sizeof(double) * (size_t)(cap + 1));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t s = 0; s < S; s++) {
        const float *qr = q + (b * S + s) * ldq + h * D;
        const float *kb = k + ((b / rep) * H + h) * cap * D, *vb = v + ((b / rep) * H + h) * cap * D;
        int64_t n = self ? len[b] + s + 1 : cap;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) {
          double dot = 0;
          for (int64_t d = 0; d < D; d++) dot += (double)qr[d] * kb[j * D + d];
          p[j] = dot * scale;
          if (p[j] > m) m = p[j];
        }
        for (int64_t j = 0; j < n; j++) sum += (p[j] = exp(p[j] - m));
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t j = 0; j < n; j++) acc += p[j] * vb[j * D + d];
          want[(b * S + s) * H * D + h * D + d] = n ? acc / sum : 0.0;
        }
      }
  free(p);
}

#endif /* KILN_TESTS_CPU_KV_REF_H */

/* src/backends/cuda/kv_quant.cuh - the int8 KV-cache quantizer on the device, shared by the
 * append kernels (kv_attention.cu) and the decoding-step chain (chain.cu): one warp turns a
 * vector x[D] into codes and one scale, as network.h says: s = max|x| / 127 rounded to the
 * scale's type T, codes = round(x / s) clamped to [-127, 127] (0 when s is 0). IEEE division and
 * roundf, as the CPU backend's quantize_row, so codes and scales agree with it bit for bit.
 */
#ifndef KILN_KV_QUANT_CUH
#define KILN_KV_QUANT_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "backends/cuda/cuda_common.cuh"

/* The code of x under scale s (s as a float: the rounded scale). */
static __device__ __forceinline__ int8_t kq_code(float x, float s) {
  return s > 0.0f ? (int8_t)fminf(fmaxf(roundf(x / s), -127.0f), 127.0f) : (int8_t)0;
}

/* One warp: x(d) gives element d (as a float) of the vector; codes[d] and *scale (lane 0) are
 * written. Returns the scale as a float (every lane). */
template <typename T, typename Load>
static __device__ __forceinline__ float kiln_quantize_warp_int8(Load x, int D, int8_t *codes, T *scale) {
  const int lane = threadIdx.x & 31;
  float m = 0.0f;
  for (int d = lane; d < D; d += 32) m = fmaxf(m, fabsf(x(d)));
  m = kiln_warp_max(m);
  const T st = kiln_from_f32<T>(m / 127.0f);
  const float s = kiln_f32(st);
  if (lane == 0) *scale = st;
  for (int d = lane; d < D; d += 32) codes[d] = kq_code(x(d), s);
  return s;
}

#endif /* KILN_KV_QUANT_CUH */

/* src/backends/cuda/conv1d.cu - 1-D convolution, kernel size 3, padding 1, stride 1 or 2, bias
 * and fused activation (Whisper's audio stem).
 *
 * x [B, Cin, T], w [Cout, Cin, 3], b [Cout] or NULL, y [B, Cout, Tout],
 * Tout = (T + 2 - 3) / stride + 1. Implicit GEMM with 16x16 shared-memory tiles:
 * y[b, co, t] = sum_r w[co, r] * col[b, r, t], r = ci * 3 + j, col[b, r, t] = x[b, ci, t*stride
 * + j - 1] (0 outside [0, T)). fp32 accumulation, no im2col buffer, no tensor cores: correct
 * first; the cuBLASLt path over an im2col workspace is a later optimization.
 */
#include "backends/cuda/cuda_common.cuh"

#define TILE 16

/* grid.x: Tout tiles, grid.y: Cout tiles, grid.z: batch; block TILE x TILE. */
static __global__ void conv1d_kernel(const void *x, int xdt, const void *w, int wdt, const void *b,
                                     int bdt, int act, void *y, int ydt, int64_t c_in, int64_t t_in,
                                     int64_t c_out, int64_t t_out, int stride) {
  __shared__ float ws[TILE][TILE + 1]; /* [co][r] */
  __shared__ float cs[TILE][TILE + 1]; /* [r][t] */
  int tx = threadIdx.x, ty = threadIdx.y;
  int64_t batch = blockIdx.z;
  int64_t t = (int64_t)blockIdx.x * TILE + tx;
  int64_t co = (int64_t)blockIdx.y * TILE + ty;
  int64_t r_len = c_in * 3;
  const int64_t x_base = batch * c_in * t_in;
  float acc = 0.0f;
  for (int64_t r0 = 0; r0 < r_len; r0 += TILE) {
    int64_t rw = r0 + tx; /* w column this thread loads */
    ws[ty][tx] = (co < c_out && rw < r_len) ? kiln_ld(w, wdt, co * r_len + rw) : 0.0f;
    int64_t rc = r0 + ty; /* col row this thread loads */
    float v = 0.0f;
    if (rc < r_len && t < t_out) {
      int64_t ci = rc / 3, ti = t * stride + (rc % 3) - 1;
      if (ti >= 0 && ti < t_in) v = kiln_ld(x, xdt, x_base + ci * t_in + ti);
    }
    cs[ty][tx] = v;
    __syncthreads();
    for (int kk = 0; kk < TILE; kk++) acc += ws[ty][kk] * cs[kk][tx];
    __syncthreads();
  }
  if (co < c_out && t < t_out) {
    if (b) acc += kiln_ld(b, bdt, co);
    kiln_st(y, ydt, (batch * c_out + co) * t_out + t, kiln_act(acc, act));
  }
}

extern "C" kiln_status kiln_cuda_conv1d(kiln_cuda_ctx *cu, const kiln_tensor *x,
                                        const kiln_tensor *w, const kiln_tensor *b, int32_t stride,
                                        kiln_activation act, kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_conv1d";
  (void)cu;
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(w, op, "w"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (stride != 1 && stride != 2)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: stride %d; use 1 or 2", op, (int)stride);
  if (act < KILN_ACTIVATION_NONE || act > KILN_ACTIVATION_SILU)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: unknown activation %d", op, (int)act);
  if (x->shape.rank != 3 || w->shape.rank != 3 || y->shape.rank != 3)
    return kiln_error(KILN_ERR_SHAPE, "%s: x, w and y must have rank 3", op);
  int64_t batch = x->shape.d[0], c_in = x->shape.d[1], t_in = x->shape.d[2];
  int64_t c_out = w->shape.d[0], t_out = (t_in + 2 - 3) / stride + 1;
  if (w->shape.d[1] != c_in || w->shape.d[2] != 3)
    return kiln_error(KILN_ERR_SHAPE, "%s: w must be [Cout, %lld, 3]", op, (long long)c_in);
  if (y->shape.d[0] != batch || y->shape.d[1] != c_out || y->shape.d[2] != t_out)
    return kiln_error(KILN_ERR_SHAPE, "%s: y must be [%lld, %lld, %lld]", op, (long long)batch,
                      (long long)c_out, (long long)t_out);
  if (b) {
    KILN_TRY(kiln_check_float(b, op, "b"));
    if (kiln_dims_count(&b->shape) != c_out)
      return kiln_error(KILN_ERR_SHAPE, "%s: b must have Cout = %lld elements", op,
                        (long long)c_out);
  }
  if (kiln_dims_count(&y->shape) == 0) return KILN_OK;
  int64_t t_tiles = (t_out + TILE - 1) / TILE, c_tiles = (c_out + TILE - 1) / TILE;
  if (t_tiles > 2147483647LL || c_tiles > 65535 || batch > 65535)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: shape too large for one launch; split the batch",
                      op);
  dim3 grid((unsigned int)t_tiles, (unsigned int)c_tiles, (unsigned int)batch), block(TILE, TILE);
  conv1d_kernel<<<grid, block, 0, kiln_stream(stream)>>>(
      x->data, x->dtype, w->data, w->dtype, b ? b->data : NULL, b ? b->dtype : KILN_DTYPE_FP32,
      (int)act, y->data, y->dtype, c_in, t_in, c_out, t_out, stride);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

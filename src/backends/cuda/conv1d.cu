/* src/backends/cuda/conv1d.cu - 1-D convolution, kernel size 3, padding 1, stride 1 or 2, bias
 * and fused activation (Whisper's audio stem).
 *
 * x [B, Cin, T], w [Cout, Cin, 3], b [Cout] or NULL, y [B, Cout, Tout],
 * Tout = (T + 2 - 3) / stride + 1. As a GEMM per window:
 * y[b, co, t] = sum_r w[co, r] * col[b, r, t], r = ci * 3 + j, col[b, r, t] = x[b, ci, t*stride
 * + j - 1] (0 outside [0, T)).
 *
 * Two paths:
 *   - with a workspace of kiln_cuda_conv1d_workspace bytes, a context, and x, w, y in one dtype:
 *     each window's columns are gathered transposed, colT [Tout, 3 Cin] (im2col_kernel, through
 *     shared-memory tiles so that reads and writes are both coalesced), then cuBLASLt (tensor
 *     cores, fp32 accumulation) computes y[b] [Cout, Tout] = w [Cout, 3 Cin] x colT^T as kiln's
 *     matmul with w in the role of x and colT in the role of W, and one elementwise pass adds the
 *     bias and applies the activation (the bias runs along the matmul's rows, which cuBLASLt's
 *     bias epilogue does not offer; 16-bit outputs are thus rounded once before the bias);
 *   - otherwise the direct kernel: 16x16 shared-memory tiles, fp32 accumulation on CUDA cores,
 *     any dtype mix, no workspace (the reference path; about 20x slower at Whisper's sizes).
 */
#include <string.h>

#include "backends/cuda/cuda_common.cuh"
#include "backends/cuda/cuda_internal.h"
#include "core/round.h"

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

#define COL_TT 32 /* output positions per im2col tile */
#define COL_TC 32 /* input channels per im2col tile */
#define COL_SPAN (2 * (COL_TT - 1) + 3) /* input positions a tile reads at stride 2 */

/* colT[t, ci * 3 + j] = x[ci, t * stride + j - 1] for one window (x, colT in one dtype, element
 * size 4 or 2 bytes, copied as bits: T is uint32_t or uint16_t). grid.x: Tout tiles, grid.y: Cin tiles. */
template <typename T>
static __global__ void im2col_kernel(const T *x, T *col, int64_t c_in, int64_t t_in, int64_t t_out, int stride) {
  __shared__ T tile[COL_TC][COL_SPAN + 1];
  int64_t t0 = (int64_t)blockIdx.x * COL_TT, c0 = (int64_t)blockIdx.y * COL_TC;
  int span = stride * (COL_TT - 1) + 3;
  for (int i = threadIdx.x; i < COL_TC * span; i += blockDim.x) {
    int c = i / span, p = i % span;
    int64_t ci = c0 + c, ti = t0 * stride - 1 + p;
    T v = 0;
    if (ci < c_in && ti >= 0 && ti < t_in) v = x[ci * t_in + ti];
    tile[c][p] = v;
  }
  __syncthreads();
  int64_t r_len = c_in * 3;
  for (int i = threadIdx.x; i < COL_TT * COL_TC * 3; i += blockDim.x) {
    int t = i / (COL_TC * 3), rr = i % (COL_TC * 3), c = rr / 3, j = rr % 3;
    if (t0 + t < t_out && c0 + c < c_in) col[(t0 + t) * r_len + c0 * 3 + rr] = tile[c][t * stride + j];
  }
}

/* y[b, co, t] = act(y[b, co, t] + bias[co]) in place; bias may be NULL. */
static __global__ void bias_act_kernel(void *y, int ydt, const void *bias, int bdt, int act, int64_t c_out,
                                       int64_t t_out, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float v = kiln_ld(y, ydt, i);
    if (bias) v += kiln_ld(bias, bdt, (i / t_out) % c_out);
    kiln_st(y, ydt, i, kiln_act(v, act));
  }
}

static int gemm_path_dtypes(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *y) {
  return x->dtype == w->dtype && y->dtype == w->dtype;
}

extern "C" size_t kiln_cuda_conv1d_workspace(const kiln_dims *x, const kiln_dims *w, int32_t stride,
                                             kiln_dtype dtype) {
  if (!x || !w || x->rank != 3 || w->rank != 3 || (stride != 1 && stride != 2) || !kiln_dtype_is_float(dtype))
    return 0;
  int64_t t_out = (x->d[2] + 2 - 3) / stride + 1;
  if (t_out <= 0 || x->d[1] <= 0) return 0;
  size_t col = kiln_dtype_bytes(dtype, t_out * x->d[1] * 3);
  return kiln_round_up(col, 256) + KILN_CUDA_DEFAULT_MATMUL_WORKSPACE;
}

static kiln_dims dims2(int64_t a, int64_t b) {
  kiln_dims d;
  memset(&d, 0, sizeof d);
  d.rank = 2, d.d[0] = a, d.d[1] = b;
  return d;
}

/* The GEMM path (see the file comment); arguments already checked. */
static kiln_status conv1d_gemm(kiln_cuda_ctx *cu, const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                               int32_t stride, kiln_activation act, kiln_tensor *y, void *workspace,
                               size_t workspace_bytes, void *stream) {
  int64_t batch = x->shape.d[0], c_in = x->shape.d[1], t_in = x->shape.d[2];
  int64_t c_out = w->shape.d[0], t_out = y->shape.d[2], r_len = c_in * 3;
  size_t col_bytes = kiln_round_up(kiln_dtype_bytes(x->dtype, t_out * r_len), 256);
  kiln_dims wdims = dims2(c_out, r_len), cdims = dims2(t_out, r_len), ydims = dims2(c_out, t_out);
  kiln_tensor w2 = kiln_tensor_contiguous(w->data, w->dtype, &wdims);
  kiln_tensor col = kiln_tensor_contiguous(workspace, x->dtype, &cdims);
  size_t es = kiln_dtype_bytes(x->dtype, 1);
  dim3 grid((unsigned int)((t_out + COL_TT - 1) / COL_TT), (unsigned int)((c_in + COL_TC - 1) / COL_TC));
  for (int64_t i = 0; i < batch; i++) {
    const char *xb = (const char *)x->data + (size_t)(i * c_in * t_in) * es;
    if (es == 4)
      im2col_kernel<uint32_t><<<grid, 256, 0, kiln_stream(stream)>>>((const uint32_t *)xb, (uint32_t *)col.data,
                                                                      c_in, t_in, t_out, stride);
    else
      im2col_kernel<uint16_t><<<grid, 256, 0, kiln_stream(stream)>>>((const uint16_t *)xb, (uint16_t *)col.data,
                                                                      c_in, t_in, t_out, stride);
    KILN_CUDA_CHECK_LAUNCH();
    kiln_tensor yb = kiln_tensor_contiguous((char *)y->data + (size_t)(i * c_out * t_out) * es, y->dtype, &ydims);
    KILN_TRY(kiln_cuda_matmul(cu, NULL, &w2, &col, NULL, KILN_ACTIVATION_NONE, &yb, (char *)workspace + col_bytes,
                              workspace_bytes - col_bytes, stream));
  }
  if (!b && act == KILN_ACTIVATION_NONE) return KILN_OK;
  int64_t n = batch * c_out * t_out;
  int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
  bias_act_kernel<<<blocks, 256, 0, kiln_stream(stream)>>>(y->data, y->dtype, b ? b->data : NULL,
                                                           b ? b->dtype : KILN_DTYPE_FP32, (int)act, c_out, t_out, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_conv1d(kiln_cuda_ctx *cu, const kiln_tensor *x,
                                        const kiln_tensor *w, const kiln_tensor *b, int32_t stride,
                                        kiln_activation act, kiln_tensor *y, void *workspace,
                                        size_t workspace_bytes, void *stream) {
  const char *op = "kiln_cuda_conv1d";
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
  if (cu && workspace && gemm_path_dtypes(x, w, y) &&
      workspace_bytes >= kiln_cuda_conv1d_workspace(&x->shape, &w->shape, stride, x->dtype) &&
      t_out <= 2147483647LL && c_in <= 65535 * (int64_t)COL_TC)
    return conv1d_gemm(cu, x, w, b, stride, act, y, workspace, workspace_bytes, stream);
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

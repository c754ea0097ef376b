/* src/backends/cuda/copy.cu - data movement: copy (also reshape and dtype conversion), transpose
 * (any permutation, rank <= 8), concat and slice along an axis.
 *
 * One thread per output element (grid-stride), dtype conversion on the way. Transpose computes
 * each source offset from the output coordinates: correct for every permutation, not tiled for
 * coalescing. A permutation that keeps the last dim in place (attention's head splits and merges,
 * [B, S, H, Dh] <-> [B, H, S, Dh]) with one dtype and rows of a multiple of 16 bytes moves 16
 * bytes per thread instead (transpose_rows_kernel: whole rows, both sides coalesced).
 * Not for strided (non-contiguous) views.
 */
#include "backends/cuda/cuda_common.cuh"

static __global__ void copy_kernel(const void *x, int xdt, void *y, int ydt, int64_t n) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    kiln_st(y, ydt, i, kiln_ld(x, xdt, i));
}

/* Output dims and, for each output dim, the input stride of the dim it comes from. */
typedef struct transpose_map {
  int32_t rank;
  int64_t out_dims[KILN_MAX_DIMS];
  int64_t in_strides[KILN_MAX_DIMS];
} transpose_map;

/* The input offset of output element i. */
static __device__ __forceinline__ int64_t source_offset(int64_t i, const transpose_map &map) {
  int64_t rem = i, off = 0;
  for (int32_t d = map.rank - 1; d >= 0; d--) {
    int64_t c = rem % map.out_dims[d];
    rem /= map.out_dims[d];
    off += c * map.in_strides[d];
  }
  return off;
}

static __global__ void transpose_kernel(const void *x, int xdt, void *y, int ydt, int64_t n,
                                        transpose_map map) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    kiln_st(y, ydt, i, kiln_ld(x, xdt, source_offset(i, map)));
}

/* The row path: map.out_dims[rank - 1] and in_strides count 16-byte vectors (the last dim is
 * kept, so a row is contiguous on both sides). */
static __global__ void transpose_rows_kernel(const uint4 *x, uint4 *y, int64_t n, transpose_map map) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) y[i] = x[source_offset(i, map)];
}

/* y viewed as [outer, y_chunk]; x as [outer, x_chunk]; copies x[o, r] <-> y[o, y_off + r] for
 * r < len. to_y = 1: concat piece (x -> y at offset); to_y = 0: slice (x at offset -> y). */
static __global__ void chunk_kernel(const void *src, int sdt, int64_t src_chunk, int64_t src_off,
                                    void *dst, int ddt, int64_t dst_chunk, int64_t dst_off,
                                    int64_t len, int64_t n) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t o = i / len, r = i % len;
    kiln_st(dst, ddt, o * dst_chunk + dst_off + r, kiln_ld(src, sdt, o * src_chunk + src_off + r));
  }
}

static kiln_status launch_chunks(const kiln_tensor *src, int64_t src_chunk, int64_t src_off,
                                 kiln_tensor *dst, int64_t dst_chunk, int64_t dst_off,
                                 int64_t outer, int64_t len, void *stream) {
  int64_t n = outer * len;
  if (n == 0) return KILN_OK;
  chunk_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      src->data, src->dtype, src_chunk, src_off, dst->data, dst->dtype, dst_chunk, dst_off, len,
      n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_copy(const kiln_tensor *x, kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_copy";
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  int64_t n = kiln_dims_count(&x->shape);
  if (n != kiln_dims_count(&y->shape))
    return kiln_error(KILN_ERR_SHAPE, "%s: x has %lld elements and y %lld; they must match", op,
                      (long long)n, (long long)kiln_dims_count(&y->shape));
  if (n == 0) return KILN_OK;
  if (x->dtype == y->dtype) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(y->data, x->data, kiln_dtype_bytes(x->dtype, n),
                                    cudaMemcpyDeviceToDevice, kiln_stream(stream)));
    return KILN_OK;
  }
  copy_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      x->data, x->dtype, y->data, y->dtype, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_transpose(const kiln_tensor *x, const int64_t *perm,
                                           kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_transpose";
  transpose_map map;
  int seen[KILN_MAX_DIMS] = {0};
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (!perm && x->shape.rank > 0) return kiln_error(KILN_ERR_INVALID_ARG, "%s: perm is NULL", op);
  if (y->shape.rank != x->shape.rank)
    return kiln_error(KILN_ERR_SHAPE, "%s: y must have x's rank %d", op, (int)x->shape.rank);
  map.rank = x->shape.rank;
  for (int32_t i = 0; i < x->shape.rank; i++) { /* the permutation first, then the shapes */
    int64_t p = perm[i];
    if (p < 0 || p >= x->shape.rank || seen[p])
      return kiln_error(KILN_ERR_INVALID_ARG, "%s: perm is not a permutation of 0..%d", op,
                        (int)x->shape.rank - 1);
    seen[p] = 1;
  }
  for (int32_t i = 0; i < x->shape.rank; i++) {
    int64_t p = perm[i];
    if (y->shape.d[i] != x->shape.d[p])
      return kiln_error(KILN_ERR_SHAPE, "%s: y dim %d must be x dim %lld", op, (int)i,
                        (long long)p);
    map.out_dims[i] = y->shape.d[i];
    map.in_strides[i] = x->strides[p];
  }
  int64_t n = kiln_dims_count(&y->shape);
  if (n == 0) return KILN_OK;
  /* contiguous x may carry any stride on a size-1 dim; those never contribute (coordinate 0) */
  int32_t r = map.rank;
  size_t es = kiln_dtype_bytes(x->dtype, 1), row = r > 0 ? es * (size_t)map.out_dims[r - 1] : 0;
  if (r > 1 && perm[r - 1] == r - 1 && x->dtype == y->dtype && row % 16 == 0 && x->strides[r - 1] == 1 &&
      ((uintptr_t)x->data | (uintptr_t)y->data) % 16 == 0) {
    int64_t per = (int64_t)(16 / es); /* elements per vector */
    transpose_map vm = map;
    for (int32_t i = 0; i < r - 1; i++) vm.in_strides[i] = map.in_strides[i] / per;
    vm.out_dims[r - 1] = map.out_dims[r - 1] / per;
    vm.in_strides[r - 1] = 1;
    int64_t nv = n / per;
    transpose_rows_kernel<<<kiln_grid_1d(nv), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
        (const uint4 *)x->data, (uint4 *)y->data, nv, vm);
    KILN_CUDA_CHECK_LAUNCH();
    return KILN_OK;
  }
  transpose_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      x->data, x->dtype, y->data, y->dtype, n, map);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

/* Product of dims [from, to). */
static int64_t dims_product(const kiln_dims *d, int32_t from, int32_t to) {
  int64_t p = 1;
  for (int32_t i = from; i < to; i++) p *= d->d[i];
  return p;
}

extern "C" kiln_status kiln_cuda_concat(int32_t n, const kiln_tensor *xs, int32_t axis,
                                        kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_concat";
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (n < 1 || !xs) return kiln_error(KILN_ERR_INVALID_ARG, "%s: pass at least one input", op);
  int32_t rank = y->shape.rank;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: axis out of range for rank %d", op, (int)rank);
  int64_t total = 0;
  for (int32_t i = 0; i < n; i++) {
    KILN_TRY(kiln_check_float(&xs[i], op, "an input"));
    int ok = xs[i].shape.rank == rank;
    for (int32_t d = 0; ok && d < rank; d++) ok = d == axis || xs[i].shape.d[d] == y->shape.d[d];
    if (!ok)
      return kiln_error(KILN_ERR_SHAPE, "%s: input %d must match y in every dim but the axis", op,
                        (int)i);
    total += xs[i].shape.d[axis];
  }
  if (total != y->shape.d[axis])
    return kiln_error(KILN_ERR_SHAPE, "%s: inputs add up to %lld along the axis, y has %lld", op,
                      (long long)total, (long long)y->shape.d[axis]);
  int64_t outer = dims_product(&y->shape, 0, axis), inner = dims_product(&y->shape, axis + 1, rank);
  int64_t y_chunk = y->shape.d[axis] * inner, off = 0;
  for (int32_t i = 0; i < n; i++) {
    int64_t len = xs[i].shape.d[axis] * inner;
    KILN_TRY(launch_chunks(&xs[i], len, 0, y, y_chunk, off, outer, len, stream));
    off += len;
  }
  return KILN_OK;
}

extern "C" kiln_status kiln_cuda_slice(const kiln_tensor *x, int32_t axis, int64_t start,
                                       int64_t end, kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_slice";
  KILN_TRY(kiln_check_float(x, op, "x"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  int32_t rank = x->shape.rank;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: axis out of range for rank %d", op, (int)rank);
  if (start < 0 || start > end || end > x->shape.d[axis])
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "%s: need 0 <= start <= end <= dim (got %lld, %lld, dim %lld)", op,
                      (long long)start, (long long)end, (long long)x->shape.d[axis]);
  int ok = y->shape.rank == rank;
  for (int32_t d = 0; ok && d < rank; d++)
    ok = y->shape.d[d] == (d == axis ? end - start : x->shape.d[d]);
  if (!ok) return kiln_error(KILN_ERR_SHAPE, "%s: y must have x's shape with end - start on the axis", op);
  int64_t outer = dims_product(&x->shape, 0, axis), inner = dims_product(&x->shape, axis + 1, rank);
  int64_t len = (end - start) * inner;
  return launch_chunks(x, x->shape.d[axis] * inner, start * inner, y, len, 0, outer, len, stream);
}

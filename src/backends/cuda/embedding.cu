/* src/backends/cuda/embedding.cu - embedding look-up: y[..., N] = table[ids[...], :].
 *
 * One thread per output element (grid-stride). Ids outside [0, V) produce a zero row (the CPU
 * backend reports them as an error instead; the GPU cannot do so without a sync). int32 ids only.
 */
#include "backends/cuda/cuda_common.cuh"

static __global__ void embedding_kernel(const void *table, int tdt, const int32_t *ids, int64_t v,
                                        void *y, int ydt, int64_t n_cols, int64_t n) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t row = i / n_cols, col = i % n_cols;
    int64_t id = ids[row];
    float val = (id >= 0 && id < v) ? kiln_ld(table, tdt, id * n_cols + col) : 0.0f;
    kiln_st(y, ydt, i, val);
  }
}

extern "C" kiln_status kiln_cuda_embedding(const kiln_tensor *table, const kiln_tensor *ids,
                                           kiln_tensor *y, void *stream) {
  const char *op = "kiln_cuda_embedding";
  KILN_TRY(kiln_check_float(table, op, "table"));
  KILN_TRY(kiln_check_float(y, op, "y"));
  if (!ids) return kiln_error(KILN_ERR_INVALID_ARG, "%s: ids is NULL", op);
  if (ids->dtype != KILN_DTYPE_INT32)
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: ids have dtype %s; pass int32 ids", op,
                      kiln_dtype_name(ids->dtype));
  if (!kiln_tensor_is_contiguous(ids))
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: ids are not contiguous", op);
  if (table->shape.rank != 2) return kiln_error(KILN_ERR_SHAPE, "%s: table must be [V, N]", op);
  int64_t v = table->shape.d[0], n_cols = table->shape.d[1];
  int64_t n_ids = kiln_dims_count(&ids->shape);
  int ok = y->shape.rank == ids->shape.rank + 1 && y->shape.d[y->shape.rank - 1] == n_cols;
  for (int32_t i = 0; ok && i < ids->shape.rank; i++) ok = y->shape.d[i] == ids->shape.d[i];
  if (!ok) return kiln_error(KILN_ERR_SHAPE, "%s: y must have shape [ids..., N]", op);
  int64_t n = n_ids * n_cols;
  if (n == 0) return KILN_OK;
  if (!ids->data) return kiln_error(KILN_ERR_INVALID_ARG, "%s: ids have no data pointer", op);
  embedding_kernel<<<kiln_grid_1d(n), KILN_CUDA_THREADS, 0, kiln_stream(stream)>>>(
      table->data, table->dtype, (const int32_t *)ids->data, v, y->data, y->dtype, n_cols, n);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

/* tests/gpu/test_cuda_context.c - the CUDA backend's context, device info, memory helpers and
 * error paths: the check-macro helpers record statement, file and line; no GPU means
 * kiln_cuda_available() == 0 and KILN_ERR_NO_DEVICE (checked here, then the test skips);
 * bad devices, NULL pointers, an impossible allocation (an error, not sticky), round trips.
 */
#include <cuda_runtime.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops.h"
#include "check.h"

/* The macros' helpers, callable without a GPU. */
static void test_check_helpers(void) {
  kiln_status st = kiln_cuda_status_(cudaErrorMemoryAllocation, "cudaMalloc(&p, n)", "here.c", 42);
  CHECK_EQ_INT(st, KILN_ERR_OUT_OF_DEVICE_MEMORY);
  CHECK(strstr(kiln_last_error(), "cudaMalloc(&p, n)") != NULL);
  CHECK(strstr(kiln_last_error(), "here.c:42") != NULL);
  CHECK(strstr(kiln_last_error(), "cudaErrorMemoryAllocation") != NULL);
  st = kiln_cuda_status_(cudaErrorInvalidValue, "f()", "a.c", 1);
  CHECK_EQ_INT(st, KILN_ERR_CUDA);
  st = kiln_cuda_status_(cudaErrorNoDevice, "g()", "a.c", 2);
  CHECK_EQ_INT(st, KILN_ERR_NO_DEVICE);
  st = kiln_cublas_status_(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul(...)", "b.c", 7);
  CHECK_EQ_INT(st, KILN_ERR_CUBLAS);
  CHECK(strstr(kiln_last_error(), "cublasLtMatmul(...)") != NULL);
  CHECK(strstr(kiln_last_error(), "b.c:7") != NULL);
  st = kiln_cublas_status_(CUBLAS_STATUS_NOT_SUPPORTED, "h()", "b.c", 8);
  CHECK_EQ_INT(st, KILN_ERR_UNSUPPORTED);
}

static kiln_status macro_user(cudaError_t e) {
  KILN_CUDA_CHECK(e);
  return KILN_OK;
}

static void test_no_device(void) {
  kiln_cuda_ctx *cu = (kiln_cuda_ctx *)&cu; /* must stay untouched */
  CHECK_EQ_INT(kiln_cuda_available(), 0);
  CHECK_EQ_INT(kiln_cuda_available(), 0); /* asking twice is quiet and stable */
  CHECK_STATUS(kiln_cuda_ctx_create(0, &cu), KILN_ERR_NO_DEVICE);
  CHECK(cu == (kiln_cuda_ctx *)&cu);
  CHECK(strstr(kiln_last_error(), "nvidia-smi") != NULL);
}

static void test_context(void) {
  kiln_cuda_ctx *cu = NULL;
  int n = 0;
  CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n > 0);
  CHECK_STATUS(kiln_cuda_ctx_create(-1, &cu), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_ctx_create(n, &cu), KILN_ERR_INVALID_ARG);
  CHECK(cu == NULL);
  CHECK_STATUS(kiln_cuda_ctx_create(0, NULL), KILN_ERR_INVALID_ARG);
  CHECK_OK(kiln_cuda_ctx_create(0, &cu));
  CHECK(cu != NULL);
  const kiln_cuda_device_info *info = kiln_cuda_ctx_info(cu);
  CHECK(info != NULL);
  if (info) {
    struct cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0) == cudaSuccess);
    fprintf(stderr, "device 0: %s, sm_%d%d, %d SMs, %zu B shared/block opt-in, %zu MiB, "
            "driver %d, runtime %d\n", info->name, (int)info->cc_major, (int)info->cc_minor,
            (int)info->sm_count, info->shared_mem_per_block_optin, info->total_mem >> 20,
            (int)info->driver_version, (int)info->runtime_version);
    CHECK_EQ_INT(info->device, 0);
    CHECK_EQ_STR(info->name, prop.name);
    CHECK(strlen(info->name) > 0);
    CHECK_EQ_INT(info->cc_major, prop.major);
    CHECK_EQ_INT(info->cc_minor, prop.minor);
    CHECK(info->cc_major >= 5);
    CHECK_EQ_INT(info->sm_count, prop.multiProcessorCount);
    CHECK(info->sm_count > 0);
    CHECK(info->shared_mem_per_block_optin >= 48 * 1024);
    CHECK_EQ_INT((long long)info->total_mem, (long long)prop.totalGlobalMem);
    CHECK(info->driver_version >= 12000);
    CHECK(info->runtime_version >= 12000);
  }
  CHECK(kiln_cuda_ctx_info(NULL) == NULL);
  kiln_cuda_ctx_destroy(cu);
  kiln_cuda_ctx_destroy(NULL);
}

static void test_memory(void) {
  check_rng r = {5};
  const size_t n = 100003;
  float *src = malloc(n * sizeof(float)), *dst = malloc(n * sizeof(float));
  void *dev = NULL, *huge = (void *)&huge;
  cudaStream_t stream;
  if (!src || !dst) abort();
  CHECK(cudaStreamCreate(&stream) == cudaSuccess);
  check_fill(&r, src, (int64_t)n, -1, 1);
  CHECK_OK(kiln_cuda_malloc(&dev, n * sizeof(float)));
  CHECK(dev != NULL);
  CHECK_OK(kiln_cuda_memcpy_h2d(dev, src, n * sizeof(float), stream));
  memset(dst, 0, n * sizeof(float));
  CHECK_OK(kiln_cuda_memcpy_d2h(dst, dev, n * sizeof(float), stream));
  CHECK_OK(kiln_cuda_stream_sync(stream));
  CHECK(memcmp(src, dst, n * sizeof(float)) == 0);
  CHECK_OK(kiln_cuda_memset(dev, 0, n * sizeof(float), stream));
  CHECK_OK(kiln_cuda_memcpy_d2h(dst, dev, n * sizeof(float), stream));
  CHECK_OK(kiln_cuda_stream_sync(stream));
  CHECK(dst[0] == 0.0f && dst[n - 1] == 0.0f);
  /* zero bytes: nothing to do */
  CHECK_OK(kiln_cuda_memcpy_h2d(NULL, NULL, 0, stream));
  CHECK_OK(kiln_cuda_memset(NULL, 0, 0, stream));
  void *zero = (void *)&zero;
  CHECK_OK(kiln_cuda_malloc(&zero, 0));
  CHECK(zero == NULL);
  /* errors */
  CHECK_STATUS(kiln_cuda_malloc(NULL, 16), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_memcpy_h2d(NULL, src, 16, stream), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_memcpy_d2h(dst, NULL, 16, stream), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_cuda_malloc(&huge, (size_t)1 << 50), KILN_ERR_OUT_OF_DEVICE_MEMORY);
  CHECK(huge == (void *)&huge); /* untouched on error */
  CHECK(strstr(kiln_last_error(), "cudaMalloc") != NULL);
  CHECK(strstr(kiln_last_error(), "context.c:") != NULL);
  /* the failed allocation is not sticky: later calls work */
  CHECK_OK(kiln_cuda_memcpy_h2d(dev, src, 64, stream));
  CHECK_OK(kiln_cuda_stream_sync(stream));
  /* the check macro on a real runtime error */
  CHECK_STATUS(macro_user(cudaMemcpy(dev, src, 64, (enum cudaMemcpyKind)12345)), KILN_ERR_CUDA);
  CHECK(strstr(kiln_last_error(), "test_cuda_context.c:") != NULL);
  CHECK_OK(kiln_cuda_stream_sync(stream));
  kiln_cuda_free(dev);
  kiln_cuda_free(NULL);
  cudaStreamDestroy(stream);
  free(src), free(dst);
}

int main(void) {
  test_check_helpers();
  if (!kiln_cuda_available()) {
    test_no_device();
    if (check_failures_) return check_report();
    SKIP_TEST("no CUDA device (the no-device paths passed)");
  }
  test_context();
  test_memory();
  return check_report();
}

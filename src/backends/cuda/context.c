/* src/backends/cuda/context.c - the CUDA backend's per-device context (cuBLASLt handle, device
 * properties), device discovery, memory and copy helpers, and the error-recording side of the
 * check macros (cuda_check.h) for the runtime and cuBLAS.
 *
 * Uses the CUDA runtime only (no driver API), so binaries load and kiln_cuda_available() answers
 * 0 on machines without an NVIDIA driver. Not the place for kernels or matmul logic.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_internal.h"

static const char *cuda_hint(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation:
      return "free GPU memory (other processes, larger batches) or use smaller shapes";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
      return "check that an NVIDIA GPU and a driver new enough for this CUDA runtime are present "
             "(nvidia-smi)";
    case cudaErrorInvalidDevice:
      return "pass a device index below the number of GPUs (nvidia-smi -L)";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "rebuild kiln with this GPU's architecture in KILN_CUDA_ARCHS";
    default:
      return "check the GPU and driver (nvidia-smi); run under compute-sanitizer to find the "
             "failing kernel";
  }
}

static kiln_status cuda_status_code(cudaError_t err) {
  switch (err) {
    case cudaErrorMemoryAllocation: return KILN_ERR_OUT_OF_DEVICE_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver: return KILN_ERR_NO_DEVICE;
    case cudaErrorNoKernelImageForDevice: return KILN_ERR_WRONG_DEVICE;
    default: return KILN_ERR_CUDA;
  }
}

kiln_status kiln_cuda_status_(cudaError_t err, const char *stmt, const char *file, int line) {
  return kiln_error(cuda_status_code(err), "%s failed at %s:%d: %s (%s); %s", stmt, file, line,
                    cudaGetErrorName(err), cudaGetErrorString(err), cuda_hint(err));
}

kiln_status kiln_cublas_status_(cublasStatus_t err, const char *stmt, const char *file, int line) {
  kiln_status st = err == CUBLAS_STATUS_ALLOC_FAILED ? KILN_ERR_OUT_OF_DEVICE_MEMORY
                   : err == CUBLAS_STATUS_NOT_SUPPORTED ? KILN_ERR_UNSUPPORTED
                                                        : KILN_ERR_CUBLAS;
  return kiln_error(st, "%s failed at %s:%d: %s (%s); %s", stmt, file, line,
                    cublasLtGetStatusName(err), cublasLtGetStatusString(err),
                    err == CUBLAS_STATUS_NOT_SUPPORTED
                        ? "choose another tactic or dtype for this shape"
                        : "check the GPU and driver (nvidia-smi) and the shapes passed");
}

int kiln_cuda_available(void) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError(); /* clear it: absence of a GPU is not an error here */
    return 0;
  }
  return n > 0;
}

/* The current device's compute capability (major) and SM count, cached per device (they never
 * change, so a race only asks twice); KILN_NO_PDL read once. */
#define ATTR_DEVICES 64
static _Atomic int dev_major[ATTR_DEVICES], dev_sms[ATTR_DEVICES], no_pdl = -1;

void kiln_cuda_current_device(int *cc_major, int *sm_count) {
  int dev = 0;
  *cc_major = 0, *sm_count = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= ATTR_DEVICES) {
    (void)cudaGetLastError();
    return;
  }
  if (dev_major[dev] == 0) {
    int major = 0, sms = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    dev_sms[dev] = sms;
    dev_major[dev] = major;
  }
  *cc_major = dev_major[dev], *sm_count = dev_sms[dev];
}

int kiln_cuda_pdl_enabled(void) {
  int major, sms;
  if (no_pdl < 0) {
    const char *off = getenv("KILN_NO_PDL");
    no_pdl = off && off[0] && strcmp(off, "0") != 0;
  }
  kiln_cuda_current_device(&major, &sms);
  return major >= 9 && !no_pdl;
}

static kiln_status fill_info(int32_t device, kiln_cuda_device_info *info) {
  struct cudaDeviceProp prop;
  int driver = 0, runtime = 0;
  KILN_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  KILN_CUDA_CHECK(cudaDriverGetVersion(&driver));
  KILN_CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  memset(info, 0, sizeof *info);
  info->device = device;
  snprintf(info->name, sizeof info->name, "%s", prop.name);
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->sm_count = prop.multiProcessorCount;
  info->shared_mem_per_block_optin = prop.sharedMemPerBlockOptin;
  info->total_mem = prop.totalGlobalMem;
  info->driver_version = driver;
  info->runtime_version = runtime;
  return KILN_OK;
}

kiln_status kiln_cuda_ctx_create(int32_t device, kiln_cuda_ctx **out) {
  int n = 0;
  kiln_cuda_ctx *cu;
  kiln_status st;
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_ctx_create: out is NULL");
  if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
    (void)cudaGetLastError();
    return kiln_error(KILN_ERR_NO_DEVICE,
                      "no CUDA device found; check that an NVIDIA GPU and its driver are present "
                      "(nvidia-smi), or use the CPU target");
  }
  if (device < 0 || device >= n)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "CUDA device %d does not exist (this machine has %d); pass 0..%d", device,
                      n, n - 1);
  cu = calloc(1, sizeof *cu);
  if (!cu) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of host memory creating a CUDA context");
  st = fill_info(device, &cu->info);
  if (st == KILN_OK) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) st = kiln_cuda_status_(err, "cudaSetDevice(device)", __FILE__, __LINE__);
  }
  if (st == KILN_OK) {
    cublasStatus_t cs = cublasLtCreate(&cu->lt);
    if (cs != CUBLAS_STATUS_SUCCESS)
      st = kiln_cublas_status_(cs, "cublasLtCreate(&cu->lt)", __FILE__, __LINE__);
  }
  if (st != KILN_OK) {
    free(cu);
    return st;
  }
  pthread_mutex_init(&cu->algo_lock, NULL);
  *out = cu;
  return KILN_OK;
}

void kiln_cuda_ctx_destroy(kiln_cuda_ctx *cu) {
  if (!cu) return;
  if (cu->lt) cublasLtDestroy(cu->lt);
  pthread_mutex_destroy(&cu->algo_lock);
  free(cu);
}

const kiln_cuda_device_info *kiln_cuda_ctx_info(const kiln_cuda_ctx *cu) {
  return cu ? &cu->info : NULL;
}

/* ---- memory ------------------------------------------------------------------------------ */

kiln_status kiln_cuda_malloc(void **p, size_t bytes) {
  void *q = NULL;
  if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_malloc: p is NULL");
  if (bytes == 0) {
    *p = NULL;
    return KILN_OK;
  }
  KILN_CUDA_CHECK(cudaMalloc(&q, bytes));
  *p = q;
  return KILN_OK;
}

void kiln_cuda_free(void *p) {
  if (p) (void)cudaFree(p);
}

kiln_status kiln_cuda_host_alloc(void **p, size_t bytes) {
  void *q = NULL;
  if (!p) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_host_alloc: p is NULL");
  KILN_CUDA_CHECK(cudaMallocHost(&q, bytes ? bytes : 1));
  *p = q;
  return KILN_OK;
}

void kiln_cuda_host_free(void *p) {
  if (p) (void)cudaFreeHost(p);
}

static kiln_status copy_args(void *dst, const void *src, size_t bytes, const char *what) {
  if (bytes && (!dst || !src))
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: NULL pointer for a %zu-byte copy", what, bytes);
  return KILN_OK;
}

/* Asynchronous on `stream`: call kiln_cuda_stream_sync() before using host data. */
kiln_status kiln_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
  KILN_TRY(copy_args(dst, src, bytes, "kiln_cuda_memcpy_h2d"));
  if (!bytes) return KILN_OK;
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream));
  return KILN_OK;
}

kiln_status kiln_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
  KILN_TRY(copy_args(dst, src, bytes, "kiln_cuda_memcpy_d2h"));
  if (!bytes) return KILN_OK;
  KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream));
  return KILN_OK;
}

kiln_status kiln_cuda_memset(void *dst, int value, size_t bytes, void *stream) {
  if (!bytes) return KILN_OK;
  if (!dst) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_memset: dst is NULL");
  KILN_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, (cudaStream_t)stream));
  return KILN_OK;
}

kiln_status kiln_cuda_poison(void *p, size_t bytes, void *stream) {
  if (!kiln_poison_enabled()) return KILN_OK;
  kiln_status s = kiln_cuda_memset(p, KILN_POISON_BYTE, bytes, stream);
  return s == KILN_OK ? s : kiln_error_context(s, "KILN_POISON: ");
}

kiln_status kiln_cuda_stream_sync(void *stream) {
  KILN_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)stream));
  return KILN_OK;
}

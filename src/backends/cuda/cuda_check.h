/* src/backends/cuda/cuda_check.h - one check-macro family for the CUDA runtime, cuBLAS(Lt) and
 * the CUDA driver API, for use inside the library.
 *
 * Each macro evaluates a call; on failure it records the statement, file and line and the
 * library's name for the error in kiln_last_error() (through kiln_error) and returns a
 * kiln_status from the calling function. They never print and never exit. The _GOTO variants
 * store the status in `st` and jump to `label` instead, for functions that must release
 * resources before returning.
 *   KILN_CUDA_CHECK(cudaMalloc(&p, n));
 *   KILN_CUBLAS_CHECK(cublasLtCreate(&h));
 *   KILN_CU_CHECK(cuModuleLoadData(&m, image));   (driver API: links libcuda)
 *   KILN_CUDA_CHECK_LAUNCH();                     (after a kernel launch)
 * Not for tests or tools: those abort on failure with their own checks.
 * Usable from C and from CUDA C (.cu) files.
 */
#ifndef KILN_CUDA_CHECK_H
#define KILN_CUDA_CHECK_H

#include <cublasLt.h>
#include <cuda.h>
#include <cuda_runtime.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#include "core/error.h"

/* Record a failed call and return the matching kiln_status (ERR_CUDA, ERR_NO_DEVICE,
 * ERR_OUT_OF_DEVICE_MEMORY, ERR_CUBLAS, ...). Defined in context.c / cuda_driver_check.c. */
kiln_status kiln_cuda_status_(cudaError_t err, const char *stmt, const char *file, int line);
kiln_status kiln_cublas_status_(cublasStatus_t err, const char *stmt, const char *file, int line);
kiln_status kiln_cu_status_(CUresult err, const char *stmt, const char *file, int line);

#ifdef __cplusplus
}
#endif

#define KILN_CUDA_CHECK(stmt)                                                   \
  do {                                                                          \
    cudaError_t kiln_cuda_e_ = (stmt);                                          \
    if (kiln_cuda_e_ != cudaSuccess)                                            \
      return kiln_cuda_status_(kiln_cuda_e_, #stmt, __FILE__, __LINE__);        \
  } while (0)

#define KILN_CUBLAS_CHECK(stmt)                                                 \
  do {                                                                          \
    cublasStatus_t kiln_cublas_e_ = (stmt);                                     \
    if (kiln_cublas_e_ != CUBLAS_STATUS_SUCCESS)                                \
      return kiln_cublas_status_(kiln_cublas_e_, #stmt, __FILE__, __LINE__);    \
  } while (0)

#define KILN_CU_CHECK(stmt)                                                     \
  do {                                                                          \
    CUresult kiln_cu_e_ = (stmt);                                               \
    if (kiln_cu_e_ != CUDA_SUCCESS)                                             \
      return kiln_cu_status_(kiln_cu_e_, #stmt, __FILE__, __LINE__);            \
  } while (0)

#define KILN_CUDA_CHECK_GOTO(stmt, st, label)                                   \
  do {                                                                          \
    cudaError_t kiln_cuda_e_ = (stmt);                                          \
    if (kiln_cuda_e_ != cudaSuccess) {                                          \
      (st) = kiln_cuda_status_(kiln_cuda_e_, #stmt, __FILE__, __LINE__);        \
      goto label;                                                               \
    }                                                                           \
  } while (0)

#define KILN_CUBLAS_CHECK_GOTO(stmt, st, label)                                 \
  do {                                                                          \
    cublasStatus_t kiln_cublas_e_ = (stmt);                                     \
    if (kiln_cublas_e_ != CUBLAS_STATUS_SUCCESS) {                              \
      (st) = kiln_cublas_status_(kiln_cublas_e_, #stmt, __FILE__, __LINE__);    \
      goto label;                                                               \
    }                                                                           \
  } while (0)

/* After a kernel launch: reports a bad launch configuration (or an earlier asynchronous error). */
#define KILN_CUDA_CHECK_LAUNCH() KILN_CUDA_CHECK(cudaGetLastError())

#endif /* KILN_CUDA_CHECK_H */

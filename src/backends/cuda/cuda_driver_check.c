/* src/backends/cuda/cuda_driver_check.c - the driver-API side of the check macros
 * (KILN_CU_CHECK in cuda_check.h). In a file of its own so that only code that uses the driver
 * API (cuModule*, cuLaunchKernel) links libcuda; the rest of the backend loads without a driver.
 */
#include "backends/cuda/cuda_check.h"

kiln_status kiln_cu_status_(CUresult err, const char *stmt, const char *file, int line) {
  const char *name = NULL, *text = NULL;
  kiln_status st = KILN_ERR_CUDA;
  if (cuGetErrorName(err, &name) != CUDA_SUCCESS) name = "unknown CUresult";
  if (cuGetErrorString(err, &text) != CUDA_SUCCESS) text = "no description";
  if (err == CUDA_ERROR_OUT_OF_MEMORY) st = KILN_ERR_OUT_OF_DEVICE_MEMORY;
  if (err == CUDA_ERROR_NO_DEVICE || err == CUDA_ERROR_NOT_INITIALIZED) st = KILN_ERR_NO_DEVICE;
  if (err == CUDA_ERROR_NO_BINARY_FOR_GPU) st = KILN_ERR_WRONG_DEVICE;
  return kiln_error(st, "%s failed at %s:%d: %s (%d: %s); %s", stmt, file, line, name, (int)err,
                    text,
                    st == KILN_ERR_WRONG_DEVICE
                        ? "rebuild the kernels for this GPU's architecture"
                        : "check the GPU and driver (nvidia-smi)");
}

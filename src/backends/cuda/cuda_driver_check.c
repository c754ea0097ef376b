/* src/backends/cuda/cuda_driver_check.c - the driver-API side of the check macros
 * (KILN_CU_CHECK in cuda_check.h). The driver API is reached through kiln_cu() (driver_api.h),
 * so nothing in kiln links libcuda.
 */
#include "backends/cuda/cuda_check.h"
#include "backends/cuda/driver_api.h"

kiln_status kiln_cu_status_(CUresult err, const char *stmt, const char *file, int line) {
  const char *name = NULL, *text = NULL;
  kiln_status st = KILN_ERR_CUDA;
  const kiln_cu_api *cu = kiln_cu();
  if (!cu || cu->cuGetErrorName(err, &name) != CUDA_SUCCESS) name = "unknown CUresult";
  if (!cu || cu->cuGetErrorString(err, &text) != CUDA_SUCCESS) text = "no description";
  if (err == CUDA_ERROR_OUT_OF_MEMORY) st = KILN_ERR_OUT_OF_DEVICE_MEMORY;
  if (err == CUDA_ERROR_NO_DEVICE || err == CUDA_ERROR_NOT_INITIALIZED) st = KILN_ERR_NO_DEVICE;
  if (err == CUDA_ERROR_NO_BINARY_FOR_GPU) st = KILN_ERR_WRONG_DEVICE;
  return kiln_error(st, "%s failed at %s:%d: %s (%d: %s); %s", stmt, file, line, name, (int)err,
                    text,
                    st == KILN_ERR_WRONG_DEVICE
                        ? "rebuild the kernels for this GPU's architecture"
                        : "check the GPU and driver (nvidia-smi)");
}

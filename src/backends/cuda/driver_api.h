/* src/backends/cuda/driver_api.h - the few CUDA driver API functions kiln uses (to load and
 * launch the ahead-of-time Triton kernels), looked up at run time from libcuda.so.1.
 *
 * kiln does not link libcuda: a machine with the CUDA toolkit but no GPU driver (CI, a CPU-only
 * user) must still be able to start `kiln` and use the CPU backend. kiln_cu() returns NULL there
 * and callers report "no CUDA driver" as a status. Thread-safe (loaded once).
 */
#ifndef KILN_CUDA_DRIVER_API_H
#define KILN_CUDA_DRIVER_API_H

#include <cuda.h>

typedef struct kiln_cu_api {
  CUresult (*cuDeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
  CUresult (*cuCtxGetCurrent)(CUcontext *);
  CUresult (*cuCtxGetDevice)(CUdevice *);
  CUresult (*cuModuleLoadData)(CUmodule *, const void *);
  CUresult (*cuModuleUnload)(CUmodule);
  CUresult (*cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
  CUresult (*cuFuncSetAttribute)(CUfunction, CUfunction_attribute, int);
  CUresult (*cuLaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             CUstream, void **, void **);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuGetErrorString)(CUresult, const char **);
  /* Optional (NULL when the driver predates CUDA 12): tensor maps for TMA kernels (sm_90). */
  CUresult (*cuTensorMapEncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                     const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
} kiln_cu_api;

/* The driver's functions, or NULL when libcuda.so.1 (the NVIDIA driver) is not installed. */
const kiln_cu_api *kiln_cu(void);

#endif

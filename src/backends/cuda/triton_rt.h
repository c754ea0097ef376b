/* src/backends/cuda/triton_rt.h - the runtime behind kiln's ahead-of-time Triton kernels.
 *
 * What it is: the tables tools/triton_aot.py generates (kernel -> variants -> one code image
 * per target architecture) and the functions that load and launch them with the CUDA driver
 * API. The generated file (build/generated/kiln_triton_kernels.c) holds the tables and one typed
 * launcher per kernel, kiln_triton_<kernel>(stream, variant, grid_x, grid_y, grid_z, args...),
 * which checks its arguments and calls kiln_triton_launch().
 * What it is not: a Triton runtime. No JIT of Triton code, no autotuning, no global scratch.
 *
 * Code selection at load, for the device of the current context with compute capability X.Y:
 * the cubin of the highest built arch X.y with y <= Y (same major: cubins run on later minors);
 * else the embedded PTX (highest built arch) when its arch <= X.Y, JIT-compiled by the driver;
 * else KILN_ERR_WRONG_DEVICE naming the archs kiln was built for.
 * Shared memory: a variant needing more than the device's opt-in limit per block
 * (CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN) fails to load with KILN_ERR_UNSUPPORTED
 * naming the kernel, the variant, the bytes needed and the bytes available; above 48 KiB the
 * function's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES is raised.
 *
 * Devices and threads: modules are kept per (kernel, variant, CUcontext) in one table guarded by
 * a mutex, so loads and launches may come from any thread and any device. The context is the
 * calling thread's current one; when there is none, the CUDA runtime's primary context of its
 * current device (cudaSetDevice) is made current. Launching loads the variant on first use.
 * kiln_triton_unload() unloads a kernel's modules of the current context; calling it again (or
 * for a kernel never loaded) does nothing. Unload before destroying a context you created.
 *
 * Launch: the empty grid (any dimension 0) returns KILN_OK without launching. The two hidden
 * pointer parameters Triton 3.6 appends (global_scratch, profile_scratch) are passed as NULL:
 * the generator refuses kernels that need scratch memory.
 */
#ifndef KILN_TRITON_RT_H
#define KILN_TRITON_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_triton_image {
  int32_t arch;                /* 80 for sm_80 */
  int32_t is_ptx;              /* 1: NUL-terminated PTX for the driver JIT; 0: cubin */
  const unsigned char *code;
  uint32_t shared_bytes;       /* dynamic shared memory per block */
  int32_t registers;           /* per thread, from the cubin (-1 unknown) */
} kiln_triton_image;

typedef struct kiln_triton_variant {
  const char *desc;            /* "BLOCK_M=64 BLOCK_N=64 num_warps=4 num_stages=2" */
  int32_t num_warps, num_stages;
  int32_t n_constexprs;
  const char *const *constexpr_names;
  const int64_t *constexpr_values;
  int32_t n_images;
  const kiln_triton_image *images;
} kiln_triton_variant;

typedef struct kiln_triton_kernel {
  const char *name;            /* AoT name ("fmha_fwd_fp16") */
  const char *entry;           /* PTX entry ("fmha_fwd") */
  int32_t n_params;            /* launcher arguments, without the hidden scratch pointers */
  int32_t n_variants;
  const kiln_triton_variant *variants;
} kiln_triton_kernel;

/* Load `variant` for the current context (no-op when loaded). Errors: KILN_ERR_INVALID_ARG
 * (variant out of range), KILN_ERR_NO_DEVICE, KILN_ERR_WRONG_DEVICE (no code for this GPU),
 * KILN_ERR_UNSUPPORTED (shared memory too large), KILN_ERR_CUDA. */
kiln_status kiln_triton_load(const kiln_triton_kernel *k, int32_t variant);
/* Unload every variant of `k` loaded in the current context. Harmless when nothing is loaded. */
kiln_status kiln_triton_unload(const kiln_triton_kernel *k);
/* Modules of `k` loaded over all contexts (for tests and diagnostics). */
int32_t kiln_triton_loaded_count(const kiln_triton_kernel *k);

/* Whether `variant` can run on the current device, without loading it: KILN_OK, or the error
 * kiln_triton_load() would give (shared memory, no code). need/avail (may be NULL) receive the
 * variant's shared memory and the device's limit in bytes. */
kiln_status kiln_triton_check(const kiln_triton_kernel *k, int32_t variant, size_t *need,
                              size_t *avail);

/* Value of a variant's constexpr, or `fallback` when the variant or the name does not exist. */
int64_t kiln_triton_constexpr(const kiln_triton_kernel *k, int32_t variant, const char *name,
                              int64_t fallback);

/* Launch (used by the generated launchers): args holds n_args pointers to the argument values
 * in signature order, without the hidden scratch pointers. stream is a CUstream/cudaStream_t. */
kiln_status kiln_triton_launch(const kiln_triton_kernel *k, int32_t variant, uint32_t grid_x,
                               uint32_t grid_y, uint32_t grid_z, void *stream, void **args,
                               int32_t n_args);

#ifdef __cplusplus
}
#endif
#endif /* KILN_TRITON_RT_H */

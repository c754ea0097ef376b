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
 *
 * Tensor descriptors (TMA, sm_90 and newer): a kernel argument declared
 * "tensordesc<fp16[1, 1, BLOCK_N, BLOCK_D]>" in the kernel file takes a kiln_triton_tensor (base,
 * shape, strides in elements, outermost first). At launch kiln encodes the CUtensorMap the loaded
 * image was compiled for (data type, swizzle, block shape: kiln_triton_tma, recorded by the
 * generator from Triton's metadata) with cuTensorMapEncodeTiled and passes it by value, followed
 * by the shape (int32) and strides (int64), as Triton 3.6's own launcher does. Rows and columns
 * outside the shape read as zeros. Errors (KILN_ERR_INVALID_ARG) name the kernel, the argument and
 * the rule broken: a 16-byte aligned base, a contiguous last dimension, the other strides
 * multiples of 16 bytes, dims in [1, 2^31).
 */
#ifndef KILN_TRITON_RT_H
#define KILN_TRITON_RT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_TRITON_MAX_RANK 5 /* of a tensor descriptor (TMA's limit) */

/* A tensor a descriptor argument describes: elements, outermost dimension first. */
typedef struct kiln_triton_tensor {
  void *base;                  /* device pointer, 16-byte aligned */
  int32_t rank;
  int64_t shape[KILN_TRITON_MAX_RANK];
  int64_t strides[KILN_TRITON_MAX_RANK]; /* the last is 1 */
} kiln_triton_tensor;

/* How an image expects one descriptor argument encoded (from Triton's tensordesc metadata). */
typedef struct kiln_triton_tma {
  int32_t data_type;           /* CUtensorMapDataType */
  int32_t elem_size;           /* bytes */
  int32_t swizzle;             /* CUtensorMapSwizzle */
  int32_t rank;
  int32_t block[KILN_TRITON_MAX_RANK]; /* the box, outermost first */
} kiln_triton_tma;

typedef struct kiln_triton_image {
  int32_t arch;                /* 80 for sm_80 */
  int32_t is_ptx;              /* 1: NUL-terminated PTX for the driver JIT; 0: cubin */
  const unsigned char *code;
  uint32_t shared_bytes;       /* dynamic shared memory per block */
  int32_t registers;           /* per thread, from the cubin (-1 unknown) */
  int32_t n_tma;               /* descriptor arguments, in signature order */
  const kiln_triton_tma *tma;
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
  /* per launcher argument: KILN_TRITON_ARG_VALUE or KILN_TRITON_ARG_TENSOR (NULL: all values) */
  const uint8_t *arg_kinds;
} kiln_triton_kernel;

enum { KILN_TRITON_ARG_VALUE = 0, KILN_TRITON_ARG_TENSOR = 1 };

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
 * in signature order, without the hidden scratch pointers; for a descriptor argument
 * (arg_kinds[i] == KILN_TRITON_ARG_TENSOR) the pointer is the const kiln_triton_tensor * itself.
 * stream is a CUstream/cudaStream_t. */
kiln_status kiln_triton_launch(const kiln_triton_kernel *k, int32_t variant, uint32_t grid_x,
                               uint32_t grid_y, uint32_t grid_z, void *stream, void **args,
                               int32_t n_args);

#ifdef __cplusplus
}
#endif
#endif /* KILN_TRITON_RT_H */

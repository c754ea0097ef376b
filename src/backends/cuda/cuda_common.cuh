/* src/backends/cuda/cuda_common.cuh - device helpers shared by the CUDA C kernels: element loads
 * and stores for fp32/fp16/bf16 storage (computing in fp32), activations, warp and block
 * reductions, and host-side helpers for argument checks and launch sizes.
 *
 * Loads and stores switch on the dtype at run time: one kernel serves every dtype mix, at the
 * cost of a branch per element (cheap next to the memory traffic of these ops). Not a place for
 * op-specific code.
 */
#ifndef KILN_CUDA_COMMON_CUH
#define KILN_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "backends/cuda/cuda_check.h"
#include "backends/cuda/cuda_ops.h"

/* ---- device ------------------------------------------------------------------------------ */

/* One element of a storage type as a float (int8: its code), and a float rounded to a storage type:
 * the conversions every typed kernel uses (kv_attention.cu, kv_quant.cuh, the skinny and chain
 * kernels), by overload and by type. */
static __device__ __forceinline__ float kiln_f32(float v) { return v; }
static __device__ __forceinline__ float kiln_f32(__half v) { return __half2float(v); }
static __device__ __forceinline__ float kiln_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
static __device__ __forceinline__ float kiln_f32(int8_t v) { return (float)v; }

template <typename T> static __device__ __forceinline__ T kiln_from_f32(float v);
template <> __device__ __forceinline__ float kiln_from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half kiln_from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 kiln_from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

static __device__ __forceinline__ float kiln_ld(const void *p, int dtype, int64_t i) {
  if (dtype == KILN_DTYPE_FP32) return ((const float *)p)[i];
  if (dtype == KILN_DTYPE_FP16) return __half2float(((const __half *)p)[i]);
  return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
}

static __device__ __forceinline__ void kiln_st(void *p, int dtype, int64_t i, float v) {
  if (dtype == KILN_DTYPE_FP32)
    ((float *)p)[i] = v;
  else if (dtype == KILN_DTYPE_FP16)
    ((__half *)p)[i] = __float2half_rn(v);
  else
    ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
}

/* 8 consecutive 16-bit floats (dtype fp16 or bf16) at a 16-byte aligned p, as floats; and back. */
static __device__ __forceinline__ void kiln_ld8(const void *p, int dtype, float *v) {
  union {
    uint4 u;
    __half2 h[4];
    __nv_bfloat162 b[4];
  } x;
  x.u = *(const uint4 *)p;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    float2 f = dtype == KILN_DTYPE_FP16 ? __half22float2(x.h[i]) : __bfloat1622float2(x.b[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}

static __device__ __forceinline__ void kiln_st8(void *p, int dtype, const float *v) {
  union {
    uint4 u;
    __half2 h[4];
    __nv_bfloat162 b[4];
  } x;
#pragma unroll
  for (int i = 0; i < 4; i++) {
    if (dtype == KILN_DTYPE_FP16) x.h[i] = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
    else x.b[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  }
  *(uint4 *)p = x.u;
}

/* 1 when t is fp16/bf16, its data 16-byte aligned and its element count a multiple of 8: the
 * 8-wide paths above apply. */
static inline int kiln_vec8_ok(const kiln_tensor *t) {
  return (t->dtype == KILN_DTYPE_FP16 || t->dtype == KILN_DTYPE_BF16) && (uintptr_t)t->data % 16 == 0 &&
         kiln_dims_count(&t->shape) % 8 == 0;
}

/* kiln_activation on one value; GELU is the erf form. */
static __device__ __forceinline__ float kiln_act(float v, int act) {
  switch (act) {
    case KILN_ACTIVATION_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case KILN_ACTIVATION_RELU: return v > 0.0f ? v : 0.0f;
    case KILN_ACTIVATION_SILU: return v / (1.0f + expf(-v));
    default: return v;
  }
}

static __device__ __forceinline__ float kiln_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

static __device__ __forceinline__ float kiln_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Sum (or max) over the whole block; every thread must call it and gets the result. blockDim.x
 * must be a multiple of 32. `sh` is __shared__ float[32]. */
static __device__ __forceinline__ float kiln_block_reduce(float v, float *sh, int is_max) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = is_max ? kiln_warp_max(v) : kiln_warp_sum(v);
  __syncthreads(); /* sh may still be read from a previous call */
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < n_warps ? sh[lane] : (is_max ? -INFINITY : 0.0f);
    w = is_max ? kiln_warp_max(w) : kiln_warp_sum(w);
    if (lane == 0) sh[0] = w;
  }
  __syncthreads();
  return sh[0];
}

/* ---- programmatic dependent launch (sm_90 and newer) ----------------------------------------
 * Kernels launched with kiln_launch() may start while the kernel before them in the stream is
 * still running (the decode step is hundreds of small kernels: this hides each one's launch and
 * lets it fetch its weights early). The contract, for every such kernel:
 *   1. before kiln_pdl_wait() it reads only memory no kernel writes (weights, constant caches),
 *      and writes nothing; prefetching weights into L2 (kiln_prefetch_l2) is what it is for;
 *   2. every block calls kiln_pdl_wait() (even one with nothing to do), so a kernel never
 *      completes before the one it follows, and the ordering stays transitive;
 *   3. it calls kiln_pdl_trigger() after the wait: the next kernel may then launch, at most one
 *      kernel ahead.
 * Below sm_90 (or with KILN_NO_PDL=1 in the environment) launches are ordinary and the three
 * calls are no-ops. */
static __device__ __forceinline__ void kiln_pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void kiln_pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Copies n 16-byte lines from global g to shared s with every thread of the block (asynchronous
 * copies on sm_80 and newer: all in flight at once), then waits for this thread's copies; a
 * __syncthreads() after it publishes them. Both 16-byte aligned. */
static __device__ __forceinline__ void kiln_copy_to_shared(uint4 *s, const uint4 *g, int n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((uint32_t)__cvta_generic_to_shared(s + i)), "l"(g + i)
                 : "memory");
  asm volatile("cp.async.wait_all;" ::: "memory");
#else
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = g[i];
#endif
}

/* Asks for `bytes` at p (16-byte aligned, a multiple of 16) to be brought into L2; returns at
 * once. sm_90 and newer; nothing before. */
static __device__ __forceinline__ void kiln_prefetch_l2(const void *p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (bytes) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#else
  (void)p, (void)bytes;
#endif
}

/* ---- host -------------------------------------------------------------------------------- */

#define KILN_CUDA_THREADS 256

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned int kiln_grid_1d(int64_t n) {
  int64_t blocks = (n + KILN_CUDA_THREADS - 1) / KILN_CUDA_THREADS;
  if (blocks > 65536) blocks = 65536;
  if (blocks < 1) blocks = 1;
  return (unsigned int)blocks;
}

/* Threads for one block per row of length n: a multiple of 32, at most 256. */
static inline unsigned int kiln_row_threads(int64_t n) {
  int64_t t = (n + 31) / 32 * 32;
  if (t > 256) t = 256;
  if (t < 32) t = 32;
  return (unsigned int)t;
}

/* A float tensor the kernels can read: non-NULL, fp32/fp16/bf16, contiguous, data present
 * unless empty. `what` names it in the message. */
static inline kiln_status kiln_check_float(const kiln_tensor *t, const char *op, const char *what) {
  if (!t) return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s is NULL; pass a tensor", op, what);
  if (!kiln_dtype_is_float(t->dtype))
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %s has dtype %s; use fp32, fp16 or bf16", op,
                      what, kiln_dtype_name(t->dtype));
  if (t->shape.rank < 0 || t->shape.rank > KILN_MAX_DIMS)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s has rank %d; use 0..%d", op, what,
                      (int)t->shape.rank, KILN_MAX_DIMS);
  for (int32_t i = 0; i < t->shape.rank; i++)
    if (t->shape.d[i] < 0)
      return kiln_error(KILN_ERR_SHAPE, "%s: %s has a negative dimension", op, what);
  if (!kiln_tensor_is_contiguous(t))
    return kiln_error(KILN_ERR_UNSUPPORTED, "%s: %s is not contiguous; copy it first", op, what);
  if (!t->data && kiln_dims_count(&t->shape) > 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: %s has no data pointer", op, what);
  return KILN_OK;
}

static inline cudaStream_t kiln_stream(void *stream) { return (cudaStream_t)stream; }

#ifdef __cplusplus
extern "C" {
#endif
/* Whether launches on the current device use programmatic dependent launch (compute capability
 * 9.0 or newer, and KILN_NO_PDL unset or 0). context.c. */
int kiln_cuda_pdl_enabled(void);
#ifdef __cplusplus
}

/* Launches kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch
 * where kiln_cuda_pdl_enabled() (see the contract above), else as an ordinary one; with a
 * cluster other than (1, 1, 1), in thread block clusters of that shape (sm_90 and newer: the
 * caller checks). */
template <typename... KArgs, typename... Args>
static inline cudaError_t kiln_launch_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                                              cudaStream_t st, dim3 cluster, Args... args) {
  cudaLaunchConfig_t cfg = {};
  cudaLaunchAttribute attr[2];
  int n = 0;
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  if (kiln_cuda_pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster.x * cluster.y * cluster.z > 1) {
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = cluster.x;
    attr[n].val.clusterDim.y = cluster.y;
    attr[n++].val.clusterDim.z = cluster.z;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  return cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...);
}

template <typename... KArgs, typename... Args>
static inline cudaError_t kiln_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                      Args... args) {
  return kiln_launch_cluster(kernel, grid, block, smem, st, dim3(1, 1, 1), args...);
}
#endif

#endif /* KILN_CUDA_COMMON_CUH */

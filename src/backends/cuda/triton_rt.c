/* src/backends/cuda/triton_rt.c - loads and launches kiln's ahead-of-time Triton kernels with
 * the CUDA driver API (see triton_rt.h for code selection, shared memory, devices and threads).
 *
 * What it is not: the generated code. tools/triton_aot.py writes the kernel tables and typed
 * launchers; this file is the hand-written, reviewed part every launcher goes through.
 * Compiled whenever the CUDA backend is (it needs no generated file).
 */
#include "backends/cuda/triton_rt.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/driver_api.h"
#include "core/error.h"

#define TRITON_MAX_PARAMS 64         /* kernel parameters, descriptors expanded, + the two scratch pointers */
#define TRITON_MAX_TMA 8             /* descriptor arguments per kernel */
#define TRITON_DEFAULT_SHARED 49152u /* bytes a kernel may use without opting in */

typedef struct loaded_module {
  const kiln_triton_kernel *kernel;
  int32_t variant;
  CUcontext ctx;
  CUmodule module;
  CUfunction function;
  uint32_t shared_bytes;
  uint32_t threads;
  const kiln_triton_image *image;
} loaded_module;

/* The module table: every (kernel, variant, context) loaded, guarded by table_lock. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static loaded_module *table = NULL;
static size_t table_len = 0, table_cap = 0;

static const char *cu_name(CUresult r) {
  const char *s = NULL;
  if (!kiln_cu() || kiln_cu()->cuGetErrorName(r, &s) != CUDA_SUCCESS || !s) return "unknown CUDA error";
  return s;
}

static kiln_status variant_in_range(const kiln_triton_kernel *k, int32_t variant) {
  if (!k) return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel is NULL");
  /* n_variants is an element count (generated as sizeof(array) / sizeof(array[0])). */
  if (variant < 0 || variant >= k->n_variants)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "Triton kernel %s has %d variants; variant %d does not exist (use 0..%d)",
                      k->name, k->n_variants, variant, k->n_variants - 1);
  return KILN_OK;
}

/* The calling thread's context and its device; makes the runtime's primary context current when
 * the thread has none. */
static kiln_status current_context(CUcontext *ctx, CUdevice *dev) {
  CUcontext c = NULL;
  if (!kiln_cu())
    return kiln_error(KILN_ERR_NO_DEVICE,
                      "the NVIDIA driver (libcuda.so.1) is not installed, so kiln's Triton kernels cannot run; "
                      "install the driver or use the CPU backend (--target cpu)");
  CUresult r = kiln_cu()->cuCtxGetCurrent(&c);
  if (r == CUDA_ERROR_NOT_INITIALIZED || (r == CUDA_SUCCESS && c == NULL)) {
    cudaError_t e = cudaFree(NULL); /* initializes the primary context of the current device */
    if (e != cudaSuccess)
      return kiln_error(KILN_ERR_NO_DEVICE,
                        "no CUDA context and none could be made (%s); check the GPU and driver "
                        "(nvidia-smi) or call cudaSetDevice() first", cudaGetErrorString(e));
    r = kiln_cu()->cuCtxGetCurrent(&c);
  }
  if (r != CUDA_SUCCESS || c == NULL)
    return kiln_error(KILN_ERR_NO_DEVICE, "no current CUDA context (%s); call cudaSetDevice()",
                      r != CUDA_SUCCESS ? cu_name(r) : "none");
  r = kiln_cu()->cuCtxGetDevice(dev);
  if (r != CUDA_SUCCESS)
    return kiln_error(KILN_ERR_CUDA, "cuCtxGetDevice failed: %s", cu_name(r));
  *ctx = c;
  return KILN_OK;
}

typedef struct device_limits {
  int cc;            /* 90 for sm_90 */
  int shared_optin;  /* bytes per block */
  int ordinal;
} device_limits;

static kiln_status query_device(CUdevice dev, device_limits *out) {
  int major = 0, minor = 0, optin = 0;
  CUresult r = kiln_cu()->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  if (r == CUDA_SUCCESS)
    r = kiln_cu()->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  if (r == CUDA_SUCCESS)
    r = kiln_cu()->cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
  if (r != CUDA_SUCCESS)
    return kiln_error(KILN_ERR_CUDA, "cuDeviceGetAttribute failed: %s", cu_name(r));
  out->cc = major * 10 + minor;
  out->shared_optin = optin;
  out->ordinal = (int)dev;
  return KILN_OK;
}

/* The image to load on a device of compute capability `cc` (see triton_rt.h), or NULL. */
static const kiln_triton_image *select_image(const kiln_triton_variant *v, int cc) {
  const kiln_triton_image *best = NULL;
  for (int32_t i = 0; i < v->n_images; i++) {
    const kiln_triton_image *im = &v->images[i];
    if (im->is_ptx || im->arch / 10 != cc / 10 || im->arch > cc) continue;
    if (!best || im->arch > best->arch) best = im;
  }
  if (best) return best;
  for (int32_t i = 0; i < v->n_images; i++) {
    const kiln_triton_image *im = &v->images[i];
    if (!im->is_ptx || im->arch > cc) continue;
    if (!best || im->arch > best->arch) best = im;
  }
  return best;
}

static kiln_status no_code_error(const kiln_triton_kernel *k, const kiln_triton_variant *v,
                                 const device_limits *d) {
  char archs[128] = "";
  size_t used = 0;
  for (int32_t i = 0; i < v->n_images && used + 16 < sizeof archs; i++) {
    if (v->images[i].is_ptx) continue;
    int n = snprintf(archs + used, sizeof archs - used, "%ssm_%d", used ? ", " : "",
                     (int)v->images[i].arch);
    if (n > 0) used += (size_t)n;
  }
  return kiln_error(KILN_ERR_WRONG_DEVICE,
                    "Triton kernel %s has no code for device %d (sm_%d); kiln was built for %s: "
                    "rebuild with -DKILN_CUDA_ARCHS=%d", k->name, d->ordinal, d->cc, archs, d->cc);
}

static kiln_status check_fits(const kiln_triton_kernel *k, int32_t variant,
                              const kiln_triton_image *im, const device_limits *d) {
  if (im->shared_bytes > (uint32_t)d->shared_optin)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "Triton kernel %s variant %d (%s) needs %u bytes of shared memory per "
                      "block but device %d (sm_%d) has %d; choose another variant (tactic)",
                      k->name, variant, k->variants[variant].desc, im->shared_bytes, d->ordinal,
                      d->cc, d->shared_optin);
  return KILN_OK;
}

kiln_status kiln_triton_check(const kiln_triton_kernel *k, int32_t variant, size_t *need,
                              size_t *avail) {
  KILN_TRY(variant_in_range(k, variant));
  CUcontext ctx;
  CUdevice dev;
  device_limits d;
  KILN_TRY(current_context(&ctx, &dev));
  KILN_TRY(query_device(dev, &d));
  const kiln_triton_image *im = select_image(&k->variants[variant], d.cc);
  if (!im) return no_code_error(k, &k->variants[variant], &d);
  if (need) *need = im->shared_bytes;
  if (avail) *avail = (size_t)d.shared_optin;
  return check_fits(k, variant, im, &d);
}

static loaded_module *find_locked(const kiln_triton_kernel *k, int32_t variant, CUcontext ctx) {
  for (size_t i = 0; i < table_len; i++)
    if (table[i].kernel == k && table[i].variant == variant && table[i].ctx == ctx)
      return &table[i];
  return NULL;
}

static kiln_status load_locked(const kiln_triton_kernel *k, int32_t variant, CUcontext ctx,
                               CUdevice dev, loaded_module **out) {
  device_limits d;
  KILN_TRY(query_device(dev, &d));
  const kiln_triton_variant *v = &k->variants[variant];
  const kiln_triton_image *im = select_image(v, d.cc);
  if (!im) return no_code_error(k, v, &d);
  KILN_TRY(check_fits(k, variant, im, &d));
  if (table_len == table_cap) {
    size_t cap = table_cap ? table_cap * 2 : 16;
    loaded_module *grown = realloc(table, cap * sizeof *grown);
    if (!grown) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory growing the module table");
    table = grown;
    table_cap = cap;
  }
  CUmodule mod = NULL;
  CUfunction fn = NULL;
  CUresult r = kiln_cu()->cuModuleLoadData(&mod, im->code);
  if (r != CUDA_SUCCESS)
    return kiln_error(KILN_ERR_CUDA, "loading Triton kernel %s variant %d (%s sm_%d) on device %d "
                      "failed: %s%s", k->name, variant, im->is_ptx ? "PTX" : "cubin",
                      (int)im->arch, d.ordinal, cu_name(r),
                      im->is_ptx ? "; the driver may be older than the PTX: update it" : "");
  r = kiln_cu()->cuModuleGetFunction(&fn, mod, k->entry);
  if (r == CUDA_SUCCESS && im->shared_bytes > TRITON_DEFAULT_SHARED)
    r = kiln_cu()->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                           (int)im->shared_bytes);
  if (r != CUDA_SUCCESS) {
    kiln_cu()->cuModuleUnload(mod);
    return kiln_error(KILN_ERR_CUDA, "preparing Triton kernel %s variant %d (entry %s) failed: %s",
                      k->name, variant, k->entry, cu_name(r));
  }
  loaded_module *m = &table[table_len++];
  m->kernel = k;
  m->variant = variant;
  m->ctx = ctx;
  m->module = mod;
  m->function = fn;
  m->shared_bytes = im->shared_bytes;
  m->threads = (uint32_t)v->num_warps * 32u;
  m->image = im;
  *out = m;
  return KILN_OK;
}

/* Finds or loads; copies the entry out so the caller needs no lock afterwards. */
static kiln_status acquire(const kiln_triton_kernel *k, int32_t variant, loaded_module *out) {
  KILN_TRY(variant_in_range(k, variant));
  CUcontext ctx;
  CUdevice dev;
  KILN_TRY(current_context(&ctx, &dev));
  pthread_mutex_lock(&table_lock);
  loaded_module *m = find_locked(k, variant, ctx);
  kiln_status s = KILN_OK;
  if (!m) s = load_locked(k, variant, ctx, dev, &m);
  if (s == KILN_OK) *out = *m;
  pthread_mutex_unlock(&table_lock);
  return s;
}

kiln_status kiln_triton_load(const kiln_triton_kernel *k, int32_t variant) {
  loaded_module m;
  return acquire(k, variant, &m);
}

kiln_status kiln_triton_unload(const kiln_triton_kernel *k) {
  if (!k) return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel is NULL");
  CUcontext ctx = NULL;
  if (!kiln_cu() || kiln_cu()->cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == NULL) return KILN_OK; /* nothing loaded */
  kiln_status s = KILN_OK;
  pthread_mutex_lock(&table_lock);
  size_t keep = 0;
  for (size_t i = 0; i < table_len; i++) {
    if (table[i].kernel == k && table[i].ctx == ctx) {
      CUresult r = kiln_cu()->cuModuleUnload(table[i].module);
      if (r != CUDA_SUCCESS && s == KILN_OK)
        s = kiln_error(KILN_ERR_CUDA, "unloading Triton kernel %s variant %d failed: %s", k->name,
                       table[i].variant, cu_name(r));
      continue;
    }
    table[keep++] = table[i];
  }
  table_len = keep;
  pthread_mutex_unlock(&table_lock);
  return s;
}

int32_t kiln_triton_loaded_count(const kiln_triton_kernel *k) {
  int32_t n = 0;
  pthread_mutex_lock(&table_lock);
  for (size_t i = 0; i < table_len; i++)
    if (table[i].kernel == k) n++;
  pthread_mutex_unlock(&table_lock);
  return n;
}

int64_t kiln_triton_constexpr(const kiln_triton_kernel *k, int32_t variant, const char *name,
                              int64_t fallback) {
  if (!k || !name || variant < 0 || variant >= k->n_variants) return fallback;
  const kiln_triton_variant *v = &k->variants[variant];
  for (int32_t i = 0; i < v->n_constexprs; i++)
    if (strcmp(v->constexpr_names[i], name) == 0) return v->constexpr_values[i];
  return fallback;
}

/* Encodes argument `arg` (a descriptor) as the image's TMA map `t` expects; see triton_rt.h. */
static kiln_status encode_tensor(const kiln_triton_kernel *k, int32_t arg, const kiln_triton_tensor *x,
                                 const kiln_triton_tma *t, CUtensorMap *map) {
  if (!x || !x->base)
    return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel %s: tensor argument %d is NULL", k->name, arg);
  if (x->rank != t->rank || t->rank < 1 || t->rank > KILN_TRITON_MAX_RANK)
    return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel %s: tensor argument %d has rank %d, the kernel takes %d",
                      k->name, arg, x->rank, t->rank);
  if ((uintptr_t)x->base % 16u != 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel %s: tensor argument %d: base %p is not 16-byte aligned",
                      k->name, arg, x->base);
  const int32_t r = t->rank;
  cuuint64_t dims[KILN_TRITON_MAX_RANK], strides[KILN_TRITON_MAX_RANK];
  cuuint32_t box[KILN_TRITON_MAX_RANK], estr[KILN_TRITON_MAX_RANK];
  for (int32_t i = 0; i < r; i++) { /* the driver counts dimensions innermost first */
    const int32_t d = r - 1 - i;
    if (x->shape[d] < 1 || x->shape[d] > 2147483647)
      return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel %s: tensor argument %d: dim %d is %lld, not in [1, 2^31)",
                        k->name, arg, d, (long long)x->shape[d]);
    dims[i] = (cuuint64_t)x->shape[d];
    box[i] = (cuuint32_t)t->block[d];
    estr[i] = 1;
    if (i == 0) {
      if (x->strides[d] != 1)
        return kiln_error(KILN_ERR_INVALID_ARG,
                          "Triton kernel %s: tensor argument %d: the last dim must be contiguous (stride %lld)",
                          k->name, arg, (long long)x->strides[d]);
      continue;
    }
    const int64_t bytes = x->strides[d] * (int64_t)t->elem_size;
    if (x->strides[d] < 1 || bytes % 16 != 0 || bytes >= ((int64_t)1 << 40))
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "Triton kernel %s: tensor argument %d: stride %lld of dim %d (%lld bytes) must be a positive "
                        "multiple of 16 bytes below 2^40", k->name, arg, (long long)x->strides[d], d, (long long)bytes);
    strides[i - 1] = (cuuint64_t)bytes;
  }
  if (!kiln_cu()->cuTensorMapEncodeTiled)
    return kiln_error(KILN_ERR_UNSUPPORTED, "Triton kernel %s takes TMA descriptors, which this NVIDIA driver cannot "
                      "encode (no cuTensorMapEncodeTiled); update the driver", k->name);
  CUresult res = kiln_cu()->cuTensorMapEncodeTiled(
      map, (CUtensorMapDataType)t->data_type, (cuuint32_t)r, x->base, dims, strides, box, estr,
      CU_TENSOR_MAP_INTERLEAVE_NONE, (CUtensorMapSwizzle)t->swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (res != CUDA_SUCCESS)
    return kiln_error(KILN_ERR_INVALID_ARG, "Triton kernel %s: tensor argument %d (rank %d, shape %lld x ... x %lld) "
                      "cannot be a TMA descriptor: %s", k->name, arg, r, (long long)x->shape[0],
                      (long long)x->shape[r - 1], cu_name(res));
  return KILN_OK;
}

static kiln_status too_many_params(const kiln_triton_kernel *k) {
  return kiln_error(KILN_ERR_INTERNAL, "Triton kernel %s has more than %d parameters", k->name, TRITON_MAX_PARAMS - 2);
}

kiln_status kiln_triton_launch(const kiln_triton_kernel *k, int32_t variant, uint32_t grid_x,
                               uint32_t grid_y, uint32_t grid_z, void *stream, void **args,
                               int32_t n_args) {
  KILN_TRY(variant_in_range(k, variant));
  if (n_args != k->n_params || n_args + 2 > TRITON_MAX_PARAMS || (n_args > 0 && !args))
    return kiln_error(KILN_ERR_INTERNAL, "Triton kernel %s takes %d arguments, launcher passed %d",
                      k->name, k->n_params, n_args);
  if (grid_x == 0 || grid_y == 0 || grid_z == 0) return KILN_OK; /* nothing to do */
  if (grid_x > 2147483647u || grid_y > 65535u || grid_z > 65535u)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "Triton kernel %s: grid (%u, %u, %u) exceeds the CUDA limits "
                      "(2^31-1, 65535, 65535); split the work", k->name, grid_x, grid_y, grid_z);
  loaded_module m;
  KILN_TRY(acquire(k, variant, &m));
  void *params[TRITON_MAX_PARAMS];
  CUtensorMap maps[TRITON_MAX_TMA]; /* the type carries the alignment the driver needs */
  int32_t dims32[TRITON_MAX_TMA][KILN_TRITON_MAX_RANK];
  CUdeviceptr global_scratch = 0, profile_scratch = 0; /* the generator refused scratch users */
  int32_t np = 0, nt = 0;
  for (int32_t i = 0; i < n_args; i++) {
    if (!k->arg_kinds || k->arg_kinds[i] != KILN_TRITON_ARG_TENSOR) {
      if (np + 3 > TRITON_MAX_PARAMS) return too_many_params(k);
      params[np++] = args[i];
      continue;
    }
    /* a descriptor: the map, then the shape (int32) and strides (int64), outermost first */
    const kiln_triton_tensor *x = args[i];
    if (nt >= m.image->n_tma || nt >= TRITON_MAX_TMA)
      return kiln_error(KILN_ERR_INTERNAL, "Triton kernel %s variant %d: tensor argument %d has no TMA encoding "
                        "in the loaded image", k->name, variant, i);
    const kiln_triton_tma *t = &m.image->tma[nt];
    KILN_TRY(encode_tensor(k, i, x, t, &maps[nt]));
    if (np + 1 + 2 * t->rank + 2 > TRITON_MAX_PARAMS) return too_many_params(k);
    params[np++] = &maps[nt];
    for (int32_t d = 0; d < t->rank; d++) dims32[nt][d] = (int32_t)x->shape[d], params[np++] = &dims32[nt][d];
    for (int32_t d = 0; d < t->rank; d++) params[np++] = (void *)&x->strides[d];
    nt++;
  }
  params[np] = &global_scratch;
  params[np + 1] = &profile_scratch;
  CUresult r = kiln_cu()->cuLaunchKernel(m.function, grid_x, grid_y, grid_z, m.threads, 1, 1, m.shared_bytes,
                              (CUstream)stream, params, NULL);
  if (r != CUDA_SUCCESS)
    return kiln_error(KILN_ERR_CUDA, "launching Triton kernel %s variant %d (grid %u x %u x %u) "
                      "failed: %s", k->name, variant, grid_x, grid_y, grid_z, cu_name(r));
  return KILN_OK;
}

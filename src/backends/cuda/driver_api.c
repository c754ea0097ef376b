/* src/backends/cuda/driver_api.c - dlopen()s libcuda.so.1 once and resolves the driver API
 * functions kiln uses (see driver_api.h for why kiln does not link it). */
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "backends/cuda/driver_api.h"

static kiln_cu_api api;
static int api_ok;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int resolve(void *lib, const char *name, void *slot) {
  void *sym = dlsym(lib, name);
  memcpy(slot, &sym, sizeof sym); /* object pointer -> function pointer without a cast warning */
  return sym != NULL;
}

static void load(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return;
  int ok = resolve(lib, "cuDeviceGetAttribute", &api.cuDeviceGetAttribute) &&
           resolve(lib, "cuCtxGetCurrent", &api.cuCtxGetCurrent) && resolve(lib, "cuCtxGetDevice", &api.cuCtxGetDevice) &&
           resolve(lib, "cuModuleLoadData", &api.cuModuleLoadData) && resolve(lib, "cuModuleUnload", &api.cuModuleUnload) &&
           resolve(lib, "cuModuleGetFunction", &api.cuModuleGetFunction) &&
           resolve(lib, "cuFuncSetAttribute", &api.cuFuncSetAttribute) &&
           resolve(lib, "cuLaunchKernel", &api.cuLaunchKernel) && resolve(lib, "cuGetErrorName", &api.cuGetErrorName) &&
           resolve(lib, "cuGetErrorString", &api.cuGetErrorString);
  if (ok) resolve(lib, "cuTensorMapEncodeTiled", &api.cuTensorMapEncodeTiled); /* optional */
  if (ok) api_ok = 1; /* the library stays loaded for the process: the driver is never unloaded */
  else dlclose(lib);
}

const kiln_cu_api *kiln_cu(void) {
  pthread_once(&once, load);
  return api_ok ? &api : NULL;
}

/* bench/bench_cuda.h - what the GPU benchmark programs in bench/ share beyond bench_util.h (include
 * that first, with BENCH_NAME defined): a device copy of host bytes. For builds with CUDA only.
 */
#ifndef KILN_BENCH_CUDA_H
#define KILN_BENCH_CUDA_H

#include "backends/cuda/cuda_ops.h"
#include "bench_util.h"

/* A new device buffer holding `bytes` from host (at least 1 byte allocated); exits on failure. */
static inline void *bench_upload(const void *host, size_t bytes) {
  void *d = NULL;
  REQUIRE(kiln_cuda_malloc(&d, bytes ? bytes : 1));
  REQUIRE(kiln_cuda_memcpy_h2d(d, host, bytes, NULL));
  return d;
}

#endif /* KILN_BENCH_CUDA_H */

/* tests/common/test_inputs.h - random inputs for the engine tests' networks (test_net.h,
 * test_wq_net.h): x [b, s, d] uniform in [-1, 1) converted to dtype dt, and token ids [b, s]
 * uniform in [0, v). Test code: the caller frees both buffers.
 */
#ifndef KILN_TEST_INPUTS_H
#define KILN_TEST_INPUTS_H

#include <stdlib.h>

#include "check.h"
#include "kiln/dtype.h"

static inline void test_random_inputs(int64_t b, int64_t s, int64_t d, int64_t v, uint64_t seed, kiln_dtype dt,
                                      void **x_out, int32_t **ids_out) {
  check_rng r = {seed};
  int64_t nx = b * s * d, ni = b * s;
  float *x = malloc((size_t)nx * 4 + 4);
  void *xc = malloc((size_t)nx * 4 + 4);
  int32_t *ids = malloc((size_t)ni * 4 + 4);
  check_fill(&r, x, nx, -1, 1);
  for (int64_t i = 0; i < ni; i++) ids[i] = (int32_t)check_uniform(&r, 0, (float)v - 0.01f);
  kiln_convert_floats(xc, dt, x, KILN_DTYPE_FP32, nx);
  free(x);
  *x_out = xc;
  *ids_out = ids;
}

#endif

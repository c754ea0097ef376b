/* tests/fuzz/fuzz_npy.c - fuzz target for the .npy reader (from memory). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kiln/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_npy a;
  kiln_status s = kiln_npy_read_memory(data, size, "fuzz.npy", &a);
  if (s == KILN_ERR_OUT_OF_MEMORY) abort();
  if (s != KILN_OK) return 0;
  if (a.bytes > size || kiln_dtype_bytes(a.dtype, kiln_dims_count(&a.dims)) != a.bytes) abort();
  unsigned sum = 0;
  for (size_t i = 0; i < a.bytes; i++) sum += ((const uint8_t *)a.data)[i];
  (void)sum;
  kiln_npy_free(&a);
  return 0;
}

static void add_npy(kiln_fuzz_add_fn add, void *ud, const char *dict, size_t data_bytes) {
  uint8_t b[256] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  size_t hl = strlen(dict);
  if (10 + hl + data_bytes > sizeof b) return;
  b[8] = (uint8_t)hl;
  memcpy(b + 10, dict, hl);
  for (size_t i = 0; i < data_bytes; i++) b[10 + hl + i] = (uint8_t)(i * 13 + 5);
  add(b, 10 + hl + data_bytes, ud);
}

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *ud) {
  add_npy(add, ud, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n", 24);
  add_npy(add, ud, "{'descr': '|i1', 'fortran_order': False, 'shape': (5,), }\n", 5);
  add_npy(add, ud, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n", 8);
  add_npy(add, ud, "{\"descr\": \"<f2\", \"fortran_order\": True, \"shape\": (1, 1, 2L)}\n", 4);
}

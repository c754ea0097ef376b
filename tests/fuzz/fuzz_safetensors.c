/* tests/fuzz/fuzz_safetensors.c - fuzz target for the safetensors reader (from memory): every
 * tensor of an accepted file is found by name and its bytes are read, so a range outside the
 * input shows up under ASan. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "fuzz.h"
#include "kiln/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_safetensors *st = NULL;
  kiln_status s = kiln_safetensors_open_memory(data, size, "fuzz.safetensors", &st);
  if (s == KILN_ERR_OUT_OF_MEMORY) abort();
  if (s != KILN_OK) return 0;
  unsigned sum = 0;
  for (int64_t i = 0; i < kiln_safetensors_count(st); i++) {
    kiln_safetensors_tensor t, u;
    if (kiln_safetensors_get(st, i, &t) != KILN_OK) abort();
    if (kiln_safetensors_find(st, t.name, &u) != KILN_OK || u.data != t.data) abort();
    if ((const uint8_t *)t.data < data || (const uint8_t *)t.data + t.bytes > data + size) abort();
    for (size_t k = 0; k < t.bytes; k++) sum += ((const uint8_t *)t.data)[k];
  }
  (void)sum;
  (void)kiln_safetensors_metadata(st, "format");
  kiln_safetensors_close(st);
  return 0;
}

static void add_json(kiln_fuzz_add_fn add, void *ud, const char *json, size_t data_bytes) {
  size_t jl = strlen(json), n = 8 + jl + data_bytes;
  uint8_t *b = calloc(1, n);
  if (!b) return;
  kiln_store_u64(b, jl);
  memcpy(b + 8, json, jl);
  for (size_t i = 0; i < data_bytes; i++) b[8 + jl + i] = (uint8_t)(i * 37 + 1);
  add(b, n, ud);
  free(b);
}

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *ud) {
  add_json(add, ud,
           "{\"__metadata__\":{\"format\":\"pt\"},"
           "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
           "\"a.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
           "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[30,32]},"
           "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[32,40]},"
           "\"d\":{\"dtype\":\"I8\",\"shape\":[0,4],\"data_offsets\":[40,40]},"
           "\"e\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[40,44]}}",
           44);
  add_json(add, ud, "{}", 0);
}

/* tests/fuzz/fuzz_timing_cache.c - fuzz target for the timing-cache loader: every input must
 * load (possibly as an empty cache); the input is also loaded with its trailing CRC repaired so
 * that mutations reach the entry parser. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "builder/timing_cache.h"
#include "core/bytes.h"
#include "fuzz.h"

static kiln_timing_key fuzz_key(void) {
  kiln_timing_key k;
  memset(&k, 0, sizeof k);
  strcpy(k.gpu_name, "fuzz GPU");
  k.cc_major = 9;
  strcpy(k.kiln_version, "0.1.0");
  return k;
}

static void load_one(const uint8_t *data, size_t size) {
  kiln_timing_key k = fuzz_key();
  kiln_timing_cache *c = NULL;
  kiln_status s = kiln_timing_cache_load_memory(data, size, &k, &c);
  if (s != KILN_OK || !c) abort(); /* a cache never fails to load */
  for (int32_t i = 0; i < kiln_timing_cache_count(c); i++) (void)kiln_timing_cache_lookup(c, "matmul", NULL);
  kiln_timing_cache_destroy(c);
}

/* Damaged caches log a warning each; millions of them would drown the output. */
static void quiet(kiln_log_level level, const char *message, void *user_data) {
  (void)level;
  (void)message;
  (void)user_data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kiln_log_set_hook(quiet, NULL);
  load_one(data, size);
  if (size >= 16) {
    uint8_t *b = malloc(size);
    if (!b) return 0;
    memcpy(b, data, size);
    kiln_store_u32(b + size - 4, (uint32_t)crc32_z(0, b, size - 4));
    load_one(b, size);
    free(b);
  }
  return 0;
}

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *ud) {
  kiln_timing_key k = fuzz_key();
  kiln_timing_cache *c = NULL;
  if (kiln_timing_cache_create(&k, &c) != KILN_OK) return;
  for (int i = 0; i < 4; i++) {
    kiln_tactic t;
    memset(&t, 0, sizeof t);
    t.kind = i % 4;
    t.index = i;
    t.time_ms = 0.5f * (float)i;
    t.data[i] = 0xAA;
    char key[64];
    strcpy(key, i % 2 ? "matmul|m=1|n=2|k=3|fp16" : "attention|s=1500|d=64");
    key[0] = (char)('a' + i);
    kiln_timing_cache_insert(c, key, &t);
  }
  void *img = NULL;
  size_t n = 0;
  if (kiln_timing_cache_serialize(c, &img, &n) == KILN_OK) add(img, n, ud);
  free(img);
  kiln_timing_cache_destroy(c);
}

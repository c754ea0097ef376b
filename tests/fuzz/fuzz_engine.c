/* tests/fuzz/fuzz_engine.c - fuzz target for kiln_engine_parse(): each input is parsed as is
 * (borrowing and copying weights) and once more with its sizes and checksums repaired, so that
 * mutations reach the metadata parser and the graph checks instead of stopping at a checksum.
 * A parsed graph must serialize again and parse back.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/bytes.h"
#include "engine_fixture.h"
#include "fuzz.h"
#include "runtime/engine_format.h"

static void parse_one(const uint8_t *data, size_t size, int borrow) {
  kiln_graph g;
  kiln_engine_meta m;
  kiln_status s = kiln_engine_parse(data, size, borrow, &g, &m);
  if (s == KILN_ERR_OUT_OF_MEMORY) abort();
  if (s != KILN_OK) return;
  /* Touch every constant's bytes so a bad range shows up under ASan. */
  unsigned sum = 0;
  for (int32_t i = 0; i < g.n_tensors; i++)
    for (size_t k = 0; g.tensors[i].data && k < g.tensors[i].bytes; k++) sum += ((const uint8_t *)g.tensors[i].data)[k];
  (void)sum;
  void *img = NULL;
  size_t n = 0;
  if (kiln_engine_serialize(&g, &m, &img, &n) != KILN_OK) abort(); /* parse accepted what write refuses */
  kiln_graph g2;
  kiln_engine_meta m2;
  if (kiln_engine_parse(img, n, 0, &g2, &m2) != KILN_OK) abort();
  if (g2.n_tensors != g.n_tensors || g2.n_layers != g.n_layers) abort();
  kiln_graph_free(&g2);
  kiln_engine_meta_free(&m2);
  free(img);
  kiln_graph_free(&g);
  kiln_engine_meta_free(&m);
}

/* Make the header agree with the bytes present: file size, section sizes, checksums. */
static void repair(uint8_t *b, size_t size) {
  if (size < KILN_ENGINE_HEADER_BYTES) return;
  uint64_t meta_size = kiln_load_u64(b + 48), w_off = kiln_load_u64(b + 56);
  if (meta_size > size - KILN_ENGINE_HEADER_BYTES) meta_size = size - KILN_ENGINE_HEADER_BYTES;
  if (w_off > size || w_off < KILN_ENGINE_HEADER_BYTES + meta_size) w_off = size;
  kiln_store_u64(b + 40, KILN_ENGINE_HEADER_BYTES);
  kiln_store_u64(b + 48, meta_size);
  kiln_store_u64(b + 56, w_off);
  kiln_store_u64(b + 64, size - w_off);
  kiln_store_u64(b + 72, size);
  kiln_store_u32(b + 80, (uint32_t)crc32_z(0, b + KILN_ENGINE_HEADER_BYTES, (size_t)meta_size));
  kiln_store_u32(b + 84, (uint32_t)crc32_z(0, b + w_off, size - (size_t)w_off));
  kiln_store_u32(b + 124, (uint32_t)crc32_z(0, b, 124));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  parse_one(data, size, 0);
  parse_one(data, size, 1);
  if (size >= KILN_ENGINE_HEADER_BYTES) {
    uint8_t *b = malloc(size);
    if (!b) return 0;
    memcpy(b, data, size);
    repair(b, size);
    parse_one(b, size, 1);
    free(b);
  }
  return 0;
}

void kiln_fuzz_seeds(kiln_fuzz_add_fn add, void *user_data) {
  for (int variant = 0; variant < 2; variant++) {
    kiln_graph g;
    kiln_engine_meta m;
    kiln_graph_init(&g);
    if (fixture_graph(&g, 7 + (uint64_t)variant) == 0) {
      fixture_meta(&m);
      if (variant) {
        free(m.kernel_manifest);
        m.kernel_manifest = NULL;
        m.target = g.target = KILN_TARGET_CPU;
      }
      void *img = NULL;
      size_t n = 0;
      if (kiln_engine_serialize(&g, &m, &img, &n) == KILN_OK) add(img, n, user_data);
      free(img);
      kiln_engine_meta_free(&m);
    }
    kiln_graph_free(&g);
  }
  /* An empty graph. */
  kiln_graph g;
  kiln_engine_meta m;
  kiln_graph_init(&g);
  memset(&m, 0, sizeof m);
  void *img = NULL;
  size_t n = 0;
  if (kiln_engine_serialize(&g, &m, &img, &n) == KILN_OK) add(img, n, user_data);
  free(img);
}

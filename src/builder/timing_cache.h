/* src/builder/timing_cache.h - the builder's timing cache: which tactic won for a layer
 * configuration on one GPU + software stack, so later builds skip the timing.
 *
 * File format (all little-endian; strings are u32 length + bytes, no NUL):
 *   u8[8] magic "KILNTC01", u32 version (KILN_TIMING_CACHE_VERSION),
 *   key: str gpu_name, i32 cc_major, i32 cc_minor, i32 driver_version,
 *        i32 cuda_runtime_version, str kiln_version,
 *   u32 entry count, then per entry (sorted by key string):
 *        str key (e.g. "matmul|m=1500|n=384|k=384|fp16|bias|gelu"), tactic: i32 kind,
 *        i32 index, f32 time_ms, u64 workspace, u8[64] data,
 *   u32 CRC-32 (zlib) of every byte before it.
 *
 * A cache never fails a build: a missing file is an empty cache; a file written for another
 * GPU/driver/CUDA/kiln (a different key) is an empty cache plus an info log line saying which
 * part differs; a damaged or foreign file is an empty cache plus a warning. Saving writes a
 * temporary file next to the target and renames it over, so readers never see half a file.
 *
 * Not thread-safe: one build uses one cache object.
 */
#ifndef KILN_BUILDER_TIMING_CACHE_H
#define KILN_BUILDER_TIMING_CACHE_H

#include <stdint.h>

#include "kiln/status.h"
#include "net/graph.h"

#define KILN_TIMING_CACHE_MAGIC "KILNTC01"
#define KILN_TIMING_CACHE_VERSION 1u

typedef struct kiln_timing_key {
  char gpu_name[128];
  int32_t cc_major, cc_minor;
  int32_t driver_version;       /* cudaDriverGetVersion */
  int32_t cuda_runtime_version; /* cudaRuntimeGetVersion */
  char kiln_version[32];
} kiln_timing_key;

typedef struct kiln_timing_cache kiln_timing_cache;

/* An empty cache for `key`. */
kiln_status kiln_timing_cache_create(const kiln_timing_key *key, kiln_timing_cache **out);
/* Load `path` for `key` (see the rules above). Fails only for bad arguments or out of memory. */
kiln_status kiln_timing_cache_load(const char *path, const kiln_timing_key *key,
                                   kiln_timing_cache **out);
/* Parse an image in memory with the same rules (for tests and fuzzing). */
kiln_status kiln_timing_cache_load_memory(const void *data, size_t size, const kiln_timing_key *key,
                                          kiln_timing_cache **out);
void kiln_timing_cache_destroy(kiln_timing_cache *cache);

/* 1 and *tactic filled when `key` is cached, else 0. */
int kiln_timing_cache_lookup(const kiln_timing_cache *cache, const char *key, kiln_tactic *tactic);
/* Add or replace an entry. */
kiln_status kiln_timing_cache_insert(kiln_timing_cache *cache, const char *key,
                                     const kiln_tactic *tactic);
int32_t kiln_timing_cache_count(const kiln_timing_cache *cache);
/* Write to path (temporary file + rename). */
kiln_status kiln_timing_cache_save(const kiln_timing_cache *cache, const char *path);
/* The serialized image (malloc()ed), as save writes it. */
kiln_status kiln_timing_cache_serialize(const kiln_timing_cache *cache, void **image, size_t *size);

#endif /* KILN_BUILDER_TIMING_CACHE_H */

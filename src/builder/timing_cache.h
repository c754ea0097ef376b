/* src/builder/timing_cache.h - the timing cache: tactic choices keyed by layer signature, valid
 * for one GPU, driver, CUDA runtime and kiln version.
 *
 * File format (little-endian): "KILNTC01" magic, u32 format version (1), the key (gpu name
 * [128], cc major, cc minor, driver, runtime, kiln version [32]), u32 entry count, then per entry:
 * u32 key length, key bytes, and the kiln_tactic fields (kind, index, time_ms, workspace (u64),
 * 64 data bytes), then a CRC32 (zlib) of everything before it. A missing file is an empty cache;
 * a file for another GPU/driver/version is ignored (info log); a damaged file is ignored with a
 * warning. None of these fails a build.
 */
#ifndef KILN_TIMING_CACHE_H
#define KILN_TIMING_CACHE_H

#include "net/graph.h"

typedef struct kiln_timing_cache_key {
  char gpu_name[128];
  int32_t cc_major, cc_minor;
  int32_t driver_version, cuda_runtime_version;
  char kiln_version[32];
} kiln_timing_cache_key;

typedef struct kiln_timing_cache kiln_timing_cache;

kiln_status kiln_timing_cache_load(const char *path, const kiln_timing_cache_key *key, kiln_timing_cache **out);
const kiln_tactic *kiln_timing_cache_lookup(const kiln_timing_cache *c, const char *key);
kiln_status kiln_timing_cache_insert(kiln_timing_cache *c, const char *key, const kiln_tactic *t);
int32_t kiln_timing_cache_size(const kiln_timing_cache *c);
kiln_status kiln_timing_cache_save(const kiln_timing_cache *c, const char *path);
void kiln_timing_cache_destroy(kiln_timing_cache *c);

#endif

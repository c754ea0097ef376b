/* src/builder/timing_cache.c - the tactic timing cache file (timing_cache.h): load with the
 * never-fail rules, sorted look-up, insert, atomic save. It does not time anything. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "builder/timing_cache.h"
#include "core/bytes.h"
#include "core/error.h"
#include "core/file_map.h"

typedef struct tc_entry {
  char *key;
  kiln_tactic tactic;
} tc_entry;

struct kiln_timing_cache {
  kiln_timing_key key;
  tc_entry *e; /* sorted by key */
  int32_t n, cap;
};

/* Smallest entry: empty key + tactic. */
#define ENTRY_MIN_BYTES (4 + 4 + 4 + 4 + 8 + KILN_TACTIC_BYTES)
#define MAX_KEY_BYTES 4096

kiln_status kiln_timing_cache_create(const kiln_timing_key *key, kiln_timing_cache **out) {
  if (!key || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_create: NULL argument");
  kiln_timing_cache *c = calloc(1, sizeof *c);
  if (!c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a timing cache");
  c->key = *key;
  c->key.gpu_name[sizeof c->key.gpu_name - 1] = '\0';
  c->key.kiln_version[sizeof c->key.kiln_version - 1] = '\0';
  *out = c;
  return KILN_OK;
}

void kiln_timing_cache_destroy(kiln_timing_cache *c) {
  if (!c) return;
  for (int32_t i = 0; i < c->n; i++) free(c->e[i].key);
  free(c->e);
  free(c);
}

/* Index of key, or -(insertion point) - 1. */
static int32_t search(const kiln_timing_cache *c, const char *key) {
  int32_t lo = 0, hi = c->n;
  while (lo < hi) {
    int32_t mid = lo + (hi - lo) / 2;
    int r = strcmp(c->e[mid].key, key);
    if (r == 0) return mid;
    if (r < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return -lo - 1;
}

int kiln_timing_cache_lookup(const kiln_timing_cache *c, const char *key, kiln_tactic *tactic) {
  if (!c || !key) return 0;
  int32_t i = search(c, key);
  if (i < 0) return 0;
  if (tactic) *tactic = c->e[i].tactic;
  return 1;
}

int32_t kiln_timing_cache_count(const kiln_timing_cache *c) { return c ? c->n : 0; }

kiln_status kiln_timing_cache_insert(kiln_timing_cache *c, const char *key, const kiln_tactic *tactic) {
  if (!c || !key || !tactic) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_insert: NULL argument");
  size_t len = strlen(key);
  if (len == 0 || len > MAX_KEY_BYTES)
    return kiln_error(KILN_ERR_INVALID_ARG, "timing cache keys must be 1..%d bytes (got %zu)", MAX_KEY_BYTES, len);
  int32_t i = search(c, key);
  if (i >= 0) {
    c->e[i].tactic = *tactic;
    return KILN_OK;
  }
  i = -i - 1;
  if (c->n == c->cap) {
    int32_t cap = c->cap ? c->cap * 2 : 64;
    tc_entry *e = realloc(c->e, (size_t)cap * sizeof *e);
    if (!e) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory growing the timing cache");
    c->e = e;
    c->cap = cap;
  }
  char *k = malloc(len + 1);
  if (!k) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory growing the timing cache");
  memcpy(k, key, len + 1);
  memmove(&c->e[i + 1], &c->e[i], (size_t)(c->n - i) * sizeof *c->e);
  c->e[i].key = k;
  c->e[i].tactic = *tactic;
  c->n++;
  return KILN_OK;
}

/* ---- file ------------------------------------------------------------------------------------ */

static void write_key(kiln_wr *w, const kiln_timing_key *k) {
  kiln_wr_str(w, k->gpu_name);
  kiln_wr_i32(w, k->cc_major);
  kiln_wr_i32(w, k->cc_minor);
  kiln_wr_i32(w, k->driver_version);
  kiln_wr_i32(w, k->cuda_runtime_version);
  kiln_wr_str(w, k->kiln_version);
}

kiln_status kiln_timing_cache_serialize(const kiln_timing_cache *c, void **image, size_t *size) {
  if (!c || !image || !size) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_serialize: NULL argument");
  kiln_wr w;
  kiln_wr_init(&w);
  kiln_wr_bytes(&w, KILN_TIMING_CACHE_MAGIC, 8);
  kiln_wr_u32(&w, KILN_TIMING_CACHE_VERSION);
  write_key(&w, &c->key);
  kiln_wr_u32(&w, (uint32_t)c->n);
  for (int32_t i = 0; i < c->n; i++) {
    const kiln_tactic *t = &c->e[i].tactic;
    kiln_wr_str(&w, c->e[i].key);
    kiln_wr_i32(&w, t->kind);
    kiln_wr_i32(&w, t->index);
    kiln_wr_f32(&w, t->time_ms);
    kiln_wr_u64(&w, (uint64_t)t->workspace);
    kiln_wr_bytes(&w, t->data, KILN_TACTIC_BYTES);
  }
  if (!w.failed) kiln_wr_u32(&w, (uint32_t)crc32_z(0, w.buf, w.len));
  if (w.failed) {
    kiln_wr_free(&w);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory writing the timing cache");
  }
  *image = w.buf;
  *size = w.len;
  return KILN_OK;
}

/* Why two keys differ ("" when equal). */
static const char *key_difference(const kiln_timing_key *a, const kiln_timing_key *b) {
  if (strcmp(a->gpu_name, b->gpu_name) != 0) return "another GPU";
  if (a->cc_major != b->cc_major || a->cc_minor != b->cc_minor) return "another compute capability";
  if (a->driver_version != b->driver_version) return "another driver version";
  if (a->cuda_runtime_version != b->cuda_runtime_version) return "another CUDA runtime version";
  if (strcmp(a->kiln_version, b->kiln_version) != 0) return "another kiln version";
  return "";
}

/* Read the file's key; -1 when malformed. */
static int read_key(kiln_rd *r, kiln_timing_key *k) {
  char *gpu = NULL, *ver = NULL;
  memset(k, 0, sizeof *k);
  kiln_rd_str(r, &gpu, sizeof k->gpu_name - 1);
  kiln_rd_i32(r, &k->cc_major);
  kiln_rd_i32(r, &k->cc_minor);
  kiln_rd_i32(r, &k->driver_version);
  kiln_rd_i32(r, &k->cuda_runtime_version);
  kiln_rd_str(r, &ver, sizeof k->kiln_version - 1);
  if (!r->failed) {
    memcpy(k->gpu_name, gpu, strlen(gpu) + 1);
    memcpy(k->kiln_version, ver, strlen(ver) + 1);
  }
  free(gpu);
  free(ver);
  return r->failed ? -1 : 0;
}

/* 0: entries read; -1: malformed (c may hold some entries); -2: out of memory. */
static int read_entries(kiln_rd *r, kiln_timing_cache *c) {
  uint32_t n;
  if (kiln_rd_count(r, &n, ENTRY_MIN_BYTES)) return -1;
  for (uint32_t i = 0; i < n; i++) {
    char *key = NULL;
    kiln_tactic t;
    uint64_t ws = 0;
    memset(&t, 0, sizeof t);
    kiln_rd_str(r, &key, MAX_KEY_BYTES);
    kiln_rd_i32(r, &t.kind);
    kiln_rd_i32(r, &t.index);
    kiln_rd_f32(r, &t.time_ms);
    kiln_rd_u64(r, &ws);
    kiln_rd_bytes(r, t.data, KILN_TACTIC_BYTES);
    t.workspace = (size_t)ws;
    int bad = r->failed || !key || !key[0] || ws > SIZE_MAX || t.kind < KILN_TACTIC_DEFAULT || t.kind > KILN_TACTIC_PLUGIN;
    kiln_status s = bad ? KILN_OK : kiln_timing_cache_insert(c, key, &t);
    free(key);
    if (bad) return -1;
    if (s != KILN_OK) return -2;
  }
  return 0;
}

/* Parse into c; returns a reason when the file is unusable, NULL when it was read. */
static const char *parse(const uint8_t *p, size_t size, const kiln_timing_key *want,
                         kiln_timing_cache *c, int *mismatch, int *oom) {
  if (size < 8 || memcmp(p, KILN_TIMING_CACHE_MAGIC, 8) != 0) return "it is not a kiln timing cache";
  if (size < 16 || kiln_load_u32(p + size - 4) != (uint32_t)crc32_z(0, p, size - 4))
    return "it is damaged (checksum mismatch or truncated)";
  kiln_rd r;
  kiln_rd_init(&r, p, size - 4);
  uint8_t magic[8];
  uint32_t version = 0;
  kiln_rd_bytes(&r, magic, 8);
  kiln_rd_u32(&r, &version);
  if (version != KILN_TIMING_CACHE_VERSION) {
    *mismatch = 1;
    return "it was written by a kiln with another cache format";
  }
  kiln_timing_key k;
  if (read_key(&r, &k)) return "its key is malformed";
  const char *diff = key_difference(&k, want);
  if (diff[0]) {
    *mismatch = 1;
    return diff;
  }
  int rc = read_entries(&r, c);
  if (rc == -2) {
    *oom = 1;
    return "out of memory";
  }
  if (rc || kiln_rd_left(&r) != 0) return "its entries are malformed";
  return NULL;
}

kiln_status kiln_timing_cache_load_memory(const void *data, size_t size, const kiln_timing_key *key,
                                          kiln_timing_cache **out) {
  if ((!data && size) || !key || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_load: NULL argument");
  kiln_timing_cache *c;
  KILN_TRY(kiln_timing_cache_create(key, &c));
  int mismatch = 0, oom = 0;
  const char *why = parse(data ? data : (const void *)"", size, &c->key, c, &mismatch, &oom);
  if (oom) {
    kiln_timing_cache_destroy(c);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading the timing cache");
  }
  if (why) {
    kiln_timing_cache_destroy(c);
    KILN_TRY(kiln_timing_cache_create(key, &c));
    if (mismatch)
      kiln_log(KILN_LOG_INFO, "timing cache: starting empty: the cache was made for %s", why);
    else
      kiln_log(KILN_LOG_WARN, "timing cache: ignoring the file because %s; it will be rewritten", why);
  }
  *out = c;
  return KILN_OK;
}

kiln_status kiln_timing_cache_load(const char *path, const kiln_timing_key *key,
                                   kiln_timing_cache **out) {
  if (!path || !key || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_load: NULL argument");
  const void *data;
  size_t size;
  void *handle;
  kiln_status s = kiln_file_map(path, &data, &size, &handle);
  if (s == KILN_ERR_NOT_FOUND) return kiln_timing_cache_create(key, out);
  if (s != KILN_OK) {
    kiln_log(KILN_LOG_WARN, "timing cache: cannot read %s (%s); starting empty", path, kiln_last_error());
    return kiln_timing_cache_create(key, out);
  }
  s = kiln_timing_cache_load_memory(data, size, key, out);
  kiln_file_unmap(handle);
  return s;
}

kiln_status kiln_timing_cache_save(const kiln_timing_cache *c, const char *path) {
  if (!c || !path) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_timing_cache_save: NULL argument");
  void *img;
  size_t size;
  KILN_TRY(kiln_timing_cache_serialize(c, &img, &size));
  size_t n = strlen(path) + 32;
  char *tmp = malloc(n);
  if (!tmp) {
    free(img);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory saving the timing cache");
  }
  snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  kiln_status s = KILN_OK;
  if (!f) {
    s = kiln_error(KILN_ERR_IO, "cannot create %s: %s; check that the folder exists and is writable",
                   tmp, strerror(errno));
  } else {
    int ok = fwrite(img, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
      s = kiln_error(KILN_ERR_IO, "cannot write the timing cache %s: %s; check free space and "
                     "permissions", path, strerror(errno));
      remove(tmp);
    }
  }
  free(tmp);
  free(img);
  return s;
}

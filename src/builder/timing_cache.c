/* src/builder/timing_cache.c - load, query, update and save the timing cache (format in the
 * header). The reader checks every length against the bytes left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "builder/timing_cache.h"
#include "core/error.h"
#include "core/file.h"

#define TC_MAGIC "KILNTC01"
#define TC_VERSION 1u

typedef struct tc_entry {
  char *key;
  kiln_tactic tactic;
} tc_entry;

struct kiln_timing_cache {
  kiln_timing_cache_key key;
  tc_entry *items;
  int32_t n, cap;
};

typedef struct reader {
  const unsigned char *p;
  size_t left;
} reader;

static int get(reader *r, void *dst, size_t n) {
  if (n > r->left) return 0;
  memcpy(dst, r->p, n);
  r->p += n;
  r->left -= n;
  return 1;
}

kiln_status kiln_timing_cache_insert(kiln_timing_cache *c, const char *key, const kiln_tactic *t) {
  for (int32_t i = 0; i < c->n; i++)
    if (strcmp(c->items[i].key, key) == 0) {
      c->items[i].tactic = *t;
      return KILN_OK;
    }
  if (c->n == c->cap) {
    int32_t cap = c->cap ? c->cap * 2 : 64;
    tc_entry *p = realloc(c->items, (size_t)cap * sizeof *p);
    if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    c->items = p;
    c->cap = cap;
  }
  size_t n = strlen(key) + 1;
  char *k = malloc(n);
  if (!k) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  memcpy(k, key, n);
  c->items[c->n].key = k;
  c->items[c->n].tactic = *t;
  c->n++;
  return KILN_OK;
}

static int read_entries(kiln_timing_cache *c, reader *r) {
  uint32_t count;
  if (!get(r, &count, 4) || count > r->left / 8) return 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t klen;
    char key[1024];
    kiln_tactic t;
    uint64_t ws;
    memset(&t, 0, sizeof t);
    if (!get(r, &klen, 4) || klen == 0 || klen >= sizeof key || !get(r, key, klen)) return 0;
    key[klen] = '\0';
    if (!get(r, &t.kind, 4) || !get(r, &t.index, 4) || !get(r, &t.time_ms, 4) || !get(r, &ws, 8) ||
        !get(r, t.data, KILN_TACTIC_BYTES))
      return 0;
    t.workspace = (size_t)ws;
    if (kiln_timing_cache_insert(c, key, &t) != KILN_OK) return 0;
  }
  return r->left == 4; /* the CRC remains */
}

kiln_status kiln_timing_cache_load(const char *path, const kiln_timing_cache_key *key, kiln_timing_cache **out) {
  kiln_timing_cache *c = calloc(1, sizeof *c);
  if (!c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  c->key = *key;
  *out = c;
  if (access(path, F_OK) != 0) return KILN_OK; /* no cache yet */
  char *data = NULL;
  size_t size = 0;
  if (kiln_read_file(path, (size_t)256 << 20, &data, &size) != KILN_OK) {
    kiln_log(KILN_LOG_WARN, "timing cache %s could not be read (%s); timing every tactic again", path, kiln_last_error());
    return KILN_OK;
  }
  reader r = {(const unsigned char *)data, size};
  char magic[8];
  uint32_t version, crc_file;
  kiln_timing_cache_key fk;
  int ok = size >= 16 && get(&r, magic, 8) && memcmp(magic, TC_MAGIC, 8) == 0 && get(&r, &version, 4) && version == TC_VERSION;
  if (ok) {
    memcpy(&crc_file, data + size - 4, 4);
    ok = crc32(0L, (const Bytef *)data, (uInt)(size - 4)) == crc_file;
  }
  ok = ok && get(&r, &fk, sizeof fk);
  if (!ok) {
    kiln_log(KILN_LOG_WARN, "timing cache %s is damaged or from another kiln; ignoring it (it will be rewritten)", path);
  } else if (memcmp(&fk, key, sizeof fk) != 0) {
    kiln_log(KILN_LOG_INFO, "timing cache %s was made for %s / driver %d / CUDA %d / kiln %.31s; timing again for this setup",
             path, fk.gpu_name, fk.driver_version, fk.cuda_runtime_version, fk.kiln_version);
  } else if (!read_entries(c, &r)) {
    kiln_log(KILN_LOG_WARN, "timing cache %s is damaged; ignoring it", path);
    for (int32_t i = 0; i < c->n; i++) free(c->items[i].key);
    c->n = 0;
  }
  free(data);
  return KILN_OK;
}

const kiln_tactic *kiln_timing_cache_lookup(const kiln_timing_cache *c, const char *key) {
  for (int32_t i = 0; c && i < c->n; i++)
    if (strcmp(c->items[i].key, key) == 0) return &c->items[i].tactic;
  return NULL;
}

int32_t kiln_timing_cache_size(const kiln_timing_cache *c) { return c ? c->n : 0; }

typedef struct writer {
  unsigned char *p;
  size_t n, cap;
  int oom;
} writer;

static void put(writer *w, const void *src, size_t n) {
  if (w->oom) return;
  if (w->n + n > w->cap) {
    size_t cap = (w->cap ? w->cap * 2 : 4096) + n;
    unsigned char *p = realloc(w->p, cap);
    if (!p) {
      w->oom = 1;
      return;
    }
    w->p = p;
    w->cap = cap;
  }
  memcpy(w->p + w->n, src, n);
  w->n += n;
}

kiln_status kiln_timing_cache_save(const kiln_timing_cache *c, const char *path) {
  writer w = {0};
  uint32_t version = TC_VERSION, count = (uint32_t)c->n;
  put(&w, TC_MAGIC, 8);
  put(&w, &version, 4);
  put(&w, &c->key, sizeof c->key);
  put(&w, &count, 4);
  for (int32_t i = 0; i < c->n; i++) {
    const kiln_tactic *t = &c->items[i].tactic;
    uint32_t klen = (uint32_t)strlen(c->items[i].key);
    uint64_t ws = t->workspace;
    put(&w, &klen, 4);
    put(&w, c->items[i].key, klen);
    put(&w, &t->kind, 4);
    put(&w, &t->index, 4);
    put(&w, &t->time_ms, 4);
    put(&w, &ws, 8);
    put(&w, t->data, KILN_TACTIC_BYTES);
  }
  uint32_t crc = w.p ? (uint32_t)crc32(0L, w.p, (uInt)w.n) : 0;
  put(&w, &crc, 4);
  if (w.oom) {
    free(w.p);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(w.p, 1, w.n, f) == w.n;
  if (f && fclose(f) != 0) ok = 0;
  free(w.p);
  if (!ok || rename(tmp, path) != 0) {
    remove(tmp);
    return kiln_error(KILN_ERR_IO, "cannot write the timing cache %s", path);
  }
  return KILN_OK;
}

void kiln_timing_cache_destroy(kiln_timing_cache *c) {
  if (!c) return;
  for (int32_t i = 0; i < c->n; i++) free(c->items[i].key);
  free(c->items);
  free(c);
}

/* src/core/bytes.c - bounds-checked little-endian writer and reader (bytes.h). */
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "core/round.h"

void kiln_wr_init(kiln_wr *w) { memset(w, 0, sizeof *w); }

void kiln_wr_free(kiln_wr *w) {
  free(w->buf);
  kiln_wr_init(w);
}

static int wr_reserve(kiln_wr *w, size_t n) {
  if (w->failed) return -1;
  if (n > SIZE_MAX - w->len) {
    w->failed = 1;
    return -1;
  }
  size_t need = w->len + n;
  if (need <= w->cap) return 0;
  size_t cap = w->cap ? w->cap : 4096;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(w->buf, cap);
  if (!p) {
    w->failed = 1;
    return -1;
  }
  w->buf = p;
  w->cap = cap;
  return 0;
}

void kiln_wr_bytes(kiln_wr *w, const void *p, size_t n) {
  if (n == 0 || wr_reserve(w, n)) return;
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

void kiln_wr_zeros(kiln_wr *w, size_t n) {
  if (n == 0 || wr_reserve(w, n)) return;
  memset(w->buf + w->len, 0, n);
  w->len += n;
}

void kiln_store_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void kiln_store_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t kiln_load_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

uint64_t kiln_load_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void kiln_wr_u8(kiln_wr *w, uint8_t v) { kiln_wr_bytes(w, &v, 1); }

void kiln_wr_u32(kiln_wr *w, uint32_t v) {
  uint8_t b[4];
  kiln_store_u32(b, v);
  kiln_wr_bytes(w, b, 4);
}

void kiln_wr_i32(kiln_wr *w, int32_t v) { kiln_wr_u32(w, (uint32_t)v); }

void kiln_wr_u64(kiln_wr *w, uint64_t v) {
  uint8_t b[8];
  kiln_store_u64(b, v);
  kiln_wr_bytes(w, b, 8);
}

void kiln_wr_i64(kiln_wr *w, int64_t v) { kiln_wr_u64(w, (uint64_t)v); }

void kiln_wr_f32(kiln_wr *w, float v) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  kiln_wr_u32(w, bits);
}

void kiln_wr_str(kiln_wr *w, const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n > UINT32_MAX) {
    w->failed = 1;
    return;
  }
  kiln_wr_u32(w, (uint32_t)n);
  kiln_wr_bytes(w, s, n);
}

void kiln_wr_dims(kiln_wr *w, const kiln_dims *d) {
  kiln_wr_i32(w, d->rank);
  for (int32_t i = 0; i < d->rank && i < KILN_MAX_DIMS; i++) kiln_wr_i64(w, d->d[i]);
}

void kiln_wr_align(kiln_wr *w, size_t align) {
  kiln_wr_zeros(w, kiln_round_up(w->len, align) - w->len);
}

void kiln_wr_patch_u32(kiln_wr *w, size_t at, uint32_t v) {
  if (!w->failed && at + 4 <= w->len) kiln_store_u32(w->buf + at, v);
}

void kiln_wr_patch_u64(kiln_wr *w, size_t at, uint64_t v) {
  if (!w->failed && at + 8 <= w->len) kiln_store_u64(w->buf + at, v);
}

void kiln_rd_init(kiln_rd *r, const void *p, size_t size) {
  r->p = p;
  r->size = size;
  r->pos = 0;
  r->failed = 0;
}

size_t kiln_rd_left(const kiln_rd *r) { return r->size - r->pos; }

int kiln_rd_view(kiln_rd *r, const uint8_t **out, size_t n) {
  if (r->failed || n > kiln_rd_left(r)) {
    r->failed = 1;
    *out = NULL;
    return -1;
  }
  *out = r->p + r->pos;
  r->pos += n;
  return 0;
}

int kiln_rd_bytes(kiln_rd *r, void *out, size_t n) {
  const uint8_t *p;
  if (kiln_rd_view(r, &p, n)) {
    memset(out, 0, n);
    return -1;
  }
  if (n) memcpy(out, p, n);
  return 0;
}

int kiln_rd_u8(kiln_rd *r, uint8_t *v) { return kiln_rd_bytes(r, v, 1); }

int kiln_rd_u32(kiln_rd *r, uint32_t *v) {
  const uint8_t *p;
  *v = 0;
  if (kiln_rd_view(r, &p, 4)) return -1;
  *v = kiln_load_u32(p);
  return 0;
}

int kiln_rd_i32(kiln_rd *r, int32_t *v) {
  uint32_t u;
  int rc = kiln_rd_u32(r, &u);
  *v = (int32_t)u;
  return rc;
}

int kiln_rd_u64(kiln_rd *r, uint64_t *v) {
  const uint8_t *p;
  *v = 0;
  if (kiln_rd_view(r, &p, 8)) return -1;
  *v = kiln_load_u64(p);
  return 0;
}

int kiln_rd_i64(kiln_rd *r, int64_t *v) {
  uint64_t u;
  int rc = kiln_rd_u64(r, &u);
  *v = (int64_t)u;
  return rc;
}

int kiln_rd_f32(kiln_rd *r, float *v) {
  uint32_t u;
  int rc = kiln_rd_u32(r, &u);
  memcpy(v, &u, 4);
  return rc;
}

int kiln_rd_str(kiln_rd *r, char **out, size_t max_len) {
  uint32_t n;
  const uint8_t *p;
  *out = NULL;
  if (kiln_rd_u32(r, &n)) return -1;
  if (n > max_len || kiln_rd_view(r, &p, n) || (n && memchr(p, 0, n))) {
    r->failed = 1;
    return -1;
  }
  char *s = malloc((size_t)n + 1);
  if (!s) {
    r->failed = 1;
    return -1;
  }
  if (n) memcpy(s, p, n);
  s[n] = '\0';
  *out = s;
  return 0;
}

int kiln_rd_dims(kiln_rd *r, kiln_dims *d) {
  memset(d, 0, sizeof *d);
  if (kiln_rd_i32(r, &d->rank)) return -1;
  if (d->rank < 0 || d->rank > KILN_MAX_DIMS) {
    d->rank = 0;
    r->failed = 1;
    return -1;
  }
  for (int32_t i = 0; i < d->rank; i++)
    if (kiln_rd_i64(r, &d->d[i])) return -1;
  return 0;
}

int kiln_rd_count(kiln_rd *r, uint32_t *count, size_t min_item_bytes) {
  if (kiln_rd_u32(r, count)) return -1;
  if (min_item_bytes == 0) min_item_bytes = 1;
  if (*count > kiln_rd_left(r) / min_item_bytes) {
    r->failed = 1;
    return -1;
  }
  return 0;
}

int64_t kiln_dims_count_checked(const kiln_dims *d) {
  int64_t n = 1;
  if (d->rank < 0 || d->rank > KILN_MAX_DIMS) return -1;
  for (int32_t i = 0; i < d->rank; i++) {
    if (d->d[i] < 0) return -1;
    if (d->d[i] != 0 && n > INT64_MAX / d->d[i]) return -1;
    n *= d->d[i];
  }
  return n;
}

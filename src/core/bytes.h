/* src/core/bytes.h - a small bounds-checked little-endian byte writer and reader, for kiln's own
 * binary files (engine files, timing caches).
 *
 * The writer grows a malloc()ed buffer; the first failed allocation sets `failed` and every
 * later write is a no-op, so a sequence of writes is checked once at the end.
 * The reader never reads past `size`: every read checks the bytes left, and on a short read it
 * sets `failed`, returns -1 and leaves its output zeroed. Counts read from a file must be checked
 * with kiln_rd_count() before anything is allocated for them, so a corrupt count can never cause
 * a huge allocation.
 *
 * Not a serialization framework: no schema, no varints; callers write fields in order.
 * Not a public header.
 */
#ifndef KILN_CORE_BYTES_H
#define KILN_CORE_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"

typedef struct kiln_wr {
  uint8_t *buf;
  size_t len, cap;
  int failed; /* 1 after an allocation failed */
} kiln_wr;

void kiln_wr_init(kiln_wr *w);
void kiln_wr_free(kiln_wr *w);
void kiln_wr_bytes(kiln_wr *w, const void *p, size_t n);
void kiln_wr_zeros(kiln_wr *w, size_t n);
void kiln_wr_u8(kiln_wr *w, uint8_t v);
void kiln_wr_u32(kiln_wr *w, uint32_t v);
void kiln_wr_i32(kiln_wr *w, int32_t v);
void kiln_wr_u64(kiln_wr *w, uint64_t v);
void kiln_wr_i64(kiln_wr *w, int64_t v);
void kiln_wr_f32(kiln_wr *w, float v);
/* u32 length + bytes, no NUL. */
void kiln_wr_str(kiln_wr *w, const char *s);
/* i32 rank + rank x i64. */
void kiln_wr_dims(kiln_wr *w, const kiln_dims *d);
/* Pad with zeros up to a multiple of `align` (relative to the buffer start). */
void kiln_wr_align(kiln_wr *w, size_t align);
/* Overwrite 4 / 8 bytes at `at` (already written). */
void kiln_wr_patch_u32(kiln_wr *w, size_t at, uint32_t v);
void kiln_wr_patch_u64(kiln_wr *w, size_t at, uint64_t v);

typedef struct kiln_rd {
  const uint8_t *p;
  size_t size, pos;
  int failed; /* 1 after a read past the end or an invalid string */
} kiln_rd;

void kiln_rd_init(kiln_rd *r, const void *p, size_t size);
size_t kiln_rd_left(const kiln_rd *r);
int kiln_rd_bytes(kiln_rd *r, void *out, size_t n);
/* Point at the next n bytes without copying. */
int kiln_rd_view(kiln_rd *r, const uint8_t **out, size_t n);
int kiln_rd_u8(kiln_rd *r, uint8_t *v);
int kiln_rd_u32(kiln_rd *r, uint32_t *v);
int kiln_rd_i32(kiln_rd *r, int32_t *v);
int kiln_rd_u64(kiln_rd *r, uint64_t *v);
int kiln_rd_i64(kiln_rd *r, int64_t *v);
int kiln_rd_f32(kiln_rd *r, float *v);
/* A string written by kiln_wr_str(): *out is malloc()ed and NUL-terminated. Fails (-1, *out
 * NULL) when the length runs past the end, exceeds max_len, or the bytes hold a NUL. */
int kiln_rd_str(kiln_rd *r, char **out, size_t max_len);
/* Dims written by kiln_wr_dims(); fails when the rank is outside 0..KILN_MAX_DIMS. */
int kiln_rd_dims(kiln_rd *r, kiln_dims *d);
/* A count of items, each taking at least min_item_bytes in the stream: fails when the count
 * could not fit in the bytes left (so it is safe to allocate count items). */
int kiln_rd_count(kiln_rd *r, uint32_t *count, size_t min_item_bytes);

/* Little-endian loads and stores on raw memory. */
uint32_t kiln_load_u32(const uint8_t *p);
uint64_t kiln_load_u64(const uint8_t *p);
void kiln_store_u32(uint8_t *p, uint32_t v);
void kiln_store_u64(uint8_t *p, uint64_t v);

/* Elements in dims with overflow and sign checks: -1 when a dim is negative or the product
 * exceeds INT64_MAX. */
int64_t kiln_dims_count_checked(const kiln_dims *d);

#endif /* KILN_CORE_BYTES_H */

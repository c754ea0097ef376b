/* tests/refs.h - reader for the reference dumps in the .bin files in tests/data/ (tests only).
 *
 * Format (written by tools/make_frontend_refs.py): "KLNREF01", uint32 count, then per entry:
 * uint16 name length, name, uint8 dtype (0 float32, 1 int32, 2 float64), uint8 ndim,
 * int64 dims[ndim], data (little-endian, row-major). Each entry's data is copied to its own
 * (aligned) buffer. Not a library file format: kiln never reads these.
 */
#ifndef KILN_TESTS_REFS_H
#define KILN_TESTS_REFS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ref_entry {
  char name[128];
  int dtype; /* 0 float32, 1 int32, 2 float64 */
  int ndim;
  int64_t dims[8];
  int64_t count;
  const void *data;
} ref_entry;

typedef struct ref_file {
  unsigned char *bytes;
  ref_entry entries[64];
  int n;
} ref_file;

/* Returns 0 on success; prints why on stderr and returns -1 otherwise. */
static int ref_file_load(const char *path, ref_file *rf) {
  memset(rf, 0, sizeof *rf);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cannot open reference file %s (run tools/make_frontend_refs.py)\n", path);
    return -1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  rf->bytes = malloc((size_t)size);
  if (!rf->bytes || fread(rf->bytes, 1, (size_t)size, f) != (size_t)size) {
    fclose(f);
    fprintf(stderr, "cannot read %s\n", path);
    return -1;
  }
  fclose(f);
  const unsigned char *p = rf->bytes, *end = rf->bytes + size;
  uint32_t count;
  if (size < 12 || memcmp(p, "KLNREF01", 8) != 0) return fprintf(stderr, "%s: bad magic\n", path), -1;
  memcpy(&count, p + 8, 4);
  p += 12;
  for (uint32_t i = 0; i < count && i < 64; i++) {
    ref_entry *e = &rf->entries[rf->n++];
    uint16_t name_len;
    memcpy(&name_len, p, 2);
    p += 2;
    memcpy(e->name, p, name_len < 127 ? name_len : 127);
    p += name_len;
    e->dtype = p[0];
    e->ndim = p[1];
    p += 2;
    e->count = 1;
    for (int d = 0; d < e->ndim; d++) {
      memcpy(&e->dims[d], p, 8);
      p += 8;
      e->count *= e->dims[d];
    }
    const size_t bytes = (size_t)e->count * (e->dtype == 2 ? 8 : 4);
    if (p + bytes > end) return fprintf(stderr, "%s: truncated\n", path), -1;
    void *copy = malloc(bytes ? bytes : 1); /* aligned copy: entries are packed in the file */
    if (!copy) return fprintf(stderr, "out of memory\n"), -1;
    memcpy(copy, p, bytes);
    e->data = copy;
    p += bytes;
  }
  return 0;
}

static const ref_entry *ref_get(const ref_file *rf, const char *name) {
  for (int i = 0; i < rf->n; i++)
    if (strcmp(rf->entries[i].name, name) == 0) return &rf->entries[i];
  fprintf(stderr, "reference entry '%s' missing: regenerate tests/data with tools/make_frontend_refs.py\n", name);
  return NULL;
}

static void ref_file_free(ref_file *rf) {
  for (int i = 0; i < rf->n; i++) free((void *)rf->entries[i].data);
  free(rf->bytes);
}

#endif /* KILN_TESTS_REFS_H */

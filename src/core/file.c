/* src/core/file.c - reading whole files with clear errors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"

kiln_status kiln_read_file(const char *path, size_t max_bytes, char **data, size_t *size) {
  if (!path || !data || !size) return kiln_error(KILN_ERR_INVALID_ARG, "read_file: NULL argument");
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_error(KILN_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap + 1);
  kiln_status s = buf ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
  while (s == KILN_OK) {
    if (n == cap) {
      if (cap >= max_bytes) {
        s = kiln_error(KILN_ERR_FORMAT, "%s is larger than %zu bytes; is it the right file?", path, max_bytes);
        break;
      }
      cap *= 2;
      char *p = realloc(buf, cap + 1);
      if (!p) {
        s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
        break;
      }
      buf = p;
    }
    size_t k = fread(buf + n, 1, cap - n, f);
    n += k;
    if (k == 0) {
      if (ferror(f)) s = kiln_error(KILN_ERR_IO, "reading %s failed", path);
      break;
    }
  }
  fclose(f);
  if (s != KILN_OK) {
    free(buf);
    return s;
  }
  buf[n] = '\0';
  *data = buf;
  *size = n;
  return KILN_OK;
}

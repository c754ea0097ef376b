/* src/core/npy.c - reading and writing NumPy .npy files (see kiln/npy.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "kiln/npy.h"

static const char *dtype_descr(kiln_dtype d) {
  switch (d) {
    case KILN_DTYPE_FP32: return "<f4";
    case KILN_DTYPE_FP16: return "<f2";
    case KILN_DTYPE_INT32: return "<i4";
    case KILN_DTYPE_INT64: return "<i8";
    case KILN_DTYPE_INT8: return "|i1";
    default: return NULL;
  }
}

/* Value of `'key':` in the header dict (points after the colon and spaces), or NULL. */
static const char *find_key(const char *h, const char *key) {
  char pat[32];
  snprintf(pat, sizeof pat, "'%s':", key);
  const char *p = strstr(h, pat);
  if (!p) return NULL;
  p += strlen(pat);
  while (*p == ' ') p++;
  return p;
}

static kiln_status parse_header(const char *h, kiln_npy_array *a) {
  const char *d = find_key(h, "descr"), *f = find_key(h, "fortran_order"), *s = find_key(h, "shape");
  if (!d || !f || !s) return kiln_error(KILN_ERR_FORMAT, "the .npy header lacks descr, fortran_order or shape");
  static const struct {
    const char *descr;
    kiln_dtype dtype;
  } types[] = {{"'<f4'", KILN_DTYPE_FP32}, {"'<f2'", KILN_DTYPE_FP16}, {"'<i4'", KILN_DTYPE_INT32},
               {"'<i8'", KILN_DTYPE_INT64}, {"'|i1'", KILN_DTYPE_INT8}, {"'|u1'", KILN_DTYPE_INT8},
               {"'|b1'", KILN_DTYPE_INT8}};
  a->dtype = KILN_DTYPE_INVALID;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
    if (strncmp(d, types[i].descr, strlen(types[i].descr)) == 0) a->dtype = types[i].dtype;
  if (a->dtype == KILN_DTYPE_INVALID)
    return kiln_error(KILN_ERR_UNSUPPORTED, "unsupported .npy dtype %.8s; save float32, float16, int32, int64 or int8 (little-endian)", d);
  if (strncmp(f, "False", 5) != 0)
    return kiln_error(KILN_ERR_UNSUPPORTED, "the .npy array is in Fortran order; save it with np.ascontiguousarray first");
  if (*s != '(') return kiln_error(KILN_ERR_FORMAT, "malformed shape in the .npy header");
  s++;
  memset(&a->shape, 0, sizeof a->shape);
  for (;;) {
    while (*s == ' ') s++;
    if (*s == ')') break;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0 || a->shape.rank >= KILN_MAX_DIMS)
      return kiln_error(KILN_ERR_FORMAT, "malformed or too long shape in the .npy header (at most %d dims)", KILN_MAX_DIMS);
    a->shape.d[a->shape.rank++] = v;
    s = end;
    while (*s == ' ') s++;
    if (*s == ',') s++;
    else if (*s != ')') return kiln_error(KILN_ERR_FORMAT, "malformed shape in the .npy header");
  }
  return KILN_OK;
}

kiln_status kiln_npy_parse(const void *file, size_t size, kiln_npy_array *out) {
  const unsigned char *b = file;
  kiln_npy_array a;
  memset(&a, 0, sizeof a);
  if (!b || size < 10 || memcmp(b, "\x93NUMPY", 6) != 0) return kiln_error(KILN_ERR_FORMAT, "not a .npy file (bad magic)");
  size_t hlen, start;
  if (b[6] == 1) {
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    start = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (size < 12) return kiln_error(KILN_ERR_FORMAT, "truncated .npy header");
    hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    start = 12;
  } else {
    return kiln_error(KILN_ERR_VERSION, ".npy format version %d is not supported (1, 2 or 3)", b[6]);
  }
  if (hlen > size - start || hlen > (1u << 20)) return kiln_error(KILN_ERR_FORMAT, "truncated .npy header");
  char *h = malloc(hlen + 1);
  if (!h) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  memcpy(h, b + start, hlen);
  h[hlen] = '\0';
  kiln_status s = parse_header(h, &a);
  free(h);
  if (s != KILN_OK) return s;
  int64_t n = 1;
  for (int32_t i = 0; i < a.shape.rank; i++) {
    if (a.shape.d[i] && n > (INT64_MAX / 16) / a.shape.d[i]) return kiln_error(KILN_ERR_FORMAT, "the .npy shape is too large");
    n *= a.shape.d[i];
  }
  a.bytes = kiln_dtype_bytes(a.dtype, n);
  if (a.bytes != size - start - hlen)
    return kiln_error(KILN_ERR_FORMAT, "the .npy data holds %zu bytes but its header promises %zu; the file is truncated or damaged",
                      size - start - hlen, a.bytes);
  a.data = malloc(a.bytes ? a.bytes : 1);
  if (!a.data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory for %zu bytes", a.bytes);
  memcpy(a.data, b + start + hlen, a.bytes);
  *out = a;
  return KILN_OK;
}

kiln_status kiln_npy_read(const char *path, kiln_npy_array *out) {
  char *data = NULL;
  size_t size = 0;
  KILN_TRY(kiln_read_file(path, (size_t)1 << 36, &data, &size));
  kiln_status s = kiln_npy_parse(data, size, out);
  free(data);
  return s == KILN_OK ? s : kiln_error_context(s, "%s: ", path);
}

void kiln_npy_free(kiln_npy_array *a) {
  if (!a) return;
  free(a->data);
  a->data = NULL;
}

kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, const kiln_dims *shape, const void *data) {
  const char *descr = dtype_descr(dtype);
  if (!descr) return kiln_error(KILN_ERR_UNSUPPORTED, ".npy output of %s is not supported; convert to fp32", kiln_dtype_name(dtype));
  char header[512];
  int k = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int32_t i = 0; i < shape->rank; i++)
    k += snprintf(header + k, sizeof header - (size_t)k, "%lld%s", (long long)shape->d[i], shape->rank == 1 ? "," : (i + 1 < shape->rank ? ", " : ""));
  k += snprintf(header + k, sizeof header - (size_t)k, "), }");
  size_t total = 10 + (size_t)k + 1;
  size_t pad = (64 - total % 64) % 64;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
  size_t hlen = (size_t)k + pad + 1;
  pre[8] = (unsigned char)(hlen & 0xff);
  pre[9] = (unsigned char)(hlen >> 8);
  FILE *f = fopen(path, "wb");
  if (!f) return kiln_error(KILN_ERR_IO, "cannot write %s: does the folder exist?", path);
  size_t bytes = kiln_dtype_bytes(dtype, kiln_dims_count(shape));
  int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)k, f) == (size_t)k;
  for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
  ok = ok && fputc('\n', f) != EOF && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
  if (fclose(f) != 0) ok = 0;
  return ok ? KILN_OK : kiln_error(KILN_ERR_IO, "writing %s failed (disk full?)", path);
}

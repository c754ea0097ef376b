/* src/core/npy.c - NumPy .npy reader and writer (kiln/npy.h).
 *
 * The header is a Python dict literal; this file parses exactly the subset numpy writes (quoted
 * keys, a quoted descr, True/False, a tuple of non-negative integers) with a bounds-checked
 * scanner. It is not a general Python literal parser: .npz archives, structured dtypes and
 * object arrays are not supported.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bytes.h"
#include "core/error.h"
#include "core/file_map.h"
#include "core/round.h"
#include "kiln/npy.h"

static const char NPY_MAGIC[6] = {(char)0x93, 'N', 'U', 'M', 'P', 'Y'};

typedef struct descr_map {
  const char *descr;
  kiln_dtype dtype;
} descr_map;

static const descr_map descrs[] = {{"<f4", KILN_DTYPE_FP32}, {"<f2", KILN_DTYPE_FP16},
                                   {"<i4", KILN_DTYPE_INT32}, {"<i8", KILN_DTYPE_INT64},
                                   {"|i1", KILN_DTYPE_INT8},  {"<i1", KILN_DTYPE_INT8}};

/* ---- header scanner ---------------------------------------------------------------------------- */

typedef struct scan {
  const char *p, *end;
  const char *file;
} scan;

static void skip_ws(scan *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

static int eat(scan *s, char c) {
  skip_ws(s);
  if (s->p < s->end && *s->p == c) {
    s->p++;
    return 1;
  }
  return 0;
}

static kiln_status bad_header(const scan *s, const char *what) {
  return kiln_error(KILN_ERR_FORMAT,
                    "%s: the .npy header is malformed (%s); re-save the array with numpy.save()",
                    s->file, what);
}

/* A quoted string into buf (truncated values are rejected). */
static kiln_status read_quoted(scan *s, char *buf, size_t cap) {
  skip_ws(s);
  if (s->p >= s->end || (*s->p != '\'' && *s->p != '"')) return bad_header(s, "expected a quoted string");
  char q = *s->p++;
  size_t n = 0;
  while (s->p < s->end && *s->p != q) {
    if (n + 1 >= cap) return bad_header(s, "a string is too long");
    buf[n++] = *s->p++;
  }
  if (s->p >= s->end) return bad_header(s, "a string is not closed");
  s->p++;
  buf[n] = '\0';
  return KILN_OK;
}

static kiln_status read_bool(scan *s, int *v) {
  skip_ws(s);
  size_t left = (size_t)(s->end - s->p);
  if (left >= 4 && memcmp(s->p, "True", 4) == 0) {
    s->p += 4;
    *v = 1;
  } else if (left >= 5 && memcmp(s->p, "False", 5) == 0) {
    s->p += 5;
    *v = 0;
  } else {
    return bad_header(s, "fortran_order is neither True nor False");
  }
  return KILN_OK;
}

static kiln_status read_int(scan *s, int64_t *v) {
  skip_ws(s);
  int64_t x = 0;
  int digits = 0;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
    int d = *s->p++ - '0';
    if (x > (INT64_MAX - d) / 10) return bad_header(s, "a dimension is too large");
    x = x * 10 + d;
    digits++;
  }
  if (!digits) return bad_header(s, "a dimension is not a non-negative integer");
  if (s->p < s->end && *s->p == 'L') s->p++; /* Python 2 long */
  *v = x;
  return KILN_OK;
}

static kiln_status read_shape(scan *s, kiln_dims *d) {
  memset(d, 0, sizeof *d);
  if (!eat(s, '(')) return bad_header(s, "shape is not a tuple");
  while (!eat(s, ')')) {
    if (d->rank == KILN_MAX_DIMS)
      return kiln_error(KILN_ERR_UNSUPPORTED, "%s: the array has more than %d dims; kiln handles "
                        "at most %d: reshape it before saving", s->file, KILN_MAX_DIMS, KILN_MAX_DIMS);
    KILN_TRY(read_int(s, &d->d[d->rank++]));
    if (!eat(s, ',')) {
      if (!eat(s, ')')) return bad_header(s, "shape tuple is not closed");
      break;
    }
  }
  if (kiln_dims_count_checked(d) < 0) return bad_header(s, "the shape's element count overflows");
  return KILN_OK;
}

static kiln_status parse_descr(const scan *s, const char *descr, kiln_dtype *dtype) {
  for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++)
    if (strcmp(descr, descrs[i].descr) == 0) {
      *dtype = descrs[i].dtype;
      return KILN_OK;
    }
  return kiln_error(KILN_ERR_UNSUPPORTED,
                    "%s: dtype '%s' is not supported (kiln reads '<f4', '<f2', '<i4', '<i8', "
                    "'|i1'); re-save with a.astype(numpy.float32) or the matching little-endian "
                    "type", s->file, descr);
}

/* The dict literal: every key once, nothing else. */
static kiln_status parse_dict(scan *s, kiln_dtype *dtype, kiln_dims *dims) {
  int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
  char key[32], descr[32];
  if (!eat(s, '{')) return bad_header(s, "it does not start with '{'");
  while (!eat(s, '}')) {
    KILN_TRY(read_quoted(s, key, sizeof key));
    if (!eat(s, ':')) return bad_header(s, "a key is not followed by ':'");
    if (strcmp(key, "descr") == 0 && !have_descr) {
      KILN_TRY(read_quoted(s, descr, sizeof descr));
      have_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
      KILN_TRY(read_bool(s, &fortran));
      have_order = 1;
    } else if (strcmp(key, "shape") == 0 && !have_shape) {
      KILN_TRY(read_shape(s, dims));
      have_shape = 1;
    } else {
      return bad_header(s, "an unknown or repeated key");
    }
    if (!eat(s, ',')) {
      if (!eat(s, '}')) return bad_header(s, "entries are not separated by ','");
      break;
    }
  }
  if (!have_descr || !have_order || !have_shape)
    return bad_header(s, "'descr', 'fortran_order' or 'shape' is missing");
  if (fortran)
    return kiln_error(KILN_ERR_UNSUPPORTED,
                      "%s: the array is stored in Fortran (column-major) order, which kiln does not "
                      "read; re-save it with numpy.save(path, numpy.ascontiguousarray(a))", s->file);
  return parse_descr(s, descr, dtype);
}

/* ---- reading ----------------------------------------------------------------------------------- */

kiln_status kiln_npy_read_memory(const void *image, size_t size, const char *name, kiln_npy *out) {
  const char *file = name ? name : "(.npy in memory)";
  const uint8_t *b = image;
  if (!out || (!image && size)) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_read_memory: NULL argument");
  if (size < 10 || memcmp(b, NPY_MAGIC, 6) != 0)
    return kiln_error(KILN_ERR_FORMAT, "%s is not a .npy file (no \\x93NUMPY magic); save arrays "
                      "with numpy.save()", file);
  uint8_t major = b[6], minor = b[7];
  if (major < 1 || major > 3 || minor != 0)
    return kiln_error(KILN_ERR_VERSION, "%s: .npy format version %u.%u is not supported (1.0, 2.0 "
                      "and 3.0 are); re-save it with numpy.save()", file, major, minor);
  size_t hpos = major == 1 ? 10 : 12;
  if (size < hpos)
    return kiln_error(KILN_ERR_FORMAT, "%s is truncated inside its header; save it again", file);
  uint64_t hlen = major == 1 ? (uint64_t)(b[8] | (b[9] << 8)) : kiln_load_u32(b + 8);
  if (hlen > size - hpos)
    return kiln_error(KILN_ERR_FORMAT, "%s is truncated: its header needs %llu bytes, %zu are left; "
                      "save it again", file, (unsigned long long)hlen, size - hpos);
  scan s = {(const char *)b + hpos, (const char *)b + hpos + hlen, file};
  kiln_npy a;
  memset(&a, 0, sizeof a);
  KILN_TRY(parse_dict(&s, &a.dtype, &a.dims));
  int64_t count = kiln_dims_count_checked(&a.dims);
  size_t data_pos = hpos + (size_t)hlen, left = size - data_pos;
  size_t need = (uint64_t)count > SIZE_MAX / 8 ? SIZE_MAX : kiln_dtype_bytes(a.dtype, count);
  if (need != left)
    return kiln_error(KILN_ERR_FORMAT, "%s: the array needs %zu bytes of data but the file holds "
                      "%zu after the header (truncated or with trailing bytes); save it again",
                      file, need, left);
  a.bytes = need;
  a.data = malloc(need ? need : 1);
  if (!a.data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s (%zu bytes)", file, need);
  if (need) memcpy(a.data, b + data_pos, need);
  *out = a;
  return KILN_OK;
}

kiln_status kiln_npy_read(const char *path, kiln_npy *out) {
  if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_read: NULL argument");
  const void *data;
  size_t size;
  void *handle;
  KILN_TRY(kiln_file_map(path, &data, &size, &handle));
  kiln_status s = kiln_npy_read_memory(data, size, path, out);
  kiln_file_unmap(handle);
  return s;
}

void kiln_npy_free(kiln_npy *npy) {
  if (!npy) return;
  free(npy->data);
  npy->data = NULL;
  npy->bytes = 0;
}

/* ---- writing ----------------------------------------------------------------------------------- */

static const char *descr_of(kiln_dtype dtype) {
  switch (dtype) {
    case KILN_DTYPE_FP32: return "<f4";
    case KILN_DTYPE_FP16: return "<f2";
    case KILN_DTYPE_INT32: return "<i4";
    case KILN_DTYPE_INT64: return "<i8";
    case KILN_DTYPE_INT8: return "|i1";
    default: return NULL;
  }
}

/* The header dict padded so that the data start at a multiple of 64 bytes. */
static size_t format_header(char *buf, size_t cap, const char *descr, const kiln_dims *dims) {
  size_t n = (size_t)snprintf(buf, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int32_t i = 0; i < dims->rank; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%lld%s", (long long)dims->d[i],
                          dims->rank == 1 || i + 1 < dims->rank ? ", " : "");
  if (dims->rank == 1) n -= 1; /* "(3,)" as numpy writes it */
  n += (size_t)snprintf(buf + n, cap - n, "), }");
  return n;
}

static kiln_status write_all(const char *path, const uint8_t *head, size_t head_n, const void *data,
                             size_t bytes) {
  FILE *f = fopen(path, "wb");
  if (!f) return kiln_error(KILN_ERR_IO, "cannot create %s: %s; check the folder exists and is writable", path, strerror(errno));
  int ok = fwrite(head, 1, head_n, f) == head_n && (bytes == 0 || fwrite(data, 1, bytes, f) == bytes);
  ok = (fclose(f) == 0) && ok;
  if (!ok) {
    remove(path);
    return kiln_error(KILN_ERR_IO, "cannot write %s (disk full?); free space and retry", path);
  }
  return KILN_OK;
}

kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, const kiln_dims *dims,
                           const void *data) {
  if (!path || !dims) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_write: NULL argument");
  const char *descr = descr_of(dtype);
  if (!descr)
    return kiln_error(KILN_ERR_UNSUPPORTED, "kiln_npy_write: dtype %s has no .npy equivalent; "
                      "convert to fp32 first (kiln_convert_floats)", kiln_dtype_name(dtype));
  int64_t count = kiln_dims_count_checked(dims);
  if (count < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_write: dims must be non-negative, rank 0..%d", KILN_MAX_DIMS);
  size_t bytes = kiln_dtype_bytes(dtype, count);
  if (bytes && !data) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_npy_write: NULL data");
  char dict[512];
  size_t n = format_header(dict, sizeof dict, descr, dims);
  /* magic(6) + version(2) + length(2) + dict + padding + '\n' == multiple of 64 */
  size_t total = kiln_round_up(10 + n + 1, 64);
  uint8_t head[640];
  memcpy(head, NPY_MAGIC, 6);
  head[6] = 1;
  head[7] = 0;
  size_t hlen = total - 10;
  head[8] = (uint8_t)(hlen & 0xff);
  head[9] = (uint8_t)(hlen >> 8);
  memcpy(head + 10, dict, n);
  memset(head + 10 + n, ' ', total - 10 - n - 1);
  head[total - 1] = '\n';
  return write_all(path, head, total, data, bytes);
}

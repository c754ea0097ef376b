/* kiln/npy.h - NumPy .npy files (format versions 1.0, 2.0 and 3.0), C order, little-endian.
 *
 * Read: '<f4' -> fp32, '<f2' -> fp16, '<i4' -> int32, '<i8' -> int64, '|i1' -> int8 ('|b1' and
 * '|u1' read as int8 too). Fortran order, big-endian data, object arrays, and headers that do not
 * match the file size are rejected with a message. Write: fp32, fp16, int32, int64, int8 (bf16
 * has no NumPy dtype: convert to fp32 first).
 */
#ifndef KILN_NPY_H
#define KILN_NPY_H

#include <stddef.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_npy_array {
  kiln_dtype dtype;
  kiln_dims shape;
  void *data;     /* malloc()ed, kiln_dtype_bytes(dtype, count) bytes */
  size_t bytes;
} kiln_npy_array;

kiln_status kiln_npy_read(const char *path, kiln_npy_array *out);
kiln_status kiln_npy_parse(const void *file, size_t size, kiln_npy_array *out);
void kiln_npy_free(kiln_npy_array *a);
kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, const kiln_dims *shape, const void *data);

#ifdef __cplusplus
}
#endif
#endif

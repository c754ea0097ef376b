/* kiln/npy.h - reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0).
 *
 * Usage:
 *   kiln_npy a;
 *   if (kiln_npy_read("ref.npy", &a) == KILN_OK) { ... a.data, a.dtype, a.dims ...; kiln_npy_free(&a); }
 *   kiln_npy_write("out.npy", KILN_DTYPE_FP32, &dims, data);
 *
 * Format: magic "\x93NUMPY", major and minor version bytes, a little-endian header length
 * (u16 for 1.0, u32 for 2.0/3.0), a Python dict literal {'descr': '<f4', 'fortran_order': False,
 * 'shape': (2, 3), } padded with spaces to a 64-byte boundary and ended by '\n', then the raw
 * array bytes in C order.
 *
 * dtypes: '<f4' (fp32), '<f2' (fp16), '<i4' (int32), '<i8' (int64), '|i1' (int8). bfloat16 is
 * not a NumPy type: store fp32 or fp16 and convert after reading (kiln_convert_floats). Big-endian
 * data, other dtypes and fortran_order=True are rejected with a message saying how to re-save.
 * The reader requires the data to fill the rest of the file exactly.
 *
 * Ownership: kiln_npy_read allocates `data` (free with kiln_npy_free). Thread-safety: reentrant.
 */
#ifndef KILN_NPY_H
#define KILN_NPY_H

#include <stddef.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_npy {
  kiln_dtype dtype;
  kiln_dims dims;
  void *data;   /* malloc()ed, C order */
  size_t bytes;
} kiln_npy;

kiln_status kiln_npy_read(const char *path, kiln_npy *out);
/* Parse an image in memory (the data are copied). `name` is used in messages (may be NULL). */
kiln_status kiln_npy_read_memory(const void *image, size_t size, const char *name, kiln_npy *out);
/* Write dtype fp32/fp16/int32/int64/int8 in format version 1.0, as numpy.save() does. */
kiln_status kiln_npy_write(const char *path, kiln_dtype dtype, const kiln_dims *dims,
                           const void *data);
void kiln_npy_free(kiln_npy *npy);

#ifdef __cplusplus
}
#endif
#endif /* KILN_NPY_H */

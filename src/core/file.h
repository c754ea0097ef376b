/* src/core/file.h - small file helpers, and the weight source used by network loaders. */
#ifndef KILN_CORE_FILE_H
#define KILN_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/network.h"

/* Read a whole file (at most max_bytes) into a malloc()ed, NUL-terminated buffer. */
kiln_status kiln_read_file(const char *path, size_t max_bytes, char **data, size_t *size);

/* A safetensors file (or sharded directory) that constants are read from by name. */
typedef struct kiln_weight_source kiln_weight_source;
kiln_status kiln_weight_source_open(const char *path, const char *base_dir, kiln_weight_source **out);
void kiln_weight_source_close(kiln_weight_source *w);
/* Add tensor `name` as a constant; dims must match. Returns its id, KILN_ERR_NOT_FOUND (not
 * in the file: nothing recorded as an error), or another error. */
int32_t kiln_weight_source_add(kiln_weight_source *w, kiln_network *net, const char *name, int32_t rank,
                               const int64_t *dims);
/* Read tensor `name` (a float tensor of exactly these dims) converted to fp32 into out. Returns
 * KILN_ERR_NOT_FOUND (nothing recorded) when absent. */
kiln_status kiln_weight_source_read_f32(kiln_weight_source *w, const char *name, int32_t rank, const int64_t *dims,
                                        float *out);

#endif

/* src/core/file_map.h - mapping a whole file read-only into memory (mmap, falling back to
 * reading it), for the engine loader and the checkpoint readers. Not a public header. */
#ifndef KILN_CORE_FILE_MAP_H
#define KILN_CORE_FILE_MAP_H

#include <stddef.h>

#include "kiln/status.h"

/* Map a file read-only (mmap; falls back to reading it into memory). An empty file gives
 * size 0 and a non-NULL data pointer. A missing file is KILN_ERR_NOT_FOUND. Unmap with
 * kiln_file_unmap(handle). */
kiln_status kiln_file_map(const char *path, const void **data, size_t *size, void **handle);
void kiln_file_unmap(void *handle);

#endif /* KILN_CORE_FILE_MAP_H */

/* kiln/safetensors.h - reading safetensors checkpoints (one file or a sharded set).
 *
 * Usage:
 *   kiln_safetensors *st;
 *   kiln_safetensors_open("whisper-tiny/", &st);   // a directory, a .safetensors file, or a
 *                                                  // model.safetensors.index.json
 *   kiln_safetensors_tensor t;
 *   if (kiln_safetensors_find(st, "model.encoder.conv1.weight", &t) == KILN_OK) ... t.data ...
 *   for (int64_t i = 0; i < kiln_safetensors_count(st); i++) kiln_safetensors_get(st, i, &t);
 *   kiln_safetensors_close(st);
 *
 * File format (https://github.com/huggingface/safetensors): u64 little-endian N, then N bytes of
 * JSON: an object mapping tensor names to {"dtype": "F32"|"F16"|"BF16"|"I8"|"I32"|"I64"|"U8"|
 * "BOOL", "shape": [..], "data_offsets": [begin, end]} (offsets relative to the byte after the
 * header), plus an optional "__metadata__" object of string values; then the data area.
 * A directory is opened through its model.safetensors.index.json ({"weight_map": {name: file}})
 * when present, else through its model.safetensors.
 *
 * Everything is validated at open: header length against the file size, JSON shape, dtypes,
 * ranks (0..8), dims (non-negative, no overflow), offsets inside the data area and equal to
 * dtype size x elements, no two tensors overlapping, names unique (also across shards), every
 * weight_map entry present in the shard it names. Errors name the file and the tensor.
 *
 * Files are mmap()ed read-only; data pointers stay valid until kiln_safetensors_close(). Data
 * are little-endian and may be unaligned (safetensors does not align tensors).
 *
 * Thread-safety: an open checkpoint is immutable; look-ups may run from many threads.
 */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kiln_st_dtype {
  KILN_ST_F32 = 0,
  KILN_ST_F16 = 1,
  KILN_ST_BF16 = 2,
  KILN_ST_I8 = 3,
  KILN_ST_I32 = 4,
  KILN_ST_I64 = 5,
  KILN_ST_U8 = 6,
  KILN_ST_BOOL = 7,
  KILN_ST_DTYPE_COUNT_ = 8
} kiln_st_dtype;

typedef struct kiln_safetensors kiln_safetensors;

typedef struct kiln_safetensors_tensor {
  const char *name;     /* valid until close */
  kiln_st_dtype st_dtype;
  kiln_dtype dtype;     /* the kiln dtype, KILN_DTYPE_INVALID for U8 and BOOL */
  kiln_dims dims;
  const void *data;     /* bytes inside the mapped file (may be unaligned) */
  size_t bytes;
  const char *file;     /* the file holding it (valid until close) */
} kiln_safetensors_tensor;

/* Open a .safetensors file, a model.safetensors.index.json, or a directory holding either. */
kiln_status kiln_safetensors_open(const char *path, kiln_safetensors **out);
/* Parse a safetensors image in memory (not copied: keep it alive until close). `name` is used
 * in messages (may be NULL). */
kiln_status kiln_safetensors_open_memory(const void *data, size_t size, const char *name,
                                         kiln_safetensors **out);
void kiln_safetensors_close(kiln_safetensors *st);

int64_t kiln_safetensors_count(const kiln_safetensors *st);
/* Tensors in name order (strcmp). */
kiln_status kiln_safetensors_get(const kiln_safetensors *st, int64_t index,
                                 kiln_safetensors_tensor *out);
/* KILN_ERR_NOT_FOUND (with a message naming the checkpoint) when absent. */
kiln_status kiln_safetensors_find(const kiln_safetensors *st, const char *name,
                                  kiln_safetensors_tensor *out);
/* A value from the (first) file's "__metadata__", or NULL. */
const char *kiln_safetensors_metadata(const kiln_safetensors *st, const char *key);

const char *kiln_st_dtype_name(kiln_st_dtype dtype);
size_t kiln_st_dtype_size(kiln_st_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif /* KILN_SAFETENSORS_H */

/* src/net/weights.c - the weight source of JSON networks: constants read by name from a
 * safetensors file, a folder, or a sharded checkpoint (kiln/safetensors.h). Float tensors of any
 * float dtype are handed to the network as they are (the builder converts them); the shape in
 * the network must match the file's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "kiln/safetensors.h"

struct kiln_weight_source {
  kiln_safetensors *st;
  char path[4096];
};

kiln_status kiln_weight_source_open(const char *path, const char *base_dir, kiln_weight_source **out) {
  kiln_weight_source *w = calloc(1, sizeof *w);
  if (!w) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  if (path[0] == '/' || !base_dir) snprintf(w->path, sizeof w->path, "%s", path);
  else snprintf(w->path, sizeof w->path, "%s/%s", base_dir, path);
  kiln_status s = kiln_safetensors_open(w->path, &w->st);
  if (s != KILN_OK) {
    free(w);
    return s;
  }
  *out = w;
  return KILN_OK;
}

void kiln_weight_source_close(kiln_weight_source *w) {
  if (!w) return;
  kiln_safetensors_close(w->st);
  free(w);
}

/* The tensor `name` with the given shape, float or int32: KILN_ERR_NOT_FOUND when absent. */
static kiln_status find(kiln_weight_source *w, const char *name, int32_t rank, const int64_t *dims,
                        kiln_safetensors_tensor *t) {
  char a[128], b[128];
  if (kiln_safetensors_find(w->st, name, t) != KILN_OK) return KILN_ERR_NOT_FOUND;
  kiln_dims want;
  memset(&want, 0, sizeof want);
  want.rank = rank;
  for (int32_t i = 0; i < rank; i++) want.d[i] = dims[i];
  if (!kiln_dims_equal(&want, &t->dims))
    return kiln_error(KILN_ERR_SHAPE, "weight \"%s\" in %s has shape %s but the network declares %s", name, w->path,
                      kiln_dims_str(&t->dims, a, sizeof a), kiln_dims_str(&want, b, sizeof b));
  if (!kiln_dtype_is_float(t->dtype) && t->dtype != KILN_DTYPE_INT32)
    return kiln_error(KILN_ERR_UNSUPPORTED, "weight \"%s\" in %s is %s; constants must be float or int32", name, w->path,
                      kiln_st_dtype_name(t->st_dtype));
  return KILN_OK;
}

int32_t kiln_weight_source_add(kiln_weight_source *w, kiln_network *net, const char *name, int32_t rank,
                               const int64_t *dims) {
  kiln_safetensors_tensor t;
  kiln_status s = find(w, name, rank, dims, &t);
  if (s != KILN_OK) return s;
  /* safetensors data may be unaligned inside the file; the network copies it */
  return kiln_network_add_constant(net, name, t.dtype, rank, dims, t.data);
}

kiln_status kiln_weight_source_read_f32(kiln_weight_source *w, const char *name, int32_t rank, const int64_t *dims,
                                        float *out) {
  kiln_safetensors_tensor t;
  kiln_status s = find(w, name, rank, dims, &t);
  if (s != KILN_OK) return s;
  if (!kiln_dtype_is_float(t.dtype))
    return kiln_error(KILN_ERR_UNSUPPORTED, "weight \"%s\" in %s is not a float tensor", name, w->path);
  int64_t n = kiln_dims_count(&t.dims);
  size_t bytes = kiln_dtype_bytes(t.dtype, n);
  void *aligned = malloc(bytes + 1);
  if (!aligned) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading \"%s\"", name);
  memcpy(aligned, t.data, bytes); /* the file's data may be unaligned */
  kiln_convert_floats(out, KILN_DTYPE_FP32, aligned, t.dtype, n);
  free(aligned);
  return KILN_OK;
}

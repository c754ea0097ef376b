/* tests/plugins/scale_shift_plugin.c - a small external plugin library, as a user would write
 * one: "scale_shift" v1, y = x * scale + shift (fields: scale, shift as float32), CPU target.
 * Built as a shared library and loaded with kiln_plugin_registry_load / --plugins. */
#include <stdlib.h>
#include <string.h>

#include "kiln/plugin.h"

typedef struct scale_shift {
  float scale, shift;
} scale_shift;

static kiln_status ss_make(float scale, float shift, void **state) {
  scale_shift *s = malloc(sizeof *s);
  if (!s) return KILN_ERR_OUT_OF_MEMORY;
  s->scale = scale;
  s->shift = shift;
  *state = s;
  return KILN_OK;
}

static kiln_status ss_create(int32_t n, const kiln_plugin_field *f, void **state) {
  const kiln_plugin_field *a = kiln_plugin_field_find(n, f, "scale", KILN_PLUGIN_FIELD_FLOAT32);
  const kiln_plugin_field *b = kiln_plugin_field_find(n, f, "shift", KILN_PLUGIN_FIELD_FLOAT32);
  if (!a || !b || a->count != 1 || b->count != 1) {
    kiln_log(KILN_LOG_ERROR, "scale_shift needs float32 fields scale and shift");
    return KILN_ERR_INVALID_ARG;
  }
  return ss_make(*(const float *)a->data, *(const float *)b->data, state);
}

static kiln_status ss_deserialize(const void *data, size_t size, void **state) {
  float v[2];
  if (size != sizeof v) return KILN_ERR_FORMAT;
  memcpy(v, data, sizeof v);
  return ss_make(v[0], v[1], state);
}

static kiln_status ss_serialize(const void *state, void *buf, size_t *size) {
  const scale_shift *s = state;
  if (!buf) {
    *size = 2 * sizeof(float);
    return KILN_OK;
  }
  if (*size < 2 * sizeof(float)) return KILN_ERR_INVALID_ARG;
  memcpy(buf, &s->scale, sizeof(float));
  memcpy((char *)buf + sizeof(float), &s->shift, sizeof(float));
  *size = 2 * sizeof(float);
  return KILN_OK;
}

static void ss_destroy(void *state) { free(state); }

static kiln_status ss_shapes(const void *state, int32_t n_in, const kiln_plugin_desc *in, int32_t n_out,
                             kiln_plugin_desc *out) {
  (void)state;
  if (n_in != 1 || n_out != 1) return KILN_ERR_SHAPE;
  out[0] = in[0];
  return KILN_OK;
}

static int32_t ss_supports(const void *state, kiln_target target, int32_t n_in, const kiln_plugin_desc *in) {
  (void)state;
  return target == KILN_TARGET_CPU && n_in == 1 && in[0].dtype == KILN_DTYPE_FP32;
}

static kiln_status ss_enqueue(void *state, kiln_target target, int32_t tactic, int32_t n_in, const kiln_tensor *in,
                              int32_t n_out, kiln_tensor *out, void *workspace, void *stream) {
  const scale_shift *s = state;
  (void)tactic, (void)workspace, (void)stream;
  if (target != KILN_TARGET_CPU || n_in != 1 || n_out != 1) return KILN_ERR_UNSUPPORTED;
  int64_t n = kiln_dims_count(&in[0].shape);
  const float *x = in[0].data;
  float *y = out[0].data;
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * s->scale + s->shift;
  return KILN_OK;
}

static const kiln_plugin_creator creator = {
    KILN_PLUGIN_ABI_VERSION, "scale_shift", 1, 1, ss_create, ss_deserialize, ss_serialize, ss_destroy,
    ss_shapes, ss_supports, NULL, NULL, NULL, ss_enqueue};

kiln_status kiln_register_plugins(kiln_plugin_registry *reg, uint32_t abi_version) {
  if (abi_version != KILN_PLUGIN_ABI_VERSION) return KILN_ERR_VERSION;
  return kiln_plugin_registry_add(reg, &creator);
}

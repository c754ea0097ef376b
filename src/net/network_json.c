/* src/net/network_json.c - reading a network from JSON (format in kiln/network_json.h) with cJSON.
 * Every malformed input gives an error naming the layer or key and what was expected. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/file.h"
#include "kiln/network_json.h"
#include "kiln/plugin.h"
#include "net/network_internal.h"

/* Constants whose data the JSON file makes (a "value" or random) hold at most this many elements;
 * real weights come from safetensors files, which have no such limit. */
#define KILN_JSON_MAX_ELEMENTS ((int64_t)1 << 28)

typedef struct json_ctx {
  kiln_network *net;
  const char *base_dir;
  uint64_t seed;
  float scale;
  int random;
  kiln_weight_source *weights; /* optional safetensors file */
} json_ctx;

static kiln_status read_dims(const cJSON *arr, const char *what, int32_t *rank, int64_t *dims) {
  if (!cJSON_IsArray(arr)) return kiln_error(KILN_ERR_FORMAT, "%s: expected an array of integers", what);
  int32_t n = cJSON_GetArraySize(arr);
  if (n > KILN_MAX_DIMS) return kiln_error(KILN_ERR_FORMAT, "%s: at most %d dims (got %d)", what, KILN_MAX_DIMS, n);
  for (int32_t i = 0; i < n; i++) {
    const cJSON *v = cJSON_GetArrayItem(arr, i);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble || v->valuedouble > 9e15 ||
        v->valuedouble < -9e15)
      return kiln_error(KILN_ERR_FORMAT, "%s: element %d is not an integer", what, i);
    dims[i] = (int64_t)v->valuedouble;
  }
  *rank = n;
  return KILN_OK;
}

static const char *get_string(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double get_number(const cJSON *o, const char *key, double fallback) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

static kiln_status add_inputs(json_ctx *c, const cJSON *inputs) {
  const cJSON *in;
  cJSON_ArrayForEach(in, inputs) {
    const char *name = get_string(in, "name");
    const char *dt = get_string(in, "dtype");
    int32_t rank;
    int64_t dims[KILN_MAX_DIMS];
    if (!name) return kiln_error(KILN_ERR_FORMAT, "an input has no \"name\"");
    KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(in, "dims"), name, &rank, dims));
    kiln_dtype dtype = dt ? kiln_dtype_from_name(dt) : KILN_DTYPE_FP32;
    if (dtype == KILN_DTYPE_INVALID) return kiln_error(KILN_ERR_FORMAT, "input \"%s\": unknown dtype \"%s\"", name, dt);
    int32_t id = kiln_network_add_input(c->net, name, dtype, rank, dims);
    if (id < 0) return (kiln_status)id;
  }
  return KILN_OK;
}

static float next_uniform(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return (float)((*s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static kiln_status add_constant(json_ctx *c, const cJSON *k) {
  const char *name = get_string(k, "name");
  const char *dt = get_string(k, "dtype");
  int32_t rank;
  int64_t dims[KILN_MAX_DIMS];
  if (!name) return kiln_error(KILN_ERR_FORMAT, "a constant has no \"name\"");
  KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(k, "dims"), name, &rank, dims));
  kiln_dtype dtype = dt ? kiln_dtype_from_name(dt) : KILN_DTYPE_FP32;
  if (dtype != KILN_DTYPE_FP32 && dtype != KILN_DTYPE_INT32)
    return kiln_error(KILN_ERR_FORMAT, "constant \"%s\": JSON constants are fp32 or int32", name);
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) {
    if (dims[i] < 0 || (dims[i] && n > KILN_JSON_MAX_ELEMENTS / dims[i]))
      return kiln_error(KILN_ERR_FORMAT,
                        "constant \"%s\": dims must be >= 0 and hold at most 2^28 elements; put large weights in a "
                        "safetensors file (\"weights\")",
                        name);
    n *= dims[i];
  }
  const cJSON *value = cJSON_GetObjectItemCaseSensitive(k, "value");
  if (!cJSON_IsNumber(value) && c->weights) { /* from the weights file */
    int32_t id = kiln_weight_source_add(c->weights, c->net, name, rank, dims);
    if (id != KILN_ERR_NOT_FOUND) return id < 0 ? (kiln_status)id : KILN_OK;
  }
  if (!cJSON_IsNumber(value) && !c->random)
    return kiln_error(KILN_ERR_FORMAT,
                      "constant \"%s\" has no data: give it a \"value\", put it in the \"weights\" file, or set \"random_weights\"",
                      name);
  void *data = malloc(kiln_dtype_bytes(dtype, n) + 4);
  if (!data) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory for constant \"%s\"", name);
  for (int64_t i = 0; i < n; i++) {
    float v = cJSON_IsNumber(value) ? (float)value->valuedouble : c->scale * next_uniform(&c->seed);
    if (dtype == KILN_DTYPE_FP32) ((float *)data)[i] = v;
    else ((int32_t *)data)[i] = (int32_t)v;
  }
  int32_t id = kiln_network_add_constant(c->net, name, dtype, rank, dims, data);
  free(data);
  return id < 0 ? (kiln_status)id : KILN_OK;
}

static kiln_status resolve(json_ctx *c, const char *lname, const cJSON *inputs, int32_t *ids, int32_t *n) {
  if (!cJSON_IsArray(inputs)) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": \"inputs\" must be an array of tensor names", lname);
  *n = cJSON_GetArraySize(inputs);
  if (*n > KILN_MAX_LAYER_IO) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": too many inputs", lname);
  for (int32_t i = 0; i < *n; i++) {
    const cJSON *v = cJSON_GetArrayItem(inputs, i);
    if (!cJSON_IsString(v)) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": input %d is not a tensor name", lname, i);
    ids[i] = kiln_graph_find_tensor(&c->net->g, v->valuestring);
    if (ids[i] < 0)
      return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": input \"%s\" is not defined before this layer (inputs, constants and earlier layers only)",
                        lname, v->valuestring);
  }
  return KILN_OK;
}

static kiln_status need_inputs(const char *lname, const char *op, int32_t n, int32_t lo, int32_t hi) {
  if (n < lo || n > hi)
    return kiln_error(KILN_ERR_FORMAT, "layer \"%s\" (%s) takes %d%s%d inputs, got %d", lname, op, lo, lo == hi ? "" : " to ",
                      lo == hi ? lo : hi, n);
  return KILN_OK;
}

static kiln_status read_fields(const char *lname, const cJSON *arr, kiln_plugin_field *f, void **store, int32_t *n) {
  *n = 0;
  if (!arr) return KILN_OK;
  if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > 64)
    return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": \"fields\" must be an array of at most 64 objects", lname);
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    const char *name = get_string(it, "name"), *type = get_string(it, "type");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
    if (!name || !type || !v) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": each field needs name, type and value", lname);
    kiln_plugin_field *fd = &f[*n];
    fd->name = name;
    if (strcmp(type, "string") == 0 && cJSON_IsString(v)) {
      fd->type = KILN_PLUGIN_FIELD_STRING;
      fd->count = (int32_t)strlen(v->valuestring);
      fd->data = v->valuestring;
    } else if ((strcmp(type, "int32") == 0 || strcmp(type, "float32") == 0) && (cJSON_IsNumber(v) || cJSON_IsArray(v))) {
      int32_t cnt = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : 1;
      if (cnt > 4096) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": field %s has too many values", lname, name);
      void *buf = malloc((size_t)cnt * 4 + 4);
      if (!buf) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
      store[*n] = buf;
      for (int32_t i = 0; i < cnt; i++) {
        const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, i) : v;
        double d = cJSON_IsNumber(e) ? e->valuedouble : 0;
        if (type[0] == 'i') ((int32_t *)buf)[i] = (int32_t)d;
        else ((float *)buf)[i] = (float)d;
      }
      fd->type = type[0] == 'i' ? KILN_PLUGIN_FIELD_INT32 : KILN_PLUGIN_FIELD_FLOAT32;
      fd->count = cnt;
      fd->data = buf;
    } else {
      return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": field %s: type must be int32, float32 or string, matching its value", lname, name);
    }
    (*n)++;
  }
  return KILN_OK;
}

static kiln_status add_plugin_layer(json_ctx *c, const cJSON *l, const char *lname, const int32_t *ids, int32_t n) {
  kiln_plugin_field fields[64];
  void *store[64] = {0};
  int32_t nf = 0;
  const char *plugin = get_string(l, "plugin");
  if (!plugin) return kiln_error(KILN_ERR_FORMAT, "layer \"%s\": a plugin layer needs \"plugin\" (its registered name)", lname);
  kiln_status s = read_fields(lname, cJSON_GetObjectItemCaseSensitive(l, "fields"), fields, store, &nf);
  if (s == KILN_OK) {
    int32_t id = kiln_network_add_plugin(c->net, lname, plugin, (int32_t)get_number(l, "version", 1), n, ids, nf, fields);
    if (id < 0) s = (kiln_status)id;
  }
  for (int32_t i = 0; i < 64; i++) free(store[i]);
  return s;
}

static kiln_status add_layer(json_ctx *c, const cJSON *l, int32_t index) {
  char lname[256];
  const char *op = get_string(l, "op");
  const char *name = get_string(l, "name");
  int32_t ids[KILN_MAX_LAYER_IO], n = 0, id = 0, rank;
  int64_t dims[KILN_MAX_DIMS];
  if (!op) return kiln_error(KILN_ERR_FORMAT, "layer %d has no \"op\"", index);
  snprintf(lname, sizeof lname, "%s", name ? name : "");
  if (!name) snprintf(lname, sizeof lname, "%s_%d", op, index);
  KILN_TRY(resolve(c, lname, cJSON_GetObjectItemCaseSensitive(l, "inputs"), ids, &n));
  kiln_network *net = c->net;
  if (strcmp(op, "matmul") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 2, 3));
    id = kiln_network_add_matmul(net, lname, ids[0], ids[1], n == 3 ? ids[2] : -1);
  } else if (strcmp(op, "add") == 0 || strcmp(op, "mul") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 2, 2));
    id = op[0] == 'a' ? kiln_network_add_add(net, lname, ids[0], ids[1]) : kiln_network_add_mul(net, lname, ids[0], ids[1]);
  } else if (strcmp(op, "gelu") == 0 || strcmp(op, "relu") == 0 || strcmp(op, "silu") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 1, 1));
    kiln_activation a = op[0] == 'g' ? KILN_ACTIVATION_GELU : op[0] == 'r' ? KILN_ACTIVATION_RELU : KILN_ACTIVATION_SILU;
    id = kiln_network_add_activation(net, lname, ids[0], a);
  } else if (strcmp(op, "softmax") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 1, 1));
    id = kiln_network_add_softmax(net, lname, ids[0]);
  } else if (strcmp(op, "layernorm") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 3, 3));
    id = kiln_network_add_layernorm(net, lname, ids[0], ids[1], ids[2], (float)get_number(l, "eps", 1e-5));
  } else if (strcmp(op, "embedding") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 2, 2));
    id = kiln_network_add_embedding(net, lname, ids[0], ids[1]);
  } else if (strcmp(op, "conv1d") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 2, 3));
    id = kiln_network_add_conv1d(net, lname, ids[0], ids[1], n == 3 ? ids[2] : -1, (int32_t)get_number(l, "stride", 1));
  } else if (strcmp(op, "reshape") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 1, 1));
    KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(l, "dims"), lname, &rank, dims));
    id = kiln_network_add_reshape(net, lname, ids[0], rank, dims);
  } else if (strcmp(op, "transpose") == 0) {
    int32_t perm[KILN_MAX_DIMS];
    KILN_TRY(need_inputs(lname, op, n, 1, 1));
    KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(l, "perm"), lname, &rank, dims));
    for (int32_t i = 0; i < rank; i++) perm[i] = (int32_t)dims[i];
    id = kiln_network_add_transpose(net, lname, ids[0], rank, perm);
  } else if (strcmp(op, "concat") == 0) {
    id = kiln_network_add_concat(net, lname, n, ids, (int32_t)get_number(l, "axis", 0));
  } else if (strcmp(op, "slice") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 1, 1));
    id = kiln_network_add_slice(net, lname, ids[0], (int32_t)get_number(l, "axis", 0), (int64_t)get_number(l, "start", 0),
                                (int64_t)get_number(l, "end", 9.0e15));
  } else if (strcmp(op, "attention") == 0) {
    KILN_TRY(need_inputs(lname, op, n, 3, 3));
    const cJSON *causal = cJSON_GetObjectItemCaseSensitive(l, "causal");
    id = kiln_network_add_attention(net, lname, ids[0], ids[1], ids[2], (float)get_number(l, "scale", 0),
                                    cJSON_IsTrue(causal) ? 1 : 0);
  } else if (strcmp(op, "plugin") == 0) {
    return add_plugin_layer(c, l, lname, ids, n);
  } else {
    return kiln_error(KILN_ERR_FORMAT,
                      "layer \"%s\": unknown op \"%s\" (matmul, add, mul, gelu, relu, silu, softmax, layernorm, embedding, "
                      "conv1d, reshape, transpose, concat, slice, attention, plugin)",
                      lname, op);
  }
  return id < 0 ? (kiln_status)id : KILN_OK;
}

static kiln_status add_outputs(json_ctx *c, const cJSON *outputs) {
  const cJSON *o;
  if (!cJSON_IsArray(outputs) || cJSON_GetArraySize(outputs) == 0)
    return kiln_error(KILN_ERR_FORMAT, "\"outputs\" must be a non-empty array of tensor names");
  cJSON_ArrayForEach(o, outputs) {
    const char *tensor = cJSON_IsString(o) ? o->valuestring : get_string(o, "tensor");
    const char *name = cJSON_IsString(o) ? NULL : get_string(o, "name");
    if (!tensor) return kiln_error(KILN_ERR_FORMAT, "an output names no tensor");
    int32_t id = kiln_graph_find_tensor(&c->net->g, tensor);
    if (id < 0) return kiln_error(KILN_ERR_FORMAT, "output \"%s\" is not a tensor of the network", tensor);
    KILN_TRY(kiln_network_mark_output(c->net, id, name));
  }
  return KILN_OK;
}

static kiln_status add_profiles(json_ctx *c, const cJSON *profiles) {
  const cJSON *p;
  cJSON_ArrayForEach(p, profiles) {
    int32_t idx = kiln_network_add_profile(c->net);
    if (idx < 0) return (kiln_status)idx;
    const cJSON *in;
    cJSON_ArrayForEach(in, p) {
      int64_t mn[KILN_MAX_DIMS], op[KILN_MAX_DIMS], mx[KILN_MAX_DIMS];
      int32_t r1, r2, r3;
      KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(in, "min"), in->string, &r1, mn));
      KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(in, "opt"), in->string, &r2, op));
      KILN_TRY(read_dims(cJSON_GetObjectItemCaseSensitive(in, "max"), in->string, &r3, mx));
      int32_t id = kiln_graph_find_tensor(&c->net->g, in->string);
      if (id < 0 || r1 != r2 || r2 != r3 || r1 != c->net->g.tensors[id].dims.rank)
        return kiln_error(KILN_ERR_FORMAT, "profile %d: \"%s\" must be an input, with min/opt/max of its rank", idx, in->string);
      KILN_TRY(kiln_network_set_profile_dims(c->net, idx, in->string, mn, op, mx));
    }
  }
  return KILN_OK;
}

static kiln_status parse_root(json_ctx *c, const cJSON *root) {
  if (!cJSON_IsObject(root)) return kiln_error(KILN_ERR_FORMAT, "the network file must hold one JSON object");
  const cJSON *rw = cJSON_GetObjectItemCaseSensitive(root, "random_weights");
  if (cJSON_IsObject(rw) || cJSON_IsTrue(rw)) {
    c->random = 1;
    c->seed = (uint64_t)get_number(rw, "seed", 1) * 0x9e3779b97f4a7c15ull + 1;
    c->scale = (float)get_number(rw, "scale", 0.5);
  }
  const char *wpath = get_string(root, "weights");
  if (wpath) KILN_TRY(kiln_weight_source_open(wpath, c->base_dir, &c->weights));
  KILN_TRY(add_inputs(c, cJSON_GetObjectItemCaseSensitive(root, "inputs")));
  const cJSON *k;
  cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(root, "constants")) KILN_TRY(add_constant(c, k));
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
  if (!cJSON_IsArray(layers)) return kiln_error(KILN_ERR_FORMAT, "\"layers\" must be an array");
  int32_t i = 0;
  const cJSON *l;
  cJSON_ArrayForEach(l, layers) KILN_TRY(add_layer(c, l, i++));
  KILN_TRY(add_outputs(c, cJSON_GetObjectItemCaseSensitive(root, "outputs")));
  return add_profiles(c, cJSON_GetObjectItemCaseSensitive(root, "profiles"));
}

kiln_status kiln_network_from_json(const char *text, size_t size, const char *base_dir, kiln_network **out) {
  if (!text || !out) return kiln_error(KILN_ERR_INVALID_ARG, "network JSON: NULL argument");
  cJSON *root = cJSON_ParseWithLength(text, size);
  if (!root) {
    const char *at = cJSON_GetErrorPtr();
    long off = at && at >= text && at <= text + size ? (long)(at - text) : -1;
    return kiln_error(KILN_ERR_FORMAT, "the network file is not valid JSON (near byte %ld)", off);
  }
  json_ctx c;
  memset(&c, 0, sizeof c);
  c.base_dir = base_dir;
  kiln_status s = kiln_network_create(&c.net);
  if (s == KILN_OK) s = parse_root(&c, root);
  cJSON_Delete(root);
  kiln_weight_source_close(c.weights);
  if (s != KILN_OK) {
    kiln_network_destroy(c.net);
    return s;
  }
  *out = c.net;
  return KILN_OK;
}

kiln_status kiln_network_from_json_file(const char *path, kiln_network **out) {
  char *text = NULL;
  size_t size = 0;
  KILN_TRY(kiln_read_file(path, (size_t)64 << 20, &text, &size));
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  kiln_status s = kiln_network_from_json(text, size, dir, out);
  free(text);
  return s == KILN_OK ? s : kiln_error_context(s, "%s: ", path);
}

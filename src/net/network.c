/* src/net/network.c - the public network-definition API (network.h) over the graph IR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/network.h"
#include "kiln/plugin.h"
#include "net/graph.h"
#include "net/network_internal.h"

kiln_status kiln_network_create(kiln_network **out) {
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_network_create: out is NULL");
  kiln_network *net = calloc(1, sizeof *net);
  if (!net) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a network");
  kiln_graph_init(&net->g);
  *out = net;
  return KILN_OK;
}

void kiln_network_destroy(kiln_network *net) {
  if (!net) return;
  kiln_graph_free(&net->g);
  free(net);
}

const kiln_graph *kiln_network_graph(const kiln_network *net) { return &net->g; }

static int dims_valid(int32_t rank, const int64_t *dims, int allow_dynamic) {
  if (rank < 0 || rank > KILN_MAX_DIMS || (rank > 0 && !dims)) return 0;
  for (int32_t i = 0; i < rank; i++)
    if (dims[i] < 0 && !(allow_dynamic && dims[i] == -1)) return 0;
  return 1;
}

static kiln_dims make_dims(int32_t rank, const int64_t *dims) {
  kiln_dims d;
  memset(&d, 0, sizeof d);
  d.rank = rank;
  for (int32_t i = 0; i < rank; i++) d.d[i] = dims[i];
  return d;
}

int32_t kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype, int32_t rank,
                               const int64_t *dims) {
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  if (dtype != KILN_DTYPE_FP32 && dtype != KILN_DTYPE_FP16 && dtype != KILN_DTYPE_BF16 &&
      dtype != KILN_DTYPE_INT32 && dtype != KILN_DTYPE_INT8)
    return kiln_error(KILN_ERR_UNSUPPORTED, "input \"%s\": dtype %s is not supported for inputs; use fp32, fp16, bf16, int32 or int8",
                      name ? name : "?", kiln_dtype_name(dtype));
  if (!dims_valid(rank, dims, 1))
    return kiln_error(KILN_ERR_INVALID_ARG, "input \"%s\": rank must be 0..%d and dims >= 0 or -1 (dynamic)",
                      name ? name : "?", KILN_MAX_DIMS);
  kiln_dims d = make_dims(rank, dims);
  return kiln_graph_add_tensor(&net->g, name, KILN_TENSOR_INPUT, dtype, &d);
}

int32_t kiln_network_add_constant(kiln_network *net, const char *name, kiln_dtype dtype, int32_t rank,
                                  const int64_t *dims, const void *data) {
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  if (!kiln_dtype_is_float(dtype) && dtype != KILN_DTYPE_INT32)
    return kiln_error(KILN_ERR_UNSUPPORTED, "constant \"%s\": dtype %s is not supported; use fp32, fp16, bf16 or int32",
                      name ? name : "?", kiln_dtype_name(dtype));
  if (!dims_valid(rank, dims, 0))
    return kiln_error(KILN_ERR_INVALID_ARG, "constant \"%s\": rank must be 0..%d with dims >= 0", name ? name : "?",
                      KILN_MAX_DIMS);
  kiln_dims d = make_dims(rank, dims);
  size_t bytes = kiln_dtype_bytes(dtype, kiln_dims_count(&d));
  if (bytes && !data) return kiln_error(KILN_ERR_INVALID_ARG, "constant \"%s\": data is NULL", name ? name : "?");
  void *copy = malloc(bytes ? bytes : 1);
  if (!copy) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory copying constant \"%s\"", name ? name : "?");
  if (bytes) memcpy(copy, data, bytes);
  int32_t id = kiln_graph_add_tensor(&net->g, name, KILN_TENSOR_CONSTANT, dtype, &d);
  if (id < 0) {
    free(copy);
    return id;
  }
  net->g.tensors[id].data = copy;
  net->g.tensors[id].bytes = bytes;
  return id;
}

/* Name for a layer: the caller's, or "<op>_<n>". Output tensors are named after their layer. */
static void layer_name(kiln_network *net, const char *name, kiln_op op, char *buf, size_t n) {
  if (name && *name)
    snprintf(buf, n, "%s", name);
  else
    snprintf(buf, n, "%s_%d", kiln_op_name(op), net->g.n_layers);
}

static int32_t check_ids(const kiln_network *net, const char *lname, int32_t n, const int32_t *ids) {
  for (int32_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= net->g.n_tensors)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "layer \"%s\": input %d is tensor id %d, which this network does not have", lname, i, ids[i]);
  return KILN_OK;
}

static int32_t require_constant(const kiln_network *net, const char *lname, int32_t id, const char *what) {
  if (net->g.tensors[id].kind != KILN_TENSOR_CONSTANT)
    return kiln_error(KILN_ERR_INVALID_ARG, "layer \"%s\": the %s must be a constant (kiln_network_add_constant)",
                      lname, what);
  return KILN_OK;
}

/* Add a layer with n_out float outputs named "<layer>" (and "<layer>:1", ...). Returns the first output id. */
int32_t kiln_network_add_layer_(kiln_network *net, const char *name, kiln_op op, int32_t n_in, const int32_t *in,
                                const kiln_op_params *p, int32_t n_out, const kiln_dtype *out_dtypes) {
  char lname[256], tname[300];
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  layer_name(net, name, op, lname, sizeof lname);
  if (n_in > KILN_MAX_LAYER_IO || n_out < 1 || n_out > KILN_MAX_LAYER_IO)
    return kiln_error(KILN_ERR_INVALID_ARG, "layer \"%s\": %d inputs / %d outputs is out of range", lname, n_in, n_out);
  KILN_TRY(check_ids(net, lname, n_in, in));
  for (int32_t i = 0; i < n_out; i++) {
    snprintf(tname, sizeof tname, i ? "%s:%d" : "%s", lname, i);
    if (kiln_graph_find_tensor(&net->g, tname) >= 0)
      return kiln_error(KILN_ERR_INVALID_ARG, "name \"%s\" is used twice; give each layer a unique name", tname);
  }
  int32_t li = kiln_graph_add_layer(&net->g, lname, op, n_in, in, p);
  if (li < 0) return li;
  kiln_layer_def *l = &net->g.layers[li];
  int32_t first = -1;
  for (int32_t i = 0; i < n_out; i++) {
    snprintf(tname, sizeof tname, i ? "%s:%d" : "%s", lname, i);
    int32_t t = kiln_graph_add_tensor(&net->g, tname, KILN_TENSOR_ACTIVATION,
                                      out_dtypes ? out_dtypes[i] : KILN_DTYPE_FP32, NULL);
    if (t < 0) {
      net->g.n_layers--; /* roll back: the layer never became visible */
      free(net->g.layers[li].name);
      return t;
    }
    l = &net->g.layers[li];
    net->g.tensors[t].producer = li;
    l->out[l->n_out++] = t;
    if (first < 0) first = t;
  }
  return first;
}

int32_t kiln_network_add_matmul(kiln_network *net, const char *name, int32_t x, int32_t weight, int32_t bias) {
  int32_t in[3] = {x, weight, bias};
  int32_t n = bias >= 0 ? 3 : 2;
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  KILN_TRY(check_ids(net, name ? name : "matmul", n, in));
  KILN_TRY(require_constant(net, name ? name : "matmul", weight, "weight"));
  if (bias >= 0) KILN_TRY(require_constant(net, name ? name : "matmul", bias, "bias"));
  kiln_op_params p = {0};
  return kiln_network_add_layer_(net, name, KILN_OP_MATMUL, n, in, &p, 1, NULL);
}

int32_t kiln_network_add_add(kiln_network *net, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  kiln_op_params p = {0};
  return kiln_network_add_layer_(net, name, KILN_OP_ADD, 2, in, &p, 1, NULL);
}

int32_t kiln_network_add_mul(kiln_network *net, const char *name, int32_t a, int32_t b) {
  int32_t in[2] = {a, b};
  kiln_op_params p = {0};
  return kiln_network_add_layer_(net, name, KILN_OP_MUL, 2, in, &p, 1, NULL);
}

int32_t kiln_network_add_activation(kiln_network *net, const char *name, int32_t x, kiln_activation act) {
  kiln_op_params p = {0};
  if (act < KILN_ACTIVATION_GELU || act > KILN_ACTIVATION_SILU)
    return kiln_error(KILN_ERR_INVALID_ARG, "unknown activation %d; use KILN_ACTIVATION_GELU, _RELU or _SILU", (int)act);
  p.activation = act;
  return kiln_network_add_layer_(net, name, KILN_OP_ACTIVATION, 1, &x, &p, 1, NULL);
}

int32_t kiln_network_add_layernorm(kiln_network *net, const char *name, int32_t x, int32_t gamma, int32_t beta,
                                   float eps) {
  int32_t in[3] = {x, gamma, beta};
  kiln_op_params p = {0};
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  KILN_TRY(check_ids(net, name ? name : "layernorm", 3, in));
  KILN_TRY(require_constant(net, name ? name : "layernorm", gamma, "gamma"));
  KILN_TRY(require_constant(net, name ? name : "layernorm", beta, "beta"));
  if (!(eps > 0.0f)) return kiln_error(KILN_ERR_INVALID_ARG, "layernorm eps must be > 0 (got %g)", (double)eps);
  p.eps = eps;
  return kiln_network_add_layer_(net, name, KILN_OP_LAYERNORM, 3, in, &p, 1, NULL);
}

int32_t kiln_network_add_softmax(kiln_network *net, const char *name, int32_t x) {
  kiln_op_params p = {0};
  return kiln_network_add_layer_(net, name, KILN_OP_SOFTMAX, 1, &x, &p, 1, NULL);
}

int32_t kiln_network_add_embedding(kiln_network *net, const char *name, int32_t table, int32_t ids) {
  int32_t in[2] = {table, ids};
  kiln_op_params p = {0};
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  KILN_TRY(check_ids(net, name ? name : "embedding", 2, in));
  KILN_TRY(require_constant(net, name ? name : "embedding", table, "table"));
  if (net->g.tensors[ids].dtype != KILN_DTYPE_INT32)
    return kiln_error(KILN_ERR_INVALID_ARG, "embedding \"%s\": ids must be int32", name ? name : "?");
  return kiln_network_add_layer_(net, name, KILN_OP_EMBEDDING, 2, in, &p, 1, NULL);
}

int32_t kiln_network_add_conv1d(kiln_network *net, const char *name, int32_t x, int32_t weight, int32_t bias,
                                int32_t stride) {
  int32_t in[3] = {x, weight, bias};
  int32_t n = bias >= 0 ? 3 : 2;
  kiln_op_params p = {0};
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  KILN_TRY(check_ids(net, name ? name : "conv1d", n, in));
  KILN_TRY(require_constant(net, name ? name : "conv1d", weight, "weight"));
  if (stride != 1 && stride != 2) return kiln_error(KILN_ERR_INVALID_ARG, "conv1d stride must be 1 or 2 (got %d)", stride);
  p.stride = stride;
  return kiln_network_add_layer_(net, name, KILN_OP_CONV1D, n, in, &p, 1, NULL);
}

int32_t kiln_network_add_reshape(kiln_network *net, const char *name, int32_t x, int32_t rank, const int64_t *dims) {
  kiln_op_params p = {0};
  if (rank < 0 || rank > KILN_MAX_DIMS || (rank && !dims))
    return kiln_error(KILN_ERR_INVALID_ARG, "reshape rank must be 0..%d", KILN_MAX_DIMS);
  p.dims = make_dims(rank, dims);
  return kiln_network_add_layer_(net, name, KILN_OP_RESHAPE, 1, &x, &p, 1, NULL);
}

int32_t kiln_network_add_transpose(kiln_network *net, const char *name, int32_t x, int32_t rank, const int32_t *perm) {
  kiln_op_params p = {0};
  if (rank < 0 || rank > KILN_MAX_DIMS || (rank && !perm))
    return kiln_error(KILN_ERR_INVALID_ARG, "transpose rank must be 0..%d", KILN_MAX_DIMS);
  p.dims.rank = rank;
  for (int32_t i = 0; i < rank; i++) p.dims.d[i] = perm[i];
  return kiln_network_add_layer_(net, name, KILN_OP_TRANSPOSE, 1, &x, &p, 1, NULL);
}

int32_t kiln_network_add_concat(kiln_network *net, const char *name, int32_t n, const int32_t *inputs, int32_t axis) {
  kiln_op_params p = {0};
  if (n < 1 || n > KILN_MAX_LAYER_IO || !inputs)
    return kiln_error(KILN_ERR_INVALID_ARG, "concat takes 1..%d inputs (got %d)", KILN_MAX_LAYER_IO, n);
  p.axis = axis;
  return kiln_network_add_layer_(net, name, KILN_OP_CONCAT, n, inputs, &p, 1, NULL);
}

int32_t kiln_network_add_slice(kiln_network *net, const char *name, int32_t x, int32_t axis, int64_t start, int64_t end) {
  kiln_op_params p = {0};
  p.axis = axis;
  p.start = start;
  p.end = end;
  return kiln_network_add_layer_(net, name, KILN_OP_SLICE, 1, &x, &p, 1, NULL);
}

int32_t kiln_network_add_attention(kiln_network *net, const char *name, int32_t q, int32_t k, int32_t v, float scale,
                                   int32_t causal) {
  int32_t in[3] = {q, k, v};
  kiln_op_params p = {0};
  if (!(scale > 0.0f)) return kiln_error(KILN_ERR_INVALID_ARG, "attention scale must be > 0 (got %g)", (double)scale);
  p.scale = scale;
  p.causal = causal ? 1 : 0;
  return kiln_network_add_layer_(net, name, KILN_OP_ATTENTION, 3, in, &p, 1, NULL);
}

/* cache_dtype 0: float caches; KILN_DTYPE_INT8: int8 caches, whose dtype and the two scale inputs
 * (the last two of `in`) are checked here. */
static int32_t kv_attention(kiln_network *net, const char *name, int32_t n_in, const int32_t *in, int32_t heads,
                            float scale, int32_t self, int32_t cache_dtype) {
  kiln_op_params p = {0};
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  if (!(scale > 0.0f)) return kiln_error(KILN_ERR_INVALID_ARG, "attention scale must be > 0 (got %g)", (double)scale);
  if (heads < 1) return kiln_error(KILN_ERR_INVALID_ARG, "attention heads must be >= 1 (got %d)", heads);
  if (cache_dtype) {
    const char *lname = name ? name : "kv_attention";
    KILN_TRY(check_ids(net, lname, n_in, in));
    for (int32_t i = 1; i < 3; i++)
      if (net->g.tensors[in[i]].dtype != KILN_DTYPE_INT8)
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: the %s cache \"%s\" must be int8 (it is %s)", lname, i == 1 ? "key" : "value",
                          net->g.tensors[in[i]].name, kiln_dtype_name(net->g.tensors[in[i]].dtype));
    for (int32_t i = n_in - 2; i < n_in; i++)
      if (!kiln_dtype_is_float(net->g.tensors[in[i]].dtype))
        return kiln_error(KILN_ERR_INVALID_ARG, "%s: the scales \"%s\" must be a float tensor", lname, net->g.tensors[in[i]].name);
  }
  p.scale = scale;
  p.heads = heads;
  p.causal = self;
  p.cache_dtype = cache_dtype;
  return kiln_network_add_layer_(net, name, KILN_OP_KV_ATTENTION, n_in, in, &p, 1, NULL);
}

int32_t kiln_network_add_cached_self_attention(kiln_network *net, const char *name, int32_t qkv, int32_t cache_k,
                                               int32_t cache_v, int32_t lengths, int32_t heads, float scale) {
  int32_t in[4] = {qkv, cache_k, cache_v, lengths};
  return kv_attention(net, name, 4, in, heads, scale, 1, 0);
}

int32_t kiln_network_add_cross_attention(kiln_network *net, const char *name, int32_t q, int32_t k, int32_t v,
                                         int32_t heads, float scale) {
  int32_t in[3] = {q, k, v};
  return kv_attention(net, name, 3, in, heads, scale, 0, 0);
}

int32_t kiln_network_add_cached_self_attention_int8(kiln_network *net, const char *name, int32_t qkv, int32_t cache_k,
                                                    int32_t cache_v, int32_t k_scale, int32_t v_scale, int32_t lengths,
                                                    int32_t heads, float scale) {
  int32_t in[6] = {qkv, cache_k, cache_v, lengths, k_scale, v_scale};
  return kv_attention(net, name, 6, in, heads, scale, 1, KILN_DTYPE_INT8);
}

int32_t kiln_network_add_cross_attention_int8(kiln_network *net, const char *name, int32_t q, int32_t k, int32_t v,
                                              int32_t k_scale, int32_t v_scale, int32_t heads, float scale) {
  int32_t in[5] = {q, k, v, k_scale, v_scale};
  return kv_attention(net, name, 5, in, heads, scale, 0, KILN_DTYPE_INT8);
}

int32_t kiln_network_add_quantize_int8(kiln_network *net, const char *name, int32_t x) {
  kiln_op_params p = {0};
  kiln_dtype out[2] = {KILN_DTYPE_INT8, KILN_DTYPE_FP32};
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  KILN_TRY(check_ids(net, name ? name : "quantize_int8", 1, &x));
  if (!kiln_dtype_is_float(net->g.tensors[x].dtype))
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: \"%s\" is %s; only float tensors are quantized", name ? name : "quantize_int8",
                      net->g.tensors[x].name, kiln_dtype_name(net->g.tensors[x].dtype));
  return kiln_network_add_layer_(net, name, KILN_OP_QUANTIZE_INT8, 1, &x, &p, 2, out);
}

kiln_status kiln_network_mark_output(kiln_network *net, int32_t tensor, const char *name) {
  if (!net || tensor < 0 || tensor >= net->g.n_tensors)
    return kiln_error(KILN_ERR_INVALID_ARG, "mark_output: tensor id %d does not exist", tensor);
  kiln_tensor_def *t = &net->g.tensors[tensor];
  if (t->kind != KILN_TENSOR_ACTIVATION)
    return kiln_error(KILN_ERR_INVALID_ARG, "mark_output: \"%s\" is an input or constant; only layer outputs can be outputs",
                      t->name);
  if (name && *name && strcmp(name, t->name) != 0) {
    if (kiln_graph_find_tensor(&net->g, name) >= 0)
      return kiln_error(KILN_ERR_INVALID_ARG, "mark_output: name \"%s\" is already used", name);
    size_t n = strlen(name) + 1;
    char *copy = malloc(n);
    if (!copy) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(copy, name, n);
    free(t->name);
    t->name = copy;
  }
  t->is_output = 1;
  return KILN_OK;
}

int32_t kiln_network_add_profile(kiln_network *net) {
  if (!net) return kiln_error(KILN_ERR_INVALID_ARG, "network is NULL");
  kiln_graph *g = &net->g;
  if (g->n_profiles >= g->cap_profiles) {
    int32_t cap = g->cap_profiles ? g->cap_profiles * 2 : 4;
    kiln_profile_def *p = realloc(g->profiles, (size_t)cap * sizeof *p);
    if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory adding a profile");
    g->profiles = p;
    g->cap_profiles = cap;
  }
  memset(&g->profiles[g->n_profiles], 0, sizeof g->profiles[0]);
  return g->n_profiles++;
}

kiln_status kiln_network_set_profile_dims(kiln_network *net, int32_t profile, const char *input, const int64_t *min,
                                          const int64_t *opt, const int64_t *max) {
  if (!net || profile < 0 || profile >= net->g.n_profiles)
    return kiln_error(KILN_ERR_INVALID_ARG, "profile %d does not exist; create it with kiln_network_add_profile", profile);
  if (!input || !min || !opt || !max) return kiln_error(KILN_ERR_INVALID_ARG, "set_profile_dims: NULL argument");
  int32_t id = kiln_graph_find_tensor(&net->g, input);
  if (id < 0 || net->g.tensors[id].kind != KILN_TENSOR_INPUT)
    return kiln_error(KILN_ERR_NOT_FOUND, "profile %d: \"%s\" is not an input of this network", profile, input);
  const kiln_dims *decl = &net->g.tensors[id].dims;
  kiln_dims dmin = make_dims(decl->rank, min), dopt = make_dims(decl->rank, opt), dmax = make_dims(decl->rank, max);
  for (int32_t i = 0; i < decl->rank; i++) {
    if (decl->d[i] >= 0) {
      if (min[i] != decl->d[i] || opt[i] != decl->d[i] || max[i] != decl->d[i])
        return kiln_error(KILN_ERR_INVALID_ARG, "profile %d, input \"%s\": dim %d is fixed at %lld; min/opt/max must equal it",
                          profile, input, i, (long long)decl->d[i]);
    } else if (!(0 <= min[i] && min[i] <= opt[i] && opt[i] <= max[i])) {
      return kiln_error(KILN_ERR_INVALID_ARG, "profile %d, input \"%s\": dim %d needs 0 <= min <= opt <= max (got %lld, %lld, %lld)",
                        profile, input, i, (long long)min[i], (long long)opt[i], (long long)max[i]);
    }
  }
  kiln_profile_def *p = &net->g.profiles[profile];
  int32_t at = -1;
  for (int32_t i = 0; i < p->n; i++)
    if (p->tensor[i] == id) at = i;
  if (at < 0) {
    int32_t n = p->n + 1;
    int32_t *t = realloc(p->tensor, (size_t)n * sizeof *t);
    if (t) p->tensor = t;
    kiln_dims *a = realloc(p->min, (size_t)n * sizeof *a);
    if (a) p->min = a;
    kiln_dims *b = realloc(p->opt, (size_t)n * sizeof *b);
    if (b) p->opt = b;
    kiln_dims *c = realloc(p->max, (size_t)n * sizeof *c);
    if (c) p->max = c;
    if (!t || !a || !b || !c) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory setting a profile");
    at = p->n++;
    p->tensor[at] = id;
  }
  p->min[at] = dmin;
  p->opt[at] = dopt;
  p->max[at] = dmax;
  return KILN_OK;
}

int32_t kiln_network_find_tensor(const kiln_network *net, const char *name) {
  if (!net || !name) return kiln_error(KILN_ERR_INVALID_ARG, "find_tensor: NULL argument");
  int32_t id = kiln_graph_find_tensor(&net->g, name);
  return id >= 0 ? id : kiln_error(KILN_ERR_NOT_FOUND, "no tensor named \"%s\"", name);
}

int32_t kiln_network_num_layers(const kiln_network *net) { return net ? net->g.n_layers : 0; }

int32_t kiln_network_add_plugin(kiln_network *net, const char *name, const char *plugin_name, int32_t plugin_version,
                                int32_t n_in, const int32_t *inputs, int32_t n_fields, const kiln_plugin_field *fields) {
  if (!net || !plugin_name) return kiln_error(KILN_ERR_INVALID_ARG, "add_plugin: NULL argument");
  const kiln_plugin_creator *c = kiln_plugin_registry_find(kiln_plugin_registry_default(), plugin_name, plugin_version);
  if (!c)
    return kiln_error(KILN_ERR_PLUGIN,
                      "plugin \"%s\" version %d is not registered; load its library first (kiln --plugins LIB.so, or "
                      "kiln_plugin_registry_load)",
                      plugin_name, plugin_version);
  void *state = NULL;
  kiln_status s = c->create(n_fields, fields, &state);
  if (s != KILN_OK) return kiln_error_context(s, "creating plugin \"%s\" v%d: ", plugin_name, plugin_version);
  size_t size = 0;
  uint8_t *data = NULL;
  s = c->serialize(state, NULL, &size);
  if (s == KILN_OK) {
    data = malloc(size ? size : 1);
    if (!data) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  }
  if (s == KILN_OK) s = c->serialize(state, data, &size);
  kiln_graph *g = &net->g;
  if (s == KILN_OK && g->n_plugins >= g->cap_plugins) {
    int32_t cap = g->cap_plugins ? g->cap_plugins * 2 : 4;
    kiln_plugin_def *p = realloc(g->plugins, (size_t)cap * sizeof *p);
    if (!p) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    else {
      g->plugins = p;
      g->cap_plugins = cap;
    }
  }
  char *pname = s == KILN_OK ? malloc(strlen(plugin_name) + 1) : NULL;
  if (s == KILN_OK && !pname) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  if (s != KILN_OK) {
    free(data);
    c->destroy(state);
    return s;
  }
  strcpy(pname, plugin_name);
  kiln_plugin_def *pd = &g->plugins[g->n_plugins];
  memset(pd, 0, sizeof *pd);
  pd->name = pname;
  pd->version = plugin_version;
  pd->data = data;
  pd->size = size;
  pd->creator = c;
  pd->state = state;
  kiln_op_params p = {0};
  p.plugin = g->n_plugins++;
  kiln_dtype dts[KILN_MAX_LAYER_IO];
  for (int32_t i = 0; i < KILN_MAX_LAYER_IO; i++) dts[i] = KILN_DTYPE_FP32;
  int32_t id = kiln_network_add_layer_(net, name, KILN_OP_PLUGIN, n_in, inputs, &p, c->num_outputs, dts);
  if (id < 0) { /* drop the plugin again */
    g->n_plugins--;
    c->destroy(pd->state);
    free(pd->name);
    free(pd->data);
  }
  return id;
}

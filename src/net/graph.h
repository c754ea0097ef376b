/* src/net/graph.h - kiln's internal graph IR, shared by the network API, the builder, the engine
 * file and the runtime.
 *
 * A kiln_graph is what a kiln_network holds, what the builder transforms (fusions, precision,
 * tactics, memory plan) and what an engine file serializes. The runtime reads the engine back
 * into the same structs, so shape inference (shape.c) is one piece of code for build and run.
 *
 * Not a public API: plugins and users see network.h / engine.h only.
 */
#ifndef KILN_NET_GRAPH_H
#define KILN_NET_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/network.h"
#include "kiln/plugin.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_LAYER_IO 16
#define KILN_TACTIC_BYTES 64

typedef enum kiln_op {
  KILN_OP_MATMUL = 0,        /* in: x, W[N,K], (b[N]); params.activation fused epilogue; params.fuse
                                adds a layernorm prologue and a residual epilogue (see
                                kiln_matmul_io) */
  KILN_OP_ADD = 1,           /* in: a, b */
  KILN_OP_MUL = 2,           /* in: a, b */
  KILN_OP_ACTIVATION = 3,    /* in: x; params.activation */
  KILN_OP_LAYERNORM = 4,     /* in: x, gamma, beta; params.eps */
  KILN_OP_ADD_LAYERNORM = 5, /* fused: in: a, b, gamma, beta; out: sum = a + b, norm(sum) */
  KILN_OP_SOFTMAX = 6,       /* in: x */
  KILN_OP_EMBEDDING = 7,     /* in: table[V,N], ids (int32) */
  KILN_OP_CONV1D = 8,        /* in: x[B,Cin,T], W[Cout,Cin,3], (b); params.stride, activation */
  KILN_OP_RESHAPE = 9,       /* in: x; params.dims (0 copy, -1 infer) */
  KILN_OP_TRANSPOSE = 10,    /* in: x; params.dims.d[] holds the permutation */
  KILN_OP_CONCAT = 11,       /* in: x0..xn-1; params.axis */
  KILN_OP_SLICE = 12,        /* in: x; params.axis, start, end */
  KILN_OP_ATTENTION = 13,    /* in: q, k, v; params.scale, causal */
  KILN_OP_PLUGIN = 14,       /* params.plugin indexes graph->plugins */
  KILN_OP_KV_ATTENTION = 15, /* decoder attention over a KV cache kept in place; params.heads,
                                scale, causal (1: self-attention appending to the cache, 0:
                                cross-attention), cache_dtype (0: float caches, INT8: int8
                                caches with one scale per cached vector, two more inputs);
                                see the op's description in shape.c */
  KILN_OP_MATMUL_WQ = 16,    /* weight-only quantized matmul (made by the builder's
                                weight_only pass): in: x[..., K] (float), Wq[N, K] (int8, or int4
                                packed two per byte), scales fp32 [N] (params.group 0) or
                                [N, K / group], (b[N]); y = act(x dequant(Wq)^T + b) with
                                dequant(Wq)[n, k] = Wq[n, k] * scale[n, k / group], fp32
                                accumulation. Codes and packing: src/core/quant.h; shapes:
                                shape.c. params.group, activation */
  KILN_OP_QUANTIZE_INT8 = 17, /* in: x [..., D] (float); out: codes [..., D] int8, scales [...]
                                (float): per row of D values s = max|x| / 127 (rounded to the
                                scales' dtype), codes = round(x / s) clamped to +-127; 0 when
                                s is 0 (network.h: kiln_network_add_quantize_int8). Makes the
                                int8 caches KV_ATTENTION reads with cache_dtype INT8 */
  KILN_OP_COUNT_ = 18
} kiln_op;

const char *kiln_op_name(kiln_op op);

typedef struct kiln_op_params {
  int32_t activation; /* kiln_activation: ACTIVATION, fused MATMUL / CONV1D epilogues */
  float eps;          /* LAYERNORM, ADD_LAYERNORM */
  float scale;        /* ATTENTION */
  int32_t causal;     /* ATTENTION */
  int32_t stride;     /* CONV1D */
  int32_t axis;       /* CONCAT, SLICE */
  int64_t start, end; /* SLICE */
  kiln_dims dims;     /* RESHAPE target, TRANSPOSE permutation */
  int32_t plugin;     /* PLUGIN: index into kiln_graph.plugins */
  int32_t heads;      /* KV_ATTENTION: attention heads */
  int32_t group;      /* MATMUL_WQ: quantization group size along K (0: one per row) */
  int32_t fuse;       /* MATMUL, MATMUL_WQ: KILN_FUSE_* bits (made by the builder's fusions) */
  int32_t cache_dtype; /* KV_ATTENTION: 0 (float caches, the layer's precision) or
                          KILN_DTYPE_INT8 (int8 caches + scale inputs) */
} kiln_op_params;

/* Fusions of MATMUL / MATMUL_WQ (params.fuse):
 *   KILN_FUSE_LN: x is layer-normalized over K first (inputs gamma[K], beta[K] follow the
 *     optional bias; params.eps), as a LAYERNORM layer would and rounded to x's dtype;
 *   KILN_FUSE_RESIDUAL: the last input r (the output's shape) is added after the activation:
 *     y = act(norm(x) W^T + b) + r. */
#define KILN_FUSE_LN 1
#define KILN_FUSE_RESIDUAL 2



typedef enum kiln_tensor_kind {
  KILN_TENSOR_INPUT = 0,
  KILN_TENSOR_CONSTANT = 1,
  KILN_TENSOR_ACTIVATION = 2
} kiln_tensor_kind;

typedef struct kiln_tensor_def {
  char *name;
  kiln_tensor_kind kind;
  kiln_dtype dtype;
  kiln_dims dims;        /* inputs: -1 = dynamic; constants: fixed; activations: filled by
                            shape inference for the shapes at hand */
  int32_t is_output;     /* marked as a network output */
  int32_t producer;      /* layer index, -1 for inputs and constants */
  /* constants */
  void *data;            /* host copy (owned unless the graph's `borrowed_weights` is set) */
  size_t bytes;
  /* memory plan (activations that are not outputs): arena offset, -1 when not planned */
  int64_t offset;
} kiln_tensor_def;

/* A tactic: which implementation runs a layer. kind 0 = the backend's default. */
typedef enum kiln_tactic_kind {
  KILN_TACTIC_DEFAULT = 0,
  KILN_TACTIC_CUBLASLT = 1, /* data: a cublasLtMatmulAlgo_t (64 bytes) */
  KILN_TACTIC_KERNEL = 2,   /* index: one of kiln's own kernels for the op */
  KILN_TACTIC_PLUGIN = 3    /* index: the plugin's tactic */
} kiln_tactic_kind;

typedef struct kiln_tactic {
  int32_t kind;
  int32_t index;
  float time_ms;            /* measured at the opt shape (0 if not timed) */
  size_t workspace;         /* bytes of workspace it needs */
  uint8_t data[KILN_TACTIC_BYTES];
} kiln_tactic;

typedef struct kiln_layer_def {
  char *name;
  kiln_op op;
  int32_t n_in, in[KILN_MAX_LAYER_IO];
  int32_t n_out, out[KILN_MAX_LAYER_IO];
  kiln_op_params p;
  kiln_tactic tactic;
} kiln_layer_def;

/* Input positions of a MATMUL / MATMUL_WQ layer (-1: absent): x, W (or the codes), scales
 * (MATMUL_WQ), bias, gamma, beta, residual. */
typedef struct kiln_matmul_io {
  int32_t x, w, scales, bias, gamma, beta, residual;
} kiln_matmul_io;

/* Fills io from l's op, fuse bits and input count; KILN_ERR_INVALID_ARG (naming the layer) when
 * they do not agree. */
kiln_status kiln_matmul_io_of(const kiln_layer_def *l, kiln_matmul_io *io);

typedef struct kiln_plugin_def {
  char *name;
  int32_t version;
  uint8_t *data;            /* serialized state */
  size_t size;
  /* filled when loaded against a registry */
  const kiln_plugin_creator *creator;
  void *state;
} kiln_plugin_def;

typedef struct kiln_profile_def {
  /* one entry per graph input, in graph input order (see kiln_graph_inputs) */
  int32_t n;
  int32_t *tensor;          /* input tensor ids */
  kiln_dims *min, *opt, *max;
} kiln_profile_def;

typedef struct kiln_graph {
  kiln_tensor_def *tensors;
  int32_t n_tensors, cap_tensors;
  kiln_layer_def *layers;
  int32_t n_layers, cap_layers;
  kiln_plugin_def *plugins;
  int32_t n_plugins, cap_plugins;
  kiln_profile_def *profiles;
  int32_t n_profiles, cap_profiles;
  int32_t borrowed_weights; /* 1: constants point into an mmap()ed engine, not owned */
  /* set by the builder */
  kiln_target target;
  kiln_dtype precision;
  size_t arena_bytes;       /* activation arena size */
  size_t workspace_bytes;   /* largest layer workspace */
} kiln_graph;

/* Lifetime and growth (graph.c). All return KILN_OK or an error with kiln_last_error() set. */
void kiln_graph_init(kiln_graph *g);
void kiln_graph_free(kiln_graph *g);
int32_t kiln_graph_add_tensor(kiln_graph *g, const char *name, kiln_tensor_kind kind,
                              kiln_dtype dtype, const kiln_dims *dims);
int32_t kiln_graph_add_layer(kiln_graph *g, const char *name, kiln_op op, int32_t n_in,
                             const int32_t *in, const kiln_op_params *p);
int32_t kiln_graph_find_tensor(const kiln_graph *g, const char *name);
/* Deep copy (weights copied too). */
kiln_status kiln_graph_clone(const kiln_graph *src, kiln_graph *dst);

/* Shape inference (shape.c): given shapes for every input (in_dims[i] for input tensor i in
 * g->tensors order of kind INPUT; see kiln_graph_input_ids), fill `dims` for every tensor
 * (array of g->n_tensors). Reports the first layer that fails, naming it. */
kiln_status kiln_graph_infer_shapes(const kiln_graph *g, const kiln_dims *input_dims,
                                    kiln_dims *dims);
/* Ids of input tensors, in order; returns the count. */
int32_t kiln_graph_input_ids(const kiln_graph *g, int32_t *ids, int32_t cap);
/* Output shape of one layer from its input shapes (used by infer_shapes and by tests). */
kiln_status kiln_layer_infer(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in,
                             kiln_dims *out);


/* Normalized slice bounds of a SLICE layer for input dims x (0 <= start <= end <= dim). */
kiln_status kiln_slice_bounds(const kiln_layer_def *l, const kiln_dims *x, int32_t *axis,
                              int64_t *start, int64_t *end);

#ifdef __cplusplus
}
#endif
#endif /* KILN_NET_GRAPH_H */

/* src/backends/cuda/layer.c - running one graph layer on the GPU: dispatch on the op to the CUDA
 * launchers (cuda_ops.h), the layer's tactic for matmuls (plain and weight-only), plugins through their enqueue on
 * KILN_TARGET_CUDA; and the workspace each layer needs.
 *
 * `in` and `out` are the layer's tensors in l->in / l->out order, device pointers, shapes for
 * this run. Not the place for scheduling or memory planning (runtime/, builder/).
 */
#include <string.h>

#include "backends/cuda/cuda_internal.h"
#include "core/error.h"

static int32_t min_inputs(kiln_op op) {
  switch (op) {
    case KILN_OP_MATMUL: return 2;
    case KILN_OP_MATMUL_WQ: return 3;
    case KILN_OP_ADD:
    case KILN_OP_MUL:
    case KILN_OP_EMBEDDING:
    case KILN_OP_CONV1D: return 2;
    case KILN_OP_LAYERNORM:
    case KILN_OP_ATTENTION: return 3;
    case KILN_OP_ADD_LAYERNORM: return 4;
    case KILN_OP_KV_ATTENTION: return 3;
    case KILN_OP_PLUGIN: return 0;
    default: return 1;
  }
}

/* Slice bounds as network.h defines them: negative counts from the end, end clamped. */
static void normalize_slice(int64_t dim, int64_t *start, int64_t *end) {
  int64_t s = *start, e = *end;
  if (s < 0) s += dim;
  if (e < 0) e += dim;
  if (s < 0) s = 0;
  if (s > dim) s = dim;
  if (e > dim) e = dim;
  if (e < s) e = s;
  *start = s;
  *end = e;
}

static kiln_status run_slice(const kiln_layer_def *l, const kiln_tensor *in, kiln_tensor *out,
                             void *stream) {
  int32_t axis = l->p.axis, rank = in[0].shape.rank;
  int64_t start = l->p.start, end = l->p.end;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return kiln_error(KILN_ERR_INVALID_ARG, "layer %s: slice axis %d out of range for rank %d",
                      l->name ? l->name : "?", (int)l->p.axis, (int)rank);
  normalize_slice(in[0].shape.d[axis], &start, &end);
  return kiln_cuda_slice(&in[0], axis, start, end, &out[0], stream);
}

static kiln_status run_plugin(const kiln_graph *g, const kiln_layer_def *l, const kiln_tensor *in,
                              kiln_tensor *out, void *workspace, void *stream) {
  const kiln_plugin_def *pd;
  if (l->p.plugin < 0 || l->p.plugin >= g->n_plugins)
    return kiln_error(KILN_ERR_INTERNAL, "layer %s: plugin index %d out of range",
                      l->name ? l->name : "?", (int)l->p.plugin);
  pd = &g->plugins[l->p.plugin];
  if (!pd->creator || !pd->creator->enqueue)
    return kiln_error(KILN_ERR_PLUGIN, "layer %s: plugin %s v%d is not loaded; register it "
                      "before running the engine", l->name ? l->name : "?",
                      pd->name ? pd->name : "?", (int)pd->version);
  return pd->creator->enqueue(pd->state, KILN_TARGET_CUDA, l->tactic.index, l->n_in, in, l->n_out,
                              out, workspace, stream);
}

static kiln_status run_matmul(kiln_cuda_ctx *cu, const kiln_layer_def *l, const kiln_tensor *in, kiln_tensor *out,
                              void *workspace, size_t workspace_bytes, void *stream) {
  kiln_matmul_io io;
  KILN_TRY(kiln_matmul_io_of(l, &io));
  kiln_cuda_mm_fuse f = {io.gamma >= 0 ? &in[io.gamma] : NULL, io.beta >= 0 ? &in[io.beta] : NULL, l->p.eps,
                         io.residual >= 0 ? &in[io.residual] : NULL};
  const kiln_tensor *b = io.bias >= 0 ? &in[io.bias] : NULL;
  kiln_activation act = (kiln_activation)l->p.activation;
  if (l->op == KILN_OP_MATMUL_WQ)
    return kiln_cuda_matmul_wq_fused(cu, &l->tactic, &in[io.x], &in[io.w], &in[io.scales], b, l->p.group, act, &f,
                                     &out[0], workspace, workspace_bytes, stream);
  return kiln_cuda_matmul_fused(cu, &l->tactic, &in[io.x], &in[io.w], b, act, &f, &out[0], workspace, workspace_bytes,
                                stream);
}

/* Workspace of a matmul's layernorm prologue outside the skinny kernel (in_dims[0] is x). */
static size_t ln_workspace(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in_dims) {
  if (!(l->p.fuse & KILN_FUSE_LN) || !in_dims || in_dims[0].rank < 1) return 0;
  if (kiln_cuda_matmul_tactic_is_skinny(l->op == KILN_OP_MATMUL_WQ, &l->tactic)) return 0;
  int64_t k = in_dims[0].d[in_dims[0].rank - 1], count = kiln_dims_count(&in_dims[0]);
  return kiln_cuda_matmul_ln_bytes(k ? count / k : 0, k, g->tensors[l->in[0]].dtype);
}

kiln_status kiln_cuda_run_layer(kiln_cuda_ctx *cu, const kiln_graph *g, const kiln_layer_def *l,
                                const kiln_tensor *in, kiln_tensor *out, void *workspace,
                                size_t workspace_bytes, void *stream) {
  kiln_status st;
  if (!g || !l || (l->n_in > 0 && !in) || (l->n_out > 0 && !out))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_cuda_run_layer: NULL argument");
  if (l->n_in < min_inputs(l->op) || (l->op != KILN_OP_PLUGIN && l->n_out < 1))
    return kiln_error(KILN_ERR_INTERNAL, "layer %s (%s): %d inputs and %d outputs is too few",
                      l->name ? l->name : "?", kiln_op_name(l->op), (int)l->n_in, (int)l->n_out);
  switch (l->op) {
    case KILN_OP_MATMUL:
    case KILN_OP_MATMUL_WQ: st = run_matmul(cu, l, in, out, workspace, workspace_bytes, stream); break;
    case KILN_OP_ADD: st = kiln_cuda_add(&in[0], &in[1], &out[0], stream); break;
    case KILN_OP_MUL: st = kiln_cuda_mul(&in[0], &in[1], &out[0], stream); break;
    case KILN_OP_ACTIVATION:
      st = kiln_cuda_activation(&in[0], (kiln_activation)l->p.activation, &out[0], stream);
      break;
    case KILN_OP_LAYERNORM:
      st = kiln_cuda_layernorm(&in[0], &in[1], &in[2], l->p.eps, &out[0], stream);
      break;
    case KILN_OP_ADD_LAYERNORM: /* out: sum, norm (or norm alone) */
      st = kiln_cuda_add_layernorm(&in[0], &in[1], &in[2], &in[3], l->p.eps,
                                   l->n_out > 1 ? &out[0] : NULL, l->n_out > 1 ? &out[1] : &out[0],
                                   stream);
      break;
    case KILN_OP_SOFTMAX: st = kiln_cuda_softmax(&in[0], &out[0], stream); break;
    case KILN_OP_EMBEDDING: st = kiln_cuda_embedding(&in[0], &in[1], &out[0], stream); break;
    case KILN_OP_CONV1D:
      st = kiln_cuda_conv1d(cu, &in[0], &in[1], l->n_in > 2 ? &in[2] : NULL, l->p.stride,
                            (kiln_activation)l->p.activation, &out[0], workspace, workspace_bytes, stream);
      break;
    case KILN_OP_RESHAPE: /* a view when the planner gave both the same bytes */
      st = in[0].data == out[0].data ? KILN_OK : kiln_cuda_copy(&in[0], &out[0], stream);
      break;
    case KILN_OP_TRANSPOSE:
      if (l->p.dims.rank != in[0].shape.rank)
        return kiln_error(KILN_ERR_SHAPE, "layer %s: permutation of rank %d for an input of rank %d",
                          l->name ? l->name : "?", (int)l->p.dims.rank, (int)in[0].shape.rank);
      st = kiln_cuda_transpose(&in[0], l->p.dims.d, &out[0], stream);
      break;
    case KILN_OP_CONCAT: st = kiln_cuda_concat(l->n_in, in, l->p.axis, &out[0], stream); break;
    case KILN_OP_SLICE: st = run_slice(l, in, out, stream); break;
    case KILN_OP_ATTENTION:
      st = kiln_cuda_attention(&in[0], &in[1], &in[2], l->p.scale, l->p.causal, &out[0], stream);
      break;
    case KILN_OP_KV_ATTENTION:
      st = kiln_cuda_kv_attention(l->n_in, in, l->p.heads, l->p.scale, l->p.causal, &out[0], workspace,
                                  workspace_bytes, stream);
      break;
    case KILN_OP_QUANTIZE_INT8:
      if (l->n_out != 2)
        return kiln_error(KILN_ERR_INTERNAL, "layer %s (quantize_int8) has %d outputs; it makes 2", l->name ? l->name : "?",
                          (int)l->n_out);
      st = kiln_cuda_quantize_int8(&in[0], &out[0], &out[1], stream);
      break;
    case KILN_OP_PLUGIN: st = run_plugin(g, l, in, out, workspace, stream); break;
    default:
      return kiln_error(KILN_ERR_UNSUPPORTED, "layer %s: op %d has no CUDA implementation",
                        l->name ? l->name : "?", (int)l->op);
  }
  if (st != KILN_OK)
    return kiln_error_context(st, "layer %s (%s): ", l->name ? l->name : "?", kiln_op_name(l->op));
  return KILN_OK;
}

static size_t op_workspace(const kiln_graph *g, const kiln_layer_def *l, const kiln_dims *in_dims) {
  if (l->op == KILN_OP_MATMUL) {
    size_t ln = ln_workspace(g, l, in_dims);
    if (l->tactic.kind == KILN_TACTIC_CUBLASLT) return ln + l->tactic.workspace;
    if (l->tactic.kind == KILN_TACTIC_DEFAULT) return ln + KILN_CUDA_DEFAULT_MATMUL_WORKSPACE;
    return ln;
  }
  if (l->op == KILN_OP_CONV1D && in_dims && l->n_in >= 2)
    return kiln_cuda_conv1d_workspace(&in_dims[0], &in_dims[1], l->p.stride, g->tensors[l->in[0]].dtype);
  if (l->op == KILN_OP_KV_ATTENTION && in_dims && l->n_in >= 3)
    return kiln_cuda_kv_attention_workspace(&in_dims[0], &in_dims[1], l->p.heads);
  if (l->op == KILN_OP_MATMUL_WQ && l->n_in >= 3) {
    const kiln_tensor_def *wq = &g->tensors[l->in[1]];
    if (wq->dims.rank != 2) return 0;
    return ln_workspace(g, l, in_dims) + kiln_cuda_matmul_wq_workspace(&l->tactic, wq->dims.d[0], wq->dims.d[1],
                                                                       g->tensors[l->in[0]].dtype, wq->dtype, l->p.group);
  }
  if (l->op == KILN_OP_PLUGIN && in_dims && l->p.plugin >= 0 && l->p.plugin < g->n_plugins) {
    const kiln_plugin_def *pd = &g->plugins[l->p.plugin];
    kiln_plugin_desc desc[KILN_MAX_LAYER_IO];
    if (!pd->creator || !pd->creator->workspace_size || l->n_in > KILN_MAX_LAYER_IO) return 0;
    for (int32_t i = 0; i < l->n_in; i++) {
      desc[i].dtype = g->tensors[l->in[i]].dtype;
      desc[i].shape = in_dims[i];
    }
    return pd->creator->workspace_size(pd->state, KILN_TARGET_CUDA, l->n_in, desc);
  }
  return 0;
}

size_t kiln_cuda_layer_workspace(const kiln_graph *g, const kiln_layer_def *l,
                                 const kiln_dims *in_dims) {
  if (!g || !l) return 0;
  size_t own = op_workspace(g, l, in_dims), chain = kiln_cuda_chain_workspace(g, l, in_dims);
  return own > chain ? own : chain; /* a layer runs either alone or in a chain */
}

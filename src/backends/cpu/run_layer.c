/* src/backends/cpu/run_layer.c - run one graph layer on the CPU: dispatch on l->op to the op
 * functions of this backend, with the layer's parameters from l->p.
 *
 * `in` holds l->n_in bound input views and `out` l->n_out output views, shapes already inferred
 * (the runtime does that). Checks the input/output counts and the parameters the op functions
 * cannot see; the op functions check shapes and dtypes. Not a scheduler or a memory planner.
 */
#include <stddef.h>
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_io(const kiln_layer_def *l, int32_t min_in, int32_t max_in, int32_t n_out) {
  if (l->n_in < min_in || l->n_in > max_in)
    return kiln_error(KILN_ERR_INVALID_ARG, "op %d has %d inputs; it takes %d to %d", (int)l->op,
                      (int)l->n_in, (int)min_in, (int)max_in);
  if (l->n_out != n_out)
    return kiln_error(KILN_ERR_INVALID_ARG, "op %d has %d outputs; it makes %d", (int)l->op,
                      (int)l->n_out, (int)n_out);
  return KILN_OK;
}

/* Negative start/end count from the end; both are clamped into [0, dim], end to >= start. */
static void normalize_slice(int64_t dim, int64_t *start, int64_t *end) {
  int64_t s = *start < 0 ? *start + dim : *start;
  int64_t e = *end < 0 ? *end + dim : *end;
  if (s < 0) s = 0;
  if (s > dim) s = dim;
  if (e > dim) e = dim;
  if (e < s) e = s;
  *start = s;
  *end = e;
}

static kiln_status run_slice(const kiln_layer_def *l, const kiln_tensor *in, kiln_tensor *out) {
  int32_t axis = l->p.axis < 0 ? l->p.axis + in[0].shape.rank : l->p.axis;
  if (axis < 0 || axis >= in[0].shape.rank)
    return kiln_error(KILN_ERR_INVALID_ARG, "slice: axis %d is out of range for rank %d",
                      (int)l->p.axis, (int)in[0].shape.rank);
  int64_t start = l->p.start, end = l->p.end;
  normalize_slice(in[0].shape.d[axis], &start, &end);
  return kiln_cpu_slice(&in[0], axis, start, end, &out[0]);
}

static kiln_status run_transpose(const kiln_layer_def *l, const kiln_tensor *in, kiln_tensor *out) {
  if (l->p.dims.rank != in[0].shape.rank)
    return kiln_error(KILN_ERR_SHAPE,
                      "transpose: the permutation has %d entries but the input has rank %d",
                      (int)l->p.dims.rank, (int)in[0].shape.rank);
  return kiln_cpu_transpose(&in[0], l->p.dims.d, &out[0]);
}

static kiln_status run_plugin(const kiln_graph *g, const kiln_layer_def *l, const kiln_tensor *in,
                              kiln_tensor *out, void *workspace) {
  if (!g || l->p.plugin < 0 || l->p.plugin >= g->n_plugins)
    return kiln_error(KILN_ERR_INVALID_ARG, "plugin index %d is out of range (the graph has %d)",
                      (int)l->p.plugin, g ? (int)g->n_plugins : 0);
  const kiln_plugin_def *pd = &g->plugins[l->p.plugin];
  const char *pname = pd->name ? pd->name : "(unnamed)";
  if (!pd->creator || !pd->creator->enqueue)
    return kiln_error(KILN_ERR_PLUGIN, "plugin %s v%d is not loaded; register it before running",
                      pname, (int)pd->version);
  kiln_status s = pd->creator->enqueue(pd->state, KILN_TARGET_CPU, l->tactic.index, l->n_in, in,
                                       l->n_out, out, workspace, NULL);
  if (s != KILN_OK)
    return kiln_error_context(s, "plugin %s v%d: ", pname, (int)pd->version);
  return KILN_OK;
}

/* matmul / matmul_wq with their fusions (graph.h): the layernorm into a temporary in x's
 * dtype, the matmul, then the residual added in place. */
static kiln_status run_matmul(const kiln_layer_def *l, const kiln_tensor *in, kiln_tensor *out) {
  kiln_matmul_io io;
  KILN_TRY(kiln_matmul_io_of(l, &io));
  kiln_activation act = (kiln_activation)l->p.activation;
  const kiln_tensor *b = io.bias >= 0 ? &in[io.bias] : NULL;
  kiln_tensor x = in[io.x];
  void *tmp = NULL;
  kiln_status st = KILN_OK;
  if (io.gamma >= 0) {
    tmp = malloc(kiln_dtype_bytes(x.dtype, kiln_dims_count(&x.shape)) + 1);
    if (!tmp) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory for a layernorm temporary");
    x = kiln_tensor_contiguous(tmp, x.dtype, &x.shape);
    st = kiln_cpu_layernorm(&in[io.x], &in[io.gamma], &in[io.beta], l->p.eps, &x);
  }
  if (st == KILN_OK && l->op == KILN_OP_MATMUL_WQ)
    st = kiln_cpu_matmul_wq(&x, &in[io.w], &in[io.scales], b, l->p.group, act, &out[0]);
  else if (st == KILN_OK)
    st = kiln_cpu_matmul(&x, &in[io.w], b, act, &out[0]);
  free(tmp);
  if (st == KILN_OK && io.residual >= 0) st = kiln_cpu_add(&out[0], &in[io.residual], &out[0]);
  return st;
}

static kiln_status dispatch(const kiln_graph *g, const kiln_layer_def *l, const kiln_tensor *in,
                            kiln_tensor *out, void *workspace) {
  kiln_activation act = (kiln_activation)l->p.activation;
  switch (l->op) {
    case KILN_OP_MATMUL:
    case KILN_OP_MATMUL_WQ:
      KILN_TRY(check_io(l, 2, 7, 1));
      return run_matmul(l, in, out);
    case KILN_OP_ADD:
      KILN_TRY(check_io(l, 2, 2, 1));
      return kiln_cpu_add(&in[0], &in[1], &out[0]);
    case KILN_OP_MUL:
      KILN_TRY(check_io(l, 2, 2, 1));
      return kiln_cpu_mul(&in[0], &in[1], &out[0]);
    case KILN_OP_ACTIVATION:
      KILN_TRY(check_io(l, 1, 1, 1));
      return kiln_cpu_activation(&in[0], act, &out[0]);
    case KILN_OP_LAYERNORM:
      KILN_TRY(check_io(l, 3, 3, 1));
      return kiln_cpu_layernorm(&in[0], &in[1], &in[2], l->p.eps, &out[0]);
    case KILN_OP_ADD_LAYERNORM:
      KILN_TRY(check_io(l, 4, 4, 2));
      return kiln_cpu_add_layernorm(&in[0], &in[1], &in[2], &in[3], l->p.eps, &out[0], &out[1]);
    case KILN_OP_SOFTMAX:
      KILN_TRY(check_io(l, 1, 1, 1));
      return kiln_cpu_softmax(&in[0], &out[0]);
    case KILN_OP_EMBEDDING:
      KILN_TRY(check_io(l, 2, 2, 1));
      return kiln_cpu_embedding(&in[0], &in[1], &out[0]);
    case KILN_OP_CONV1D:
      KILN_TRY(check_io(l, 2, 3, 1));
      return kiln_cpu_conv1d(&in[0], &in[1], l->n_in == 3 ? &in[2] : NULL, l->p.stride, act,
                             &out[0]);
    case KILN_OP_RESHAPE:
      KILN_TRY(check_io(l, 1, 1, 1));
      return in[0].data == out[0].data ? KILN_OK : kiln_cpu_copy(&in[0], &out[0]); /* a view: see memplan.c */
    case KILN_OP_TRANSPOSE:
      KILN_TRY(check_io(l, 1, 1, 1));
      return run_transpose(l, in, out);
    case KILN_OP_CONCAT:
      KILN_TRY(check_io(l, 1, KILN_MAX_LAYER_IO, 1));
      return kiln_cpu_concat(l->n_in, in, l->p.axis, &out[0]);
    case KILN_OP_SLICE:
      KILN_TRY(check_io(l, 1, 1, 1));
      return run_slice(l, in, out);
    case KILN_OP_ATTENTION:
      KILN_TRY(check_io(l, 3, 3, 1));
      return kiln_cpu_attention(&in[0], &in[1], &in[2], l->p.scale, l->p.causal, &out[0]);
    case KILN_OP_KV_ATTENTION:
      KILN_TRY(check_io(l, 3, 6, 1));
      return kiln_cpu_kv_attention(l->n_in, in, l->p.heads, l->p.scale, l->p.causal, &out[0]);
    case KILN_OP_QUANTIZE_INT8:
      KILN_TRY(check_io(l, 1, 1, 2));
      return kiln_cpu_quantize_int8(&in[0], &out[0], &out[1]);
    case KILN_OP_PLUGIN:
      return run_plugin(g, l, in, out, workspace);
    default:
      return kiln_error(KILN_ERR_UNSUPPORTED,
                        "op %d is not known to the CPU backend; the engine may come from a newer "
                        "kiln",
                        (int)l->op);
  }
}

kiln_status kiln_cpu_run_layer(const kiln_graph *g, const kiln_layer_def *l, const kiln_tensor *in,
                               kiln_tensor *out, void *workspace, size_t workspace_bytes) {
  (void)workspace_bytes; /* the CPU ops allocate their own scratch; plugins get `workspace` */
  if (!l || (!in && l->n_in > 0) || (!out && l->n_out > 0))
    return kiln_error(KILN_ERR_INVALID_ARG, "cpu run_layer: layer, inputs and outputs must be given");
  kiln_status s = dispatch(g, l, in, out, workspace);
  if (s != KILN_OK)
    return kiln_error_context(s, "layer %s: ", l->name ? l->name : "(unnamed)");
  return s;
}

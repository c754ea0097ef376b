/* tests/common/test_wq_net.h - a small network for the weight-only quantization tests (CPU and
 * GPU), with each case the builder's pass must handle:
 *
 *   x [B, S, 128] -> fc1 (256 x 128, bias) -> gelu -> fc2 (128 x 256, bias) -> add x -> layernorm = h
 *   h -> proj_a -> proj_b, both with the weight "proj.w" [128, 128] (shared: quantized once) => "y"
 *   ids [B, S] -> embedding(table [64, 128]) + h -> logits = (.) table^T: the table is tied, it
 *     stays float                                                                          => "logits"
 *   h[..., 0:96] -> side (32 x 96, bias): K = 96 is no multiple of 64 or 128             => "side"
 *
 * Batch and sequence are dynamic (profile B 1..max_b, S 1..max_s, opt given). wn_linear lists
 * the matmul weights for the byte counts a test expects.
 */
#ifndef KILN_TEST_WQ_NET_H
#define KILN_TEST_WQ_NET_H

#include "check.h"
#include "common/test_inputs.h"
#include "kiln/kiln.h"

#define WN_D 128
#define WN_FF 256
#define WN_V 64
#define WN_SIDE_K 96
#define WN_SIDE_N 32

typedef struct wn_weight {
  const char *name;
  int64_t n, k;
  int tied;          /* also read by the embedding: never quantized */
} wn_weight;

/* Distinct matmul weights (proj.w serves two matmuls). */
static const wn_weight wn_linear[] = {{"fc1.w", WN_FF, WN_D, 0},
                                      {"fc2.w", WN_D, WN_FF, 0},
                                      {"proj.w", WN_D, WN_D, 0},
                                      {"table", WN_V, WN_D, 1},
                                      {"side.w", WN_SIDE_N, WN_SIDE_K, 0}};
#define WN_MATMULS 6

static int32_t wn_const(kiln_network *net, check_rng *r, const char *name, int32_t rank, const int64_t *dims, float lo,
                        float hi) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) n *= dims[i];
  float *d = malloc((size_t)n * sizeof *d + 4);
  check_fill(r, d, n, lo, hi);
  int32_t id = kiln_network_add_constant(net, name, KILN_DTYPE_FP32, rank, dims, d);
  free(d);
  return id;
}

static kiln_network *wn_build(uint64_t seed, int64_t max_b, int64_t max_s, int64_t opt_b, int64_t opt_s) {
  kiln_network *net = NULL;
  check_rng r = {seed};
  if (kiln_network_create(&net) != KILN_OK) return NULL;
  int64_t xd[3] = {-1, -1, WN_D}, idd[2] = {-1, -1};
  int64_t w1[2] = {WN_FF, WN_D}, b1[1] = {WN_FF}, w2[2] = {WN_D, WN_FF}, b2[1] = {WN_D}, wp[2] = {WN_D, WN_D};
  int64_t td[2] = {WN_V, WN_D}, ws[2] = {WN_SIDE_N, WN_SIDE_K}, bs[1] = {WN_SIDE_N}, d1[1] = {WN_D};
  const float a = 0.09f; /* ~1 / sqrt(K): activations stay O(1) */
  int32_t x = kiln_network_add_input(net, "x", KILN_DTYPE_FP32, 3, xd);
  int32_t ids = kiln_network_add_input(net, "ids", KILN_DTYPE_INT32, 2, idd);
  int32_t f = kiln_network_add_matmul(net, "fc1", x, wn_const(net, &r, "fc1.w", 2, w1, -a, a),
                                      wn_const(net, &r, "fc1.b", 1, b1, -0.1f, 0.1f));
  f = kiln_network_add_activation(net, "gelu", f, KILN_ACTIVATION_GELU);
  f = kiln_network_add_matmul(net, "fc2", f, wn_const(net, &r, "fc2.w", 2, w2, -a, a),
                              wn_const(net, &r, "fc2.b", 1, b2, -0.1f, 0.1f));
  int32_t h = kiln_network_add_layernorm(net, "ln", kiln_network_add_add(net, "res", f, x),
                                         wn_const(net, &r, "ln.g", 1, d1, 0.8f, 1.2f),
                                         wn_const(net, &r, "ln.b", 1, d1, -0.1f, 0.1f), 1e-5f);
  int32_t pw = wn_const(net, &r, "proj.w", 2, wp, -a, a);
  int32_t y = kiln_network_add_matmul(net, "proj_b", kiln_network_add_matmul(net, "proj_a", h, pw, -1), pw, -1);
  int32_t table = wn_const(net, &r, "table", 2, td, -1, 1);
  int32_t e = kiln_network_add_add(net, "emb_h", kiln_network_add_embedding(net, "emb", table, ids), h);
  int32_t logits = kiln_network_add_matmul(net, "logits", e, table, -1);
  int32_t side = kiln_network_add_matmul(net, "side", kiln_network_add_slice(net, "head", h, 2, 0, WN_SIDE_K),
                                         wn_const(net, &r, "side.w", 2, ws, -0.1f, 0.1f),
                                         wn_const(net, &r, "side.b", 1, bs, -0.1f, 0.1f));
  kiln_status s = y < 0 || logits < 0 || side < 0 ? KILN_ERR_INVALID_ARG : KILN_OK;
  if (s == KILN_OK) s = kiln_network_mark_output(net, y, "y");
  if (s == KILN_OK) s = kiln_network_mark_output(net, logits, "logits");
  if (s == KILN_OK) s = kiln_network_mark_output(net, side, "side");
  int32_t p = s == KILN_OK ? kiln_network_add_profile(net) : 0;
  int64_t xmin[3] = {1, 1, WN_D}, xopt[3] = {opt_b, opt_s, WN_D}, xmax[3] = {max_b, max_s, WN_D};
  int64_t imin[2] = {1, 1}, iopt[2] = {opt_b, opt_s}, imax[2] = {max_b, max_s};
  if (s == KILN_OK) s = kiln_network_set_profile_dims(net, p, "x", xmin, xopt, xmax);
  if (s == KILN_OK) s = kiln_network_set_profile_dims(net, p, "ids", imin, iopt, imax);
  if (s != KILN_OK) {
    fprintf(stderr, "building the weight-only test network failed: %s\n", kiln_last_error());
    kiln_network_destroy(net);
    return NULL;
  }
  return net;
}

/* Random inputs: x [b, s, D] in dtype dt, ids [b, s] in [0, V) (caller frees both). */
static void wn_inputs(int64_t b, int64_t s, uint64_t seed, kiln_dtype dt, void **x_out, int32_t **ids_out) {
  test_random_inputs(b, s, WN_D, WN_V, seed, dt, x_out, ids_out);
}

/* The network's outputs, in fp32. */
#define WN_OUTPUTS 3
static const char *const wn_output_names[WN_OUTPUTS] = {"y", "logits", "side"};
typedef struct wn_outs {
  float *v[WN_OUTPUTS];
  int64_t n[WN_OUTPUTS];
} wn_outs;

static inline void wn_outs_free(wn_outs *o) {
  for (int i = 0; i < WN_OUTPUTS; i++) free(o->v[i]);
  memset(o, 0, sizeof *o);
}

#endif

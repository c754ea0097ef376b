/* tests/common/test_net.h - a small transformer-like network used by the engine tests (CPU and
 * GPU): every layer type kiln has, dynamic batch and sequence, random weights from a seed.
 *
 *   x [B, S, 32] -> q/k/v matmuls -> reshape [B, S, 4, 8] -> transpose [B, 4, S, 8]
 *     -> attention (causal) -> transpose -> reshape [B, S, 32] -> matmul + bias -> add x
 *     -> layernorm -> matmul + bias -> gelu -> matmul + bias -> add -> layernorm  => "y"
 *   ids [B, S] -> embedding [B, S, 32] -> transpose [B, 32, S] -> conv1d(stride 2) + bias
 *     -> relu -> softmax -> mul(scale [T]) ... concat/slice/silu                 => "z"
 */
#ifndef KILN_TEST_NET_H
#define KILN_TEST_NET_H

#include "check.h"
#include "common/test_inputs.h"
#include "kiln/kiln.h"

#define TN_D 32
#define TN_H 4
#define TN_FF 64
#define TN_V 50

static int32_t tn_const(kiln_network *net, check_rng *r, const char *name, int32_t rank, const int64_t *dims, float scale,
                        float offset) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) n *= dims[i];
  float *d = malloc((size_t)n * sizeof *d + 4);
  check_fill(r, d, n, offset - scale, offset + scale);
  int32_t id = kiln_network_add_constant(net, name, KILN_DTYPE_FP32, rank, dims, d);
  free(d);
  return id;
}

static int32_t tn_linear(kiln_network *net, check_rng *r, const char *name, int32_t x, int64_t n_out, int64_t n_in, int bias) {
  char wn[64], bn[64];
  int64_t wd[2] = {n_out, n_in}, bd[1] = {n_out};
  snprintf(wn, sizeof wn, "%s.w", name);
  snprintf(bn, sizeof bn, "%s.b", name);
  int32_t w = tn_const(net, r, wn, 2, wd, 0.3f, 0.0f);
  int32_t b = bias ? tn_const(net, r, bn, 1, bd, 0.1f, 0.0f) : -1;
  return kiln_network_add_matmul(net, name, x, w, b);
}

static int32_t tn_layernorm(kiln_network *net, check_rng *r, const char *name, int32_t x) {
  char gn[64], bn[64];
  int64_t d[1] = {TN_D};
  snprintf(gn, sizeof gn, "%s.gamma", name);
  snprintf(bn, sizeof bn, "%s.beta", name);
  return kiln_network_add_layernorm(net, name, x, tn_const(net, r, gn, 1, d, 0.2f, 1.0f), tn_const(net, r, bn, 1, d, 0.1f, 0.0f),
                                    1e-5f);
}

/* Builds the network with profile B in [1, max_b], S in [min_s, max_s] (opt at the max). */
static kiln_network *tn_build(uint64_t seed, int64_t max_b, int64_t min_s, int64_t max_s) {
  kiln_network *net = NULL;
  check_rng r = {seed};
  if (kiln_network_create(&net) != KILN_OK) return NULL;
  int64_t xd[3] = {-1, -1, TN_D}, idd[2] = {-1, -1};
  int32_t x = kiln_network_add_input(net, "x", KILN_DTYPE_FP32, 3, xd);
  int32_t ids = kiln_network_add_input(net, "ids", KILN_DTYPE_INT32, 2, idd);
  int64_t split[4] = {0, 0, TN_H, TN_D / TN_H}, merge[3] = {0, 0, TN_D};
  int32_t perm[4] = {0, 2, 1, 3};
  int32_t q = tn_linear(net, &r, "q", x, TN_D, TN_D, 1), k = tn_linear(net, &r, "k", x, TN_D, TN_D, 0),
          v = tn_linear(net, &r, "v", x, TN_D, TN_D, 1);
  q = kiln_network_add_transpose(net, "qt", kiln_network_add_reshape(net, "qr", q, 4, split), 4, perm);
  k = kiln_network_add_transpose(net, "kt", kiln_network_add_reshape(net, "kr", k, 4, split), 4, perm);
  v = kiln_network_add_transpose(net, "vt", kiln_network_add_reshape(net, "vr", v, 4, split), 4, perm);
  int32_t a = kiln_network_add_attention(net, "attn", q, k, v, 0.35355339f, 1);
  a = kiln_network_add_reshape(net, "ar", kiln_network_add_transpose(net, "at", a, 4, perm), 3, merge);
  int32_t h = kiln_network_add_add(net, "res1", tn_linear(net, &r, "o", a, TN_D, TN_D, 1), x);
  int32_t ln1 = tn_layernorm(net, &r, "ln1", h);
  int32_t f = kiln_network_add_activation(net, "gelu", tn_linear(net, &r, "fc1", ln1, TN_FF, TN_D, 1), KILN_ACTIVATION_GELU);
  int32_t y = tn_layernorm(net, &r, "ln2", kiln_network_add_add(net, "res2", tn_linear(net, &r, "fc2", f, TN_D, TN_FF, 1), h));

  int64_t td[2] = {TN_V, TN_D}, cwd[3] = {16, TN_D, 3}, cbd[1] = {16};
  int32_t e = kiln_network_add_embedding(net, "emb", tn_const(net, &r, "table", 2, td, 1.0f, 0.0f), ids);
  int32_t perm3[3] = {0, 2, 1};
  int32_t et = kiln_network_add_transpose(net, "et", e, 3, perm3);
  int32_t c = kiln_network_add_conv1d(net, "conv", et, tn_const(net, &r, "conv.w", 3, cwd, 0.3f, 0.0f),
                                      tn_const(net, &r, "conv.b", 1, cbd, 0.1f, 0.0f), 2);
  c = kiln_network_add_activation(net, "relu", c, KILN_ACTIVATION_RELU);
  int32_t cat_in[2] = {c, kiln_network_add_activation(net, "silu", c, KILN_ACTIVATION_SILU)};
  int32_t cat = kiln_network_add_concat(net, "cat", 2, cat_in, 1);
  int32_t sl = kiln_network_add_slice(net, "slice", cat, 1, 4, -4);
  int32_t sm = kiln_network_add_softmax(net, "softmax", sl);
  int32_t z = kiln_network_add_mul(net, "mulz", sm, sl);
  kiln_network_mark_output(net, y, "y");
  kiln_network_mark_output(net, z, "z");
  int32_t p = kiln_network_add_profile(net);
  int64_t xmin[3] = {1, min_s, TN_D}, xmax[3] = {max_b, max_s, TN_D}, imin[2] = {1, min_s}, imax[2] = {max_b, max_s};
  if (kiln_network_set_profile_dims(net, p, "x", xmin, xmax, xmax) != KILN_OK ||
      kiln_network_set_profile_dims(net, p, "ids", imin, imax, imax) != KILN_OK || z < 0 || y < 0) {
    fprintf(stderr, "building the test network failed: %s\n", kiln_last_error());
    kiln_network_destroy(net);
    return NULL;
  }
  return net;
}

/* Random inputs for x [b, s, D] (in dtype dt, via fp32) and ids [b, s] in [0, V); free both. */
static void tn_inputs(int64_t b, int64_t s, uint64_t seed, kiln_dtype dt, void **x_out, int32_t **ids_out) {
  test_random_inputs(b, s, TN_D, TN_V, seed, dt, x_out, ids_out);
}

#endif

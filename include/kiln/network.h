/* kiln/network.h - defining a network through the C API.
 *
 * A network is a graph of tensors and layers. Tensors are referred to by int32 ids. Every
 * kiln_network_add_* function returns the id of the tensor it creates (>= 0), or a negative
 * kiln_status on error (kiln_last_error() says why). Functions that take tensor ids accept the
 * ids returned by earlier calls on the same network.
 *
 * Kinds of tensor:
 *   - inputs: named, with a dtype and dims where -1 marks a dynamic dimension; every dynamic
 *     dimension needs a range in each optimization profile (min <= opt <= max, min may be 0);
 *   - constants (weights): named, with data copied into the network at the call;
 *   - layer outputs: their shapes follow from the inputs (shape inference at build and run).
 * Mark the tensors you want back with kiln_network_mark_output().
 *
 * Float tensors are computed in the precision chosen at build (fp32, fp16 or bf16); the dtype
 * given to an input or constant here only says how the data is handed over. Index tensors
 * (embedding ids) are int32; int8 inputs hold the codes of int8 KV caches (below).
 *
 * Layer semantics (shapes use B, S, ... for any dims; "..." is any leading dims):
 *   matmul      x[..., K] @ W^T + b: W is a constant [N, K] (PyTorch Linear layout), b is an
 *               optional constant [N]; out [..., N]; fp32 accumulation.
 *   add / mul   elementwise; b's shape equals a's or a suffix of it (broadcast over the leading
 *               dims), e.g. a [B, S, N] + b [N].
 *   gelu (erf form), relu, silu: elementwise.
 *   layernorm   over the last dim with constant gamma [N] and beta [N], statistics in fp32.
 *   softmax     over the last dim.
 *   embedding   table constant [V, N], ids int32 [...] -> [..., N]. Ids out of range are an error
 *               on the CPU backend and produce zero rows on the GPU (checked when possible).
 *   conv1d      x [B, Cin, T], W constant [Cout, Cin, 3], b optional [Cout]; padding 1,
 *               stride 1 or 2; out [B, Cout, (T + 2 - 3) / stride + 1].
 *   reshape     to dims where 0 copies the input's dim at that position and one -1 is inferred.
 *   transpose   permutes dims: out.d[i] = in.d[perm[i]].
 *   concat      along an axis; all other dims equal.
 *   slice       along an axis, [start, end) with step 1; negative start/end count from the end;
 *               end is clamped to the dim.
 *   attention   q [B, H, Sq, D], k [B, H, Skv, D], v [B, H, Skv, D] -> [B, H, Sq, D];
 *               softmax(q k^T * scale) v; causal masks key j for query i when
 *               j > i + (Skv - Sq) (the bottom-right alignment of a decoder with a KV cache).
 *   plugin      a registered plugin (see plugin.h) with its creation fields.
 * A zero-size dimension is valid everywhere: the layer yields empty outputs and does no work.
 *
 * Thread-safety: a network is not thread-safe; build it from one thread.
 * Ownership: the network owns copies of everything handed to it (names, weights, fields).
 */
#ifndef KILN_NETWORK_H
#define KILN_NETWORK_H

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_network kiln_network;
struct kiln_plugin_field; /* plugin.h */

typedef enum kiln_activation {
  KILN_ACTIVATION_NONE = 0,
  KILN_ACTIVATION_GELU = 1, /* erf form */
  KILN_ACTIVATION_RELU = 2,
  KILN_ACTIVATION_SILU = 3
} kiln_activation;

kiln_status kiln_network_create(kiln_network **out);
void kiln_network_destroy(kiln_network *net);

/* Inputs and constants. dims[i] == -1 marks a dynamic dimension (inputs only). */
int32_t kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype, int32_t rank,
                               const int64_t *dims);
int32_t kiln_network_add_constant(kiln_network *net, const char *name, kiln_dtype dtype,
                                  int32_t rank, const int64_t *dims, const void *data);

/* Layers. `name` may be NULL (a name is generated). bias/b may be -1 (none). */
int32_t kiln_network_add_matmul(kiln_network *net, const char *name, int32_t x, int32_t weight,
                                int32_t bias);
int32_t kiln_network_add_add(kiln_network *net, const char *name, int32_t a, int32_t b);
int32_t kiln_network_add_mul(kiln_network *net, const char *name, int32_t a, int32_t b);
int32_t kiln_network_add_activation(kiln_network *net, const char *name, int32_t x,
                                    kiln_activation act);
int32_t kiln_network_add_layernorm(kiln_network *net, const char *name, int32_t x, int32_t gamma,
                                   int32_t beta, float eps);
int32_t kiln_network_add_softmax(kiln_network *net, const char *name, int32_t x);
int32_t kiln_network_add_embedding(kiln_network *net, const char *name, int32_t table, int32_t ids);
int32_t kiln_network_add_conv1d(kiln_network *net, const char *name, int32_t x, int32_t weight,
                                int32_t bias, int32_t stride);
int32_t kiln_network_add_reshape(kiln_network *net, const char *name, int32_t x, int32_t rank,
                                 const int64_t *dims);
int32_t kiln_network_add_transpose(kiln_network *net, const char *name, int32_t x, int32_t rank,
                                   const int32_t *perm);
int32_t kiln_network_add_concat(kiln_network *net, const char *name, int32_t n,
                                const int32_t *inputs, int32_t axis);
int32_t kiln_network_add_slice(kiln_network *net, const char *name, int32_t x, int32_t axis,
                               int64_t start, int64_t end);
int32_t kiln_network_add_attention(kiln_network *net, const char *name, int32_t q, int32_t k,
                                   int32_t v, float scale, int32_t causal);
/* Decoder attention over a key/value cache kept in place (for autoregressive decoding with one
 * captured CUDA graph per batch size: the cache buffers and shapes stay the same every step).
 * Self-attention: qkv [B, S, 3*H*Dh] (queries, keys, values of S new tokens side by side),
 *   cache_k / cache_v [Bc, H, Tmax, Dh] with Bc >= B, lengths [B] int32 (tokens already cached
 *   for each row). The layer writes the new keys/values into the caches at positions
 *   lengths[b] .. lengths[b] + S - 1 (the caches are inputs written in place; the caller keeps
 *   lengths[b] + S <= Tmax), then token s of row b attends to cache positions 0 .. lengths[b] + s.
 *   Output [B, S, H*Dh].
 * Cross-attention: q [B, S, H*Dh], k / v [Bk, H, A, Dh] where Bk divides B: query row b reads
 *   key/value row b / (B / Bk) (beams of one window share the window's keys). Output
 *   [B, S, H*Dh]. */
int32_t kiln_network_add_cached_self_attention(kiln_network *net, const char *name, int32_t qkv,
                                               int32_t cache_k, int32_t cache_v, int32_t lengths,
                                               int32_t heads, float scale);
int32_t kiln_network_add_cross_attention(kiln_network *net, const char *name, int32_t q,
                                         int32_t k, int32_t v, int32_t heads, float scale);
/* The same two layers over int8 caches (half the memory of fp16 ones, and half the bytes a
 * decoding step reads). Every cached key or value vector of Dh elements is stored as Dh int8
 * codes and one scale: k_scale / v_scale [Bc, H, Tmax] (self) or [Bk, H, A] (cross), float
 * inputs held in the engine's precision; element d is code[d] * scale. No calibration: the
 * scale is computed when the vector is written, scale = max|x| / 127 over its Dh values
 * (rounded to the scales' dtype), code = round(x / scale) clamped to [-127, 127] (0 when the
 * scale is 0). The self-attention layer quantizes the new keys/values it appends; the caller
 * quantizes cross-attention keys/values with kiln_network_add_quantize_int8 (in the network
 * that computes them). The attention itself runs in fp32 on the dequantized values. */
int32_t kiln_network_add_cached_self_attention_int8(kiln_network *net, const char *name,
                                                    int32_t qkv, int32_t cache_k, int32_t cache_v,
                                                    int32_t k_scale, int32_t v_scale,
                                                    int32_t lengths, int32_t heads, float scale);
int32_t kiln_network_add_cross_attention_int8(kiln_network *net, const char *name, int32_t q,
                                              int32_t k, int32_t v, int32_t k_scale,
                                              int32_t v_scale, int32_t heads, float scale);
/* Symmetric int8 quantization of x [..., D] per row of its last dim, by the rule above: two
 * outputs, codes [..., D] int8 (the returned id) and scales [...] (the returned id + 1, float
 * in the engine's precision). */
int32_t kiln_network_add_quantize_int8(kiln_network *net, const char *name, int32_t x);
/* A plugin layer with n_in inputs and the plugin's outputs; returns the first output's id (the
 * others follow consecutively). */
int32_t kiln_network_add_plugin(kiln_network *net, const char *name, const char *plugin_name,
                                int32_t plugin_version, int32_t n_in, const int32_t *inputs,
                                int32_t n_fields, const struct kiln_plugin_field *fields);

kiln_status kiln_network_mark_output(kiln_network *net, int32_t tensor, const char *name);

/* Optimization profiles: each gives min/opt/max for every dynamic input dimension.
 * kiln_network_add_profile() returns the profile index (>= 0). */
int32_t kiln_network_add_profile(kiln_network *net);
kiln_status kiln_network_set_profile_dims(kiln_network *net, int32_t profile, const char *input,
                                          const int64_t *min, const int64_t *opt,
                                          const int64_t *max);

/* Look-ups (for tools and tests). */
int32_t kiln_network_find_tensor(const kiln_network *net, const char *name);
int32_t kiln_network_num_layers(const kiln_network *net);

#ifdef __cplusplus
}
#endif
#endif /* KILN_NETWORK_H */

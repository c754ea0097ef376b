/* src/core/quant.h - symmetric weight-only quantization of [N, K] matrices (int8, packed int4),
 * shared by the builder (quantizing weights), the CPU backend (dequantizing them) and tests.
 *
 * Format (the weights and scales of KILN_OP_MATMUL_WQ, see net/graph.h):
 *   - codes q[N, K]: int8 in [-128, 127], or int4 in [-8, 7] packed two per byte with the
 *     element of flat index i = n * K + k in byte i / 2, the even index in the low nibble, each
 *     nibble a two's complement 4-bit value (kiln_dtype_bytes(KILN_DTYPE_INT4, N * K) bytes);
 *   - scales s, fp32, of either sign: group 0 gives one per row, s[N]; group G > 0 (G divides K)
 *     gives one per G consecutive elements of a row, s[N, K / G];
 *   - w[n, k] = q[n, k] * s[n, k / G] (or s[n]), computed in fp32.
 * Every decoder (kiln_quant_code and kiln_dequantize_rows here, the CUDA dequantization kernel
 * in backends/cuda/matmul_wq.cu and the skinny kernel in backends/cuda/skinny.cu) reads the
 * whole code range and multiplies by the signed scale. Engines written before the full range
 * was used (codes in [-7, 7] / [-127, 127], s >= 0) are the same format.
 * Quantizing, per row or group: let m be its element of largest magnitude (the first one on a
 * tie) and qmax 7 or 127. Two candidates, each of which reproduces m exactly:
 *   full range:        s = -m / (qmax + 1): m gets the code -(qmax + 1) (-8 or -128), a step of
 *                      |m| / 8 for int4 (the scale's sign is the opposite of m's);
 *   round-to-nearest:  s = |m| / qmax: m gets +-qmax, a step of |m| / 7 (the quantizer before).
 * For each, q = round(w / s) with halves away from zero, clamped to [-(qmax + 1), qmax]; the one
 * with the smaller sum of (w - q s)^2 (q s rounded to fp32) is kept, full range on a tie. So
 * the error of every group is at most plain round-to-nearest's, and |w - q s| <= |s| / 2 for
 * every element whose code is not an end of the range. An all-zero row or group (or one whose
 * |m| / qmax underflows to 0) gets s = 0 and q = 0. Deterministic: plain fp32 / fp64 loops in a
 * fixed order.
 * Why not a clip search (scales below |m| / qmax chosen by least squares, as llama.cpp's and
 * AWQ's weight-only searches do): on whisper-base it lowers the weights' squared error further
 * but changes the model's output more (bench/quant_acc.c; numbers in docs/quantization.md):
 * clipping the largest weights of a group costs more than the rounding error it saves.
 * Not a calibration tool (no activation statistics, no asymmetric zero points).
 */
#ifndef KILN_CORE_QUANT_H
#define KILN_CORE_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

/* Number of scales for an [n, k] matrix with this group (0: per row): n or n * k / group. */
int64_t kiln_quant_scale_count(int64_t n, int64_t k, int32_t group);

/* KILN_OK when qdtype is INT8 or INT4, n, k >= 0 and group is 0 or a positive divisor of k;
 * else KILN_ERR_INVALID_ARG / KILN_ERR_UNSUPPORTED with a message. */
kiln_status kiln_quant_check(kiln_dtype qdtype, int64_t n, int64_t k, int32_t group);

/* Quantize w[n, k] (fp32, row-major) into q (kiln_dtype_bytes(qdtype, n * k) bytes) and
 * scales (kiln_quant_scale_count floats). KILN_ERR_INVALID_ARG when w holds NaN or Inf (q and
 * scales are then partly written). */
kiln_status kiln_quantize(const float *w, int64_t n, int64_t k, kiln_dtype qdtype, int32_t group,
                          void *q, float *scales);

/* The code of element i (flat index n * K + k) of a quantized matrix. */
int32_t kiln_quant_code(const void *q, kiln_dtype qdtype, int64_t i);

/* Rows [row0, row0 + rows) of the dequantized matrix into out[rows, k] (fp32). Arguments are
 * assumed valid (kiln_quant_check). */
void kiln_dequantize_rows(const void *q, kiln_dtype qdtype, const float *scales, int32_t group,
                          int64_t k, int64_t row0, int64_t rows, float *out);

#endif /* KILN_CORE_QUANT_H */

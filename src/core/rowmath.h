/* src/core/rowmath.h - reductions over one row of fp32 values that the host computes at every
 * decoding step (Whisper's logit filters, greedy choice and sums of log-probabilities:
 * models/whisper/decode.c, beam.c): the largest entry, the index of the first largest entry,
 * and log(sum(exp(x))).
 *
 * AVX2 + FMA code on the CPUs that have it (core/cpu.h), portable C elsewhere; both compute
 * exp(x - max) in float with the same polynomial (Cephes' expf: relative error below 2e-7) and
 * sum the terms in double, so log(sum(exp(x))) is within about 3e-7 of the exact value (absolute,
 * for rows of up to millions of entries); openai-whisper computes it in float32 on the GPU.
 * max and argmax are exact. NaN entries are skipped by max and argmax and make logsumexp NaN.
 * Not here: softmax or sampling (decode.c keeps its double-precision sampling). Thread-safe;
 * not a public header. */
#ifndef KILN_CORE_ROWMATH_H
#define KILN_CORE_ROWMATH_H

#include <stdint.h>

/* The largest entry of x[0 .. n - 1] (NaN entries skipped); -inf when there is none. */
float kiln_row_max(const float *x, int64_t n);
/* The index of the first entry equal to kiln_row_max(x, n) (torch.argmax's and numpy.argmax's
 * answer on rows without NaN); 0 when there is none (n == 0 or only NaN). */
int64_t kiln_row_argmax(const float *x, int64_t n);
/* log(sum(exp(x[0 .. n - 1]))) as m + log(sum(exp(x - m))) with m the largest entry; -inf when
 * every entry is -inf (or n == 0); NaN when an entry is NaN or +inf. argmax (may be NULL)
 * receives kiln_row_argmax(x, n), found on the way. */
double kiln_row_logsumexp(const float *x, int64_t n, int64_t *argmax);

#endif

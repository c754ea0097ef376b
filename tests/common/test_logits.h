/* tests/common/test_logits.h - comparing rows of logits [rows, vocab] (fp32, host) in the
 * Whisper tests: a row's argmax (the first maximum, as numpy's argmax), the margin between its
 * best and second-best value, and how many rows' argmaxes agree between two arrays. Not a test
 * itself. */
#ifndef KILN_TEST_LOGITS_H
#define KILN_TEST_LOGITS_H

#include <math.h>
#include <stdint.h>

static inline int32_t logits_argmax(const float *row, int32_t vocab) {
  int32_t best = 0;
  for (int32_t v = 1; v < vocab; v++)
    if (row[v] > row[best]) best = v;
  return best;
}

/* best - second-best value of a row (0 for a tie) */
static inline double logits_margin(const float *row, int32_t vocab) {
  int32_t best = logits_argmax(row, vocab);
  double second = -INFINITY;
  for (int32_t v = 0; v < vocab; v++)
    if (v != best && row[v] > second) second = row[v];
  return (double)row[best] - second;
}

/* rows of a and b [rows, vocab] whose argmaxes agree */
static inline int32_t logits_argmax_agree(const float *a, const float *b, int32_t rows, int32_t vocab) {
  int32_t same = 0;
  for (int32_t r = 0; r < rows; r++)
    same += logits_argmax(a + (int64_t)r * vocab, vocab) == logits_argmax(b + (int64_t)r * vocab, vocab);
  return same;
}

#endif

/* tests/unit/test_wer.c - kiln's word error rate against jiwer 4.
 *
 * What it is: for every pair of tests/data/wer_cases.tsv (hand-made and random pairs, written by
 * tools/make_wer_refs.py from jiwer.process_words) the hits, substitutions, deletions,
 * insertions and the per-word alignment must equal jiwer's, and the corpus WER over all pairs
 * must equal jiwer's corpus WER. Also: the alignment indices walk both sentences in order and
 * matches really match, the empty-reference edge case, white-space handling and NULL arguments.
 * What it is not: a test of the text normalizer (test_textnorm.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/textnorm.h"

#define CASES_TSV KILN_SOURCE_DIR "/tests/data/wer_cases.tsv"

static char op_letter(kiln_wer_op_type t) {
  return t == KILN_WER_OP_TYPE_MATCH ? '=' : t == KILN_WER_OP_TYPE_SUBSTITUTION ? 's'
         : t == KILN_WER_OP_TYPE_DELETION ? 'd' : 'i';
}

/* The n-th space-separated word of s (test sentences use single spaces). */
static int word_at(const char *s, int n, const char **start) {
  for (int i = 0; i < n; i++) {
    s = strchr(s, ' ');
    if (!s) return -1;
    s++;
  }
  *start = s;
  const char *end = strchr(s, ' ');
  return end ? (int)(end - s) : (int)strlen(s);
}

/* Steps advance one sentence or both by one word, cover every word, and matches are equal. */
static void check_ops_walk(const char *ref, const char *hyp, const kiln_wer_op *ops, int64_t n,
                           const kiln_wer_counts *c) {
  int32_t ri = 0, hi = 0;
  int ok = 1;
  for (int64_t k = 0; k < n; k++) {
    kiln_wer_op_type t = ops[k].type;
    int uses_ref = t != KILN_WER_OP_TYPE_INSERTION, uses_hyp = t != KILN_WER_OP_TYPE_DELETION;
    if ((uses_ref && ops[k].ref_index != ri) || (!uses_ref && ops[k].ref_index != -1)) ok = 0;
    if ((uses_hyp && ops[k].hyp_index != hi) || (!uses_hyp && ops[k].hyp_index != -1)) ok = 0;
    if (ok && uses_ref && uses_hyp) {
      const char *a = "", *b = "";
      int la = word_at(ref, ri, &a), lb = word_at(hyp, hi, &b);
      int same = la == lb && la >= 0 && memcmp(a, b, (size_t)la) == 0;
      if (same != (t == KILN_WER_OP_TYPE_MATCH)) ok = 0;
    }
    ri += uses_ref;
    hi += uses_hyp;
  }
  if (ri != c->ref_words || hi != c->hyp_words) ok = 0;
  CHECK(ok);
  if (!ok) fprintf(stderr, "  bad alignment walk for [%s] / [%s]\n", ref, hyp);
}

static void test_jiwer_cases(void) {
  FILE *f = fopen(CASES_TSV, "r");
  CHECK(f != NULL);
  if (!f) return;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int pairs = 0, exact = 0;
  double corpus_want = -1;
  kiln_wer_counts total = {0};
  while ((len = getline(&line, &cap, f)) >= 0) {
    if (len > 0 && line[len - 1] == '\n') line[len - 1] = '\0';
    if (strncmp(line, "#corpus\t", 8) == 0) {
      corpus_want = strtod(line + 8, NULL);
      continue;
    }
    char *ref = line, *hyp = strchr(ref, '\t');
    if (!hyp) continue;
    *hyp++ = '\0';
    char *rest = strchr(hyp, '\t');
    CHECK(rest != NULL);
    if (!rest) continue;
    *rest++ = '\0';
    long h, s, d, ins;
    char want_ops[512] = "";
    CHECK(sscanf(rest, "%ld\t%ld\t%ld\t%ld\t%511s", &h, &s, &d, &ins, want_ops) >= 4);
    kiln_wer_counts c;
    kiln_wer_op *ops = NULL;
    int64_t n = 0;
    CHECK_OK(kiln_wer_align(ref, hyp, &c, &ops, &n));
    char got_ops[512] = "";
    for (int64_t k = 0; k < n && k < 511; k++) got_ops[k] = op_letter(ops[k].type);
    got_ops[n < 511 ? n : 511] = '\0';
    int ok = c.hits == h && c.substitutions == s && c.deletions == d && c.insertions == ins &&
             strcmp(got_ops, want_ops) == 0;
    CHECK(ok);
    if (!ok)
      fprintf(stderr, "  [%s] / [%s]: got H%lld S%lld D%lld I%lld %s, jiwer H%ld S%ld D%ld I%ld %s\n",
              ref, hyp, (long long)c.hits, (long long)c.substitutions, (long long)c.deletions,
              (long long)c.insertions, got_ops, h, s, d, ins, want_ops);
    exact += ok;
    check_ops_walk(ref, hyp, ops, n, &c);
    kiln_wer_free_ops(ops);
    kiln_wer_counts_add(&total, &c);
    pairs++;
  }
  free(line);
  fclose(f);
  CHECK(pairs >= 300);
  CHECK(corpus_want > 0);
  CHECK_NEAR(kiln_wer_rate(&total), corpus_want, 1e-12);
  fprintf(stderr, "wer reference pairs: %d of %d equal jiwer (counts and alignment); corpus WER "
          "%.6f vs jiwer %.6f\n", exact, pairs, kiln_wer_rate(&total), corpus_want);
}

static void test_edges(void) {
  kiln_wer_counts c;
  CHECK_OK(kiln_wer_align("", "a b", &c, NULL, NULL)); /* empty reference: WER = insertions */
  CHECK_EQ_INT(c.ref_words, 0);
  CHECK_EQ_INT(c.insertions, 2);
  CHECK_NEAR(kiln_wer_rate(&c), 2.0, 0);
  CHECK_OK(kiln_wer_align("  a \t b\n", "a   b ", &c, NULL, NULL)); /* runs of white space */
  CHECK_EQ_INT(c.hits, 2);
  CHECK_EQ_INT(c.ref_words, 2);
  CHECK_NEAR(kiln_wer_rate(&c), 0.0, 0);
  CHECK_OK(kiln_wer_align("a b c d", "a x c", &c, NULL, NULL));
  CHECK_NEAR(kiln_wer_rate(&c), 0.5, 1e-15);
  kiln_wer_counts untouched = {7, 7, 7, 7, 7, 7};
  CHECK_STATUS(kiln_wer_align(NULL, "a", &untouched, NULL, NULL), KILN_ERR_INVALID_ARG);
  kiln_wer_op *ops = NULL;
  CHECK_STATUS(kiln_wer_align("a", "a", &untouched, &ops, NULL), KILN_ERR_INVALID_ARG);
  CHECK_EQ_INT(untouched.hits, 7);
  CHECK(ops == NULL);
}

int main(void) {
  test_jiwer_cases();
  test_edges();
  return check_report();
}

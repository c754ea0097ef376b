/* src/models/whisper/wer.c - word error rate: word-level Levenshtein alignment as jiwer 4 does it.
 *
 * What it is: jiwer.process_words for one sentence pair. Words are split on ASCII white space.
 * The alignment follows rapidfuzz's Levenshtein.editops exactly (common prefix and suffix taken
 * out first, then the backtrace of Hyyrö's bit-parallel algorithm, here written on the plain DP
 * matrix: a deletion when D[i][j] - D[i-1][j] == +1, else an insertion when
 * D[i][j-1] - D[i-1][j-1] == -1, else a match or a substitution), so the split of errors between
 * substitutions, deletions and insertions is the same as jiwer's, not just their sum.
 * What it is not: a character error rate, nor a text normalizer (see textnorm.c). Memory is
 * (ref words + 1) x (hyp words + 1) int32 after the common affix is removed: fine for utterances,
 * not for whole-corpus single sentences of tens of thousands of words.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/textnorm.h"

typedef struct word_list {
  const char **start; /* into the caller's string */
  int32_t *len;
  int32_t count;
} word_list;

static int is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static kiln_status split_words(const char *s, word_list *w) {
  size_t n = strlen(s), words = 0;
  for (size_t i = 0; i < n; i++)
    if (!is_ascii_space(s[i]) && (i == 0 || is_ascii_space(s[i - 1]))) words++;
  if (words > INT32_MAX / 2)
    return kiln_error(KILN_ERR_INVALID_ARG, "sentence has too many words (%zu) for the WER alignment", words);
  w->start = malloc((words ? words : 1) * sizeof *w->start);
  w->len = malloc((words ? words : 1) * sizeof *w->len);
  w->count = 0;
  if (!w->start || !w->len) {
    free(w->start);
    free(w->len);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory splitting a sentence into words");
  }
  for (size_t i = 0; i < n;) {
    if (is_ascii_space(s[i])) {
      i++;
      continue;
    }
    size_t j = i;
    while (j < n && !is_ascii_space(s[j])) j++;
    w->start[w->count] = s + i;
    w->len[w->count] = (int32_t)(j - i);
    w->count++;
    i = j;
  }
  return KILN_OK;
}

static void free_words(word_list *w) {
  free(w->start);
  free(w->len);
}

static int same_word(const word_list *a, int32_t i, const word_list *b, int32_t j) {
  return a->len[i] == b->len[j] && memcmp(a->start[i], b->start[j], (size_t)a->len[i]) == 0;
}

static void count_op(kiln_wer_counts *c, kiln_wer_op_type type) {
  if (type == KILN_WER_OP_TYPE_MATCH) c->hits++;
  else if (type == KILN_WER_OP_TYPE_SUBSTITUTION) c->substitutions++;
  else if (type == KILN_WER_OP_TYPE_DELETION) c->deletions++;
  else c->insertions++;
}

/* Fills ops (room for ref + hyp steps) in reverse order; returns the number of steps. */
static int64_t backtrace(const word_list *ref, const word_list *hyp, int32_t prefix, int32_t n1,
                         int32_t n2, const int32_t *dist, kiln_wer_op *ops) {
  int64_t k = 0;
  int32_t i = n1, j = n2; /* rapidfuzz's col (reference) and row (hypothesis) */
  const int64_t stride = (int64_t)n2 + 1;
#define D(a, b) dist[(int64_t)(a) * stride + (b)]
  while (i > 0 && j > 0) {
    if (D(i, j) - D(i - 1, j) == 1) { /* deletion */
      i--;
      ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_DELETION, prefix + i, -1};
      continue;
    }
    j--;
    if (j > 0 && D(i, j) - D(i - 1, j) == -1) { /* insertion */
      ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_INSERTION, -1, prefix + j};
      continue;
    }
    i--;
    kiln_wer_op_type t = same_word(ref, prefix + i, hyp, prefix + j) ? KILN_WER_OP_TYPE_MATCH
                                                                     : KILN_WER_OP_TYPE_SUBSTITUTION;
    ops[k++] = (kiln_wer_op){t, prefix + i, prefix + j};
  }
#undef D
  while (i > 0) {
    i--;
    ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_DELETION, prefix + i, -1};
  }
  while (j > 0) {
    j--;
    ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_INSERTION, -1, prefix + j};
  }
  return k;
}

/* Standard Levenshtein DP over the trimmed words: dist[i][j] = distance of ref[:i], hyp[:j]. */
static int32_t *distance_matrix(const word_list *ref, const word_list *hyp, int32_t prefix,
                                int32_t n1, int32_t n2) {
  int64_t stride = (int64_t)n2 + 1;
  if ((int64_t)(n1 + 1) * stride > ((int64_t)1 << 31)) return NULL;
  int32_t *d = malloc((size_t)((int64_t)(n1 + 1) * stride) * sizeof *d);
  if (!d) return NULL;
  for (int32_t j = 0; j <= n2; j++) d[j] = j;
  for (int32_t i = 1; i <= n1; i++) {
    d[i * stride] = i;
    for (int32_t j = 1; j <= n2; j++) {
      int32_t sub = d[(i - 1) * stride + j - 1] + !same_word(ref, prefix + i - 1, hyp, prefix + j - 1);
      int32_t del = d[(i - 1) * stride + j] + 1, ins = d[i * stride + j - 1] + 1;
      int32_t best = sub < del ? sub : del;
      d[i * stride + j] = best < ins ? best : ins;
    }
  }
  return d;
}

static kiln_status align_words(const word_list *ref, const word_list *hyp, kiln_wer_op *ops,
                               int64_t *n_ops) {
  int32_t prefix = 0, suffix = 0;
  while (prefix < ref->count && prefix < hyp->count && same_word(ref, prefix, hyp, prefix)) prefix++;
  while (suffix < ref->count - prefix && suffix < hyp->count - prefix &&
         same_word(ref, ref->count - 1 - suffix, hyp, hyp->count - 1 - suffix))
    suffix++;
  int32_t n1 = ref->count - prefix - suffix, n2 = hyp->count - prefix - suffix;
  int32_t *dist = distance_matrix(ref, hyp, prefix, n1, n2);
  if (!dist)
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "cannot allocate the %d x %d WER alignment matrix; "
                      "split the text into shorter utterances", n1 + 1, n2 + 1);
  int64_t k = 0; /* ops are written last step first, then flipped */
  for (int32_t s = 0; s < suffix; s++)
    ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_MATCH, ref->count - 1 - s, hyp->count - 1 - s};
  k += backtrace(ref, hyp, prefix, n1, n2, dist, ops + k);
  free(dist);
  for (int32_t p = prefix - 1; p >= 0; p--) ops[k++] = (kiln_wer_op){KILN_WER_OP_TYPE_MATCH, p, p};
  for (int64_t a = 0, b = k - 1; a < b; a++, b--) { /* forward order */
    kiln_wer_op t = ops[a];
    ops[a] = ops[b];
    ops[b] = t;
  }
  *n_ops = k;
  return KILN_OK;
}

kiln_status kiln_wer_align(const char *reference, const char *hypothesis, kiln_wer_counts *counts,
                           kiln_wer_op **ops, int64_t *n_ops) {
  if (!reference || !hypothesis || !counts || (ops && !n_ops))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_wer_align: reference, hypothesis and counts must "
                      "not be NULL, and n_ops must be given with ops");
  word_list ref, hyp;
  KILN_TRY(split_words(reference, &ref));
  kiln_status s = split_words(hypothesis, &hyp);
  if (s != KILN_OK) {
    free_words(&ref);
    return s;
  }
  kiln_wer_op *list = malloc(((size_t)ref.count + (size_t)hyp.count + 1) * sizeof *list);
  int64_t k = 0;
  s = list ? align_words(&ref, &hyp, list, &k)
           : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory aligning sentences");
  if (s == KILN_OK) {
    kiln_wer_counts c = {0};
    for (int64_t i = 0; i < k; i++) count_op(&c, list[i].type);
    c.ref_words = ref.count;
    c.hyp_words = hyp.count;
    *counts = c;
    if (ops) {
      *ops = list;
      *n_ops = k;
      list = NULL;
    }
  }
  free(list);
  free_words(&ref);
  free_words(&hyp);
  return s;
}

void kiln_wer_free_ops(kiln_wer_op *ops) { free(ops); }

void kiln_wer_counts_add(kiln_wer_counts *total, const kiln_wer_counts *part) {
  total->hits += part->hits;
  total->substitutions += part->substitutions;
  total->deletions += part->deletions;
  total->insertions += part->insertions;
  total->ref_words += part->ref_words;
  total->hyp_words += part->hyp_words;
}

double kiln_wer_rate(const kiln_wer_counts *c) {
  if (c->ref_words == 0) return (double)c->insertions; /* jiwer's edge case for empty references */
  return (double)(c->substitutions + c->deletions + c->insertions) / (double)c->ref_words;
}

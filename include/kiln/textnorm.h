/* kiln/textnorm.h - Whisper's English text normalizer and word error rate (WER).
 *
 * What it is: a C port of openai-whisper's EnglishTextNormalizer (whisper/normalizers/english.py
 * and basic.py): lower-casing, removal of [..], <..> and (..) spans and of the fillers hmm, mm,
 * mhm, mmm, uh, um; contractions and titles spelled out (won't -> will not, mr -> mister, ...);
 * symbols and diacritics removed (NFKD) except . % $ ¢ € £; spelled-out numbers turned into
 * digits (EnglishNumberNormalizer: "twenty five" -> "25", "two dollars and seven cents" ->
 * "$2.07", ordinals, "point", "double", percent); British spellings made American
 * (EnglishSpellingNormalizer, from openai-whisper's english.json); whitespace runs collapsed.
 * Outputs match the Python reference byte for byte, leading/trailing spaces included (the
 * reference does not strip), except for the cases listed in tests/data/textnorm_known_failures.txt.
 * And a word-level WER that matches jiwer 4 (same alignment as rapidfuzz's Levenshtein.editops,
 * so the same split between substitutions, deletions and insertions).
 * What it is not: the multilingual BasicTextNormalizer, nor a character error rate.
 *
 * Usage:
 *   kiln_textnorm *tn;
 *   kiln_textnorm_create(".../whisper/openai-assets/english.json", &tn);
 *   char *norm;
 *   kiln_textnorm_english(tn, "Mr. Smith paid twenty-five dollars.", &norm);  // "mister smith paid $25"
 *   kiln_textnorm_free_string(norm);
 *   kiln_textnorm_destroy(tn);
 *
 *   kiln_wer_counts total = {0};
 *   kiln_wer_align(ref_words, hyp_words, &counts, NULL, NULL);   // per utterance
 *   kiln_wer_counts_add(&total, &counts);
 *   double wer = kiln_wer_rate(&total);                           // corpus WER, (S+D+I)/N
 *
 * Spelling file format: english.json is one JSON object mapping each British spelling to its
 * American spelling ({"colour": "color", ...}), both lower-case words.
 *
 * Thread-safety: a kiln_textnorm is immutable after creation; kiln_textnorm_english may be called
 * from several threads on the same object. The WER functions keep no state.
 * Ownership: strings and op arrays returned by these functions belong to the caller; free them
 * with kiln_textnorm_free_string() / kiln_wer_free_ops(). Inputs must be valid UTF-8.
 */
#ifndef KILN_TEXTNORM_H
#define KILN_TEXTNORM_H

#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_textnorm kiln_textnorm;

/* Loads the British->American spelling map and compiles the regular expressions.
 * spelling_json_path: openai-whisper's english.json. */
kiln_status kiln_textnorm_create(const char *spelling_json_path, kiln_textnorm **out);
void kiln_textnorm_destroy(kiln_textnorm *tn);

/* Normalizes `text` (UTF-8) like whisper's EnglishTextNormalizer()(text). *out receives a new
 * NUL-terminated string; on error *out is untouched. */
kiln_status kiln_textnorm_english(const kiln_textnorm *tn, const char *text, char **out);
void kiln_textnorm_free_string(char *s);

/* ---- word error rate ------------------------------------------------------------------------ */

/* One step of an alignment, in order from the start of both sentences. ref_index / hyp_index are
 * word indices; ref_index is -1 for an insertion, hyp_index is -1 for a deletion. */
typedef enum kiln_wer_op_type {
  KILN_WER_OP_TYPE_MATCH = 0,
  KILN_WER_OP_TYPE_SUBSTITUTION = 1,
  KILN_WER_OP_TYPE_DELETION = 2,
  KILN_WER_OP_TYPE_INSERTION = 3
} kiln_wer_op_type;

typedef struct kiln_wer_op {
  kiln_wer_op_type type;
  int32_t ref_index;
  int32_t hyp_index;
} kiln_wer_op;

typedef struct kiln_wer_counts {
  int64_t hits;
  int64_t substitutions;
  int64_t deletions;
  int64_t insertions;
  int64_t ref_words; /* N = hits + substitutions + deletions */
  int64_t hyp_words;
} kiln_wer_counts;

/* Aligns two sentences word by word. Words are separated by runs of ASCII white space (jiwer's
 * default transform, for text without tabs or newlines inside). ops (optional, may be NULL)
 * receives a new array of *n_ops steps. */
kiln_status kiln_wer_align(const char *reference, const char *hypothesis, kiln_wer_counts *counts,
                           kiln_wer_op **ops, int64_t *n_ops);
void kiln_wer_free_ops(kiln_wer_op *ops);

/* total += part. */
void kiln_wer_counts_add(kiln_wer_counts *total, const kiln_wer_counts *part);

/* (S + D + I) / N. With N == 0 it returns the number of insertions, as jiwer does. */
double kiln_wer_rate(const kiln_wer_counts *counts);

#ifdef __cplusplus
}
#endif
#endif /* KILN_TEXTNORM_H */

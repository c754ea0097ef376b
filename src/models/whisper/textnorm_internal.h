/* src/models/whisper/textnorm_internal.h - shared helpers of the Whisper text normalizer.
 *
 * What it is: a growable byte buffer, word splitting with Python's str.split() rules, PCRE2
 * compile/substitute wrappers (UTF + UCP, so \b \d \s \w are Unicode-aware as in Python's re),
 * and the number normalizer (EnglishNumberNormalizer) interface. Not a public header.
 */
#ifndef KILN_MODELS_WHISPER_TEXTNORM_INTERNAL_H
#define KILN_MODELS_WHISPER_TEXTNORM_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

#include "kiln/status.h"

/* Python's \s in str patterns: PCRE2's UCP \s plus the separators str.isspace() adds. */
#define KILN_TN_WS "[\\s\\x{1c}-\\x{1f}\\x{85}]"

typedef struct kiln_tn_buf {
  char *data;
  size_t len, cap;
  int failed; /* an allocation failed: kiln_tn_buf_finish returns NULL */
} kiln_tn_buf;

void kiln_tn_buf_append(kiln_tn_buf *b, const char *s, size_t n);
void kiln_tn_buf_puts(kiln_tn_buf *b, const char *s);
void kiln_tn_buf_putc(kiln_tn_buf *b, char c);
/* NUL-terminated result (caller frees), or NULL if an allocation failed (buffer freed). */
char *kiln_tn_buf_finish(kiln_tn_buf *b);

/* Words of a string split as Python's str.split(): runs of str.isspace() code points. */
typedef struct kiln_tn_words {
  char **words;
  int count;
} kiln_tn_words;
kiln_status kiln_tn_split(const char *s, kiln_tn_words *out);
void kiln_tn_words_free(kiln_tn_words *w);

kiln_status kiln_tn_check_utf8(const char *s);
kiln_status kiln_tn_compile(const char *pattern, pcre2_code **out);
/* Python's re.sub(pattern, replacement, s) with replacement groups written $1, $2. */
kiln_status kiln_tn_substitute(const pcre2_code *re, const char *s, const char *replacement,
                               char **out);
/* 1 if the whole of s matches re. */
int kiln_tn_full_match(const pcre2_code *re, const char *s);

/* EnglishNumberNormalizer: preprocess, process_words, postprocess. */
typedef struct kiln_tn_numbers kiln_tn_numbers;
kiln_status kiln_tn_numbers_create(kiln_tn_numbers **out);
void kiln_tn_numbers_destroy(kiln_tn_numbers *n);
kiln_status kiln_tn_numbers_apply(const kiln_tn_numbers *n, const char *s, char **out);

#endif /* KILN_MODELS_WHISPER_TEXTNORM_INTERNAL_H */

/* src/models/whisper/textnorm_util.c - buffers, word splitting and PCRE2 wrappers.
 *
 * What it is: the small helpers declared in textnorm_internal.h. Not a regex engine: every
 * pattern goes through PCRE2.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/whisper/textnorm_internal.h"
#include "models/whisper/textnorm_unicode.h"

static int buf_reserve(kiln_tn_buf *b, size_t extra) {
  if (b->failed) return 0;
  if (b->len + extra + 1 <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = 1;
    return 0;
  }
  b->data = p;
  b->cap = cap;
  return 1;
}

void kiln_tn_buf_append(kiln_tn_buf *b, const char *s, size_t n) {
  if (!buf_reserve(b, n)) return;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void kiln_tn_buf_puts(kiln_tn_buf *b, const char *s) { kiln_tn_buf_append(b, s, strlen(s)); }

void kiln_tn_buf_putc(kiln_tn_buf *b, char c) { kiln_tn_buf_append(b, &c, 1); }

char *kiln_tn_buf_finish(kiln_tn_buf *b) {
  if (b->failed || !buf_reserve(b, 0)) {
    free(b->data);
    b->data = NULL;
    return NULL;
  }
  b->data[b->len] = '\0';
  return b->data;
}

kiln_status kiln_tn_split(const char *s, kiln_tn_words *out) {
  kiln_tn_words w = {0};
  int cap = 0;
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    if (kiln_tn_is_space(cp)) {
      i += (size_t)len;
      continue;
    }
    size_t start = i;
    while (i < n) {
      len = kiln_tn_utf8_decode(s + i, n - i, &cp);
      if (kiln_tn_is_space(cp)) break;
      i += (size_t)len;
    }
    if (w.count == cap) {
      cap = cap ? cap * 2 : 16;
      char **p = realloc(w.words, (size_t)cap * sizeof *p);
      if (!p) goto oom;
      w.words = p;
    }
    w.words[w.count] = malloc(i - start + 1);
    if (!w.words[w.count]) goto oom;
    memcpy(w.words[w.count], s + start, i - start);
    w.words[w.count][i - start] = '\0';
    w.count++;
  }
  *out = w;
  return KILN_OK;
oom:
  kiln_tn_words_free(&w);
  return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory splitting text into words");
}

void kiln_tn_words_free(kiln_tn_words *w) {
  for (int i = 0; i < w->count; i++) free(w->words[i]);
  free(w->words);
  w->words = NULL;
  w->count = 0;
}

kiln_status kiln_tn_check_utf8(const char *s) {
  /* PCRE2 validates UTF-8 for us: compile-free check through pcre2_match on an empty pattern
   * would cost a compile; a direct scan is simpler and equally strict for our needs. */
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (u[i]) {
    int len = u[i] < 0x80 ? 1 : (u[i] >= 0xC2 && u[i] <= 0xDF) ? 2 : (u[i] >> 4) == 0xE ? 3
              : (u[i] >= 0xF0 && u[i] <= 0xF4) ? 4 : 0;
    uint32_t cp = 0;
    int ok = len > 0;
    for (int k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
    if (ok) {
      kiln_tn_utf8_decode(s + i, (size_t)len, &cp);
      ok = !(len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF));
    }
    if (!ok)
      return kiln_error(KILN_ERR_INVALID_ARG, "text is not valid UTF-8 (bad byte 0x%02x at offset %zu); "
                        "convert it to UTF-8 before normalizing", u[i], i);
    i += (size_t)len;
  }
  return KILN_OK;
}

kiln_status kiln_tn_compile(const char *pattern, pcre2_code **out) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                 &err, &offset, NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return kiln_error(KILN_ERR_INTERNAL, "cannot compile text-normalizer regex '%s' at %zu: %s "
                      "(PCRE2 built without Unicode support?)", pattern, (size_t)offset, (char *)msg);
  }
  *out = re;
  return KILN_OK;
}

kiln_status kiln_tn_substitute(const pcre2_code *re, const char *s, const char *replacement,
                               char **out) {
  size_t n = strlen(s);
  PCRE2_SIZE cap = n + n / 2 + 64;
  uint32_t opts = PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH |
                  PCRE2_SUBSTITUTE_UNSET_EMPTY | PCRE2_NO_UTF_CHECK;
  for (int attempt = 0; attempt < 2; attempt++) {
    char *buf = malloc(cap + 1);
    if (!buf) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory normalizing text");
    PCRE2_SIZE outlen = cap + 1;
    int rc = pcre2_substitute(re, (PCRE2_SPTR)s, n, 0, opts, NULL, NULL, (PCRE2_SPTR)replacement,
                              PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)buf, &outlen);
    if (rc >= 0) {
      *out = buf;
      return KILN_OK;
    }
    free(buf);
    if (rc != PCRE2_ERROR_NOMEMORY) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return kiln_error(KILN_ERR_INTERNAL, "text-normalizer substitution failed: %s", (char *)msg);
    }
    cap = outlen; /* the needed length (with the NUL) */
  }
  return kiln_error(KILN_ERR_INTERNAL, "text-normalizer substitution did not fit its buffer");
}

int kiln_tn_full_match(const pcre2_code *re, const char *s) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) return 0;
  size_t n = strlen(s);
  int rc = pcre2_match(re, (PCRE2_SPTR)s, n, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_NO_UTF_CHECK, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

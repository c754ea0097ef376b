/* src/models/whisper/textnorm_utf8.c - UTF-8 and Unicode table helpers for the text normalizer.
 *
 * What it is: decoding/encoding of single code points, binary search in the generated tables of
 * textnorm_unicode.c, Python's str.isspace(), decimal digit values. Not a UTF-8 validator (the
 * normalizer validates with PCRE2 before it decodes) and not a general Unicode library.
 */
#include "models/whisper/textnorm_unicode.h"

int kiln_tn_utf8_decode(const char *s, size_t n, uint32_t *cp) {
  const unsigned char *u = (const unsigned char *)s;
  int len = u[0] < 0x80 ? 1 : (u[0] >> 5) == 0x6 ? 2 : (u[0] >> 4) == 0xE ? 3 : (u[0] >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || (size_t)len > n) {
    *cp = 0xFFFD;
    return 1;
  }
  uint32_t c = len == 1 ? u[0] : len == 2 ? (u[0] & 0x1Fu) : len == 3 ? (u[0] & 0x0Fu) : (u[0] & 0x07u);
  for (int i = 1; i < len; i++) {
    if ((u[i] & 0xC0) != 0x80) {
      *cp = 0xFFFD;
      return 1;
    }
    c = (c << 6) | (u[i] & 0x3Fu);
  }
  *cp = c;
  return len;
}

int kiln_tn_utf8_encode(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

const char *kiln_tn_lookup(const kiln_tn_map_entry *table, int count, uint32_t cp) {
  int lo = 0, hi = count - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2;
    if (table[mid].cp == cp) return table[mid].utf8;
    if (table[mid].cp < cp) lo = mid + 1;
    else hi = mid - 1;
  }
  return NULL;
}

/* Python's str.isspace(): bidirectional class WS, B or S, or category Zs. */
int kiln_tn_is_space(uint32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0) return 1;
  if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029) return 1;
  return cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int kiln_tn_digit_value(uint32_t cp) {
  int lo = 0, hi = kiln_tn_digit_zero_count - 1, best = -1;
  while (lo <= hi) { /* the last zero <= cp */
    int mid = lo + (hi - lo) / 2;
    if (kiln_tn_digit_zeros[mid] <= cp) {
      best = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  if (best < 0 || cp - kiln_tn_digit_zeros[best] > 9) return -1;
  return (int)(cp - kiln_tn_digit_zeros[best]);
}

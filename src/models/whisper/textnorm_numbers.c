/* src/models/whisper/textnorm_numbers.c - Whisper's EnglishNumberNormalizer, ported step by step.
 *
 * What it is: preprocess ("and a half", number/letter boundaries), the process_words state
 * machine, and postprocess (cents, "one") of whisper/normalizers/english.py, in the same order,
 * each branch commented with the Python it follows. Python's integers are unbounded: values are
 * kept as canonical decimal strings (kind VALUE_INT) with decimal addition, so "decillion"
 * (10^33) and long digit runs come out exactly. Python strings stay strings (kind VALUE_STR).
 * What it is not: a general number parser. Where the reference raises (its asserts), this code
 * does something defined instead; those inputs are outside the tested set.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "models/whisper/textnorm_internal.h"
#include "models/whisper/textnorm_unicode.h"

typedef struct word_entry {
  char name[24];
  int value;        /* ones/tens value, or the power of ten of a multiplier */
  const char *suffix; /* "s", "th", "st", "nd", "rd" for suffixed words, else "" */
} word_entry;

enum { RX_NUMERIC, RX_AND_HALF, RX_LETTER_DIGIT, RX_DIGIT_LETTER, RX_SUFFIX, RX_CENTS_COMBINE,
       RX_CENTS_EXTRACT, RX_ONE, RX_NUM_COUNT };
static const char *const patterns[RX_NUM_COUNT] = {
    [RX_NUMERIC] = "^\\d+(\\.\\d+)?$",
    [RX_AND_HALF] = "\\band" KILN_TN_WS "+a" KILN_TN_WS "+half\\b",
    [RX_LETTER_DIGIT] = "([a-z])([0-9])",
    [RX_DIGIT_LETTER] = "([0-9])([a-z])",
    [RX_SUFFIX] = "([0-9])" KILN_TN_WS "+(st|nd|rd|th|s)\\b",
    [RX_CENTS_COMBINE] = "([\\x{20ac}\\x{a3}$])([0-9]+) (?:and )?\\x{a2}([0-9]{1,2})\\b",
    [RX_CENTS_EXTRACT] = "[\\x{20ac}\\x{a3}$]0.([0-9]{1,2})\\b",
    [RX_ONE] = "\\b1(s?)\\b",
};

static const char *const ones_names[20] = {
    "", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"};
static const char *const tens_names[10] = {"", "", "twenty", "thirty", "forty", "fifty",
                                           "sixty", "seventy", "eighty", "ninety"};
static const char *const multiplier_names[12] = {
    "hundred", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion",
    "sextillion", "septillion", "octillion", "nonillion", "decillion"};
static const int multiplier_powers[12] = {2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33};

struct kiln_tn_numbers {
  pcre2_code *rx[RX_NUM_COUNT];
  word_entry ones_suffixed[40];
  int n_ones_suffixed;
  word_entry tens_suffixed[16];
  int n_tens_suffixed;
  word_entry multipliers_suffixed[24];
  int n_multipliers_suffixed;
};

/* ---- the word tables (built as in EnglishNumberNormalizer.__init__) --------------------------- */

static void add_entry(word_entry *table, int *n, const char *name, const char *tail, int value,
                      const char *suffix) {
  snprintf(table[*n].name, sizeof table[*n].name, "%s%s", name, tail);
  table[*n].value = value;
  table[*n].suffix = suffix;
  (*n)++;
}

static void replace_y(char *out, size_t size, const char *name, const char *with) {
  size_t len = strlen(name); /* tens names end in their only 'y' */
  snprintf(out, size, "%.*s%s", (int)(len - 1), name, with);
}

static void build_tables(kiln_tn_numbers *nn) {
  for (int i = 1; i <= 19; i++) /* ones_plural: "sixes" for six, else name + "s" */
    add_entry(nn->ones_suffixed, &nn->n_ones_suffixed, i == 6 ? "sixe" : ones_names[i], "s", i, "s");
  static const struct { const char *name; int value; const char *suffix; } ordinals[] = {
      {"zeroth", 0, "th"}, {"first", 1, "st"}, {"second", 2, "nd"}, {"third", 3, "rd"},
      {"fifth", 5, "th"}, {"twelfth", 12, "th"}};
  for (size_t i = 0; i < sizeof ordinals / sizeof ordinals[0]; i++)
    add_entry(nn->ones_suffixed, &nn->n_ones_suffixed, ordinals[i].name, "", ordinals[i].value,
              ordinals[i].suffix);
  for (int i = 4; i <= 19; i++) { /* name + ("h" if name ends in "t" else "th") */
    if (i == 5 || i == 12) continue;
    const char *name = ones_names[i];
    add_entry(nn->ones_suffixed, &nn->n_ones_suffixed, name,
              name[strlen(name) - 1] == 't' ? "h" : "th", i, "th");
  }
  for (int i = 2; i <= 9; i++) {
    char buf[24];
    replace_y(buf, sizeof buf, tens_names[i], "ies");
    add_entry(nn->tens_suffixed, &nn->n_tens_suffixed, buf, "", i * 10, "s");
    replace_y(buf, sizeof buf, tens_names[i], "ieth");
    add_entry(nn->tens_suffixed, &nn->n_tens_suffixed, buf, "", i * 10, "th");
  }
  for (int i = 0; i < 12; i++) {
    add_entry(nn->multipliers_suffixed, &nn->n_multipliers_suffixed, multiplier_names[i], "s",
              multiplier_powers[i], "s");
    add_entry(nn->multipliers_suffixed, &nn->n_multipliers_suffixed, multiplier_names[i], "th",
              multiplier_powers[i], "th");
  }
}

kiln_status kiln_tn_numbers_create(kiln_tn_numbers **out) {
  kiln_tn_numbers *nn = calloc(1, sizeof *nn);
  if (!nn) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating the number normalizer");
  for (int i = 0; i < RX_NUM_COUNT; i++) {
    kiln_status s = kiln_tn_compile(patterns[i], &nn->rx[i]);
    if (s != KILN_OK) {
      kiln_tn_numbers_destroy(nn);
      return s;
    }
  }
  build_tables(nn);
  *out = nn;
  return KILN_OK;
}

void kiln_tn_numbers_destroy(kiln_tn_numbers *nn) {
  if (!nn) return;
  for (int i = 0; i < RX_NUM_COUNT; i++) pcre2_code_free(nn->rx[i]);
  free(nn);
}

/* ---- word classes (None is NULL and belongs to no class) ------------------------------------- */

static int eq(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

static int ones_value(const char *w) { /* self.ones, or -1 */
  for (int i = 1; i <= 19 && w; i++)
    if (strcmp(w, ones_names[i]) == 0) return i;
  return -1;
}
static int tens_value(const char *w) { /* self.tens, or -1 */
  for (int i = 2; i <= 9 && w; i++)
    if (strcmp(w, tens_names[i]) == 0) return i * 10;
  return -1;
}
static int multiplier_power(const char *w) { /* self.multipliers, or -1 */
  for (int i = 0; i < 12 && w; i++)
    if (strcmp(w, multiplier_names[i]) == 0) return multiplier_powers[i];
  return -1;
}
static const word_entry *find_entry(const word_entry *table, int n, const char *w) {
  for (int i = 0; i < n && w; i++)
    if (strcmp(w, table[i].name) == 0) return &table[i];
  return NULL;
}
static int is_zero_word(const char *w) { return eq(w, "o") || eq(w, "oh") || eq(w, "zero"); }
static const char *preceding_prefixer(const char *w) {
  if (eq(w, "minus") || eq(w, "negative")) return "-";
  if (eq(w, "plus") || eq(w, "positive")) return "+";
  return NULL;
}
static const char *following_prefixer(const char *w) {
  if (eq(w, "pound") || eq(w, "pounds")) return "\xc2\xa3";
  if (eq(w, "euro") || eq(w, "euros")) return "\xe2\x82\xac";
  if (eq(w, "dollar") || eq(w, "dollars")) return "$";
  if (eq(w, "cent") || eq(w, "cents")) return "\xc2\xa2";
  return NULL;
}
static int is_suffixer(const char *w) { return eq(w, "per") || eq(w, "percent"); }
static int is_special(const char *w) {
  return eq(w, "and") || eq(w, "double") || eq(w, "triple") || eq(w, "point");
}
static int in_words(const kiln_tn_numbers *nn, const char *w) { /* self.words */
  return w && (is_zero_word(w) || ones_value(w) > 0 || tens_value(w) > 0 || multiplier_power(w) >= 0 ||
               find_entry(nn->ones_suffixed, nn->n_ones_suffixed, w) ||
               find_entry(nn->tens_suffixed, nn->n_tens_suffixed, w) ||
               find_entry(nn->multipliers_suffixed, nn->n_multipliers_suffixed, w) ||
               preceding_prefixer(w) || following_prefixer(w) || is_suffixer(w) || is_special(w));
}
static int in_decimals(const char *w) { return ones_value(w) > 0 || tens_value(w) > 0 || is_zero_word(w); }

/* ---- unbounded non-negative integers as canonical decimal strings ---------------------------- */

static char *dec_add(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b), n = (la > lb ? la : lb) + 1;
  char *r = malloc(n + 1);
  if (!r) return NULL;
  int carry = 0;
  for (size_t i = 0; i < n; i++) {
    int d = carry + (i < la ? a[la - 1 - i] - '0' : 0) + (i < lb ? b[lb - 1 - i] - '0' : 0);
    r[n - 1 - i] = (char)('0' + d % 10);
    carry = d / 10;
  }
  r[n] = '\0';
  size_t z = 0;
  while (z + 1 < n && r[z] == '0') z++;
  memmove(r, r + z, n - z + 1);
  return r;
}

static int dec_mod(const char *v, int modulus) { /* modulus 10, 100 or 1000 */
  size_t len = strlen(v);
  int digits = modulus == 10 ? 1 : modulus == 100 ? 2 : 3, r = 0;
  for (size_t i = len > (size_t)digits ? len - (size_t)digits : 0; i < len; i++) r = r * 10 + (v[i] - '0');
  return r;
}

/* "1" followed by `power` zeros, or `digits` followed by `power` zeros */
static char *dec_shift(const char *digits, int power) {
  if (strcmp(digits, "0") == 0) return strdup("0");
  size_t n = strlen(digits);
  char *r = malloc(n + (size_t)power + 1);
  if (!r) return NULL;
  memcpy(r, digits, n);
  memset(r + n, '0', (size_t)power);
  r[n + (size_t)power] = '\0';
  return r;
}

/* value // 1000 * 1000 + value % 1000 * 10^power */
static char *dec_multiply_residual(const char *v, int power) {
  size_t len = strlen(v);
  char *before = strdup(v), res[8];
  if (!before) return NULL;
  if (len <= 3) strcpy(before, "0");
  else memset(before + len - 3, '0', 3);
  snprintf(res, sizeof res, "%d", dec_mod(v, 1000));
  char *scaled = dec_shift(res, power);
  char *r = scaled ? dec_add(before, scaled) : NULL;
  free(before);
  free(scaled);
  return r;
}

/* Leading zeros dropped, "0" for none. */
static char *canonical(const char *digits, size_t n) {
  while (n > 1 && digits[0] == '0') {
    digits++;
    n--;
  }
  char *r = malloc(n + 1 > 2 ? n + 1 : 2);
  if (!r) return NULL;
  if (n == 0) strcpy(r, "0");
  else {
    memcpy(r, digits, n);
    r[n] = '\0';
  }
  return r;
}

/* Unicode decimal digits -> ASCII ('.' kept); returns 0 on any other character. */
static int ascii_digits(const char *s, char *out, size_t cap) {
  size_t n = strlen(s), o = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    int d = cp == '.' ? -2 : kiln_tn_digit_value(cp);
    if (d == -1 || o + 1 >= cap) return 0;
    out[o++] = d == -2 ? '.' : (char)('0' + d);
    i += (size_t)len;
  }
  out[o] = '\0';
  return 1;
}

/* Fraction(s) * 10^power when s parses (digits, optional '.', optional digits, at least one
 * digit) and the product is an integer: returns the integer; NULL otherwise (*oom set if the
 * NULL is an allocation failure). */
static char *fraction_times_pow10(const char *s, int power, int *oom) {
  size_t n = strlen(s);
  char *a = malloc(4 * n + 2);
  if (!a) {
    *oom = 1;
    return NULL;
  }
  char *r = NULL;
  if (ascii_digits(s, a, 4 * n + 2)) {
    char *dot = strchr(a, '.');
    size_t int_len = dot ? (size_t)(dot - a) : strlen(a);
    const char *frac = dot ? dot + 1 : "";
    size_t frac_len = strlen(frac);
    int ok = (int_len > 0 || frac_len > 0) && !strchr(frac, '.');
    while (frac_len > 0 && frac[frac_len - 1] == '0') frac_len--;
    if (ok && frac_len <= (size_t)power) {
      size_t total = int_len + (size_t)power;
      char *digits = malloc(total + 1);
      if (digits) {
        memcpy(digits, a, int_len);
        memcpy(digits + int_len, frac, frac_len);
        memset(digits + int_len + frac_len, '0', (size_t)power - frac_len);
        r = canonical(digits, total);
        free(digits);
      }
      if (!r) *oom = 1;
    }
  }
  free(a);
  return r;
}

/* ---- the process_words state --------------------------------------------------------------- */

typedef enum value_kind { VALUE_NONE, VALUE_INT, VALUE_STR } value_kind;

typedef struct num_state {
  const kiln_tn_numbers *nn;
  value_kind kind;
  char *value;     /* canonical digits (VALUE_INT) or the Python string (VALUE_STR) */
  char prefix[8];  /* "" is None */
  kiln_tn_buf out; /* " ".join of the yielded words */
  int n_out;
  int oom;
} num_state;

static void set_value(num_state *st, value_kind kind, char *v) { /* takes v */
  if (!v) st->oom = 1;
  free(st->value);
  st->value = v;
  st->kind = v ? kind : VALUE_NONE;
}

static char *concat(const char *a, const char *b, const char *c) {
  size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
  char *r = malloc(la + lb + lc + 1);
  if (!r) return NULL;
  memcpy(r, a, la);
  memcpy(r + la, b, lb);
  memcpy(r + la + lb, c, lc + 1);
  return r;
}

/* output(result): prefix + result is yielded; value and prefix become None. */
static void emit3(num_state *st, const char *a, const char *b, const char *c) {
  if (st->n_out++) kiln_tn_buf_putc(&st->out, ' ');
  kiln_tn_buf_puts(&st->out, st->prefix);
  kiln_tn_buf_puts(&st->out, a);
  kiln_tn_buf_puts(&st->out, b);
  kiln_tn_buf_puts(&st->out, c);
  free(st->value);
  st->value = NULL;
  st->kind = VALUE_NONE;
  st->prefix[0] = '\0';
}
static void emit(num_state *st, const char *s) { emit3(st, s, "", ""); }
static void emit_value(num_state *st) { /* yield output(value) */
  char *v = st->value;
  st->value = NULL;
  emit(st, v ? v : "");
  free(v);
}
static int has_value(const num_state *st) { return st->kind != VALUE_NONE; }
/* str(value or "") */
static const char *value_or_empty(const num_state *st) {
  if (st->kind == VALUE_NONE || (st->kind == VALUE_INT && strcmp(st->value, "0") == 0)) return "";
  return st->value;
}
static void set_int(num_state *st, int v) {
  char buf[16];
  snprintf(buf, sizeof buf, "%d", v);
  set_value(st, VALUE_INT, strdup(buf));
}
static void append_str(num_state *st, const char *base, const char *tail) { /* value = base + tail */
  set_value(st, VALUE_STR, concat(base, tail, ""));
}

/* elif current in self.ones (digit value `ones`), also used for the suffixed ones. Returns the
 * new value text and its kind through *kind (the value itself is not changed). */
static char *combine_ones(const num_state *st, const char *prev, int ones, value_kind *kind) {
  char d[16];
  snprintf(d, sizeof d, "%d", ones);
  if (st->kind == VALUE_STR || ones_value(prev) > 0) {
    *kind = VALUE_STR;
    if (tens_value(prev) > 0 && ones < 10) { /* replace the last zero with the digit */
      char *r = concat(st->value, "", "");
      if (r && *r) r[strlen(r) - 1] = d[0];
      return r;
    }
    return concat(st->value, d, "");
  }
  if (dec_mod(st->value, ones < 10 ? 10 : 100) == 0) {
    *kind = VALUE_INT;
    return dec_add(st->value, d);
  }
  *kind = VALUE_STR;
  return concat(st->value, d, "");
}

static void on_number(num_state *st, const char *current, const char *without_prefix, int prefix_len) {
  if (has_value(st)) {
    size_t n = strlen(st->value);
    if (st->kind == VALUE_STR && n && st->value[n - 1] == '.') { /* decimals / ip address parts */
      append_str(st, st->value, current);
      return;
    }
    emit_value(st);
  }
  if (prefix_len) snprintf(st->prefix, sizeof st->prefix, "%.*s", prefix_len, current);
  int oom = 0;
  char *integer = fraction_times_pow10(without_prefix, 0, &oom);
  if (integer) set_value(st, VALUE_INT, integer); /* store integers as int */
  else if (oom) st->oom = 1;
  else set_value(st, VALUE_STR, strdup(without_prefix));
}

static void on_ones_suffixed(num_state *st, const char *prev, const word_entry *e) {
  char d[16];
  snprintf(d, sizeof d, "%d", e->value);
  if (!has_value(st)) {
    emit3(st, d, e->suffix, "");
    return;
  }
  value_kind kind;
  char *v = combine_ones(st, prev, e->value, &kind);
  if (!v) st->oom = 1;
  emit3(st, v ? v : "", e->suffix, "");
  free(v);
}

static void on_tens(num_state *st, int tens) {
  char d[16];
  snprintf(d, sizeof d, "%d", tens);
  if (!has_value(st)) set_int(st, tens);
  else if (st->kind == VALUE_STR) append_str(st, st->value, d);
  else if (dec_mod(st->value, 100) == 0) set_value(st, VALUE_INT, dec_add(st->value, d));
  else append_str(st, st->value, d);
}

static void on_tens_suffixed(num_state *st, const word_entry *e) {
  char d[16];
  snprintf(d, sizeof d, "%d", e->value);
  if (!has_value(st)) {
    emit3(st, d, e->suffix, "");
  } else if (st->kind == VALUE_STR || dec_mod(st->value, 100) != 0) {
    char *v = concat(st->value, d, "");
    if (!v) st->oom = 1;
    emit3(st, v ? v : "", e->suffix, "");
    free(v);
  } else {
    char *v = dec_add(st->value, d);
    if (!v) st->oom = 1;
    emit3(st, v ? v : "", e->suffix, "");
    free(v);
  }
}

static void on_multiplier(num_state *st, int power) {
  char *m = dec_shift("1", power);
  if (!m) {
    st->oom = 1;
    return;
  }
  if (!has_value(st)) {
    set_value(st, VALUE_INT, m);
    return;
  }
  if (st->kind == VALUE_STR || strcmp(st->value, "0") == 0) {
    int oom = 0;
    char *p = fraction_times_pow10(st->value, power, &oom);
    if (p) {
      set_value(st, VALUE_INT, p);
      free(m);
    } else {
      st->oom |= oom;
      emit_value(st);
      set_value(st, VALUE_INT, m);
    }
    return;
  }
  free(m);
  set_value(st, VALUE_INT, dec_multiply_residual(st->value, power));
}

static void on_multiplier_suffixed(num_state *st, const word_entry *e) {
  char *m = dec_shift("1", e->value);
  if (!m) {
    st->oom = 1;
    return;
  }
  if (!has_value(st)) {
    emit3(st, m, e->suffix, "");
  } else if (st->kind == VALUE_STR) {
    int oom = 0;
    char *p = fraction_times_pow10(st->value, e->value, &oom);
    st->oom |= oom;
    if (p) {
      emit3(st, p, e->suffix, "");
    } else {
      emit_value(st);
      emit3(st, m, e->suffix, "");
    }
    free(p);
  } else {
    char *v = dec_multiply_residual(st->value, e->value);
    if (!v) st->oom = 1;
    emit3(st, v ? v : "", e->suffix, "");
    free(v);
  }
  free(m);
}

/* elif current in self.specials */
static void on_special(num_state *st, const char *prev, const char *current, const char *next,
                       int next_is_numeric, int *skip) {
  if (!in_words(st->nn, next) && !next_is_numeric) {
    if (has_value(st)) emit_value(st);
    emit(st, current);
  } else if (strcmp(current, "and") == 0) {
    if (multiplier_power(prev) < 0) { /* ignore "and" after hundreds, thousands, etc. */
      if (has_value(st)) emit_value(st);
      emit(st, current);
    }
  } else if (strcmp(current, "double") == 0 || strcmp(current, "triple") == 0) {
    if (ones_value(next) > 0 || is_zero_word(next)) {
      int repeats = current[0] == 'd' ? 2 : 3, ones = ones_value(next) > 0 ? ones_value(next) : 0;
      char d[16], rep[64] = "";
      snprintf(d, sizeof d, "%d", ones);
      for (int i = 0; i < repeats; i++) strcat(rep, d);
      append_str(st, value_or_empty(st), rep);
      *skip = 1;
    } else {
      if (has_value(st)) emit_value(st);
      emit(st, current);
    }
  } else if (in_decimals(next) || next_is_numeric) { /* "point" */
    append_str(st, value_or_empty(st), ".");
  }
}

static void on_word(num_state *st, const char *prev, const char *current, const char *next, int *skip) {
  const kiln_tn_numbers *nn = st->nn;
  int next_is_numeric = next && kiln_tn_full_match(nn->rx[RX_NUMERIC], next);
  uint32_t first;
  int first_len = kiln_tn_utf8_decode(current, strlen(current), &first);
  int has_prefix = first == '-' || first == '+' || first == 0xA3 || first == 0x20AC ||
                   first == '$' || first == 0xA2;
  const char *without_prefix = has_prefix ? current + first_len : current;
  const word_entry *e;
  int k;
  if (kiln_tn_full_match(nn->rx[RX_NUMERIC], without_prefix)) {
    on_number(st, current, without_prefix, has_prefix ? first_len : 0);
  } else if (!in_words(nn, current)) { /* non-numeric words */
    if (has_value(st)) emit_value(st);
    emit(st, current);
  } else if (is_zero_word(current)) {
    append_str(st, value_or_empty(st), "0");
  } else if ((k = ones_value(current)) > 0) {
    if (!has_value(st)) {
      set_int(st, k);
    } else {
      value_kind kind;
      char *v = combine_ones(st, prev, k, &kind);
      set_value(st, kind, v);
    }
  } else if ((e = find_entry(nn->ones_suffixed, nn->n_ones_suffixed, current))) {
    on_ones_suffixed(st, prev, e); /* ordinal or cardinal; yield the number right away */
  } else if ((k = tens_value(current)) > 0) {
    on_tens(st, k);
  } else if ((e = find_entry(nn->tens_suffixed, nn->n_tens_suffixed, current))) {
    on_tens_suffixed(st, e);
  } else if ((k = multiplier_power(current)) >= 0) {
    on_multiplier(st, k);
  } else if ((e = find_entry(nn->multipliers_suffixed, nn->n_multipliers_suffixed, current))) {
    on_multiplier_suffixed(st, e);
  } else if (preceding_prefixer(current)) { /* minus, plus, ... if it precedes a number */
    if (has_value(st)) emit_value(st);
    if (in_words(nn, next) || next_is_numeric) strcpy(st->prefix, preceding_prefixer(current));
    else emit(st, current);
  } else if (following_prefixer(current)) { /* dollars, cents, ... only after a number */
    if (has_value(st)) {
      strcpy(st->prefix, following_prefixer(current));
      emit_value(st);
    } else {
      emit(st, current);
    }
  } else if (is_suffixer(current)) { /* percent -> '%' */
    if (!has_value(st)) {
      emit(st, current);
    } else if (strcmp(current, "percent") == 0) {
      char *v = concat(st->value, "%", "");
      if (!v) st->oom = 1;
      emit(st, v ? v : "");
      free(v);
    } else if (eq(next, "cent")) { /* "per" + "cent" */
      char *v = concat(st->value, "%", "");
      if (!v) st->oom = 1;
      emit(st, v ? v : "");
      free(v);
      *skip = 1;
    } else {
      emit_value(st);
      emit(st, current);
    }
  } else {
    on_special(st, prev, current, next, next_is_numeric, skip);
  }
}

static char *process_words(const kiln_tn_numbers *nn, const kiln_tn_words *w) {
  num_state st = {.nn = nn};
  int skip = 0;
  for (int i = 0; i < w->count; i++) {
    if (skip) {
      skip = 0;
      continue;
    }
    const char *prev = i > 0 ? w->words[i - 1] : NULL;
    const char *next = i + 1 < w->count ? w->words[i + 1] : NULL;
    on_word(&st, prev, w->words[i], next, &skip);
  }
  if (has_value(&st)) emit_value(&st);
  free(st.value);
  if (st.oom) {
    free(st.out.data);
    return NULL;
  }
  if (!st.out.data) return strdup("");
  return kiln_tn_buf_finish(&st.out);
}

/* ---- preprocess / postprocess ---------------------------------------------------------------- */

static int is_blank(const char *s, size_t n) { /* len(segment.strip()) == 0 */
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    if (!kiln_tn_is_space(cp)) return 0;
    i += (size_t)len;
  }
  return 1;
}

/* segment.rsplit(maxsplit=2)[-1], as a NUL-terminated copy */
static char *last_word(const char *s, size_t n) {
  char *copy = malloc(n + 1);
  if (!copy) return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  kiln_tn_words w;
  char *r = NULL;
  if (kiln_tn_split(copy, &w) == KILN_OK) {
    r = w.count ? strdup(w.words[w.count - 1]) : strdup("");
    kiln_tn_words_free(&w);
  }
  free(copy);
  return r;
}

/* replace "<number> and a half" with "<number> point five" */
static char *and_a_half(const kiln_tn_numbers *nn, const char *s) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(nn->rx[RX_AND_HALF], NULL);
  if (!md) return NULL;
  kiln_tn_buf b = {0};
  size_t n = strlen(s), start = 0;
  int n_results = 0, oom = 0;
  for (;;) {
    int rc = pcre2_match(nn->rx[RX_AND_HALF], (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t end = rc >= 0 ? ov[0] : n; /* this segment is s[start, end) */
    int last = rc < 0;
    if (!is_blank(s + start, end - start)) {
      if (n_results++) kiln_tn_buf_putc(&b, ' ');
      kiln_tn_buf_append(&b, s + start, end - start);
      if (!last) {
        char *word = last_word(s + start, end - start);
        if (!word) oom = 1;
        int numeric = word && (in_decimals(word) || multiplier_power(word) >= 0);
        kiln_tn_buf_puts(&b, numeric ? " point five" : " and a half");
        free(word);
      }
    }
    if (last) break;
    start = ov[1];
  }
  pcre2_match_data_free(md);
  char *r = kiln_tn_buf_finish(&b);
  if (oom) {
    free(r);
    return NULL;
  }
  return r ? r : strdup("");
}

typedef void (*match_fn)(const char *s, const PCRE2_SIZE *ov, kiln_tn_buf *b);

/* re.sub(pattern, fn, s) for a replacement computed in C. */
static char *substitute_fn(const pcre2_code *re, const char *s, match_fn fn) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) return NULL;
  kiln_tn_buf b = {0};
  size_t n = strlen(s), start = 0;
  while (start <= n) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc < 0) break;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    kiln_tn_buf_append(&b, s + start, ov[0] - start);
    fn(s, ov, &b);
    start = ov[1] > ov[0] ? ov[1] : ov[1] + 1; /* the patterns never match empty */
  }
  if (start < n) kiln_tn_buf_append(&b, s + start, n - start);
  pcre2_match_data_free(md);
  char *r = kiln_tn_buf_finish(&b);
  return r ? r : strdup("");
}

/* "$2 and ¢7" -> "$2.07": f"{currency}{integer}.{cents:02d}" */
static void combine_cents(const char *s, const PCRE2_SIZE *ov, kiln_tn_buf *b) {
  kiln_tn_buf_append(b, s + ov[2], ov[3] - ov[2]);
  kiln_tn_buf_append(b, s + ov[4], ov[5] - ov[4]);
  kiln_tn_buf_putc(b, '.');
  if (ov[7] - ov[6] == 1) kiln_tn_buf_putc(b, '0');
  kiln_tn_buf_append(b, s + ov[6], ov[7] - ov[6]);
}

/* "$0.05" -> "¢5": f"¢{int(m.group(1))}" */
static void extract_cents(const char *s, const PCRE2_SIZE *ov, kiln_tn_buf *b) {
  kiln_tn_buf_puts(b, "\xc2\xa2");
  size_t i = ov[2];
  while (i + 1 < ov[3] && s[i] == '0') i++;
  kiln_tn_buf_append(b, s + i, ov[3] - i);
}

static kiln_status step(char **s, char *next) {
  free(*s);
  *s = next;
  return next ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory normalizing numbers");
}

static kiln_status sub(const kiln_tn_numbers *nn, int rx, const char *replacement, char **s) {
  char *next = NULL;
  KILN_TRY(kiln_tn_substitute(nn->rx[rx], *s, replacement, &next));
  return step(s, next);
}

static kiln_status numbers_pipeline(const kiln_tn_numbers *nn, char **s) {
  KILN_TRY(step(s, and_a_half(nn, *s)));
  KILN_TRY(sub(nn, RX_LETTER_DIGIT, "$1 $2", s)); /* space at number/letter boundaries */
  KILN_TRY(sub(nn, RX_DIGIT_LETTER, "$1 $2", s));
  KILN_TRY(sub(nn, RX_SUFFIX, "$1$2", s)); /* but not before a suffix */
  kiln_tn_words w;
  KILN_TRY(kiln_tn_split(*s, &w));
  char *joined = process_words(nn, &w);
  kiln_tn_words_free(&w);
  KILN_TRY(step(s, joined));
  KILN_TRY(step(s, substitute_fn(nn->rx[RX_CENTS_COMBINE], *s, combine_cents)));
  KILN_TRY(step(s, substitute_fn(nn->rx[RX_CENTS_EXTRACT], *s, extract_cents)));
  return sub(nn, RX_ONE, "one$1", s);
}

kiln_status kiln_tn_numbers_apply(const kiln_tn_numbers *nn, const char *text, char **out) {
  char *s = strdup(text);
  if (!s) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory normalizing numbers");
  kiln_status st = numbers_pipeline(nn, &s);
  if (st != KILN_OK) {
    free(s);
    return st;
  }
  *out = s;
  return KILN_OK;
}

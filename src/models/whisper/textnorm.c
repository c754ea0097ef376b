/* src/models/whisper/textnorm.c - Whisper's EnglishTextNormalizer, ported from openai-whisper.
 *
 * What it is: the steps of whisper/normalizers/english.py (EnglishTextNormalizer.__call__) in the
 * same order, each regex compiled with PCRE2 in UTF + UCP mode so that \b, \d, \s follow Python's
 * Unicode semantics; remove_symbols_and_diacritics from basic.py (NFKD from the generated tables,
 * categories from PCRE2); the spelling map from english.json (cJSON, sorted for binary search).
 * The number normalizer (EnglishNumberNormalizer) lives in textnorm_numbers.c.
 * What it is not: the multilingual BasicTextNormalizer. Known differences from Python: no
 * final-sigma rule in lower-casing, no canonical reordering of combining marks after NFKD (see
 * tests/data/textnorm_known_failures.txt for the cases the tests know about).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "kiln/textnorm.h"
#include "models/whisper/textnorm_internal.h"
#include "models/whisper/textnorm_unicode.h"

/* The `replacers` table of EnglishTextNormalizer, applied in this order. */
static const char *const replacer_table[][2] = {
    {"\\bwon't\\b", "will not"}, {"\\bcan't\\b", "can not"}, {"\\blet's\\b", "let us"},
    {"\\bain't\\b", "aint"}, {"\\by'all\\b", "you all"}, {"\\bwanna\\b", "want to"},
    {"\\bgotta\\b", "got to"}, {"\\bgonna\\b", "going to"}, {"\\bi'ma\\b", "i am going to"},
    {"\\bimma\\b", "i am going to"}, {"\\bwoulda\\b", "would have"},
    {"\\bcoulda\\b", "could have"}, {"\\bshoulda\\b", "should have"}, {"\\bma'am\\b", "madam"},
    {"\\bmr\\b", "mister "}, {"\\bmrs\\b", "missus "}, {"\\bst\\b", "saint "},
    {"\\bdr\\b", "doctor "}, {"\\bprof\\b", "professor "}, {"\\bcapt\\b", "captain "},
    {"\\bgov\\b", "governor "}, {"\\bald\\b", "alderman "}, {"\\bgen\\b", "general "},
    {"\\bsen\\b", "senator "}, {"\\brep\\b", "representative "}, {"\\bpres\\b", "president "},
    {"\\brev\\b", "reverend "}, {"\\bhon\\b", "honorable "}, {"\\basst\\b", "assistant "},
    {"\\bassoc\\b", "associate "}, {"\\blt\\b", "lieutenant "}, {"\\bcol\\b", "colonel "},
    {"\\bjr\\b", "junior "}, {"\\bsr\\b", "senior "}, {"\\besq\\b", "esquire "},
    {"'d been\\b", " had been"}, {"'s been\\b", " has been"}, {"'d gone\\b", " had gone"},
    {"'s gone\\b", " has gone"}, {"'d done\\b", " had done"}, {"'s got\\b", " has got"},
    {"n't\\b", " not"}, {"'re\\b", " are"}, {"'s\\b", " is"}, {"'d\\b", " would"},
    {"'ll\\b", " will"}, {"'t\\b", " not"}, {"'ve\\b", " have"}, {"'m\\b", " am"},
};
#define REPLACER_COUNT ((int)(sizeof replacer_table / sizeof replacer_table[0]))

/* The regexes of __call__ other than the replacers: pattern and replacement ($n = group n). */
enum {
  RX_BRACKETS, RX_PARENS, RX_FILLERS, RX_SPACE_APOSTROPHE, RX_DIGIT_COMMA, RX_PERIOD,
  RX_MN, RX_MSP, RX_SYMBOL_PREFIX, RX_PERCENT, RX_SPACES, RX_COUNT
};
static const char *const step_table[RX_COUNT][2] = {
    [RX_BRACKETS] = {"[<\\[][^>\\]]*[>\\]]", ""},
    [RX_PARENS] = {"\\(([^)]+?)\\)", ""},
    [RX_FILLERS] = {"\\b(hmm|mm|mhm|mmm|uh|um)\\b", ""},
    [RX_SPACE_APOSTROPHE] = {KILN_TN_WS "+'", "'"},
    [RX_DIGIT_COMMA] = {"(\\d),(\\d)", "$1$2"},
    [RX_PERIOD] = {"\\.([^0-9]|$)", " $1"},
    /* remove_symbols_and_diacritics(keep=".%$¢€£"): Mn dropped, other M, S, P -> space */
    [RX_MN] = {"(?![.%$\\x{a2}\\x{20ac}\\x{a3}])\\p{Mn}", ""},
    [RX_MSP] = {"(?![.%$\\x{a2}\\x{20ac}\\x{a3}])[\\p{M}\\p{S}\\p{P}]", " "},
    [RX_SYMBOL_PREFIX] = {"[.$\\x{a2}\\x{20ac}\\x{a3}]([^0-9])", " $1"},
    [RX_PERCENT] = {"([^0-9])%", "$1 "},
    [RX_SPACES] = {KILN_TN_WS "+", " "},
};

typedef struct spelling_pair {
  char *british;
  char *american;
} spelling_pair;

struct kiln_textnorm {
  pcre2_code *steps[RX_COUNT];
  pcre2_code *replacers[REPLACER_COUNT];
  kiln_tn_numbers *numbers;
  spelling_pair *spellings; /* sorted by british */
  int n_spellings;
};

/* ---- spelling map ------------------------------------------------------------------------- */

static int compare_pairs(const void *a, const void *b) {
  return strcmp(((const spelling_pair *)a)->british, ((const spelling_pair *)b)->british);
}

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = NULL;
  if (fseek(f, 0, SEEK_END) == 0) {
    long n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1))) {
      if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *size = (size_t)n;
      } else {
        free(buf);
        buf = NULL;
      }
    }
  }
  fclose(f);
  return buf;
}

static kiln_status load_spellings(kiln_textnorm *tn, const char *path) {
  size_t size = 0;
  char *text = read_file(path, &size);
  if (!text)
    return kiln_error(KILN_ERR_IO, "cannot read the spelling map '%s'; pass the path of "
                      "openai-whisper's english.json (whisper/openai-assets/english.json)", path);
  cJSON *root = cJSON_ParseWithLength(text, size);
  free(text);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_FORMAT, "'%s' is not a JSON object of British -> American "
                      "spellings; use openai-whisper's english.json", path);
  }
  int n = cJSON_GetArraySize(root);
  tn->spellings = calloc((size_t)(n > 0 ? n : 1), sizeof *tn->spellings);
  if (!tn->spellings) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading '%s'", path);
  }
  const cJSON *item;
  cJSON_ArrayForEach(item, root) {
    if (!cJSON_IsString(item) || !item->string) {
      cJSON_Delete(root);
      return kiln_error(KILN_ERR_FORMAT, "'%s': value of \"%s\" is not a string; use "
                        "openai-whisper's english.json", path, item->string ? item->string : "?");
    }
    spelling_pair *p = &tn->spellings[tn->n_spellings];
    p->british = strdup(item->string);
    p->american = strdup(item->valuestring);
    tn->n_spellings++;
    if (!p->british || !p->american) {
      cJSON_Delete(root);
      return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory loading '%s'", path);
    }
  }
  cJSON_Delete(root);
  qsort(tn->spellings, (size_t)tn->n_spellings, sizeof *tn->spellings, compare_pairs);
  return KILN_OK;
}

static const char *spelling_lookup(const kiln_textnorm *tn, const char *word) {
  spelling_pair key = {(char *)word, NULL};
  const spelling_pair *p = bsearch(&key, tn->spellings, (size_t)tn->n_spellings,
                                   sizeof *tn->spellings, compare_pairs);
  return p ? p->american : word;
}

/* ---- create / destroy ------------------------------------------------------------------- */

kiln_status kiln_textnorm_create(const char *spelling_json_path, kiln_textnorm **out) {
  if (!spelling_json_path || !out)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_textnorm_create: spelling_json_path and out "
                      "must not be NULL");
  kiln_textnorm *tn = calloc(1, sizeof *tn);
  if (!tn) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a text normalizer");
  kiln_status s = KILN_OK;
  for (int i = 0; i < RX_COUNT && s == KILN_OK; i++) s = kiln_tn_compile(step_table[i][0], &tn->steps[i]);
  for (int i = 0; i < REPLACER_COUNT && s == KILN_OK; i++)
    s = kiln_tn_compile(replacer_table[i][0], &tn->replacers[i]);
  if (s == KILN_OK) s = kiln_tn_numbers_create(&tn->numbers);
  if (s == KILN_OK) s = load_spellings(tn, spelling_json_path);
  if (s != KILN_OK) {
    kiln_textnorm_destroy(tn);
    return s;
  }
  *out = tn;
  return KILN_OK;
}

void kiln_textnorm_destroy(kiln_textnorm *tn) {
  if (!tn) return;
  for (int i = 0; i < RX_COUNT; i++) pcre2_code_free(tn->steps[i]);
  for (int i = 0; i < REPLACER_COUNT; i++) pcre2_code_free(tn->replacers[i]);
  kiln_tn_numbers_destroy(tn->numbers);
  for (int i = 0; i < tn->n_spellings; i++) {
    free(tn->spellings[i].british);
    free(tn->spellings[i].american);
  }
  free(tn->spellings);
  free(tn);
}

void kiln_textnorm_free_string(char *s) { free(s); }

/* ---- the steps ------------------------------------------------------------------------------ */

/* Per code point: lower-case as Python's str.lower(). */
static char *lower_case(const char *s) {
  kiln_tn_buf b = {0};
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    const char *rep = cp < 0x80 ? NULL : kiln_tn_lookup(kiln_tn_lower_table, kiln_tn_lower_count, cp);
    if (cp >= 'A' && cp <= 'Z') kiln_tn_buf_putc(&b, (char)(cp + 32));
    else if (rep) kiln_tn_buf_puts(&b, rep);
    else kiln_tn_buf_append(&b, s + i, (size_t)len);
    i += (size_t)len;
  }
  return kiln_tn_buf_finish(&b);
}

/* Hangul syllable -> conjoining jamo (the algorithmic part of NFKD). Returns 0 if not one. */
static int hangul_decompose(uint32_t cp, kiln_tn_buf *b) {
  const uint32_t s_base = 0xAC00, l_base = 0x1100, v_base = 0x1161, t_base = 0x11A7;
  if (cp < s_base || cp > 0xD7A3) return 0;
  uint32_t index = cp - s_base;
  char tmp[4];
  kiln_tn_buf_append(b, tmp, (size_t)kiln_tn_utf8_encode(l_base + index / 588, tmp));
  kiln_tn_buf_append(b, tmp, (size_t)kiln_tn_utf8_encode(v_base + (index % 588) / 28, tmp));
  if (index % 28) kiln_tn_buf_append(b, tmp, (size_t)kiln_tn_utf8_encode(t_base + index % 28, tmp));
  return 1;
}

/* The letters that NFKD does not separate (ADDITIONAL_DIACRITICS in basic.py). */
static const char *additional_diacritic(uint32_t cp) {
  switch (cp) {
    case 0x0153: return "oe"; /* œ */
    case 0x0152: return "OE";
    case 0x00F8: return "o"; /* ø */
    case 0x00D8: return "O";
    case 0x00E6: return "ae"; /* æ */
    case 0x00C6: return "AE";
    case 0x00DF: return "ss"; /* ß */
    case 0x1E9E: return "SS";
    case 0x0111: return "d"; /* đ */
    case 0x0110: return "D";
    case 0x00F0: return "d"; /* ð */
    case 0x00D0: return "D";
    case 0x00FE: return "th"; /* þ */
    case 0x00DE: return "th";
    case 0x0142: return "l"; /* ł */
    case 0x0141: return "L";
    default: return NULL;
  }
}

/* NFKD: the generated table, Hangul syllables algorithmically. */
static char *decompose(const char *s) {
  kiln_tn_buf b = {0};
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    const char *d = cp < 0x80 ? NULL : kiln_tn_lookup(kiln_tn_nfkd_table, kiln_tn_nfkd_count, cp);
    if (d) kiln_tn_buf_puts(&b, d);
    else if (!hangul_decompose(cp, &b)) kiln_tn_buf_append(&b, s + i, (size_t)len);
    i += (size_t)len;
  }
  return kiln_tn_buf_finish(&b);
}

/* After NFKD, per code point: the letters of ADDITIONAL_DIACRITICS (Mn, M, S, P follow). */
static char *map_additional(const char *s) {
  kiln_tn_buf b = {0};
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int len = kiln_tn_utf8_decode(s + i, n - i, &cp);
    const char *extra = cp < 0x80 ? NULL : additional_diacritic(cp);
    if (extra) kiln_tn_buf_puts(&b, extra);
    else kiln_tn_buf_append(&b, s + i, (size_t)len);
    i += (size_t)len;
  }
  return kiln_tn_buf_finish(&b);
}

static char *spell(const kiln_textnorm *tn, const char *s) {
  kiln_tn_words w;
  if (kiln_tn_split(s, &w) != KILN_OK) return NULL;
  kiln_tn_buf b = {0};
  for (int i = 0; i < w.count; i++) {
    if (i) kiln_tn_buf_putc(&b, ' ');
    kiln_tn_buf_puts(&b, spelling_lookup(tn, w.words[i]));
  }
  kiln_tn_words_free(&w);
  return kiln_tn_buf_finish(&b);
}

/* Runs one step: *s is replaced by the result (freed on the way). */
static kiln_status run_sub(pcre2_code *re, const char *replacement, char **s) {
  char *next = NULL;
  KILN_TRY(kiln_tn_substitute(re, *s, replacement, &next));
  free(*s);
  *s = next;
  return KILN_OK;
}

static kiln_status take(char **s, char *next) {
  free(*s);
  *s = next;
  if (!next) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory normalizing text");
  return KILN_OK;
}

static kiln_status normalize(const kiln_textnorm *tn, char **s) {
  KILN_TRY(take(s, lower_case(*s)));
  for (int i = RX_BRACKETS; i <= RX_SPACE_APOSTROPHE; i++)
    KILN_TRY(run_sub(tn->steps[i], step_table[i][1], s));
  for (int i = 0; i < REPLACER_COUNT; i++) KILN_TRY(run_sub(tn->replacers[i], replacer_table[i][1], s));
  KILN_TRY(run_sub(tn->steps[RX_DIGIT_COMMA], step_table[RX_DIGIT_COMMA][1], s));
  KILN_TRY(run_sub(tn->steps[RX_PERIOD], step_table[RX_PERIOD][1], s));
  KILN_TRY(take(s, decompose(*s)));
  KILN_TRY(take(s, map_additional(*s)));
  KILN_TRY(run_sub(tn->steps[RX_MN], step_table[RX_MN][1], s));
  KILN_TRY(run_sub(tn->steps[RX_MSP], step_table[RX_MSP][1], s));
  char *numbers = NULL;
  KILN_TRY(kiln_tn_numbers_apply(tn->numbers, *s, &numbers));
  KILN_TRY(take(s, numbers));
  KILN_TRY(take(s, spell(tn, *s)));
  for (int i = RX_SYMBOL_PREFIX; i <= RX_SPACES; i++)
    KILN_TRY(run_sub(tn->steps[i], step_table[i][1], s));
  return KILN_OK;
}

kiln_status kiln_textnorm_english(const kiln_textnorm *tn, const char *text, char **out) {
  if (!tn || !text || !out)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_textnorm_english: tn, text and out must not be NULL");
  KILN_TRY(kiln_tn_check_utf8(text));
  char *s = strdup(text);
  if (!s) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory normalizing text");
  kiln_status st = normalize(tn, &s);
  if (st != KILN_OK) {
    free(s);
    return st;
  }
  *out = s;
  return KILN_OK;
}

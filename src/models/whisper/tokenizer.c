/* src/models/whisper/tokenizer.c - Whisper's byte-level BPE tokenizer: tables, encode, decode.
 *
 * What it is: the immutable tokenizer (token bytes by id, a bytes -> id hash map, the merge
 * table for Hugging Face vocabularies, special token ids), built from a tok_builder; the GPT-2
 * pre-tokenizer (PCRE2); BPE on each piece, by merge rank as transformers' slow
 * GPT2/WhisperTokenizer does (Hugging Face files: the best-ranked pair, all its occurrences left
 * to right) or by token rank as tiktoken does (tiktoken files: the lowest-rank pair, first
 * occurrence, a piece that is a token is taken whole); decoding with U+FFFD for invalid UTF-8.
 * What it is not: the file readers (tokenizer_load.c) or a text normalizer. BPE per piece is
 * quadratic in the piece length: fine for words, slow for megabyte-long runs of digits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/error.h"
#include "models/whisper/tokenizer_internal.h"

const char *const kiln_tok_languages[KILN_TOK_MAX_LANGUAGES] = {
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv",
    "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no",
    "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr",
    "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw",
    "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu",
    "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl",
    "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw", "su", "yue"};

static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct kiln_tokenizer {
  int32_t n_vocab;
  char *arena;          /* token bytes */
  size_t *offset;       /* [n_vocab] */
  int32_t *len;         /* [n_vocab]; 0 for ids no file defines */
  uint8_t *special;     /* [n_vocab] */
  int32_t *map;         /* [map_mask + 1] bytes -> id for non-special tokens; -1 empty */
  size_t map_mask;
  int32_t byte_id[256]; /* the token of each single byte */
  int use_merges;
  uint64_t *merge_key;  /* [merge_mask + 1] (left << 32 | right); UINT64_MAX empty */
  int32_t *merge_rank, *merge_result;
  size_t merge_mask;
  int32_t specials[KILN_TOKEN_SPECIAL_COUNT];
  int32_t lang_ids[KILN_TOK_MAX_LANGUAGES];
  int32_t num_languages;
  pcre2_code *re;
};

/* ---- hashing ------------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

static size_t table_size_for(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n + 1) cap *= 2;
  return cap;
}

static int32_t map_find(const kiln_tokenizer *t, const char *p, size_t n) {
  if (!t->map) return -1;
  for (size_t i = hash_bytes(p, n) & t->map_mask;; i = (i + 1) & t->map_mask) {
    int32_t id = t->map[i];
    if (id < 0) return -1;
    if ((size_t)t->len[id] == n && memcmp(t->arena + t->offset[id], p, n) == 0) return id;
  }
}

/* Insert a non-special id; fails on duplicate bytes. */
static int map_insert(kiln_tokenizer *t, int32_t id) {
  const char *p = t->arena + t->offset[id];
  const size_t n = (size_t)t->len[id];
  for (size_t i = hash_bytes(p, n) & t->map_mask;; i = (i + 1) & t->map_mask) {
    int32_t other = t->map[i];
    if (other < 0) {
      t->map[i] = id;
      return 1;
    }
    if ((size_t)t->len[other] == n && memcmp(t->arena + t->offset[other], p, n) == 0) return 0;
  }
}

/* Rank and result of merging (left, right), or rank -1. */
static int32_t merge_find(const kiln_tokenizer *t, int32_t left, int32_t right, int32_t *result) {
  const uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
  for (size_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
    if (t->merge_key[i] == UINT64_MAX) return -1;
    if (t->merge_key[i] == key) {
      *result = t->merge_result[i];
      return t->merge_rank[i];
    }
  }
}

/* ---- the builder -------------------------------------------------------------------------- */

void tok_builder_init(tok_builder *b, const char *source, int use_merges) {
  memset(b, 0, sizeof *b);
  b->source = source;
  b->use_merges = use_merges;
}

void tok_builder_free(tok_builder *b) {
  free(b->entries);
  free(b->arena);
  free(b->merge_pairs);
  kiln_tokenizer_destroy(b->index);
  memset(b, 0, sizeof *b);
}

static kiln_status builder_oom(const tok_builder *b) {
  return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer %s: out of memory", b->source);
}

kiln_status tok_builder_add(tok_builder *b, int32_t id, const char *bytes, size_t len, int special) {
  if (id < 0 || len > (1u << 20))
    return kiln_error(KILN_ERR_FORMAT, "tokenizer %s: bad token (id %d, %zu bytes); the file is damaged",
                      b->source, (int)id, len);
  if (b->n_entries == b->cap_entries) {
    size_t cap = b->cap_entries ? 2 * b->cap_entries : 1024;
    tok_entry *e = realloc(b->entries, cap * sizeof *e);
    if (!e) return builder_oom(b);
    b->entries = e;
    b->cap_entries = cap;
  }
  if (b->arena_len + len + 1 > b->arena_cap) {
    size_t cap = b->arena_cap ? 2 * b->arena_cap : 65536;
    while (cap < b->arena_len + len + 1) cap *= 2;
    char *a = realloc(b->arena, cap);
    if (!a) return builder_oom(b);
    b->arena = a;
    b->arena_cap = cap;
  }
  memcpy(b->arena + b->arena_len, bytes, len);
  b->entries[b->n_entries++] = (tok_entry){id, (int32_t)len, b->arena_len, special};
  b->arena_len += len;
  return KILN_OK;
}

kiln_status tok_builder_add_merge(tok_builder *b, int32_t left, int32_t right) {
  if (b->n_merges == b->cap_merges) {
    size_t cap = b->cap_merges ? 2 * b->cap_merges : 4096;
    int64_t *m = realloc(b->merge_pairs, cap * 2 * sizeof *m);
    if (!m) return builder_oom(b);
    b->merge_pairs = m;
    b->cap_merges = cap;
  }
  b->merge_pairs[2 * b->n_merges] = left;
  b->merge_pairs[2 * b->n_merges + 1] = right;
  b->n_merges++;
  return KILN_OK;
}

int32_t tok_builder_max_id(const tok_builder *b) {
  int32_t m = -1;
  for (size_t i = 0; i < b->n_entries; i++)
    if (b->entries[i].id > m) m = b->entries[i].id;
  return m;
}

/* Token tables (bytes by id, the bytes -> id map) from the builder's entries. */
static kiln_status build_tables(const tok_builder *b, kiln_tokenizer **out) {
  kiln_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return builder_oom(b);
  t->n_vocab = tok_builder_max_id(b) + 1;
  t->map_mask = table_size_for((size_t)t->n_vocab) - 1;
  t->arena = malloc(b->arena_len + 1);
  t->offset = calloc((size_t)t->n_vocab + 1, sizeof *t->offset);
  t->len = calloc((size_t)t->n_vocab + 1, sizeof *t->len);
  t->special = calloc((size_t)t->n_vocab + 1, 1);
  t->map = malloc((t->map_mask + 1) * sizeof *t->map);
  if (!t->arena || !t->offset || !t->len || !t->special || !t->map) {
    kiln_tokenizer_destroy(t);
    return builder_oom(b);
  }
  if (b->arena_len) memcpy(t->arena, b->arena, b->arena_len);
  memset(t->map, 0xff, (t->map_mask + 1) * sizeof *t->map);
  uint8_t *seen = calloc((size_t)t->n_vocab + 1, 1);
  if (!seen) {
    kiln_tokenizer_destroy(t);
    return builder_oom(b);
  }
  kiln_status s = KILN_OK;
  for (size_t i = 0; i < b->n_entries && s == KILN_OK; i++) {
    const tok_entry *e = &b->entries[i];
    if (seen[e->id]) {
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer %s: token id %d is defined twice; the files are damaged or mixed",
                     b->source, (int)e->id);
      break;
    }
    seen[e->id] = 1;
    t->offset[e->id] = e->offset;
    t->len[e->id] = e->len;
    t->special[e->id] = (uint8_t)(e->special != 0);
    if (!e->special && !map_insert(t, e->id))
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer %s: two tokens have the bytes of id %d; the files are damaged",
                     b->source, (int)e->id);
  }
  free(seen);
  if (s != KILN_OK) {
    kiln_tokenizer_destroy(t);
    return s;
  }
  *out = t;
  return KILN_OK;
}

kiln_status tok_builder_index(tok_builder *b) {
  kiln_tokenizer_destroy(b->index);
  b->index = NULL;
  return build_tables(b, &b->index);
}

int32_t tok_builder_find(const tok_builder *b, const char *bytes, size_t len) {
  return b->index ? map_find(b->index, bytes, len) : -1;
}

static int32_t find_special(const kiln_tokenizer *t, const char *text) {
  const size_t n = strlen(text);
  for (int32_t id = 0; id < t->n_vocab; id++)
    if (t->special[id] && (size_t)t->len[id] == n && memcmp(t->arena + t->offset[id], text, n) == 0)
      return id;
  return -1;
}

int32_t tok_builder_find_special(const tok_builder *b, const char *text) {
  return b->index ? find_special(b->index, text) : -1;
}

static kiln_status build_merges(const tok_builder *b, kiln_tokenizer *t) {
  t->merge_mask = table_size_for(b->n_merges) - 1;
  t->merge_key = malloc((t->merge_mask + 1) * sizeof *t->merge_key);
  t->merge_rank = malloc((t->merge_mask + 1) * sizeof *t->merge_rank);
  t->merge_result = malloc((t->merge_mask + 1) * sizeof *t->merge_result);
  if (!t->merge_key || !t->merge_rank || !t->merge_result) return builder_oom(b);
  memset(t->merge_key, 0xff, (t->merge_mask + 1) * sizeof *t->merge_key);
  char buf[512];
  for (size_t r = 0; r < b->n_merges; r++) {
    const int32_t left = (int32_t)b->merge_pairs[2 * r], right = (int32_t)b->merge_pairs[2 * r + 1];
    const size_t n = (size_t)t->len[left] + (size_t)t->len[right];
    int32_t result = -1;
    if (n <= sizeof buf) {
      memcpy(buf, t->arena + t->offset[left], (size_t)t->len[left]);
      memcpy(buf + t->len[left], t->arena + t->offset[right], (size_t)t->len[right]);
      result = map_find(t, buf, n);
    }
    if (result < 0)
      return kiln_error(KILN_ERR_FORMAT, "tokenizer %s: merge %zu (ids %d + %d) makes a token the vocabulary lacks; "
                        "vocab.json and merges.txt do not belong together", b->source, r + 1, (int)left, (int)right);
    const uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = hash_u64(key) & t->merge_mask;
    while (t->merge_key[i] != UINT64_MAX && t->merge_key[i] != key) i = (i + 1) & t->merge_mask;
    if (t->merge_key[i] == key) continue; /* a repeated merge keeps its best rank */
    t->merge_key[i] = key;
    t->merge_rank[i] = (int32_t)r;
    t->merge_result[i] = result;
  }
  return KILN_OK;
}

static void resolve_specials(kiln_tokenizer *t) {
  static const char *const names[KILN_TOKEN_SPECIAL_COUNT] = {
      "<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
      "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>", "<|0.00|>"};
  for (int i = 0; i < KILN_TOKEN_SPECIAL_COUNT; i++) t->specials[i] = find_special(t, names[i]);
  if (t->specials[KILN_TOKEN_NO_SPEECH] < 0) t->specials[KILN_TOKEN_NO_SPEECH] = find_special(t, "<|nocaptions|>");
  t->num_languages = 0;
  for (int i = 0; i < KILN_TOK_MAX_LANGUAGES; i++) {
    char name[16];
    snprintf(name, sizeof name, "<|%s|>", kiln_tok_languages[i]);
    t->lang_ids[i] = find_special(t, name);
    if (t->lang_ids[i] >= 0) t->num_languages++;
  }
}

static kiln_status compile_regex(kiln_tokenizer *t) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  t->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code,
                        &offset, NULL);
  if (!t->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof msg);
    return kiln_error(KILN_ERR_UNSUPPORTED, "tokenizer: PCRE2 cannot compile the GPT-2 pattern (%s); "
                      "install a PCRE2 built with Unicode support", (const char *)msg);
  }
  pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter works too */
  return KILN_OK;
}

kiln_status tok_builder_finish(tok_builder *b, kiln_tokenizer **out) {
  kiln_tokenizer *t = NULL;
  kiln_status s = build_tables(b, &t);
  for (int c = 0; s == KILN_OK && c < 256; c++) {
    const char byte = (char)c;
    t->byte_id[c] = map_find(t, &byte, 1);
    if (t->byte_id[c] < 0)
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer %s: no token for byte 0x%02x; this is not a byte-level BPE vocabulary",
                     b->source, c);
  }
  if (s == KILN_OK && b->use_merges) {
    t->use_merges = 1;
    s = build_merges(b, t);
  }
  if (s == KILN_OK) s = compile_regex(t);
  if (s == KILN_OK) resolve_specials(t);
  tok_builder_free(b);
  if (s != KILN_OK) {
    kiln_tokenizer_destroy(t);
    return s;
  }
  *out = t;
  return KILN_OK;
}

void kiln_tokenizer_destroy(kiln_tokenizer *t) {
  if (!t) return;
  free(t->arena);
  free(t->offset);
  free(t->len);
  free(t->special);
  free(t->map);
  free(t->merge_key);
  free(t->merge_rank);
  free(t->merge_result);
  if (t->re) pcre2_code_free(t->re);
  free(t);
}

void kiln_tokenizer_free(void *p) { free(p); }

/* ---- queries ------------------------------------------------------------------------------ */

int32_t kiln_tokenizer_vocab_size(const kiln_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t kiln_tokenizer_num_languages(const kiln_tokenizer *t) { return t ? t->num_languages : 0; }
int kiln_tokenizer_is_multilingual(const kiln_tokenizer *t) { return t && t->n_vocab >= 51865; }

int32_t kiln_tokenizer_special(const kiln_tokenizer *t, kiln_special_token which) {
  if (!t || (int)which < 0 || which >= KILN_TOKEN_SPECIAL_COUNT) return -1;
  return t->specials[which];
}

int kiln_tokenizer_is_special(const kiln_tokenizer *t, int32_t id) {
  return t && id >= 0 && id < t->n_vocab && t->special[id];
}

kiln_status kiln_tokenizer_language_token(const kiln_tokenizer *t, const char *code, int32_t *id) {
  if (!t || !code || !id) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: tok, code and id must not be NULL");
  for (int i = 0; i < KILN_TOK_MAX_LANGUAGES; i++) {
    if (strcmp(kiln_tok_languages[i], code) == 0 && t->lang_ids[i] >= 0) {
      *id = t->lang_ids[i];
      return KILN_OK;
    }
  }
  return kiln_error(KILN_ERR_NOT_FOUND, "tokenizer: no language token for '%s' in this vocabulary (%d languages); "
                    "use a code such as \"en\", \"de\" or \"zh\" (English-only models take none)",
                    code, (int)t->num_languages);
}

const char *kiln_tokenizer_language_code(const kiln_tokenizer *t, int32_t id) {
  if (!t || id < 0) return NULL;
  for (int i = 0; i < KILN_TOK_MAX_LANGUAGES; i++)
    if (t->lang_ids[i] == id) return kiln_tok_languages[i];
  return NULL;
}

kiln_status kiln_tokenizer_sot_sequence(const kiln_tokenizer *t, const char *language,
                                        kiln_task task, int timestamps, int32_t out[4], int32_t *n) {
  if (!t || !out || !n) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: tok, out and n must not be NULL");
  int32_t seq[4], count = 0;
  seq[count++] = t->specials[KILN_TOKEN_SOT];
  if (language) KILN_TRY(kiln_tokenizer_language_token(t, language, &seq[count++]));
  if (task == KILN_TASK_TRANSCRIBE) seq[count++] = t->specials[KILN_TOKEN_TRANSCRIBE];
  else if (task == KILN_TASK_TRANSLATE) seq[count++] = t->specials[KILN_TOKEN_TRANSLATE];
  else if (task != KILN_TASK_NONE) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: unknown task %d", (int)task);
  if (!timestamps) seq[count++] = t->specials[KILN_TOKEN_NO_TIMESTAMPS];
  for (int32_t i = 0; i < count; i++)
    if (seq[i] < 0)
      return kiln_error(KILN_ERR_NOT_FOUND, "tokenizer: this vocabulary lacks Whisper's special tokens; load a Whisper tokenizer");
  memcpy(out, seq, sizeof(int32_t) * (size_t)count);
  *n = count;
  return KILN_OK;
}

kiln_status kiln_tokenizer_token_bytes(const kiln_tokenizer *t, int32_t id, const char **bytes, int32_t *len) {
  if (!t || !bytes || !len) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: tok, bytes and len must not be NULL");
  if (id < 0 || id >= t->n_vocab)
    return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: token id %d is outside 0..%d", (int)id, (int)t->n_vocab - 1);
  *bytes = t->arena + t->offset[id];
  *len = t->len[id];
  return KILN_OK;
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct id_vec {
  int32_t *p;
  int64_t n, cap;
} id_vec;

static int vec_push(id_vec *v, int32_t id) {
  if (v->n == v->cap) {
    int64_t cap = v->cap ? 2 * v->cap : 64;
    int32_t *p = realloc(v->p, sizeof(int32_t) * (size_t)cap);
    if (!p) return 0;
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = id;
  return 1;
}

/* Hugging Face BPE on ids[n] in place: merge the best-ranked pair everywhere, until none is left.
 * Returns the new length. */
static int64_t bpe_by_merges(const kiln_tokenizer *t, int32_t *ids, int64_t n) {
  for (;;) {
    int32_t best_rank = -1, best_left = -1, best_right = -1, best_result = -1;
    for (int64_t i = 0; i + 1 < n; i++) {
      int32_t result, rank = merge_find(t, ids[i], ids[i + 1], &result);
      if (rank >= 0 && (best_rank < 0 || rank < best_rank)) {
        best_rank = rank;
        best_left = ids[i];
        best_right = ids[i + 1];
        best_result = result;
      }
    }
    if (best_rank < 0) return n;
    int64_t w = 0;
    for (int64_t i = 0; i < n; i++) {
      if (i + 1 < n && ids[i] == best_left && ids[i + 1] == best_right) {
        ids[w++] = best_result;
        i++;
      } else {
        ids[w++] = ids[i];
      }
    }
    n = w;
  }
}

/* tiktoken BPE on piece[len]: bounds[0..n] are part boundaries (n parts), merged in place by the
 * lowest token rank of a concatenated pair (first on ties). Returns the new part count. */
static int64_t bpe_by_ranks(const kiln_tokenizer *t, const char *piece, int64_t *bounds, int32_t *rank,
                            int64_t n) {
  for (int64_t i = 0; i + 1 < n; i++) rank[i] = map_find(t, piece + bounds[i], (size_t)(bounds[i + 2] - bounds[i]));
  while (n > 1) {
    int64_t best = -1;
    for (int64_t i = 0; i + 1 < n; i++)
      if (rank[i] >= 0 && (best < 0 || rank[i] < rank[best])) best = i;
    if (best < 0) break;
    /* parts best and best + 1 become one: drop boundary best + 1 */
    memmove(bounds + best + 1, bounds + best + 2, sizeof(int64_t) * (size_t)(n - best - 1));
    if (n - best - 3 > 0) memmove(rank + best + 1, rank + best + 2, sizeof(int32_t) * (size_t)(n - best - 3));
    n--;
    if (best + 1 < n) rank[best] = map_find(t, piece + bounds[best], (size_t)(bounds[best + 2] - bounds[best]));
    if (best > 0) rank[best - 1] = map_find(t, piece + bounds[best - 1], (size_t)(bounds[best + 1] - bounds[best - 1]));
  }
  return n;
}

/* Append the tokens of one pre-tokenized piece to v. */
static kiln_status encode_piece(const kiln_tokenizer *t, const char *piece, int64_t len, id_vec *v) {
  if (!t->use_merges) {
    int32_t whole = map_find(t, piece, (size_t)len);
    if (whole >= 0) return vec_push(v, whole) ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  }
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)len);
  int64_t *bounds = malloc(sizeof(int64_t) * (size_t)(len + 1));
  if (!ids || !bounds) {
    free(ids);
    free(bounds);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory encoding a %lld-byte word", (long long)len);
  }
  int64_t n = len;
  for (int64_t i = 0; i <= len; i++) bounds[i] = i;
  if (t->use_merges) {
    for (int64_t i = 0; i < len; i++) ids[i] = t->byte_id[(uint8_t)piece[i]];
    n = bpe_by_merges(t, ids, len);
  } else {
    n = bpe_by_ranks(t, piece, bounds, ids, len);
    for (int64_t i = 0; i < n; i++) ids[i] = map_find(t, piece + bounds[i], (size_t)(bounds[i + 1] - bounds[i]));
  }
  kiln_status s = KILN_OK;
  for (int64_t i = 0; i < n && s == KILN_OK; i++)
    if (!vec_push(v, ids[i])) s = kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  free(ids);
  free(bounds);
  return s;
}

static kiln_status match_error(int rc) {
  PCRE2_UCHAR msg[256];
  pcre2_get_error_message(rc, msg, sizeof msg);
  if (rc <= PCRE2_ERROR_UTF8_ERR1 && rc >= PCRE2_ERROR_UTF8_ERR21)
    return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: the text is not valid UTF-8 (%s); convert it to UTF-8 first",
                      (const char *)msg);
  return kiln_error(KILN_ERR_INTERNAL, "tokenizer: PCRE2 match failed: %s", (const char *)msg);
}

kiln_status kiln_tokenizer_encode(const kiln_tokenizer *t, const char *text, int64_t len, int32_t **ids,
                                  int64_t *n) {
  if (!t || !ids || !n || (!text && len != 0))
    return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: tok, text, ids and n must not be NULL");
  if (len < 0) len = (int64_t)strlen(text);
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->re, NULL);
  if (!md) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  id_vec v = {0};
  kiln_status s = vec_push(&v, 0) ? KILN_OK : kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  v.n = 0; /* the slot only makes sure *ids is never NULL */
  PCRE2_SIZE pos = 0;
  uint32_t options = 0;
  while (s == KILN_OK && pos < (PCRE2_SIZE)len) {
    int rc = pcre2_match(t->re, (PCRE2_SPTR)text, (PCRE2_SIZE)len, pos, options, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      s = match_error(rc);
      break;
    }
    options = PCRE2_NO_UTF_CHECK; /* the whole subject was checked by the first match */
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[1] <= ov[0]) { /* the pattern matches no empty string; guard against looping anyway */
      pos = ov[0] + 1;
      continue;
    }
    s = encode_piece(t, text + ov[0], (int64_t)(ov[1] - ov[0]), &v);
    pos = ov[1];
  }
  pcre2_match_data_free(md);
  if (s != KILN_OK) {
    free(v.p);
    return s;
  }
  *ids = v.p;
  *n = v.n;
  return KILN_OK;
}

/* ---- decoding ----------------------------------------------------------------------------- */

typedef struct byte_vec {
  char *p;
  size_t n, cap;
} byte_vec;

static int bytes_push(byte_vec *v, const char *p, size_t n) {
  if (v->n + n + 1 > v->cap) {
    size_t cap = v->cap ? v->cap : 256;
    while (cap < v->n + n + 1) cap *= 2;
    char *q = realloc(v->p, cap);
    if (!q) return 0;
    v->p = q;
    v->cap = cap;
  }
  memcpy(v->p + v->n, p, n);
  v->n += n;
  v->p[v->n] = '\0';
  return 1;
}

/* Length of the valid UTF-8 sequence at s[0..n), or -k: the first k bytes are the maximal
 * ill-formed subpart to replace with one U+FFFD (Unicode's recommended practice, Python's). */
static int utf8_sequence(const uint8_t *s, size_t n) {
  const uint8_t c = s[0];
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) need = 2;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else return -1;
  for (int k = 1; k <= need; k++) {
    if ((size_t)k >= n) return -k;
    const uint8_t b = s[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
  }
  return need + 1;
}

/* Copy raw[n] to *out as valid UTF-8. */
static int utf8_sanitize(const char *raw, size_t n, byte_vec *out) {
  static const char replacement[] = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < n) {
    int k = utf8_sequence((const uint8_t *)raw + i, n - i);
    if (k > 0) {
      if (!bytes_push(out, raw + i, (size_t)k)) return 0;
      i += (size_t)k;
    } else {
      if (!bytes_push(out, replacement, 3)) return 0;
      i += (size_t)(-k);
    }
  }
  return bytes_push(out, "", 0);
}

kiln_status kiln_tokenizer_decode(const kiln_tokenizer *t, const int32_t *ids, int64_t n, uint32_t flags,
                                  char **text) {
  if (!t || !text || (!ids && n > 0) || n < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: tok, ids and text must not be NULL, n >= 0");
  for (int64_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= t->n_vocab)
      return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: token id %d (at %lld) is outside 0..%d; "
                        "was it produced with another vocabulary?", (int)ids[i], (long long)i, (int)t->n_vocab - 1);
  const int32_t ts_begin = t->specials[KILN_TOKEN_TIMESTAMP_BEGIN];
  byte_vec raw = {0}, out = {0};
  int ok = bytes_push(&raw, "", 0);
  for (int64_t i = 0; i < n && ok; i++) {
    const int32_t id = ids[i];
    if (ts_begin >= 0 && id >= ts_begin && id < ts_begin + KILN_TOKENIZER_TIMESTAMPS) {
      if (!(flags & KILN_DECODE_TIMESTAMPS)) continue;
      char stamp[32];
      int k = snprintf(stamp, sizeof stamp, "<|%.2f|>", (double)(id - ts_begin) * 0.02);
      ok = bytes_push(&raw, stamp, (size_t)k);
    } else if (t->special[id]) {
      if (flags & KILN_DECODE_SPECIAL) ok = bytes_push(&raw, t->arena + t->offset[id], (size_t)t->len[id]);
    } else {
      ok = bytes_push(&raw, t->arena + t->offset[id], (size_t)t->len[id]);
    }
  }
  if (ok) ok = utf8_sanitize(raw.p, raw.n, &out);
  free(raw.p);
  if (!ok) {
    free(out.p);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory decoding %lld tokens", (long long)n);
  }
  *text = out.p;
  return KILN_OK;
}

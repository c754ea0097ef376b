/* src/models/whisper/tokenizer_load.c - reading tokenizer files into a tok_builder.
 *
 * What it is: the Hugging Face directory reader (vocab.json + merges.txt + added_tokens.json /
 * tokenizer_config.json, byte-level unicode decoded back to bytes) and the tiktoken reader
 * (base64 token + rank per line, then openai-whisper's special tokens). File formats are
 * described in include/kiln/tokenizer.h.
 * What it is not: the tokenizer itself (tokenizer.c) or a general tokenizer.json reader.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "models/whisper/tokenizer_internal.h"

kiln_status tok_read_file(const char *path, char **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    return kiln_error(KILN_ERR_IO, "tokenizer: cannot open '%s': %s; check the path", path, strerror(e));
  }
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (cap - n < 65536) {
      cap = cap ? 2 * cap : 1 << 20;
      char *b = realloc(buf, cap + 1);
      if (!b) {
        free(buf);
        fclose(f);
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory reading '%s'", path);
      }
      buf = b;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    free(buf);
    return kiln_error(KILN_ERR_IO, "tokenizer: error reading '%s'", path);
  }
  buf[n] = '\0';
  *data = buf;
  *len = n;
  return KILN_OK;
}

static kiln_status parse_json_file(const char *path, cJSON **out) {
  char *text = NULL;
  size_t len = 0;
  KILN_TRY(tok_read_file(path, &text, &len));
  cJSON *root = cJSON_ParseWithLength(text, len);
  free(text);
  if (!root || !cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' is not a JSON object; the file is damaged", path);
  }
  *out = root;
  return KILN_OK;
}

static int file_exists(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f) fclose(f);
  return f != NULL;
}

/* ---- Hugging Face ------------------------------------------------------------------------- */

/* GPT-2's bytes_to_unicode(), inverted: code point -> byte, -1 where none. */
static void byte_level_table(int16_t cp_to_byte[324]) {
  for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
  int extra = 0;
  for (int b = 0; b < 256; b++) {
    int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    cp_to_byte[printable ? b : 256 + extra++] = (int16_t)b;
  }
}

/* Byte-level unicode text -> bytes (out has room for strlen(s) bytes). Returns the length or
 * -1 when s holds a character outside the byte-level alphabet. */
static int64_t byte_level_decode(const int16_t cp_to_byte[324], const char *s, char *out) {
  const uint8_t *p = (const uint8_t *)s;
  int64_t n = 0;
  while (*p) {
    uint32_t cp;
    if (p[0] < 0x80) cp = *p++;
    else if ((p[0] & 0xE0) == 0xC0 && p[1]) cp = (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F), p += 2;
    else return -1;
    if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
    out[n++] = (char)cp_to_byte[cp];
  }
  return n;
}

static void added_put(cJSON *list, const char *content, int id) {
  cJSON *item = cJSON_CreateObject();
  cJSON_AddStringToObject(item, "content", content);
  cJSON_AddNumberToObject(item, "id", id);
  cJSON_AddItemToArray(list, item);
}

/* Special tokens from added_tokens.json and tokenizer_config.json (either may be missing). */
static kiln_status read_added_tokens(const char *dir, cJSON *list) {
  char path[4096];
  snprintf(path, sizeof path, "%s/added_tokens.json", dir);
  if (file_exists(path)) {
    cJSON *root = NULL, *it;
    KILN_TRY(parse_json_file(path, &root));
    cJSON_ArrayForEach(it, root) if (cJSON_IsNumber(it)) added_put(list, it->string, it->valueint);
    cJSON_Delete(root);
  }
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  if (file_exists(path)) {
    cJSON *root = NULL, *it;
    KILN_TRY(parse_json_file(path, &root));
    cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder");
    cJSON_ArrayForEach(it, dec) {
      cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
      if (cJSON_IsString(content)) added_put(list, content->valuestring, atoi(it->string));
    }
    cJSON_Delete(root);
  }
  return KILN_OK;
}

static int added_find(const cJSON *list, const char *content) {
  const cJSON *it;
  cJSON_ArrayForEach(it, list) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (strcmp(c->valuestring, content) == 0) return cJSON_GetObjectItemCaseSensitive(it, "id")->valueint;
  }
  return -1;
}

static kiln_status add_vocab_json(tok_builder *b, const char *dir, const cJSON *added) {
  char path[4096];
  snprintf(path, sizeof path, "%s/vocab.json", dir);
  cJSON *root = NULL, *it;
  KILN_TRY(parse_json_file(path, &root));
  int16_t cp_to_byte[324];
  byte_level_table(cp_to_byte);
  kiln_status s = KILN_OK;
  char buf[1024];
  cJSON_ArrayForEach(it, root) {
    const char *key = it->string;
    if (!cJSON_IsNumber(it)) {
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s': the id of \"%.40s\" is not a number", path, key);
      break;
    }
    int special = strcmp(key, "<|endoftext|>") == 0 || (strncmp(key, "<|", 2) == 0 && added_find(added, key) >= 0);
    const size_t key_len = strlen(key);
    int64_t n = -1;
    if (key_len < sizeof buf && special) {
      memcpy(buf, key, key_len);
      n = (int64_t)key_len;
    } else if (key_len < sizeof buf) {
      n = byte_level_decode(cp_to_byte, key, buf);
    }
    if (n < 0) {
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s': token \"%.40s\" is not byte-level BPE text; "
                     "kiln reads GPT-2 style (byte-level) vocabularies only", path, key);
      break;
    }
    s = tok_builder_add(b, it->valueint, buf, (size_t)n, special);
    if (s != KILN_OK) break;
  }
  cJSON_Delete(root);
  if (s != KILN_OK) return s;
  /* added tokens that vocab.json does not hold; only specials need comparing */
  size_t *specials = malloc(sizeof(size_t) * (b->n_entries + (size_t)cJSON_GetArraySize(added) + 1));
  size_t n_specials = 0;
  if (!specials) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  for (size_t i = 0; i < b->n_entries; i++)
    if (b->entries[i].special) specials[n_specials++] = i;
  cJSON_ArrayForEach(it, added) {
    const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
    const size_t n = strlen(content);
    int present = 0;
    for (size_t k = 0; k < n_specials && !present; k++) {
      const tok_entry *e = &b->entries[specials[k]];
      present = (size_t)e->len == n && memcmp(b->arena + e->offset, content, n) == 0;
    }
    if (present) continue;
    s = tok_builder_add(b, cJSON_GetObjectItemCaseSensitive(it, "id")->valueint, content, n, 1);
    if (s != KILN_OK) break;
    specials[n_specials++] = b->n_entries - 1;
  }
  free(specials);
  return s;
}

/* Older checkpoints list no timestamp tokens: they follow <|notimestamps|>. */
static kiln_status add_missing_timestamps(tok_builder *b) {
  if (tok_builder_find_special(b, "<|0.00|>") >= 0) return KILN_OK;
  int32_t base = tok_builder_find_special(b, "<|notimestamps|>");
  if (base < 0) return KILN_OK; /* not a Whisper vocabulary: no timestamps */
  if (tok_builder_max_id(b) != base)
    return kiln_error(KILN_ERR_FORMAT, "tokenizer %s: ids follow <|notimestamps|> but none is <|0.00|>; "
                      "the vocabulary is not a Whisper vocabulary kiln understands", b->source);
  for (int i = 0; i < KILN_TOKENIZER_TIMESTAMPS; i++) {
    char name[32];
    int n = snprintf(name, sizeof name, "<|%.2f|>", i * 0.02);
    KILN_TRY(tok_builder_add(b, base + 1 + i, name, (size_t)n, 1));
  }
  return KILN_OK;
}

static kiln_status add_merges_txt(tok_builder *b, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/merges.txt", dir);
  char *text = NULL;
  size_t len = 0;
  KILN_TRY(tok_read_file(path, &text, &len));
  int16_t cp_to_byte[324];
  byte_level_table(cp_to_byte);
  kiln_status s = KILN_OK;
  char left[1024], right[1024];
  size_t line_no = 0;
  for (char *line = text; line && *line && s == KILN_OK; line_no++) {
    char *end = strchr(line, '\n');
    if (end) *end = '\0';
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[--n] = '\0';
    char *space = strchr(line, ' ');
    if (line_no == 0 && strncmp(line, "#version", 8) == 0) {
      /* header */
    } else if (n == 0) {
      /* blank line */
    } else if (!space || n >= sizeof left) {
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' line %zu is not \"left right\"; the file is damaged", path, line_no + 1);
    } else {
      *space = '\0';
      int64_t nl = byte_level_decode(cp_to_byte, line, left), nr = byte_level_decode(cp_to_byte, space + 1, right);
      int32_t a = nl > 0 ? tok_builder_find(b, left, (size_t)nl) : -1;
      int32_t c = nr > 0 ? tok_builder_find(b, right, (size_t)nr) : -1;
      if (a < 0 || c < 0)
        s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' line %zu names a token vocab.json lacks; "
                       "vocab.json and merges.txt do not belong together", path, line_no + 1);
      else
        s = tok_builder_add_merge(b, a, c);
    }
    line = end ? end + 1 : NULL;
  }
  free(text);
  return s;
}

kiln_status kiln_tokenizer_load_hf(const char *dir, kiln_tokenizer **out) {
  if (!dir || !out) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: dir and out must not be NULL");
  cJSON *added = cJSON_CreateArray();
  if (!added) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
  tok_builder b;
  tok_builder_init(&b, dir, 1);
  kiln_status s = read_added_tokens(dir, added);
  if (s == KILN_OK) s = add_vocab_json(&b, dir, added);
  if (s == KILN_OK) s = tok_builder_index(&b);
  if (s == KILN_OK) s = add_missing_timestamps(&b);
  if (s == KILN_OK) s = add_merges_txt(&b, dir);
  cJSON_Delete(added);
  if (s != KILN_OK) {
    tok_builder_free(&b);
    return kiln_error_context(s, "loading the tokenizer in '%s' (vocab.json, merges.txt, added_tokens.json): ", dir);
  }
  return tok_builder_finish(&b, out);
}

/* ---- tiktoken ----------------------------------------------------------------------------- */

static int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decode base64 s[n] into out (room for n bytes); -1 if malformed. */
static int64_t base64_decode(const char *s, size_t n, char *out) {
  uint32_t acc = 0;
  int bits = 0;
  int64_t len = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=') break;
    int v = base64_value(s[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[len++] = (char)(acc >> bits & 0xFF);
    }
  }
  return len;
}

static kiln_status add_tiktoken_ranks(tok_builder *b, const char *path, int32_t *n_ranks) {
  char *text = NULL;
  size_t len = 0;
  KILN_TRY(tok_read_file(path, &text, &len));
  kiln_status s = KILN_OK;
  char buf[1024];
  int32_t count = 0;
  for (char *line = text; line && *line && s == KILN_OK;) {
    char *end = strchr(line, '\n');
    if (end) *end = '\0';
    char *space = strchr(line, ' ');
    if (*line == '\0' || (*line == '\r' && line[1] == '\0')) {
      /* blank line */
    } else if (!space || (size_t)(space - line) >= sizeof buf) {
      s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' line %d is not \"base64 rank\"; is this a tiktoken file?", path,
                     (int)count + 1);
    } else {
      int64_t n = base64_decode(line, (size_t)(space - line), buf);
      long rank = strtol(space + 1, NULL, 10);
      if (n < 0 || rank != count) /* multilingual.tiktoken holds one empty token ("=") */
        s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' line %d: bad token or rank %ld (expected %d); "
                       "the file is damaged", path, (int)count + 1, rank, (int)count);
      else
        s = tok_builder_add(b, (int32_t)rank, buf, (size_t)n, 0);
      count++;
    }
    line = end ? end + 1 : NULL;
  }
  free(text);
  if (s == KILN_OK && count < 256)
    s = kiln_error(KILN_ERR_FORMAT, "tokenizer: '%s' holds %d tokens; a byte-level vocabulary has at least 256", path,
                   (int)count);
  *n_ranks = count;
  return s;
}

static kiln_status add_whisper_specials(tok_builder *b, int32_t first, int32_t num_languages) {
  static const char *const head[] = {"<|endoftext|>", "<|startoftranscript|>"};
  static const char *const tail[] = {"<|translate|>", "<|transcribe|>", "<|startoflm|>",
                                     "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"};
  int32_t id = first;
  char name[32];
  for (int i = 0; i < 2; i++) KILN_TRY(tok_builder_add(b, id++, head[i], strlen(head[i]), 1));
  for (int i = 0; i < num_languages; i++) {
    int n = snprintf(name, sizeof name, "<|%s|>", kiln_tok_languages[i]);
    KILN_TRY(tok_builder_add(b, id++, name, (size_t)n, 1));
  }
  for (int i = 0; i < 6; i++) KILN_TRY(tok_builder_add(b, id++, tail[i], strlen(tail[i]), 1));
  for (int i = 0; i < KILN_TOKENIZER_TIMESTAMPS; i++) {
    int n = snprintf(name, sizeof name, "<|%.2f|>", i * 0.02);
    KILN_TRY(tok_builder_add(b, id++, name, (size_t)n, 1));
  }
  return KILN_OK;
}

kiln_status kiln_tokenizer_load_tiktoken(const char *path, int32_t num_languages, kiln_tokenizer **out) {
  if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: path and out must not be NULL");
  if (num_languages < 1 || num_languages > KILN_TOK_MAX_LANGUAGES)
    return kiln_error(KILN_ERR_INVALID_ARG, "tokenizer: num_languages must be in 1..%d (got %d); "
                      "use 99, or 100 for large-v3", KILN_TOK_MAX_LANGUAGES, (int)num_languages);
  tok_builder b;
  tok_builder_init(&b, path, 0);
  int32_t n_ranks = 0;
  kiln_status s = add_tiktoken_ranks(&b, path, &n_ranks);
  if (s == KILN_OK) s = add_whisper_specials(&b, n_ranks, num_languages);
  if (s != KILN_OK) {
    tok_builder_free(&b);
    return s;
  }
  return tok_builder_finish(&b, out);
}

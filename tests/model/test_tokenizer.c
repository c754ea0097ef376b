/* tests/model/test_tokenizer.c - kiln's Whisper tokenizer against tiktoken and transformers.
 *
 * References: tests/data/tokenizer_refs.json (tools/make_frontend_refs.py): token ids of test
 * texts from openai-whisper's tiktoken tokenizers (multilingual, gpt2) and from transformers'
 * WhisperTokenizer (the Hugging Face files: BPE by merges, which differs from tiktoken on a few
 * texts), special token ids of the 51864/51865/51866 vocabularies, decodes. Also round trips of
 * random Unicode text and the error paths. Reads the tokenizer files from ../shared/data.
 */
#include <cjson/cJSON.h>

#include "check.h"
#include "common/test_json.h"
#include "kiln/tokenizer.h"

#define ASSETS KILN_SHARED_DATA "/whisper/openai-assets/"
#define HF_DIR KILN_SHARED_DATA "/whisper/tokenizer-hf"

/* Encode text with tok and compare with the JSON array want. */
static void check_encode(const kiln_tokenizer *tok, const char *which, const char *text, const cJSON *want) {
  int32_t *ids = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_tokenizer_encode(tok, text, -1, &ids, &n));
  int same = ids && n == cJSON_GetArraySize(want);
  for (int64_t i = 0; same && i < n; i++) same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
  check_count_++;
  if (!same) {
    check_failures_++;
    fprintf(stderr, "encode mismatch (%s) for \"%s\": got", which, text);
    for (int64_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "; want");
    for (int i = 0; i < cJSON_GetArraySize(want); i++) fprintf(stderr, " %d", cJSON_GetArrayItem(want, i)->valueint);
    fprintf(stderr, "\n");
  }
  char *back = NULL;
  CHECK_OK(kiln_tokenizer_decode(tok, ids, n, 0, &back));
  CHECK_EQ_STR(back, text);
  kiln_tokenizer_free(back);
  kiln_tokenizer_free(ids);
}

static int json_int(const cJSON *o, const char *key) {
  return cJSON_GetObjectItemCaseSensitive(o, key)->valueint;
}

static void check_vocab(const kiln_tokenizer *tok, const cJSON *v) {
  CHECK_EQ_INT(kiln_tokenizer_vocab_size(tok), json_int(v, "n_vocab"));
  CHECK_EQ_INT(kiln_tokenizer_num_languages(tok), json_int(v, "num_languages"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_EOT), json_int(v, "eot"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_SOT), json_int(v, "sot"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_TRANSCRIBE), json_int(v, "transcribe"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_TRANSLATE), json_int(v, "translate"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_SOT_LM), json_int(v, "sot_lm"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_PREV), json_int(v, "sot_prev"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_NO_SPEECH), json_int(v, "no_speech"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_NO_TIMESTAMPS), json_int(v, "no_timestamps"));
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_TIMESTAMP_BEGIN), json_int(v, "timestamp_begin"));
  CHECK_EQ_INT(kiln_tokenizer_is_multilingual(tok), json_int(v, "n_vocab") >= 51865);
  const cJSON *lang;
  int bad = 0;
  cJSON_ArrayForEach(lang, cJSON_GetObjectItemCaseSensitive(v, "languages")) {
    int32_t id = -1;
    if (kiln_tokenizer_language_token(tok, lang->string, &id) != KILN_OK || id != lang->valueint) bad++;
    const char *code = kiln_tokenizer_language_code(tok, lang->valueint);
    if (!code || strcmp(code, lang->string) != 0) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  /* openai-whisper's sot sequences (English for multilingual vocabularies) */
  const int multilingual = kiln_tokenizer_is_multilingual(tok);
  int32_t seq[4], n = 0;
  CHECK_OK(kiln_tokenizer_sot_sequence(tok, multilingual ? "en" : NULL,
                                       multilingual ? KILN_TASK_TRANSCRIBE : KILN_TASK_NONE, 1, seq, &n));
  const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "sot_sequence");
  CHECK_EQ_INT(n, cJSON_GetArraySize(want));
  for (int i = 0; i < n && i < cJSON_GetArraySize(want); i++) CHECK_EQ_INT(seq[i], cJSON_GetArrayItem(want, i)->valueint);
  CHECK_OK(kiln_tokenizer_sot_sequence(tok, multilingual ? "en" : NULL,
                                       multilingual ? KILN_TASK_TRANSCRIBE : KILN_TASK_NONE, 0, seq, &n));
  want = cJSON_GetObjectItemCaseSensitive(v, "sot_sequence_including_notimestamps");
  CHECK_EQ_INT(n, cJSON_GetArraySize(want));
  for (int i = 0; i < n && i < cJSON_GetArraySize(want); i++) CHECK_EQ_INT(seq[i], cJSON_GetArrayItem(want, i)->valueint);
}

static void check_decodes(const kiln_tokenizer *tok, const cJSON *d) {
  const cJSON *jids = cJSON_GetObjectItemCaseSensitive(d, "ids");
  int32_t ids[128];
  int n = cJSON_GetArraySize(jids);
  for (int i = 0; i < n && i < 128; i++) ids[i] = cJSON_GetArrayItem(jids, i)->valueint;
  struct {
    uint32_t flags;
    const char *key;
  } cases[] = {{KILN_DECODE_SPECIAL | KILN_DECODE_TIMESTAMPS, "with_timestamps"},
               {KILN_DECODE_SPECIAL, "without_timestamps"},
               {0, "text_only"}};
  for (int c = 0; c < 3; c++) {
    char *text = NULL;
    CHECK_OK(kiln_tokenizer_decode(tok, ids, n, cases[c].flags, &text));
    CHECK_EQ_STR(text, cJSON_GetObjectItemCaseSensitive(d, cases[c].key)->valuestring);
    kiln_tokenizer_free(text);
  }
  const cJSON *part = cJSON_GetObjectItemCaseSensitive(d, "partial_emoji_ids");
  int32_t pid = cJSON_GetArrayItem(part, 0)->valueint;
  char *text = NULL;
  CHECK_OK(kiln_tokenizer_decode(tok, &pid, 1, 0, &text));
  CHECK_EQ_STR(text, cJSON_GetObjectItemCaseSensitive(d, "partial_emoji")->valuestring);
  kiln_tokenizer_free(text);
}

/* Append the UTF-8 encoding of code point cp to s. */
static int put_utf8(char *s, uint32_t cp) {
  if (cp < 0x80) return s[0] = (char)cp, 1;
  if (cp < 0x800) return s[0] = (char)(0xC0 | cp >> 6), s[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000)
    return s[0] = (char)(0xE0 | cp >> 12), s[1] = (char)(0x80 | (cp >> 6 & 0x3F)), s[2] = (char)(0x80 | (cp & 0x3F)), 3;
  s[0] = (char)(0xF0 | cp >> 18), s[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  s[2] = (char)(0x80 | (cp >> 6 & 0x3F)), s[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Random Unicode text (ASCII, spaces, Latin-1, CJK, emoji) round-trips through every tokenizer. */
static void check_random_roundtrip(kiln_tokenizer *const *toks, int n_toks) {
  check_rng rng = {2024};
  static const uint32_t ranges[][2] = {{0x20, 0x7F}, {0x20, 0x21}, {0x0A, 0x0B}, {0xA0, 0x180},
                                       {0x400, 0x450}, {0x4E00, 0x4F00}, {0x1F600, 0x1F650}, {0x3040, 0x30FF}};
  for (int trial = 0; trial < 40; trial++) {
    char text[1024];
    int len = 0;
    int chars = 1 + (int)check_uniform(&rng, 0, 120);
    for (int c = 0; c < chars; c++) {
      int r = (int)check_uniform(&rng, 0, 8);
      uint32_t cp = ranges[r][0] + (uint32_t)check_uniform(&rng, 0, (float)(ranges[r][1] - ranges[r][0]));
      len += put_utf8(text + len, cp);
    }
    text[len] = '\0';
    for (int t = 0; t < n_toks; t++) {
      int32_t *ids = NULL;
      int64_t n = 0;
      char *back = NULL;
      CHECK_OK(kiln_tokenizer_encode(toks[t], text, len, &ids, &n));
      CHECK(n > 0 && n <= len);
      CHECK_OK(kiln_tokenizer_decode(toks[t], ids, n, 0, &back));
      CHECK_EQ_STR(back, text);
      kiln_tokenizer_free(back);
      kiln_tokenizer_free(ids);
    }
  }
}

static void check_errors(const kiln_tokenizer *tok) {
  kiln_tokenizer *none = NULL;
  CHECK_STATUS(kiln_tokenizer_load_tiktoken(ASSETS "missing.tiktoken", 99, &none), KILN_ERR_IO);
  CHECK(strstr(kiln_last_error(), "missing.tiktoken") != NULL);
  CHECK_STATUS(kiln_tokenizer_load_tiktoken(ASSETS "english.json", 99, &none), KILN_ERR_FORMAT);
  CHECK_STATUS(kiln_tokenizer_load_tiktoken(ASSETS "gpt2.tiktoken", 0, &none), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_tokenizer_load_hf(KILN_SHARED_DATA "/whisper/audio", &none), KILN_ERR_IO);
  CHECK(none == NULL);

  int32_t *ids = (int32_t *)0x1, bad_id = 999999, id = -7;
  int64_t n = -3;
  CHECK_STATUS(kiln_tokenizer_encode(tok, "bad \xC3\x28 utf8", -1, &ids, &n), KILN_ERR_INVALID_ARG);
  CHECK(ids == (int32_t *)0x1 && n == -3);
  char *text = NULL;
  CHECK_STATUS(kiln_tokenizer_decode(tok, &bad_id, 1, 0, &text), KILN_ERR_INVALID_ARG);
  CHECK(text == NULL);
  CHECK_STATUS(kiln_tokenizer_language_token(tok, "xx", &id), KILN_ERR_NOT_FOUND);
  CHECK_EQ_INT(id, -7);
  CHECK(kiln_tokenizer_language_code(tok, 100) == NULL);
  /* empty text gives no ids but a valid array */
  ids = NULL;
  CHECK_OK(kiln_tokenizer_encode(tok, "", 0, &ids, &n));
  CHECK(ids != NULL);
  CHECK_EQ_INT(n, 0);
  kiln_tokenizer_free(ids);
  /* embedded NUL with an explicit length */
  CHECK_OK(kiln_tokenizer_encode(tok, "a\0b", 3, &ids, &n));
  CHECK_EQ_INT(n, 3);
  kiln_tokenizer_free(ids);
}

int main(void) {
  cJSON *refs = read_json(KILN_SOURCE_DIR "/tests/data/tokenizer_refs.json");
  if (!refs) {
    fprintf(stderr, "cannot read tests/data/tokenizer_refs.json\n");
    return 1;
  }
  kiln_tokenizer *ml = NULL, *en = NULL, *v3 = NULL, *hf = NULL;
  CHECK_OK(kiln_tokenizer_load_tiktoken(ASSETS "multilingual.tiktoken", 99, &ml));
  CHECK_OK(kiln_tokenizer_load_tiktoken(ASSETS "gpt2.tiktoken", 99, &en));
  CHECK_OK(kiln_tokenizer_load_tiktoken(ASSETS "multilingual.tiktoken", 100, &v3));
  CHECK_OK(kiln_tokenizer_load_hf(HF_DIR, &hf));
  if (!ml || !en || !v3 || !hf) return check_report();

  const cJSON *item;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(refs, "texts")) {
    const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
    check_encode(ml, "multilingual.tiktoken", text, cJSON_GetObjectItemCaseSensitive(item, "multilingual"));
    check_encode(v3, "multilingual.tiktoken/100", text, cJSON_GetObjectItemCaseSensitive(item, "multilingual"));
    check_encode(en, "gpt2.tiktoken", text, cJSON_GetObjectItemCaseSensitive(item, "gpt2"));
    const cJSON *want_hf = cJSON_GetObjectItemCaseSensitive(item, "hf");
    if (want_hf) check_encode(hf, "tokenizer-hf", text, want_hf);
  }
  const cJSON *vocabs = cJSON_GetObjectItemCaseSensitive(refs, "vocabs");
  check_vocab(en, cJSON_GetArrayItem(vocabs, 0));
  check_vocab(ml, cJSON_GetArrayItem(vocabs, 1));
  check_vocab(v3, cJSON_GetArrayItem(vocabs, 2));
  check_vocab(hf, cJSON_GetArrayItem(vocabs, 1)); /* the HF files are Whisper tiny's: 51865 */
  const cJSON *hf_refs = cJSON_GetObjectItemCaseSensitive(refs, "hf");
  CHECK_EQ_INT(kiln_tokenizer_special(hf, KILN_TOKEN_SOT), json_int(hf_refs, "sot"));
  CHECK_EQ_INT(kiln_tokenizer_special(hf, KILN_TOKEN_NO_TIMESTAMPS), json_int(hf_refs, "no_timestamps"));
  int32_t en_id = -1;
  CHECK_OK(kiln_tokenizer_language_token(hf, "en", &en_id));
  CHECK_EQ_INT(en_id, json_int(hf_refs, "en"));
  check_decodes(ml, cJSON_GetObjectItemCaseSensitive(refs, "decode"));
  check_decodes(hf, cJSON_GetObjectItemCaseSensitive(refs, "decode"));

  kiln_tokenizer *all[] = {ml, en, v3, hf};
  check_random_roundtrip(all, 4);
  check_errors(ml);

  kiln_tokenizer_destroy(ml);
  kiln_tokenizer_destroy(en);
  kiln_tokenizer_destroy(v3);
  kiln_tokenizer_destroy(hf);
  cJSON_Delete(refs);
  return check_report();
}

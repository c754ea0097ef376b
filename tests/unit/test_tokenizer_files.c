/* tests/unit/test_tokenizer_files.c - the tokenizer readers and BPE rules on tiny hand-made files.
 *
 * Writes a tiny tiktoken file and a tiny Hugging Face directory (256 byte tokens + "ab", "abc",
 * " a") into the build folder and checks: rank-based BPE (tiktoken) and merge-based BPE (Hugging
 * Face), openai-whisper's special token layout for num_languages = 1, timestamp tokens added
 * after <|notimestamps|> for old HF files, <|nocaptions|> as the no-speech token, decoding
 * invalid UTF-8 to U+FFFD as Python does, and a merges.txt that does not fit its vocab.json.
 * Needs no shared data.
 */
#include <sys/stat.h>

#include "check.h"
#include "kiln/tokenizer.h"

#define DIR_HF KILN_BINARY_DIR "/tiny_tokenizer_hf"
#define FILE_TT KILN_BINARY_DIR "/tiny.tiktoken"

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f || fputs(text, f) < 0) abort();
  fclose(f);
}

static void write_tiktoken(void) {
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  FILE *f = fopen(FILE_TT, "wb");
  if (!f) abort();
  for (int b = 0; b < 256; b++) fprintf(f, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
  fprintf(f, "YWI= 256\nYWJj 257\nIGE= 258\n"); /* "ab", "abc", " a" */
  fclose(f);
}

/* GPT-2's bytes_to_unicode() as UTF-8 into out (3 bytes room). */
static void byte_char(int b, char *out) {
  int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  int cp = b, extra = 0;
  if (!printable) {
    for (int c = 0; c < b; c++)
      if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) extra++;
    cp = 256 + extra;
  }
  if (cp < 0x80) out[0] = (char)cp, out[1] = 0;
  else out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), out[2] = 0;
}

static void write_hf(const char *merges) {
  mkdir(DIR_HF, 0755);
  FILE *f = fopen(DIR_HF "/vocab.json", "wb");
  if (!f) abort();
  fprintf(f, "{");
  for (int b = 0; b < 256; b++) {
    char c[4];
    byte_char(b, c);
    if (b == '"' || b == '\\') fprintf(f, "\"\\%s\": %d, ", c, b);
    else fprintf(f, "\"%s\": %d, ", c, b);
  }
  fprintf(f, "\"ab\": 256, \"abc\": 257, \"\xC4\xA0" "a\": 258, \"<|endoftext|>\": 259}");
  fclose(f);
  write_text(DIR_HF "/merges.txt", merges);
  write_text(DIR_HF "/added_tokens.json",
             "{\"<|startoftranscript|>\": 260, \"<|en|>\": 261, \"<|translate|>\": 262, \"<|transcribe|>\": 263,"
             " \"<|startoflm|>\": 264, \"<|startofprev|>\": 265, \"<|nocaptions|>\": 266, \"<|notimestamps|>\": 267}");
}

static void check_ids(const kiln_tokenizer *tok, const char *text, const int32_t *want, int64_t n_want) {
  int32_t *ids = NULL;
  int64_t n = 0;
  CHECK_OK(kiln_tokenizer_encode(tok, text, -1, &ids, &n));
  CHECK_EQ_INT(n, n_want);
  for (int64_t i = 0; i < n && i < n_want; i++) CHECK_EQ_INT(ids[i], want[i]);
  kiln_tokenizer_free(ids);
}

static void check_decode(const kiln_tokenizer *tok, const int32_t *ids, int64_t n, uint32_t flags, const char *want) {
  char *text = NULL;
  CHECK_OK(kiln_tokenizer_decode(tok, ids, n, flags, &text));
  CHECK_EQ_STR(text, want);
  kiln_tokenizer_free(text);
}

static void check_common(const kiln_tokenizer *tok) {
  CHECK_EQ_INT(kiln_tokenizer_vocab_size(tok), 268 + 1501);
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_EOT), 259);
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_SOT), 260);
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_NO_SPEECH), 266);
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_NO_TIMESTAMPS), 267);
  CHECK_EQ_INT(kiln_tokenizer_special(tok, KILN_TOKEN_TIMESTAMP_BEGIN), 268);
  CHECK_EQ_INT(kiln_tokenizer_num_languages(tok), 1);
  CHECK_EQ_INT(kiln_tokenizer_is_multilingual(tok), 0);
  const int32_t abc[] = {257}, abd[] = {256, 'd'}, space_ab[] = {' ', 256}, space_a[] = {258};
  check_ids(tok, "abc", abc, 1);
  check_ids(tok, "abd", abd, 2);
  check_ids(tok, " ab", space_ab, 2);
  check_ids(tok, " a", space_a, 1);
  const int32_t bad1[] = {0xC3}, bad2[] = {0xE2, 0x82, 'a'}, bad3[] = {0xF0, 0x80}, good[] = {0xC3, 0xA9};
  check_decode(tok, bad1, 1, 0, "\xEF\xBF\xBD");
  check_decode(tok, bad2, 3, 0, "\xEF\xBF\xBD" "a");
  check_decode(tok, bad3, 2, 0, "\xEF\xBF\xBD\xEF\xBF\xBD");
  check_decode(tok, good, 2, 0, "\xC3\xA9");
  const int32_t seq[] = {260, 261, 263, 268, 257, 268 + 50, 268 + 1500, 259};
  check_decode(tok, seq, 8, 0, "abc");
  check_decode(tok, seq, 8, KILN_DECODE_SPECIAL,
               "<|startoftranscript|><|en|><|transcribe|>abc<|endoftext|>");
  check_decode(tok, seq, 8, KILN_DECODE_SPECIAL | KILN_DECODE_TIMESTAMPS,
               "<|startoftranscript|><|en|><|transcribe|><|0.00|>abc<|1.00|><|30.00|><|endoftext|>");
  const char *code = kiln_tokenizer_language_code(tok, 261);
  CHECK_EQ_STR(code, "en");
  int32_t sot[4], n = 0;
  CHECK_OK(kiln_tokenizer_sot_sequence(tok, "en", KILN_TASK_TRANSLATE, 0, sot, &n));
  CHECK_EQ_INT(n, 4);
  CHECK(sot[0] == 260 && sot[1] == 261 && sot[2] == 262 && sot[3] == 267);
  CHECK_STATUS(kiln_tokenizer_sot_sequence(tok, "de", KILN_TASK_TRANSLATE, 0, sot, &n), KILN_ERR_NOT_FOUND);
}

int main(void) {
  write_tiktoken();
  kiln_tokenizer *tt = NULL, *hf = NULL;
  CHECK_OK(kiln_tokenizer_load_tiktoken(FILE_TT, 1, &tt));
  if (tt) check_common(tt);
  write_hf("#version: 0.2\na b\nab c\n\xC4\xA0 a\n");
  CHECK_OK(kiln_tokenizer_load_hf(DIR_HF, &hf));
  if (hf) check_common(hf);
  /* where the rules differ: " abc" is one piece; tiktoken merges by token rank ("ab" 256 first,
   * then "abc"), HF by merge rank (same order here) -> both [" ", "abc"] */
  const int32_t space_abc[] = {' ', 257};
  if (tt) check_ids(tt, " abc", space_abc, 2);
  if (hf) check_ids(hf, " abc", space_abc, 2);
  kiln_tokenizer_destroy(tt);
  kiln_tokenizer_destroy(hf);

  /* merges naming a token vocab.json lacks */
  write_hf("#version: 0.2\na b\nb c\n");
  kiln_tokenizer *bad = NULL;
  CHECK_STATUS(kiln_tokenizer_load_hf(DIR_HF, &bad), KILN_ERR_FORMAT);
  CHECK(strstr(kiln_last_error(), "merge") != NULL);
  CHECK(bad == NULL);
  return check_report();
}

/* tests/unit/test_manifest.c - the test-set manifest reader (kiln/manifest.h).
 *
 * What it is: the committed mini test set's manifest.tsv and manifest.jsonl (written by
 * tools/make_testset.py) must give the same utterances, paths resolved against their folder and
 * the JSON fields as text; random manifests (seeded: random UTF-8 texts with quotes, backslashes
 * and empty texts, random extra fields) written in both formats must read back exactly;
 * comments, blank lines, CRLF, a byte-order mark and absolute paths are handled; each kind of
 * malformed line fails with KILN_ERR_FORMAT, its line number in the message, *out untouched.
 * What it is not: a test of the audio files themselves (tests/model/test_testset_audio.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "kiln/manifest.h"

#define MINI_DIR KILN_SOURCE_DIR "/tests/data/testset-mini"

static kiln_manifest *parse_str(const char *s, const char *base) {
  kiln_manifest *m = NULL;
  CHECK_OK(kiln_manifest_parse(s, strlen(s), base, "test.tsv", &m));
  return m;
}

static void test_mini_set(void) {
  kiln_manifest *tsv = NULL, *jsonl = NULL;
  CHECK_OK(kiln_manifest_load(MINI_DIR "/manifest.tsv", &tsv));
  CHECK_OK(kiln_manifest_load(MINI_DIR "/manifest.jsonl", &jsonl));
  if (!tsv || !jsonl) goto done;
  CHECK_EQ_INT(kiln_manifest_format_of(tsv), KILN_MANIFEST_FORMAT_TSV);
  CHECK_EQ_INT(kiln_manifest_format_of(jsonl), KILN_MANIFEST_FORMAT_JSONL);
  CHECK_EQ_INT(kiln_manifest_count(tsv), 12);
  CHECK_EQ_INT(kiln_manifest_count(jsonl), kiln_manifest_count(tsv));
  int n_clean = 0, n_noisy = 0;
  for (int64_t i = 0; i < kiln_manifest_count(tsv); i++) {
    CHECK_EQ_STR(kiln_manifest_audio(tsv, i), kiln_manifest_audio(jsonl, i));
    CHECK_EQ_STR(kiln_manifest_text(tsv, i), kiln_manifest_text(jsonl, i));
    const char *raw = kiln_manifest_audio_raw(jsonl, i);
    char want[1024];
    snprintf(want, sizeof want, "%s/%s", MINI_DIR, raw ? raw : "");
    CHECK_EQ_STR(kiln_manifest_audio(jsonl, i), want);
    CHECK(strncmp(raw, "audio/", 6) == 0);
    CHECK(strlen(kiln_manifest_text(jsonl, i)) > 0);
    CHECK(kiln_manifest_field(jsonl, i, "synth") != NULL);
    CHECK(kiln_manifest_field(jsonl, i, "voice") != NULL);
    CHECK(kiln_manifest_field(jsonl, i, "source") != NULL);
    CHECK(kiln_manifest_field(jsonl, i, "audio") == NULL); /* not an "other" field */
    CHECK(kiln_manifest_field(tsv, i, "synth") == NULL);
    const char *sr = kiln_manifest_field(jsonl, i, "sample_rate");
    CHECK(sr && (!strcmp(sr, "16000") || !strcmp(sr, "22050") || !strcmp(sr, "44100")));
    if (kiln_manifest_field(jsonl, i, "noise_db")) n_noisy++; else n_clean++;
    CHECK_EQ_INT(kiln_manifest_line(jsonl, i), i + 1);
  }
  CHECK(n_clean > 0 && n_noisy > 0); /* noise_db null reads as absent */
  CHECK(kiln_manifest_audio(tsv, 12) == NULL && kiln_manifest_text(tsv, -1) == NULL);
  CHECK_EQ_INT(kiln_manifest_line(tsv, 99), 0);
done:
  kiln_manifest_destroy(tsv);
  kiln_manifest_destroy(jsonl);
}

static void test_tsv_details(void) {
  const char *s = "\xEF\xBB\xBF# a comment\r\n"
                  "\n"
                  "a.flac\tHello there.\r\n"
                  "   \n"
                  "sub/b.wav\t\n"
                  "/abs/c.flac\t  spaced  text \n"
                  "d.flac\tlast line without newline";
  kiln_manifest *m = parse_str(s, "/data/set");
  if (!m) return;
  CHECK_EQ_INT(kiln_manifest_count(m), 4);
  CHECK_EQ_STR(kiln_manifest_audio(m, 0), "/data/set/a.flac");
  CHECK_EQ_STR(kiln_manifest_text(m, 0), "Hello there.");
  CHECK_EQ_INT(kiln_manifest_line(m, 0), 3);
  CHECK_EQ_STR(kiln_manifest_audio(m, 1), "/data/set/sub/b.wav");
  CHECK_EQ_STR(kiln_manifest_audio_raw(m, 1), "sub/b.wav");
  CHECK_EQ_STR(kiln_manifest_text(m, 1), "");
  CHECK_EQ_STR(kiln_manifest_audio(m, 2), "/abs/c.flac");
  CHECK_EQ_STR(kiln_manifest_text(m, 2), "  spaced  text ");
  CHECK_EQ_STR(kiln_manifest_text(m, 3), "last line without newline");
  CHECK_EQ_INT(kiln_manifest_line(m, 3), 7);
  kiln_manifest_destroy(m);

  m = parse_str("x.flac\ty\n", NULL); /* no base: the path as written */
  if (m) CHECK_EQ_STR(kiln_manifest_audio(m, 0), "x.flac");
  kiln_manifest_destroy(m);
  m = parse_str("x.flac\ty\n", "dir/"); /* base with its own slash */
  if (m) CHECK_EQ_STR(kiln_manifest_audio(m, 0), "dir/x.flac");
  kiln_manifest_destroy(m);
}

static void test_jsonl_details(void) {
  const char *s = "  {\"audio\": \"a.flac\", \"text\": \"Hi \\\"you\\\" \\u00e9\", \"rate\": 1.25,"
                  " \"n\": 3, \"ok\": true, \"noise_db\": null, \"tags\": [1, \"x\"],"
                  " \"voice\": \"slt\"}\r\n"
                  "\n"
                  "{\"text\": \"\", \"audio\": \"/b.flac\"}\n";
  kiln_manifest *m = parse_str(s, "base");
  if (!m) return;
  CHECK_EQ_INT(kiln_manifest_format_of(m), KILN_MANIFEST_FORMAT_JSONL);
  CHECK_EQ_INT(kiln_manifest_count(m), 2);
  CHECK_EQ_STR(kiln_manifest_audio(m, 0), "base/a.flac");
  CHECK_EQ_STR(kiln_manifest_text(m, 0), "Hi \"you\" \xC3\xA9");
  CHECK_EQ_STR(kiln_manifest_field(m, 0, "rate"), "1.25");
  CHECK_EQ_STR(kiln_manifest_field(m, 0, "n"), "3");
  CHECK_EQ_STR(kiln_manifest_field(m, 0, "ok"), "true");
  CHECK(kiln_manifest_field(m, 0, "noise_db") == NULL);
  CHECK_EQ_STR(kiln_manifest_field(m, 0, "tags"), "[1,\"x\"]");
  CHECK_EQ_STR(kiln_manifest_field(m, 0, "voice"), "slt");
  CHECK(kiln_manifest_field(m, 0, "Voice") == NULL);
  CHECK(kiln_manifest_field(m, 0, NULL) == NULL);
  CHECK_EQ_STR(kiln_manifest_audio(m, 1), "/b.flac");
  CHECK_EQ_STR(kiln_manifest_text(m, 1), "");
  CHECK_EQ_INT(kiln_manifest_line(m, 1), 3);
  kiln_manifest_destroy(m);
}

/* Each malformed input fails with KILN_ERR_FORMAT, names line `line`, leaves *out alone. */
static void expect_bad(const char *s, size_t n, int line, const char *words) {
  kiln_manifest *sentinel = (kiln_manifest *)&check_count_, *m = sentinel;
  kiln_status st = kiln_manifest_parse(s, n, "", "bad.txt", &m);
  CHECK_EQ_INT(st, KILN_ERR_FORMAT);
  CHECK(m == sentinel);
  char want[64];
  snprintf(want, sizeof want, "bad.txt line %d:", line);
  const char *msg = kiln_last_error();
  int ok = line ? strstr(msg, want) != NULL : strstr(msg, "bad.txt") != NULL;
  ok = ok && strstr(msg, words) != NULL;
  CHECK(ok);
  if (!ok) fprintf(stderr, "  input [%.*s]: message \"%s\", wanted \"%s\" and \"%s\"\n", (int)n, s,
                   msg, line ? want : "bad.txt", words);
  if (st == KILN_OK) kiln_manifest_destroy(m);
}

static void test_errors(void) {
  expect_bad("a.flac\tok\n# c\nb.flac no tab\n", 26, 3, "no tab");
  expect_bad("a.flac\tone\ttwo\n", 15, 1, "more than one tab");
  expect_bad("a.flac\tok\n\tno path\n", 19, 2, "audio path");
  expect_bad("a.flac\tbad \xC3\x28 utf8\n", 20, 1, "UTF-8");
  expect_bad("a.flac\tnul \0 inside\n", 19, 1, "NUL");
  expect_bad("{\"audio\": \"a\", \"text\": \"t\"}\n{\"audio\": \"b\", \"text\": }\n", 51, 2,
             "valid JSON");
  expect_bad("{\"audio\": \"a\", \"text\": \"t\"} trailing\n", 36, 1, "valid JSON");
  expect_bad("{\"text\": \"t\"}\n", 14, 1, "\"audio\"");
  expect_bad("{\"audio\": \"\", \"text\": \"t\"}\n", 27, 1, "\"audio\"");
  expect_bad("{\"audio\": 3, \"text\": \"t\"}\n", 26, 1, "\"audio\"");
  expect_bad("{\"audio\": \"a\"}\n", 15, 1, "\"text\"");
  expect_bad("{\"audio\": \"a\", \"text\": null}\n", 29, 1, "\"text\"");
  expect_bad("{\"audio\": \"a\", \"text\": \"t\"}\n[1, 2]\n", 35, 2, "not an object");
  expect_bad("{\"audio\": \"a\", \"text\": \"t\"}\na.flac\tt\n", 37, 2, "valid JSON");
  expect_bad("", 0, 0, "no utterances");
  expect_bad("# only a comment\n\n", 18, 0, "no utterances");

  kiln_manifest *m = NULL;
  CHECK_STATUS(kiln_manifest_load("/nonexistent/manifest.tsv", &m), KILN_ERR_IO);
  CHECK(m == NULL);
  CHECK_STATUS(kiln_manifest_load(NULL, &m), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_manifest_parse("a\tb", 3, NULL, NULL, NULL), KILN_ERR_INVALID_ARG);
  kiln_manifest_destroy(NULL);
  CHECK_EQ_INT(kiln_manifest_count(NULL), 0);
}

/* ---- random round trips ---------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state % n);
}

/* Random UTF-8 without tabs, newlines or NUL: ASCII, quotes, backslashes, 2-4 byte chars. */
static void random_text(char *out, int max_chars) {
  static const char *pieces[] = {"a", "Z", " ", "\"", "\\", "{", "}", ",", ":", "#", "\xC3\xA9",
                                 "\xE2\x80\x94", "\xF0\x9F\x98\x80", "word", "'", "/", "\r"};
  int n = (int)rnd((uint32_t)max_chars + 1);
  out[0] = '\0';
  for (int i = 0; i < n; i++) {
    const char *p = pieces[rnd(sizeof pieces / sizeof *pieces)];
    if (p[0] == '\r' && i == n - 1) p = "x"; /* a CR at the end would read as CRLF */
    strcat(out, p);
  }
}

static void test_random_round_trip(void) {
  enum { N = 40 };
  static char texts[N][512], paths[N][64], voices[N][64];
  char *tsv = calloc(1, 64 * 1024), *jsonl = calloc(1, 128 * 1024);
  if (!tsv || !jsonl) abort();
  for (int trial = 0; trial < 20; trial++) {
    tsv[0] = jsonl[0] = '\0';
    int n = 1 + (int)rnd(N);
    for (int i = 0; i < n; i++) {
      random_text(texts[i], 40);
      snprintf(paths[i], sizeof paths[i], "%sdir%u/f%d.flac", rnd(4) ? "" : "/", rnd(9), i);
      random_text(voices[i], 6);
      size_t t = strlen(tsv);
      snprintf(tsv + t, 64 * 1024 - t, "%s\t%s%s", paths[i], texts[i], rnd(2) ? "\n" : "\r\n");
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "voice", voices[i]);
      cJSON_AddStringToObject(o, "audio", paths[i]);
      cJSON_AddNumberToObject(o, "rate", (double)rnd(300) / 100.0);
      cJSON_AddStringToObject(o, "text", texts[i]);
      char *line = cJSON_PrintUnformatted(o);
      strcat(jsonl, line);
      strcat(jsonl, "\n");
      cJSON_free(line);
      cJSON_Delete(o);
    }
    kiln_manifest *a = parse_str(tsv, "b"), *b = parse_str(jsonl, "b");
    CHECK(a && b);
    if (!a || !b) break;
    CHECK_EQ_INT(kiln_manifest_count(a), n);
    CHECK_EQ_INT(kiln_manifest_count(b), n);
    for (int i = 0; i < n && i < kiln_manifest_count(a) && i < kiln_manifest_count(b); i++) {
      char want[80];
      snprintf(want, sizeof want, "%s%.63s", paths[i][0] == '/' ? "" : "b/", paths[i]);
      CHECK_EQ_STR(kiln_manifest_audio(a, i), want);
      CHECK_EQ_STR(kiln_manifest_audio(b, i), want);
      CHECK_EQ_STR(kiln_manifest_text(a, i), texts[i]);
      CHECK_EQ_STR(kiln_manifest_text(b, i), texts[i]);
      CHECK_EQ_STR(kiln_manifest_field(b, i, "voice"), voices[i]);
      CHECK(kiln_manifest_field(b, i, "rate") != NULL);
      CHECK_EQ_INT(kiln_manifest_line(b, i), i + 1);
    }
    kiln_manifest_destroy(a);
    kiln_manifest_destroy(b);
  }
  free(tsv);
  free(jsonl);
}

int main(void) {
  test_mini_set();
  test_tsv_details();
  test_jsonl_details();
  test_errors();
  test_random_round_trip();
  return check_report();
}

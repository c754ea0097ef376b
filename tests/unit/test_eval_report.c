/* tests/unit/test_eval_report.c - WER reports (kiln/eval.h) against jiwer.
 *
 * What it is: for each of the 3 hypothesis sets of tests/data/eval_report_cases.json (written by
 * tools/make_eval_refs.py: the mini test set's references, made-up hypotheses with random edits
 * and normalizer-undoable changes, scored by openai-whisper's EnglishTextNormalizer + jiwer 4),
 * a report fed from the mini manifest must give jiwer's normalized texts, per-utterance counts,
 * overall and per-group (synth, voice) corpus WER; the written summary JSON must hold the same
 * numbers, the hypotheses TSV must read back through kiln_manifest_load, and the alignment
 * report's rows and error lists must follow jiwer's alignment. Also: perf/RTF and metrics in the
 * summary, scoring without a normalizer, and the error paths (invalid UTF-8, unknown group,
 * unwritable path: an existing file stays untouched).
 * What it is not: a test of the normalizer or WER alone (test_textnorm.c, test_wer.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "common/test_json.h"
#include "kiln/eval.h"
#include "kiln/manifest.h"
#include "kiln/textnorm.h"

#define CASES_JSON KILN_SOURCE_DIR "/tests/data/eval_report_cases.json"
#define MINI_MANIFEST KILN_SOURCE_DIR "/tests/data/testset-mini/manifest.jsonl"
#define SPELLING_JSON KILN_SHARED_DATA "/whisper/openai-assets/english.json"

static char tmp_dir[] = "/tmp/kiln_eval_XXXXXX";
static const char *group_keys[] = {"synth", "voice"};

static void check_counts(const kiln_wer_counts *c, const cJSON *want, const char *what) {
  int ok = c->hits == (int64_t)num(want, "hits") &&
           c->substitutions == (int64_t)num(want, "substitutions") &&
           c->deletions == (int64_t)num(want, "deletions") &&
           c->insertions == (int64_t)num(want, "insertions");
  CHECK(ok);
  if (!ok) fprintf(stderr, "  %s: kiln H%lld S%lld D%lld I%lld, jiwer H%g S%g D%g I%g\n", what,
                   (long long)c->hits, (long long)c->substitutions, (long long)c->deletions,
                   (long long)c->insertions, num(want, "hits"), num(want, "substitutions"),
                   num(want, "deletions"), num(want, "insertions"));
}

/* The summary's counts object equals jiwer's corpus numbers. */
static void check_summary_counts(const cJSON *got, const cJSON *want) {
  static const char *keys[] = {"utterances", "hits", "substitutions", "deletions", "insertions",
                               "ref_words", "hyp_words"};
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) CHECK_EQ_INT(num(got, keys[k]), num(want, keys[k]));
  CHECK_NEAR(num(got, "wer"), num(want, "wer"), 1e-12);
}

static void check_groups(const kiln_eval_report *r, const cJSON *want_groups, const cJSON *summary) {
  const cJSON *got_groups = cJSON_GetObjectItemCaseSensitive(summary, "groups");
  int n_keys = 0;
  for (const cJSON *key = want_groups->child; key; key = key->next, n_keys++) {
    const cJSON *got_key = cJSON_GetObjectItemCaseSensitive(got_groups, key->string);
    CHECK(got_key != NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(got_key), cJSON_GetArraySize(key));
    for (const cJSON *val = key->child; val; val = val->next) {
      kiln_wer_counts c;
      int64_t n = 0;
      CHECK_OK(kiln_eval_report_totals(r, key->string, val->string, &c, &n));
      CHECK_EQ_INT(n, num(val, "utterances"));
      check_counts(&c, val, val->string);
      CHECK_NEAR(kiln_wer_rate(&c), num(val, "wer"), 1e-12);
      const cJSON *got = cJSON_GetObjectItemCaseSensitive(got_key, val->string);
      CHECK(got != NULL);
      if (got) check_summary_counts(got, val);
    }
  }
  CHECK_EQ_INT(cJSON_GetArraySize(got_groups), n_keys);
}

/* The n-th word of a single-space-separated string. */
static int nth_word(const char *s, int n, const char **start) {
  while (*s == ' ') s++;
  for (int i = 0; i < n; i++) {
    s = strchr(s, ' ');
    if (!s) return 0;
    while (*s == ' ') s++;
  }
  *start = s;
  const char *e = strchr(s, ' ');
  return e ? (int)(e - s) : (int)strlen(s);
}

/* Expected "errors:" line from jiwer's op letters and the normalized words. */
static void expected_errors(const char *ops, const char *ref, const char *hyp, char *out, size_t cap) {
  int ri = 0, hi = 0, first = 1;
  size_t len = (size_t)snprintf(out, cap, "errors:");
  for (const char *p = ops; *p && len < cap; p++) {
    const char *a = "", *b = "";
    int la = *p != 'i' ? nth_word(ref, ri, &a) : 0, lb = *p != 'd' ? nth_word(hyp, hi, &b) : 0;
    if (*p == 's') len += (size_t)snprintf(out + len, cap - len, "%s S %.*s->%.*s", first ? "" : ";", la, a, lb, b);
    if (*p == 'd') len += (size_t)snprintf(out + len, cap - len, "%s D %.*s", first ? "" : ";", la, a);
    if (*p == 'i') len += (size_t)snprintf(out + len, cap - len, "%s I %.*s", first ? "" : ";", lb, b);
    if (*p != '=') first = 0;
    ri += *p != 'i';
    hi += *p != 'd';
  }
  if (first && len < cap) snprintf(out + len, cap - len, " none");
}

/* A REF:/HYP: row (or any string after 5 columns) without its '*' fillers and extra spaces. */
static void row_words(const char *row, char *out, size_t cap) {
  size_t k = 0;
  int space = 1;
  for (const char *p = row + 4; *p && *p != '\n' && k + 1 < cap; p++) {
    if (*p == '*') continue;
    if (*p == ' ') {
      if (!space) out[k++] = ' ';
      space = 1;
      continue;
    }
    out[k++] = *p;
    space = 0;
  }
  while (k > 0 && out[k - 1] == ' ') k--;
  out[k] = '\0';
}

static void check_alignment_file(const char *path, const cJSON *utts, const kiln_manifest *m) {
  char *text = read_text(path);
  CHECK(text != NULL);
  if (!text) return;
  const char *p = text;
  int i = 0;
  for (const cJSON *u = utts->child; u; u = u->next, i++) {
    char want[4096], got[4096], norm[4096];
    snprintf(want, sizeof want, "id: %s\n", kiln_manifest_audio_raw(m, i));
    p = strstr(p, want);
    CHECK(p != NULL);
    if (!p) break;
    const char *ref_row = strstr(p, "\nREF: "), *hyp_row = strstr(p, "\nHYP: ");
    const char *err_row = strstr(p, "\nerrors:");
    if (!ref_row || !hyp_row || !err_row) break;
    const char *ref = cJSON_GetObjectItem(u, "ref_norm")->valuestring;
    const char *hyp = cJSON_GetObjectItem(u, "hyp_norm")->valuestring;
    char padded[4096];
    snprintf(padded, sizeof padded, "     %s", ref);
    row_words(padded, norm, sizeof norm); /* normalized text has no '*' */
    row_words(ref_row + 1, got, sizeof got);
    CHECK_EQ_STR(got, norm);
    snprintf(padded, sizeof padded, "     %s", hyp);
    row_words(padded, norm, sizeof norm); /* normalized text has no '*' */
    row_words(hyp_row + 1, got, sizeof got);
    CHECK_EQ_STR(got, norm);
    expected_errors(cJSON_GetObjectItem(u, "ops")->valuestring, ref, hyp, want, sizeof want);
    const char *end = strchr(err_row + 1, '\n');
    snprintf(got, sizeof got, "%.*s", (int)(end - err_row - 1), err_row + 1);
    CHECK_EQ_STR(got, want);
    p = err_row + 1;
  }
  CHECK_EQ_INT(i, cJSON_GetArraySize(utts));
  free(text);
}

static void check_hypotheses_file(const char *path, const cJSON *hyps, const kiln_manifest *m) {
  kiln_manifest *back = NULL;
  CHECK_OK(kiln_manifest_load(path, &back));
  if (!back) return;
  CHECK_EQ_INT(kiln_manifest_count(back), cJSON_GetArraySize(hyps));
  int i = 0;
  for (const cJSON *h = hyps->child; h && i < kiln_manifest_count(back); h = h->next, i++) {
    CHECK_EQ_STR(kiln_manifest_audio_raw(back, i), kiln_manifest_audio_raw(m, i));
    CHECK_EQ_STR(kiln_manifest_text(back, i), h->valuestring);
  }
  kiln_manifest_destroy(back);
}

static void check_set(const kiln_textnorm *tn, const kiln_manifest *m, const cJSON *set, int s) {
  const cJSON *hyps = cJSON_GetObjectItem(set, "hypotheses"), *utts = cJSON_GetObjectItem(set, "utterances");
  kiln_eval_report *r = NULL;
  CHECK_OK(kiln_eval_report_create(tn, &r));
  if (!r) return;
  int i = 0;
  for (const cJSON *h = hyps->child; h; h = h->next, i++)
    CHECK_OK(kiln_eval_report_add_from_manifest(r, m, i, h->valuestring, group_keys, 2));
  CHECK_EQ_INT(kiln_eval_report_count(r), kiln_manifest_count(m));
  i = 0;
  for (const cJSON *u = utts->child; u; u = u->next, i++) {
    kiln_wer_counts c;
    const char *rn = NULL, *hn = NULL;
    CHECK_OK(kiln_eval_report_utterance(r, i, &c, &rn, &hn));
    CHECK_EQ_STR(rn, cJSON_GetObjectItem(u, "ref_norm")->valuestring);
    CHECK_EQ_STR(hn, cJSON_GetObjectItem(u, "hyp_norm")->valuestring);
    check_counts(&c, u, kiln_manifest_audio_raw(m, i));
  }
  kiln_wer_counts total;
  int64_t n = 0;
  const cJSON *overall = cJSON_GetObjectItem(set, "overall");
  CHECK_OK(kiln_eval_report_totals(r, NULL, NULL, &total, &n));
  CHECK_EQ_INT(n, kiln_manifest_count(m));
  check_counts(&total, overall, "overall");
  CHECK_NEAR(kiln_wer_rate(&total), num(overall, "wer"), 1e-12);

  char summary[256], hyp_tsv[256], align[256];
  snprintf(summary, sizeof summary, "%s/summary%d.json", tmp_dir, s);
  snprintf(hyp_tsv, sizeof hyp_tsv, "%s/hyp%d.tsv", tmp_dir, s);
  snprintf(align, sizeof align, "%s/align%d.txt", tmp_dir, s);
  CHECK_OK(kiln_eval_report_write_summary(r, summary));
  CHECK_OK(kiln_eval_report_write_hypotheses(r, hyp_tsv));
  CHECK_OK(kiln_eval_report_write_alignments(r, align));
  cJSON *sj = read_json(summary);
  if (sj) {
    CHECK_EQ_STR(cJSON_GetObjectItem(sj, "format")->valuestring, "kiln-eval-summary");
    CHECK_EQ_STR(cJSON_GetObjectItem(sj, "normalizer")->valuestring, "whisper-english");
    check_summary_counts(sj, overall);
    check_groups(r, cJSON_GetObjectItem(set, "groups"), sj);
    CHECK(cJSON_GetObjectItem(sj, "perf") == NULL); /* not set */
  }
  cJSON_Delete(sj);
  check_hypotheses_file(hyp_tsv, hyps, m);
  check_alignment_file(align, utts, m);
  kiln_eval_report_destroy(r);
}

static void test_perf_and_metrics(const kiln_textnorm *tn) {
  kiln_eval_report *r = NULL;
  CHECK_OK(kiln_eval_report_create(tn, &r));
  if (!r) return;
  kiln_eval_group g[] = {{"voice", "a"}, {"voice", "b"}, {"synth", "x\ty"}};
  CHECK_OK(kiln_eval_report_add(r, "u\t1", "Hello there, Mr. Smith.", "hello their mister smith", g, 3));
  CHECK_OK(kiln_eval_report_add(r, "u2", "Colour me surprised.", "Color me very surprised!\n", NULL, 0));
  kiln_eval_perf p = kiln_eval_default_perf();
  p.audio_seconds = 8.0;
  p.wall_seconds = 2.0;
  p.peak_host_bytes = 123456789;
  CHECK_OK(kiln_eval_report_set_perf(r, &p));
  CHECK_OK(kiln_eval_report_set_metric(r, "encoder_ms", 1.5));
  CHECK_OK(kiln_eval_report_set_metric(r, "decoder_ms", 7.0));
  CHECK_OK(kiln_eval_report_set_metric(r, "encoder_ms", 2.5)); /* replaces */
  kiln_wer_counts c;
  int64_t n = 0;
  CHECK_OK(kiln_eval_report_totals(r, "voice", "a", &c, &n)); /* first value of a repeated key */
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(c.substitutions, 1);
  CHECK_STATUS(kiln_eval_report_totals(r, "voice", "b", &c, &n), KILN_ERR_NOT_FOUND);
  CHECK_STATUS(kiln_eval_report_totals(r, "nokey", "a", &c, &n), KILN_ERR_NOT_FOUND);
  CHECK_OK(kiln_eval_report_totals(r, NULL, NULL, &c, &n));
  CHECK_EQ_INT(c.ref_words, 7);
  CHECK_EQ_INT(c.insertions, 1); /* "very"; colour/color and punctuation normalize away */
  char summary[256], hyp_tsv[256];
  snprintf(summary, sizeof summary, "%s/perf.json", tmp_dir);
  snprintf(hyp_tsv, sizeof hyp_tsv, "%s/perf_hyp.tsv", tmp_dir);
  CHECK_OK(kiln_eval_report_write_summary(r, summary));
  CHECK_OK(kiln_eval_report_write_hypotheses(r, hyp_tsv));
  cJSON *sj = read_json(summary);
  const cJSON *perf = cJSON_GetObjectItem(sj, "perf"), *metrics = cJSON_GetObjectItem(sj, "metrics");
  CHECK(perf && metrics);
  if (perf && metrics) {
    CHECK_NEAR(num(perf, "rtf"), 0.25, 1e-15);
    CHECK_NEAR(num(perf, "audio_seconds"), 8.0, 0);
    CHECK_NEAR(num(perf, "peak_host_bytes"), 123456789.0, 0);
    CHECK(cJSON_GetObjectItem(perf, "peak_device_bytes") == NULL);
    CHECK_NEAR(num(metrics, "encoder_ms"), 2.5, 0);
    CHECK_NEAR(num(metrics, "decoder_ms"), 7.0, 0);
    CHECK_EQ_INT(cJSON_GetArraySize(metrics), 2);
    CHECK_NEAR(num(sj, "wer"), 2.0 / 7.0, 1e-12);
  }
  cJSON_Delete(sj);
  char *tsv = read_text(hyp_tsv);
  CHECK_EQ_STR(tsv, "u 1\thello their mister smith\nu2\tColor me very surprised! \n");
  free(tsv);

  /* errors leave the report and existing files alone */
  CHECK_STATUS(kiln_eval_report_add(r, "bad", "fine", "bad \xFF utf8", NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK(strstr(kiln_last_error(), "bad") != NULL);
  CHECK_STATUS(kiln_eval_report_add(r, "x", "y", NULL, NULL, 0), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_eval_report_add(r, "x", "y", "z", NULL, 1), KILN_ERR_INVALID_ARG);
  CHECK_EQ_INT(kiln_eval_report_count(r), 2);
  CHECK_STATUS(kiln_eval_report_utterance(r, 2, &c, NULL, NULL), KILN_ERR_INVALID_ARG);
  char blocker[300];
  snprintf(blocker, sizeof blocker, "%s.tmp", summary);
  CHECK(mkdir(blocker, 0700) == 0); /* the writer cannot create summary.tmp */
  char *before = read_text(summary);
  CHECK_STATUS(kiln_eval_report_write_summary(r, summary), KILN_ERR_IO);
  char *after = read_text(summary);
  CHECK_EQ_STR(after, before);
  free(before);
  free(after);
  rmdir(blocker);
  CHECK_STATUS(kiln_eval_report_write_alignments(r, "/nonexistent-dir/a.txt"), KILN_ERR_IO);
  remove(summary);
  remove(hyp_tsv);
  kiln_eval_report_destroy(r);
}

static void test_no_normalizer(void) {
  kiln_eval_report *r = NULL;
  CHECK_OK(kiln_eval_report_create(NULL, &r));
  if (!r) return;
  CHECK_OK(kiln_eval_report_add(r, "a", "Hello, World.", "hello world", NULL, 0));
  kiln_wer_counts c;
  const char *rn = NULL;
  CHECK_OK(kiln_eval_report_utterance(r, 0, &c, &rn, NULL));
  CHECK_EQ_STR(rn, "Hello, World.");
  CHECK_EQ_INT(c.substitutions, 2); /* case and punctuation count without a normalizer */
  char path[256];
  snprintf(path, sizeof path, "%s/raw.json", tmp_dir);
  CHECK_OK(kiln_eval_report_write_summary(r, path));
  cJSON *sj = read_json(path);
  CHECK_EQ_STR(cJSON_GetObjectItem(sj, "normalizer")->valuestring, "none");
  CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sj, "groups")), 0);
  cJSON_Delete(sj);
  remove(path);
  kiln_eval_report_destroy(r);
  kiln_eval_report_destroy(NULL);
}

int main(void) {
  if (!mkdtemp(tmp_dir)) {
    perror("mkdtemp");
    return 1;
  }
  kiln_textnorm *tn = NULL;
  kiln_manifest *m = NULL;
  CHECK_OK(kiln_textnorm_create(SPELLING_JSON, &tn));
  CHECK_OK(kiln_manifest_load(MINI_MANIFEST, &m));
  cJSON *cases = read_json(CASES_JSON);
  if (tn && m && cases) {
    const cJSON *sets = cJSON_GetObjectItem(cases, "sets");
    CHECK_EQ_INT(cJSON_GetArraySize(sets), 3);
    int s = 0;
    for (const cJSON *set = sets ? sets->child : NULL; set; set = set->next, s++) check_set(tn, m, set, s);
    test_perf_and_metrics(tn);
  }
  test_no_normalizer();
  cJSON_Delete(cases);
  kiln_manifest_destroy(m);
  kiln_textnorm_destroy(tn);
  for (int s = 0; s < 3; s++) {
    char p[256];
    const char *names[] = {"summary%d.json", "hyp%d.tsv", "align%d.txt"};
    for (int k = 0; k < 3; k++) {
      char name[64];
      snprintf(name, sizeof name, names[k], s);
      snprintf(p, sizeof p, "%s/%s", tmp_dir, name);
      remove(p);
    }
  }
  rmdir(tmp_dir);
  return check_report();
}

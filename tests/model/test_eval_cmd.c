/* tests/model/test_eval_cmd.c - kiln_eval_run (what `kiln eval` does) with the real Whisper base
 * model on the mini test set, CPU backend, fp32, against transformers + jiwer.
 *
 * What it is: builds CPU fp32 engines from models/whisper-base (scripts/fetch_model.sh), runs
 * the 12 utterances of tests/data/testset-mini/manifest.jsonl (festival, flite and espeak-ng
 * voices; 16 / 22.05 / 44.1 kHz, mono and stereo, noisy and clean) plus one line whose audio file
 * does not exist, and checks against tests/data/eval_mini_whisper_base.json (written by
 * tools/make_eval_mini_ref.py: transformers' greedy transcripts of the same audio and checkpoint,
 * normalized by openai-whisper's EnglishTextNormalizer and scored by jiwer):
 *   - every readable utterance is transcribed, with exactly transformers' text, four utterances
 *     decoded together as one batch (engines built with --max-batch 4);
 *   - the missing file is one per-utterance error (callback + stats), and the run goes on;
 *   - per utterance, kiln's normalized texts and S/D/I counts are jiwer's on the same texts;
 *   - overall and per-group (synth, voice) WER in the report and in the written summary.json equal
 *     jiwer's (so they equal the recorded WER of transformers' decoding);
 *   - the summary's perf: audio seconds = the manifest's durations, RTF = wall / audio, no GPU
 *     memory on the CPU; hypotheses.tsv reads back with kiln_manifest_load.
 * Exits 77 (skipped) when the checkpoint has not been fetched. Takes about a minute on 2 cores.
 * What it is not: a test of the CLI's option parsing, nor of GPU engines.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "common/test_whisper_base.h"
#include "common/test_json.h"
#include "kiln/eval.h"
#include "kiln/kiln.h"
#include "kiln/manifest.h"
#include "kiln/whisper.h"

#define MINI_DIR KILN_SOURCE_DIR "/tests/data/testset-mini"
#define REF_JSON KILN_SOURCE_DIR "/tests/data/eval_mini_whisper_base.json"
#define SPELLING_JSON KILN_SHARED_DATA "/whisper/openai-assets/english.json"
#define ENGINES "eval_cmd_engines"
#define OUT_DIR "eval_cmd_out"
#define MISSING "audio/9999_missing.flac"

static const char *group_keys[] = {"synth", "voice"};

typedef struct seen {
  int64_t ok, failed, calls;
  char failed_audio[256];
} seen;

static void on_utt(int64_t i, int64_t total, const char *audio, kiln_status s, const char *text, void *user) {
  seen *v = user;
  CHECK_EQ_INT(i, v->calls);
  CHECK_EQ_INT(total, 13);
  CHECK(audio != NULL && text != NULL);
  v->calls++;
  if (s == KILN_OK) v->ok++;
  else v->failed++, snprintf(v->failed_audio, sizeof v->failed_audio, "%s", audio);
}

static int mkdir_ok(const char *dir) { return mkdir(dir, 0777) == 0 || errno == EEXIST; }

static const char *str(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : "(missing)";
}

static void check_counts(const kiln_wer_counts *c, const cJSON *want) {
  CHECK_EQ_INT(c->hits, num(want, "hits"));
  CHECK_EQ_INT(c->substitutions, num(want, "substitutions"));
  CHECK_EQ_INT(c->deletions, num(want, "deletions"));
  CHECK_EQ_INT(c->insertions, num(want, "insertions"));
}

/* The mini manifest plus a line whose file does not exist, resolved against the mini folder. */
static kiln_manifest *manifest_with_missing(void) {
  char *s = NULL;
  size_t n = 0;
  CHECK_OK(kiln_read_file(MINI_DIR "/manifest.jsonl", (size_t)1 << 20, &s, &n));
  const char extra[] = "{\"audio\": \"" MISSING "\", \"text\": \"Nobody hears this.\", \"synth\": \"none\"}\n";
  char *all = s ? malloc(n + sizeof extra) : NULL;
  kiln_manifest *m = NULL;
  if (all) { /* after the 5th line: the second batch of 4 has a hole at its second place */
    size_t at = 0;
    for (int lines = 0; at < n && lines < 5; at++) lines += s[at] == '\n';
    memcpy(all, s, at);
    memcpy(all + at, extra, sizeof extra - 1);
    memcpy(all + at + sizeof extra - 1, s + at, n - at);
    CHECK_OK(kiln_manifest_parse(all, n + sizeof extra - 1, MINI_DIR, "mini+missing", &m));
  }
  free(all);
  free(s);
  return m;
}

/* Utterance i of the report against the reference entry (texts, normalized texts, counts). */
static void check_utterances(const kiln_eval_report *r, const cJSON *ref) {
  const cJSON *utts = cJSON_GetObjectItemCaseSensitive(ref, "utterances");
  CHECK_EQ_INT(kiln_eval_report_count(r), cJSON_GetArraySize(utts));
  char *hyps = NULL;
  size_t n = 0;
  CHECK_OK(kiln_read_file(OUT_DIR "/hypotheses.tsv", (size_t)1 << 20, &hyps, &n));
  int64_t i = 0;
  for (const cJSON *u = utts ? utts->child : NULL; u; u = u->next, i++) {
    kiln_wer_counts c;
    const char *rn = NULL, *hn = NULL;
    CHECK_OK(kiln_eval_report_utterance(r, i, &c, &rn, &hn));
    if (!rn) continue;
    check_counts(&c, u);
    CHECK_EQ_STR(rn, str(u, "ref_norm"));
    CHECK_EQ_STR(hn, str(u, "hyp_norm"));
    char line[1024]; /* transformers' exact text, as kiln wrote it */
    snprintf(line, sizeof line, "%s\t%s\n", str(u, "audio"), str(u, "text"));
    CHECK(hyps && strstr(hyps, line) != NULL);
    if (!hyps || !strstr(hyps, line)) fprintf(stderr, "  want in hypotheses.tsv: %s", line);
  }
  free(hyps);
}

/* Overall and group totals of the report and of summary.json against jiwer's. */
static void check_totals(const kiln_eval_report *r, const cJSON *ref, const cJSON *sum) {
  kiln_wer_counts c;
  const cJSON *overall = cJSON_GetObjectItemCaseSensitive(ref, "overall");
  CHECK_OK(kiln_eval_report_totals(r, NULL, NULL, &c, NULL));
  check_counts(&c, overall);
  CHECK_NEAR(kiln_wer_rate(&c), num(overall, "wer"), 1e-12);
  CHECK_NEAR(num(sum, "wer"), num(overall, "wer"), 1e-12);
  CHECK_EQ_INT(num(sum, "ref_words"), num(overall, "ref_words"));
  const cJSON *groups = cJSON_GetObjectItemCaseSensitive(ref, "groups");
  const cJSON *sum_groups = cJSON_GetObjectItemCaseSensitive(sum, "groups");
  int n_values = 0;
  for (const cJSON *k = groups ? groups->child : NULL; k; k = k->next)
    for (const cJSON *v = k->child; v; v = v->next, n_values++) {
      int64_t n = 0;
      CHECK_OK(kiln_eval_report_totals(r, k->string, v->string, &c, &n));
      check_counts(&c, v);
      CHECK_EQ_INT(n, num(v, "utterances"));
      const cJSON *sv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(sum_groups, k->string), v->string);
      CHECK_NEAR(num(sv, "wer"), num(v, "wer"), 1e-12);
    }
  CHECK_EQ_INT(n_values, 3 + 12); /* 3 synthesizers, 12 voices */
  CHECK_STATUS(kiln_eval_report_totals(r, "synth", "none", &c, NULL), KILN_ERR_NOT_FOUND); /* the failed one */
}

static void check_perf(const cJSON *sum, const kiln_eval_run_stats *st, const kiln_manifest *m) {
  double audio = 0;
  for (int64_t i = 0; i < kiln_manifest_count(m); i++) { /* the missing file has no duration */
    const char *d = kiln_manifest_field(m, i, "duration_s");
    if (d) audio += strtod(d, NULL);
  }
  const cJSON *perf = cJSON_GetObjectItemCaseSensitive(sum, "perf");
  CHECK_NEAR(st->audio_seconds, audio, 0.01 * 12);
  CHECK_NEAR(num(perf, "audio_seconds"), st->audio_seconds, 1e-6);
  CHECK(st->wall_seconds > st->frontend_seconds && st->frontend_seconds > 0);
  CHECK_NEAR(num(perf, "rtf"), st->wall_seconds / st->audio_seconds, 1e-6);
  CHECK_EQ_INT(num(perf, "peak_device_bytes"), 0);
  CHECK(num(perf, "peak_host_bytes") > 100e6); /* the fp32 weights alone are ~290 MB */
  const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(sum, "metrics");
  CHECK_EQ_INT(num(metrics, "failed_utterances"), 1);
  CHECK_EQ_INT(num(metrics, "tokens"), st->tokens);
  CHECK(st->tokens > 12 * 5);
  CHECK_EQ_INT(st->truncated, 0);
}

static void write_and_check(const kiln_eval_report *r, const kiln_eval_run_stats *st, const kiln_manifest *m) {
  CHECK_OK(kiln_eval_report_write_hypotheses(r, OUT_DIR "/hypotheses.tsv"));
  CHECK_OK(kiln_eval_report_write_alignments(r, OUT_DIR "/alignments.txt"));
  CHECK_OK(kiln_eval_report_write_summary(r, OUT_DIR "/summary.json"));
  cJSON *ref = read_json(REF_JSON), *sum = read_json(OUT_DIR "/summary.json");
  if (ref && sum) {
    check_utterances(r, ref);
    check_totals(r, ref, sum);
    check_perf(sum, st, m);
  }
  kiln_manifest *back = NULL;
  CHECK_OK(kiln_manifest_load(OUT_DIR "/hypotheses.tsv", &back));
  CHECK_EQ_INT(kiln_manifest_count(back), 12);
  kiln_manifest_destroy(back);
  cJSON_Delete(ref);
  cJSON_Delete(sum);
}

int main(void) {
  WHISPER_BASE_REQUIRE();
  kiln_whisper *w = whisper_base_build_load(ENGINES, 4, 1, KILN_DTYPE_INVALID);
  kiln_textnorm *tn = NULL;
  kiln_eval_report *r = NULL;
  CHECK_OK(kiln_textnorm_create(SPELLING_JSON, &tn));
  CHECK_OK(kiln_eval_report_create(tn, &r));
  kiln_manifest *m = manifest_with_missing();
  CHECK(mkdir_ok(OUT_DIR));
  seen v = {0, 0, 0, ""};
  kiln_eval_run_params p = kiln_eval_run_default_params();
  p.group_keys = group_keys;
  p.n_group_keys = 2;
  p.on_utterance = on_utt;
  p.user_data = &v;
  kiln_eval_run_stats st;
  if (w && m && r) {
    p.batch_size = 0;
    CHECK_STATUS(kiln_eval_run(w, m, &p, r, &st), KILN_ERR_INVALID_ARG);
    p.threads = -1;
    CHECK_STATUS(kiln_eval_run(w, m, &p, r, &st), KILN_ERR_INVALID_ARG);
    /* utterances decoded 4 at a time as one batch (the second with 3, the missing one reported in
     * its place); 3 front-end threads on 2 cores: they run concurrently with each other and with
     * the decoding of the batch before */
    p.batch_size = 4, p.threads = 3;
    CHECK_OK(kiln_eval_run(w, m, &p, r, &st));
    CHECK_EQ_INT(st.transcribed, 12);
    CHECK_EQ_INT(st.failed, 1);
    CHECK_EQ_INT(v.ok, 12);
    CHECK_EQ_INT(v.failed, 1);
    CHECK_EQ_STR(v.failed_audio, MISSING);
    write_and_check(r, &st, m);
  }
  kiln_manifest_destroy(m);
  kiln_eval_report_destroy(r);
  kiln_textnorm_destroy(tn);
  kiln_whisper_destroy(w);
  return check_report();
}

/* src/cli/eval.c - `kiln eval`: a Whisper engine folder over a test-set manifest -> WER, RTF.
 * Thin: kiln_eval_run (kiln/eval.h) transcribes and scores; this file parses options, prints the
 * progress and the table, and names the output files. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/eval.h"

#define EVAL_MAX_KEYS 16

static void eval_help(FILE *f) {
  fprintf(f,
          "usage: kiln eval ENGINE_DIR --manifest FILE [options]\n"
          "\n"
          "Transcribes every utterance of a test-set manifest with the Whisper engines in ENGINE_DIR\n"
          "(`kiln build whisper`; greedy, first 30 s of each file, no timestamps, as kiln transcribe),\n"
          "normalizes reference and transcript with Whisper's English text normalizer and scores them\n"
          "(corpus WER = (S + D + I) / N, as jiwer computes it), overall and per group. A file that\n"
          "cannot be read is reported on stderr and in errors.tsv, left out of the WER, and the others\n"
          "go on (exit status 1 when any failed).\n"
          "\n"
          "Manifest: TSV (`audio-path<TAB>reference`) or JSON lines ({\"audio\": ..., \"text\": ...,\n"
          "other fields}); relative paths are relative to the manifest's folder.\n"
          "\n"
          "Writes into the output folder:\n"
          "  hypotheses.tsv   audio-path<TAB>transcript, one utterance a line\n"
          "  alignments.txt   per utterance: counts, normalized reference and transcript aligned\n"
          "  summary.json     WER with hits/S/D/I/N, per-group WER, RTF, memory, other metrics\n"
          "  errors.tsv       audio-path<TAB>error, only when some utterance failed\n"
          "and prints a table (overall WER, per-group WER, RTF) on stdout.\n"
          "RTF = wall time over audio seconds, audio loading, resampling and mel included (the model\n"
          "load is not). GPU memory (summary perf.peak_device_bytes) is the planned bytes, printed\n"
          "by part before the run: weights, one context block the two engines share, the KV caches\n"
          "and the runtime's buffers (with --stream-encoder-weights the encoder's ring instead of\n"
          "its weights), not measured with cudaMemGetInfo; 0 for CPU engines.\n"
          "\n"
          "options:\n"
          "  --manifest FILE           the test set (required)\n"
          "  --output-dir DIR          where to write the files (default kiln-eval; created when missing)\n"
          "  --normalizer english|none  text normalization before scoring (default english)\n"
          "  --spelling FILE           the English normalizer's British->American spellings (default:\n"
          "                            ENGINE_DIR/normalizer.json, copied from the checkpoint; or\n"
          "                            openai-whisper's whisper/normalizers/english.json)\n"
          "  --group-by KEY[,KEY...]   manifest fields to report WER by (default synth,voice; fields an\n"
          "                            utterance lacks are skipped; TSV manifests have none)\n"
          "  --batch-size N            utterances decoded together as one batch (default 1; at most the\n"
          "                            engines' --max-batch)\n"
          "  --threads N               front-end threads (audio load, resampling, log-mel), which read\n"
          "                            the next batch while one decodes (default: CPUs - 1; results\n"
          "                            do not depend on it). The decoding itself (greedy, no\n"
          "                            timestamps) chooses its tokens on the GPU for CUDA engines and\n"
          "                            has no host threads (kiln transcribe's --decode-threads)\n"
          "  --language CODE           spoken language (default en; multilingual models only)\n"
          "  --stream-encoder-weights [MiB]  keep the encoder's weights in host memory and copy them\n"
          "                            to the GPU layer by layer through a ring of MiB (default: about\n"
          "                            two encoder layers' weights): less GPU memory, some encoder time\n"
          "  --max-text-tokens N       tokens a decoder row holds (default: the model's 448): smaller\n"
          "                            KV caches; a window writes at most N/2 tokens\n"
          "  --device N                GPU (default 0)\n"
          "\n"
          "example:\n"
          "  kiln eval whisper-base.kiln --manifest data/testset/manifest.jsonl --output-dir out/\n");
}

typedef struct eval_opts {
  const char *engine_dir, *manifest, *out_dir, *spelling;
  int normalize;
  char keys_buf[1024];
  const char *keys[EVAL_MAX_KEYS];
  int32_t n_keys;
  kiln_eval_run_params run;
  kiln_whisper_load_params load;
} eval_opts;

static int split_keys(eval_opts *o, const char *list) {
  snprintf(o->keys_buf, sizeof o->keys_buf, "%s", list);
  o->n_keys = 0;
  for (char *t = strtok(o->keys_buf, ","); t; t = strtok(NULL, ",")) {
    if (o->n_keys == EVAL_MAX_KEYS) return fprintf(stderr, "kiln eval: at most %d --group-by keys\n", EVAL_MAX_KEYS), CLI_USAGE;
    o->keys[o->n_keys++] = t;
  }
  return CLI_OK;
}

/* Options and values; returns CLI_OK, CLI_USAGE, or -1 after --help. */
static int parse_opt(eval_opts *o, int argc, char **argv, int *i) {
  const char *v = NULL;
  int64_t n;
  int handled;
  if (cli_stream_encoder_flag("eval", argc, argv, i, &o->load.stream_encoder_bytes, &handled) != CLI_OK) return CLI_USAGE;
  if (handled) return CLI_OK;
  if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) return eval_help(stdout), -1;
  if (cli_flag_value(argc, argv, i, "--manifest", &v)) return (o->manifest = v) ? CLI_OK : CLI_USAGE;
  if (cli_flag_value(argc, argv, i, "--output-dir", &v)) return (o->out_dir = v) ? CLI_OK : CLI_USAGE;
  if (cli_flag_value(argc, argv, i, "--spelling", &v)) return (o->spelling = v) ? CLI_OK : CLI_USAGE;
  if (cli_flag_value(argc, argv, i, "--language", &v)) return (o->run.decode.language = v) ? CLI_OK : CLI_USAGE;
  if (cli_flag_value(argc, argv, i, "--group-by", &v)) return v ? split_keys(o, v) : CLI_USAGE;
  if (cli_flag_value(argc, argv, i, "--normalizer", &v)) {
    if (v && (strcmp(v, "english") == 0 || strcmp(v, "none") == 0)) return o->normalize = v[0] == 'e', CLI_OK;
    return fprintf(stderr, "kiln eval: --normalizer is english or none\n"), CLI_USAGE;
  }
  if (cli_flag_value(argc, argv, i, "--max-text-tokens", &v)) {
    if (cli_parse_int("eval", "--max-text-tokens", v, KILN_WHISPER_MIN_TEXT_TOKENS, 1 << 20, &n)) return CLI_USAGE;
    return o->load.max_text_tokens = (int32_t)n, CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--batch-size", &v)) {
    if (cli_parse_int("eval", "--batch-size", v, 1, 4096, &n)) return CLI_USAGE;
    return o->run.batch_size = (int32_t)n, CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--threads", &v)) {
    if (cli_parse_int("eval", "--threads", v, 1, KILN_EVAL_MAX_THREADS, &n)) return CLI_USAGE;
    return o->run.threads = (int32_t)n, CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--device", &v)) {
    if (cli_parse_int("eval", "--device", v, 0, 1024, &n)) return CLI_USAGE;
    return o->load.device = (int32_t)n, CLI_OK;
  }
  if (argv[*i][0] == '-' && argv[*i][1])
    return fprintf(stderr, "kiln eval: unknown option \"%s\" (kiln eval --help lists them)\n", argv[*i]), CLI_USAGE;
  if (o->engine_dir) return fprintf(stderr, "kiln eval: one engine folder only (got \"%s\" too)\n", argv[*i]), CLI_USAGE;
  o->engine_dir = argv[*i];
  return CLI_OK;
}

static int parse_args(eval_opts *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->out_dir = "kiln-eval";
  o->normalize = 1;
  o->run = kiln_eval_run_default_params();
  o->load = kiln_whisper_default_load_params();
  split_keys(o, "synth,voice");
  for (int i = 1; i < argc; i++) {
    int rc = parse_opt(o, argc, argv, &i);
    if (rc != CLI_OK) return rc;
  }
  if (!o->engine_dir || !o->manifest)
    return fprintf(stderr, "kiln eval: give the engine folder and --manifest FILE (kiln eval --help)\n"), CLI_USAGE;
  o->run.group_keys = o->keys;
  o->run.n_group_keys = o->n_keys;
  return CLI_OK;
}

typedef struct eval_progress {
  FILE *errors; /* errors.tsv, opened at the first failure */
  const char *errors_path;
  int tty;
} eval_progress;

static void on_utterance(int64_t i, int64_t total, const char *audio, kiln_status s, const char *text, void *user) {
  eval_progress *p = user;
  if (s != KILN_OK) {
    if (p->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "kiln eval: %s: %s\n", audio, text);
    if (!p->errors) p->errors = fopen(p->errors_path, "w");
    if (p->errors) fprintf(p->errors, "%s\t%s\n", audio, text);
  }
  if (p->tty) {
    fprintf(stderr, "\r\033[K  %lld/%lld %s", (long long)(i + 1), (long long)total, audio);
    if (i + 1 == total) fprintf(stderr, "\r\033[K");
    fflush(stderr);
  }
}

static void print_row(const kiln_eval_report *r, const char *key, const char *value) {
  kiln_wer_counts c;
  int64_t n = 0;
  if (kiln_eval_report_totals(r, key, value, &c, &n) != KILN_OK) return;
  char name[160];
  snprintf(name, sizeof name, "%s%s%s", key ? key : "overall", key ? "=" : "", key ? value : "");
  printf("  %-36s %6lld %7lld %8.2f%%  (S %lld, D %lld, I %lld)\n", name, (long long)n, (long long)c.ref_words,
         100.0 * kiln_wer_rate(&c), (long long)c.substitutions, (long long)c.deletions, (long long)c.insertions);
}

/* A group value printed already? (values are taken from the manifest in order of appearance) */
static int seen_before(const kiln_manifest *m, int64_t i, const char *key, const char *value) {
  for (int64_t j = 0; j < i; j++) {
    const char *v = kiln_manifest_field(m, j, key);
    if (v && strcmp(v, value) == 0) return 1;
  }
  return 0;
}

static void print_table(const eval_opts *o, const kiln_manifest *m, const kiln_eval_report *r,
                        const kiln_eval_run_stats *st) {
  printf("%-38s %6s %7s %9s\n", "kiln eval", "utts", "words", "WER");
  print_row(r, NULL, NULL);
  for (int32_t k = 0; k < o->n_keys; k++)
    for (int64_t i = 0; i < kiln_manifest_count(m); i++) {
      const char *v = kiln_manifest_field(m, i, o->keys[k]);
      if (v && !seen_before(m, i, o->keys[k], v)) print_row(r, o->keys[k], v);
    }
  printf("%lld transcribed, %lld failed; %.1f s of audio in %.2f s: RTF %.4f (front end %.2f s on worker threads, "
         "%.2f s of it waited for)\n",
         (long long)st->transcribed, (long long)st->failed, st->audio_seconds, st->wall_seconds,
         st->audio_seconds > 0 ? st->wall_seconds / st->audio_seconds : 0.0, st->frontend_seconds,
         st->frontend_wait_seconds);
  printf("wrote %s/{hypotheses.tsv, alignments.txt, summary.json%s}\n", o->out_dir, st->failed ? ", errors.tsv" : "");
}

static int write_outputs(const eval_opts *o, const kiln_eval_report *r) {
  char path[4096];
  snprintf(path, sizeof path, "%s/hypotheses.tsv", o->out_dir);
  kiln_status s = kiln_eval_report_write_hypotheses(r, path);
  if (s == KILN_OK) snprintf(path, sizeof path, "%s/alignments.txt", o->out_dir), s = kiln_eval_report_write_alignments(r, path);
  if (s == KILN_OK) snprintf(path, sizeof path, "%s/summary.json", o->out_dir), s = kiln_eval_report_write_summary(r, path);
  return s == KILN_OK ? CLI_OK : cli_fail("eval", path, s);
}

/* Loads the model and runs the test set; the report is filled on success. */
static int evaluate(eval_opts *o, const kiln_manifest *m, kiln_eval_report *r) {
  char errors_path[4096];
  snprintf(errors_path, sizeof errors_path, "%s/errors.tsv", o->out_dir);
  remove(errors_path); /* a stale one from an earlier run would mislead */
  eval_progress prog = {NULL, errors_path, isatty(2)};
  o->run.on_utterance = on_utterance;
  o->run.user_data = &prog;
  kiln_whisper *w = NULL;
  kiln_status s = kiln_whisper_load(o->engine_dir, &o->load, &w);
  if (s != KILN_OK) return cli_fail("eval", o->engine_dir, s);
  cli_print_whisper_memory("eval", w);
  kiln_eval_run_stats st;
  s = kiln_eval_run(w, m, &o->run, r, &st);
  kiln_whisper_destroy(w);
  if (prog.errors) fclose(prog.errors);
  if (s != KILN_OK) return cli_fail("eval", o->manifest, s);
  int rc = write_outputs(o, r);
  if (rc == CLI_OK) print_table(o, m, r, &st);
  return rc != CLI_OK ? rc : st.failed ? CLI_FAIL : CLI_OK;
}

static int run_eval(eval_opts *o, const kiln_manifest *m, const kiln_textnorm *tn) {
  kiln_eval_report *r = NULL;
  kiln_status s = kiln_eval_report_create(tn, &r);
  if (s != KILN_OK) return cli_fail("eval", "creating the report", s);
  int rc = evaluate(o, m, r);
  kiln_eval_report_destroy(r);
  return rc;
}

int cli_eval(int argc, char **argv) {
  eval_opts o;
  int rc = parse_args(&o, argc, argv);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  if (mkdir(o.out_dir, 0777) != 0 && errno != EEXIST)
    return fprintf(stderr, "kiln eval: cannot create %s: %s\n", o.out_dir, strerror(errno)), CLI_FAIL;
  char spelling[4096];
  snprintf(spelling, sizeof spelling, "%s/normalizer.json", o.engine_dir);
  if (o.spelling) snprintf(spelling, sizeof spelling, "%s", o.spelling);
  kiln_textnorm *tn = NULL;
  kiln_manifest *m = NULL;
  kiln_status s = o.normalize ? kiln_textnorm_create(spelling, &tn) : KILN_OK;
  if (s != KILN_OK) return cli_fail("eval", "the English normalizer (--spelling FILE, or --normalizer none)", s);
  s = kiln_manifest_load(o.manifest, &m);
  rc = s == KILN_OK ? run_eval(&o, m, tn) : cli_fail("eval", o.manifest, s);
  kiln_manifest_destroy(m);
  kiln_textnorm_destroy(tn);
  return rc;
}

/* src/cli/whisper.c - `kiln build whisper` (checkpoint folder -> engine folder) and
 * `kiln transcribe` (audio files -> text, greedy). Thin: the library (kiln/whisper.h) does the
 * work; this file parses options, reads audio and prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/audio.h"
#include "kiln/whisper.h"

static void build_whisper_help(FILE *f) {
  fprintf(f,
          "usage: kiln build whisper --checkpoint DIR [options] -o OUT_DIR\n"
          "\n"
          "Builds the Whisper encoder and decoder engines from a Hugging Face checkpoint folder\n"
          "(config.json, model.safetensors, tokenizer files) into OUT_DIR, with a manifest\n"
          "(whisper.json) and the tokenizer files: what `kiln transcribe OUT_DIR` needs.\n"
          "\n"
          "options:\n"
          "  --checkpoint DIR        the checkpoint folder (required)\n"
          "  -o, --output DIR        the engine folder to write (required; created when missing)\n"
          "  --dtype fp32|fp16|bf16  compute precision (default fp32)\n"
          "  --max-batch N           largest batch the engines take (default 1)\n"
          "  --target cuda|cpu       where the engines will run (default: cuda if kiln has CUDA)\n"
          "  --device N              GPU to build for (default 0)\n"
          "  --timing-cache FILE     reuse and update tactic timings\n"
          "\n"
          "example:\n"
          "  kiln build whisper --checkpoint whisper-base/ --dtype fp16 -o whisper-base.kiln\n");
}

int cli_build_whisper(int argc, char **argv) {
  kiln_whisper_build_params p = kiln_whisper_build_default_params();
  const char *ckpt = NULL, *out = NULL, *v = NULL;
  int64_t n;
  for (int i = 1; i < argc; i++) {
    int handled;
    int rc = cli_common_flag("build whisper", argc, argv, &i, &handled);
    if (rc != CLI_OK) return rc;
    if (handled) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      build_whisper_help(stdout);
      return CLI_OK;
    } else if (cli_flag_value(argc, argv, &i, "--checkpoint", &v)) {
      if (!(ckpt = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "-o", &v) || cli_flag_value(argc, argv, &i, "--output", &v)) {
      if (!(out = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--dtype", &v)) {
      p.precision = kiln_dtype_from_name(v);
      if (!kiln_dtype_is_float(p.precision)) return fprintf(stderr, "kiln build whisper: --dtype is fp32, fp16 or bf16\n"), CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--max-batch", &v)) {
      if (cli_parse_int("build whisper", "--max-batch", v, 1, 4096, &n)) return CLI_USAGE;
      p.max_batch = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--target", &v)) {
      if (v && strcmp(v, "cpu") == 0) p.target = KILN_TARGET_CPU;
      else if (v && strcmp(v, "cuda") == 0) p.target = KILN_TARGET_CUDA;
      else return fprintf(stderr, "kiln build whisper: --target is cuda or cpu\n"), CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("build whisper", "--device", v, 0, 1024, &n)) return CLI_USAGE;
      p.device = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--timing-cache", &v)) {
      if (!(p.timing_cache = v)) return CLI_USAGE;
    } else {
      fprintf(stderr, "kiln build whisper: unknown option \"%s\" (kiln build whisper --help lists them)\n", argv[i]);
      return CLI_USAGE;
    }
  }
  if (!ckpt || !out)
    return fprintf(stderr, "kiln build whisper: --checkpoint DIR and -o OUT_DIR are required\n"), CLI_USAGE;
  p.progress = cli_print_progress;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  kiln_status s = kiln_whisper_build(ckpt, &p, out);
  if (s != KILN_OK) return cli_fail("build whisper", ckpt, s);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  fprintf(stderr, "kiln build whisper: wrote %s (encoder.engine, decoder.engine, whisper.json) in %.1f s\n", out,
          (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  return CLI_OK;
}

static void transcribe_help(FILE *f) {
  fprintf(f,
          "usage: kiln transcribe ENGINE_DIR FILE... [options]\n"
          "\n"
          "Transcribes each audio file (WAV, FLAC, OGG, ...; resampled to 16 kHz mono) with the Whisper\n"
          "engines in ENGINE_DIR (from `kiln build whisper`): greedy decoding of the first 30 s, no\n"
          "timestamps. Prints the text of each file (\"FILE: text\" when there are several); a file\n"
          "that fails is reported and the others go on. A summary (audio seconds, wall time, real-time\n"
          "factor) goes to stderr.\n"
          "\n"
          "options:\n"
          "  --language CODE     spoken language (default en; multilingual models only)\n"
          "  --translate         translate to English instead of transcribing\n"
          "  --tokens            also print the sampled token ids (a line after the text)\n"
          "  --device N          GPU (default 0)\n");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One file: audio -> log-mel -> text. *seconds receives the audio length. */
static kiln_status transcribe_file(kiln_whisper *w, const char *path, const kiln_whisper_decode_params *dp, int many,
                                   int tokens, double *seconds) {
  float *pcm = NULL;
  int64_t n = 0;
  int32_t n_mels = kiln_whisper_get_config(w)->n_mels;
  kiln_status s = kiln_audio_load(path, KILN_WHISPER_SAMPLE_RATE, &pcm, &n);
  if (s != KILN_OK) return s;
  *seconds = (double)n / KILN_WHISPER_SAMPLE_RATE;
  if (n > KILN_WHISPER_CHUNK_SAMPLES)
    fprintf(stderr, "kiln transcribe: %s: %.1f s long; only the first 30 s are transcribed (long-form is not done yet)\n",
            path, *seconds);
  float *mel = malloc(sizeof(float) * (size_t)n_mels * KILN_WHISPER_CHUNK_FRAMES);
  kiln_whisper_result *r = NULL;
  s = mel ? kiln_mel_compute_window(pcm, n, n_mels, mel) : KILN_ERR_OUT_OF_MEMORY;
  kiln_audio_free(pcm);
  if (s == KILN_OK) s = kiln_whisper_transcribe(w, mel, dp, &r);
  free(mel);
  if (s != KILN_OK) return s;
  const char *text = r->text[0] == ' ' ? r->text + 1 : r->text;
  if (many) printf("%s: %s\n", path, text);
  else printf("%s\n", text);
  for (int32_t i = 0; tokens && i < r->n_tokens; i++) printf("%d%c", r->tokens[i], i + 1 < r->n_tokens ? ' ' : '\n');
  fflush(stdout);
  kiln_whisper_result_free(r);
  return KILN_OK;
}

int cli_transcribe(int argc, char **argv) {
  kiln_whisper_decode_params dp = kiln_whisper_default_decode_params();
  kiln_whisper_load_params lp = kiln_whisper_default_load_params();
  const char *dir = NULL, *v = NULL, **files = calloc((size_t)argc + 1, sizeof *files);
  int n_files = 0, tokens = 0;
  int64_t n;
  if (!files) return CLI_FAIL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      transcribe_help(stdout);
      free(files);
      return CLI_OK;
    } else if (cli_flag_value(argc, argv, &i, "--language", &v)) {
      if (!(dp.language = v)) return free(files), CLI_USAGE;
    } else if (strcmp(argv[i], "--translate") == 0) {
      dp.translate = 1;
    } else if (strcmp(argv[i], "--tokens") == 0) {
      tokens = 1;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("transcribe", "--device", v, 0, 1024, &n)) return free(files), CLI_USAGE;
      lp.device = (int32_t)n;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "kiln transcribe: unknown option \"%s\" (kiln transcribe --help lists them)\n", argv[i]);
      return free(files), CLI_USAGE;
    } else if (!dir) {
      dir = argv[i];
    } else {
      files[n_files++] = argv[i];
    }
  }
  if (!dir || !n_files) {
    fprintf(stderr, "kiln transcribe: give the engine folder and at least one audio file\n");
    return free(files), CLI_USAGE;
  }
  double t0 = now_s(), audio = 0;
  kiln_whisper *w = NULL;
  kiln_status s = kiln_whisper_load(dir, &lp, &w);
  if (s != KILN_OK) return free(files), cli_fail("transcribe", dir, s);
  double t1 = now_s();
  int failed = 0;
  for (int i = 0; i < n_files; i++) {
    double sec = 0;
    s = transcribe_file(w, files[i], &dp, n_files > 1, tokens, &sec);
    if (s != KILN_OK) {
      fprintf(stderr, "kiln transcribe: %s: %s\n", files[i], kiln_last_error());
      failed++;
      continue;
    }
    audio += sec;
  }
  double t2 = now_s();
  fprintf(stderr, "kiln transcribe: %d of %d files, %.1f s of audio in %.2f s (load %.2f s): RTF %.4f\n",
          n_files - failed, n_files, audio, t2 - t1, t1 - t0, audio > 0 ? (t2 - t1) / audio : 0.0);
  kiln_whisper_destroy(w);
  free(files);
  return failed ? CLI_FAIL : CLI_OK;
}

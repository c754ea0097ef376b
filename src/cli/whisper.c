/* src/cli/whisper.c - `kiln build whisper` (checkpoint folder -> engine folder) and
 * `kiln transcribe` (audio files -> transcripts as openai-whisper's transcribe(), and its output
 * files). Thin: the library (kiln/whisper.h) does the work; this file parses options, reads
 * audio, prints and writes files. */
#include <math.h>
#include <stdint.h>
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
          "  --max-batch N           windows decoded together (default 1; kiln transcribe --batch-size)\n"
          "  --max-beam K            beams (or best-of samples) per window decoded as a batch (default 1);\n"
          "                          the decoder keeps max-batch x max-beam rows of KV cache\n"
          "  --target cuda|cpu       where the engines will run (default: cuda if kiln has CUDA)\n"
          "  --device N              GPU to build for (default 0)\n"
          "  --timing-cache FILE     reuse and update tactic timings\n"
          "  --weight-only none|int8|int4  keep the linear layers' weights quantized (default none);\n"
          "                          the output projection (tied to the token embedding) and the\n"
          "                          convolutions stay in --dtype\n"
          "  --group-size 64|128     int4 weights per scale along K (default 64)\n"
          "  --keep-float PATTERNS|none  with --weight-only: linear layers whose weight name matches one\n"
          "                          of these comma-separated shell patterns stay in --dtype, e.g.\n"
          "                          'model.decoder.layers.5.*' (names as in the checkpoint; the fused\n"
          "                          self-attention projection is LAYER.self_attn.qkv_proj.weight);\n"
          "                          default with int4: '" KILN_WHISPER_KEEP_FLOAT_INT4 "' (the first\n"
          "                          encoder layer, the most sensitive), with int8: none\n"
          "  --kv-cache int8|DTYPE   the KV cache (self-attention caches, cross-attention keys/values):\n"
          "                          int8 codes with one scale per cached vector (max|x| / 127, computed\n"
          "                          as it is written; about half the memory of fp16), or the --dtype\n"
          "                          (default)\n"
          "\n"
          "example:\n"
          "  kiln build whisper --checkpoint whisper-base/ --dtype fp16 -o whisper-base.kiln\n"
          "  kiln build whisper --checkpoint whisper-base/ --dtype fp16 --weight-only int8 -o whisper-base-int8.kiln\n"
          "  kiln build whisper --checkpoint whisper-base/ --dtype fp16 --kv-cache int8 -o whisper-base-kv8.kiln\n");
}

int cli_build_whisper(int argc, char **argv) {
  kiln_whisper_build_params p = kiln_whisper_build_default_params();
  const char *ckpt = NULL, *out = NULL, *v = NULL;
  int64_t n;
  for (int i = 1; i < argc; i++) {
    int handled;
    int rc = cli_common_flag("build whisper", argc, argv, &i, &handled);
    if (rc == CLI_OK && !handled)
      rc = cli_weight_only_flag("build whisper", argc, argv, &i, &p.weight_only, &p.group_size, &p.keep_float, &handled);
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
    } else if (cli_flag_value(argc, argv, &i, "--max-beam", &v)) {
      if (cli_parse_int("build whisper", "--max-beam", v, 1, 64, &n)) return CLI_USAGE;
      p.max_beams = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--target", &v)) {
      if (v && strcmp(v, "cpu") == 0) p.target = KILN_TARGET_CPU;
      else if (v && strcmp(v, "cuda") == 0) p.target = KILN_TARGET_CUDA;
      else return fprintf(stderr, "kiln build whisper: --target is cuda or cpu\n"), CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("build whisper", "--device", v, 0, 1024, &n)) return CLI_USAGE;
      p.device = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--timing-cache", &v)) {
      if (!(p.timing_cache = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--kv-cache", &v)) {
      p.kv_cache = v ? kiln_dtype_from_name(v) : KILN_DTYPE_INVALID;
      if (p.kv_cache != KILN_DTYPE_INT8 && !kiln_dtype_is_float(p.kv_cache))
        return fprintf(stderr, "kiln build whisper: --kv-cache is int8 or the --dtype (fp32, fp16, bf16)\n"), CLI_USAGE;
    } else {
      fprintf(stderr, "kiln build whisper: unknown option \"%s\" (kiln build whisper --help lists them)\n", argv[i]);
      return CLI_USAGE;
    }
  }
  if (!ckpt || !out)
    return fprintf(stderr, "kiln build whisper: --checkpoint DIR and -o OUT_DIR are required\n"), CLI_USAGE;
  if (kiln_dtype_is_float(p.kv_cache) && p.kv_cache != p.precision)
    return fprintf(stderr, "kiln build whisper: --kv-cache %s with --dtype %s: a float KV cache is kept in the engines' "
                           "precision; use --kv-cache int8 or %s\n",
                   kiln_dtype_name(p.kv_cache), kiln_dtype_name(p.precision), kiln_dtype_name(p.precision)),
           CLI_USAGE;
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
          "engines in ENGINE_DIR (from `kiln build whisper`) as openai-whisper's transcribe() does: the\n"
          "whole file in 30 s windows, timestamps, temperature fallback, the previous text as the prompt.\n"
          "Prints the text of each file (\"FILE: text\" when there are several, in the order given); with\n"
          "--output-format the transcripts are also written to --output-dir as FILE_BASENAME.FORMAT. A\n"
          "file that fails is reported and the others go on. Before the first file, the planned GPU\n"
          "memory by part (weights, activations, KV caches, buffers: all of it allocated at load) goes\n"
          "to stderr; after the last, a summary (audio seconds, wall time, real-time factor).\n"
          "Several files are decoded together: up to --batch-size files at once, one 30 s window each,\n"
          "their windows stepped as one decoder batch; when a file's window ends, its next window (or the\n"
          "next file) takes the place while the others go on. Each file's output is the same as alone\n"
          "with fp32 engines; in fp16/bf16 the GPU kernels chosen for each batch size round\n"
          "differently, so a near-tie or a window sampled by the fallback may go another way.\n"
          "A window takes R = max(--beam-size, --best-of) decoder rows when it may beam or sample (the\n"
          "fallback samples at temperatures above 0), and engines built with --max-batch N --max-beam K\n"
          "have N x K rows: min(N, N x K / R) windows go together (build with --max-beam 5 for the\n"
          "defaults; with fewer rows than R, one window at a time and its rows take turns).\n"
          "\n"
          "options:\n"
          "  --language CODE|auto  spoken language (default auto: detected from the first 30 s;\n"
          "                        English-only models always use en)\n"
          "  --task transcribe|translate   (default transcribe; --translate is the same as translate)\n"
          "  --beam-size N         beam search with N beams at temperature 0 (default: greedy)\n"
          "  --best-of N           samples per window at temperatures above 0 (default 5)\n"
          "  --temperature T       first temperature (default 0); the fallback adds\n"
          "  --temperature-increment-on-fallback X   (default 0.2; 0: no fallback) up to 1.0\n"
          "  --no-timestamps       decode without timestamp tokens (one segment per window)\n"
          "  --initial-prompt TEXT text to condition the first window on\n"
          "  --no-condition        do not use the previous window's text as the prompt\n"
          "  --seed N              sampling seed (default 0)\n"
          "  --output-format txt|srt|vtt|json|tsv|all   also write these files\n"
          "  --output-dir DIR      where to write them (default .)\n"
          "  --tokens              also print the token ids of every segment (a line after the text)\n"
          "  --batch-size N        files decoded together (default: the engines' --max-batch; 1: one\n"
          "                        file at a time)\n"
          "  --cpu-mel             compute the log-mel on the CPU (default: on the GPU for CUDA engines)\n"
          "  --decode-threads N    threads for the host side of each decoding step (the logits of every\n"
          "                        decoder row converted to fp32, the logit filters, the choice of the\n"
          "                        next tokens) while the GPU waits; a step takes one thread per two\n"
          "                        rows at most (default: $KILN_DECODE_THREADS, else min(4, CPUs - 1);\n"
          "                        the transcripts do not depend on it)\n"
          "  --stream-encoder-weights [MiB]  keep the encoder's weights in host memory and copy them to\n"
          "                        the GPU layer by layer, through a ring of MiB (default: about two\n"
          "                        encoder layers' weights), while the layers before compute: less GPU\n"
          "                        memory (the ring instead of the encoder's weights) for some encoder\n"
          "                        time. The decoder's weights stay on the GPU\n"
          "  --max-text-tokens N   tokens a window's decoder row holds, prompt and text together (default:\n"
          "                        the model's 448): KV caches of N tokens, so less GPU memory; a prompt\n"
          "                        keeps its last N/2-1 tokens and a window writes at most N/2\n"
          "  --device N            GPU (default 0)\n");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct out_opts {
  int formats; /* bit per kiln_whisper_format */
  const char *dir;
  int many, tokens;
} out_opts;

static kiln_status write_outputs(const kiln_whisper_transcript *t, const char *path, const out_opts *oo) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const char *dot = strrchr(base, '.');
  int len = (int)(dot && dot != base ? (size_t)(dot - base) : strlen(base));
  for (int f = 0; f < KILN_WHISPER_FORMAT_COUNT; f++) {
    if (!(oo->formats & (1 << f))) continue;
    char name[4096], *text = NULL;
    snprintf(name, sizeof name, "%s/%.*s.%s", oo->dir, len, base, kiln_whisper_format_name((kiln_whisper_format)f));
    kiln_status s = kiln_whisper_transcript_format(t, (kiln_whisper_format)f, &text);
    if (s != KILN_OK) return s;
    FILE *fp = fopen(name, "wb");
    int ok = fp && fputs(text, fp) >= 0;
    if (fp && fclose(fp) != 0) ok = 0;
    free(text);
    if (!ok) return fprintf(stderr, "kiln transcribe: cannot write %s (does --output-dir exist?)\n", name), KILN_ERR_IO;
  }
  return KILN_OK;
}

/* kiln_whisper_transcribe_files' callbacks: audio from the files, transcripts printed and
 * written in file order (a finished file waits for the ones before it). */
typedef struct cli_file {
  double seconds;               /* audio length */
  int finished;
  kiln_status status;
  kiln_whisper_transcript *t;   /* finished, not printed yet */
  char *error;                  /* the message of a failed file */
} cli_file;

typedef struct cli_files {
  const char **paths;
  const out_opts *oo;
  cli_file *f;
  int n, printed, failed;
  double audio;                 /* seconds of the files transcribed */
} cli_files;

static kiln_status cli_load(void *user, int64_t i, float **samples, int64_t *n) {
  cli_files *c = user;
  kiln_status s = kiln_audio_load(c->paths[i], KILN_WHISPER_SAMPLE_RATE, samples, n);
  if (s != KILN_OK) return s;
  c->f[i].seconds = (double)*n / KILN_WHISPER_SAMPLE_RATE;
  return KILN_OK;
}

static void cli_unload(void *user, float *samples) {
  (void)user;
  kiln_audio_free(samples);
}

static void print_file(cli_files *c, int i) {
  const out_opts *oo = c->oo;
  cli_file *f = &c->f[i];
  kiln_status s = f->status;
  if (s == KILN_OK) {
    const kiln_whisper_transcript *t = f->t;
    const char *text = t->text[0] == ' ' ? t->text + 1 : t->text;
    if (oo->many) printf("%s: %s\n", c->paths[i], text);
    else printf("%s\n", text);
    for (int32_t k = 0, first = 1; oo->tokens && k < t->n_segments; k++)
      for (int32_t m = 0; m < t->segments[k].n_tokens; m++, first = 0) printf("%s%d", first ? "" : " ", t->segments[k].tokens[m]);
    if (oo->tokens) printf("\n");
    fflush(stdout);
    s = write_outputs(t, c->paths[i], oo);
    if (s == KILN_OK) c->audio += f->seconds;
  }
  if (s != KILN_OK) {
    fprintf(stderr, "kiln transcribe: %s: %s\n", c->paths[i], f->error ? f->error : kiln_last_error());
    c->failed++;
  }
  kiln_whisper_transcript_free(f->t);
  f->t = NULL;
}

static void cli_done(void *user, int64_t i, kiln_status s, kiln_whisper_transcript *t) {
  cli_files *c = user;
  c->f[i].finished = 1, c->f[i].status = s, c->f[i].t = t;
  if (s != KILN_OK) c->f[i].error = strdup(kiln_last_error());
  while (c->printed < c->n && c->f[c->printed].finished) print_file(c, c->printed++);
}

static int parse_double(const char *flag, const char *v, double lo, double hi, double *out) {
  char *end = NULL;
  double x = v ? strtod(v, &end) : 0;
  if (!v || end == v || *end || !(x >= lo && x <= hi))
    return fprintf(stderr, "kiln transcribe: %s takes a number from %g to %g\n", flag, lo, hi), 1;
  *out = x;
  return 0;
}

/* openai-whisper's CLI: np.arange(temperature, 1.0 + 1e-6, increment). */
static void set_temperatures(kiln_whisper_options *o, double t0, double inc) {
  int n = inc > 0 ? (int)ceil((1.0 + 1e-6 - t0) / inc) : 1;
  if (n < 1) n = 1;
  if (n > KILN_WHISPER_MAX_TEMPERATURES) n = KILN_WHISPER_MAX_TEMPERATURES;
  for (int i = 0; i < n; i++) o->temperatures[i] = t0 + i * inc;
  o->n_temperatures = n;
}

static int parse_transcribe(int argc, char **argv, kiln_whisper_options *o, kiln_whisper_load_params *lp, out_opts *oo,
                            const char **dir, const char **files, int *n_files) {
  const char *v = NULL;
  int64_t n;
  double t0 = 0.0, inc = 0.2;
  for (int i = 1; i < argc; i++) {
    int handled;
    if (cli_stream_encoder_flag("transcribe", argc, argv, &i, &lp->stream_encoder_bytes, &handled) != CLI_OK) return CLI_USAGE;
    if (handled) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      transcribe_help(stdout);
      return -1;
    } else if (cli_flag_value(argc, argv, &i, "--language", &v)) {
      if (!v) return CLI_USAGE;
      o->language = strcmp(v, "auto") == 0 ? NULL : v;
    } else if (cli_flag_value(argc, argv, &i, "--task", &v)) {
      if (!v || (strcmp(v, "transcribe") != 0 && strcmp(v, "translate") != 0))
        return fprintf(stderr, "kiln transcribe: --task is transcribe or translate\n"), CLI_USAGE;
      o->translate = strcmp(v, "translate") == 0;
    } else if (strcmp(argv[i], "--translate") == 0) {
      o->translate = 1;
    } else if (cli_flag_value(argc, argv, &i, "--beam-size", &v)) {
      if (cli_parse_int("transcribe", "--beam-size", v, 1, 63, &n)) return CLI_USAGE;
      o->beam_size = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--best-of", &v)) {
      if (cli_parse_int("transcribe", "--best-of", v, 1, 64, &n)) return CLI_USAGE;
      o->best_of = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--temperature", &v)) {
      if (parse_double("--temperature", v, 0, 10, &t0)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--temperature-increment-on-fallback", &v)) {
      if (parse_double("--temperature-increment-on-fallback", v, 0, 1, &inc)) return CLI_USAGE;
    } else if (strcmp(argv[i], "--no-timestamps") == 0) {
      o->without_timestamps = 1;
    } else if (strcmp(argv[i], "--no-condition") == 0) {
      o->condition_on_previous_text = 0;
    } else if (cli_flag_value(argc, argv, &i, "--initial-prompt", &v)) {
      if (!(o->initial_prompt = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--seed", &v)) {
      if (cli_parse_int("transcribe", "--seed", v, 0, INT64_MAX, &n)) return CLI_USAGE;
      o->seed = (uint64_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--output-format", &v)) {
      int f = kiln_whisper_format_from_name(v);
      if (v && strcmp(v, "all") == 0) oo->formats = (1 << KILN_WHISPER_FORMAT_COUNT) - 1;
      else if (f < 0) return fprintf(stderr, "kiln transcribe: --output-format is txt, srt, vtt, json, tsv or all\n"), CLI_USAGE;
      else oo->formats |= 1 << f;
    } else if (cli_flag_value(argc, argv, &i, "--output-dir", &v)) {
      if (!(oo->dir = v)) return CLI_USAGE;
    } else if (strcmp(argv[i], "--tokens") == 0) {
      oo->tokens = 1;
    } else if (cli_flag_value(argc, argv, &i, "--batch-size", &v)) {
      if (cli_parse_int("transcribe", "--batch-size", v, 1, 4096, &n)) return CLI_USAGE;
      o->batch_size = (int32_t)n;
    } else if (strcmp(argv[i], "--cpu-mel") == 0) {
      o->cpu_mel = 1;
    } else if (cli_flag_value(argc, argv, &i, "--decode-threads", &v)) {
      if (cli_parse_int("transcribe", "--decode-threads", v, 1, KILN_WHISPER_MAX_DECODE_THREADS, &n)) return CLI_USAGE;
      lp->decode_threads = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--max-text-tokens", &v)) {
      if (cli_parse_int("transcribe", "--max-text-tokens", v, KILN_WHISPER_MIN_TEXT_TOKENS, 1 << 20, &n)) return CLI_USAGE;
      lp->max_text_tokens = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("transcribe", "--device", v, 0, 1024, &n)) return CLI_USAGE;
      lp->device = (int32_t)n;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "kiln transcribe: unknown option \"%s\" (kiln transcribe --help lists them)\n", argv[i]);
      return CLI_USAGE;
    } else if (!*dir) {
      *dir = argv[i];
    } else {
      files[(*n_files)++] = argv[i];
    }
  }
  set_temperatures(o, t0, inc);
  return CLI_OK;
}

int cli_transcribe(int argc, char **argv) {
  kiln_whisper_options o = kiln_whisper_default_options();
  kiln_whisper_load_params lp = kiln_whisper_default_load_params();
  out_opts oo = {0, ".", 0, 0};
  const char *dir = NULL, **files = calloc((size_t)argc + 1, sizeof *files);
  int n_files = 0;
  if (!files) return CLI_FAIL;
  int rc = parse_transcribe(argc, argv, &o, &lp, &oo, &dir, files, &n_files);
  if (rc != CLI_OK) return free(files), rc < 0 ? CLI_OK : rc;
  if (!dir || !n_files) {
    fprintf(stderr, "kiln transcribe: give the engine folder and at least one audio file\n");
    return free(files), CLI_USAGE;
  }
  oo.many = n_files > 1;
  double t0 = now_s(), audio = 0;
  kiln_whisper *w = NULL;
  kiln_status s = kiln_whisper_load(dir, &lp, &w);
  if (s != KILN_OK) return free(files), cli_fail("transcribe", dir, s);
  cli_print_whisper_memory("transcribe", w);
  double t1 = now_s();
  cli_files c = {files, &oo, calloc((size_t)n_files, sizeof(cli_file)), n_files, 0, 0, 0.0};
  kiln_whisper_files io = {n_files, cli_load, cli_unload, cli_done, &c};
  s = c.f ? kiln_whisper_transcribe_files(w, &io, &o) : KILN_ERR_OUT_OF_MEMORY;
  if (s != KILN_OK) fprintf(stderr, "kiln transcribe: %s\n", c.f ? kiln_last_error() : "out of memory");
  int failed = c.f ? c.failed + (n_files - c.printed) : n_files; /* not printed: stopped by a fatal error */
  for (int i = 0; c.f && i < n_files; i++) kiln_whisper_transcript_free(c.f[i].t), free(c.f[i].error);
  free(c.f);
  audio = c.audio;
  double t2 = now_s();
  fprintf(stderr, "kiln transcribe: %d of %d files, %.1f s of audio in %.2f s (load %.2f s): RTF %.4f\n",
          n_files - failed, n_files, audio, t2 - t1, t1 - t0, audio > 0 ? (t2 - t1) / audio : 0.0);
  kiln_whisper_destroy(w);
  free(files);
  return failed ? CLI_FAIL : CLI_OK;
}

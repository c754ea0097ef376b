/* bench/quant_acc.c - how much weight-only quantization changes a real Whisper checkpoint, on the
 * CPU (kiln issue 5). Two measurements:
 *
 * Engines (default): builds the unquantized engines (the reference) and one engine folder per
 * CONFIG (CPU target, --dtype, max batch 1), decodes every audio file (the manifest's and
 * --audio's, first 30 s each) with the reference greedily, then feeds each engine the same
 * tokens (forced decoding: start sequence + the reference's tokens + <|endoftext|>) and compares
 * its logits at the positions that predict the transcript and <|endoftext|> with the
 * reference's: nmse (sum of squared differences over sum of squares, all positions and tokens),
 * top-1 agreement (unmasked argmax equal), mean KL(reference || engine) of the softmaxes in nats,
 * and the encoder output's nmse. With --wer each engine also transcribes the manifest as
 * `kiln eval` does (greedy, batch 1, Whisper's English normalizer): WER, S / D / I, and the
 * runaway utterances (hypothesis > 2 x reference + 10 words: repetition loops).
 * One markdown table row per configuration on stdout.
 *
 * Weights (--weights): no engines; every linear layer weight of the checkpoint quantized and
 * dequantized as the builder does (src/core/quant.h), its nmse against the float weight, summed
 * by layer class (encoder / decoder x self-attention q, k, v, out, cross-attention, fc1, fc2)
 * for int8 and int4 groups 128 and 64. Seconds, for trying quantizer variants.
 *
 * CONFIG: none | int8 | int4 | int4g64 (with kiln_whisper_build's default of weights kept float:
 * KILN_WHISPER_KEEP_FLOAT_INT4 under int4), optionally followed by ":keep=PATTERNS" (comma-
 * separated weight name patterns kept float instead, as `kiln build whisper --keep-float`;
 * ":keep=" quantizes every linear layer) or ":only=PATTERNS" (quantize only the weights
 * matching PATTERNS: every other linear weight is kept float).
 * usage: quant_acc [--checkpoint DIR] [--manifest FILE] [--audio FILE]... [--out DIR]
 *                  [--dtype fp32|fp16] [--wer] CONFIG...
 *        quant_acc --weights [--checkpoint DIR]
 * e.g.   quant_acc --wer int8 int4 int4:keep= int4g64 'int4:keep=model.decoder.*' 'int4:only=*.fc1.weight'
 * Defaults: models/whisper-base, tests/data/testset-mini/manifest.jsonl, examples/audio/jfk.flac,
 * quant-acc/ (engines, rebuilt every run), fp32. Not a test: numbers to read, nothing asserted.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BENCH_NAME "quant_acc"
#include "bench_util.h"
#include "core/quant.h"
#include "kiln/audio.h"
#include "kiln/eval.h"
#include "kiln/kiln.h"
#include "kiln/manifest.h"
#include "kiln/safetensors.h"
#include "kiln/tokenizer.h"
#include "kiln/whisper.h"

#define MAX_AUDIO 512
#define MAX_CONFIGS 64
#define N_FRAMES 3000

typedef struct opts {
  const char *checkpoint, *manifest, *out;
  const char *audio[MAX_AUDIO];
  int n_audio, wer, weights;
  kiln_dtype dtype;
  const char *configs[MAX_CONFIGS];
  int n_configs;
} opts;

/* One window of the reference: mel, forced tokens, the positions compared, their logits. */
typedef struct window {
  float *mel;           /* [n_mels x 3000] */
  int32_t tokens[448];  /* start sequence, transcript, <|endoftext|> */
  int32_t n, first;     /* tokens; logits rows first .. n - 2 are compared */
  float *logits;        /* reference logits of those rows [(n - 1 - first) x vocab] */
  float *enc;           /* reference encoder output [1500 x d] */
} window;

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) DIE("out of memory (%zu bytes)", n);
  return p;
}

/* ---- configurations ------------------------------------------------------------------------- */

/* The linear weight names of a Whisper checkpoint with this geometry (fused and unfused self-
 * attention projections both), for ":only=". Returns a malloc()ed comma-separated list of the
 * ones that match none of `only` (comma-separated patterns). */
static char *complement(const kiln_whisper_config *c, const char *only) {
  static const char *const enc_parts[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                          "self_attn.qkv_proj", "self_attn.out_proj", "fc1", "fc2"};
  static const char *const dec_parts[] = {"self_attn.q_proj",    "self_attn.k_proj",    "self_attn.v_proj",
                                          "self_attn.qkv_proj",  "self_attn.out_proj",  "encoder_attn.q_proj",
                                          "encoder_attn.k_proj", "encoder_attn.v_proj", "encoder_attn.out_proj",
                                          "fc1",                 "fc2"};
  size_t cap = 64 * 16 * (size_t)(c->encoder_layers + c->decoder_layers) + 1, len = 0;
  char *out = xmalloc(cap), name[160], pat[256];
  out[0] = '\0';
  for (int dec = 0; dec < 2; dec++) {
    int32_t layers = dec ? c->decoder_layers : c->encoder_layers;
    size_t n_parts = dec ? sizeof dec_parts / sizeof *dec_parts : sizeof enc_parts / sizeof *enc_parts;
    for (int32_t l = 0; l < layers; l++)
      for (size_t p = 0; p < n_parts; p++) {
        snprintf(name, sizeof name, "model.%s.layers.%d.%s.weight", dec ? "decoder" : "encoder", (int)l,
                 dec ? dec_parts[p] : enc_parts[p]);
        int match = 0;
        for (const char *s = only; *s && !match; s += strcspn(s, ",") + (s[strcspn(s, ",")] == ',')) {
          size_t n = strcspn(s, ",");
          if (n == 0 || n >= sizeof pat) continue;
          memcpy(pat, s, n), pat[n] = '\0';
          match = fnmatch(pat, name, 0) == 0;
        }
        if (match) continue;
        if (len + strlen(name) + 2 > cap) DIE("too many weight names");
        len += (size_t)sprintf(out + len, "%s%s", len ? "," : "", name);
      }
  }
  return out;
}

/* CONFIG -> build parameters; *keep gets a malloc()ed keep-float list or NULL. */
static void parse_config(const char *cfg, const kiln_whisper_config *c, kiln_whisper_build_params *p, char **keep) {
  size_t base = strcspn(cfg, ":");
  *keep = NULL;
  p->weight_only = KILN_WEIGHT_ONLY_NONE;
  p->group_size = 128;
  if (base == 4 && !strncmp(cfg, "none", 4)) {
  } else if (base == 4 && !strncmp(cfg, "int8", 4)) {
    p->weight_only = KILN_WEIGHT_ONLY_INT8;
  } else if (base == 4 && !strncmp(cfg, "int4", 4)) {
    p->weight_only = KILN_WEIGHT_ONLY_INT4;
  } else if (base == 7 && !strncmp(cfg, "int4g64", 7)) {
    p->weight_only = KILN_WEIGHT_ONLY_INT4;
    p->group_size = 64;
  } else {
    DIE("unknown configuration \"%s\" (none, int8, int4, int4g64, optionally :keep=PATTERNS or :only=PATTERNS)", cfg);
  }
  const char *rest = cfg + base;
  if (!*rest) return;
  if (!strncmp(rest, ":keep=", 6)) {
    *keep = xmalloc(strlen(rest));
    strcpy(*keep, rest + 6);
  } else if (!strncmp(rest, ":only=", 6)) {
    *keep = complement(c, rest + 6);
  } else {
    DIE("configuration \"%s\": after the name comes :keep=PATTERNS or :only=PATTERNS", cfg);
  }
}

/* ---- engines -------------------------------------------------------------------------------- */

static kiln_whisper *build_load(const opts *o, const kiln_whisper_build_params *p, const char *name) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", o->out, name);
  REQUIRE(kiln_whisper_build(o->checkpoint, p, dir));
  kiln_whisper *w = NULL;
  REQUIRE(kiln_whisper_load(dir, NULL, &w));
  return w;
}

/* The windows: mel of each file, the reference's greedy tokens, logits and encoder output. */
static window *reference(const opts *o, kiln_whisper *w, const kiln_manifest *m, int *n_windows) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/none", o->out);
  kiln_tokenizer *tok = NULL;
  REQUIRE(kiln_tokenizer_load_hf(dir, &tok));
  int32_t sot[4], n_sot = 0;
  int multi = kiln_tokenizer_num_languages(tok) > 0;
  REQUIRE(kiln_tokenizer_sot_sequence(tok, multi ? "en" : NULL, multi ? KILN_TASK_TRANSCRIBE : KILN_TASK_NONE, 0, sot,
                                      &n_sot));
  int64_t n_files = o->n_audio + (m ? kiln_manifest_count(m) : 0);
  window *win = xmalloc((size_t)n_files * sizeof *win);
  int64_t V = c->vocab_size, D = c->d_model;
  for (int64_t i = 0; i < n_files; i++) {
    const char *path = i < o->n_audio ? o->audio[i] : kiln_manifest_audio(m, i - o->n_audio);
    window *x = &win[i];
    float *pcm = NULL;
    int64_t n = 0;
    REQUIRE(kiln_audio_load(path, 16000, &pcm, &n));
    x->mel = xmalloc((size_t)c->n_mels * N_FRAMES * sizeof(float));
    REQUIRE(kiln_mel_compute_window(pcm, n, c->n_mels, x->mel));
    kiln_audio_free(pcm);
    kiln_whisper_result *r = NULL;
    REQUIRE(kiln_whisper_transcribe(w, x->mel, NULL, &r));
    x->n = 0;
    for (int32_t j = 0; j < n_sot; j++) x->tokens[x->n++] = sot[j];
    for (int32_t j = 0; j < r->n_tokens && x->n < c->n_text_ctx - 1; j++) x->tokens[x->n++] = r->tokens[j];
    x->tokens[x->n++] = c->eot;
    x->first = n_sot - 1;
    kiln_whisper_result_free(r);
    float *all = xmalloc((size_t)(x->n * V) * sizeof(float));
    x->enc = xmalloc((size_t)(KILN_WHISPER_AUDIO_CTX * D) * sizeof(float));
    REQUIRE(kiln_whisper_encode(w, x->mel, x->enc));
    REQUIRE(kiln_whisper_decode(w, x->tokens, x->n, all));
    x->logits = xmalloc((size_t)((x->n - 1 - x->first) * V) * sizeof(float));
    memcpy(x->logits, all + x->first * V, (size_t)((x->n - 1 - x->first) * V) * sizeof(float));
    free(all);
  }
  kiln_tokenizer_destroy(tok);
  *n_windows = (int)n_files;
  return win;
}

/* log-softmax of row[V] into out[V] */
static void log_softmax(const float *row, int64_t V, double *out) {
  double mx = row[0], sum = 0;
  for (int64_t v = 1; v < V; v++)
    if (row[v] > mx) mx = row[v];
  for (int64_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
  double lse = mx + log(sum);
  for (int64_t v = 0; v < V; v++) out[v] = (double)row[v] - lse;
}

static int64_t argmax(const float *row, int64_t V) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; v++)
    if (row[v] > row[best]) best = v;
  return best;
}

typedef struct scores {
  double nmse, top1, kl, enc_nmse;
  int64_t positions;
} scores;

static scores compare(kiln_whisper *w, const window *win, int n_windows) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int64_t V = c->vocab_size, D = c->d_model;
  double se = 0, ss = 0, kl = 0, enc_se = 0, enc_ss = 0;
  int64_t agree = 0, pos = 0;
  float *all = xmalloc((size_t)(448 * V) * sizeof(float)), *enc = xmalloc((size_t)(KILN_WHISPER_AUDIO_CTX * D) * sizeof(float));
  double *lp = xmalloc((size_t)V * sizeof(double)), *lq = xmalloc((size_t)V * sizeof(double));
  for (int i = 0; i < n_windows; i++) {
    const window *x = &win[i];
    REQUIRE(kiln_whisper_encode(w, x->mel, enc));
    for (int64_t j = 0; j < KILN_WHISPER_AUDIO_CTX * D; j++) {
      double d = (double)enc[j] - x->enc[j];
      enc_se += d * d, enc_ss += (double)x->enc[j] * x->enc[j];
    }
    REQUIRE(kiln_whisper_decode(w, x->tokens, x->n, all));
    for (int32_t r = 0; r < x->n - 1 - x->first; r++) {
      const float *q = all + (x->first + r) * V, *p = x->logits + r * V;
      for (int64_t v = 0; v < V; v++) {
        double d = (double)q[v] - p[v];
        se += d * d, ss += (double)p[v] * p[v];
      }
      agree += argmax(q, V) == argmax(p, V);
      log_softmax(p, V, lp);
      log_softmax(q, V, lq);
      double k = 0;
      for (int64_t v = 0; v < V; v++) k += exp(lp[v]) * (lp[v] - lq[v]);
      kl += k;
      pos++;
    }
  }
  free(all), free(enc), free(lp), free(lq);
  scores s = {se / (ss > 0 ? ss : 1), pos ? (double)agree / (double)pos : 0, pos ? kl / (double)pos : 0,
              enc_se / (enc_ss > 0 ? enc_ss : 1), pos};
  return s;
}

/* WER of w on the manifest as `kiln eval` computes it (greedy, batch 1), and the number of
 * runaway utterances (a hypothesis longer than twice the reference plus 10 words: a repetition
 * loop, which one utterance can turn into 200 insertions). */
static void wer(kiln_whisper *w, const kiln_manifest *m, const char *engine_dir, kiln_wer_counts *counts,
                int64_t *runaways) {
  char spelling[4200];
  snprintf(spelling, sizeof spelling, "%s/normalizer.json", engine_dir);
  kiln_textnorm *tn = NULL;
  kiln_eval_report *rep = NULL;
  REQUIRE(kiln_textnorm_create(spelling, &tn));
  REQUIRE(kiln_eval_report_create(tn, &rep));
  kiln_eval_run_params rp = kiln_eval_run_default_params();
  kiln_eval_run_stats st;
  REQUIRE(kiln_eval_run(w, m, &rp, rep, &st));
  if (st.failed) DIE("%lld utterances failed", (long long)st.failed);
  REQUIRE(kiln_eval_report_totals(rep, NULL, NULL, counts, NULL));
  *runaways = 0;
  for (int64_t i = 0; i < kiln_eval_report_count(rep); i++) {
    kiln_wer_counts u;
    REQUIRE(kiln_eval_report_utterance(rep, i, &u, NULL, NULL));
    *runaways += u.hyp_words > 2 * u.ref_words + 10;
  }
  kiln_eval_report_destroy(rep);
  kiln_textnorm_destroy(tn);
}

static void run_engines(const opts *o) {
  kiln_manifest *m = NULL;
  if (o->manifest) REQUIRE(kiln_manifest_load(o->manifest, &m));
  kiln_whisper_build_params p = kiln_whisper_build_default_params();
  p.target = KILN_TARGET_CPU;
  p.precision = o->dtype;
  mkdir(o->out, 0777); /* an error shows at the build */
  kiln_whisper *ref = build_load(o, &p, "none");
  int n_windows = 0;
  window *win = reference(o, ref, m, &n_windows);
  const kiln_whisper_config c = *kiln_whisper_get_config(ref);
  kiln_whisper_destroy(ref);
  int64_t positions = 0;
  for (int i = 0; i < n_windows; i++) positions += win[i].n - 1 - win[i].first;
  printf("- %s, CPU engines in %s, %d windows (%lld positions compared) against the unquantized engines\n", o->checkpoint,
         kiln_dtype_name(o->dtype), n_windows, (long long)positions);
  printf("\n| config | logits nmse | top-1 agreement | mean KL (nats) | encoder nmse |%s\n",
         o->wer ? " WER | S / D / I (N) | runaways |" : "");
  printf("|---|---|---|---|---|%s\n", o->wer ? "---|---|---|" : "");
  fflush(stdout);
  for (int ci = 0; ci < o->n_configs; ci++) {
    char *keep = NULL, name[32];
    parse_config(o->configs[ci], &c, &p, &keep);
    p.keep_float = keep;
    snprintf(name, sizeof name, "config%d", ci);
    kiln_whisper *w = build_load(o, &p, name);
    scores s = compare(w, win, n_windows);
    printf("| %s | %.3e | %.2f%% | %.4f | %.3e |", o->configs[ci], s.nmse, 100 * s.top1, s.kl, s.enc_nmse);
    if (o->wer && m) {
      char dir[4096];
      kiln_wer_counts wc;
      int64_t runaways = 0;
      snprintf(dir, sizeof dir, "%s/%s", o->out, name);
      wer(w, m, dir, &wc, &runaways);
      printf(" %.2f%% | %lld / %lld / %lld (%lld) | %lld |", 100 * kiln_wer_rate(&wc), (long long)wc.substitutions,
             (long long)wc.deletions, (long long)wc.insertions, (long long)wc.ref_words, (long long)runaways);
    }
    printf("\n");
    fflush(stdout);
    kiln_whisper_destroy(w);
    free(keep);
  }
  for (int i = 0; i < n_windows; i++) free(win[i].mel), free(win[i].logits), free(win[i].enc);
  free(win);
  kiln_manifest_destroy(m);
}

/* ---- weights -------------------------------------------------------------------------------- */

/* The class of a linear weight name ("enc fc1", "dec cross q", ...) into out, or 0 when the
 * tensor is not a linear layer's weight. */
static int weight_class(const char *name, char *out, size_t n) {
  static const struct {
    const char *pattern, *label;
  } classes[] = {{"*.self_attn.q_proj.weight", "self q"},       {"*.self_attn.k_proj.weight", "self k"},
                 {"*.self_attn.v_proj.weight", "self v"},       {"*.self_attn.out_proj.weight", "self out"},
                 {"*.encoder_attn.q_proj.weight", "cross q"},   {"*.encoder_attn.k_proj.weight", "cross k"},
                 {"*.encoder_attn.v_proj.weight", "cross v"},   {"*.encoder_attn.out_proj.weight", "cross out"},
                 {"*.fc1.weight", "fc1"},                       {"*.fc2.weight", "fc2"}};
  for (size_t i = 0; i < sizeof classes / sizeof *classes; i++)
    if (fnmatch(classes[i].pattern, name, 0) == 0) {
      snprintf(out, n, "%s %s", strncmp(name, "model.encoder.", 14) == 0 ? "enc" : "dec", classes[i].label);
      return 1;
    }
  return 0;
}

#define MAX_CLASSES 32
#define N_MODES 3

static void run_weights(const opts *o) {
  static const struct {
    kiln_dtype dt;
    int32_t group;
    const char *label;
  } modes[N_MODES] = {{KILN_DTYPE_INT8, 0, "int8"}, {KILN_DTYPE_INT4, 128, "int4 g128"}, {KILN_DTYPE_INT4, 64, "int4 g64"}};
  kiln_safetensors *st = NULL;
  REQUIRE(kiln_safetensors_open(o->checkpoint, &st));
  char labels[MAX_CLASSES][32];
  double se[MAX_CLASSES][N_MODES] = {{0}}, ss[MAX_CLASSES] = {0}, tot_se[N_MODES] = {0}, tot_ss = 0;
  int n_classes = 0;
  for (int64_t i = 0; i < kiln_safetensors_count(st); i++) {
    kiln_safetensors_tensor t;
    char label[32];
    REQUIRE(kiln_safetensors_get(st, i, &t));
    if (t.dims.rank != 2 || !kiln_dtype_is_float(t.dtype) || !weight_class(t.name, label, sizeof label)) continue;
    int c = 0;
    while (c < n_classes && strcmp(labels[c], label) != 0) c++;
    if (c == n_classes) {
      if (n_classes == MAX_CLASSES) DIE("too many weight classes");
      snprintf(labels[n_classes++], sizeof labels[0], "%s", label);
    }
    int64_t n = t.dims.d[0], k = t.dims.d[1];
    float *w = xmalloc((size_t)(n * k) * sizeof(float)), *back = xmalloc((size_t)(n * k) * sizeof(float));
    float *s = xmalloc((size_t)n * (size_t)k * sizeof(float)); /* more than any mode's scales */
    void *q = xmalloc((size_t)(n * k));
    kiln_convert_floats(w, KILN_DTYPE_FP32, t.data, t.dtype, n * k);
    for (int64_t j = 0; j < n * k; j++) ss[c] += (double)w[j] * w[j];
    for (int mi = 0; mi < N_MODES; mi++) {
      REQUIRE(kiln_quantize(w, n, k, modes[mi].dt, modes[mi].group, q, s));
      kiln_dequantize_rows(q, modes[mi].dt, s, modes[mi].group, k, 0, n, back);
      for (int64_t j = 0; j < n * k; j++) se[c][mi] += ((double)w[j] - back[j]) * ((double)w[j] - back[j]);
    }
    free(w), free(back), free(s), free(q);
  }
  kiln_safetensors_close(st);
  printf("- %s: nmse of the dequantized linear weights (sum of squared errors / sum of squares)\n\n| class |", o->checkpoint);
  for (int mi = 0; mi < N_MODES; mi++) printf(" %s |", modes[mi].label);
  printf("\n|---|");
  for (int mi = 0; mi < N_MODES; mi++) printf("---|");
  printf("\n");
  for (int c = 0; c < n_classes; c++) {
    printf("| %s |", labels[c]);
    for (int mi = 0; mi < N_MODES; mi++) printf(" %.4e |", se[c][mi] / ss[c]), tot_se[mi] += se[c][mi];
    printf("\n");
    tot_ss += ss[c];
  }
  printf("| all |");
  for (int mi = 0; mi < N_MODES; mi++) printf(" %.4e |", tot_se[mi] / tot_ss);
  printf("\n");
}

int main(int argc, char **argv) {
  opts o;
  memset(&o, 0, sizeof o);
  o.checkpoint = "models/whisper-base";
  o.manifest = "tests/data/testset-mini/manifest.jsonl";
  o.out = "quant-acc";
  o.dtype = KILN_DTYPE_FP32;
  int default_audio = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--checkpoint") && v) o.checkpoint = v, i++;
    else if (!strcmp(a, "--manifest") && v) o.manifest = *v ? v : NULL, i++;
    else if (!strcmp(a, "--audio") && v && o.n_audio < MAX_AUDIO) o.audio[o.n_audio++] = v, i++, default_audio = 0;
    else if (!strcmp(a, "--out") && v) o.out = v, i++;
    else if (!strcmp(a, "--dtype") && v) o.dtype = kiln_dtype_from_name(v), i++;
    else if (!strcmp(a, "--wer")) o.wer = 1;
    else if (!strcmp(a, "--weights")) o.weights = 1;
    else if (a[0] != '-' && o.n_configs < MAX_CONFIGS) o.configs[o.n_configs++] = a;
    else {
      fprintf(stderr, "usage: %s [--checkpoint DIR] [--manifest FILE|\"\"] [--audio FILE]... [--out DIR] "
                      "[--dtype fp32|fp16] [--wer] CONFIG...\n       %s --weights [--checkpoint DIR]\n"
                      "CONFIG: none|int8|int4|int4g64[:keep=PATTERNS|:only=PATTERNS]\n",
              BENCH_NAME, BENCH_NAME);
      return 2;
    }
  }
  if (default_audio) o.audio[o.n_audio++] = "examples/audio/jfk.flac";
  if (o.dtype != KILN_DTYPE_FP32 && o.dtype != KILN_DTYPE_FP16) DIE("--dtype is fp32 or fp16");
  if (o.weights) {
    run_weights(&o);
    return 0;
  }
  if (o.n_configs == 0) DIE("name at least one CONFIG (none, int8, int4, int4g64; see the top of bench/quant_acc.c)");
  run_engines(&o);
  return 0;
}

/* tests/gpu/test_whisper_geometry.c - kiln's Whisper engines against transformers at a real
 * geometry (tiny, large-v3, large-v3-turbo; random weights): the checkpoint and the references
 * are made on the spot by tools/whisper_geometry_ref.py with transformers, which
 * tests/gpu/whisper_geometry.sh runs before this program, once per geometry (the large
 * checkpoints are GBs: nothing is stored in the tests).
 *
 *   fp32 engines: greedy tokens equal transformers' fp32 greedy tokens (same decoding settings:
 *     language en, transcribe, no timestamps, max_new_tokens from the references); logits of
 *     the forced sequence (in one pass, and step by step through the KV cache) within fp32
 *     rounding of the reference (nmse <= FP32_MAX_NMSE), argmax equal on every row that is not
 *     a tie at fp32 precision;
 *   fp16 engines: the same logits' nmse against the fp32 reference no larger than transformers'
 *     own fp16 nmse, measured in the same run by the tool, and at least as many rows whose
 *     argmax agrees with the reference as transformers' fp16 (counted on the rows that are not
 *     near-ties at fp16 precision, FP16_TIE) (kiln issue 4: "no worse than transformers' own fp16
 *     error"), in one pass and step by step.
 * One line per check (geometry, kiln's and transformers' numbers), and a last line
 * "whisper geometry NAME: ..." that the driver prints with PASS/FAIL.
 *
 * usage: test_whisper_geometry [CKPT_DIR REFS [WORK_DIR]]; or the environment variables
 *   KILN_WHISPER_GEOM_CKPT, KILN_WHISPER_GEOM_REFS, KILN_WHISPER_GEOM_WORK (engines are built
 *   into WORK_DIR/kiln-fp32 and kiln-fp16; default: the folder of REFS),
 *   KILN_WHISPER_GEOM_TIMING_CACHE (a timing cache shared between runs, may be unset),
 *   KILN_WHISPER_GEOM_TARGET=cpu: the engines for the CPU backend (checks the comparisons on
 *   a machine without a GPU, with references made by the tool's --device cpu).
 * Exits 77 (skipped) without a CUDA device (for CUDA engines) or without the references.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "common/test_logits.h"
#include "kiln/kiln.h"
#include "kiln/whisper.h"
#include "refs.h"
#ifdef KILN_HAVE_CUDA
#include "backends/cuda/cuda_ops.h"
#endif

/* kiln fp32 against transformers fp32, both without TF32: measured on the CPU (tiny) 1e-12;
 * fp16 errors are ~1e-6 and more, so this still tells fp32 from anything less */
#define FP32_MAX_NMSE 1e-8
/* rows whose reference best and second-best logits are closer than this are ties at fp32
 * precision: their argmax may go either way and is not checked in fp32 (the fp16 comparison
 * counts every row, as the tool does for transformers) */
#define FP32_TIE 1e-4
/* the same for fp16 engines: fp16 logit errors are ~2e-3 (nmse ~4e-6 of logits with std ~1),
 * so a margin of 1e-2 is several of them */
#define FP16_TIE 1e-2

typedef struct refs {
  const ref_entry *geometry, *mel, *greedy, *margins, *forced, *logits, *hf_nmse, *hf_agree, *max_new, *fp16_floor;
  const ref_entry *hf_argmax; /* transformers' fp16 argmax per forced row */
  const char *name;
  int32_t S, V;
} refs;

typedef struct forced_result {
  double nmse;
  int32_t agree;
} forced_result;

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *geometry_name(const int32_t *g) {
  if (g[0] == 384 && g[1] == 4 && g[2] == 4) return "tiny";
  if (g[0] == 1280 && g[1] == 32 && g[2] == 32) return "large-v3";
  if (g[0] == 1280 && g[1] == 32 && g[2] == 4) return "large-v3-turbo";
  return "custom";
}

static int refs_get(const ref_file *rf, refs *r) {
  r->geometry = ref_get(rf, "geometry"), r->mel = ref_get(rf, "mel");
  r->greedy = ref_get(rf, "greedy_tokens"), r->margins = ref_get(rf, "greedy_margins");
  r->forced = ref_get(rf, "forced_tokens"), r->logits = ref_get(rf, "forced_logits");
  r->hf_nmse = ref_get(rf, "hf_fp16_nmse"), r->hf_agree = ref_get(rf, "hf_fp16_agree");
  r->hf_argmax = ref_get(rf, "hf_fp16_argmax");
  r->max_new = ref_get(rf, "max_new_tokens"), r->fp16_floor = ref_get(rf, "fp16_weights_nmse");
  if (!r->geometry || !r->mel || !r->greedy || !r->margins || !r->forced || !r->logits || !r->hf_nmse ||
      !r->hf_agree || !r->max_new || !r->fp16_floor || !r->hf_argmax || r->geometry->count != 7 || r->logits->ndim != 2)
    return -1;
  r->name = geometry_name(r->geometry->data);
  r->S = (int32_t)r->forced->count, r->V = (int32_t)r->logits->dims[1];
  return r->logits->dims[0] == r->S && r->V == ((const int32_t *)r->geometry->data)[6] ? 0 : -1;
}

/* Build engines of `precision` for `target` into dir and load them (NULL on failure). */
static kiln_whisper *build_load(const char *ckpt, const char *dir, kiln_target target, kiln_dtype precision,
                                const char *timing_cache, const refs *r) {
  kiln_whisper_build_params p = kiln_whisper_build_default_params();
  p.target = target;
  p.precision = precision;
  p.max_batch = 1;
  p.timing_cache = timing_cache;
  double t = seconds();
  CHECK_OK(kiln_whisper_build(ckpt, &p, dir));
  double built = seconds();
  kiln_whisper *w = NULL;
  CHECK_OK(kiln_whisper_load(dir, NULL, &w));
  printf("%s %s: engines built in %.1f s, loaded in %.1f s\n", r->name, kiln_dtype_name(precision), built - t,
         seconds() - built);
  if (w) {
    const kiln_whisper_config *c = kiln_whisper_get_config(w);
    const int32_t *g = r->geometry->data;
    CHECK_EQ_INT(c->d_model, g[0]);
    CHECK_EQ_INT(c->encoder_layers, g[1]);
    CHECK_EQ_INT(c->decoder_layers, g[2]);
    CHECK_EQ_INT(c->decoder_heads, g[3]);
    CHECK_EQ_INT(c->decoder_ffn, g[4]);
    CHECK_EQ_INT(c->n_mels, g[5]);
    CHECK_EQ_INT(c->vocab_size, g[6]);
  }
  return w;
}

/* Logits [S, V] of the forced tokens: in one pass (step_by_step 0), or the start sequence and
 * then one token at a time through the KV cache. */
static void forced_logits(kiln_whisper *w, const refs *r, int step_by_step, float *logits) {
  const int32_t *tok = r->forced->data;
  int32_t first = step_by_step ? 4 : r->S;
  CHECK_OK(kiln_whisper_encode(w, r->mel->data, NULL));
  CHECK_OK(kiln_whisper_decode(w, tok, first, logits));
  for (int32_t i = first; i < r->S; i++) CHECK_OK(kiln_whisper_decode(w, tok + i, 1, logits + (int64_t)i * r->V));
}

static forced_result compare_forced(const float *logits, const refs *r) {
  forced_result f;
  f.nmse = check_nmse_value(logits, r->logits->data, (int64_t)r->S * r->V);
  f.agree = logits_argmax_agree(logits, r->logits->data, r->S, r->V);
  return f;
}

/* Greedy transcription with the reference's settings: how many leading tokens equal
 * transformers' fp32 greedy tokens (*res: the result, NULL on failure). */
static int32_t greedy_prefix(kiln_whisper *w, const refs *r, kiln_whisper_result **res) {
  kiln_whisper_decode_params dp = kiln_whisper_default_decode_params();
  dp.max_new_tokens = *(const int32_t *)r->max_new->data;
  *res = NULL;
  CHECK_OK(kiln_whisper_transcribe(w, r->mel->data, &dp, res));
  const int32_t *want = r->greedy->data;
  int32_t same = 0;
  while (*res && same < (*res)->n_tokens && same < r->greedy->count && (*res)->tokens[same] == want[same]) same++;
  return same;
}

/* Where greedy step `step` went another way than transformers: the reference logits of that
 * step (forced row 3 + step: the forced sequence is the start sequence then transformers'
 * greedy tokens) with kiln's suppression applied, kiln's own forced logits of the same row, and
 * both tokens' values in each: tells a suppression difference from a logits difference. */
static void explain_greedy_difference(kiln_whisper *w, const refs *r, int32_t step, int32_t kiln_token) {
  const kiln_whisper_config *c = kiln_whisper_get_config(w);
  int32_t row = 3 + step, V = r->V, want = ((const int32_t *)r->greedy->data)[step];
  if (row >= r->S) return;
  float *ref = malloc((size_t)V * sizeof *ref), *mine = malloc((size_t)(row + 1) * (size_t)V * sizeof *mine);
  if (!ref || !mine) goto out;
  memcpy(ref, (const float *)r->logits->data + (size_t)row * V, (size_t)V * sizeof *ref);
  if (kiln_whisper_encode(w, r->mel->data, NULL) != KILN_OK ||
      kiln_whisper_decode(w, r->forced->data, row + 1, mine) != KILN_OK)
    goto out;
  const float *k = mine + (size_t)row * V;
  printf("%s fp32 | step %d: reference logits: kiln's token %d %.5f, transformers' %d %.5f, raw argmax %d; "
         "kiln's forced logits: %.5f, %.5f, raw argmax %d\n",
         r->name, step, kiln_token, ref[kiln_token], want, ref[want], logits_argmax(ref, V), k[kiln_token], k[want],
         logits_argmax(k, V));
  for (int32_t i = 0; i < c->n_suppress; i++) ref[c->suppress[i]] = -1e30f;
  for (int32_t i = 0; step == 0 && i < c->n_begin_suppress; i++) ref[c->begin_suppress[i]] = -1e30f;
  printf("%s fp32 | step %d: argmax of the reference logits after kiln's suppression (%d + %d tokens): %d\n",
         r->name, step, c->n_suppress, step == 0 ? c->n_begin_suppress : 0, logits_argmax(ref, V));
out:
  free(ref), free(mine);
}

/* fp32: greedy tokens and forced logits against the reference. */
static void test_fp32(kiln_whisper *w, const refs *r, float *logits, char *summary, size_t cap) {
  kiln_whisper_result *res = NULL;
  double t = seconds();
  int32_t same = greedy_prefix(w, r, &res), n = (int32_t)r->greedy->count;
  if (res) {
    printf("%s fp32 | greedy (%.2f s): %d tokens, transformers %d, first %d equal", r->name, seconds() - t,
           res->n_tokens, n, same);
    if (same < n && same < res->n_tokens)
      printf(" (step %d: kiln %d, transformers %d; transformers' margin there %.3g)", same, res->tokens[same],
             ((const int32_t *)r->greedy->data)[same], ((const float *)r->margins->data)[same]);
    printf(" | %s\n", same == n && res->n_tokens == n ? "PASS" : "FAIL");
    CHECK_EQ_INT(res->n_tokens, n);
    CHECK_EQ_INT(same, n);
    if (same < n && same < res->n_tokens) explain_greedy_difference(w, r, same, res->tokens[same]);
  }
  kiln_whisper_result_free(res);

  const float *want = r->logits->data;
  forced_result f[2];
  for (int step = 0; step < 2; step++) {
    t = seconds();
    forced_logits(w, r, step, logits);
    f[step] = compare_forced(logits, r);
    /* argmax on every row but those that are ties at fp32 precision */
    int32_t ties = 0, wrong = 0;
    for (int32_t i = 0; i < r->S; i++) {
      const float *a = logits + (int64_t)i * r->V, *b = want + (int64_t)i * r->V;
      if (logits_margin(b, r->V) < FP32_TIE) ties++;
      else wrong += logits_argmax(a, r->V) != logits_argmax(b, r->V);
    }
    int ok = f[step].nmse <= FP32_MAX_NMSE && wrong == 0;
    printf("%s fp32 | forced %s (%.2f s): logits nmse %.3g (limit %.0e), argmax agrees on %d of %d rows, "
           "%d differ of the %d that are not near-ties | %s\n",
           r->name, step ? "step by step" : "one pass", seconds() - t, f[step].nmse, FP32_MAX_NMSE, f[step].agree,
           r->S, wrong, r->S - ties, ok ? "PASS" : "FAIL");
    CHECK(f[step].nmse <= FP32_MAX_NMSE);
    CHECK_EQ_INT(wrong, 0);
  }
  /* the greedy decoding again, after the forced runs (a decoding that depends on what the
   * buffers held before, e.g. memory nobody wrote, differs between the two) */
  int32_t again = greedy_prefix(w, r, &res);
  printf("%s fp32 | greedy again after the forced runs: first %d of %d tokens equal | %s\n", r->name, again, n,
         again == same ? "PASS (as the first run)" : "FAIL (the first run gave a different prefix)");
  CHECK_EQ_INT(again, same);
  kiln_whisper_result_free(res);
  snprintf(summary, cap, "fp32 greedy %d/%d tokens equal, nmse %.3g/%.3g", same, n, f[0].nmse, f[1].nmse);
}

/* fp16: forced logits no worse than transformers' fp16 against the same fp32 reference. */
static void test_fp16(kiln_whisper *w, const refs *r, float *logits, char *summary, size_t cap) {
  double hf_nmse = *(const double *)r->hf_nmse->data;
  int32_t hf_agree = *(const int32_t *)r->hf_agree->data;
  const int32_t *hf_argmax = r->hf_argmax->data;
  const float *want = r->logits->data;
  forced_result f[2];
  for (int step = 0; step < 2; step++) {
    double t = seconds();
    forced_logits(w, r, step, logits);
    f[step] = compare_forced(logits, r);
    /* argmax agreement on the rows whose fp32 best and second-best differ by more than fp16
     * noise (both engines' argmax on a near-tie row is a coin toss: counting those made the
     * comparison flip between runs) */
    int32_t rows = 0, kiln_ok = 0, hf_ok = 0;
    for (int32_t i = 0; i < r->S; i++) {
      const float *b = want + (int64_t)i * r->V;
      if (logits_margin(b, r->V) < FP16_TIE) continue;
      int32_t ref_best = logits_argmax(b, r->V);
      rows++;
      kiln_ok += logits_argmax(logits + (int64_t)i * r->V, r->V) == ref_best;
      hf_ok += hf_argmax[i] == ref_best;
    }
    int ok = f[step].nmse <= hf_nmse && kiln_ok >= hf_ok;
    printf("%s fp16 | forced %s (%.2f s): nmse vs fp32 reference: kiln %.3g, transformers %.3g (%.3fx; "
           "fp16 weights alone %.3g); argmax agrees on the %d rows with a margin >= %g: kiln %d, transformers %d "
           "(all %d rows: kiln %d, transformers %d) | %s\n",
           r->name, step ? "step by step" : "one pass", seconds() - t, f[step].nmse, hf_nmse,
           f[step].nmse / (hf_nmse > 0 ? hf_nmse : 1e-30), *(const double *)r->fp16_floor->data, rows, FP16_TIE,
           kiln_ok, hf_ok, r->S, f[step].agree, hf_agree, ok ? "PASS" : "FAIL");
    CHECK(f[step].nmse <= hf_nmse);
    CHECK(kiln_ok >= hf_ok);
  }
  /* not a requirement: how far fp16 greedy decoding follows the fp32 reference */
  kiln_whisper_result *res = NULL;
  int32_t same = greedy_prefix(w, r, &res);
  printf("%s fp16 | greedy: first %d of %d tokens equal transformers' fp32 ones (information)\n", r->name, same,
         (int)r->greedy->count);
  kiln_whisper_result_free(res);
  snprintf(summary, cap, "fp16 nmse %.3g/%.3g vs transformers %.3g, argmax %d/%d vs transformers %d of %d",
           f[0].nmse, f[1].nmse, hf_nmse, f[0].agree, f[1].agree, hf_agree, r->S);
}

static const char *arg_or_env(int argc, char **argv, int i, const char *env) {
  if (argc > i) return argv[i];
  return getenv(env);
}

int main(int argc, char **argv) {
  const char *ckpt = arg_or_env(argc, argv, 1, "KILN_WHISPER_GEOM_CKPT");
  const char *refs_path = arg_or_env(argc, argv, 2, "KILN_WHISPER_GEOM_REFS");
  const char *work = arg_or_env(argc, argv, 3, "KILN_WHISPER_GEOM_WORK");
  const char *target_name = getenv("KILN_WHISPER_GEOM_TARGET");
  kiln_target target = target_name && strcmp(target_name, "cpu") == 0 ? KILN_TARGET_CPU : KILN_TARGET_CUDA;
  if (target == KILN_TARGET_CUDA) {
#ifdef KILN_HAVE_CUDA
    if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
#else
    SKIP_TEST("kiln built without CUDA (KILN_WHISPER_GEOM_TARGET=cpu runs the CPU engines)");
#endif
  }
  if (!ckpt || !refs_path || access(refs_path, R_OK) != 0)
    SKIP_TEST("no checkpoint and references: run tests/gpu/whisper_geometry.sh (tools/whisper_geometry_ref.py "
              "makes them)");
  char dir[1024], fp32_dir[1100], fp16_dir[1100];
  if (work) {
    snprintf(dir, sizeof dir, "%s", work);
  } else { /* the folder of REFS */
    snprintf(dir, sizeof dir, "%s", refs_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
  }
  mkdir(dir, 0777); /* when missing */
  snprintf(fp32_dir, sizeof fp32_dir, "%s/kiln-fp32", dir);
  snprintf(fp16_dir, sizeof fp16_dir, "%s/kiln-fp16", dir);
  const char *timing_cache = getenv("KILN_WHISPER_GEOM_TIMING_CACHE");
  setvbuf(stdout, NULL, _IOLBF, 0); /* the lines in order with stderr's in the driver's log */

  ref_file rf;
  refs r;
  double t0 = seconds();
  if (ref_file_load(refs_path, &rf) != 0) return 1;
  if (refs_get(&rf, &r) != 0) {
    fprintf(stderr, "%s: entries missing or of the wrong shape (tools/whisper_geometry_ref.py writes it)\n", refs_path);
    ref_file_free(&rf);
    return 1;
  }
  printf("%s: %d forced tokens, %d greedy tokens, vocabulary %d; engines for the %s in %s\n", r.name, r.S,
         (int)r.greedy->count, r.V, target == KILN_TARGET_CUDA ? "GPU" : "CPU", dir);
  float *logits = malloc((size_t)r.S * (size_t)r.V * sizeof(float));
  if (!logits) abort();
  char fp32_summary[256] = "fp32 not run", fp16_summary[256] = "fp16 not run";

  kiln_whisper *w = build_load(ckpt, fp32_dir, target, KILN_DTYPE_FP32, timing_cache, &r);
  if (w) test_fp32(w, &r, logits, fp32_summary, sizeof fp32_summary);
  kiln_whisper_destroy(w);
  w = build_load(ckpt, fp16_dir, target, KILN_DTYPE_FP16, timing_cache, &r);
  if (w) test_fp16(w, &r, logits, fp16_summary, sizeof fp16_summary);
  kiln_whisper_destroy(w);

  printf("whisper geometry %s: %s engines, %s; %s; %.0f s\n", r.name, target == KILN_TARGET_CUDA ? "GPU" : "CPU",
         fp32_summary, fp16_summary, seconds() - t0);
  free(logits);
  ref_file_free(&rf);
  return check_report();
}

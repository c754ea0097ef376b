/* tests/gpu/test_whisper_mel_gpu.c - transcription with the log-mel computed on the GPU
 * (mel_cuda.cu, the default for CUDA engines) against the CPU log-mel (kiln_whisper_options
 * .cpu_mel = 1): the same tokens, segments and seeks, with the seeded tiny checkpoint of
 * tests/model/test_whisper.c built for the GPU (fp32, --max-batch 2 --max-beam 5, so two files
 * are decoded together and the fallback's best_of 5 samples are rows).
 *
 * Audio (never silence): jfk.flac, and 47 s of a chirp over noise (two windows, long-form
 * seeking); both files go through kiln_whisper_transcribe_files at --batch-size 2 and 1. The
 * model's weights are random, so its transcripts are gibberish, but they depend on every bit of
 * the encoder input: a mel window that differed by more than the GPU front end's ~1e-7 (see
 * tests/gpu/test_mel_gpu.c, which holds it to 1e-4) would show in the tokens. Exits 77 without a
 * GPU. */
#define WHISPER_TEST_GPU 1
#define main whisper_checks_main /* the checkpoint writer comes with the model test's file */
#include "../model/test_whisper.c"
#undef main

#include "kiln/audio.h"

#define MEL_CKPT "whisper_mel_gpu_ckpt"
#define MEL_ENGINES "whisper_mel_gpu_engines"
#define JFK KILN_SOURCE_DIR "/examples/audio/jfk.flac"
#define N_AUDIO 2

typedef struct audio_set {
  float *samples[N_AUDIO];
  int64_t n[N_AUDIO];
  kiln_status status[N_AUDIO];
  kiln_whisper_transcript *t[N_AUDIO];
} audio_set;

static kiln_status load(void *user, int64_t i, float **samples, int64_t *n) {
  audio_set *a = user;
  *samples = a->samples[i], *n = a->n[i];
  return KILN_OK;
}

static void done(void *user, int64_t i, kiln_status s, kiln_whisper_transcript *t) {
  audio_set *a = user;
  a->status[i] = s, a->t[i] = t;
}

static void transcribe(kiln_whisper *w, audio_set *a, int cpu_mel, int32_t batch) {
  for (int i = 0; i < N_AUDIO; i++) a->status[i] = KILN_ERR_INTERNAL, a->t[i] = NULL;
  kiln_whisper_options o = kiln_whisper_default_options();
  o.sample_len = 48;
  o.cpu_mel = cpu_mel;
  o.batch_size = batch;
  kiln_whisper_files io = {N_AUDIO, load, NULL, done, a};
  CHECK_OK(kiln_whisper_transcribe_files(w, &io, &o));
  for (int i = 0; i < N_AUDIO; i++) CHECK_OK(a->status[i]);
}

/* Tokens, seeks and times of every segment: identical. */
static int same(const kiln_whisper_transcript *x, const kiln_whisper_transcript *y, const char *what) {
  if (!x || !y) return 0;
  int ok = x->n_segments == y->n_segments && strcmp(x->text, y->text) == 0 && strcmp(x->language, y->language) == 0;
  for (int32_t i = 0; ok && i < x->n_segments; i++) {
    const kiln_whisper_segment *a = &x->segments[i], *b = &y->segments[i];
    ok = a->seek == b->seek && a->start == b->start && a->end == b->end && a->n_tokens == b->n_tokens &&
         a->temperature == b->temperature && memcmp(a->tokens, b->tokens, sizeof(int32_t) * (size_t)a->n_tokens) == 0;
    if (!ok) fprintf(stderr, "%s: segment %d differs (seek %d vs %d, %d vs %d tokens)\n", what, i, a->seek, b->seek, a->n_tokens, b->n_tokens);
  }
  if (!ok) fprintf(stderr, "%s: \"%s\" vs \"%s\"\n", what, x->text, y->text);
  return ok;
}

int main(void) {
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  static tensor_spec specs[128];
  int n_specs = read_specs(specs, 128);
  CHECK_EQ_INT(n_specs, 89);
  CHECK(make_checkpoint(MEL_CKPT, specs, n_specs, NULL, NULL) == 0);
  kiln_whisper_build_params p = kiln_whisper_build_default_params();
  p.target = KILN_TARGET_CUDA;
  p.max_batch = 2;
  p.max_beams = 5;
  CHECK_OK(kiln_whisper_build(MEL_CKPT, &p, MEL_ENGINES));
  kiln_whisper *w = NULL;
  CHECK_OK(kiln_whisper_load(MEL_ENGINES, NULL, &w));
  audio_set a;
  memset(&a, 0, sizeof a);
  CHECK_OK(kiln_audio_load(JFK, 16000, &a.samples[0], &a.n[0]));
  a.n[1] = 47 * 16000; /* a chirp 100 Hz -> 4 kHz over noise */
  a.samples[1] = malloc(sizeof(float) * (size_t)a.n[1]);
  float *noise = malloc(sizeof(float) * (size_t)a.n[1]);
  if (!a.samples[1] || !noise) abort();
  gen("mel_gpu_noise", a.n[1], -0.05, 0.05, noise);
  for (int64_t i = 0; i < a.n[1]; i++) {
    double t = (double)i / 16000;
    a.samples[1][i] = (float)(0.3 * sin(2 * 3.14159265358979323846 * (100 * t + (4000 - 100) * t * t / (2 * 47)))) + noise[i];
  }
  free(noise);
  int passed = 0, total = 0;
  if (w && a.samples[0]) {
    /* the same batch size both ways, so only the front end differs (cuBLAS may pick another
     * algorithm for another batch) */
    audio_set c2 = a, g2 = a, c1 = a, g1 = a;
    transcribe(w, &c2, 1, 2);
    transcribe(w, &g2, 0, 2);
    transcribe(w, &c1, 1, 1);
    transcribe(w, &g1, 0, 1);
    for (int i = 0; i < N_AUDIO; i++) {
      int ok = same(c2.t[i], g2.t[i], "batch 2: GPU mel vs CPU mel") & same(c1.t[i], g1.t[i], "batch 1: GPU mel vs CPU mel");
      CHECK(ok);
      passed += ok, total++;
      if (g2.t[i]) fprintf(stderr, "file %d: %d segments, last seek %d\n", i, g2.t[i]->n_segments,
                           g2.t[i]->n_segments ? g2.t[i]->segments[g2.t[i]->n_segments - 1].seek : -1);
      kiln_whisper_transcript_free(c2.t[i]), kiln_whisper_transcript_free(g2.t[i]);
      kiln_whisper_transcript_free(c1.t[i]), kiln_whisper_transcript_free(g1.t[i]);
    }
  }
  fprintf(stderr, "test_whisper_mel_gpu: %d of %d files identical with the GPU and the CPU log-mel\n", passed, total);
  kiln_audio_free(a.samples[0]);
  free(a.samples[1]);
  kiln_whisper_destroy(w);
  return check_report();
}

/* kiln/eval.h - scoring a speech recognizer on a test set: WER reports.
 *
 * What it is: a report that collects, per utterance, an id, the reference and the hypothesis
 * (the recognizer's transcript) and group labels (e.g. synth=flite, voice=slt, taken from a
 * JSON-lines manifest's fields); normalizes both texts with Whisper's English normalizer
 * (kiln/textnorm.h), aligns them with kiln's jiwer-compatible WER, and writes
 *   - the hypotheses: TSV, `id<TAB>hypothesis` a line (tabs and line breaks in the text turned
 *     into spaces), itself readable by kiln_manifest_load();
 *   - an alignment report: per utterance the counts and the normalized words aligned in columns,
 *       id: audio/0003_flite_kal.flac
 *       counts: hits=3 substitutions=2 deletions=0 insertions=1 ref_words=5 wer=0.600000
 *       REF: and you are *** a         believer
 *       HYP: and you are the believers today
 *                        I   S         S
 *       errors: I the; S a->believers; S believer->today
 *     (columns are padded by bytes: words with multi-byte characters may shift the columns);
 *   - a JSON summary: {"format": "kiln-eval-summary", "version": 1, "normalizer":
 *     "whisper-english" or "none", "utterances", "wer", "hits", "substitutions", "deletions",
 *     "insertions", "ref_words", "hyp_words", "groups": {key: {value: {"utterances", "wer",
 *     "hits", ...}}}, and, when set, "perf": {"audio_seconds", "wall_seconds", "rtf",
 *     "peak_host_bytes", "peak_device_bytes"} and "metrics": {name: number}}.
 * WER overall and per group is the corpus WER (S + D + I) / N over the utterances, as
 * jiwer.wer(list_of_refs, list_of_hyps) computes it, not a mean of per-utterance rates.
 * And a test-set run (kiln_eval_run): transcribes every utterance of a manifest with a loaded
 * Whisper model (kiln/whisper.h: audio file -> 16 kHz mono -> log-mel of the first 30 s ->
 * greedy decoding) and adds each transcript to a report, timing the whole front end and decoder.
 * What it is not: a recognizer itself, nor a manifest reader (kiln/manifest.h).
 *
 * Usage:
 *   kiln_textnorm *tn;  kiln_textnorm_create(".../english.json", &tn);
 *   kiln_eval_report *r; kiln_eval_report_create(tn, &r);
 *   const char *keys[] = {"synth", "voice"};
 *   for (i...) kiln_eval_report_add_from_manifest(r, manifest, i, transcript[i], keys, 2);
 *   kiln_eval_perf perf = kiln_eval_default_perf();
 *   perf.audio_seconds = 1650; perf.wall_seconds = 33;  perf.peak_device_bytes = ...;
 *   kiln_eval_report_set_perf(r, &perf);
 *   kiln_eval_report_write_summary(r, "out/summary.json");   // also _hypotheses, _alignments
 *   kiln_eval_report_destroy(r); kiln_textnorm_destroy(tn);
 *
 * Thread-safety: a report is not thread-safe; add utterances from one thread.
 * Ownership: the report copies every string it is given; the kiln_textnorm passed to create must
 * outlive the report. Writers write to `path.tmp` and rename it, so on error an existing file at
 * `path` stays untouched; on any error the report is unchanged.
 */
#ifndef KILN_EVAL_H
#define KILN_EVAL_H

#include <stdint.h>

#include "kiln/manifest.h"
#include "kiln/status.h"
#include "kiln/textnorm.h"
#include "kiln/whisper.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_eval_report kiln_eval_report;

/* A group label of one utterance: WER is also reported per (key, value). */
typedef struct kiln_eval_group {
  const char *key;
  const char *value;
} kiln_eval_group;

/* Speed and memory figures for the summary. Negative = unknown (left out of the summary). */
typedef struct kiln_eval_perf {
  double audio_seconds;      /* total duration of the audio transcribed */
  double wall_seconds;       /* wall-clock time spent transcribing it */
  int64_t peak_host_bytes;   /* peak resident host memory */
  int64_t peak_device_bytes; /* peak GPU memory */
} kiln_eval_perf;

kiln_eval_perf kiln_eval_default_perf(void); /* everything unknown (-1) */

/* tn: the English normalizer to apply to both texts, or NULL to score the texts as they are. */
kiln_status kiln_eval_report_create(const kiln_textnorm *tn, kiln_eval_report **out);
void kiln_eval_report_destroy(kiln_eval_report *r);

/* Adds one utterance. id, reference and hypothesis must be valid UTF-8 (hypothesis may be "");
 * groups[n_groups] may be NULL when n_groups is 0; a key given twice keeps the first value. */
kiln_status kiln_eval_report_add(kiln_eval_report *r, const char *id, const char *reference,
                                 const char *hypothesis, const kiln_eval_group *groups,
                                 int32_t n_groups);

/* The same for utterance i of a manifest: id = the audio path as written, reference = its text,
 * groups = the manifest fields named in group_keys (a field the entry lacks is left out). */
kiln_status kiln_eval_report_add_from_manifest(kiln_eval_report *r, const kiln_manifest *m,
                                               int64_t i, const char *hypothesis,
                                               const char *const *group_keys, int32_t n_keys);

/* RTF in the summary = wall_seconds / audio_seconds. Replaces earlier figures. */
kiln_status kiln_eval_report_set_perf(kiln_eval_report *r, const kiln_eval_perf *perf);
/* Any other number for the summary's "metrics" object (e.g. "encoder_ms"); replaces a metric of
 * the same name. */
kiln_status kiln_eval_report_set_metric(kiln_eval_report *r, const char *name, double value);

int64_t kiln_eval_report_count(const kiln_eval_report *r);

/* Counts of utterance i; ref_norm / hyp_norm (optional) receive the normalized texts, owned by
 * the report. KILN_ERR_INVALID_ARG when i is out of range. */
kiln_status kiln_eval_report_utterance(const kiln_eval_report *r, int64_t i,
                                       kiln_wer_counts *counts, const char **ref_norm,
                                       const char **hyp_norm);

/* Summed counts over all utterances (key NULL) or over those labelled key=value;
 * n_utterances (optional) receives how many. KILN_ERR_NOT_FOUND when no utterance has that
 * label. WER: kiln_wer_rate(counts). */
kiln_status kiln_eval_report_totals(const kiln_eval_report *r, const char *key, const char *value,
                                    kiln_wer_counts *counts, int64_t *n_utterances);

kiln_status kiln_eval_report_write_hypotheses(const kiln_eval_report *r, const char *path);
kiln_status kiln_eval_report_write_alignments(const kiln_eval_report *r, const char *path);
kiln_status kiln_eval_report_write_summary(const kiln_eval_report *r, const char *path);

/* ---- running a Whisper model on a test set ------------------------------------------------- */

/* Called after each utterance: i of total, the audio path as the manifest writes it, status
 * KILN_OK with the hypothesis, or the error with its message (kiln_last_error() text). */
typedef void (*kiln_eval_utterance_fn)(int64_t i, int64_t total, const char *audio,
                                       kiln_status status, const char *text_or_error,
                                       void *user_data);

typedef struct kiln_eval_run_params {
  kiln_whisper_decode_params decode; /* default: kiln_whisper_default_decode_params() */
  const char *const *group_keys;     /* manifest fields to report WER by (may be NULL) */
  int32_t n_group_keys;
  int32_t batch_size;                /* >= 1 (default 1): utterances decoded together as one
                                      * batch (kiln_whisper_transcribe_batch), at most the
                                      * engines' kiln_whisper_max_windows() (the metric
                                      * "batch_size" reports the one used) */
  kiln_eval_utterance_fn on_utterance; /* may be NULL */
  void *user_data;
  int32_t threads;                   /* front-end worker threads (audio load, resampling, log-mel),
                                      * which prepare the next batch while one decodes: 0
                                      * (default) = the online CPUs less one, at least 1; at most
                                      * KILN_EVAL_MAX_THREADS. Results do not depend on it. */
} kiln_eval_run_params;

#define KILN_EVAL_MAX_THREADS 32

kiln_eval_run_params kiln_eval_run_default_params(void);

typedef struct kiln_eval_run_stats {
  int64_t transcribed;       /* utterances added to the report */
  int64_t failed;            /* utterances whose audio could not be read or decoded */
  int64_t truncated;         /* utterances longer than 30 s (only the first 30 s are decoded) */
  double audio_seconds;      /* of the transcribed utterances */
  double wall_seconds;       /* audio load + resampling + mel + encoder + decoder, all of them */
  double frontend_seconds;   /* audio load + resampling + mel, summed over the utterances (on
                              * worker threads, overlapped with decoding: may exceed wall_seconds) */
  double frontend_wait_seconds; /* the part of wall_seconds spent waiting for front ends */
  int64_t tokens;            /* tokens sampled, in all */
} kiln_eval_run_stats;

/* Transcribes every utterance of m with w and adds it to report (failed utterances are left out
 * of the report, counted in stats->failed and passed to on_utterance with their error: the others
 * go on). Sets the report's perf (audio and wall seconds, the process's peak resident memory,
 * and peak_device_bytes = kiln_whisper_device_bytes(w): planned, not measured; 0 on the CPU)
 * and the metrics "failed_utterances", "frontend_seconds", "frontend_wait_seconds", "tokens",
 * "batch_size".
 * Errors other than an utterance's own (a report that cannot grow, a bad argument) stop the run:
 * the report then holds the utterances done so far. stats may be NULL. */
kiln_status kiln_eval_run(kiln_whisper *w, const kiln_manifest *m, const kiln_eval_run_params *params,
                          kiln_eval_report *report, kiln_eval_run_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* KILN_EVAL_H */

/* src/models/whisper/eval_report.c - WER reports for a test set (kiln/eval.h).
 *
 * What it is: per utterance, normalizes reference and hypothesis (Whisper's English normalizer),
 * aligns them (kiln_wer_align, jiwer-compatible) and keeps texts, counts, alignment and group
 * labels; then writes the hypotheses TSV, the alignment report and the JSON summary (formats in
 * kiln/eval.h). Group totals are recomputed by a scan per (key, value): fine for test sets of
 * thousands of utterances, not for millions.
 * What it is not: a recognizer or a manifest reader.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "kiln/eval.h"
#include "models/whisper/textnorm_internal.h"

typedef struct eval_utt {
  char *id, *ref, *hyp, *ref_norm, *hyp_norm;
  kiln_wer_counts counts;
  kiln_wer_op *ops;
  int64_t n_ops;
  char **group_keys, **group_values; /* [n_groups] */
  int32_t n_groups;
} eval_utt;

struct kiln_eval_report {
  const kiln_textnorm *tn;
  eval_utt *utts;
  int64_t count, cap;
  kiln_eval_perf perf;
  int has_perf;
  char **metric_names;
  double *metric_values;
  int32_t n_metrics;
};

static kiln_status oom(void) {
  return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory in the evaluation report");
}

static char *dup_str(const char *s) {
  size_t n = strlen(s);
  char *d = malloc(n + 1);
  if (d) memcpy(d, s, n + 1);
  return d;
}

kiln_eval_perf kiln_eval_default_perf(void) {
  kiln_eval_perf p = {-1.0, -1.0, -1, -1};
  return p;
}

kiln_status kiln_eval_report_create(const kiln_textnorm *tn, kiln_eval_report **out) {
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_create: out is NULL");
  kiln_eval_report *r = calloc(1, sizeof *r);
  if (!r) return oom();
  r->tn = tn;
  r->perf = kiln_eval_default_perf();
  *out = r;
  return KILN_OK;
}

static void free_utt(eval_utt *u) {
  free(u->id);
  free(u->ref);
  free(u->hyp);
  kiln_textnorm_free_string(u->ref_norm);
  kiln_textnorm_free_string(u->hyp_norm);
  kiln_wer_free_ops(u->ops);
  for (int32_t g = 0; g < u->n_groups; g++) {
    free(u->group_keys[g]);
    free(u->group_values[g]);
  }
  free(u->group_keys);
  free(u->group_values);
}

void kiln_eval_report_destroy(kiln_eval_report *r) {
  if (!r) return;
  for (int64_t i = 0; i < r->count; i++) free_utt(&r->utts[i]);
  free(r->utts);
  for (int32_t k = 0; k < r->n_metrics; k++) free(r->metric_names[k]);
  free(r->metric_names);
  free(r->metric_values);
  free(r);
}

/* ---- adding utterances ---------------------------------------------------------------------- */

static kiln_status normalize(const kiln_eval_report *r, const char *text, char **out) {
  if (r->tn) return kiln_textnorm_english(r->tn, text, out);
  *out = dup_str(text);
  return *out ? KILN_OK : oom();
}

static const char *utt_group(const eval_utt *u, const char *key) {
  for (int32_t g = 0; g < u->n_groups; g++)
    if (strcmp(u->group_keys[g], key) == 0) return u->group_values[g];
  return NULL;
}

static kiln_status copy_groups(eval_utt *u, const kiln_eval_group *groups, int32_t n) {
  u->group_keys = calloc((size_t)(n ? n : 1), sizeof *u->group_keys);
  u->group_values = calloc((size_t)(n ? n : 1), sizeof *u->group_values);
  if (!u->group_keys || !u->group_values) return oom();
  for (int32_t g = 0; g < n; g++) {
    if (!groups[g].key || !groups[g].value)
      return kiln_error(KILN_ERR_INVALID_ARG, "group %d has a NULL key or value", (int)g);
    KILN_TRY(kiln_tn_check_utf8(groups[g].key));
    KILN_TRY(kiln_tn_check_utf8(groups[g].value));
    if (utt_group(u, groups[g].key)) continue; /* first value wins */
    u->group_keys[u->n_groups] = dup_str(groups[g].key);
    u->group_values[u->n_groups] = dup_str(groups[g].value);
    if (!u->group_keys[u->n_groups] || !u->group_values[u->n_groups]) {
      free(u->group_keys[u->n_groups]);
      free(u->group_values[u->n_groups]);
      return oom();
    }
    u->n_groups++;
  }
  return KILN_OK;
}

static kiln_status fill_utt(const kiln_eval_report *r, eval_utt *u, const char *id, const char *ref,
                            const char *hyp, const kiln_eval_group *groups, int32_t n_groups) {
  KILN_TRY(kiln_tn_check_utf8(id));
  KILN_TRY(kiln_tn_check_utf8(ref));
  KILN_TRY(kiln_tn_check_utf8(hyp));
  u->id = dup_str(id);
  u->ref = dup_str(ref);
  u->hyp = dup_str(hyp);
  if (!u->id || !u->ref || !u->hyp) return oom();
  KILN_TRY(normalize(r, ref, &u->ref_norm));
  KILN_TRY(normalize(r, hyp, &u->hyp_norm));
  KILN_TRY(kiln_wer_align(u->ref_norm, u->hyp_norm, &u->counts, &u->ops, &u->n_ops));
  return copy_groups(u, groups, n_groups);
}

kiln_status kiln_eval_report_add(kiln_eval_report *r, const char *id, const char *reference,
                                 const char *hypothesis, const kiln_eval_group *groups,
                                 int32_t n_groups) {
  if (!r || !id || !reference || !hypothesis || n_groups < 0 || (n_groups > 0 && !groups))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_add: report, id, reference and "
                      "hypothesis must not be NULL, groups must hold n_groups >= 0 labels");
  if (r->count == r->cap) {
    int64_t cap = r->cap ? r->cap * 2 : 64;
    eval_utt *grown = realloc(r->utts, (size_t)cap * sizeof *grown);
    if (!grown) return oom();
    r->utts = grown;
    r->cap = cap;
  }
  eval_utt u = {0};
  kiln_status st = fill_utt(r, &u, id, reference, hypothesis, groups, n_groups);
  if (st != KILN_OK) {
    free_utt(&u);
    return kiln_error_context(st, "utterance '%s': ", id);
  }
  r->utts[r->count++] = u;
  return KILN_OK;
}

kiln_status kiln_eval_report_add_from_manifest(kiln_eval_report *r, const kiln_manifest *m,
                                               int64_t i, const char *hypothesis,
                                               const char *const *group_keys, int32_t n_keys) {
  if (!m || i < 0 || i >= kiln_manifest_count(m) || n_keys < 0 || (n_keys > 0 && !group_keys))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_add_from_manifest: no utterance %lld "
                      "in the manifest, or group_keys missing", (long long)i);
  kiln_eval_group *groups = calloc((size_t)(n_keys ? n_keys : 1), sizeof *groups);
  if (!groups) return oom();
  int32_t n = 0;
  for (int32_t k = 0; k < n_keys; k++) {
    const char *v = group_keys[k] ? kiln_manifest_field(m, i, group_keys[k]) : NULL;
    if (v) groups[n++] = (kiln_eval_group){group_keys[k], v};
  }
  kiln_status st = kiln_eval_report_add(r, kiln_manifest_audio_raw(m, i), kiln_manifest_text(m, i),
                                        hypothesis, groups, n);
  free(groups);
  return st;
}

kiln_status kiln_eval_report_set_perf(kiln_eval_report *r, const kiln_eval_perf *perf) {
  if (!r || !perf) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_set_perf: NULL argument");
  r->perf = *perf;
  r->has_perf = 1;
  return KILN_OK;
}

kiln_status kiln_eval_report_set_metric(kiln_eval_report *r, const char *name, double value) {
  if (!r || !name || !name[0])
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_set_metric: give a report and a name");
  KILN_TRY(kiln_tn_check_utf8(name));
  for (int32_t k = 0; k < r->n_metrics; k++)
    if (strcmp(r->metric_names[k], name) == 0) {
      r->metric_values[k] = value;
      return KILN_OK;
    }
  char **names = realloc(r->metric_names, (size_t)(r->n_metrics + 1) * sizeof *names);
  if (names) r->metric_names = names;
  double *values = names ? realloc(r->metric_values, (size_t)(r->n_metrics + 1) * sizeof *values) : NULL;
  if (values) r->metric_values = values;
  char *copy = values ? dup_str(name) : NULL;
  if (!copy) return oom();
  r->metric_names[r->n_metrics] = copy;
  r->metric_values[r->n_metrics] = value;
  r->n_metrics++;
  return KILN_OK;
}

/* ---- queries ------------------------------------------------------------------------------- */

int64_t kiln_eval_report_count(const kiln_eval_report *r) { return r ? r->count : 0; }

kiln_status kiln_eval_report_utterance(const kiln_eval_report *r, int64_t i,
                                       kiln_wer_counts *counts, const char **ref_norm,
                                       const char **hyp_norm) {
  if (!r || i < 0 || i >= r->count)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_utterance: no utterance %lld (the "
                      "report has %lld)", (long long)i, (long long)(r ? r->count : 0));
  if (counts) *counts = r->utts[i].counts;
  if (ref_norm) *ref_norm = r->utts[i].ref_norm;
  if (hyp_norm) *hyp_norm = r->utts[i].hyp_norm;
  return KILN_OK;
}

kiln_status kiln_eval_report_totals(const kiln_eval_report *r, const char *key, const char *value,
                                    kiln_wer_counts *counts, int64_t *n_utterances) {
  if (!r || (key && !value))
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_eval_report_totals: a key needs a value");
  kiln_wer_counts total = {0};
  int64_t n = 0;
  for (int64_t i = 0; i < r->count; i++) {
    const char *v = key ? utt_group(&r->utts[i], key) : NULL;
    if (key && (!v || strcmp(v, value) != 0)) continue;
    kiln_wer_counts_add(&total, &r->utts[i].counts);
    n++;
  }
  if (key && n == 0)
    return kiln_error(KILN_ERR_NOT_FOUND, "no utterance in the report is labelled %s=%s", key, value);
  if (counts) *counts = total;
  if (n_utterances) *n_utterances = n;
  return KILN_OK;
}

/* ---- writers ------------------------------------------------------------------------------- */

/* Writers go to path.tmp, renamed over path once complete. */
typedef kiln_status (*write_body_fn)(const kiln_eval_report *r, FILE *f);

static kiln_status write_atomically(const kiln_eval_report *r, const char *path, write_body_fn body) {
  if (!r || !path) return kiln_error(KILN_ERR_INVALID_ARG, "evaluation report writer: NULL argument");
  size_t n = strlen(path);
  char *tmp = malloc(n + 5);
  if (!tmp) return oom();
  memcpy(tmp, path, n);
  memcpy(tmp + n, ".tmp", 5);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(tmp);
    return kiln_error(KILN_ERR_IO, "cannot create %s.tmp; check that the folder exists and is "
                      "writable", path);
  }
  kiln_status st = body(r, f);
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) st = st != KILN_OK ? st : kiln_error(KILN_ERR_IO, "cannot write %s.tmp "
                                                                   "(disk full?)", path);
  if (st == KILN_OK && rename(tmp, path) != 0)
    st = kiln_error(KILN_ERR_IO, "cannot rename %s.tmp to %s", path, path);
  if (st != KILN_OK) remove(tmp);
  free(tmp);
  return st;
}

/* s with tabs and line breaks written as spaces. */
static void put_tsv_field(FILE *f, const char *s) {
  for (; *s; s++) fputc(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s, f);
}

static kiln_status hypotheses_body(const kiln_eval_report *r, FILE *f) {
  for (int64_t i = 0; i < r->count; i++) {
    put_tsv_field(f, r->utts[i].id);
    fputc('\t', f);
    put_tsv_field(f, r->utts[i].hyp);
    fputc('\n', f);
  }
  return KILN_OK;
}

kiln_status kiln_eval_report_write_hypotheses(const kiln_eval_report *r, const char *path) {
  return write_atomically(r, path, hypotheses_body);
}

/* Word k of s (words split on ASCII white space, as kiln_wer_align splits them). */
typedef struct word_span {
  const char *start;
  int len;
} word_span;

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static kiln_status split_spans(const char *s, word_span **out, int64_t *n_out) {
  int64_t n = 0;
  for (const char *p = s; *p; p++) n += !is_space(*p) && (p == s || is_space(p[-1]));
  word_span *w = malloc((size_t)(n ? n : 1) * sizeof *w);
  if (!w) return oom();
  int64_t k = 0;
  for (const char *p = s; *p;) {
    if (is_space(*p)) {
      p++;
      continue;
    }
    const char *q = p;
    while (*q && !is_space(*q)) q++;
    w[k++] = (word_span){p, (int)(q - p)};
    p = q;
  }
  *out = w;
  *n_out = n;
  return KILN_OK;
}

static void put_padded(FILE *f, const char *s, int len, int width, char fill) {
  if (s) fwrite(s, 1, (size_t)len, f);
  for (int k = s ? len : 0; k < width; k++) fputc(fill, f);
}

static const char *op_name(kiln_wer_op_type t) {
  return t == KILN_WER_OP_TYPE_SUBSTITUTION ? "S" : t == KILN_WER_OP_TYPE_DELETION ? "D"
         : t == KILN_WER_OP_TYPE_INSERTION ? "I" : " ";
}

/* One aligned row: which = 0 reference words, 1 hypothesis words, 2 operation letters. */
static void put_row(FILE *f, const eval_utt *u, const word_span *rw, const word_span *hw, int which) {
  int64_t end = u->n_ops; /* the letter row stops after its last error: no trailing blanks */
  while (which == 2 && end > 0 && u->ops[end - 1].type == KILN_WER_OP_TYPE_MATCH) end--;
  if (which < 2 || end > 0) fputs(which == 0 ? "REF:" : which == 1 ? "HYP:" : "    ", f);
  for (int64_t k = 0; k < end; k++) {
    const kiln_wer_op *op = &u->ops[k];
    const word_span *a = op->ref_index >= 0 ? &rw[op->ref_index] : NULL;
    const word_span *b = op->hyp_index >= 0 ? &hw[op->hyp_index] : NULL;
    int width = a && b ? (a->len > b->len ? a->len : b->len) : a ? a->len : b->len;
    fputc(' ', f);
    const word_span *w = which == 0 ? a : b;
    if (k == end - 1) width = which == 2 ? 1 : w ? w->len : width;
    if (which == 2) put_padded(f, op_name(op->type), 1, width, ' ');
    else put_padded(f, w ? w->start : NULL, w ? w->len : 0, width, w ? ' ' : '*');
  }
  fputc('\n', f);
}

static void put_errors(FILE *f, const eval_utt *u, const word_span *rw, const word_span *hw) {
  fputs("errors:", f);
  int first = 1;
  for (int64_t k = 0; k < u->n_ops; k++) {
    const kiln_wer_op *op = &u->ops[k];
    if (op->type == KILN_WER_OP_TYPE_MATCH) continue;
    fprintf(f, "%s %s ", first ? "" : ";", op_name(op->type));
    first = 0;
    if (op->ref_index >= 0) fwrite(rw[op->ref_index].start, 1, (size_t)rw[op->ref_index].len, f);
    if (op->type == KILN_WER_OP_TYPE_SUBSTITUTION) fputs("->", f);
    if (op->hyp_index >= 0 && op->type != KILN_WER_OP_TYPE_DELETION)
      fwrite(hw[op->hyp_index].start, 1, (size_t)hw[op->hyp_index].len, f);
  }
  fputs(first ? " none\n\n" : "\n\n", f);
}

static kiln_status alignment_one(FILE *f, const eval_utt *u) {
  word_span *rw = NULL, *hw = NULL;
  int64_t nr = 0, nh = 0;
  kiln_status st = split_spans(u->ref_norm, &rw, &nr);
  if (st == KILN_OK) st = split_spans(u->hyp_norm, &hw, &nh);
  if (st == KILN_OK) {
    const kiln_wer_counts *c = &u->counts;
    fputs("id: ", f);
    put_tsv_field(f, u->id);
    fprintf(f, "\ncounts: hits=%lld substitutions=%lld deletions=%lld insertions=%lld "
            "ref_words=%lld wer=%.6f\n", (long long)c->hits, (long long)c->substitutions,
            (long long)c->deletions, (long long)c->insertions, (long long)c->ref_words,
            kiln_wer_rate(c));
    for (int which = 0; which < 3; which++) put_row(f, u, rw, hw, which);
    put_errors(f, u, rw, hw);
  }
  free(rw);
  free(hw);
  return st;
}

static kiln_status alignments_body(const kiln_eval_report *r, FILE *f) {
  fprintf(f, "# kiln evaluation: alignment of each utterance's words after %s\n\n",
          r->tn ? "Whisper's English normalizer" : "no normalization");
  for (int64_t i = 0; i < r->count; i++) KILN_TRY(alignment_one(f, &r->utts[i]));
  return KILN_OK;
}

kiln_status kiln_eval_report_write_alignments(const kiln_eval_report *r, const char *path) {
  return write_atomically(r, path, alignments_body);
}

/* ---- JSON summary -------------------------------------------------------------------------- */

static int add_counts(cJSON *o, const kiln_wer_counts *c, int64_t n) {
  return cJSON_AddNumberToObject(o, "utterances", (double)n) &&
         cJSON_AddNumberToObject(o, "wer", kiln_wer_rate(c)) &&
         cJSON_AddNumberToObject(o, "hits", (double)c->hits) &&
         cJSON_AddNumberToObject(o, "substitutions", (double)c->substitutions) &&
         cJSON_AddNumberToObject(o, "deletions", (double)c->deletions) &&
         cJSON_AddNumberToObject(o, "insertions", (double)c->insertions) &&
         cJSON_AddNumberToObject(o, "ref_words", (double)c->ref_words) &&
         cJSON_AddNumberToObject(o, "hyp_words", (double)c->hyp_words);
}

/* groups: {key: {value: counts}}, keys and values in order of first appearance. */
static int add_groups(const kiln_eval_report *r, cJSON *root) {
  cJSON *groups = cJSON_AddObjectToObject(root, "groups");
  if (!groups) return 0;
  for (int64_t i = 0; i < r->count; i++) {
    const eval_utt *u = &r->utts[i];
    for (int32_t g = 0; g < u->n_groups; g++) {
      cJSON *by_key = cJSON_GetObjectItemCaseSensitive(groups, u->group_keys[g]);
      if (!by_key && !(by_key = cJSON_AddObjectToObject(groups, u->group_keys[g]))) return 0;
      if (cJSON_GetObjectItemCaseSensitive(by_key, u->group_values[g])) continue;
      cJSON *o = cJSON_AddObjectToObject(by_key, u->group_values[g]);
      kiln_wer_counts c;
      int64_t n;
      if (!o || kiln_eval_report_totals(r, u->group_keys[g], u->group_values[g], &c, &n) != KILN_OK)
        return 0;
      if (!add_counts(o, &c, n)) return 0;
    }
  }
  return 1;
}

static int add_perf(const kiln_eval_report *r, cJSON *root) {
  if (!r->has_perf) return 1;
  const kiln_eval_perf *p = &r->perf;
  cJSON *o = cJSON_AddObjectToObject(root, "perf");
  if (!o) return 0;
  int ok = 1;
  if (p->audio_seconds >= 0) ok = ok && cJSON_AddNumberToObject(o, "audio_seconds", p->audio_seconds);
  if (p->wall_seconds >= 0) ok = ok && cJSON_AddNumberToObject(o, "wall_seconds", p->wall_seconds);
  if (p->audio_seconds > 0 && p->wall_seconds >= 0)
    ok = ok && cJSON_AddNumberToObject(o, "rtf", p->wall_seconds / p->audio_seconds);
  if (p->peak_host_bytes >= 0)
    ok = ok && cJSON_AddNumberToObject(o, "peak_host_bytes", (double)p->peak_host_bytes);
  if (p->peak_device_bytes >= 0)
    ok = ok && cJSON_AddNumberToObject(o, "peak_device_bytes", (double)p->peak_device_bytes);
  return ok;
}

static int add_metrics(const kiln_eval_report *r, cJSON *root) {
  if (r->n_metrics == 0) return 1;
  cJSON *o = cJSON_AddObjectToObject(root, "metrics");
  if (!o) return 0;
  for (int32_t k = 0; k < r->n_metrics; k++)
    if (!cJSON_AddNumberToObject(o, r->metric_names[k], r->metric_values[k])) return 0;
  return 1;
}

static kiln_status summary_body(const kiln_eval_report *r, FILE *f) {
  cJSON *root = cJSON_CreateObject();
  kiln_wer_counts total;
  int64_t n;
  kiln_eval_report_totals(r, NULL, NULL, &total, &n);
  int ok = root && cJSON_AddStringToObject(root, "format", "kiln-eval-summary") &&
           cJSON_AddNumberToObject(root, "version", 1) &&
           cJSON_AddStringToObject(root, "normalizer", r->tn ? "whisper-english" : "none") &&
           add_counts(root, &total, n) && add_groups(r, root) && add_perf(r, root) &&
           add_metrics(r, root);
  char *text = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text) return oom();
  fputs(text, f);
  fputc('\n', f);
  cJSON_free(text);
  return KILN_OK;
}

kiln_status kiln_eval_report_write_summary(const kiln_eval_report *r, const char *path) {
  return write_atomically(r, path, summary_body);
}

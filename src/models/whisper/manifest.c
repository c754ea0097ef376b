/* src/models/whisper/manifest.c - reads speech test-set manifests (TSV or JSON lines).
 *
 * What it is: the reader behind kiln/manifest.h (the formats are documented there). The file is
 * read whole, cut into lines, each line checked for UTF-8 and parsed (JSON lines with cJSON) into
 * one entry of malloc()ed strings.
 * What it is not: an audio loader or a scorer (eval_report.c scores hypotheses).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/error.h"
#include "core/file.h"
#include "kiln/manifest.h"
#include "models/whisper/textnorm_internal.h"

#define MANIFEST_MAX_BYTES ((size_t)1 << 30)

typedef struct manifest_entry {
  char *audio; /* resolved */
  char *raw;   /* as written */
  char *text;
  char **keys; /* [n_fields] other JSON fields */
  char **values;
  int32_t n_fields;
  int64_t line;
} manifest_entry;

struct kiln_manifest {
  kiln_manifest_format format;
  manifest_entry *entries;
  int64_t count, cap;
};

/* Parsing state: where we are, for messages, and what we build. */
typedef struct parse_ctx {
  const char *name;
  const char *base_dir;
  int64_t line;
  kiln_manifest *m;
} parse_ctx;

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static kiln_status oom(void) {
  return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading a manifest");
}

static void free_entry(manifest_entry *e) {
  free(e->audio);
  free(e->raw);
  free(e->text);
  for (int32_t k = 0; k < e->n_fields; k++) {
    free(e->keys[k]);
    free(e->values[k]);
  }
  free(e->keys);
  free(e->values);
}

void kiln_manifest_destroy(kiln_manifest *m) {
  if (!m) return;
  for (int64_t i = 0; i < m->count; i++) free_entry(&m->entries[i]);
  free(m->entries);
  free(m);
}

/* base_dir + "/" + raw, or raw itself when it is absolute or there is no base. */
static char *resolve_path(const char *base_dir, const char *raw) {
  size_t nb = base_dir ? strlen(base_dir) : 0, nr = strlen(raw);
  if (raw[0] == '/' || nb == 0) return dup_n(raw, nr);
  int slash = base_dir[nb - 1] != '/';
  char *p = malloc(nb + (size_t)slash + nr + 1);
  if (!p) return NULL;
  memcpy(p, base_dir, nb);
  if (slash) p[nb] = '/';
  memcpy(p + nb + (size_t)slash, raw, nr + 1);
  return p;
}

/* Takes ownership of e's strings (freed here on failure). */
static kiln_status push_entry(parse_ctx *c, manifest_entry *e) {
  kiln_manifest *m = c->m;
  e->line = c->line;
  e->audio = resolve_path(c->base_dir, e->raw);
  if (!e->audio) {
    free_entry(e);
    return oom();
  }
  if (m->count == m->cap) {
    int64_t cap = m->cap ? m->cap * 2 : 64;
    manifest_entry *grown = realloc(m->entries, (size_t)cap * sizeof *grown);
    if (!grown) {
      free_entry(e);
      return oom();
    }
    m->entries = grown;
    m->cap = cap;
  }
  m->entries[m->count++] = *e;
  return KILN_OK;
}

static kiln_status line_error(const parse_ctx *c, const char *what) {
  return kiln_error(KILN_ERR_FORMAT, "%s line %lld: %s", c->name, (long long)c->line, what);
}

static kiln_status parse_tsv_line(parse_ctx *c, const char *s, size_t n) {
  if (s[0] == '#') return KILN_OK;
  const char *tab = memchr(s, '\t', n);
  if (!tab)
    return line_error(c, "no tab between the audio path and the text; write `path<TAB>text` "
                         "(an empty text still needs the tab)");
  if (memchr(tab + 1, '\t', n - (size_t)(tab + 1 - s)))
    return line_error(c, "more than one tab; the text may not contain tabs (use JSON lines)");
  if (tab == s) return line_error(c, "the audio path (before the tab) is empty");
  manifest_entry e = {0};
  e.raw = dup_n(s, (size_t)(tab - s));
  e.text = dup_n(tab + 1, n - (size_t)(tab + 1 - s));
  if (!e.raw || !e.text) {
    free_entry(&e);
    return oom();
  }
  return push_entry(c, &e);
}

/* A JSON value as the text kiln_manifest_field returns; NULL value for null. */
static kiln_status json_value_text(const cJSON *v, char **out) {
  *out = NULL;
  if (cJSON_IsNull(v)) return KILN_OK;
  *out = cJSON_IsString(v) ? dup_n(v->valuestring, strlen(v->valuestring))
                           : cJSON_PrintUnformatted(v);
  return *out ? KILN_OK : oom();
}

static kiln_status add_field(manifest_entry *e, const cJSON *item) {
  char *value;
  KILN_TRY(json_value_text(item, &value));
  if (!value) return KILN_OK;
  char **keys = realloc(e->keys, (size_t)(e->n_fields + 1) * sizeof *keys);
  if (keys) e->keys = keys;
  char **values = keys ? realloc(e->values, (size_t)(e->n_fields + 1) * sizeof *values) : NULL;
  if (values) e->values = values;
  char *key = values ? dup_n(item->string, strlen(item->string)) : NULL;
  if (!key) {
    free(value);
    return oom();
  }
  e->keys[e->n_fields] = key;
  e->values[e->n_fields] = value;
  e->n_fields++;
  return KILN_OK;
}

static kiln_status entry_from_json(parse_ctx *c, const cJSON *obj, manifest_entry *e) {
  const cJSON *audio = cJSON_GetObjectItemCaseSensitive(obj, "audio");
  const cJSON *text = cJSON_GetObjectItemCaseSensitive(obj, "text");
  if (!cJSON_IsString(audio) || audio->valuestring[0] == '\0')
    return line_error(c, "needs a non-empty string field \"audio\" (the audio file's path)");
  if (!cJSON_IsString(text))
    return line_error(c, "needs a string field \"text\" (the reference transcript; \"\" if none)");
  e->raw = dup_n(audio->valuestring, strlen(audio->valuestring));
  e->text = dup_n(text->valuestring, strlen(text->valuestring));
  if (!e->raw || !e->text) return oom();
  for (const cJSON *it = obj->child; it; it = it->next) {
    if (it == audio || it == text) continue;
    KILN_TRY(add_field(e, it));
  }
  return KILN_OK;
}

/* s is NUL-terminated (a copy of the line). */
static kiln_status parse_json_line(parse_ctx *c, const char *s) {
  const char *end = NULL;
  cJSON *obj = cJSON_ParseWithOpts(s, &end, 1);
  if (!obj) return line_error(c, "is not one valid JSON object (JSON lines: one object a line)");
  if (!cJSON_IsObject(obj)) {
    cJSON_Delete(obj);
    return line_error(c, "is JSON but not an object; write {\"audio\": ..., \"text\": ...}");
  }
  manifest_entry e = {0};
  kiln_status s2 = entry_from_json(c, obj, &e);
  cJSON_Delete(obj);
  if (s2 != KILN_OK) {
    free_entry(&e);
    return s2;
  }
  return push_entry(c, &e);
}

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t') return 0;
  return 1;
}

static kiln_status parse_line(parse_ctx *c, const char *s, size_t n) {
  if (n > 0 && s[n - 1] == '\r') n--;
  if (is_blank(s, n)) return KILN_OK;
  if (memchr(s, '\0', n)) return line_error(c, "contains a NUL byte; is this a text file?");
  char *copy = dup_n(s, n);
  if (!copy) return oom();
  kiln_status st = kiln_tn_check_utf8(copy);
  if (st != KILN_OK) {
    free(copy);
    return line_error(c, "is not valid UTF-8; save the manifest as UTF-8");
  }
  st = c->m->format == KILN_MANIFEST_FORMAT_JSONL ? parse_json_line(c, copy)
                                                   : parse_tsv_line(c, copy, n);
  free(copy);
  return st;
}

static kiln_manifest_format detect_format(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') continue;
    return s[i] == '{' ? KILN_MANIFEST_FORMAT_JSONL : KILN_MANIFEST_FORMAT_TSV;
  }
  return KILN_MANIFEST_FORMAT_TSV;
}

kiln_status kiln_manifest_parse(const char *data, size_t size, const char *base_dir,
                                const char *name, kiln_manifest **out) {
  if ((!data && size) || !out)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_manifest_parse: data and out must not be NULL");
  if (size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
    data += 3;
    size -= 3;
  }
  kiln_manifest *m = calloc(1, sizeof *m);
  if (!m) return oom();
  m->format = detect_format(data, size);
  parse_ctx c = {name ? name : "manifest", base_dir, 0, m};
  kiln_status st = KILN_OK;
  for (size_t pos = 0; pos < size && st == KILN_OK;) {
    const char *nl = memchr(data + pos, '\n', size - pos);
    size_t len = nl ? (size_t)(nl - (data + pos)) : size - pos;
    c.line++;
    st = parse_line(&c, data + pos, len);
    pos += len + 1;
  }
  if (st == KILN_OK && m->count == 0)
    st = kiln_error(KILN_ERR_FORMAT, "%s has no utterances; write one `path<TAB>text` line (TSV) "
                    "or one {\"audio\": ..., \"text\": ...} object (JSON lines) per utterance",
                    c.name);
  if (st != KILN_OK) {
    kiln_manifest_destroy(m);
    return st;
  }
  *out = m;
  return KILN_OK;
}

kiln_status kiln_manifest_load(const char *path, kiln_manifest **out) {
  if (!path || !out)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_manifest_load: path and out must not be NULL");
  char *data;
  size_t size;
  KILN_TRY(kiln_read_file(path, MANIFEST_MAX_BYTES, &data, &size));
  const char *slash = strrchr(path, '/');
  char *base = slash ? dup_n(path, slash == path ? 1 : (size_t)(slash - path)) : dup_n("", 0);
  if (!base) {
    free(data);
    return oom();
  }
  kiln_status st = kiln_manifest_parse(data, size, base, path, out);
  free(base);
  free(data);
  return st;
}

static const manifest_entry *entry_at(const kiln_manifest *m, int64_t i) {
  return m && i >= 0 && i < m->count ? &m->entries[i] : NULL;
}

int64_t kiln_manifest_count(const kiln_manifest *m) { return m ? m->count : 0; }

kiln_manifest_format kiln_manifest_format_of(const kiln_manifest *m) {
  return m ? m->format : KILN_MANIFEST_FORMAT_TSV;
}

const char *kiln_manifest_audio(const kiln_manifest *m, int64_t i) {
  const manifest_entry *e = entry_at(m, i);
  return e ? e->audio : NULL;
}

const char *kiln_manifest_audio_raw(const kiln_manifest *m, int64_t i) {
  const manifest_entry *e = entry_at(m, i);
  return e ? e->raw : NULL;
}

const char *kiln_manifest_text(const kiln_manifest *m, int64_t i) {
  const manifest_entry *e = entry_at(m, i);
  return e ? e->text : NULL;
}

const char *kiln_manifest_field(const kiln_manifest *m, int64_t i, const char *key) {
  const manifest_entry *e = entry_at(m, i);
  if (!e || !key) return NULL;
  for (int32_t k = 0; k < e->n_fields; k++)
    if (strcmp(e->keys[k], key) == 0) return e->values[k];
  return NULL;
}

int64_t kiln_manifest_line(const kiln_manifest *m, int64_t i) {
  const manifest_entry *e = entry_at(m, i);
  return e ? e->line : 0;
}

/* src/models/whisper/writers.c - a transcript as text in openai-whisper's output formats
 * (utils.py: WriteTXT, WriteSRT, WriteVTT, WriteTSV, WriteJSON), byte for byte: timestamps
 * rounded as Python's round() (half to even), JSON as json.dump's defaults (", " and ": ",
 * ASCII with \uXXXX escapes, floats as Python's repr). Not here: word-level subtitles
 * (max_line_width, highlight_words: kiln has no word timestamps). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/whisper.h"

static const char *const names[KILN_WHISPER_FORMAT_COUNT] = {"txt", "srt", "vtt", "tsv", "json"};

const char *kiln_whisper_format_name(kiln_whisper_format f) {
  return f >= 0 && f < KILN_WHISPER_FORMAT_COUNT ? names[f] : NULL;
}

int kiln_whisper_format_from_name(const char *name) {
  for (int i = 0; name && i < KILN_WHISPER_FORMAT_COUNT; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

typedef struct buf {
  char *p;
  size_t n, cap;
  int failed;
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->failed) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p, b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void putf(buf *b, const char *fmt, ...) {
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* text.strip(), with "-->" -> "->" (subtitles) or "\t" -> " " (tsv) when asked. */
static void put_stripped(buf *b, const char *s, int arrows, int tabs) {
  size_t a = 0, e = strlen(s);
  while (a < e && is_space(s[a])) a++;
  while (e > a && is_space(s[e - 1])) e--;
  for (size_t i = a; i < e; i++) {
    if (arrows && i + 2 < e && memcmp(s + i, "-->", 3) == 0) {
      put(b, "->", 2);
      i += 2;
    } else if (tabs && s[i] == '\t') {
      put(b, " ", 1);
    } else {
      put(b, s + i, 1);
    }
  }
}

/* format_timestamp(): milliseconds = round(seconds * 1000) */
static void put_time(buf *b, double seconds, int always_hours, char marker) {
  long long ms = (long long)nearbyint(seconds * 1000.0);
  long long h = ms / 3600000, m = (ms % 3600000) / 60000, s = (ms % 60000) / 1000;
  if (always_hours || h > 0) putf(b, "%02lld:", h);
  putf(b, "%02lld:%02lld%c%03lld", m, s, marker, ms % 1000);
}

/* Python's repr(float): the shortest digits that read back the same; positional notation for
 * decimal exponents -4 .. 15, else d.ddde+XX. */
static void put_float(buf *b, double v) {
  if (isnan(v)) return put(b, "NaN", 3);
  if (isinf(v)) return v > 0 ? put(b, "Infinity", 8) : put(b, "-Infinity", 9);
  char s[64];
  int p = 1;
  for (; p <= 17; p++) {
    snprintf(s, sizeof s, "%.*e", p - 1, v);
    if (strtod(s, NULL) == v) break;
  }
  int x = atoi(strchr(s, 'e') + 1);
  if (x < -4 || x >= 16) return put(b, s, strlen(s));
  snprintf(s, sizeof s, "%.*f", p - 1 - x > 0 ? p - 1 - x : 0, v);
  put(b, s, strlen(s));
  if (!strchr(s, '.')) put(b, ".0", 2);
}

/* json.dumps of a UTF-8 string with ensure_ascii. */
static void put_json_string(buf *b, const char *s) {
  put(b, "\"", 1);
  const unsigned char *u = (const unsigned char *)s;
  while (*u) {
    unsigned c = *u++;
    if (c >= 0x80) { /* decode UTF-8 (the tokenizer gives valid UTF-8) */
      int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
      c &= more == 3 ? 0x07 : more == 2 ? 0x0F : 0x1F;
      for (int i = 0; i < more && (*u & 0xC0) == 0x80; i++) c = (c << 6) | (*u++ & 0x3F);
      if (c >= 0x10000) {
        c -= 0x10000;
        putf(b, "\\u%04x\\u%04x", 0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF));
      } else {
        putf(b, "\\u%04x", c);
      }
    } else if (c == '"') put(b, "\\\"", 2);
    else if (c == '\\') put(b, "\\\\", 2);
    else if (c == '\n') put(b, "\\n", 2);
    else if (c == '\r') put(b, "\\r", 2);
    else if (c == '\t') put(b, "\\t", 2);
    else if (c == '\b') put(b, "\\b", 2);
    else if (c == '\f') put(b, "\\f", 2);
    else if (c < 0x20) putf(b, "\\u%04x", c);
    else put(b, (const char *)u - 1, 1);
  }
  put(b, "\"", 1);
}

/* , "key": value */
static void put_number(buf *b, const char *key, double v) {
  putf(b, ", \"%s\": ", key);
  put_float(b, v);
}

static void write_json(buf *b, const kiln_whisper_transcript *t) {
  put(b, "{\"text\": ", 9);
  put_json_string(b, t->text ? t->text : "");
  put(b, ", \"segments\": [", 15);
  for (int32_t i = 0; i < t->n_segments; i++) {
    const kiln_whisper_segment *g = &t->segments[i];
    putf(b, "%s{\"id\": %d, \"seek\": %d", i ? ", " : "", g->id, g->seek);
    put_number(b, "start", g->start);
    put_number(b, "end", g->end);
    put(b, ", \"text\": ", 10);
    put_json_string(b, g->text);
    put(b, ", \"tokens\": [", 13);
    for (int32_t k = 0; k < g->n_tokens; k++) putf(b, "%s%d", k ? ", " : "", g->tokens[k]);
    put(b, "]", 1);
    put_number(b, "temperature", g->temperature);
    put_number(b, "avg_logprob", g->avg_logprob);
    put_number(b, "compression_ratio", g->compression_ratio);
    put_number(b, "no_speech_prob", g->no_speech_prob);
    put(b, "}", 1);
  }
  put(b, "], \"language\": ", 15);
  put_json_string(b, t->language);
  put(b, "}", 1);
}

static void write_segments(buf *b, const kiln_whisper_transcript *t, kiln_whisper_format f) {
  if (f == KILN_WHISPER_FORMAT_VTT) put(b, "WEBVTT\n\n", 8);
  if (f == KILN_WHISPER_FORMAT_TSV) put(b, "start\tend\ttext\n", 15);
  for (int32_t i = 0; i < t->n_segments; i++) {
    const kiln_whisper_segment *g = &t->segments[i];
    if (f == KILN_WHISPER_FORMAT_TXT) {
      put_stripped(b, g->text, 0, 0);
    } else if (f == KILN_WHISPER_FORMAT_TSV) {
      putf(b, "%lld\t%lld\t", (long long)nearbyint(1000 * g->start), (long long)nearbyint(1000 * g->end));
      put_stripped(b, g->text, 0, 1);
    } else {
      int srt = f == KILN_WHISPER_FORMAT_SRT;
      if (srt) putf(b, "%d\n", i + 1);
      put_time(b, g->start, srt, srt ? ',' : '.');
      put(b, " --> ", 5);
      put_time(b, g->end, srt, srt ? ',' : '.');
      put(b, "\n", 1);
      put_stripped(b, g->text, 1, 0);
      put(b, "\n", 1);
    }
    put(b, "\n", 1);
  }
}

kiln_status kiln_whisper_transcript_format(const kiln_whisper_transcript *t, kiln_whisper_format f, char **out) {
  if (!t || !out || f < 0 || f >= KILN_WHISPER_FORMAT_COUNT)
    return kiln_error(KILN_ERR_INVALID_ARG, "kiln_whisper_transcript_format: NULL argument or unknown format %d", (int)f);
  buf b = {0};
  put(&b, "", 0);
  if (f == KILN_WHISPER_FORMAT_JSON) write_json(&b, t);
  else write_segments(&b, t, f);
  if (b.failed || !b.p) {
    free(b.p);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "whisper: out of memory writing the transcript");
  }
  *out = b.p;
  return KILN_OK;
}

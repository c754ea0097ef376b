/* kiln/manifest.h - speech test-set manifests: which audio file says which reference text.
 *
 * What it is: a reader for the two manifest formats tools/make_testset.py writes, told apart by
 * the first non-space character of the file ('{' = JSON lines, anything else = TSV):
 *
 *   TSV (manifest.tsv): one utterance a line, `audio-path<TAB>reference text`. The text may be
 *     empty (`path<TAB>`), but the tab is required and the text holds no further tab. Lines that
 *     are empty or start with '#' are skipped.
 *   JSON lines (manifest.jsonl): one JSON object a line with a string "audio" and a string "text"
 *     (may be ""), and any other fields, e.g. {"audio": "a/1.flac", "text": "Hello.",
 *     "synth": "flite", "voice": "slt", "rate": 1.25, "noise_db": null}. The other fields are
 *     kept as text: strings as they are, numbers and booleans as JSON writes them, arrays and
 *     objects as compact JSON; null is the same as an absent field. Empty lines are skipped.
 *
 * Both: UTF-8 (a leading byte-order mark is skipped), LF or CRLF line ends. A relative audio path
 * is resolved against the folder that holds the manifest; an absolute one is kept. A malformed
 * line fails the whole load with KILN_ERR_FORMAT and a message naming the file and line number.
 * A manifest with no utterance at all is an error too.
 * What it is not: an audio loader (see kiln/audio.h), nor a check that the audio files exist.
 *
 * Usage:
 *   kiln_manifest *m;
 *   kiln_manifest_load("data/testset/manifest.jsonl", &m);
 *   for (int64_t i = 0; i < kiln_manifest_count(m); i++)
 *     printf("%s: %s (%s)\n", kiln_manifest_audio(m, i), kiln_manifest_text(m, i),
 *            kiln_manifest_field(m, i, "voice"));       // NULL where there is no such field
 *   kiln_manifest_destroy(m);
 *
 * Thread-safety: a loaded manifest is immutable; its getters may be called from any thread.
 * Ownership: strings returned by the getters belong to the manifest and live until
 * kiln_manifest_destroy(). On error *out is untouched.
 */
#ifndef KILN_MANIFEST_H
#define KILN_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_manifest kiln_manifest;

typedef enum kiln_manifest_format {
  KILN_MANIFEST_FORMAT_TSV = 0,
  KILN_MANIFEST_FORMAT_JSONL = 1
} kiln_manifest_format;

/* Reads a manifest file. Errors: KILN_ERR_IO (cannot read), KILN_ERR_FORMAT (malformed line,
 * invalid UTF-8, no utterances), KILN_ERR_OUT_OF_MEMORY, KILN_ERR_INVALID_ARG. */
kiln_status kiln_manifest_load(const char *path, kiln_manifest **out);

/* The same from memory: data[size] (need not be NUL-terminated). base_dir (may be NULL or "")
 * is prefixed to relative audio paths; name is used in error messages (may be NULL). */
kiln_status kiln_manifest_parse(const char *data, size_t size, const char *base_dir,
                                const char *name, kiln_manifest **out);

void kiln_manifest_destroy(kiln_manifest *m);

int64_t kiln_manifest_count(const kiln_manifest *m);
kiln_manifest_format kiln_manifest_format_of(const kiln_manifest *m);

/* Utterance i (0 <= i < count; out of range: NULL). */
const char *kiln_manifest_audio(const kiln_manifest *m, int64_t i);     /* resolved path */
const char *kiln_manifest_audio_raw(const kiln_manifest *m, int64_t i); /* as written: an id */
const char *kiln_manifest_text(const kiln_manifest *m, int64_t i);      /* reference, maybe "" */
/* Another field of a JSON-lines entry as text, or NULL (absent, null, TSV manifest). */
const char *kiln_manifest_field(const kiln_manifest *m, int64_t i, const char *key);
/* 1-based line number of utterance i in the file (0 when out of range). */
int64_t kiln_manifest_line(const kiln_manifest *m, int64_t i);

#ifdef __cplusplus
}
#endif
#endif /* KILN_MANIFEST_H */

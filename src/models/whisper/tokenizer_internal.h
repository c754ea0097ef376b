/* src/models/whisper/tokenizer_internal.h - the tokenizer's tables, shared by tokenizer.c (the
 * core: tables, encode, decode, special tokens) and tokenizer_load.c (the file readers).
 *
 * Loading goes through a builder: the readers add (id, bytes, special) entries and, for Hugging
 * Face files, merges; tok_builder_finish() turns them into the immutable tokenizer.
 * Not a public header.
 */
#ifndef KILN_MODELS_WHISPER_TOKENIZER_INTERNAL_H
#define KILN_MODELS_WHISPER_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/tokenizer.h"

#define KILN_TOK_MAX_LANGUAGES 100

/* openai-whisper's LANGUAGES, in order (the order fixes the language token ids). */
extern const char *const kiln_tok_languages[KILN_TOK_MAX_LANGUAGES];

typedef struct tok_entry {
  int32_t id;
  int32_t len;
  size_t offset; /* into the builder's arena */
  int special;
} tok_entry;

typedef struct tok_builder {
  tok_entry *entries;
  size_t n_entries, cap_entries;
  char *arena;
  size_t arena_len, arena_cap;
  int64_t *merge_pairs; /* [n_merges x 2] token ids, best merge first (Hugging Face) */
  size_t n_merges, cap_merges;
  int use_merges;       /* 1: BPE by merge rank (Hugging Face); 0: by token rank (tiktoken) */
  const char *source;   /* for error messages */
  kiln_tokenizer *index; /* tables of the entries so far (tok_builder_index), for lookups */
} tok_builder;

void tok_builder_init(tok_builder *b, const char *source, int use_merges);
void tok_builder_free(tok_builder *b);
kiln_status tok_builder_add(tok_builder *b, int32_t id, const char *bytes, size_t len, int special);
kiln_status tok_builder_add_merge(tok_builder *b, int32_t left, int32_t right);
/* Index the entries added so far, so that tok_builder_find*() can look them up. */
kiln_status tok_builder_index(tok_builder *b);
/* Id of the non-special entry with these bytes, or of the special token spelled `text`, or -1
 * (both need tok_builder_index() first; entries added after it are not seen). */
int32_t tok_builder_find(const tok_builder *b, const char *bytes, size_t len);
int32_t tok_builder_find_special(const tok_builder *b, const char *text);
int32_t tok_builder_max_id(const tok_builder *b);
/* Build the tokenizer; the builder is emptied either way. */
kiln_status tok_builder_finish(tok_builder *b, kiln_tokenizer **out);

/* Read a whole file into a NUL-terminated buffer (free() it). */
kiln_status tok_read_file(const char *path, char **data, size_t *len);

#endif /* KILN_MODELS_WHISPER_TOKENIZER_INTERNAL_H */

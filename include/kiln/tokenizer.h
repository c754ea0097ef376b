/* kiln/tokenizer.h - Whisper's byte-level BPE tokenizer: text <-> token ids, special tokens.
 *
 * Usage:
 *   kiln_tokenizer *tok;
 *   kiln_tokenizer_load_hf("whisper-tiny/", &tok);          // or:
 *   kiln_tokenizer_load_tiktoken("multilingual.tiktoken", 99, &tok);
 *   int32_t *ids; int64_t n;
 *   kiln_tokenizer_encode(tok, " Hello world", -1, &ids, &n);
 *   char *text; kiln_tokenizer_decode(tok, ids, n, 0, &text);
 *   kiln_tokenizer_free(ids); kiln_tokenizer_free(text);
 *   int32_t sot[4]; int32_t n_sot;
 *   kiln_tokenizer_sot_sequence(tok, "en", KILN_TASK_TRANSCRIBE, 0, sot, &n_sot);
 *   kiln_tokenizer_destroy(tok);
 *
 * Sources:
 * - A Hugging Face tokenizer directory: vocab.json (byte-level unicode strings -> ids),
 *   merges.txt (BPE merges, best first), special tokens from added_tokens.json and/or
 *   tokenizer_config.json's "added_tokens_decoder". Timestamp tokens <|0.00|>..<|30.00|> are
 *   added right after <|notimestamps|> when the files do not list them (older checkpoints).
 * - A tiktoken file (openai-whisper's gpt2.tiktoken / multilingual.tiktoken): one
 *   "base64(token bytes) rank" per line. The special tokens follow the ranks in openai-whisper's
 *   order: <|endoftext|>, <|startoftranscript|>, the first num_languages language tokens,
 *   <|translate|>, <|transcribe|>, <|startoflm|>, <|startofprev|>, <|nospeech|>,
 *   <|notimestamps|>, then 1501 timestamps. num_languages is 99 for every Whisper model except
 *   large-v3 (100: adds <|yue|>); gpt2.tiktoken + 99 gives the English-only vocabulary (51864),
 *   multilingual.tiktoken + 99 gives 51865, + 100 gives 51866.
 *
 * Encoding: GPT-2 pre-tokenizer regex (PCRE2, UTF + UCP), then byte-level BPE on each piece:
 * merge ranks for Hugging Face files, token ranks for tiktoken files (as each reference does).
 * Text is plain text: a special token's spelling in it ("<|en|>") is encoded as ordinary text.
 * Decoding: token bytes are joined and invalid UTF-8 is replaced by U+FFFD (as Python's
 * errors="replace" does). Special tokens are dropped unless KILN_DECODE_SPECIAL is given;
 * timestamps are dropped unless KILN_DECODE_TIMESTAMPS is given (then they read "<|1.00|>").
 *
 * Ownership: arrays and strings returned through pointers belong to the caller; free them with
 * kiln_tokenizer_free(). On error, outputs are left untouched.
 * Thread-safety: a loaded tokenizer is immutable: any number of threads may encode and decode
 * with it at once. Create and destroy are not concurrent with other calls on the same handle.
 */
#ifndef KILN_TOKENIZER_H
#define KILN_TOKENIZER_H

#include <stdint.h>

#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_tokenizer kiln_tokenizer;

typedef enum kiln_special_token {
  KILN_TOKEN_EOT = 0,         /* <|endoftext|> */
  KILN_TOKEN_SOT,             /* <|startoftranscript|> */
  KILN_TOKEN_TRANSLATE,       /* <|translate|> */
  KILN_TOKEN_TRANSCRIBE,      /* <|transcribe|> */
  KILN_TOKEN_SOT_LM,          /* <|startoflm|> */
  KILN_TOKEN_PREV,            /* <|startofprev|> */
  KILN_TOKEN_NO_SPEECH,       /* <|nospeech|> (<|nocaptions|> in older vocabularies) */
  KILN_TOKEN_NO_TIMESTAMPS,   /* <|notimestamps|> */
  KILN_TOKEN_TIMESTAMP_BEGIN, /* <|0.00|>; timestamp i (i * 0.02 s) is TIMESTAMP_BEGIN + i */
  KILN_TOKEN_SPECIAL_COUNT
} kiln_special_token;

typedef enum kiln_task {
  KILN_TASK_NONE = 0, /* no task token (English-only models) */
  KILN_TASK_TRANSCRIBE,
  KILN_TASK_TRANSLATE
} kiln_task;

/* Decode flags (bitwise or). */
#define KILN_DECODE_SPECIAL 1u    /* keep special tokens other than timestamps as text */
#define KILN_DECODE_TIMESTAMPS 2u /* keep timestamp tokens as "<|1.00|>" */

#define KILN_TOKENIZER_TIMESTAMPS 1501 /* <|0.00|> .. <|30.00|> */

/* Load from a Hugging Face tokenizer directory (vocab.json, merges.txt, added_tokens.json /
 * tokenizer_config.json). */
kiln_status kiln_tokenizer_load_hf(const char *dir, kiln_tokenizer **out);

/* Load from a tiktoken file with openai-whisper's special tokens for num_languages languages
 * (1..100; 99 for all models but large-v3, which has 100). */
kiln_status kiln_tokenizer_load_tiktoken(const char *path, int32_t num_languages,
                                         kiln_tokenizer **out);

void kiln_tokenizer_destroy(kiln_tokenizer *tok);

/* Free an array or string returned by this API. NULL is fine. */
void kiln_tokenizer_free(void *p);

/* Number of token ids (ids are 0 .. vocab_size - 1): 51864, 51865 or 51866 for Whisper. */
int32_t kiln_tokenizer_vocab_size(const kiln_tokenizer *tok);
/* Number of language tokens (99 or 100; 0 when the vocabulary has none). */
int32_t kiln_tokenizer_num_languages(const kiln_tokenizer *tok);
/* 1 for multilingual vocabularies (vocab_size >= 51865, as openai-whisper decides), else 0. */
int kiln_tokenizer_is_multilingual(const kiln_tokenizer *tok);

/* Id of a special token, or -1 when the vocabulary lacks it. */
int32_t kiln_tokenizer_special(const kiln_tokenizer *tok, kiln_special_token which);

/* Id of the language token for a code ("en", "yue"); KILN_ERR_NOT_FOUND for unknown codes. */
kiln_status kiln_tokenizer_language_token(const kiln_tokenizer *tok, const char *code, int32_t *id);
/* The code ("en") of a language token id, or NULL when id is not a language token. The string
 * is static. */
const char *kiln_tokenizer_language_code(const kiln_tokenizer *tok, int32_t id);

/* Whisper's start sequence: <|startoftranscript|>, then the language token (when language is
 * not NULL), the task token (unless KILN_TASK_NONE), and <|notimestamps|> when timestamps is 0.
 * out must hold 4 ids; *n receives the count. */
kiln_status kiln_tokenizer_sot_sequence(const kiln_tokenizer *tok, const char *language,
                                        kiln_task task, int timestamps, int32_t out[4], int32_t *n);

/* Encode UTF-8 text (len bytes, or up to the NUL when len < 0) to ids. *ids is allocated
 * (never NULL on success, even for empty text). KILN_ERR_INVALID_ARG for invalid UTF-8. */
kiln_status kiln_tokenizer_encode(const kiln_tokenizer *tok, const char *text, int64_t len,
                                  int32_t **ids, int64_t *n);

/* Decode ids to a NUL-terminated UTF-8 string (flags: KILN_DECODE_*). KILN_ERR_INVALID_ARG for
 * an id outside 0 .. vocab_size - 1. */
kiln_status kiln_tokenizer_decode(const kiln_tokenizer *tok, const int32_t *ids, int64_t n,
                                  uint32_t flags, char **text);

/* The raw bytes of one token (for special tokens, their spelling). Not NUL-terminated; valid
 * while the tokenizer lives. */
kiln_status kiln_tokenizer_token_bytes(const kiln_tokenizer *tok, int32_t id, const char **bytes,
                                       int32_t *len);
/* 1 when id is a special token (timestamps included), else 0. */
int kiln_tokenizer_is_special(const kiln_tokenizer *tok, int32_t id);

#ifdef __cplusplus
}
#endif
#endif /* KILN_TOKENIZER_H */

/* kiln/whisper.h - Whisper speech recognition: a Hugging Face checkpoint -> kiln engines, and
 * greedy transcription with them.
 *
 * Usage:
 *   kiln_whisper_build_params bp = kiln_whisper_build_default_params();
 *   bp.precision = KILN_DTYPE_FP16;
 *   kiln_whisper_build("whisper-base/", &bp, "whisper-base.kiln/");   // engines + manifest
 *
 *   kiln_whisper *w;
 *   kiln_whisper_load("whisper-base.kiln/", NULL, &w);
 *   float *mel = ...;                       // [n_mels x 3000], kiln_mel_compute_window()
 *   kiln_whisper_result *r;
 *   kiln_whisper_transcribe(w, mel, NULL, &r);   printf("%s\n", r->text);
 *   kiln_whisper_result_free(r);  kiln_whisper_destroy(w);
 *
 * Checkpoint: a folder with config.json, model.safetensors (or a sharded index), optionally
 * generation_config.json (suppress tokens), and the tokenizer files (vocab.json, merges.txt,
 * added_tokens.json / tokenizer_config.json). Tensor names are transformers'
 * WhisperForConditionalGeneration names ("model.encoder.layers.0.self_attn.q_proj.weight"). Every
 * tensor's shape is checked against config.json; a mismatch names the tensor.
 *
 * Engines (one output folder):
 *   encoder.engine  mel [B, n_mels, 3000] -> encoder_out [B, 1500, d], and for each decoder
 *                   layer i the cross-attention keys/values cross_k.i, cross_v.i [B, H, 1500, Dh]
 *                   (computed once per 30 s window).
 *   decoder.engine  tokens [B, S] int32, positions [B, S] int32 (absolute positions),
 *                   lengths [B] int32 (tokens already cached per row), cache_k.i / cache_v.i
 *                   [B, H, n_text_ctx, Dh] (the KV cache, written in place at lengths[b]),
 *                   cross_k.i / cross_v.i [Bk, H, 1500, Dh] (row b reads row b / (B / Bk): the
 *                   beams of a window share it) -> logits [B, S, vocab]. B runs up to
 *                   max_batch x max_beams rows, S up to a chunk (longer prompts run in chunks).
 *                   With an int8 KV cache (kv_cache), the caches and cross_k/v are int8 and
 *                   each has scales cache_k_scale.i, ... [B, H, n_text_ctx or 1500], which the
 *                   encoder writes for cross_k/v and the decoder for the caches.
 *   whisper.json    the manifest: format, geometry, precision, special and suppressed tokens,
 *                   engine file names. The tokenizer files are copied next to it.
 * Float inputs and outputs of the engines are in the engine's precision.
 *
 * Decoding (kiln_whisper_transcribe): greedy, as openai-whisper's DecodingTask with
 * temperature 0 and without_timestamps and transformers' generate() do: the start sequence
 * (<|startoftranscript|>, language, task, <|notimestamps|>; only the first and the last for
 * English-only models), the suppressed tokens masked at every step, the begin-suppressed tokens
 * (" " and <|endoftext|>) at the first step, at most max_new_tokens (224) tokens, stopping at
 * <|endoftext|>. Timestamps, temperature fallback, beam search and long-form audio: the
 * decoding section at the end (kiln_whisper_transcribe_audio). kiln_whisper_transcribe_batch
 * decodes several windows as one batch; on the GPU every single-token step of a batch size is a
 * captured CUDA graph replayed with the KV cache in place.
 *
 * Ownership: results belong to the caller (kiln_whisper_result_free). On error outputs stay
 * untouched. Thread-safety: a kiln_whisper holds one execution context per engine and the KV
 * cache: use it from one thread at a time (load one per thread to run several). Its decoding
 * steps spread their host work (logits conversion, logit filters, choices) over
 * decode_threads - 1 worker threads of its own (kiln_whisper_load_params), started by the first
 * step that needs them and ended by kiln_whisper_destroy; results do not depend on their number.
 */
#ifndef KILN_WHISPER_H
#define KILN_WHISPER_H

#include <stdint.h>

#include "kiln/builder.h"
#include "kiln/network.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_WHISPER_MAX_SUPPRESS 512
#define KILN_WHISPER_AUDIO_CTX 1500 /* encoder positions for 30 s */

typedef struct kiln_whisper_config {
  int32_t d_model;
  int32_t encoder_layers, encoder_heads, encoder_ffn;
  int32_t decoder_layers, decoder_heads, decoder_ffn;
  int32_t n_mels;           /* 80 or 128 */
  int32_t vocab_size;       /* 51864 (English-only), 51865, 51866 (large-v3) */
  int32_t n_audio_ctx;      /* max_source_positions: 1500 */
  int32_t n_text_ctx;       /* max_target_positions: 448 */
  int32_t eot, sot;         /* <|endoftext|>, <|startoftranscript|> */
  int32_t n_suppress, suppress[KILN_WHISPER_MAX_SUPPRESS];           /* every step */
  int32_t n_begin_suppress, begin_suppress[KILN_WHISPER_MAX_SUPPRESS]; /* first step */
} kiln_whisper_config;

/* Read config.json (and generation_config.json when present) from a checkpoint folder.
 * Suppress lists come from generation_config.json, else config.json, else are empty. */
kiln_status kiln_whisper_config_load(const char *checkpoint_dir, kiln_whisper_config *out);

/* The networks, with the checkpoint's weights (copied into the network). Batch is dynamic
 * (profile 1..max_batch); decoder S 1..n_text_ctx, T 0..n_text_ctx. For tools and tests;
 * kiln_whisper_build() uses them. */
kiln_status kiln_whisper_encoder_network(const char *checkpoint_dir, int32_t max_batch,
                                         kiln_network **out);
kiln_status kiln_whisper_decoder_network(const char *checkpoint_dir, int32_t max_batch,
                                         kiln_network **out);

typedef struct kiln_whisper_build_params {
  kiln_target target;       /* default: CUDA when kiln has it, else CPU */
  kiln_dtype precision;     /* fp32 (default), fp16, bf16 */
  int32_t max_batch;        /* windows decoded together (default 1) */
  int32_t max_beams;        /* beams (or best-of samples) per window decoded as a batch
                               (default 1); the decoder keeps max_batch x max_beams rows */
  int32_t device;           /* CUDA device (default 0) */
  const char *timing_cache; /* may be NULL */
  kiln_progress_fn progress;
  void *progress_user_data;
  kiln_weight_only weight_only; /* matmul weights kept int8/int4 (kiln/builder.h); default none.
                                   The decoder's output projection (tied to the token embedding
                                   table) and the convolutions stay float */
  int32_t group_size;       /* int4 group along K (default 64: more accurate than 128 on
                               Whisper at the same speed, docs/quantization.md) */
  const char *keep_float;   /* weights left in the precision under weight_only: comma-separated
                               fnmatch(3) patterns of checkpoint weight names (kiln/builder.h;
                               the self-attention's fused projection is "<layer>.self_attn.
                               qkv_proj.weight"); "" keeps none. NULL (default): under int4
                               KILN_WHISPER_KEEP_FLOAT_INT4, under int8 none */
  kiln_dtype kv_cache;      /* the KV cache (self-attention caches and cross-attention keys and
                               values): KILN_DTYPE_INVALID (0, default) or `precision` keeps it in
                               the engines' precision; KILN_DTYPE_INT8 stores int8 codes with one
                               scale (in the precision) per cached vector of Dh values, scale =
                               max|x| / 127 computed when the vector is written (no calibration):
                               about half the memory of fp16 caches and of the bytes a decoding
                               step reads (kiln/network.h, the _int8 attention layers) */
} kiln_whisper_build_params;

/* What int4 builds keep in the precision unless told otherwise: the first encoder layer. On
 * whisper-base it carries more of the int4 error than any other layer (mean KL of the forced-
 * decoding logits against the float engines 0.159 -> 0.116 with it kept, at +4.6 MB in fp16; see
 * docs/quantization.md). */
#define KILN_WHISPER_KEEP_FLOAT_INT4 "model.encoder.layers.0.*"

kiln_whisper_build_params kiln_whisper_build_default_params(void);

/* Build both engines into out_dir (created when missing), write whisper.json and copy the
 * tokenizer and generation config files there. */
kiln_status kiln_whisper_build(const char *checkpoint_dir, const kiln_whisper_build_params *params,
                               const char *out_dir);

typedef struct kiln_whisper kiln_whisper;

typedef struct kiln_whisper_load_params {
  int32_t device;           /* CUDA device (default 0) */
  int64_t stream_encoder_bytes; /* weight streaming of the encoder engine (kiln/engine.h): 0
                               (default) keeps its weights in device memory; N > 0 keeps them in
                               pinned host memory and copies them, layer by layer while the
                               layers before compute, through a device ring of N bytes;
                               KILN_WHISPER_STREAM_AUTO a ring of about two encoder layers'
                               weights (2 x the encoder engine file's size / encoder layers, at
                               least 1 MiB). The decoder's weights always stay on the device (a
                               decoding step reads them all and computes little) */
  int32_t decode_threads;   /* threads for the host side of each decoding step of
                               kiln_whisper_decode_window / _transcribe_audio / _transcribe_files
                               (the calling thread included): every live decoder row's logits
                               converted to fp32, filtered (suppressed tokens, timestamp rules)
                               and chosen from (argmax, logsumexp, sampling, beam candidates) while
                               the GPU waits. A step takes a thread per two rows at most (one row:
                               the calling thread alone). Tokens and log-probabilities are the
                               same for every count. 0 (default): the environment variable
                               KILN_DECODE_THREADS when set, else min(4, online CPUs - 1), at least
                               1; at most KILN_WHISPER_MAX_DECODE_THREADS. Not used by
                               kiln_whisper_transcribe / _transcribe_batch (kiln eval), which choose
                               greedy tokens on the GPU for CUDA engines */
  int32_t max_text_tokens;  /* tokens a decoder row holds, prompt and generated together: the
                               length of the self-attention KV cache, planned for every row. 0
                               (default): the model's text context (max_target_positions, 448 for
                               Whisper). N in KILN_WHISPER_MIN_TEXT_TOKENS .. that context: caches
                               of N tokens (the memory plan shrinks with N), and the decoding
                               rules follow openai-whisper's with a context of N: a prompt keeps
                               its last N / 2 - 1 tokens and a window generates at most N / 2
                               (kiln_whisper_get_config's n_text_ctx reads N). For jobs whose
                               windows are known to be short, e.g. N = 128 */
} kiln_whisper_load_params;
#define KILN_WHISPER_MIN_TEXT_TOKENS 8
#define KILN_WHISPER_STREAM_AUTO ((int64_t)-1)
#define KILN_WHISPER_MAX_DECODE_THREADS 64

kiln_whisper_load_params kiln_whisper_default_load_params(void);

/* Load the engines and the tokenizer of a folder written by kiln_whisper_build(). */
kiln_status kiln_whisper_load(const char *engine_dir, const kiln_whisper_load_params *params,
                              kiln_whisper **out);
void kiln_whisper_destroy(kiln_whisper *w);

const kiln_whisper_config *kiln_whisper_get_config(const kiln_whisper *w);
/* The GPU memory a loaded model plans to hold, by part, in bytes (all 0 for CPU engines). Every
 * part is allocated at load, at its largest (max batch, beams and max_text_tokens), so nothing
 * grows while it runs. Planned, not measured: the CUDA context, the allocator's rounding and a
 * few small buffers (suppressed tokens, greedy picks) are not in it. */
typedef struct kiln_whisper_memory {
  int64_t encoder_weights; /* on the device; 0 when they stream (stream_encoder_bytes) */
  int64_t encoder_ring;    /* the ring they stream through (0: resident); part of `context` */
  int64_t decoder_weights; /* every decoding step reads them all */
  int64_t context;         /* one block both engines' execution contexts share, as they take
                              turns: activations, workspaces, and the encoder's ring; the larger
                              of the two next fields (which it holds, not adds) */
  int64_t encoder_context, decoder_context; /* kiln_engine_context_bytes of each engine */
  int64_t cross_kv;        /* cross-attention keys and values of every window slot (int8: and
                              their scales) */
  int64_t self_kv;         /* the self-attention KV cache of every decoder row (max_batch x
                              beams), max_text_tokens long (int8: and its scales) */
  int64_t buffers;         /* log-mel, encoder output, token ids and positions, logits */
  int64_t total;           /* weights + context + KV + buffers (kiln_whisper_device_bytes) */
} kiln_whisper_memory;
kiln_status kiln_whisper_memory_plan(const kiln_whisper *w, kiln_whisper_memory *out);
/* kiln_whisper_memory_plan's total (0 for CPU engines or NULL). */
int64_t kiln_whisper_device_bytes(const kiln_whisper *w);
/* Bytes of the decoder engine's weights (what every decoding step reads). */
int64_t kiln_whisper_decoder_weight_bytes(const kiln_whisper *w);
/* The encoder's weight streaming ring in bytes (0 when its weights are resident). */
int64_t kiln_whisper_encoder_ring_bytes(const kiln_whisper *w);

typedef struct kiln_whisper_decode_params {
  const char *language;     /* "en" (default); ignored by English-only models */
  int32_t translate;        /* 0: transcribe (default), 1: translate */
  int32_t max_new_tokens;   /* default 224 (openai-whisper's sample_len) */
  int32_t min_new_tokens;   /* <|endoftext|> is suppressed until this many tokens (default 0;
                               benchmarks use it to decode a fixed number of steps) */
} kiln_whisper_decode_params;

kiln_whisper_decode_params kiln_whisper_default_decode_params(void);

typedef struct kiln_whisper_result {
  int32_t *tokens;          /* sampled tokens, without the start sequence and <|endoftext|> */
  int32_t n_tokens;
  char *text;               /* decoded text (special tokens dropped) */
} kiln_whisper_result;

void kiln_whisper_result_free(kiln_whisper_result *r);

/* Greedy transcription of one 30 s window: mel [n_mels x 3000] fp32. params may be NULL. */
kiln_status kiln_whisper_transcribe(kiln_whisper *w, const float *mel,
                                    const kiln_whisper_decode_params *params,
                                    kiln_whisper_result **out);
/* The same for n windows decoded together as one batch (n <= kiln_whisper_max_windows()):
 * mels [n x n_mels x 3000]; out[0..n-1] receive one result each (free each one). */
kiln_status kiln_whisper_transcribe_batch(kiln_whisper *w, const float *mels, int32_t n,
                                          const kiln_whisper_decode_params *params,
                                          kiln_whisper_result **out);
/* Frees out[0..n-1] of kiln_whisper_transcribe_batch. */
void kiln_whisper_results_free(kiln_whisper_result **r, int32_t n);
/* Windows the engines take at once (the build's max_batch), and decoder rows (max_batch x
 * max_beams). */
int32_t kiln_whisper_max_windows(const kiln_whisper *w);
int32_t kiln_whisper_max_rows(const kiln_whisper *w);
/* The decode threads the model was loaded with (kiln_whisper_load_params.decode_threads,
 * resolved: 0 and the environment turned into a count). */
int32_t kiln_whisper_decode_threads(const kiln_whisper *w);

/* The steps, for tests and custom decoding loops:
 * kiln_whisper_encode: runs the encoder on mel [n_mels x 3000], keeps the cross-attention
 *   keys/values and empties the KV cache; encoder_out [1500 x d] fp32 may be NULL.
 * kiln_whisper_decode: appends n tokens to the cache and writes logits [n x vocab] fp32
 *   (may be NULL). KILN_ERR_STATE before an encode; KILN_ERR_INVALID_ARG past n_text_ctx. */
kiln_status kiln_whisper_encode(kiln_whisper *w, const float *mel, float *encoder_out);
/* kiln_whisper_encode for n windows mel [n x n_mels x 3000] (encoder_out [n x 1500 x d]). */
kiln_status kiln_whisper_encode_batch(kiln_whisper *w, const float *mels, int32_t n, float *encoder_out);
/* In-flight batching: encode one window mel [n_mels x 3000] (fp32, host) into window slot
 * `slot` (0 .. kiln_whisper_max_windows() - 1). The other slots keep their cross-attention
 * keys/values and their decoder rows' caches; the slot's own decoder rows (slot x R .. with R
 * decoder rows per window: 1 after kiln_whisper_encode / _encode_batch) are emptied.
 * KILN_ERR_INVALID_ARG when the slot or its rows do not fit the engines (--max-batch,
 * --max-beam). kiln_whisper_transcribe_files() runs on it. */
kiln_status kiln_whisper_encode_slot(kiln_whisper *w, int32_t slot, const float *mel);
kiln_status kiln_whisper_decode(kiln_whisper *w, const int32_t *tokens, int32_t n, float *logits);
/* Tokens in the KV cache. */
int32_t kiln_whisper_cache_length(const kiln_whisper *w);

/* ---- decoding as openai-whisper does it (src/models/whisper/decode.c, transcribe.c,
 * writers.c) --------------------------------------------------------------------------------
 * kiln_whisper_decode_window: one 30 s window, as openai-whisper's decode() (DecodingTask):
 *   the logit filters SuppressBlank, SuppressTokens (the checkpoint's list plus the task,
 *   <|startoftranscript|>, <|startofprev|>, <|startoflm|> and <|nospeech|> tokens) and
 *   ApplyTimestampRules (timestamps in pairs, non-decreasing, the first one at most
 *   max_initial_timestamp, and only timestamps when their total probability beats every text
 *   token); greedy (T = 0), sampling (T > 0, best_of samples ranked by
 *   MaximumLikelihoodRanker), or beam search (beam_size, patience, length_penalty as
 *   BeamSearchDecoder). The beams (or the best_of samples) are decoder rows stepped together as
 *   one batch when the engines have the rows (kiln build whisper --max-beam >= beam_size /
 *   best_of), else they take turns through the rows there are, each kept in a copy of the KV
 *   cache (same results, slower). The no-speech probability is read at <|startoftranscript|>
 *   of the first step.
 * kiln_whisper_transcribe_audio: long-form, as openai-whisper's transcribe(): the log-mel of
 *   the whole file padded with 30 s of zeros (one global floor), 30 s windows advanced by the
 *   last timestamp, temperature fallback (compression ratio, average log-probability,
 *   no-speech), the previous text as the prompt (<|startofprev|>, at most 223 tokens),
 *   initial_prompt, segments from the timestamp tokens. Not done: word timestamps,
 *   clip_timestamps, carry_initial_prompt, hallucination_silence_threshold.
 * kiln_whisper_transcribe_files: kiln_whisper_transcribe_audio for many files at once, their
 *   windows decoded together (below).
 * Sampling uses kiln's own seeded generator (splitmix64), not PyTorch's: samples differ from
 *   openai-whisper's, decisions made on them follow the same rules. Each best_of sample draws
 *   from its own stream (the generator's state advanced by j x 2^32 draws for sample j), so
 *   the samples do not depend on how they are batched; the seed restarts at every file. */

#define KILN_WHISPER_MAX_TEMPERATURES 16

typedef struct kiln_whisper_options {
  const char *language;      /* NULL: "en" for English-only models, else detected from the first
                                window (kiln_whisper_detect_language) */
  int32_t translate;         /* 0: transcribe (default), 1: translate to English */
  int32_t without_timestamps;/* 0 (default): predict timestamp tokens and make segments of them */
  int32_t beam_size;         /* 0 (default): greedy at T = 0; >= 1: beam search at T = 0 */
  double patience;           /* beam search: finished candidates = round(beam_size * patience);
                                0 means 1.0 */
  double length_penalty;     /* < 0 (default): rank by log-probability / length; 0..1: divide
                                by ((5 + length) / 6) ^ length_penalty */
  int32_t best_of;           /* samples ranked at T > 0 (default 5, as the whisper CLI) */
  double temperatures[KILN_WHISPER_MAX_TEMPERATURES]; /* tried in order (fallback) */
  int32_t n_temperatures;    /* default 6: 0.0, 0.2, 0.4, 0.6, 0.8, 1.0 */
  double compression_ratio_threshold; /* 2.4; NAN: off */
  double logprob_threshold;  /* -1.0; NAN: off */
  double no_speech_threshold;/* 0.6; NAN: off */
  int32_t condition_on_previous_text; /* 1 (default) */
  const char *initial_prompt;/* text put before the first window's prompt; may be NULL */
  double max_initial_timestamp; /* 1.0 s; <= 0: no limit */
  int32_t suppress_blank;    /* 1 (default) */
  int32_t sample_len;        /* at most this many tokens per window (default 224) */
  uint64_t seed;             /* sampling generator seed (default 0) */
  int32_t batch_size;        /* kiln_whisper_transcribe_files: windows (files) decoded together;
                                0 (default): kiln_whisper_max_windows(). Each window takes
                                max(beam_size, best_of) decoder rows when it may need them
                                (beam search at T = 0, sampling at T > 0 in the temperatures), and
                                the engines have max_batch x max_beams rows: build with --max-beam
                                of that to decode max_batch windows together */
  int32_t cpu_mel;           /* 1: compute the log-mel on the CPU also for CUDA engines (default 0:
                                on the GPU for CUDA engines in a CUDA build) */
} kiln_whisper_options;

kiln_whisper_options kiln_whisper_default_options(void);

/* One decoded window (DecodingResult). */
typedef struct kiln_whisper_decoding {
  int32_t *tokens;           /* sampled tokens (timestamps included), without the start sequence
                                and <|endoftext|> */
  int32_t n_tokens;
  char *text;                /* decoded text, stripped (timestamps and special tokens dropped) */
  char language[8];
  double temperature, sum_logprob, avg_logprob, no_speech_prob, compression_ratio;
} kiln_whisper_decoding;

void kiln_whisper_decoding_free(kiln_whisper_decoding *d);

/* Decode one window mel [n_mels x 3000] at one temperature (encodes it first). prompt (previous
 * text tokens, may be NULL) goes after <|startofprev|>; its last 223 tokens are used. */
kiln_status kiln_whisper_decode_window(kiln_whisper *w, const float *mel, const int32_t *prompt,
                                       int32_t n_prompt, double temperature,
                                       const kiln_whisper_options *o, kiln_whisper_decoding **out);

/* Language detection on mel [n_mels x 3000] (encodes it): the language token with the largest
 * probability after <|startoftranscript|>. probs (may be NULL) receives the probabilities of the
 * kiln_tokenizer_num_languages() language tokens in token order. KILN_ERR_UNSUPPORTED for
 * English-only models. *code is static. */
kiln_status kiln_whisper_detect_language(kiln_whisper *w, const float *mel, float *probs,
                                         const char **code);

/* openai-whisper's compression_ratio(): len(text) / len(zlib.compress(text)). */
double kiln_whisper_compression_ratio(const char *text);
/* transcribe()'s fallback decision for a decoded window: 1 when the compression ratio is above
 * its threshold or the average log-probability below its, unless the window is silence
 * (no_speech_prob above its threshold with a low average log-probability). */
int kiln_whisper_needs_fallback(const kiln_whisper_options *o, double compression_ratio,
                                double avg_logprob, double no_speech_prob);

typedef struct kiln_whisper_segment {
  int32_t id, seek;          /* seek: the window's first mel frame */
  double start, end;         /* seconds */
  char *text;
  int32_t *tokens;           /* with the timestamp tokens */
  int32_t n_tokens;
  double temperature, avg_logprob, compression_ratio, no_speech_prob;
} kiln_whisper_segment;

typedef struct kiln_whisper_transcript {
  char *text;                /* all segments' text (openai-whisper's result["text"]) */
  char language[8];
  kiln_whisper_segment *segments;
  int32_t n_segments;
} kiln_whisper_transcript;

void kiln_whisper_transcript_free(kiln_whisper_transcript *t);

/* Long-form transcription of samples[n] (16 kHz mono) with options o (NULL: defaults). */
kiln_status kiln_whisper_transcribe_audio(kiln_whisper *w, const float *samples, int64_t n,
                                          const kiln_whisper_options *o,
                                          kiln_whisper_transcript **out);

/* Many files, in-flight batching: up to o->batch_size files are transcribed at once, one window
 * each in a window slot; their windows advance together, one token per decoder step. A file's
 * windows stay sequential (the next window's seek and prompt come from the previous one); when
 * a slot's window finishes, the slot encodes its file's next window (or, once the file is done,
 * starts the next file) while the others go on. Each file's transcript is the same as
 * kiln_whisper_transcribe_audio() gives for it alone (rows of a batch do not mix; on the GPU
 * the matmul algorithm may differ with the batch size, so logits may differ in the last bits).
 * Callbacks, all called from this thread during the call:
 *   load(user_data, i, &samples, &n): file i's audio (16 kHz mono), asked for in file order when
 *     a slot is free. An error fails file i only (done() gets it). The library reads the samples
 *     once (for the log-mel) and then calls unload(user_data, samples) (may be NULL: no call).
 *   done(user_data, i, status, t): file i finished: KILN_OK with its transcript (the callee's:
 *     kiln_whisper_transcript_free), or an error (t NULL; kiln_last_error() says why). Called
 *     once per file, in the order files finish (not file order).
 * Returns KILN_OK when every file was attempted (some may have failed: see done); an error that
 * stops everything (out of memory, a CUDA error) is returned after done() got it for the files
 * in flight; files not started then get no done() call. */
typedef struct kiln_whisper_files {
  int64_t n;
  kiln_status (*load)(void *user_data, int64_t i, float **samples, int64_t *n_samples);
  void (*unload)(void *user_data, float *samples);
  void (*done)(void *user_data, int64_t i, kiln_status status, kiln_whisper_transcript *t);
  void *user_data;
} kiln_whisper_files;

kiln_status kiln_whisper_transcribe_files(kiln_whisper *w, const kiln_whisper_files *files,
                                          const kiln_whisper_options *o);

typedef enum kiln_whisper_format {
  KILN_WHISPER_FORMAT_TXT = 0, KILN_WHISPER_FORMAT_SRT, KILN_WHISPER_FORMAT_VTT,
  KILN_WHISPER_FORMAT_TSV, KILN_WHISPER_FORMAT_JSON, KILN_WHISPER_FORMAT_COUNT
} kiln_whisper_format;

/* The file name extension of a format ("srt"), and the format of a name (-1 when unknown). */
const char *kiln_whisper_format_name(kiln_whisper_format f);
int kiln_whisper_format_from_name(const char *name);

/* A transcript as openai-whisper's writers (utils.py: WriteTXT, WriteSRT, WriteVTT, WriteTSV,
 * WriteJSON with json.dump's defaults, floats as Python's repr) write it. *out is a
 * NUL-terminated string; free it with free(). */
kiln_status kiln_whisper_transcript_format(const kiln_whisper_transcript *t,
                                           kiln_whisper_format f, char **out);

#ifdef __cplusplus
}
#endif
#endif /* KILN_WHISPER_H */

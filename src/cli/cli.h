/* src/cli/cli.h - shared pieces of the `kiln` command-line tool (not part of the library). */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdint.h>

#include "kiln/kiln.h"

int cli_build(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_inspect(int argc, char **argv);
int cli_build_whisper(int argc, char **argv); /* argv[0] is "whisper" */
int cli_transcribe(int argc, char **argv);
int cli_eval(int argc, char **argv);
/* Build progress on stderr when it is a terminal (a kiln_progress_fn). */
void cli_print_progress(const char *stage, int64_t done, int64_t total, void *user);

/* Exit codes: 0 success, 1 failure, 2 bad usage. */
#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

/* "kiln <cmd>: GPU memory planned: ..." on stderr, kiln_whisper_memory_plan by part (nothing for
 * CPU engines). */
struct kiln_whisper;
void cli_print_whisper_memory(const char *cmd, const struct kiln_whisper *w);
/* Print "kiln <cmd>: <what>: <kiln_last_error()>" to stderr and return CLI_FAIL. */
int cli_fail(const char *cmd, const char *what, kiln_status s);
/* Options: is argv[*i] the flag `name`? Takes its value (next arg) into *value. */
int cli_flag_value(int argc, char **argv, int *i, const char *name, const char **value);
int cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out);
/* --weight-only none|int8|int4, --group-size 64|128 and --keep-float PATTERNS (kiln build,
 * kiln build whisper): when argv[*i] is one of them, parse its value into *wo / *group /
 * *keep_float (pointing into argv; "none" gives "") and set *handled. Returns CLI_OK or CLI_USAGE (message
 * printed). */
int cli_weight_only_flag(const char *cmd, int argc, char **argv, int *i, kiln_weight_only *wo, int32_t *group,
                         const char **keep_float, int *handled);
/* " (int8: 12 matmuls quantized, 1 left in fp16...)" for the build summary, "" without weight_only. */
void cli_weight_only_summary(kiln_weight_only wo, const kiln_build_report *r, kiln_dtype precision, char *buf,
                             size_t n);
/* --stream-encoder-weights [MiB] (kiln transcribe, kiln eval): when argv[*i] is the flag, set
 * *bytes (kiln_whisper_load_params.stream_encoder_bytes) to MiB << 20 when a number follows (as
 * the next argument or after '='), else KILN_WHISPER_STREAM_AUTO; set *handled. Returns CLI_OK or
 * CLI_USAGE (message printed). */
int cli_stream_encoder_flag(const char *cmd, int argc, char **argv, int *i, int64_t *bytes, int *handled);
/* "2x8x64" -> dims. */
int cli_parse_dims(const char *s, kiln_dims *d);
/* Shared by build and run: --plugins LIB.so (may repeat), -v/--verbose, --log-level. */
int cli_common_flag(const char *cmd, int argc, char **argv, int *i, int *handled);

#endif

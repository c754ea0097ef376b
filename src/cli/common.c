/* src/cli/common.c - argument helpers shared by the kiln subcommands. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/whisper.h"

int cli_fail(const char *cmd, const char *what, kiln_status s) {
  fprintf(stderr, "kiln %s: %s: %s\n", cmd, what, *kiln_last_error() ? kiln_last_error() : kiln_status_str(s));
  return CLI_FAIL;
}

int cli_flag_value(int argc, char **argv, int *i, const char *name, const char **value) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return 0;
  if (argv[*i][n] == '=') {
    *value = argv[*i] + n + 1;
    return 1;
  }
  if (argv[*i][n] != '\0') return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "kiln: %s needs a value\n", name);
    *value = NULL;
    return 1;
  }
  *value = argv[++*i];
  return 1;
}

int cli_parse_int(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end = NULL;
  if (!s) return CLI_USAGE;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !end || *end || end == s || v < lo || v > hi) {
    fprintf(stderr, "kiln %s: %s must be an integer from %lld to %lld (got \"%s\")\n", cmd, flag, (long long)lo,
            (long long)hi, s);
    return CLI_USAGE;
  }
  *out = v;
  return CLI_OK;
}

int cli_weight_only_flag(const char *cmd, int argc, char **argv, int *i, kiln_weight_only *wo, int32_t *group,
                         const char **keep_float, int *handled) {
  const char *v = NULL;
  *handled = 1;
  if (cli_flag_value(argc, argv, i, "--weight-only", &v)) {
    if (v && strcmp(v, "none") == 0) *wo = KILN_WEIGHT_ONLY_NONE;
    else if (v && strcmp(v, "int8") == 0) *wo = KILN_WEIGHT_ONLY_INT8;
    else if (v && strcmp(v, "int4") == 0) *wo = KILN_WEIGHT_ONLY_INT4;
    else return fprintf(stderr, "kiln %s: --weight-only is none, int8 or int4\n", cmd), CLI_USAGE;
    return CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--group-size", &v)) {
    if (!v || (strcmp(v, "64") != 0 && strcmp(v, "128") != 0))
      return fprintf(stderr, "kiln %s: --group-size is 64 or 128\n", cmd), CLI_USAGE;
    *group = (int32_t)atoi(v);
    return CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--keep-float", &v)) {
    if (!v) return fprintf(stderr, "kiln %s: --keep-float takes comma-separated weight name patterns\n", cmd), CLI_USAGE;
    *keep_float = strcmp(v, "none") == 0 ? "" : v;
    return CLI_OK;
  }
  *handled = 0;
  return CLI_OK;
}

int cli_stream_encoder_flag(const char *cmd, int argc, char **argv, int *i, int64_t *bytes, int *handled) {
  static const char flag[] = "--stream-encoder-weights";
  const char *arg = argv[*i], *v = NULL;
  int64_t mib;
  *handled = strncmp(arg, flag, sizeof flag - 1) == 0 && (arg[sizeof flag - 1] == '\0' || arg[sizeof flag - 1] == '=');
  if (!*handled) return CLI_OK;
  if (arg[sizeof flag - 1] == '=') v = arg + sizeof flag;
  else if (*i + 1 < argc && argv[*i + 1][0] >= '0' && argv[*i + 1][0] <= '9') v = argv[++*i]; /* a size, not a file */
  if (!v) return *bytes = KILN_WHISPER_STREAM_AUTO, CLI_OK;
  if (cli_parse_int(cmd, flag, v, 1, (int64_t)1 << 30, &mib)) return CLI_USAGE;
  *bytes = mib << 20;
  return CLI_OK;
}

void cli_weight_only_summary(kiln_weight_only wo, const kiln_build_report *r, kiln_dtype precision, char *buf,
                             size_t n) {
  if (wo == KILN_WEIGHT_ONLY_NONE) {
    snprintf(buf, n, "%s", "");
    return;
  }
  snprintf(buf, n, " (%s: %d matmuls quantized, %d left in %s%s)", wo == KILN_WEIGHT_ONLY_INT8 ? "int8" : "int4",
           (int)r->num_quantized, (int)r->num_quantize_skipped, kiln_dtype_name(precision),
           r->num_quantize_skipped ? "; kiln build -v says why" : "");
}

int cli_parse_dims(const char *s, kiln_dims *d) {
  memset(d, 0, sizeof *d);
  if (!s || !*s) return -1;
  const char *p = s;
  while (*p) {
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 0 || d->rank >= KILN_MAX_DIMS) return -1;
    d->d[d->rank++] = v;
    if (*end == 'x' || *end == 'X' || *end == ',') p = end + 1;
    else if (*end == '\0') p = end;
    else return -1;
  }
  return 0;
}

int cli_common_flag(const char *cmd, int argc, char **argv, int *i, int *handled) {
  const char *v = NULL;
  *handled = 1;
  if (strcmp(argv[*i], "-v") == 0 || strcmp(argv[*i], "--verbose") == 0) {
    kiln_log_set_level(kiln_log_get_level() > KILN_LOG_INFO ? KILN_LOG_INFO : KILN_LOG_VERBOSE);
    return CLI_OK;
  }
  if (cli_flag_value(argc, argv, i, "--log-level", &v)) {
    static const char *names[] = {"debug", "verbose", "info", "warning", "error", "none"};
    for (int k = 0; v && k < 6; k++)
      if (strcmp(v, names[k]) == 0) {
        kiln_log_set_level((kiln_log_level)k);
        return CLI_OK;
      }
    fprintf(stderr, "kiln %s: --log-level is one of debug, verbose, info, warning, error, none\n", cmd);
    return CLI_USAGE;
  }
  if (cli_flag_value(argc, argv, i, "--plugins", &v)) {
    if (!v) return CLI_USAGE;
    kiln_status s = kiln_plugin_registry_load(kiln_plugin_registry_default(), v);
    return s == KILN_OK ? CLI_OK : cli_fail(cmd, "loading plugins", s);
  }
  *handled = 0;
  return CLI_OK;
}

void cli_print_whisper_memory(const char *cmd, const kiln_whisper *w) {
  kiln_whisper_memory m;
  if (kiln_whisper_memory_plan(w, &m) != KILN_OK || m.total <= 0) return;
  const double mib = 1048576.0;
  char enc[96];
  if (m.encoder_ring)
    snprintf(enc, sizeof enc, "encoder weights streamed (a %.0f MiB ring in the activations)", (double)m.encoder_ring / mib);
  else
    snprintf(enc, sizeof enc, "encoder weights %.0f", (double)m.encoder_weights / mib);
  fprintf(stderr,
          "kiln %s: GPU memory planned: %.0f MiB = decoder weights %.0f + %s + activations %.0f + "
          "cross-attention KV %.0f + self-attention KV %.0f + buffers %.0f\n",
          cmd, (double)m.total / mib, (double)m.decoder_weights / mib, enc, (double)m.context / mib,
          (double)m.cross_kv / mib, (double)m.self_kv / mib, (double)m.buffers / mib);
}

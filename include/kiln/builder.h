/* kiln/builder.h - turning a network into an engine file.
 *
 * kiln_build() validates the network (every profile's shapes inferred through every layer),
 * converts weights to the chosen precision, fuses layers where it pays (matmul + bias +
 * activation, residual add + LayerNorm), chooses a tactic for each matmul and plugin layer by
 * timing the candidates on the target GPU (cached in an optional timing-cache file), plans
 * activation memory by liveness, and serializes everything into an engine image.
 *
 * Weight-only quantization (weight_only INT8 / INT4): every matmul whose weight is a 2-D
 * constant read by matmuls only becomes a quantized matmul whose weights stay int8 (one fp32
 * scale per output row) or int4 (one fp32 scale per group_size consecutive weights of a row)
 * in the engine and are dequantized inside the kernel; activations keep the build precision.
 * Left in the build precision, with a log line (kiln_log, level INFO) saying why: a weight that
 * another kind of layer also reads (a token embedding table tied to the output projection), an
 * int4 weight whose K is not a multiple of group_size, a weight with non-finite values, a weight
 * whose name matches a keep_float pattern. Conv1d weights stay float. The report counts both.
 *
 * Usage:
 *   kiln_build_params p = kiln_build_default_params();
 *   p.target = KILN_TARGET_CUDA; p.precision = KILN_DTYPE_FP16;
 *   kiln_build_report report;
 *   kiln_status s = kiln_build_to_file(net, &p, "model.engine", &report);
 *
 * Thread-safety: builds of different networks may run on different threads; one network must
 * not be changed during its build.
 */
#ifndef KILN_BUILDER_H
#define KILN_BUILDER_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/network.h"
#include "kiln/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called during long builds: stage name, done and total steps. */
typedef void (*kiln_progress_fn)(const char *stage, int64_t done, int64_t total, void *user_data);

/* Weight-only quantization of matmul weights (see the top of this file). */
typedef enum kiln_weight_only {
  KILN_WEIGHT_ONLY_NONE = 0, /* weights in the build precision */
  KILN_WEIGHT_ONLY_INT8 = 1, /* int8 codes, one fp32 scale per output row */
  KILN_WEIGHT_ONLY_INT4 = 2  /* int4 codes, one fp32 scale per group_size weights of a row */
} kiln_weight_only;

typedef struct kiln_build_params {
  kiln_target target;          /* default: CUDA when kiln was built with CUDA, else CPU */
  kiln_dtype precision;        /* fp32 (default), fp16 or bf16 */
  int32_t device;              /* CUDA device ordinal (default 0) */
  int32_t enable_fusion;       /* default 1 */
  int32_t timing_iterations;   /* timed runs per tactic candidate (default 10) */
  size_t max_workspace_bytes;  /* per-layer workspace limit for tactics (default 32 MiB) */
  const char *timing_cache;    /* path of a timing-cache file to read and update, or NULL */
  kiln_plugin_registry *plugins; /* NULL: kiln_plugin_registry_default() */
  kiln_progress_fn progress;   /* may be NULL */
  void *progress_user_data;
  kiln_weight_only weight_only; /* default KILN_WEIGHT_ONLY_NONE */
  int32_t group_size;          /* int4 group along K: a positive multiple of 32 (default 128; 64
                                  is the other common choice); int8 ignores it */
  const char *keep_float;      /* under weight_only: comma-separated fnmatch(3) patterns of weight
                                  names (e.g. "model.decoder.*,*.fc2.weight"); a matmul whose
                                  weight matches one stays in the build precision (NULL or "":
                                  none; each pattern at most 255 characters). Default NULL */
} kiln_build_params;

kiln_build_params kiln_build_default_params(void);

/* What a build produced. */
typedef struct kiln_build_report {
  size_t weight_bytes;         /* weights stored in the engine */
  size_t activation_bytes;     /* planned activation arena per context (max over profiles) */
  size_t activation_naive_bytes; /* sum of all activations without reuse, for comparison */
  size_t workspace_bytes;      /* largest per-layer workspace */
  int32_t num_layers;          /* after fusion */
  int32_t num_fused;           /* layers removed by fusion */
  int32_t tactics_timed;       /* candidates timed in this build */
  int32_t tactics_cached;      /* choices taken from the timing cache */
  int32_t num_quantized;       /* matmuls turned into weight-only quantized matmuls */
  int32_t num_quantize_skipped; /* matmuls left in the build precision under weight_only */
  double build_seconds;
} kiln_build_report;

/* Build into memory: *image is malloc()ed (free with kiln_free()). report may be NULL. */
kiln_status kiln_build(const kiln_network *net, const kiln_build_params *params, void **image,
                       size_t *size, kiln_build_report *report);
/* Build and write to `path` (written to a temporary file, then renamed: a failed build leaves
 * an existing file untouched). */
kiln_status kiln_build_to_file(const kiln_network *net, const kiln_build_params *params,
                               const char *path, kiln_build_report *report);

void kiln_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* KILN_BUILDER_H */

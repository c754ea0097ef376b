/* src/cli/build.c - `kiln build`: a network (JSON, or the built-in attention network) -> engine;
 * `kiln build whisper` is in whisper.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void build_help(FILE *f) {
  fprintf(f,
          "usage: kiln build --network NET.json [options] -o OUT.engine\n"
          "       kiln build attention --num-heads H --head-size D --max-batch B --max-seq S [options] -o OUT.engine\n"
          "       kiln build whisper --checkpoint DIR [options] -o OUT_DIR   (kiln build whisper --help)\n"
          "\n"
          "Builds an engine for one target: validates every profile's shapes, converts the weights to the\n"
          "precision asked for, fuses layers (matmul+bias+activation, residual add+LayerNorm), times the\n"
          "candidate kernels of each matmul and plugin on this GPU and keeps the fastest, and plans the\n"
          "activation memory. The JSON network format is documented in include/kiln/network_json.h.\n"
          "\n"
          "options:\n"
          "  -o, --output FILE       engine file to write (required)\n"
          "  --target cuda|cpu       where the engine will run (default: cuda if kiln has CUDA, else cpu)\n"
          "  --dtype fp32|fp16|bf16  compute precision (default fp32; attention default fp16)\n"
          "  --device N              GPU to build for and time on (default 0)\n"
          "  --timing-cache FILE     reuse and update tactic timings (rebuilds skip the timing)\n"
          "  --no-fusion             keep every layer as written\n"
          "  --weight-only none|int8|int4  keep matmul weights quantized in the engine (default none):\n"
          "                          int8 with one scale per output row, int4 with one scale per group;\n"
          "                          dequantized inside the kernels (weights about 1/2 or 1/4 of fp16);\n"
          "                          a weight another layer also reads (tied embeddings) stays float\n"
          "  --group-size 64|128     int4 weights per scale along K (default 128)\n"
          "  --keep-float PATTERNS   with --weight-only: matmuls whose weight name matches one of these\n"
          "                          comma-separated shell patterns (fnmatch) stay in --dtype\n"
          "  --iterations N          timed runs per tactic candidate (default 10)\n"
          "  --workspace MIB         workspace limit per layer for tactics (default 32)\n"
          "  --plugins LIB.so        load plugins from a shared library first (may repeat)\n"
          "  -v, --verbose           log fusions and every tactic's time\n"
          "\n"
          "attention network (the Triton plugin example's build.py):\n"
          "  inputs q, k, v [batch, heads, seq, head_size], output out; batch and seq are dynamic\n"
          "  (profile 1..max, opt = max).\n"
          "  --num-heads H --head-size D --max-batch B --max-seq S\n"
          "  --causal                causal mask\n"
          "  --attention auto|fmha|plain  the fused Triton plugin or the plain layer (default auto:\n"
          "                          fmha when registered and the target is cuda)\n"
          "\n"
          "examples:\n"
          "  kiln build --network examples/mlp.json --dtype fp16 --timing-cache kiln.cache -o mlp.engine\n"
          "  kiln build --network examples/mlp.json --dtype fp16 --weight-only int4 --group-size 64 -o mlp-int4.engine\n"
          "  kiln build attention --num-heads 32 --head-size 64 --max-batch 8 --max-seq 512 --dtype fp16 -o attn.engine\n");
}

typedef struct attn_opts {
  int64_t heads, head_size, max_batch, max_seq;
  int causal;
  const char *mode;
} attn_opts;

static kiln_status attention_network(const attn_opts *o, kiln_target target, kiln_network **out) {
  kiln_network *net = NULL;
  kiln_status s = kiln_network_create(&net);
  if (s != KILN_OK) return s;
  int64_t dims[4] = {-1, o->heads, -1, o->head_size};
  int32_t q = kiln_network_add_input(net, "q", KILN_DTYPE_FP32, 4, dims);
  int32_t k = kiln_network_add_input(net, "k", KILN_DTYPE_FP32, 4, dims);
  int32_t v = kiln_network_add_input(net, "v", KILN_DTYPE_FP32, 4, dims);
  float scale = (float)(1.0 / sqrt((double)o->head_size));
  int use_fmha = strcmp(o->mode, "fmha") == 0 ||
                 (strcmp(o->mode, "auto") == 0 && target == KILN_TARGET_CUDA &&
                  kiln_plugin_registry_find(kiln_plugin_registry_default(), "fmha", 1));
  int32_t y;
  if (use_fmha) {
    int32_t heads = (int32_t)o->heads, hs = (int32_t)o->head_size, causal = o->causal;
    kiln_plugin_field f[5] = {{"num_heads", KILN_PLUGIN_FIELD_INT32, 1, &heads},
                              {"head_size", KILN_PLUGIN_FIELD_INT32, 1, &hs},
                              {"scale", KILN_PLUGIN_FIELD_FLOAT32, 1, &scale},
                              {"causal", KILN_PLUGIN_FIELD_INT32, 1, &causal},
                              {"layout", KILN_PLUGIN_FIELD_STRING, 4, "bhsd"}};
    int32_t in[3] = {q, k, v};
    y = kiln_network_add_plugin(net, "attention", "fmha", 1, 3, in, 5, f);
  } else {
    y = kiln_network_add_attention(net, "attention", q, k, v, scale, o->causal);
  }
  if (q < 0 || k < 0 || v < 0 || y < 0) s = (kiln_status)(q < 0 ? q : k < 0 ? k : v < 0 ? v : y);
  if (s == KILN_OK) s = kiln_network_mark_output(net, y, "out");
  int32_t p = s == KILN_OK ? kiln_network_add_profile(net) : 0;
  int64_t mn[4] = {1, o->heads, 1, o->head_size}, mx[4] = {o->max_batch, o->heads, o->max_seq, o->head_size};
  static const char *const names[3] = {"q", "k", "v"};
  for (int i = 0; s == KILN_OK && i < 3; i++) s = kiln_network_set_profile_dims(net, p, names[i], mn, mx, mx);
  if (s != KILN_OK) {
    kiln_network_destroy(net);
    return s;
  }
  *out = net;
  return KILN_OK;
}

void cli_print_progress(const char *stage, int64_t done, int64_t total, void *user) {
  (void)user;
  if (!isatty(2)) return;
  fprintf(stderr, "\r  %-16s %lld/%lld%s", stage, (long long)done, (long long)total, done == total ? "\n" : "");
  fflush(stderr);
}

int cli_build(int argc, char **argv) {
  kiln_build_params p = kiln_build_default_params();
  const char *network = NULL, *output = NULL, *v = NULL;
  attn_opts ao = {0, 0, 0, 0, 0, "auto"};
  int builtin_attention = 0, dtype_given = 0;
  int64_t n;
  if (argc > 1 && strcmp(argv[1], "whisper") == 0) return cli_build_whisper(argc - 1, argv + 1);
  for (int i = 1; i < argc; i++) {
    int handled;
    int rc = cli_common_flag("build", argc, argv, &i, &handled);
    if (rc == CLI_OK && !handled) rc = cli_weight_only_flag("build", argc, argv, &i, &p.weight_only, &p.group_size, &p.keep_float, &handled);
    if (rc != CLI_OK) return rc;
    if (handled) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      build_help(stdout);
      return CLI_OK;
    } else if (i == 1 && strcmp(argv[i], "attention") == 0) {
      builtin_attention = 1;
    } else if (cli_flag_value(argc, argv, &i, "--network", &v)) {
      if (!(network = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "-o", &v) || cli_flag_value(argc, argv, &i, "--output", &v)) {
      if (!(output = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--target", &v)) {
      if (v && strcmp(v, "cpu") == 0) p.target = KILN_TARGET_CPU;
      else if (v && strcmp(v, "cuda") == 0) p.target = KILN_TARGET_CUDA;
      else return fprintf(stderr, "kiln build: --target is cuda or cpu\n"), CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--dtype", &v)) {
      p.precision = kiln_dtype_from_name(v);
      dtype_given = 1;
      if (!kiln_dtype_is_float(p.precision)) return fprintf(stderr, "kiln build: --dtype is fp32, fp16 or bf16\n"), CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("build", "--device", v, 0, 1024, &n)) return CLI_USAGE;
      p.device = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--timing-cache", &v)) {
      if (!(p.timing_cache = v)) return CLI_USAGE;
    } else if (strcmp(argv[i], "--no-fusion") == 0) {
      p.enable_fusion = 0;
    } else if (cli_flag_value(argc, argv, &i, "--iterations", &v)) {
      if (cli_parse_int("build", "--iterations", v, 1, 100000, &n)) return CLI_USAGE;
      p.timing_iterations = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--workspace", &v)) {
      if (cli_parse_int("build", "--workspace", v, 0, 1 << 20, &n)) return CLI_USAGE;
      p.max_workspace_bytes = (size_t)n << 20;
    } else if (cli_flag_value(argc, argv, &i, "--num-heads", &v)) {
      if (cli_parse_int("build", "--num-heads", v, 1, 1024, &ao.heads)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--head-size", &v)) {
      if (cli_parse_int("build", "--head-size", v, 1, 1024, &ao.head_size)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--max-batch", &v) || cli_flag_value(argc, argv, &i, "--max-batch-size", &v)) {
      if (cli_parse_int("build", "--max-batch", v, 1, 1 << 20, &ao.max_batch)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--max-seq", &v) || cli_flag_value(argc, argv, &i, "--max-seq-len", &v)) {
      if (cli_parse_int("build", "--max-seq", v, 1, 1 << 24, &ao.max_seq)) return CLI_USAGE;
    } else if (strcmp(argv[i], "--causal") == 0) {
      ao.causal = 1;
    } else if (cli_flag_value(argc, argv, &i, "--attention", &v)) {
      if (!v || (strcmp(v, "auto") && strcmp(v, "fmha") && strcmp(v, "plain")))
        return fprintf(stderr, "kiln build: --attention is auto, fmha or plain\n"), CLI_USAGE;
      ao.mode = v;
    } else {
      fprintf(stderr, "kiln build: unknown option \"%s\" (kiln build --help lists them)\n", argv[i]);
      return CLI_USAGE;
    }
  }
  if (!output) return fprintf(stderr, "kiln build: say where to write the engine with -o FILE\n"), CLI_USAGE;
  if (!builtin_attention && !network)
    return fprintf(stderr, "kiln build: give a network with --network FILE.json, or a built-in one (kiln build attention ...)\n"),
           CLI_USAGE;
  kiln_network *net = NULL;
  kiln_status s;
  if (builtin_attention) {
    if (!ao.heads || !ao.head_size || !ao.max_batch || !ao.max_seq)
      return fprintf(stderr, "kiln build attention: --num-heads, --head-size, --max-batch and --max-seq are required\n"), CLI_USAGE;
    if (!dtype_given) p.precision = KILN_DTYPE_FP16;
    s = attention_network(&ao, p.target, &net);
  } else {
    s = kiln_network_from_json_file(network, &net);
  }
  if (s != KILN_OK) return cli_fail("build", "reading the network", s);
  p.progress = cli_print_progress;
  kiln_build_report r;
  s = kiln_build_to_file(net, &p, output, &r);
  kiln_network_destroy(net);
  if (s != KILN_OK) return cli_fail("build", "building the engine", s);
  char wo[160];
  cli_weight_only_summary(p.weight_only, &r, p.precision, wo, sizeof wo);
  fprintf(stderr,
          "kiln build: wrote %s in %.2f s: %d layers (%d fused away), weights %zu B%s, activations %zu B "
          "(%zu B without reuse), workspace %zu B, tactics timed %d, from cache %d\n",
          output, r.build_seconds, r.num_layers, r.num_fused, r.weight_bytes, wo, r.activation_bytes,
          r.activation_naive_bytes, r.workspace_bytes, r.tactics_timed, r.tactics_cached);
  return CLI_OK;
}

/* src/cli/run.c - `kiln run`: run an engine on .npy or random inputs, verify it against the CPU
 * backend, and benchmark it the way trtexec reports (GPU compute time and end-to-end latency). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/error.h"
#include "kiln/npy.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>
#endif

#define MAX_IO 64

static void run_help(FILE *f) {
  fprintf(f,
          "usage: kiln run ENGINE [options]\n"
          "\n"
          "Runs an engine once (or many times with --benchmark). Inputs come from .npy files, or are random\n"
          "(uniform in [-1, 1); int32 inputs in [0, 8)) with a fixed seed when not given. Shapes of\n"
          "dynamic inputs come from --shapes, the .npy file, or the profile's opt shape.\n"
          "\n"
          "options:\n"
          "  --input NAME=FILE.npy     input data (fp32/fp16/int32/int8 .npy; floats converted to the engine's dtype)\n"
          "  --shapes NAME=AxBxC,...   input shapes, e.g. --shapes q=8x32x512x64,k=8x32x512x64\n"
          "  --output-dir DIR          write every output as DIR/NAME.npy (fp32)\n"
          "  --profile N               optimization profile to use (default 0)\n"
          "  --verify                  also run the same engine on the CPU backend and compare the outputs\n"
          "  --benchmark               time the engine: warm-up, then timed iterations\n"
          "  --warmup N                warm-up runs (default 10)\n"
          "  --iterations N            timed runs (default 100)\n"
          "  --cuda-graph              capture the run as a CUDA graph and replay it\n"
          "  --device N                GPU to run on (default 0)\n"
          "  --seed N                  seed for random inputs (default 1)\n"
          "  --plugins LIB.so          load plugins from a shared library first (may repeat)\n"
          "  -v, --verbose, --log-level LEVEL\n"
          "\n"
          "The benchmark reports, as trtexec does, min/mean/median/p90/p95/p99 of the GPU compute time\n"
          "(device events around each enqueue) and of the end-to-end latency (host-to-device copies,\n"
          "compute, device-to-host copies), and the throughput in inferences per second.\n"
          "\n"
          "examples:\n"
          "  kiln run attn.engine --shapes q=8x32x512x64,k=8x32x512x64,v=8x32x512x64 --verify --benchmark\n"
          "  kiln run mlp.engine --input x=x.npy --output-dir out/\n");
}

typedef struct io_buf {
  kiln_io_info info;
  kiln_dims dims;
  void *host;   /* in the engine's dtype */
  void *device; /* CUDA engines */
  size_t bytes;
  const char *npy;
  int has_shape;
} io_buf;

typedef struct run_opts {
  const char *engine, *output_dir;
  int32_t profile, device;
  int verify, benchmark, cuda_graph;
  int64_t warmup, iterations;
  uint64_t seed;
} run_opts;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int parse_shapes(const char *s, io_buf *io, int n_io) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    char *eq = strchr(tok, '=');
    if (!eq) return -1;
    *eq = '\0';
    int found = 0;
    for (int i = 0; i < n_io; i++)
      if (io[i].info.is_input && strcmp(io[i].info.name, tok) == 0) {
        if (cli_parse_dims(eq + 1, &io[i].dims)) return -1;
        io[i].has_shape = found = 1;
      }
    if (!found) {
      fprintf(stderr, "kiln run: --shapes names \"%s\", which is not an input of this engine\n", tok);
      return -1;
    }
  }
  return 0;
}

static void fill_random(io_buf *b, uint64_t seed) {
  int64_t n = kiln_dims_count(&b->dims);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 12345;
  for (int64_t i = 0; i < n; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    float v = (float)((x >> 40) & 0xffffff) / 8388608.0f - 1.0f;
    switch (b->info.dtype) {
      case KILN_DTYPE_FP32: ((float *)b->host)[i] = v; break;
      case KILN_DTYPE_FP16: ((uint16_t *)b->host)[i] = kiln_fp32_to_fp16(v); break;
      case KILN_DTYPE_BF16: ((uint16_t *)b->host)[i] = kiln_fp32_to_bf16(v); break;
      case KILN_DTYPE_INT32: ((int32_t *)b->host)[i] = (int32_t)((x >> 33) % 8); break;
      case KILN_DTYPE_INT8: ((int8_t *)b->host)[i] = (int8_t)((int32_t)((x >> 33) % 255) - 127); break;
      default: break;
    }
  }
}

/* Read an .npy input into b->host in the engine dtype. */
static kiln_status load_input(io_buf *b) {
  kiln_npy a;
  kiln_status s = kiln_npy_read(b->npy, &a);
  if (s != KILN_OK) return s;
  if (b->has_shape && !kiln_dims_equal(&a.dims, &b->dims)) {
    char x[128], y[128];
    fprintf(stderr, "kiln run: %s has shape %s but --shapes says %s\n", b->npy, kiln_dims_str(&a.dims, x, sizeof x),
            kiln_dims_str(&b->dims, y, sizeof y));
    s = KILN_ERR_SHAPE;
  }
  b->dims = a.dims;
  b->has_shape = 1;
  int64_t n = kiln_dims_count(&a.dims);
  b->bytes = kiln_dtype_bytes(b->info.dtype, n);
  b->host = s == KILN_OK ? malloc(b->bytes + 1) : NULL;
  if (s == KILN_OK && !b->host) s = KILN_ERR_OUT_OF_MEMORY;
  if (s == KILN_OK) {
    if (kiln_dtype_is_float(b->info.dtype) && kiln_dtype_is_float(a.dtype))
      kiln_convert_floats(b->host, b->info.dtype, a.data, a.dtype, n);
    else if ((b->info.dtype == KILN_DTYPE_INT32 || b->info.dtype == KILN_DTYPE_INT8) && a.dtype == b->info.dtype)
      memcpy(b->host, a.data, b->bytes);
    else if (b->info.dtype == KILN_DTYPE_INT32 && a.dtype == KILN_DTYPE_INT64)
      for (int64_t i = 0; i < n; i++) ((int32_t *)b->host)[i] = (int32_t)((const int64_t *)a.data)[i];
    else {
      fprintf(stderr, "kiln run: %s holds %s but input \"%s\" is %s\n", b->npy, kiln_dtype_name(a.dtype), b->info.name,
              kiln_dtype_name(b->info.dtype));
      s = KILN_ERR_UNSUPPORTED;
    }
  }
  kiln_npy_free(&a);
  return s;
}

/* Float copy of an output for printing, comparing and saving. */
static float *as_floats(const io_buf *b) {
  int64_t n = kiln_dims_count(&b->dims);
  float *f = malloc((size_t)n * sizeof *f + 4);
  if (!f) return NULL;
  if (kiln_dtype_is_float(b->info.dtype)) kiln_convert_floats(f, KILN_DTYPE_FP32, b->host, b->info.dtype, n);
  else if (b->info.dtype == KILN_DTYPE_INT8)
    for (int64_t i = 0; i < n; i++) f[i] = (float)((const int8_t *)b->host)[i];
  else
    for (int64_t i = 0; i < n; i++) f[i] = (float)((const int32_t *)b->host)[i];
  return f;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void print_stats(const char *what, double *v, int64_t n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += v[i];
#define PCT(p) v[(int64_t)((double)(n - 1) * (p) + 0.5)]
  fprintf(stderr, "  %-22s min %.4f  mean %.4f  median %.4f  p90 %.4f  p95 %.4f  p99 %.4f ms\n", what, v[0], sum / (double)n,
          PCT(0.5), PCT(0.9), PCT(0.95), PCT(0.99));
#undef PCT
}

typedef struct runner {
  kiln_engine *engine;
  kiln_context *ctx;
  io_buf *io;
  int n_io;
  int cuda;
  void *stream;
} runner;

static kiln_status copy_in(runner *r) {
#ifdef KILN_HAVE_CUDA
  if (r->cuda)
    for (int i = 0; i < r->n_io; i++)
      if (r->io[i].info.is_input && cudaMemcpyAsync(r->io[i].device, r->io[i].host, r->io[i].bytes, cudaMemcpyHostToDevice,
                                                    (cudaStream_t)r->stream) != cudaSuccess)
        return KILN_ERR_CUDA;
#endif
  (void)r;
  return KILN_OK;
}

static kiln_status copy_out(runner *r) {
#ifdef KILN_HAVE_CUDA
  if (r->cuda) {
    for (int i = 0; i < r->n_io; i++)
      if (!r->io[i].info.is_input && cudaMemcpyAsync(r->io[i].host, r->io[i].device, r->io[i].bytes, cudaMemcpyDeviceToHost,
                                                     (cudaStream_t)r->stream) != cudaSuccess)
        return KILN_ERR_CUDA;
    if (cudaStreamSynchronize((cudaStream_t)r->stream) != cudaSuccess) return KILN_ERR_CUDA;
  }
#endif
  (void)r;
  return KILN_OK;
}

/* Load the engine, set shapes, allocate and bind every input and output. */
static kiln_status runner_open(runner *r, const run_opts *o, io_buf *io, int n_io, int on_cpu) {
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.device = o->device;
  lp.run_on_cpu = on_cpu;
  memset(r, 0, sizeof *r);
  r->io = io;
  r->n_io = n_io;
  KILN_TRY(kiln_engine_load(o->engine, &lp, &r->engine));
  r->cuda = !on_cpu && kiln_engine_target(r->engine) == KILN_TARGET_CUDA;
  KILN_TRY(kiln_context_create(r->engine, o->profile, &r->ctx));
  for (int i = 0; i < n_io; i++)
    if (io[i].info.is_input) KILN_TRY(kiln_context_set_input_shape(r->ctx, io[i].info.name, &io[i].dims));
  for (int i = 0; i < n_io; i++) {
    if (!io[i].info.is_input) {
      KILN_TRY(kiln_context_get_shape(r->ctx, io[i].info.name, &io[i].dims));
      io[i].bytes = kiln_dtype_bytes(io[i].info.dtype, kiln_dims_count(&io[i].dims));
      free(io[i].host);
      io[i].host = calloc(1, io[i].bytes + 1);
      if (!io[i].host) return KILN_ERR_OUT_OF_MEMORY;
    }
    void *ptr = io[i].host;
#ifdef KILN_HAVE_CUDA
    if (r->cuda) {
      if (cudaMalloc(&io[i].device, io[i].bytes + 1) != cudaSuccess) return KILN_ERR_OUT_OF_DEVICE_MEMORY;
      ptr = io[i].device;
    }
#endif
    KILN_TRY(kiln_context_set_tensor(r->ctx, io[i].info.name, ptr));
  }
#ifdef KILN_HAVE_CUDA
  if (r->cuda) {
    cudaStream_t s;
    if (cudaStreamCreate(&s) != cudaSuccess) return KILN_ERR_CUDA;
    r->stream = s;
    if (o->cuda_graph) KILN_TRY(kiln_context_set_cuda_graphs(r->ctx, 1));
  }
#endif
  return KILN_OK;
}

static void runner_close(runner *r) {
#ifdef KILN_HAVE_CUDA
  for (int i = 0; r->cuda && i < r->n_io; i++) {
    cudaFree(r->io[i].device);
    r->io[i].device = NULL;
  }
  if (r->stream) cudaStreamDestroy((cudaStream_t)r->stream);
#endif
  kiln_context_destroy(r->ctx);
  kiln_engine_destroy(r->engine);
}

static kiln_status run_once(runner *r) {
  KILN_TRY(copy_in(r));
  KILN_TRY(kiln_context_enqueue(r->ctx, r->stream));
  return copy_out(r);
}

static int benchmark(runner *r, const run_opts *o) {
  double *gpu = calloc((size_t)o->iterations, sizeof *gpu), *e2e = calloc((size_t)o->iterations, sizeof *e2e);
  if (!gpu || !e2e) return free(gpu), free(e2e), CLI_FAIL;
  kiln_status s = KILN_OK;
  for (int64_t i = 0; i < o->warmup && s == KILN_OK; i++) s = run_once(r);
#ifdef KILN_HAVE_CUDA
  cudaEvent_t a = NULL, b = NULL;
  if (r->cuda) cudaEventCreate(&a), cudaEventCreate(&b);
#endif
  double t_all = now_ms();
  for (int64_t i = 0; i < o->iterations && s == KILN_OK; i++) {
    double t0 = now_ms();
    s = copy_in(r);
#ifdef KILN_HAVE_CUDA
    if (r->cuda) cudaEventRecord(a, (cudaStream_t)r->stream);
#endif
    double c0 = now_ms();
    if (s == KILN_OK) s = kiln_context_enqueue(r->ctx, r->stream);
    double c1 = now_ms();
#ifdef KILN_HAVE_CUDA
    if (r->cuda) cudaEventRecord(b, (cudaStream_t)r->stream);
#endif
    if (s == KILN_OK) s = copy_out(r);
    e2e[i] = now_ms() - t0;
    gpu[i] = c1 - c0;
#ifdef KILN_HAVE_CUDA
    float ms = 0;
    if (r->cuda && s == KILN_OK) cudaEventElapsedTime(&ms, a, b), gpu[i] = ms;
#endif
  }
  double total = now_ms() - t_all;
#ifdef KILN_HAVE_CUDA
  if (a) cudaEventDestroy(a);
  if (b) cudaEventDestroy(b);
#endif
  if (s != KILN_OK) {
    free(gpu), free(e2e);
    return cli_fail("run", "benchmark", s);
  }
  fprintf(stderr, "benchmark: %lld warm-up runs, %lld timed runs%s\n", (long long)o->warmup, (long long)o->iterations,
          o->cuda_graph ? " (CUDA graph)" : "");
  print_stats(r->cuda ? "GPU compute time" : "compute time", gpu, o->iterations);
  print_stats("end-to-end latency", e2e, o->iterations);
  fprintf(stderr, "  throughput             %.2f inferences/s (%lld runs in %.1f ms, copies included)\n",
          1e3 * (double)o->iterations / total, (long long)o->iterations, total);
  free(gpu), free(e2e);
  return CLI_OK;
}

/* Compare every output with the CPU backend's run of the same engine on the same inputs. */
static int verify(const run_opts *o, io_buf *io, int n_io) {
  io_buf ref[MAX_IO];
  runner r;
  memcpy(ref, io, (size_t)n_io * sizeof *io);
  for (int i = 0; i < n_io; i++) ref[i].host = ref[i].info.is_input ? io[i].host : NULL, ref[i].device = NULL;
  kiln_status s = runner_open(&r, o, ref, n_io, 1);
  if (s == KILN_OK) s = run_once(&r);
  int rc = s == KILN_OK ? CLI_OK : cli_fail("run", "running on the CPU backend for --verify", s);
  double tol = kiln_engine_precision(r.engine) == KILN_DTYPE_FP32 ? 1e-8 : kiln_engine_precision(r.engine) == KILN_DTYPE_FP16 ? 1e-5 : 1e-4;
  for (int i = 0; rc == CLI_OK && i < n_io; i++) {
    if (io[i].info.is_input) continue;
    int64_t n = kiln_dims_count(&io[i].dims);
    float *got = as_floats(&io[i]), *want = as_floats(&ref[i]);
    double num = 0, den = 0, maxerr = 0;
    for (int64_t k = 0; got && want && k < n; k++) {
      double d = (double)got[k] - (double)want[k];
      num += d * d, den += (double)want[k] * want[k];
      if (!(fabs(d) <= maxerr)) maxerr = isnan(d) ? INFINITY : fabs(d);
    }
    double nmse = num / (den > 1e-30 ? den : 1e-30);
    int ok = got && want && nmse <= tol;
    fprintf(stderr, "verify %-20s vs CPU backend: max abs error %.3g, nmse %.3g (limit %.0e): %s\n", io[i].info.name, maxerr,
            nmse, tol, ok ? "PASS" : "FAIL");
    if (!ok) rc = CLI_FAIL;
    free(got), free(want);
  }
  for (int i = 0; i < n_io; i++)
    if (!ref[i].info.is_input) free(ref[i].host);
  runner_close(&r);
  return rc;
}

static int write_outputs(const char *dir, io_buf *io, int n_io) {
  for (int i = 0; i < n_io; i++) {
    if (io[i].info.is_input) continue;
    char path[4096];
    float *f = as_floats(&io[i]);
    snprintf(path, sizeof path, "%s/%s.npy", dir, io[i].info.name);
    for (char *p = path + strlen(dir) + 1; *p; p++)
      if (*p == '/' || *p == ':') *p = '_';
    kiln_status s = f ? kiln_npy_write(path, KILN_DTYPE_FP32, &io[i].dims, f) : KILN_ERR_OUT_OF_MEMORY;
    free(f);
    if (s != KILN_OK) return cli_fail("run", "writing outputs", s);
    fprintf(stderr, "wrote %s\n", path);
  }
  return CLI_OK;
}

static void summarize(io_buf *io, int n_io) {
  for (int i = 0; i < n_io; i++) {
    if (io[i].info.is_input) continue;
    char d[128];
    int64_t n = kiln_dims_count(&io[i].dims);
    float *f = as_floats(&io[i]);
    double sum = 0, amax = 0;
    for (int64_t k = 0; f && k < n; k++) sum += f[k], amax = fabs(f[k]) > amax ? fabs(f[k]) : amax;
    printf("%s %s %s mean %.6g absmax %.6g first", io[i].info.name, kiln_dtype_name(io[i].info.dtype),
           kiln_dims_str(&io[i].dims, d, sizeof d), n ? sum / (double)n : 0.0, amax);
    for (int64_t k = 0; f && k < n && k < 4; k++) printf(" %.6g", f[k]);
    printf("\n");
    free(f);
  }
}

int cli_run(int argc, char **argv) {
  run_opts o = {0};
  const char *v, *shapes = NULL, *inputs[MAX_IO];
  int n_inputs = 0;
  int64_t n;
  o.warmup = 10;
  o.iterations = 100;
  o.seed = 1;
  for (int i = 1; i < argc; i++) {
    int handled;
    int rc = cli_common_flag("run", argc, argv, &i, &handled);
    if (rc != CLI_OK) return rc;
    if (handled) continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return run_help(stdout), CLI_OK;
    if (cli_flag_value(argc, argv, &i, "--input", &v)) {
      if (!v || !strchr(v, '=') || n_inputs >= MAX_IO) return fprintf(stderr, "kiln run: --input takes NAME=FILE.npy\n"), CLI_USAGE;
      inputs[n_inputs++] = v;
    } else if (cli_flag_value(argc, argv, &i, "--shapes", &v)) {
      if (!(shapes = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--output-dir", &v)) {
      if (!(o.output_dir = v)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--profile", &v)) {
      if (cli_parse_int("run", "--profile", v, 0, 1024, &n)) return CLI_USAGE;
      o.profile = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--device", &v)) {
      if (cli_parse_int("run", "--device", v, 0, 1024, &n)) return CLI_USAGE;
      o.device = (int32_t)n;
    } else if (cli_flag_value(argc, argv, &i, "--warmup", &v)) {
      if (cli_parse_int("run", "--warmup", v, 0, 1000000, &o.warmup)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--iterations", &v)) {
      if (cli_parse_int("run", "--iterations", v, 1, 10000000, &o.iterations)) return CLI_USAGE;
    } else if (cli_flag_value(argc, argv, &i, "--seed", &v)) {
      if (cli_parse_int("run", "--seed", v, 0, INT64_MAX, &n)) return CLI_USAGE;
      o.seed = (uint64_t)n;
    } else if (strcmp(argv[i], "--verify") == 0) {
      o.verify = 1;
    } else if (strcmp(argv[i], "--benchmark") == 0) {
      o.benchmark = 1;
    } else if (strcmp(argv[i], "--cuda-graph") == 0) {
      o.cuda_graph = 1;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "kiln run: unknown option \"%s\" (kiln run --help lists them)\n", argv[i]);
      return CLI_USAGE;
    } else if (!o.engine) {
      o.engine = argv[i];
    } else {
      fprintf(stderr, "kiln run: one engine at a time (got \"%s\" and \"%s\")\n", o.engine, argv[i]);
      return CLI_USAGE;
    }
  }
  if (!o.engine) return run_help(stderr), CLI_USAGE;

  /* Learn the engine's inputs and outputs (parse only), then settle shapes and data. */
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  lp.skip_device_check = 1;
  kiln_engine *probe;
  kiln_status s = kiln_engine_load(o.engine, &lp, &probe);
  if (s != KILN_OK) return cli_fail("run", "loading the engine", s);
  io_buf io[MAX_IO];
  memset(io, 0, sizeof io);
  int n_io = kiln_engine_num_io(probe);
  if (n_io > MAX_IO) n_io = MAX_IO;
  for (int i = 0; i < n_io; i++) {
    kiln_engine_io(probe, i, &io[i].info);
    io[i].info.name = strdup(io[i].info.name);
    if (io[i].info.is_input) kiln_engine_profile_dims(probe, o.profile, io[i].info.name, NULL, &io[i].dims, NULL);
  }
  kiln_engine_destroy(probe);
  int rc = CLI_OK;
  if (shapes && parse_shapes(shapes, io, n_io)) rc = CLI_USAGE;
  for (int k = 0; rc == CLI_OK && k < n_inputs; k++) {
    const char *eq = strchr(inputs[k], '=');
    int found = 0;
    for (int i = 0; i < n_io; i++)
      if (io[i].info.is_input && strlen(io[i].info.name) == (size_t)(eq - inputs[k]) &&
          strncmp(io[i].info.name, inputs[k], (size_t)(eq - inputs[k])) == 0) {
        io[i].npy = eq + 1;
        found = 1;
        if ((s = load_input(&io[i])) != KILN_OK) rc = cli_fail("run", "reading an input", s);
      }
    if (!found && rc == CLI_OK) fprintf(stderr, "kiln run: --input %s names no input of this engine\n", inputs[k]), rc = CLI_USAGE;
  }
  for (int i = 0; rc == CLI_OK && i < n_io; i++) {
    if (!io[i].info.is_input || io[i].host) continue;
    io[i].bytes = kiln_dtype_bytes(io[i].info.dtype, kiln_dims_count(&io[i].dims));
    io[i].host = malloc(io[i].bytes + 1);
    if (!io[i].host) rc = CLI_FAIL;
    else fill_random(&io[i], o.seed + (uint64_t)i);
  }
  runner r;
  memset(&r, 0, sizeof r);
  if (rc == CLI_OK) {
    s = runner_open(&r, &o, io, n_io, 0);
    if (s == KILN_OK) s = run_once(&r);
    if (s != KILN_OK) rc = cli_fail("run", "running the engine", s);
  }
  if (rc == CLI_OK) summarize(io, n_io);
  if (rc == CLI_OK && o.output_dir) rc = write_outputs(o.output_dir, io, n_io);
  if (rc == CLI_OK && o.verify) rc = verify(&o, io, n_io);
  if (rc == CLI_OK && o.benchmark) rc = benchmark(&r, &o);
  runner_close(&r);
  for (int i = 0; i < n_io; i++) {
    free(io[i].host);
    free((char *)io[i].info.name);
  }
  return rc;
}

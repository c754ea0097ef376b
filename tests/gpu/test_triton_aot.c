/* tests/gpu/test_triton_aot.c - the generated Triton launchers and their runtime (triton_rt),
 * one check per defect of the stock Triton 3.6 AoT generator that kiln's must not have:
 * (a) an fp32 scalar (scale = 2.0) arrives intact, followed by an int64; (b) an empty grid
 * returns KILN_OK and launches nothing; (c) a variant needing more shared memory than the device
 * fails to load with an error naming the kernel and both byte counts; (d) loads follow the
 * current device, unload twice is harmless, concurrent first launches from threads load once;
 * (e) variant indices are bound-checked by element count; (g) the hidden scratch arguments are
 * passed (every launch here would fault without them). Also: misaligned pointers are refused and
 * the manifest is embedded; on sm_90, a TMA descriptor argument (aot_tma_copy) is encoded as the
 * image expects (values, zero fill past the edges, the scalars after it) and bad tensors are
 * refused with KILN_ERR_INVALID_ARG. Exits 77 without a GPU or without the Triton kernels.
 */
#include "check.h"

#ifdef KILN_HAVE_TRITON_KERNELS
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdlib.h>

#include "kiln/dtype.h"
#include "kiln_triton_kernels.h"

#define N 1000

static float host_x[N];

static int run_scale(int32_t variant, float scale, int64_t offset, void *stream) {
  float *dx = NULL, *dy = NULL, y[N];
  cudaMalloc((void **)&dx, N * sizeof(float));
  cudaMalloc((void **)&dy, N * sizeof(float));
  cudaMemcpy(dx, host_x, sizeof host_x, cudaMemcpyHostToDevice);
  int32_t block = (int32_t)kiln_triton_constexpr(&kiln_triton_aot_scale_kernel, variant, "BLOCK", 0);
  kiln_status s = kiln_triton_aot_scale(stream, variant, (N + block - 1) / block, 1, 1, dx, dy, N,
                                        scale, offset);
  int ok = s == KILN_OK;
  if (!ok) fprintf(stderr, "aot_scale: %s\n", kiln_last_error());
  cudaStreamSynchronize((cudaStream_t)stream);
  cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost);
  for (int i = 0; ok && i < N; i++)
    if (fabsf(y[i] - (host_x[i] * scale + (float)offset)) > 1e-5f) {
      fprintf(stderr, "y[%d] = %g, want %g\n", i, y[i], host_x[i] * scale + (float)offset);
      ok = 0;
    }
  cudaFree(dx);
  cudaFree(dy);
  return ok;
}

/* x [rows, cols] fp16 (row pitch ldx elements) through a TMA descriptor into y, scaled. */
static void check_tma(int major) {
  const kiln_triton_kernel *k = &kiln_triton_aot_tma_copy_kernel;
  if (major < 9) { /* no code below sm_90: said, not crashed */
    CHECK_STATUS(kiln_triton_check(k, 0, NULL, NULL), KILN_ERR_WRONG_DEVICE);
    return;
  }
  const int64_t rows = 50, cols = 100, ldx = 104, br = 32, bc = 64, gr = 2, gc = 2, ldy = gc * bc;
  uint16_t *xh = malloc(rows * ldx * 2);
  float *x = malloc(rows * ldx * 4), *y = malloc(gr * br * ldy * 4);
  check_rng r = {99};
  check_fill(&r, x, rows * ldx, -3.0f, 3.0f);
  for (int64_t i = 0; i < rows * ldx; i++) xh[i] = kiln_fp32_to_fp16(x[i]), x[i] = kiln_fp16_to_fp32(xh[i]);
  void *dx = NULL, *dy = NULL;
  cudaMalloc(&dx, rows * ldx * 2);
  cudaMalloc(&dy, gr * br * ldy * 4);
  cudaMemcpy(dx, xh, rows * ldx * 2, cudaMemcpyHostToDevice);
  cudaMemset(dy, 0xff, gr * br * ldy * 4);
  kiln_triton_tensor t = {dx, 2, {rows, cols}, {ldx, 1}};
  CHECK_OK(kiln_triton_aot_tma_copy(NULL, 0, gr, gc, 1, &t, dy, (int32_t)ldy, -1.5f));
  cudaDeviceSynchronize();
  cudaMemcpy(y, dy, gr * br * ldy * 4, cudaMemcpyDeviceToHost);
  int bad = 0;
  for (int64_t i = 0; i < gr * br; i++)
    for (int64_t j = 0; j < ldy; j++) {
      float want = i < rows && j < cols ? x[i * ldx + j] * -1.5f : 0.0f;
      if (y[i * ldy + j] != want && bad++ < 5)
        fprintf(stderr, "aot_tma_copy y[%lld][%lld] = %g, want %g\n", (long long)i, (long long)j, y[i * ldy + j], want);
    }
  CHECK_EQ_INT(bad, 0);
  /* refused: a stride that is not a multiple of 16 bytes, a non-contiguous last dim, a wrong rank,
   * an empty dim, a misaligned base, NULL */
  kiln_triton_tensor b1 = {dx, 2, {rows, cols}, {ldx - 1, 1}}, b2 = {dx, 2, {rows, cols}, {ldx, 2}},
                     b3 = {dx, 3, {1, rows, cols}, {rows * ldx, ldx, 1}}, b4 = {dx, 2, {0, cols}, {ldx, 1}},
                     b5 = {(char *)dx + 2, 2, {rows, cols}, {ldx, 1}};
  const kiln_triton_tensor *bads[6] = {&b1, &b2, &b3, &b4, &b5, NULL};
  for (int i = 0; i < 6; i++) {
    CHECK_STATUS(kiln_triton_aot_tma_copy(NULL, 0, gr, gc, 1, bads[i], dy, (int32_t)ldy, 1.0f), KILN_ERR_INVALID_ARG);
    CHECK(strstr(kiln_last_error(), "aot_tma_copy") != NULL);
  }
  CHECK_OK(kiln_triton_unload(k));
  cudaFree(dx), cudaFree(dy);
  free(xh), free(x), free(y);
}

static void *thread_main(void *arg) {
  int32_t i = (int32_t)(intptr_t)arg;
  cudaSetDevice(0);
  cudaStream_t st;
  cudaStreamCreate(&st);
  int ok = run_scale(i % 2, 1.5f + (float)i, i, st);
  cudaStreamDestroy(st);
  return (void *)(intptr_t)ok;
}

int main(void) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) SKIP_TEST("no CUDA device");
  check_rng rng = {12345};
  check_fill(&rng, host_x, N, -4.0f, 4.0f);
  const kiln_triton_kernel *ks = &kiln_triton_aot_scale_kernel;

  /* (a) fp32 scale 2.0 (and an int64 after it) arrives intact, for both variants. */
  CHECK_EQ_INT(ks->n_variants, 2);
  CHECK(run_scale(0, 2.0f, 0, NULL));
  CHECK(run_scale(1, 2.0f, 3, NULL));
  CHECK(run_scale(0, -0.375f, -7, NULL));

  /* (b) empty grid: KILN_OK, nothing written. */
  float *dy = NULL, sentinel[4] = {7, 7, 7, 7}, back[4];
  cudaMalloc((void **)&dy, sizeof sentinel);
  cudaMemcpy(dy, sentinel, sizeof sentinel, cudaMemcpyHostToDevice);
  CHECK_OK(kiln_triton_aot_scale(NULL, 0, 0, 1, 1, dy, dy, 4, 2.0f, 0));
  CHECK_OK(kiln_triton_aot_scale(NULL, 0, 1, 0, 1, dy, dy, 4, 2.0f, 0));
  cudaDeviceSynchronize();
  cudaMemcpy(back, dy, sizeof back, cudaMemcpyDeviceToHost);
  CHECK(memcmp(back, sentinel, sizeof back) == 0);

  /* (e) variant bound: element count, not bytes. */
  CHECK_STATUS(kiln_triton_aot_scale(NULL, 2, 1, 1, 1, dy, dy, 4, 2.0f, 0), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_triton_aot_scale(NULL, 7, 1, 1, 1, dy, dy, 4, 2.0f, 0), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_triton_aot_scale(NULL, -1, 1, 1, 1, dy, dy, 4, 2.0f, 0), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_triton_load(ks, 2), KILN_ERR_INVALID_ARG);
  /* The :16 alignment promise is checked. */
  CHECK_STATUS(kiln_triton_aot_scale(NULL, 0, 1, 1, 1, dy + 1, dy, 3, 2.0f, 0), KILN_ERR_INVALID_ARG);
  cudaFree(dy);

  /* (c) too much shared memory: named error with both byte counts. */
  int optin = 0;
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0);
  size_t need = 0, avail = 0;
  CHECK_STATUS(kiln_triton_check(&kiln_triton_aot_bigsmem_kernel, 0, &need, &avail),
               KILN_ERR_UNSUPPORTED);
  CHECK_EQ_INT(avail, optin);
  CHECK(need > avail);
  CHECK_STATUS(kiln_triton_aot_bigsmem(NULL, 0, 1, 1, 1, NULL, NULL, NULL), KILN_ERR_UNSUPPORTED);
  char want[64];
  const char *msg = kiln_last_error();
  CHECK(strstr(msg, "aot_bigsmem") != NULL);
  snprintf(want, sizeof want, "%zu", need);
  CHECK(strstr(msg, want) != NULL);
  snprintf(want, sizeof want, "%d", optin);
  CHECK(strstr(msg, want) != NULL);
  CHECK_EQ_INT(kiln_triton_loaded_count(&kiln_triton_aot_bigsmem_kernel), 0);

  /* (d) per-device loads; unload twice; reload after unload. */
  CHECK_OK(kiln_triton_unload(ks));
  CHECK_EQ_INT(kiln_triton_loaded_count(ks), 0);
  for (int d = ndev - 1; d >= 0; d--) {
    cudaSetDevice(d);
    CHECK(run_scale(1, 2.0f, 1, NULL));
    CHECK_EQ_INT(kiln_triton_loaded_count(ks), ndev - d);
  }
  for (int d = 0; d < ndev; d++) {
    cudaSetDevice(d);
    CHECK_OK(kiln_triton_unload(ks));
    CHECK_OK(kiln_triton_unload(ks));
  }
  CHECK_EQ_INT(kiln_triton_loaded_count(ks), 0);
  cudaSetDevice(0);
  CHECK_OK(kiln_triton_load(ks, 0));
  CHECK_OK(kiln_triton_load(ks, 0));
  CHECK_EQ_INT(kiln_triton_loaded_count(ks), 1);
  CHECK_OK(kiln_triton_unload(ks));

  /* (d) concurrent first launches: each thread correct, each variant loaded once. */
  pthread_t th[8];
  for (intptr_t i = 0; i < 8; i++) pthread_create(&th[i], NULL, thread_main, (void *)i);
  for (int i = 0; i < 8; i++) {
    void *r = NULL;
    pthread_join(th[i], &r);
    CHECK((intptr_t)r == 1);
  }
  CHECK_EQ_INT(kiln_triton_loaded_count(ks), 2);
  CHECK_OK(kiln_triton_unload(ks));

  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  check_tma(major);

  /* The manifest is embedded and names the pinned Triton. */
  const char *man = kiln_triton_manifest();
  CHECK(strstr(man, "\"triton_version\": \"3.6.") != NULL);
  CHECK(strstr(man, "\"aot_scale\"") != NULL);
  return check_report();
}
#else
int main(void) { SKIP_TEST("kiln was built without the Triton kernels"); }
#endif

/* tests/gpu/test_fmha.c - the "fmha" plugin (Triton fused attention) against the CPU attention
 * (kiln_cpu_attention) on random inputs: every head size (32, 64, 80, 96, 128), fp16 and bf16,
 * causal and not, self and cross attention (Sq != Skv), lengths that are not multiples of the
 * block sizes and length 1, every tactic valid on the device; the bshd and packed-qkv layouts;
 * and a ragged varlen batch compared sequence by sequence. Also the plugin's shape, format,
 * serialize/deserialize and tactic paths. Exits 77 without a GPU or without the Triton kernels.
 */
#include "check.h"

#ifdef KILN_HAVE_TRITON_KERNELS
#include <cuda_runtime_api.h>

#include "backends/cpu/cpu_ops.h"
#include "kiln/dtype.h"
#include "kiln_triton_kernels.h"
#include "plugins/cuda/fmha_plugin.h"

static const kiln_plugin_creator *cr;

static void *create(int32_t H, int32_t D, float scale, int32_t causal, const char *layout) {
  kiln_plugin_field f[5] = {
      {"num_heads", KILN_PLUGIN_FIELD_INT32, 1, &H}, {"head_size", KILN_PLUGIN_FIELD_INT32, 1, &D},
      {"scale", KILN_PLUGIN_FIELD_FLOAT32, 1, &scale}, {"causal", KILN_PLUGIN_FIELD_INT32, 1, &causal},
      {"layout", KILN_PLUGIN_FIELD_STRING, (int32_t)strlen(layout), layout}};
  void *st = NULL;
  CHECK_OK(cr->create(5, f, &st));
  return st;
}

/* Host fp32 values rounded through dtype (so GPU and CPU see the same inputs). */
static float *random_rounded(check_rng *r, int64_t n, kiln_dtype dt, uint16_t **half) {
  float *f = malloc((size_t)n * sizeof *f);
  *half = malloc((size_t)n * 2);
  check_fill(r, f, n, -1.0f, 1.0f);
  kiln_convert_floats(*half, dt, f, KILN_DTYPE_FP32, n);
  kiln_convert_floats(f, KILN_DTYPE_FP32, *half, dt, n);
  return f;
}

static void *upload(const void *h, size_t bytes) {
  void *d = NULL;
  cudaMalloc(&d, bytes ? bytes : 16);
  cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
  return d;
}

static kiln_tensor view(void *data, kiln_dtype dt, int32_t rank, const int64_t *d) {
  kiln_dims s = {rank, {0}};
  for (int i = 0; i < rank; i++) s.d[i] = d[i];
  return kiln_tensor_contiguous(data, dt, &s);
}

/* One bhsd case: q [B,H,Sq,D], k/v [B,H,Skv,D]; all valid tactics. */
static void case_bhsd(check_rng *r, kiln_dtype dt, int64_t B, int64_t H, int64_t Sq, int64_t Skv,
                      int64_t D, int32_t causal) {
  const float scale = 1.0f / sqrtf((float)D);
  int64_t qd[4] = {B, H, Sq, D}, kd[4] = {B, H, Skv, D};
  int64_t nq = B * H * Sq * D, nk = B * H * Skv * D;
  uint16_t *qh, *kh, *vh;
  float *q = random_rounded(r, nq, dt, &qh), *k = random_rounded(r, nk, dt, &kh),
        *v = random_rounded(r, nk, dt, &vh);
  float *want = malloc((size_t)nq * 4), *got = malloc((size_t)nq * 4);
  uint16_t *oh = malloc((size_t)nq * 2);
  kiln_tensor tq = view(q, KILN_DTYPE_FP32, 4, qd), tk = view(k, KILN_DTYPE_FP32, 4, kd),
              tv = view(v, KILN_DTYPE_FP32, 4, kd), ty = view(want, KILN_DTYPE_FP32, 4, qd);
  CHECK_OK(kiln_cpu_attention(&tq, &tk, &tv, scale, causal, &ty));
  void *st = create((int32_t)H, (int32_t)D, scale, causal, "bhsd");
  kiln_tensor in[3] = {view(upload(qh, nq * 2), dt, 4, qd), view(upload(kh, nk * 2), dt, 4, kd),
                       view(upload(vh, nk * 2), dt, 4, kd)};
  kiln_tensor out = view(upload(oh, nq * 2), dt, 4, qd);
  kiln_plugin_desc desc[3] = {{dt, in[0].shape}, {dt, in[1].shape}, {dt, in[2].shape}}, od;
  CHECK_OK(cr->output_shapes(st, 3, desc, 1, &od));
  CHECK(kiln_dims_equal(&od.shape, &out.shape));
  CHECK(cr->supports_format(st, KILN_TARGET_CUDA, 3, desc) == 1);
  int32_t nt = cr->num_tactics(st, KILN_TARGET_CUDA);
  CHECK(nt >= 2);
  int ran = 0;
  for (int32_t t = 0; t < nt; t++) {
    if (!cr->tactic_valid(st, KILN_TARGET_CUDA, t, 3, desc)) continue;
    ran++;
    cudaMemset(out.data, 0xff, nq * 2); /* NaNs where nothing is written */
    CHECK_OK(cr->enqueue(st, KILN_TARGET_CUDA, t, 3, in, 1, &out, NULL, NULL));
    cudaDeviceSynchronize();
    cudaMemcpy(oh, out.data, nq * 2, cudaMemcpyDeviceToHost);
    kiln_convert_floats(got, KILN_DTYPE_FP32, oh, dt, nq);
    char what[160];
    snprintf(what, sizeof what, "%s B%lld H%lld Sq%lld Skv%lld D%lld causal%d tactic%d",
             kiln_dtype_name(dt), (long long)B, (long long)H, (long long)Sq, (long long)Skv,
             (long long)D, causal, t);
    double tol = dt == KILN_DTYPE_BF16 ? 2e-2 : 4e-3;
    check_close(what, got, want, nq, tol, tol);
  }
  CHECK(ran >= 1);
  cr->destroy(st);
  for (int i = 0; i < 3; i++) cudaFree(in[i].data);
  cudaFree(out.data);
  free(q), free(k), free(v), free(qh), free(kh), free(vh), free(want), free(got), free(oh);
}

/* Ragged batch in varlen layout, compared sequence by sequence with the CPU. */
static void case_varlen(check_rng *r, kiln_dtype dt, int64_t D, int32_t causal) {
  const int64_t H = 2, nb = 4;
  const int32_t lq[4] = {1, 37, 64, 129}, lk[4] = {5, 37, 100, 129};
  int32_t cq[5] = {0}, ck[5] = {0};
  for (int b = 0; b < nb; b++) cq[b + 1] = cq[b] + lq[b], ck[b + 1] = ck[b] + lk[b];
  const float scale = 0.7f / sqrtf((float)D);
  int64_t nq = cq[nb] * H * D, nk = ck[nb] * H * D;
  uint16_t *qh, *kh, *vh;
  float *q = random_rounded(r, nq, dt, &qh), *k = random_rounded(r, nk, dt, &kh),
        *v = random_rounded(r, nk, dt, &vh);
  uint16_t *oh = malloc((size_t)nq * 2);
  float *got = malloc((size_t)nq * 4);
  void *st = create((int32_t)H, (int32_t)D, scale, causal, "varlen");
  int64_t qd[3] = {cq[nb], H, D}, kd[3] = {ck[nb], H, D}, cd[1] = {nb + 1};
  kiln_tensor in[5] = {view(upload(qh, nq * 2), dt, 3, qd), view(upload(kh, nk * 2), dt, 3, kd),
                       view(upload(vh, nk * 2), dt, 3, kd),
                       view(upload(cq, sizeof cq), KILN_DTYPE_INT32, 1, cd),
                       view(upload(ck, sizeof ck), KILN_DTYPE_INT32, 1, cd)};
  kiln_tensor out = view(upload(oh, nq * 2), dt, 3, qd);
  kiln_plugin_desc desc[5];
  for (int i = 0; i < 5; i++) desc[i] = (kiln_plugin_desc){in[i].dtype, in[i].shape};
  for (int32_t tac = 0; tac < cr->num_tactics(st, KILN_TARGET_CUDA); tac++) { /* both kernels' tiles */
  if (!cr->tactic_valid(st, KILN_TARGET_CUDA, tac, 5, desc)) continue;
  cudaMemset(out.data, 0xff, (size_t)nq * 2); /* NaN: rows the kernel skips show */
  CHECK_OK(cr->enqueue(st, KILN_TARGET_CUDA, tac, 5, in, 1, &out, NULL, NULL));
  cudaDeviceSynchronize();
  cudaMemcpy(oh, out.data, nq * 2, cudaMemcpyDeviceToHost);
  kiln_convert_floats(got, KILN_DTYPE_FP32, oh, dt, nq);
  for (int b = 0; b < nb; b++) {
    /* [len, H, D] -> [1, H, len, D] */
    int64_t sq = lq[b], sk = lk[b];
    float *bq = malloc(sq * H * D * 4), *bk = malloc(sk * H * D * 4), *bv = malloc(sk * H * D * 4);
    float *bw = malloc(sq * H * D * 4), *bg = malloc(sq * H * D * 4);
    for (int64_t h = 0; h < H; h++)
      for (int64_t d = 0; d < D; d++) {
        for (int64_t i = 0; i < sq; i++) {
          bq[(h * sq + i) * D + d] = q[((cq[b] + i) * H + h) * D + d];
          bg[(h * sq + i) * D + d] = got[((cq[b] + i) * H + h) * D + d];
        }
        for (int64_t j = 0; j < sk; j++) {
          bk[(h * sk + j) * D + d] = k[((ck[b] + j) * H + h) * D + d];
          bv[(h * sk + j) * D + d] = v[((ck[b] + j) * H + h) * D + d];
        }
      }
    int64_t d4q[4] = {1, H, sq, D}, d4k[4] = {1, H, sk, D};
    kiln_tensor tq = view(bq, KILN_DTYPE_FP32, 4, d4q), tk = view(bk, KILN_DTYPE_FP32, 4, d4k),
                tv = view(bv, KILN_DTYPE_FP32, 4, d4k), ty = view(bw, KILN_DTYPE_FP32, 4, d4q);
    CHECK_OK(kiln_cpu_attention(&tq, &tk, &tv, scale, causal, &ty));
    char what[112];
    snprintf(what, sizeof what, "varlen %s D%lld causal%d seq%d (%lld x %lld) tactic%d", kiln_dtype_name(dt),
             (long long)D, causal, b, (long long)sq, (long long)sk, tac);
    double tol = dt == KILN_DTYPE_BF16 ? 2e-2 : 4e-3;
    check_close(what, bg, bw, sq * H * D, tol, tol);
    free(bq), free(bk), free(bv), free(bw), free(bg);
  }
  }
  cr->destroy(st);
  for (int i = 0; i < 5; i++) cudaFree(in[i].data);
  cudaFree(out.data);
  free(q), free(k), free(v), free(qh), free(kh), free(vh), free(oh), free(got);
}

/* Packed qkv [B,S,3,H,D] and bshd, against bhsd on the CPU. */
static void case_packed(check_rng *r, kiln_dtype dt, int use_qkv) {
  const int64_t B = 2, S = 70, H = 3, D = 64;
  const float scale = 0.125f;
  int64_t n = B * S * 3 * H * D, no = B * S * H * D;
  uint16_t *ph;
  float *p = random_rounded(r, n, dt, &ph);
  float *q = malloc(no * 4), *k = malloc(no * 4), *v = malloc(no * 4), *w = malloc(no * 4);
  float *got = malloc(no * 4);
  uint16_t *oh = malloc(no * 2), *sh[3] = {malloc(no * 2), malloc(no * 2), malloc(no * 2)};
  float *dst[3] = {q, k, v};
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t t = 0; t < 3; t++)
        for (int64_t h = 0; h < H; h++)
          for (int64_t d = 0; d < D; d++) {
            int64_t src = (((b * S + s) * 3 + t) * H + h) * D + d;
            dst[t][((b * H + h) * S + s) * D + d] = p[src];      /* bhsd for the CPU */
            sh[t][((b * S + s) * H + h) * D + d] = ph[src];      /* bshd for the GPU */
          }
  int64_t d4[4] = {B, H, S, D}, o4[4] = {B, S, H, D}, p5[5] = {B, S, 3, H, D};
  kiln_tensor tq = view(q, KILN_DTYPE_FP32, 4, d4), tk = view(k, KILN_DTYPE_FP32, 4, d4),
              tv = view(v, KILN_DTYPE_FP32, 4, d4), ty = view(w, KILN_DTYPE_FP32, 4, d4);
  CHECK_OK(kiln_cpu_attention(&tq, &tk, &tv, scale, 1, &ty));
  void *st = create((int32_t)H, (int32_t)D, scale, 1, use_qkv ? "qkv" : "bshd");
  kiln_tensor in[3];
  int32_t n_in = use_qkv ? 1 : 3;
  if (use_qkv) in[0] = view(upload(ph, n * 2), dt, 5, p5);
  else
    for (int t = 0; t < 3; t++) in[t] = view(upload(sh[t], no * 2), dt, 4, o4);
  kiln_tensor out = view(upload(oh, no * 2), dt, 4, o4);
  kiln_plugin_desc desc[3];
  for (int i = 0; i < n_in; i++) desc[i] = (kiln_plugin_desc){in[i].dtype, in[i].shape};
  for (int32_t tac = 0; tac < cr->num_tactics(st, KILN_TARGET_CUDA); tac++) { /* both kernels' tiles */
  if (!cr->tactic_valid(st, KILN_TARGET_CUDA, tac, n_in, desc)) continue;
  cudaMemset(out.data, 0xff, (size_t)no * 2);
  CHECK_OK(cr->enqueue(st, KILN_TARGET_CUDA, tac, n_in, in, 1, &out, NULL, NULL));
  cudaDeviceSynchronize();
  cudaMemcpy(oh, out.data, no * 2, cudaMemcpyDeviceToHost);
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < D; d++) {
          uint16_t x = oh[((b * S + s) * H + h) * D + d];
          got[((b * H + h) * S + s) * D + d] =
              dt == KILN_DTYPE_BF16 ? kiln_bf16_to_fp32(x) : kiln_fp16_to_fp32(x);
        }
  double tol = dt == KILN_DTYPE_BF16 ? 2e-2 : 4e-3;
  char what[64];
  snprintf(what, sizeof what, "%s causal tactic%d", use_qkv ? "packed qkv" : "bshd", tac);
  check_close(what, got, w, no, tol, tol);
  }
  cr->destroy(st);
  for (int i = 0; i < n_in; i++) cudaFree(in[i].data);
  cudaFree(out.data);
  free(p), free(ph), free(q), free(k), free(v), free(w), free(got), free(oh);
  for (int t = 0; t < 3; t++) free(sh[t]);
}

static void check_plugin_api(void) {
  void *st = create(4, 80, 0.25f, 1, "bhsd"), *st2 = NULL;
  size_t size = 0;
  CHECK_OK(cr->serialize(st, NULL, &size));
  unsigned char buf[64];
  CHECK(size <= sizeof buf);
  CHECK_OK(cr->serialize(st, buf, &size));
  CHECK_OK(cr->deserialize(buf, size, &st2));
  CHECK_EQ_INT(cr->num_tactics(st2, KILN_TARGET_CUDA), cr->num_tactics(st, KILN_TARGET_CUDA));
  buf[0] ^= 1;
  void *bad = NULL;
  CHECK_STATUS(cr->deserialize(buf, size, &bad), KILN_ERR_FORMAT);
  kiln_plugin_desc in[3] = {{KILN_DTYPE_FP32, {4, {1, 4, 8, 80}}}, {KILN_DTYPE_FP32, {4, {1, 4, 9, 80}}},
                            {KILN_DTYPE_FP32, {4, {1, 4, 9, 80}}}}, out;
  CHECK(cr->supports_format(st, KILN_TARGET_CUDA, 3, in) == 0); /* fp32 is not compiled */
  /* the CPU path is the reference attention (kiln run --verify), bhsd only */
  CHECK(cr->supports_format(st, KILN_TARGET_CPU, 3, in) == 1);
  CHECK(cr->supports_format(st, KILN_TARGET_CPU, 2, in) == 0);
  in[1].shape.d[3] = 64;
  CHECK_STATUS(cr->output_shapes(st, 3, in, 1, &out), KILN_ERR_SHAPE);
  CHECK(cr->tactic_valid(st, KILN_TARGET_CUDA, 99, 3, in) == 0);
  int32_t D = 72, H = 2;
  kiln_plugin_field f[2] = {{"num_heads", KILN_PLUGIN_FIELD_INT32, 1, &H},
                            {"head_size", KILN_PLUGIN_FIELD_INT32, 1, &D}};
  CHECK_STATUS(cr->create(2, f, &bad), KILN_ERR_UNSUPPORTED);
  cr->destroy(st);
  cr->destroy(st2);
}

int main(void) {
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) SKIP_TEST("no CUDA device");
  cr = kiln_fmha_plugin_creator();
  CHECK_EQ_STR(cr->name, "fmha");
  CHECK_EQ_INT(cr->version, 1);
  check_plugin_api();
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (major == 9) /* the TMA and Gluon kernels' tactics must be among those the cases below run */
    for (int k = 0; k < 2; k++) {
      const kiln_triton_kernel *kk = k ? &kiln_triton_fmha_fwd_wgmma_fp16_kernel : &kiln_triton_fmha_fwd_tma_fp16_kernel;
      for (int i = 0; i < kk->n_variants; i++) CHECK_OK(kiln_triton_check(kk, i, NULL, NULL));
    }
  check_rng r = {2024};
  const int64_t heads[5] = {32, 64, 80, 96, 128};
  const kiln_dtype dts[2] = {KILN_DTYPE_FP16, KILN_DTYPE_BF16};
  for (int t = 0; t < 2; t++)
    for (int h = 0; h < 5; h++) {
      int64_t D = heads[h];
      case_bhsd(&r, dts[t], 2, 3, 77, 77, D, 0);
      case_bhsd(&r, dts[t], 2, 3, 77, 77, D, 1);
      case_bhsd(&r, dts[t], 1, 2, 1, 100, D, 1);   /* decoder step */
      case_bhsd(&r, dts[t], 1, 2, 1, 1, D, 0);     /* length 1 */
      case_bhsd(&r, dts[t], 2, 2, 45, 130, D, 0);  /* cross */
      case_bhsd(&r, dts[t], 1, 2, 33, 97, D, 1);   /* causal, Sq < Skv */
      case_bhsd(&r, dts[t], 1, 1, 128, 128, D, 1); /* exact block multiples */
      case_bhsd(&r, dts[t], 1, 2, 100, 30, D, 1);  /* causal, Sq > Skv: rows with no visible key */
      case_bhsd(&r, dts[t], 1, 2, 300, 520, D, 0); /* several key blocks: the rings wrap */
      case_bhsd(&r, dts[t], 1, 1, 300, 300, D, 1); /* several key blocks before the diagonal */
    }
  for (int t = 0; t < 2; t++) {
    case_varlen(&r, dts[t], 64, 0);
    case_varlen(&r, dts[t], 96, 1);
    case_packed(&r, dts[t], 1);
    case_packed(&r, dts[t], 0);
  }
  return check_report();
}
#else
int main(void) { SKIP_TEST("kiln was built without the Triton kernels"); }
#endif

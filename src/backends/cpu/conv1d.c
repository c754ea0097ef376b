/* src/backends/cpu/conv1d.c - 1-D convolution with kernel 3, padding 1, stride 1 or 2, optional
 * bias and fused activation (Whisper's audio stem).
 *
 *   x [B, Cin, T], w [Cout, Cin, 3], b [Cout] or NULL -> y [B, Cout, Tout]
 *   Tout = (T - 1) / stride + 1 for T >= 1 (= (T + 2 - 3) / stride + 1), and 0 for T = 0
 *   y[b, co, t] = act(b[co] + sum_ci sum_k w[co, ci, k] * x[b, ci, t * stride + k - 1])
 * Computed as im2col + one fp32 GEMM per batch item: cols [Cin * 3, Tout], y = w @ cols.
 * Not a general convolution (no other kernel sizes, dilation or groups).
 */
#include <stdlib.h>

#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static int64_t conv_out_len(int64_t t, int32_t stride) { return t == 0 ? 0 : (t - 1) / stride + 1; }

static kiln_status check_conv(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                              int32_t stride, kiln_activation act, const kiln_tensor *y) {
  char sx[128], sw[128], sy[128], sd[128];
  KILN_TRY(kiln_cpu_check_float(x, "conv1d", "x"));
  KILN_TRY(kiln_cpu_check_float(w, "conv1d", "w"));
  if (b) KILN_TRY(kiln_cpu_check_float(b, "conv1d", "b"));
  KILN_TRY(kiln_cpu_check_float(y, "conv1d", "y"));
  KILN_TRY(kiln_cpu_check_activation(act, "conv1d"));
  if (stride != 1 && stride != 2)
    return kiln_error(KILN_ERR_UNSUPPORTED, "conv1d: stride %d is not supported; use 1 or 2",
                      (int)stride);
  kiln_dims_str(&x->shape, sx, sizeof sx);
  kiln_dims_str(&w->shape, sw, sizeof sw);
  if (x->shape.rank != 3 || w->shape.rank != 3 || w->shape.d[2] != 3 ||
      w->shape.d[1] != x->shape.d[1])
    return kiln_error(KILN_ERR_SHAPE,
                      "conv1d: x %s and w %s must be x [B, Cin, T] and w [Cout, Cin, 3]", sx, sw);
  if (b && (b->shape.rank != 1 || b->shape.d[0] != w->shape.d[0]))
    return kiln_error(KILN_ERR_SHAPE, "conv1d: bias %s must be [%lld] to match w %s",
                      kiln_dims_str(&b->shape, sd, sizeof sd), (long long)w->shape.d[0], sw);
  kiln_dims want = {3, {x->shape.d[0], w->shape.d[0], conv_out_len(x->shape.d[2], stride)}};
  if (!kiln_dims_equal(&want, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "conv1d: y is %s but x %s, w %s, stride %d give %s",
                      kiln_dims_str(&y->shape, sy, sizeof sy), sx, sw, (int)stride,
                      kiln_dims_str(&want, sd, sizeof sd));
  return KILN_OK;
}

/* cols [Cin * 3, tout] from one batch item x [Cin, t]; zeros where the kernel hits padding. */
static void im2col(const float *x, int64_t cin, int64_t t, int32_t stride, int64_t tout,
                   float *cols) {
  for (int64_t c = 0; c < cin; c++)
    for (int64_t k = 0; k < 3; k++)
      for (int64_t o = 0; o < tout; o++) {
        int64_t src = o * stride + k - 1;
        cols[(c * 3 + k) * tout + o] = (src >= 0 && src < t) ? x[c * t + src] : 0.0f;
      }
}

kiln_status kiln_cpu_conv1d(const kiln_tensor *x, const kiln_tensor *w, const kiln_tensor *b,
                            int32_t stride, kiln_activation act, kiln_tensor *y) {
  KILN_TRY(check_conv(x, w, b, stride, act, y));
  int64_t batch = x->shape.d[0], cin = x->shape.d[1], t = x->shape.d[2];
  int64_t cout = y->shape.d[1], tout = y->shape.d[2];
  if (kiln_dims_count(&y->shape) == 0) return KILN_OK;

  kiln_cpu_f32 xv = {0}, wv = {0}, bv = {0};
  float *cols = malloc((size_t)(cin * 3 * tout + 1) * sizeof(float)); /* [Cin * 3, Tout] */
  float *acc = malloc((size_t)(cout * tout) * sizeof(float));        /* [Cout, Tout] */
  kiln_status s = (cols && acc) ? KILN_OK
                                : kiln_error(KILN_ERR_OUT_OF_MEMORY,
                                             "conv1d: cannot allocate scratch for Cin %lld, "
                                             "Cout %lld, Tout %lld; use smaller shapes",
                                             (long long)cin, (long long)cout, (long long)tout);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(x, &xv);
  if (s == KILN_OK) s = kiln_cpu_f32_acquire(w, &wv);
  if (s == KILN_OK && b) s = kiln_cpu_f32_acquire(b, &bv);
  for (int64_t n = 0; s == KILN_OK && n < batch; n++) {
    if (cin > 0) {
      im2col(xv.data + n * cin * t, cin, t, stride, tout, cols);
      kiln_cpu_gemm(0, cout, tout, cin * 3, wv.data, cin * 3, cols, tout, acc, tout);
    } else {
      for (int64_t i = 0; i < cout * tout; i++) acc[i] = 0.0f;
    }
    for (int64_t co = 0; co < cout; co++)
      for (int64_t o = 0; o < tout; o++) {
        float v = acc[co * tout + o] + (b ? bv.data[co] : 0.0f);
        acc[co * tout + o] = kiln_cpu_activate(v, act);
      }
    kiln_cpu_store_f32(y, n * cout * tout, acc, cout * tout);
  }
  kiln_cpu_f32_release(&xv);
  kiln_cpu_f32_release(&wv);
  kiln_cpu_f32_release(&bv);
  free(cols);
  free(acc);
  return s;
}

/* tests/unit/test_network_json.c - JSON networks: weights from a safetensors file (written here)
 * and inline values give the engine the results computed directly with the CPU ops; malformed
 * files give clear errors naming the problem. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_ops.h"
#include "check.h"
#include "kiln/kiln.h"

/* A safetensors file with w [3, 4] and b [3] (fp32). */
static void write_weights(const char *path, const float *w, const float *b) {
  const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,48]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}";
  uint64_t n = strlen(hdr);
  FILE *f = fopen(path, "wb");
  fwrite(&n, 8, 1, f);
  fwrite(hdr, 1, n, f);
  fwrite(w, 4, 12, f);
  fwrite(b, 4, 3, f);
  fclose(f);
}

static const char *net_text =
    "{\"weights\": \"test_network_json.safetensors\","
    " \"inputs\": [{\"name\": \"x\", \"dtype\": \"fp32\", \"dims\": [-1, 4]}],"
    " \"constants\": [{\"name\": \"w\", \"dims\": [3, 4]}, {\"name\": \"b\", \"dims\": [3]},"
    "                {\"name\": \"s\", \"dims\": [3], \"value\": 2.0}],"
    " \"layers\": [{\"op\": \"matmul\", \"name\": \"fc\", \"inputs\": [\"x\", \"w\", \"b\"]},"
    "            {\"op\": \"silu\", \"name\": \"act\", \"inputs\": [\"fc\"]},"
    "            {\"op\": \"mul\", \"name\": \"y\", \"inputs\": [\"act\", \"s\"]}],"
    " \"outputs\": [\"y\"],"
    " \"profiles\": [{\"x\": {\"min\": [1, 4], \"opt\": [2, 4], \"max\": [8, 4]}}]}";

static void test_weights_file(void) {
  float w[12], b[3], x[8], y[6], want[6];
  check_rng r = {9};
  check_fill(&r, w, 12, -1, 1);
  check_fill(&r, b, 3, -1, 1);
  check_fill(&r, x, 8, -1, 1);
  write_weights("test_network_json.safetensors", w, b);
  kiln_network *net = NULL;
  CHECK_OK(kiln_network_from_json(net_text, strlen(net_text), ".", &net));
  if (!net) return;
  kiln_build_params p = kiln_build_default_params();
  p.target = KILN_TARGET_CPU;
  void *img = NULL;
  size_t n = 0;
  kiln_engine *e = NULL;
  kiln_context *c = NULL;
  CHECK_OK(kiln_build(net, &p, &img, &n, NULL));
  if (img) CHECK_OK(kiln_engine_load_memory(img, n, NULL, &e));
  if (e) CHECK_OK(kiln_context_create(e, 0, &c));
  if (c) {
    kiln_dims xd = {2, {2, 4}};
    CHECK_OK(kiln_context_set_input_shape(c, "x", &xd));
    CHECK_OK(kiln_context_set_tensor(c, "x", x));
    CHECK_OK(kiln_context_set_tensor(c, "y", y));
    CHECK_OK(kiln_context_enqueue(c, NULL));
    /* direct: silu(x @ w^T + b) * 2 */
    kiln_dims wd = {2, {3, 4}}, bd = {1, {3}}, yd = {2, {2, 3}};
    kiln_tensor tx = kiln_tensor_contiguous(x, KILN_DTYPE_FP32, &xd), tw = kiln_tensor_contiguous(w, KILN_DTYPE_FP32, &wd);
    kiln_tensor tb = kiln_tensor_contiguous(b, KILN_DTYPE_FP32, &bd), ty = kiln_tensor_contiguous(want, KILN_DTYPE_FP32, &yd);
    CHECK_OK(kiln_cpu_matmul(&tx, &tw, &tb, KILN_ACTIVATION_SILU, &ty));
    for (int i = 0; i < 6; i++) want[i] *= 2.0f;
    check_close("json network with safetensors weights", y, want, 6, 1e-6, 1e-6);
  }
  kiln_context_destroy(c);
  kiln_engine_destroy(e);
  kiln_free(img);
  kiln_network_destroy(net);
  remove("test_network_json.safetensors");
}

static void expect_error(const char *text, kiln_status want, const char *needle) {
  kiln_network *net = NULL;
  CHECK_STATUS(kiln_network_from_json(text, strlen(text), ".", &net), want);
  CHECK(net == NULL);
  if (!strstr(kiln_last_error(), needle)) {
    fprintf(stderr, "message \"%s\" lacks \"%s\"\n", kiln_last_error(), needle);
    CHECK(0);
  }
}

int main(void) {
  kiln_log_set_level(KILN_LOG_NONE);
  test_weights_file();
  expect_error("{\"layers\": [", KILN_ERR_FORMAT, "not valid JSON");
  expect_error("[1, 2]", KILN_ERR_FORMAT, "one JSON object");
  expect_error("{\"inputs\": [{\"name\": \"x\", \"dims\": [2]}], \"layers\": [{\"op\": \"frobnicate\", \"inputs\": [\"x\"]}],"
               " \"outputs\": [\"x\"]}",
               KILN_ERR_FORMAT, "frobnicate");
  expect_error("{\"inputs\": [{\"name\": \"x\", \"dims\": [2]}], \"layers\": [{\"op\": \"gelu\", \"inputs\": [\"y\"]}],"
               " \"outputs\": [\"gelu_0\"]}",
               KILN_ERR_FORMAT, "\"y\" is not defined");
  expect_error("{\"inputs\": [{\"name\": \"x\", \"dims\": [2]}], \"constants\": [{\"name\": \"w\", \"dims\": [2, 2]}],"
               " \"layers\": [], \"outputs\": [\"x\"]}",
               KILN_ERR_FORMAT, "has no data");
  expect_error("{\"weights\": \"missing.safetensors\", \"layers\": [], \"outputs\": []}", KILN_ERR_NOT_FOUND, "missing.safetensors");
  expect_error("{\"inputs\": [{\"name\": \"x\", \"dims\": [2.5]}], \"layers\": [], \"outputs\": [\"x\"]}", KILN_ERR_FORMAT,
               "not an integer");
  expect_error("{\"inputs\": [{\"name\": \"x\", \"dims\": [2]}], \"layers\": [{\"op\": \"matmul\", \"inputs\": [\"x\"]}],"
               " \"outputs\": [\"x\"]}",
               KILN_ERR_FORMAT, "takes 2 to 3 inputs");
  return check_report();
}

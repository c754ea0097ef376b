/* tests/unit/test_safetensors.c - the safetensors reader: files written by this test (several
 * dtypes, random data, metadata), a file written by the Python safetensors library
 * (tests/data/tiny.safetensors), a folder, a sharded checkpoint through its index, and bad files
 * that must be rejected with a message naming the file and the tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/bytes.h"
#include "kiln/safetensors.h"

typedef struct spec {
  const char *name, *dtype;
  int32_t rank;
  int64_t d[4];
  size_t elem;
} spec;

static size_t spec_bytes(const spec *s) {
  size_t n = s->elem;
  for (int32_t i = 0; i < s->rank; i++) n *= (size_t)s->d[i];
  return n;
}

/* Write a safetensors image: JSON header (padded with spaces to 8 bytes), then data filled
 * from rng. Returns a malloc()ed image; *data_out points at the data area. */
static uint8_t *make_image(const spec *specs, int n, const char *extra_json, check_rng *rng,
                           size_t *size, const uint8_t **data_out) {
  char json[4096];
  size_t off = 0, pos = 0;
  pos += (size_t)snprintf(json + pos, sizeof json - pos, "{");
  if (extra_json) pos += (size_t)snprintf(json + pos, sizeof json - pos, "%s,", extra_json);
  for (int i = 0; i < n; i++) {
    size_t b = spec_bytes(&specs[i]);
    pos += (size_t)snprintf(json + pos, sizeof json - pos, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                            i ? "," : "", specs[i].name, specs[i].dtype);
    for (int32_t k = 0; k < specs[i].rank; k++)
      pos += (size_t)snprintf(json + pos, sizeof json - pos, "%s%lld", k ? "," : "",
                              (long long)specs[i].d[k]);
    pos += (size_t)snprintf(json + pos, sizeof json - pos, "],\"data_offsets\":[%zu,%zu]}", off,
                            off + b);
    off += b;
  }
  pos += (size_t)snprintf(json + pos, sizeof json - pos, "}");
  while (pos % 8) json[pos++] = ' ';
  *size = 8 + pos + off;
  uint8_t *img = malloc(*size);
  kiln_store_u64(img, pos);
  memcpy(img + 8, json, pos);
  for (size_t i = 0; i < off; i++) img[8 + pos + i] = (uint8_t)(check_uniform(rng, 0, 256));
  *data_out = img + 8 + pos;
  return img;
}

static void write_file(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  if (!f) return;
  CHECK(fwrite(p, 1, n, f) == n);
  fclose(f);
}

static const spec specs[] = {
    {"model.conv.weight", "F32", 3, {4, 2, 3}, 4}, {"model.ln.bias", "F16", 1, {5}, 2},
    {"model.ln.weight", "BF16", 1, {5}, 2},        {"q", "I8", 2, {3, 3}, 1},
    {"ids", "I32", 1, {7}, 4},                     {"pos", "I64", 2, {2, 2}, 8},
    {"raw", "U8", 1, {9}, 1},                      {"mask", "BOOL", 1, {4}, 1},
    {"empty", "F32", 2, {0, 4}, 4},                {"scalar", "F32", 0, {0}, 4}};
#define N_SPECS ((int)(sizeof specs / sizeof specs[0]))

static void check_contents(kiln_safetensors *st, const uint8_t *data_area, const spec *sp, int n) {
  CHECK_EQ_INT(kiln_safetensors_count(st), n);
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    kiln_safetensors_tensor t;
    CHECK_OK(kiln_safetensors_find(st, sp[i].name, &t));
    CHECK_EQ_STR(t.name, sp[i].name);
    CHECK_EQ_STR(kiln_st_dtype_name(t.st_dtype), sp[i].dtype);
    CHECK_EQ_INT(t.dims.rank, sp[i].rank);
    for (int32_t k = 0; k < sp[i].rank; k++) CHECK_EQ_INT(t.dims.d[k], sp[i].d[k]);
    size_t b = spec_bytes(&sp[i]);
    CHECK_EQ_INT(t.bytes, b);
    if (data_area) CHECK(memcmp(t.data, data_area + off, b) == 0);
    off += b;
  }
  /* Iteration is in name order and covers everything. */
  for (int64_t i = 1; i < kiln_safetensors_count(st); i++) {
    kiln_safetensors_tensor a, b;
    CHECK_OK(kiln_safetensors_get(st, i - 1, &a));
    CHECK_OK(kiln_safetensors_get(st, i, &b));
    CHECK(strcmp(a.name, b.name) < 0);
  }
  kiln_safetensors_tensor t;
  CHECK_STATUS(kiln_safetensors_get(st, n, &t), KILN_ERR_INVALID_ARG);
  CHECK_STATUS(kiln_safetensors_find(st, "nope", &t), KILN_ERR_NOT_FOUND);
  CHECK_MSG("\"nope\"");
}

static void test_single(const char *dir) {
  check_rng rng = {0xfeed};
  size_t size;
  const uint8_t *data;
  uint8_t *img = make_image(specs, N_SPECS, "\"__metadata__\":{\"format\":\"pt\",\"n\":3}", &rng, &size, &data);
  kiln_safetensors *st = NULL;
  CHECK_OK(kiln_safetensors_open_memory(img, size, "mem", &st));
  if (st) {
    check_contents(st, data, specs, N_SPECS);
    CHECK_EQ_STR(kiln_safetensors_metadata(st, "format"), "pt");
    CHECK(kiln_safetensors_metadata(st, "n") == NULL); /* non-string values are skipped */
    kiln_safetensors_tensor t;
    CHECK_OK(kiln_safetensors_find(st, "model.ln.weight", &t));
    CHECK_EQ_INT(t.dtype, KILN_DTYPE_BF16);
    CHECK_OK(kiln_safetensors_find(st, "mask", &t));
    CHECK_EQ_INT(t.dtype, KILN_DTYPE_INVALID);
    kiln_safetensors_close(st);
  }
  /* From a file, and from its folder as model.safetensors. */
  char path[512];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  write_file(path, img, size);
  st = NULL;
  CHECK_OK(kiln_safetensors_open(path, &st));
  if (st) {
    check_contents(st, data, specs, N_SPECS);
    kiln_safetensors_tensor t;
    CHECK_OK(kiln_safetensors_find(st, "q", &t));
    CHECK_EQ_STR(t.file, path);
    kiln_safetensors_close(st);
  }
  st = NULL;
  CHECK_OK(kiln_safetensors_open(dir, &st));
  if (st) check_contents(st, data, specs, N_SPECS);
  kiln_safetensors_close(st);
  unlink(path);
  /* Every truncation fails cleanly. */
  for (size_t n = 0; n < size; n++) {
    st = NULL;
    kiln_status s = kiln_safetensors_open_memory(img, n, "cut", &st);
    check_count_++;
    if (s != KILN_ERR_FORMAT || st) CHECK_FAIL_("truncated to %zu bytes: status %d", n, (int)s);
  }
  free(img);
}

static void test_python_file(void) {
  kiln_safetensors *st = NULL;
  CHECK_OK(kiln_safetensors_open(KILN_SOURCE_DIR "/tests/data/tiny.safetensors", &st));
  if (!st) return;
  CHECK_EQ_INT(kiln_safetensors_count(st), 5);
  CHECK_EQ_STR(kiln_safetensors_metadata(st, "format"), "np");
  kiln_safetensors_tensor t;
  CHECK_OK(kiln_safetensors_find(st, "encoder.weight", &t));
  CHECK(t.dtype == KILN_DTYPE_FP32 && t.dims.rank == 2 && t.dims.d[0] == 4 && t.dims.d[1] == 3);
  for (int i = 0; i < 12 && t.data; i++) {
    float v;
    memcpy(&v, (const uint8_t *)t.data + 4 * i, 4);
    CHECK_NEAR(v, i * 0.25 - 1.0, 0);
  }
  CHECK_OK(kiln_safetensors_find(st, "encoder.bias", &t));
  CHECK(t.dtype == KILN_DTYPE_FP16 && t.bytes == 8);
  uint16_t h;
  memcpy(&h, (const uint8_t *)t.data + 6, 2);
  CHECK_NEAR(kiln_fp16_to_fp32(h), -0.25, 0);
  CHECK_OK(kiln_safetensors_find(st, "ids", &t));
  int64_t v5;
  memcpy(&v5, (const uint8_t *)t.data + 40, 8);
  CHECK(t.st_dtype == KILN_ST_I64 && v5 == 5);
  CHECK_OK(kiln_safetensors_find(st, "mask", &t));
  CHECK(t.st_dtype == KILN_ST_BOOL && t.bytes == 3 && ((const uint8_t *)t.data)[1] == 0);
  CHECK_OK(kiln_safetensors_find(st, "scalar", &t));
  CHECK(t.dims.rank == 0 && t.bytes == 4);
  kiln_safetensors_close(st);
}

static void test_sharded(const char *dir) {
  check_rng rng = {0xabc};
  size_t s1, s2;
  const uint8_t *d1, *d2;
  uint8_t *a = make_image(specs, 4, NULL, &rng, &s1, &d1);
  uint8_t *b = make_image(specs + 4, N_SPECS - 4, NULL, &rng, &s2, &d2);
  char p1[512], p2[512], idx[512];
  snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
  snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
  snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
  write_file(p1, a, s1);
  write_file(p2, b, s2);
  char json[4096];
  size_t pos = (size_t)snprintf(json, sizeof json, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
  for (int i = 0; i < N_SPECS; i++)
    pos += (size_t)snprintf(json + pos, sizeof json - pos, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"",
                            i ? "," : "", specs[i].name, i < 4 ? 1 : 2);
  snprintf(json + pos, sizeof json - pos, "}}");
  write_file(idx, json, strlen(json));
  kiln_safetensors *st = NULL;
  CHECK_OK(kiln_safetensors_open(dir, &st));
  if (st) {
    check_contents(st, NULL, specs, N_SPECS);
    kiln_safetensors_tensor t;
    CHECK_OK(kiln_safetensors_find(st, "q", &t));
    CHECK_EQ_STR(t.file, p1);
    CHECK(memcmp(t.data, d1 + spec_bytes(&specs[0]) + spec_bytes(&specs[1]) + spec_bytes(&specs[2]), 9) == 0);
    CHECK_OK(kiln_safetensors_find(st, "ids", &t));
    CHECK_EQ_STR(t.file, p2);
    CHECK(memcmp(t.data, d2, 28) == 0);
    kiln_safetensors_close(st);
  }
  st = NULL;
  CHECK_OK(kiln_safetensors_open(idx, &st));
  CHECK_EQ_INT(kiln_safetensors_count(st), N_SPECS);
  kiln_safetensors_close(st);
  /* weight_map names the wrong shard for a tensor. */
  char bad[4096];
  snprintf(bad, sizeof bad, "{\"weight_map\":{\"q\":\"model-00002-of-00002.safetensors\",\"ids\":\"model-00001-of-00002.safetensors\"}}");
  write_file(idx, bad, strlen(bad));
  st = NULL;
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_FORMAT);
  CHECK_MSG("\"q\"");
  /* A tensor that no shard holds. */
  snprintf(bad, sizeof bad, "{\"weight_map\":{\"q\":\"model-00001-of-00002.safetensors\",\"ghost\":\"model-00001-of-00002.safetensors\"}}");
  write_file(idx, bad, strlen(bad));
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_FORMAT);
  CHECK_MSG("\"ghost\"");
  /* A shard outside the folder, and a missing shard. */
  snprintf(bad, sizeof bad, "{\"weight_map\":{\"q\":\"../evil.safetensors\"}}");
  write_file(idx, bad, strlen(bad));
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_FORMAT);
  CHECK_MSG("weight_map");
  snprintf(bad, sizeof bad, "{\"weight_map\":{\"q\":\"missing.safetensors\"}}");
  write_file(idx, bad, strlen(bad));
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_NOT_FOUND);
  CHECK_MSG("missing.safetensors");
  /* The same tensor in both shards. */
  unlink(p2);
  write_file(p2, a, s1);
  snprintf(bad, sizeof bad, "{\"weight_map\":{\"q\":\"model-00001-of-00002.safetensors\",\"ids\":\"model-00002-of-00002.safetensors\"}}");
  write_file(idx, bad, strlen(bad));
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_FORMAT);
  CHECK_MSG("appears twice");
  write_file(idx, "not json", 8);
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_FORMAT);
  CHECK(st == NULL);
  unlink(p1);
  unlink(p2);
  unlink(idx);
  CHECK_STATUS(kiln_safetensors_open(dir, &st), KILN_ERR_NOT_FOUND);
  free(a);
  free(b);
}

/* A header given as JSON text plus `data_bytes` bytes of data. */
static void expect_bad_header(const char *json, size_t data_bytes, kiln_status want, const char *needle) {
  size_t jl = strlen(json), size = 8 + jl + data_bytes;
  uint8_t *img = calloc(1, size);
  kiln_store_u64(img, jl);
  memcpy(img + 8, json, jl);
  kiln_safetensors *st = NULL;
  CHECK_STATUS(kiln_safetensors_open_memory(img, size, "bad.safetensors", &st), want);
  CHECK(st == NULL);
  CHECK_MSG(needle);
  CHECK_MSG("bad.safetensors");
  free(img);
}

static void test_bad(void) {
  expect_bad_header("{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, KILN_ERR_UNSUPPORTED, "F64");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT, "\"w\"");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT, "shape");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT, "8 dims");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, KILN_ERR_FORMAT, "need 8");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, KILN_ERR_FORMAT, "outside");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, KILN_ERR_FORMAT, "outside");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT, "overflows");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, KILN_ERR_FORMAT, "overlap");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, KILN_ERR_FORMAT, "twice");
  expect_bad_header("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, KILN_ERR_FORMAT, "dtype");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, KILN_ERR_FORMAT, "data_offsets");
  expect_bad_header("{\"w\":[1,2]}", 4, KILN_ERR_FORMAT, "not a JSON object");
  expect_bad_header("[1,2]", 4, KILN_ERR_FORMAT, "not a JSON object");
  expect_bad_header("{\"w\":{\"dtype\":\"F32\",", 4, KILN_ERR_FORMAT, "not a JSON object");
  expect_bad_header("{\"__metadata__\":[1]}", 0, KILN_ERR_FORMAT, "__metadata__");
  /* Header length beyond the file, and a too small file. */
  uint8_t img[16] = {0};
  kiln_store_u64(img, 9);
  kiln_safetensors *st = NULL;
  CHECK_STATUS(kiln_safetensors_open_memory(img, sizeof img, "short.safetensors", &st), KILN_ERR_FORMAT);
  CHECK_MSG("short.safetensors");
  CHECK_STATUS(kiln_safetensors_open_memory(img, 5, "tiny", &st), KILN_ERR_FORMAT);
  CHECK_STATUS(kiln_safetensors_open_memory(NULL, 0, NULL, &st), KILN_ERR_FORMAT);
  /* An empty checkpoint is valid. */
  uint8_t empty[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  CHECK_OK(kiln_safetensors_open_memory(empty, sizeof empty, "empty", &st));
  CHECK_EQ_INT(kiln_safetensors_count(st), 0);
  kiln_safetensors_close(st);
  st = NULL;
  CHECK_STATUS(kiln_safetensors_open("/nonexistent/x.safetensors", &st), KILN_ERR_NOT_FOUND);
  CHECK_MSG("/nonexistent/x.safetensors");
}

int main(void) {
  char dir[] = "/tmp/kiln_st_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  test_single(dir);
  test_python_file();
  test_sharded(dir);
  test_bad();
  rmdir(dir);
  return check_report();
}

/* tests/unit/test_npy.c - the .npy reader and writer: files written by numpy
 * (tests/data/npy_*.npy, from tests/data/make_test_data.py) read back with the values numpy
 * stored; random arrays of every supported dtype survive write -> read; numpy can read what kiln
 * writes (when python3 with numpy is present); bad headers are rejected with a clear message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/npy.h"

#define DATA KILN_SOURCE_DIR "/tests/data/"

static void test_numpy_files(void) {
  kiln_npy a;
  CHECK_OK(kiln_npy_read(DATA "npy_f4.npy", &a));
  CHECK(a.dtype == KILN_DTYPE_FP32 && a.dims.rank == 2 && a.dims.d[0] == 2 && a.dims.d[1] == 3);
  for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)a.data)[i], i * 0.25 - 1.0, 0);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_f2.npy", &a));
  CHECK(a.dtype == KILN_DTYPE_FP16 && a.dims.rank == 1 && a.dims.d[0] == 4);
  for (int i = 0; i < 4; i++) CHECK_NEAR(kiln_fp16_to_fp32(((uint16_t *)a.data)[i]), i * 0.25 - 1.0, 0);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_i4.npy", &a));
  CHECK(a.dtype == KILN_DTYPE_INT32 && a.dims.rank == 2 && a.dims.d[0] == 3 && a.dims.d[1] == 4);
  for (int i = 0; i < 12; i++) CHECK_EQ_INT(((int32_t *)a.data)[i], i - 5);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_i8.npy", &a));
  CHECK(a.dtype == KILN_DTYPE_INT64 && a.dims.d[0] == 3);
  CHECK_EQ_INT(((int64_t *)a.data)[0], -(1ll << 40));
  CHECK_EQ_INT(((int64_t *)a.data)[2], (1ll << 40) + 3);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_i1.npy", &a));
  CHECK(a.dtype == KILN_DTYPE_INT8 && a.dims.rank == 3 && a.bytes == 8);
  for (int i = 0; i < 8; i++) CHECK_EQ_INT(((int8_t *)a.data)[i], i - 4);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_scalar.npy", &a));
  CHECK(a.dims.rank == 0 && a.bytes == 4);
  CHECK_NEAR(((float *)a.data)[0], 3.5, 0);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_empty.npy", &a));
  CHECK(a.dims.rank == 2 && a.dims.d[0] == 0 && a.dims.d[1] == 5 && a.bytes == 0);
  kiln_npy_free(&a);
  CHECK_OK(kiln_npy_read(DATA "npy_v2.npy", &a));
  CHECK(a.dims.rank == 2 && a.dims.d[0] == 3 && a.dims.d[1] == 2);
  for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)a.data)[i], i * 0.25 - 1.0, 0);
  kiln_npy_free(&a);
  kiln_npy untouched;
  memset(&untouched, 0x5a, sizeof untouched);
  kiln_npy b = untouched;
  CHECK_STATUS(kiln_npy_read(DATA "npy_fortran.npy", &b), KILN_ERR_UNSUPPORTED);
  CHECK_MSG("Fortran");
  CHECK_MSG("ascontiguousarray");
  CHECK_STATUS(kiln_npy_read(DATA "npy_f8.npy", &b), KILN_ERR_UNSUPPORTED);
  CHECK_MSG("'<f8'");
  CHECK(memcmp(&b, &untouched, sizeof b) == 0);
  CHECK_STATUS(kiln_npy_read(DATA "tiny.safetensors", &b), KILN_ERR_FORMAT);
  CHECK_MSG("not a .npy file");
  CHECK_STATUS(kiln_npy_read(DATA "missing.npy", &b), KILN_ERR_NOT_FOUND);
}

static void test_round_trip(const char *dir) {
  static const kiln_dtype dtypes[] = {KILN_DTYPE_FP32, KILN_DTYPE_FP16, KILN_DTYPE_INT32,
                                      KILN_DTYPE_INT64, KILN_DTYPE_INT8};
  check_rng rng = {0x77};
  char path[512];
  snprintf(path, sizeof path, "%s/a.npy", dir);
  for (int rank = 0; rank <= KILN_MAX_DIMS; rank++)
    for (size_t k = 0; k < sizeof dtypes / sizeof dtypes[0]; k++) {
      kiln_dims d = {.rank = rank};
      for (int i = 0; i < rank; i++) d.d[i] = 1 + (int64_t)check_uniform(&rng, 0, rank > 4 ? 2 : 5);
      size_t bytes = kiln_dtype_bytes(dtypes[k], kiln_dims_count(&d));
      uint8_t *buf = malloc(bytes + 1);
      for (size_t i = 0; i < bytes; i++) buf[i] = (uint8_t)check_uniform(&rng, 0, 256);
      CHECK_OK(kiln_npy_write(path, dtypes[k], &d, buf));
      kiln_npy a;
      CHECK_OK(kiln_npy_read(path, &a));
      CHECK_EQ_INT(a.dtype, dtypes[k]);
      CHECK(kiln_dims_equal(&a.dims, &d));
      CHECK(a.bytes == bytes && memcmp(a.data, buf, bytes) == 0);
      kiln_npy_free(&a);
      free(buf);
    }
  kiln_dims d = {.rank = 1, .d = {3}};
  float v[3] = {1, 2, 3};
  CHECK_STATUS(kiln_npy_write(path, KILN_DTYPE_BF16, &d, v), KILN_ERR_UNSUPPORTED);
  CHECK_MSG("fp32");
  d.d[0] = -1;
  CHECK_STATUS(kiln_npy_write(path, KILN_DTYPE_FP32, &d, v), KILN_ERR_INVALID_ARG);
  /* numpy reads kiln's file (skipped when python3/numpy is missing). */
  d = (kiln_dims){.rank = 2, .d = {2, 3}};
  float w[6];
  check_fill(&rng, w, 6, -2, 2);
  CHECK_OK(kiln_npy_write(path, KILN_DTYPE_FP32, &d, w));
  char cmd[1024];
  snprintf(cmd, sizeof cmd,
           "python3 -c \"import numpy as n; a=n.load('%s'); assert a.shape==(2,3) and "
           "a.dtype==n.float32; print(' '.join('%%.9g' %% x for x in a.ravel()))\" 2>/dev/null", path);
  FILE *p = popen(cmd, "r");
  if (p) {
    float got[6];
    int n = 0;
    while (n < 6 && fscanf(p, "%f", &got[n]) == 1) n++;
    int rc = pclose(p);
    if (rc == 0) {
      CHECK_EQ_INT(n, 6);
      for (int i = 0; i < n; i++) CHECK(got[i] == w[i]);
    } else {
      fprintf(stderr, "note: python3 with numpy not available; skipped the numpy read-back\n");
    }
  }
  unlink(path);
}

static void expect_bad(const char *header, size_t data_bytes, kiln_status want, const char *needle) {
  uint8_t buf[512] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  size_t hl = strlen(header);
  buf[8] = (uint8_t)hl;
  buf[9] = 0;
  memcpy(buf + 10, header, hl);
  kiln_npy a;
  CHECK_STATUS(kiln_npy_read_memory(buf, 10 + hl + data_bytes, "bad.npy", &a), want);
  CHECK_MSG(needle);
  CHECK_MSG("bad.npy");
}

static void test_bad(void) {
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 4, KILN_ERR_FORMAT, "needs 8 bytes");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 12, KILN_ERR_FORMAT, "holds 12");
  expect_bad("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8, KILN_ERR_UNSUPPORTED, "'>f4'");
  expect_bad("{'descr': '<f4', 'fortran_order': False, }\n", 0, KILN_ERR_FORMAT, "missing");
  expect_bad("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }\n", 8, KILN_ERR_FORMAT, "True nor False");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }\n", 8, KILN_ERR_FORMAT, "non-negative");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }\n", 0, KILN_ERR_FORMAT, "too large");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }\n", 0, KILN_ERR_FORMAT, "overflows");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 4, KILN_ERR_UNSUPPORTED, "more than 8");
  expect_bad("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", 4, KILN_ERR_FORMAT, "repeated");
  expect_bad("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8, KILN_ERR_FORMAT, "malformed");
  expect_bad("{'descr: '<f4'}", 0, KILN_ERR_FORMAT, "malformed");
  expect_bad("[1, 2]", 0, KILN_ERR_FORMAT, "'{'");
  uint8_t v9[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 9, 0, 0, 0};
  kiln_npy a;
  CHECK_STATUS(kiln_npy_read_memory(v9, sizeof v9, "v9.npy", &a), KILN_ERR_VERSION);
  uint8_t longhdr[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 200, 0};
  CHECK_STATUS(kiln_npy_read_memory(longhdr, sizeof longhdr, "long.npy", &a), KILN_ERR_FORMAT);
  CHECK_MSG("truncated");
  CHECK_STATUS(kiln_npy_read_memory(NULL, 0, NULL, &a), KILN_ERR_FORMAT);
}

int main(void) {
  char dir[] = "/tmp/kiln_npy_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  test_numpy_files();
  test_round_trip(dir);
  test_bad();
  rmdir(dir);
  return check_report();
}

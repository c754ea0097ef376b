/* tests/unit/test_timing_cache.c - the timing cache: insert/lookup/replace, save + load round
 * trip, and the never-fail load rules (missing file, other key -> info log, damaged or foreign
 * file -> warning; each gives an empty cache).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "builder/timing_cache.h"
#include "check.h"

static int n_info, n_warn;
static char last_log[1024];

static void hook(kiln_log_level level, const char *msg, void *ud) {
  (void)ud;
  if (level == KILN_LOG_INFO) n_info++;
  if (level == KILN_LOG_WARN) n_warn++;
  snprintf(last_log, sizeof last_log, "%s", msg);
}

static kiln_timing_key make_key(void) {
  kiln_timing_key k;
  memset(&k, 0, sizeof k);
  strcpy(k.gpu_name, "NVIDIA H100 80GB HBM3");
  k.cc_major = 9;
  k.cc_minor = 0;
  k.driver_version = 12080;
  k.cuda_runtime_version = 13000;
  strcpy(k.kiln_version, "0.1.0");
  return k;
}

static kiln_tactic random_tactic(check_rng *r) {
  kiln_tactic t;
  memset(&t, 0, sizeof t);
  t.kind = (int32_t)check_uniform(r, 0, 4);
  t.index = (int32_t)check_uniform(r, 0, 1000);
  t.time_ms = check_uniform(r, 0.001f, 5.0f);
  t.workspace = (size_t)check_uniform(r, 0, 1 << 20);
  for (int i = 0; i < KILN_TACTIC_BYTES; i++) t.data[i] = (uint8_t)check_uniform(r, 0, 256);
  return t;
}

#define N_ENTRIES 300

static void key_of(char *buf, size_t n, int i) {
  snprintf(buf, n, "matmul|m=%d|n=%d|k=384|fp16|bias|%s", 1 + i * 7, 384 + (i % 5) * 128,
           i % 2 ? "gelu" : "none");
}

static int same_tactic(const kiln_tactic *a, const kiln_tactic *b) {
  return a->kind == b->kind && a->index == b->index && a->time_ms == b->time_ms &&
         a->workspace == b->workspace && memcmp(a->data, b->data, KILN_TACTIC_BYTES) == 0;
}

static void check_all(const kiln_timing_cache *c, const kiln_tactic *want) {
  CHECK_EQ_INT(kiln_timing_cache_count(c), N_ENTRIES);
  for (int i = 0; i < N_ENTRIES; i++) {
    char k[128];
    key_of(k, sizeof k, i);
    kiln_tactic t;
    CHECK(kiln_timing_cache_lookup(c, k, &t) == 1 && same_tactic(&t, &want[i]));
  }
  CHECK_EQ_INT(kiln_timing_cache_lookup(c, "matmul|m=2|absent", NULL), 0);
}

static kiln_timing_cache *load_expect_empty(const char *path, const kiln_timing_key *k, int info, int warn) {
  kiln_timing_cache *c = NULL;
  n_info = n_warn = 0;
  CHECK_OK(kiln_timing_cache_load(path, k, &c));
  CHECK_EQ_INT(kiln_timing_cache_count(c), 0);
  CHECK_EQ_INT(n_info, info);
  CHECK_EQ_INT(n_warn, warn);
  return c;
}

int main(void) {
  kiln_log_set_hook(hook, NULL);
  kiln_log_set_level(KILN_LOG_DEBUG);
  char dir[] = "/tmp/kiln_tc_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[512];
  snprintf(path, sizeof path, "%s/timing.cache", dir);
  kiln_timing_key key = make_key();
  check_rng rng = {0x5eed};
  kiln_tactic want[N_ENTRIES];

  /* Missing file: empty, silent. */
  kiln_timing_cache *c = load_expect_empty(path, &key, 0, 0);
  for (int i = N_ENTRIES - 1; i >= 0; i--) { /* reverse order: insert keeps them sorted */
    char k[128];
    key_of(k, sizeof k, i);
    want[i] = random_tactic(&rng);
    kiln_tactic junk = random_tactic(&rng);
    CHECK_OK(kiln_timing_cache_insert(c, k, &junk));
    CHECK_OK(kiln_timing_cache_insert(c, k, &want[i])); /* replaces */
  }
  check_all(c, want);
  CHECK_STATUS(kiln_timing_cache_insert(c, "", &want[0]), KILN_ERR_INVALID_ARG);
  CHECK_OK(kiln_timing_cache_save(c, path));
  kiln_timing_cache_destroy(c);

  /* Same key: everything back, no logs. */
  c = NULL;
  n_info = n_warn = 0;
  CHECK_OK(kiln_timing_cache_load(path, &key, &c));
  check_all(c, want);
  CHECK_EQ_INT(n_info + n_warn, 0);
  kiln_timing_cache_destroy(c);

  /* Another GPU / driver / CUDA / kiln: empty with an info line naming the difference. */
  kiln_timing_key k2 = key;
  k2.driver_version = 12090;
  kiln_timing_cache_destroy(load_expect_empty(path, &k2, 1, 0));
  CHECK(strstr(last_log, "driver") != NULL);
  k2 = key;
  strcpy(k2.gpu_name, "NVIDIA A100");
  kiln_timing_cache_destroy(load_expect_empty(path, &k2, 1, 0));
  CHECK(strstr(last_log, "GPU") != NULL);
  k2 = key;
  k2.cc_minor = 1;
  kiln_timing_cache_destroy(load_expect_empty(path, &k2, 1, 0));
  k2 = key;
  k2.cuda_runtime_version = 12080;
  kiln_timing_cache_destroy(load_expect_empty(path, &k2, 1, 0));
  k2 = key;
  strcpy(k2.kiln_version, "0.2.0");
  kiln_timing_cache_destroy(load_expect_empty(path, &k2, 1, 0));
  CHECK(strstr(last_log, "kiln version") != NULL);

  /* Damaged: every flipped byte and every truncation gives an empty cache and a warning. */
  void *img;
  size_t size;
  c = NULL;
  CHECK_OK(kiln_timing_cache_load(path, &key, &c));
  CHECK_OK(kiln_timing_cache_serialize(c, &img, &size));
  kiln_timing_cache_destroy(c);
  uint8_t *b = malloc(size);
  int bad_results = 0;
  for (size_t pos = 0; pos < size; pos += 1 + pos / 64) {
    memcpy(b, img, size);
    b[pos] ^= 0x41;
    n_info = n_warn = 0;
    c = NULL;
    kiln_status s = kiln_timing_cache_load_memory(b, size, &key, &c);
    if (s != KILN_OK || kiln_timing_cache_count(c) != 0 || n_warn != 1) bad_results++;
    kiln_timing_cache_destroy(c);
  }
  for (size_t n = 0; n < size; n += 1 + n / 32) {
    c = NULL;
    n_warn = 0;
    kiln_status s = kiln_timing_cache_load_memory(img, n, &key, &c);
    if (s != KILN_OK || kiln_timing_cache_count(c) != 0 || n_warn != 1) bad_results++;
    kiln_timing_cache_destroy(c);
  }
  CHECK_EQ_INT(bad_results, 0);
  /* A foreign file at the path. */
  FILE *f = fopen(path, "wb");
  fputs("\x89PNG\r\n\x1a\n not a cache at all", f);
  fclose(f);
  kiln_timing_cache_destroy(load_expect_empty(path, &key, 0, 1));
  CHECK(strstr(last_log, "not a kiln timing cache") != NULL);

  /* Saving into a missing folder fails with a message; the cache is still usable. */
  c = NULL;
  CHECK_OK(kiln_timing_cache_load_memory(img, size, &key, &c));
  check_all(c, want);
  CHECK_STATUS(kiln_timing_cache_save(c, "/nonexistent-dir/x/timing.cache"), KILN_ERR_IO);
  CHECK(strstr(kiln_last_error(), "/nonexistent-dir/x/timing.cache") != NULL);
  kiln_timing_cache_destroy(c);
  free(b);
  free(img);
  unlink(path);
  rmdir(dir);
  kiln_log_set_hook(NULL, NULL);
  return check_report();
}

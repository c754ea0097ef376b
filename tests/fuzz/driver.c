/* tests/fuzz/driver.c - a small standalone mutation fuzzer for kiln's fuzz targets, for
 * machines without libFuzzer (and for ctest). It is not coverage-guided: it mutates seed inputs
 * (the target's kiln_fuzz_seeds() plus files from corpus folders) with bit flips, byte sets,
 * interesting integers at random offsets, truncation, insertion, deletion, duplication and
 * splicing, and runs the target on each result in a buffer of exactly that size (so ASan sees
 * any over-read). Build it with -DKILN_SANITIZE=ON to catch memory errors, leaks and UB.
 *
 * Usage: fuzz_<target> [-t SECONDS] [-s SEED] [-w DIR] [PATH...]
 *   -w DIR: write the target's built-in seeds into DIR as seed-<n>.bin and exit (this is how
 *   tests/fuzz/corpus/<target>/ gets seeds that libFuzzer can start from).
 *   PATH: a folder (every file in it is a seed) or a file (run once: reproduce a crash).
 *   SECONDS defaults to $KILN_FUZZ_SECONDS, else 20. SEED defaults to $KILN_FUZZ_SEED, else time.
 * On a crash the input is written to ./crash-<pid>.bin before the process dies.
 * Exit status 0: nothing crashed (a crash ends the process with a signal or a sanitizer's code).
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"

#if defined(__SANITIZE_ADDRESS__)
#define KILN_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KILN_FUZZ_ASAN 1
#endif
#endif

#define FUZZ_MAX_INPUT (1u << 20)
#define MAX_SEEDS 4096

typedef struct input {
  uint8_t *data;
  size_t size;
} input;

static input seeds[MAX_SEEDS];
static int n_seeds;
static uint64_t rng_state;

/* The input being run, for the crash handler. */
static const uint8_t *volatile current;
static volatile size_t current_size;

static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static void add_seed(const uint8_t *data, size_t size, void *ud) {
  (void)ud;
  if (n_seeds == MAX_SEEDS || size > FUZZ_MAX_INPUT) return;
  uint8_t *copy = malloc(size ? size : 1);
  if (!copy) return;
  if (size) memcpy(copy, data, size);
  seeds[n_seeds].data = copy;
  seeds[n_seeds].size = size;
  n_seeds++;
}

static int read_file(const char *path, uint8_t **data, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  uint8_t *buf = malloc(FUZZ_MAX_INPUT);
  size_t n = buf ? fread(buf, 1, FUZZ_MAX_INPUT, f) : 0;
  fclose(f);
  if (!buf) return -1;
  *data = buf;
  *size = n;
  return 0;
}

static void add_folder(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    uint8_t *data;
    size_t size;
    if (read_file(path, &data, &size) == 0) {
      add_seed(data, size, NULL);
      free(data);
    }
  }
  closedir(d);
}

/* ---- crash reporting ------------------------------------------------------------------------- */

static void save_current(void) {
  char name[64];
  snprintf(name, sizeof name, "crash-%ld.bin", (long)getpid());
  int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  if (current && current_size) {
    ssize_t w = write(fd, (const void *)current, current_size);
    (void)w;
  }
  close(fd);
  const char msg[] = "fuzz driver: crashing input saved to ./crash-<pid>.bin\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
}

static void on_signal(int sig) {
  save_current();
  signal(sig, SIG_DFL);
  raise(sig);
}

extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

static void install_crash_handlers(void) {
  int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_signal);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(save_current);
}

/* ---- mutations ------------------------------------------------------------------------------- */

static const uint64_t interesting[] = {0,    1,          2,          7,          8,          16,
                                       64,   127,        128,        255,        256,        4095,
                                       4096, 32767,      32768,      65535,      65536,      0x7fffffff,
                                       0x80000000ull, 0xffffffffull, 0x100000000ull, 0x7fffffffffffffffull,
                                       0x8000000000000000ull, 0xffffffffffffffffull};

static void put_int(uint8_t *b, size_t size, uint64_t v) {
  static const size_t widths[] = {1, 2, 4, 8};
  size_t w = widths[below(4)];
  if (size < w) return;
  size_t pos = below(size - w + 1);
  if (rnd() & 1) v = (uint64_t)0 - v; /* negative values too */
  for (size_t i = 0; i < w; i++) b[pos + i] = (uint8_t)(v >> (8 * i));
}

/* Apply one mutation to buf (capacity FUZZ_MAX_INPUT) holding *size bytes. */
static void mutate_once(uint8_t *buf, size_t *size) {
  size_t n = *size;
  switch (below(9)) {
    case 0: /* bit flip */
      if (n) buf[below(n)] ^= (uint8_t)(1u << below(8));
      break;
    case 1: /* byte set */
      if (n) buf[below(n)] = (uint8_t)rnd();
      break;
    case 2: /* interesting integer */
      put_int(buf, n, interesting[below(sizeof interesting / sizeof interesting[0])]);
      break;
    case 3: /* truncate */
      *size = below(n + 1);
      break;
    case 4: { /* insert random bytes */
      size_t k = 1 + below(16), pos = below(n + 1);
      if (n + k > FUZZ_MAX_INPUT) break;
      memmove(buf + pos + k, buf + pos, n - pos);
      for (size_t i = 0; i < k; i++) buf[pos + i] = (uint8_t)rnd();
      *size = n + k;
      break;
    }
    case 5: { /* delete a chunk */
      if (!n) break;
      size_t pos = below(n), k = 1 + below(n - pos < 64 ? n - pos : 64);
      memmove(buf + pos, buf + pos + k, n - pos - k);
      *size = n - k;
      break;
    }
    case 6: { /* duplicate a chunk in place */
      if (!n) break;
      size_t from = below(n), k = 1 + below(n - from < 64 ? n - from : 64), to = below(n + 1);
      if (n + k > FUZZ_MAX_INPUT) break;
      uint8_t tmp[64];
      memcpy(tmp, buf + from, k);
      memmove(buf + to + k, buf + to, n - to);
      memcpy(buf + to, tmp, k);
      *size = n + k;
      break;
    }
    case 7: { /* splice: keep a prefix, continue with another seed's suffix */
      const input *o = &seeds[below((size_t)n_seeds)];
      size_t cut = below(n + 1), from = below(o->size + 1), k = o->size - from;
      if (cut + k > FUZZ_MAX_INPUT) k = FUZZ_MAX_INPUT - cut;
      memcpy(buf + cut, o->data + from, k);
      *size = cut + k;
      break;
    }
    default: /* overwrite a byte with a neighbour's value (length fields, tags) */
      if (n > 1) {
        size_t i = below(n - 1);
        buf[i] = buf[i + 1];
      }
      break;
  }
}

static void run_input(const uint8_t *data, size_t size) {
  uint8_t *exact = malloc(size ? size : 1); /* exactly sized: over-reads hit ASan's redzone */
  if (!exact) return;
  if (size) memcpy(exact, data, size);
  current = exact;
  current_size = size;
  LLVMFuzzerTestOneInput(exact, size);
  current = NULL;
  free(exact);
}

static int write_seeds(const char *dir, int first) {
  for (int i = first; i < n_seeds; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%d.bin", dir, i - first);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(seeds[i].data, 1, seeds[i].size, f) != seeds[i].size) {
      fprintf(stderr, "fuzz driver: cannot write %s\n", path);
      if (f) fclose(f);
      return 1;
    }
    fclose(f);
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Without ASan, cap the address space so a huge allocation from a corrupt count fails (and
 * the target aborts on the out-of-memory status) instead of succeeding lazily. */
static void limit_memory(void) {
#ifndef KILN_FUZZ_ASAN
  struct rlimit rl = {(rlim_t)4 << 30, (rlim_t)4 << 30};
  setrlimit(RLIMIT_AS, &rl);
#endif
}

int main(int argc, char **argv) {
  double seconds = getenv("KILN_FUZZ_SECONDS") ? atof(getenv("KILN_FUZZ_SECONDS")) : 20;
  uint64_t seed = getenv("KILN_FUZZ_SEED") ? strtoull(getenv("KILN_FUZZ_SEED"), NULL, 0)
                                           : (uint64_t)time(NULL);
  int reproduce = 0;
  const char *write_dir = NULL;
  install_crash_handlers();
  limit_memory();
  for (int i = 1; i < argc; i++) {
    struct stat sb;
    if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
      seconds = atof(argv[++i]);
    } else if (strcmp(argv[i], "-w") == 0 && i + 1 < argc) {
      write_dir = argv[++i];
    } else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) {
      seed = strtoull(argv[++i], NULL, 0);
    } else if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
      add_folder(argv[i]);
    } else if (stat(argv[i], &sb) == 0) {
      uint8_t *data;
      size_t size;
      if (read_file(argv[i], &data, &size) == 0) {
        fprintf(stderr, "running %s (%zu bytes)\n", argv[i], size);
        run_input(data, size);
        free(data);
      }
      reproduce = 1;
    } else {
      fprintf(stderr, "fuzz driver: %s does not exist; skipped\n", argv[i]);
    }
  }
  if (reproduce) return 0;
  int n_files = n_seeds;
  kiln_fuzz_seeds(add_seed, NULL);
  if (write_dir) return write_seeds(write_dir, n_files);
  if (n_seeds == 0) add_seed((const uint8_t *)"", 0, NULL);
  rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
  fprintf(stderr, "fuzz driver: %d seeds, %.0f s, seed %llu\n", n_seeds, seconds, (unsigned long long)seed);
  uint8_t *buf = malloc(FUZZ_MAX_INPUT);
  if (!buf) return 1;
  for (int i = 0; i < n_seeds; i++) run_input(seeds[i].data, seeds[i].size);
  double end = now_s() + seconds;
  long runs = 0;
  while (now_s() < end) {
    for (int batch = 0; batch < 64; batch++, runs++) {
      const input *s = &seeds[below((size_t)n_seeds)];
      size_t size = s->size;
      memcpy(buf, s->data, size);
      int n_mut = 1 + (int)below(rnd() % 4 == 0 ? 16 : 3);
      for (int m = 0; m < n_mut; m++) mutate_once(buf, &size);
      run_input(buf, size);
    }
  }
  fprintf(stderr, "fuzz driver: %ld runs, no crash\n", runs);
  free(buf);
  for (int i = 0; i < n_seeds; i++) free(seeds[i].data);
  return 0;
}

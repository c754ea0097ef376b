/* tests/unit/test_engine_format.c - the engine file format: a graph with every op kind, several
 * weight dtypes, a plugin, profiles and tactics survives serialize -> parse (borrowing and
 * copying weights) field for field; damaged, truncated, foreign and crafted files are rejected
 * with the expected status and a message that says what to do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "core/bytes.h"
#include "engine_fixture.h"
#include "net/graph.h"
#include "runtime/engine_format.h"

static int dims_same(const kiln_dims *a, const kiln_dims *b) {
  if (a->rank != b->rank) return 0;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->d[i] != b->d[i]) return 0;
  return 1;
}

static void compare_tensors(const kiln_graph *a, const kiln_graph *b) {
  CHECK_EQ_INT(a->n_tensors, b->n_tensors);
  for (int32_t i = 0; i < a->n_tensors && i < b->n_tensors; i++) {
    const kiln_tensor_def *x = &a->tensors[i], *y = &b->tensors[i];
    CHECK_EQ_STR(x->name, y->name);
    CHECK_EQ_INT(x->kind, y->kind);
    CHECK_EQ_INT(x->dtype, y->dtype);
    CHECK(dims_same(&x->dims, &y->dims));
    CHECK_EQ_INT(x->is_output, y->is_output);
    CHECK_EQ_INT(x->producer, y->producer);
    CHECK_EQ_INT(x->offset, y->offset);
    CHECK_EQ_INT(x->bytes, y->bytes);
    CHECK_EQ_INT(x->data != NULL, y->data != NULL);
    if (x->data && y->data) CHECK(memcmp(x->data, y->data, x->bytes) == 0);
  }
}

static void compare_layers(const kiln_graph *a, const kiln_graph *b) {
  CHECK_EQ_INT(a->n_layers, b->n_layers);
  for (int32_t i = 0; i < a->n_layers && i < b->n_layers; i++) {
    const kiln_layer_def *x = &a->layers[i], *y = &b->layers[i];
    CHECK_EQ_STR(x->name, y->name);
    CHECK_EQ_INT(x->op, y->op);
    CHECK_EQ_INT(x->n_in, y->n_in);
    CHECK_EQ_INT(x->n_out, y->n_out);
    CHECK(memcmp(x->in, y->in, sizeof x->in) == 0);
    CHECK(memcmp(x->out, y->out, sizeof x->out) == 0);
    CHECK_EQ_INT(x->p.activation, y->p.activation);
    CHECK(x->p.eps == y->p.eps && x->p.scale == y->p.scale);
    CHECK_EQ_INT(x->p.causal, y->p.causal);
    CHECK_EQ_INT(x->p.stride, y->p.stride);
    CHECK_EQ_INT(x->p.axis, y->p.axis);
    CHECK_EQ_INT(x->p.start, y->p.start);
    CHECK_EQ_INT(x->p.end, y->p.end);
    CHECK(dims_same(&x->p.dims, &y->p.dims));
    CHECK_EQ_INT(x->p.plugin, y->p.plugin);
    CHECK_EQ_INT(x->p.heads, y->p.heads);
    CHECK_EQ_INT(x->p.group, y->p.group);
    CHECK_EQ_INT(x->p.cache_dtype, y->p.cache_dtype);
    CHECK_EQ_INT(x->tactic.kind, y->tactic.kind);
    CHECK_EQ_INT(x->tactic.index, y->tactic.index);
    CHECK(x->tactic.time_ms == y->tactic.time_ms);
    CHECK_EQ_INT(x->tactic.workspace, y->tactic.workspace);
    CHECK(memcmp(x->tactic.data, y->tactic.data, KILN_TACTIC_BYTES) == 0);
  }
}

static void compare_graphs(const kiln_graph *a, const kiln_graph *b) {
  compare_tensors(a, b);
  compare_layers(a, b);
  CHECK_EQ_INT(a->n_plugins, b->n_plugins);
  for (int32_t i = 0; i < a->n_plugins && i < b->n_plugins; i++) {
    CHECK_EQ_STR(a->plugins[i].name, b->plugins[i].name);
    CHECK_EQ_INT(a->plugins[i].version, b->plugins[i].version);
    CHECK_EQ_INT(a->plugins[i].size, b->plugins[i].size);
    CHECK(memcmp(a->plugins[i].data, b->plugins[i].data, a->plugins[i].size) == 0);
  }
  CHECK_EQ_INT(a->n_profiles, b->n_profiles);
  for (int32_t i = 0; i < a->n_profiles && i < b->n_profiles; i++) {
    const kiln_profile_def *x = &a->profiles[i], *y = &b->profiles[i];
    CHECK_EQ_INT(x->n, y->n);
    for (int32_t k = 0; k < x->n && k < y->n; k++) {
      CHECK_EQ_INT(x->tensor[k], y->tensor[k]);
      CHECK(dims_same(&x->min[k], &y->min[k]) && dims_same(&x->opt[k], &y->opt[k]) &&
            dims_same(&x->max[k], &y->max[k]));
    }
  }
  CHECK_EQ_INT(a->target, b->target);
  CHECK_EQ_INT(a->precision, b->precision);
  CHECK_EQ_INT(a->arena_bytes, b->arena_bytes);
  CHECK_EQ_INT(a->workspace_bytes, b->workspace_bytes);
}

static void compare_meta(const kiln_engine_meta *a, const kiln_engine_meta *b) {
  CHECK_EQ_INT(a->target, b->target);
  CHECK_EQ_INT(a->cc_major, b->cc_major);
  CHECK_EQ_INT(a->cc_minor, b->cc_minor);
  CHECK_EQ_INT(a->cuda_runtime_version, b->cuda_runtime_version);
  CHECK_EQ_STR(a->gpu_name, b->gpu_name);
  CHECK_EQ_STR(a->kiln_version, b->kiln_version);
  if (a->kernel_manifest || b->kernel_manifest) CHECK_EQ_STR(a->kernel_manifest, b->kernel_manifest);
}

static void test_round_trip(const kiln_graph *g, const kiln_engine_meta *m, const uint8_t *img,
                            size_t size) {
  for (int borrow = 0; borrow <= 1; borrow++) {
    kiln_graph h;
    kiln_engine_meta hm;
    CHECK_OK(kiln_engine_parse(img, size, borrow, &h, &hm));
    compare_graphs(g, &h);
    compare_meta(m, &hm);
    CHECK_EQ_INT(h.borrowed_weights, borrow);
    for (int32_t i = 0; i < h.n_tensors; i++) {
      const uint8_t *d = h.tensors[i].data;
      if (!d) continue;
      int inside = d >= img && d <= img + size;
      CHECK_EQ_INT(inside, borrow);
      if (borrow) CHECK_EQ_INT((size_t)(d - img) % KILN_ENGINE_WEIGHT_ALIGN, 0);
    }
    /* Serializing the parsed graph gives the same bytes. */
    void *img2 = NULL;
    size_t size2 = 0;
    CHECK_OK(kiln_engine_serialize(&h, &hm, &img2, &size2));
    CHECK(size2 == size && img2 && memcmp(img2, img, size) == 0);
    free(img2);
    kiln_graph_free(&h);
    kiln_engine_meta_free(&hm);
  }
}

/* Expect parse to fail with `want` and a message holding `needle`; g and meta stay untouched. */
static void expect_reject(const void *img, size_t size, kiln_status want, const char *needle) {
  kiln_graph g;
  kiln_engine_meta m;
  memset(&g, 0xAB, sizeof g);
  memset(&m, 0xCD, sizeof m);
  kiln_graph g0 = g;
  kiln_engine_meta m0 = m;
  for (int borrow = 0; borrow <= 1; borrow++) {
    CHECK_STATUS(kiln_engine_parse(img, size, borrow, &g, &m), want);
    CHECK_MSG(needle);
    CHECK(memcmp(&g, &g0, sizeof g) == 0 && memcmp(&m, &m0, sizeof m) == 0);
  }
}

static void test_truncated(const uint8_t *img, size_t size) {
  expect_reject(img, 0, KILN_ERR_FORMAT, "not a kiln engine");
  expect_reject(img, 5, KILN_ERR_FORMAT, "not a kiln engine");
  for (size_t n = 8; n < size; n += (n < 400 ? 1 : 97))
    expect_reject(img, n, KILN_ERR_FORMAT, "truncated");
  /* The message gives both sizes. */
  char want[64];
  snprintf(want, sizeof want, "(%zu of %zu bytes)", size - 1, size);
  expect_reject(img, size - 1, KILN_ERR_FORMAT, want);
}

static void test_magic_and_version(const uint8_t *img, size_t size) {
  uint8_t *b = malloc(size);
  memcpy(b, img, size);
  b[3] ^= 0x20;
  expect_reject(b, size, KILN_ERR_FORMAT, "not a kiln engine file");
  memcpy(b, img, size);
  kiln_store_u32(b + 8, KILN_ENGINE_FORMAT_VERSION + 1);
  expect_reject(b, size, KILN_ERR_VERSION, "newer");
  expect_reject(b, size, KILN_ERR_VERSION, "rebuild the engine");
  kiln_store_u32(b + 8, 0);
  expect_reject(b, size, KILN_ERR_VERSION, "older");
  free(b);
}

static void test_flips(const uint8_t *img, size_t size) {
  uint8_t *b = malloc(size);
  size_t meta_end = 128 + (size_t)kiln_load_u64(img + 48);
  size_t w_off = (size_t)kiln_load_u64(img + 56);
  check_rng rng = {0x1234567};
  for (size_t pos = 12; pos < 128; pos++) {
    memcpy(b, img, size);
    b[pos] ^= (uint8_t)(1u << (pos % 8));
    expect_reject(b, size, KILN_ERR_FORMAT, "checksum mismatch in the header");
  }
  for (int i = 0; i < 200; i++) {
    memcpy(b, img, size);
    size_t pos = 128 + (size_t)check_uniform(&rng, 0, (float)(meta_end - 128));
    b[pos] ^= (uint8_t)(1 + (int)check_uniform(&rng, 0, 255));
    expect_reject(b, size, KILN_ERR_FORMAT, "checksum mismatch in the metadata");
  }
  for (int i = 0; i < 200; i++) {
    memcpy(b, img, size);
    size_t pos = w_off + (size_t)check_uniform(&rng, 0, (float)(size - w_off));
    b[pos] ^= 0x10;
    expect_reject(b, size, KILN_ERR_FORMAT, "checksum mismatch in the weights");
  }
  free(b);
}

static void test_foreign(void) {
  static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0};
  expect_reject(png, sizeof png, KILN_ERR_FORMAT, "not a kiln engine file");
  /* A safetensors file: 8-byte header length, JSON, data. */
  uint8_t st[200];
  const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  size_t jl = strlen(json);
  kiln_store_u64(st, jl);
  memcpy(st + 8, json, jl);
  memset(st + 8 + jl, 0x3f, 8);
  expect_reject(st, 16 + jl, KILN_ERR_FORMAT, "not a kiln engine file");
  expect_reject(NULL, 0, KILN_ERR_FORMAT, "not a kiln engine file");
  uint8_t zeros[512] = {0};
  expect_reject(zeros, sizeof zeros, KILN_ERR_FORMAT, "not a kiln engine file");
}

/* Recompute the metadata and header CRCs after editing the metadata. */
static void fix_crcs(uint8_t *b) {
  size_t meta_size = (size_t)kiln_load_u64(b + 48);
  kiln_store_u32(b + 80, (uint32_t)crc32(0, b + 128, (uInt)meta_size));
  kiln_store_u32(b + 124, (uint32_t)crc32(0, b, 124));
}

/* Position of the first metadata byte where the images of g and of g after `edit` differ. */
static size_t diff_pos(const uint8_t *img, size_t size, const kiln_graph *g,
                       const kiln_engine_meta *m, void (*edit)(kiln_graph *)) {
  kiln_graph h;
  CHECK_OK(kiln_graph_clone(g, &h));
  edit(&h);
  void *img2 = NULL;
  size_t size2 = 0, pos = 0;
  CHECK_OK(kiln_engine_serialize(&h, m, &img2, &size2));
  for (pos = 128; img2 && pos < size && pos < size2; pos++)
    if (((uint8_t *)img2)[pos] != img[pos]) break;
  free(img2);
  kiln_graph_free(&h);
  CHECK(pos + 8 <= size); /* the edit changed something */
  return pos + 8 <= size ? pos : 128;
}

static void edit_layer_input(kiln_graph *h) { h->layers[1].in[1] = 3; }          /* add: x -> b */
static void edit_tensor_dtype(kiln_graph *h) { h->tensors[11].dtype = KILN_DTYPE_FP16; }
static void edit_op(kiln_graph *h) { h->layers[2].op = KILN_OP_ADD; }
static void edit_plugin_index(kiln_graph *h) {
  kiln_plugin_def *p = realloc(h->plugins, 2 * sizeof *p);
  if (!p) return;
  h->plugins = p;
  p[1] = p[0];
  p[1].name = malloc(8);
  strcpy(p[1].name, "other");
  p[1].data = malloc(1);
  p[1].size = 1;
  p[1].data[0] = 7;
  h->n_plugins = h->cap_plugins = 2;
  h->layers[h->n_layers - 1].p.plugin = 1;
}
static void edit_profile_tensor(kiln_graph *h) {
  kiln_profile_def *p = &h->profiles[0];
  int32_t t = p->tensor[0];
  kiln_dims mn = p->min[0], op = p->opt[0], mx = p->max[0];
  p->tensor[0] = p->tensor[1];
  p->min[0] = p->min[1];
  p->opt[0] = p->opt[1];
  p->max[0] = p->max[1];
  p->tensor[1] = t;
  p->min[1] = mn;
  p->opt[1] = op;
  p->max[1] = mx;
}
static void edit_name(kiln_graph *h) { h->tensors[0].name[0] = 'y'; }
static void edit_rank(kiln_graph *h) { h->tensors[11].dims.rank = 1; }

static void put_i32(uint8_t *b, size_t pos, int32_t v) { kiln_store_u32(b + pos, (uint32_t)v); }

static void test_crafted(const uint8_t *img, size_t size, const kiln_graph *g,
                         const kiln_engine_meta *m) {
  uint8_t *b = malloc(size);
  /* A layer input index out of range, and one that reads a later layer's output. */
  size_t pos = diff_pos(img, size, g, m, edit_layer_input);
  memcpy(b, img, size);
  put_i32(b, pos, 9999);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "input 1 is tensor 9999");
  memcpy(b, img, size);
  put_i32(b, pos, g->n_tensors - 1); /* the plugin layer's output, produced later */
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "topological order");
  memcpy(b, img, size);
  put_i32(b, pos, -1);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "rebuild the engine");
  /* An unknown dtype (tensor 11 is an activation; the byte found is the dtype's low byte). */
  pos = diff_pos(img, size, g, m, edit_tensor_dtype);
  memcpy(b, img, size);
  put_i32(b, pos, 77);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "unknown dtype");
  /* An unknown op. */
  pos = diff_pos(img, size, g, m, edit_op);
  memcpy(b, img, size);
  put_i32(b, pos, 99);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "unknown op");
  /* A plugin index out of range (the edit adds a second plugin so that index 1 is valid there;
   * the first difference is the plugin layer's index field, since layers precede plugins). */
  pos = diff_pos(img, size, g, m, edit_plugin_index);
  memcpy(b, img, size);
  put_i32(b, pos, 5);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "names plugin 5 of 1");
  /* A profile naming a non-input tensor (a constant). */
  pos = diff_pos(img, size, g, m, edit_profile_tensor);
  memcpy(b, img, size);
  put_i32(b, pos, 2);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "not a graph input");
  /* A NUL inside a name (duplicate names: test_duplicate_names). */
  pos = diff_pos(img, size, g, m, edit_name);
  memcpy(b, img, size);
  b[pos] = 0;
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "malformed");
  /* A rank beyond 8. */
  pos = diff_pos(img, size, g, m, edit_rank);
  memcpy(b, img, size);
  put_i32(b, pos, 9);
  fix_crcs(b);
  expect_reject(b, size, KILN_ERR_FORMAT, "malformed");
  /* A count far beyond the bytes left must fail before allocating: the tensor count sits right
   * after the strings, precision and sizes; find it as the first u32 equal to n_tensors after
   * the manifest. */
  memcpy(b, img, size);
  size_t meta_size = (size_t)kiln_load_u64(img + 48);
  size_t cpos = 0;
  for (size_t p = 128; p + 4 <= 128 + meta_size; p++)
    if (kiln_load_u32(img + p) == (uint32_t)g->n_tensors && kiln_load_u32(img + p + 4) == 1 &&
        img[p + 8] == 'x') {
      cpos = p;
      break;
    }
  CHECK(cpos != 0);
  if (cpos) {
    put_i32(b, cpos, 0x7fffffff);
    fix_crcs(b);
    expect_reject(b, size, KILN_ERR_FORMAT, "malformed");
  }
  free(b);
}

static void test_duplicate_names(const kiln_engine_meta *m) {
  /* Same-length names, so an edit in the file makes them collide. */
  kiln_graph g;
  kiln_graph_init(&g);
  kiln_dims d = {.rank = 1, .d = {-1}};
  int32_t a = kiln_graph_add_tensor(&g, "aa", KILN_TENSOR_INPUT, KILN_DTYPE_FP32, &d);
  int32_t b = kiln_graph_add_tensor(&g, "ab", KILN_TENSOR_INPUT, KILN_DTYPE_FP32, &d);
  CHECK(a == 0 && b == 1);
  g.target = m->target;
  void *img = NULL;
  size_t size = 0;
  CHECK_OK(kiln_engine_serialize(&g, m, &img, &size));
  uint8_t *p = img;
  size_t at = 0;
  for (size_t i = 128; i + 2 <= size; i++)
    if (p[i] == 'a' && p[i + 1] == 'b') at = i + 1;
  CHECK(at != 0);
  p[at] = 'a';
  fix_crcs(p);
  expect_reject(p, size, KILN_ERR_FORMAT, "used twice");
  free(img);
  /* The writer refuses an invalid graph as a builder bug. */
  g.layers = NULL;
  g.tensors[1].name[1] = 'a';
  void *img3 = NULL;
  CHECK_STATUS(kiln_engine_serialize(&g, m, &img3, &size), KILN_ERR_INTERNAL);
  CHECK(img3 == NULL);
  kiln_graph_free(&g);
}

static void test_file_map(const uint8_t *img, size_t size) {
  char path[] = "/tmp/kiln_engine_test_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK(write(fd, img, size) == (ssize_t)size);
  close(fd);
  const void *data = NULL;
  size_t n = 0;
  void *handle = NULL;
  CHECK_OK(kiln_file_map(path, &data, &n, &handle));
  CHECK(n == size && data && memcmp(data, img, size) == 0);
  kiln_graph g;
  kiln_engine_meta m;
  CHECK_OK(kiln_engine_parse(data, n, 1, &g, &m));
  CHECK_EQ_INT(g.n_layers, KILN_OP_COUNT_);
  kiln_graph_free(&g);
  kiln_engine_meta_free(&m);
  kiln_file_unmap(handle);
  /* Empty file: maps to size 0 and is then rejected as not an engine. */
  fd = open(path, O_WRONLY | O_TRUNC);
  close(fd);
  CHECK_OK(kiln_file_map(path, &data, &n, &handle));
  CHECK_EQ_INT(n, 0);
  expect_reject(data, n, KILN_ERR_FORMAT, "not a kiln engine file");
  kiln_file_unmap(handle);
  unlink(path);
  CHECK_STATUS(kiln_file_map(path, &data, &n, &handle), KILN_ERR_NOT_FOUND);
  CHECK_MSG(path);
}

int main(void) {
  kiln_graph g;
  kiln_engine_meta m;
  kiln_graph_init(&g);
  CHECK_EQ_INT(fixture_graph(&g, 42), 0);
  fixture_meta(&m);
  CHECK_OK(kiln_engine_validate_graph(&g));
  void *img = NULL;
  size_t size = 0;
  CHECK_OK(kiln_engine_serialize(&g, &m, &img, &size));
  if (!img) return check_report();
  CHECK_EQ_INT(size % KILN_ENGINE_WEIGHT_ALIGN, 0);
  test_round_trip(&g, &m, img, size);
  /* No manifest, CPU target. */
  kiln_engine_meta m_cpu = m;
  m_cpu.kernel_manifest = NULL;
  m_cpu.target = g.target = KILN_TARGET_CPU;
  void *img_cpu = NULL;
  size_t size_cpu = 0;
  CHECK_OK(kiln_engine_serialize(&g, &m_cpu, &img_cpu, &size_cpu));
  test_round_trip(&g, &m_cpu, img_cpu, size_cpu);
  free(img_cpu);
  g.target = KILN_TARGET_CUDA;
  /* cache_dtype: int8 on kv_attention only */
  kiln_layer_def *l0 = &g.layers[0];
  l0->p.cache_dtype = KILN_DTYPE_INT8;
  CHECK_STATUS(kiln_engine_validate_graph(&g), KILN_ERR_FORMAT);
  CHECK_MSG("cache dtype");
  l0->p.cache_dtype = 0;
  for (int32_t i = 0; i < g.n_layers; i++)
    if (g.layers[i].op == KILN_OP_KV_ATTENTION) {
      g.layers[i].p.cache_dtype = KILN_DTYPE_FP16;
      CHECK_STATUS(kiln_engine_validate_graph(&g), KILN_ERR_FORMAT);
      g.layers[i].p.cache_dtype = KILN_DTYPE_INT8;
    }
  CHECK_OK(kiln_engine_validate_graph(&g));
  test_truncated(img, size);
  test_magic_and_version(img, size);
  test_flips(img, size);
  test_foreign();
  test_crafted(img, size, &g, &m);
  test_duplicate_names(&m);
  test_file_map(img, size);
  free(img);
  kiln_graph_free(&g);
  kiln_engine_meta_free(&m);
  return check_report();
}

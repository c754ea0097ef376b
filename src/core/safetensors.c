/* src/core/safetensors.c - the safetensors reader (kiln/safetensors.h): single files, sharded
 * checkpoints through model.safetensors.index.json, and images in memory (for fuzzing).
 *
 * It validates and indexes; it does not convert dtypes or copy data (callers read the mapped
 * bytes). JSON is parsed with cJSON.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/bytes.h"
#include "core/error.h"
#include "core/file_map.h"
#include "kiln/safetensors.h"

/* The reference implementation refuses headers above 100 MB; so do we. */
#define MAX_HEADER_BYTES (100u * 1000u * 1000u)
/* Largest integer a JSON number (a double) holds exactly. */
#define MAX_JSON_INT 9007199254740992.0

typedef struct st_entry {
  char *name;
  kiln_st_dtype dtype;
  kiln_dims dims;
  uint64_t begin, end; /* within the file's data area */
  const uint8_t *data;
  int32_t file;
} st_entry;

typedef struct st_file {
  char *path;
  void *handle; /* kiln_file_map handle, NULL for memory images */
} st_file;

struct kiln_safetensors {
  st_file *files;
  int32_t n_files;
  st_entry *t;
  int64_t n, cap;
  char **meta; /* key, value pairs */
  int32_t n_meta;
};

static const char *const dtype_names[KILN_ST_DTYPE_COUNT_] = {"F32", "F16", "BF16", "I8",
                                                              "I32", "I64", "U8",  "BOOL"};
static const size_t dtype_sizes[KILN_ST_DTYPE_COUNT_] = {4, 2, 2, 1, 4, 8, 1, 1};
static const kiln_dtype kiln_dtypes[KILN_ST_DTYPE_COUNT_] = {
    KILN_DTYPE_FP32, KILN_DTYPE_FP16,  KILN_DTYPE_BF16,    KILN_DTYPE_INT8,
    KILN_DTYPE_INT32, KILN_DTYPE_INT64, KILN_DTYPE_INVALID, KILN_DTYPE_INVALID};

const char *kiln_st_dtype_name(kiln_st_dtype dtype) {
  return (int)dtype >= 0 && dtype < KILN_ST_DTYPE_COUNT_ ? dtype_names[dtype] : "invalid";
}

size_t kiln_st_dtype_size(kiln_st_dtype dtype) {
  return (int)dtype >= 0 && dtype < KILN_ST_DTYPE_COUNT_ ? dtype_sizes[dtype] : 0;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void kiln_safetensors_close(kiln_safetensors *st) {
  if (!st) return;
  for (int64_t i = 0; i < st->n; i++) free(st->t[i].name);
  for (int32_t i = 0; i < st->n_files; i++) {
    free(st->files[i].path);
    kiln_file_unmap(st->files[i].handle);
  }
  for (int32_t i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
  free(st->meta);
  free(st->files);
  free(st->t);
  free(st);
}

/* ---- one file's header ------------------------------------------------------------------------ */

typedef struct file_ctx {
  kiln_safetensors *st;
  int32_t file;
  const char *path;
  const uint8_t *data_area;
  uint64_t data_size;
} file_ctx;

static kiln_status bad_tensor(const file_ctx *fc, const char *name, const char *what) {
  return kiln_error(KILN_ERR_FORMAT,
                    "%s: tensor \"%s\": %s; the checkpoint is damaged or not a safetensors file "
                    "(re-download or re-export it)", fc->path, name, what);
}

/* A non-negative integer that a double holds exactly. */
static int json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= MAX_JSON_INT) || d != (double)(uint64_t)d) return -1;
  *out = (uint64_t)d;
  return 0;
}

static kiln_status parse_dtype(const file_ctx *fc, const char *name, const cJSON *v, kiln_st_dtype *dt) {
  if (!cJSON_IsString(v)) return bad_tensor(fc, name, "\"dtype\" is missing or not a string");
  for (int i = 0; i < KILN_ST_DTYPE_COUNT_; i++)
    if (strcmp(v->valuestring, dtype_names[i]) == 0) {
      *dt = (kiln_st_dtype)i;
      return KILN_OK;
    }
  char msg[160];
  snprintf(msg, sizeof msg, "dtype \"%.40s\" is not supported (F32, F16, BF16, I8, I32, I64, U8, BOOL)",
           v->valuestring);
  return kiln_error(KILN_ERR_UNSUPPORTED, "%s: tensor \"%s\": %s; convert the checkpoint", fc->path,
                    name, msg);
}

static kiln_status parse_shape(const file_ctx *fc, const char *name, const cJSON *v, kiln_dims *d) {
  if (!cJSON_IsArray(v)) return bad_tensor(fc, name, "\"shape\" is missing or not an array");
  int n = cJSON_GetArraySize(v);
  if (n > KILN_MAX_DIMS) return bad_tensor(fc, name, "\"shape\" has more than 8 dims");
  memset(d, 0, sizeof *d);
  d->rank = n;
  int i = 0;
  for (const cJSON *e = v->child; e; e = e->next, i++) {
    uint64_t x;
    if (json_uint(e, &x)) return bad_tensor(fc, name, "\"shape\" holds a value that is not a non-negative integer");
    d->d[i] = (int64_t)x;
  }
  if (kiln_dims_count_checked(d) < 0) return bad_tensor(fc, name, "\"shape\" overflows");
  return KILN_OK;
}

static kiln_status parse_offsets(const file_ctx *fc, const char *name, const cJSON *v, st_entry *e) {
  if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || json_uint(v->child, &e->begin) ||
      json_uint(v->child->next, &e->end))
    return bad_tensor(fc, name, "\"data_offsets\" is missing or not [begin, end]");
  if (e->begin > e->end || e->end > fc->data_size) {
    char msg[160];
    snprintf(msg, sizeof msg, "data_offsets [%llu, %llu] fall outside the %llu-byte data area",
             (unsigned long long)e->begin, (unsigned long long)e->end,
             (unsigned long long)fc->data_size);
    return bad_tensor(fc, name, msg);
  }
  uint64_t count = (uint64_t)kiln_dims_count_checked(&e->dims);
  size_t size = dtype_sizes[e->dtype];
  if (count > UINT64_MAX / size || count * size != e->end - e->begin) {
    char msg[200];
    snprintf(msg, sizeof msg, "data_offsets span %llu bytes but %s x %lld elements need %llu",
             (unsigned long long)(e->end - e->begin), dtype_names[e->dtype], (long long)count,
             count > UINT64_MAX / size ? 0ull : (unsigned long long)(count * size));
    return bad_tensor(fc, name, msg);
  }
  return KILN_OK;
}

static kiln_status add_entry(kiln_safetensors *st, st_entry *e) {
  if (st->n == st->cap) {
    int64_t cap = st->cap ? st->cap * 2 : 64;
    st_entry *t = realloc(st->t, (size_t)cap * sizeof *t);
    if (!t) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory indexing a checkpoint");
    st->t = t;
    st->cap = cap;
  }
  st->t[st->n++] = *e;
  return KILN_OK;
}

static kiln_status parse_entry(const file_ctx *fc, const cJSON *item) {
  const char *name = item->string;
  if (!cJSON_IsObject(item)) return bad_tensor(fc, name, "its entry is not a JSON object");
  st_entry e;
  memset(&e, 0, sizeof e);
  KILN_TRY(parse_dtype(fc, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e.dtype));
  KILN_TRY(parse_shape(fc, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), &e.dims));
  KILN_TRY(parse_offsets(fc, name, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), &e));
  e.data = fc->data_area + e.begin;
  e.file = fc->file;
  e.name = dup_str(name);
  if (!e.name) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory indexing %s", fc->path);
  kiln_status s = add_entry(fc->st, &e);
  if (s != KILN_OK) free(e.name);
  return s;
}

static kiln_status parse_metadata(const file_ctx *fc, const cJSON *meta) {
  kiln_safetensors *st = fc->st;
  if (!cJSON_IsObject(meta))
    return kiln_error(KILN_ERR_FORMAT, "%s: \"__metadata__\" is not an object; re-export the checkpoint",
                      fc->path);
  if (st->n_meta) return KILN_OK; /* the first file's metadata wins */
  int n = cJSON_GetArraySize(meta);
  st->meta = calloc(2 * (size_t)n + 1, sizeof *st->meta);
  if (!st->meta) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s", fc->path);
  for (const cJSON *m = meta->child; m; m = m->next) {
    if (!cJSON_IsString(m)) continue; /* the format allows strings only; skip anything else */
    char *k = dup_str(m->string), *v = dup_str(m->valuestring);
    st->meta[2 * st->n_meta] = k;
    st->meta[2 * st->n_meta + 1] = v;
    st->n_meta++;
    if (!k || !v) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory reading %s", fc->path);
  }
  return KILN_OK;
}

static int cmp_begin(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

/* Tensors [first, st->n) belong to one file: none may overlap another. */
static kiln_status check_overlaps(const file_ctx *fc, int64_t first) {
  kiln_safetensors *st = fc->st;
  int64_t n = st->n - first;
  if (n > 1) qsort(st->t + first, (size_t)n, sizeof *st->t, cmp_begin);
  const st_entry *a = NULL; /* the non-empty tensor reaching furthest so far */
  for (int64_t i = first; i < st->n; i++) {
    const st_entry *b = &st->t[i];
    if (b->begin == b->end) continue;
    if (a && b->begin < a->end)
      return kiln_error(KILN_ERR_FORMAT,
                        "%s: tensors \"%s\" and \"%s\" overlap (bytes [%llu, %llu) and [%llu, "
                        "%llu)); the checkpoint is damaged: re-download or re-export it",
                        fc->path, a->name, b->name, (unsigned long long)a->begin,
                        (unsigned long long)a->end, (unsigned long long)b->begin,
                        (unsigned long long)b->end);
    a = b;
  }
  return KILN_OK;
}

static kiln_status parse_header(file_ctx *fc, const uint8_t *data, size_t size) {
  if (size < 8)
    return kiln_error(KILN_ERR_FORMAT,
                      "%s is not a safetensors file (%zu bytes, too small for the 8-byte header "
                      "length); check the path or re-download it", fc->path, size);
  uint64_t hlen = kiln_load_u64(data);
  if (hlen > size - 8 || hlen > MAX_HEADER_BYTES)
    return kiln_error(KILN_ERR_FORMAT,
                      "%s: the header length %llu does not fit the %zu-byte file: the file is "
                      "truncated or not a safetensors file; re-download it", fc->path,
                      (unsigned long long)hlen, size);
  fc->data_area = data + 8 + hlen;
  fc->data_size = size - 8 - hlen;
  cJSON *root = cJSON_ParseWithLength((const char *)data + 8, (size_t)hlen);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_FORMAT,
                      "%s: the header is not a JSON object: the file is damaged or not a "
                      "safetensors file; re-download it", fc->path);
  }
  int64_t first = fc->st->n;
  kiln_status s = KILN_OK;
  for (const cJSON *item = root->child; item && s == KILN_OK; item = item->next)
    s = strcmp(item->string, "__metadata__") == 0 ? parse_metadata(fc, item) : parse_entry(fc, item);
  cJSON_Delete(root);
  if (s == KILN_OK) s = check_overlaps(fc, first);
  return s;
}

/* ---- the whole checkpoint ---------------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static kiln_status finish(kiln_safetensors *st, const char *what) {
  if (st->n > 1) qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_name);
  for (int64_t i = 1; i < st->n; i++)
    if (strcmp(st->t[i - 1].name, st->t[i].name) == 0)
      return kiln_error(KILN_ERR_FORMAT,
                        "%s: tensor \"%s\" appears twice (in %s and %s); the checkpoint is "
                        "damaged: re-download or re-export it", what, st->t[i].name,
                        st->files[st->t[i - 1].file].path, st->files[st->t[i].file].path);
  return KILN_OK;
}

static kiln_status add_file(kiln_safetensors *st, const char *path, void *handle, int32_t *index) {
  st_file *f = realloc(st->files, ((size_t)st->n_files + 1) * sizeof *f);
  if (!f) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory opening %s", path);
  st->files = f;
  f[st->n_files].path = dup_str(path);
  f[st->n_files].handle = handle;
  if (!f[st->n_files].path) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory opening %s", path);
  *index = st->n_files++;
  return KILN_OK;
}

static kiln_status parse_image(kiln_safetensors *st, const char *path, void *handle,
                               const void *data, size_t size) {
  file_ctx fc = {.st = st, .path = path};
  kiln_status s = add_file(st, path, handle, &fc.file);
  if (s != KILN_OK) {
    kiln_file_unmap(handle);
    return s;
  }
  fc.path = st->files[fc.file].path;
  return parse_header(&fc, data, size);
}

kiln_status kiln_safetensors_open_memory(const void *data, size_t size, const char *name,
                                         kiln_safetensors **out) {
  if ((!data && size) || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_open_memory: NULL argument");
  kiln_safetensors *st = calloc(1, sizeof *st);
  if (!st) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory opening a checkpoint");
  const char *what = name ? name : "(safetensors in memory)";
  kiln_status s = parse_image(st, what, NULL, data ? data : "", size);
  if (s == KILN_OK) s = finish(st, what);
  if (s != KILN_OK) {
    kiln_safetensors_close(st);
    return s;
  }
  *out = st;
  return KILN_OK;
}

static kiln_status open_file(kiln_safetensors *st, const char *path) {
  const void *data;
  size_t size;
  void *handle;
  KILN_TRY(kiln_file_map(path, &data, &size, &handle));
  return parse_image(st, path, handle, data, size);
}

/* The directory part of path ("" when none), with a trailing '/'. */
static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (size_t)(slash - path) + 1 : 0;
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, path, n);
  d[n] = '\0';
  return d;
}

static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 1);
  if (!p) return NULL;
  memcpy(p, dir, a);
  memcpy(p + a, name, b + 1);
  return p;
}

/* A shard name must stay inside the index's directory. */
static int shard_name_ok(const char *name) {
  return name[0] && name[0] != '/' && !strstr(name, "..");
}

static kiln_status open_shards(kiln_safetensors *st, const char *index_path, const cJSON *map,
                               const char *dir) {
  for (const cJSON *e = map->child; e; e = e->next) {
    if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring))
      return kiln_error(KILN_ERR_FORMAT,
                        "%s: weight_map entry \"%s\" does not name a shard file in the same "
                        "folder; fix or re-download the index", index_path, e->string);
    int seen = 0;
    for (const cJSON *p = map->child; p != e && !seen; p = p->next)
      seen = strcmp(p->valuestring, e->valuestring) == 0;
    if (seen) continue;
    char *path = join(dir, e->valuestring);
    if (!path) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory opening %s", index_path);
    kiln_status s = open_file(st, path);
    free(path);
    if (s != KILN_OK) return kiln_error_context(s, "%s names a shard that cannot be used: ", index_path);
  }
  return KILN_OK;
}

/* Every weight_map entry must be in the shard it names (after finish() sorted the tensors). */
static kiln_status check_weight_map(const kiln_safetensors *st, const char *index_path,
                                    const cJSON *map, const char *dir) {
  for (const cJSON *e = map->child; e; e = e->next) {
    kiln_safetensors_tensor t;
    if (kiln_safetensors_find(st, e->string, &t) != KILN_OK)
      return kiln_error(KILN_ERR_FORMAT,
                        "%s: tensor \"%s\" is listed in weight_map but is in no shard; the "
                        "checkpoint is incomplete: re-download it", index_path, e->string);
    char *want = join(dir, e->valuestring);
    int same = want && strcmp(want, t.file) == 0;
    free(want);
    if (!same)
      return kiln_error(KILN_ERR_FORMAT,
                        "%s: tensor \"%s\" is listed in shard %s but found in %s; re-download the "
                        "checkpoint", index_path, e->string, e->valuestring, t.file);
  }
  return KILN_OK;
}

static kiln_status open_index(kiln_safetensors *st, const char *index_path) {
  const void *data;
  size_t size;
  void *handle;
  KILN_TRY(kiln_file_map(index_path, &data, &size, &handle));
  cJSON *root = cJSON_ParseWithLength(data, size);
  kiln_file_unmap(handle);
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map)) {
    cJSON_Delete(root);
    return kiln_error(KILN_ERR_FORMAT,
                      "%s is not a safetensors index (no \"weight_map\" object); pass the model "
                      "folder or a .safetensors file", index_path);
  }
  char *dir = dir_of(index_path);
  kiln_status s = dir ? open_shards(st, index_path, map, dir)
                      : kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  if (s == KILN_OK) s = finish(st, index_path);
  if (s == KILN_OK) s = check_weight_map(st, index_path, map, dir);
  free(dir);
  cJSON_Delete(root);
  return s;
}

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static kiln_status open_dir(kiln_safetensors *st, const char *dir) {
  const char *sep = ends_with(dir, "/") ? "" : "/";
  size_t n = strlen(dir) + 64;
  char *p = malloc(n);
  if (!p) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  kiln_status s;
  snprintf(p, n, "%s%smodel.safetensors.index.json", dir, sep);
  if (exists(p)) {
    s = open_index(st, p);
  } else {
    snprintf(p, n, "%s%smodel.safetensors", dir, sep);
    if (exists(p)) {
      s = open_file(st, p);
      if (s == KILN_OK) s = finish(st, p);
    } else {
      s = kiln_error(KILN_ERR_NOT_FOUND,
                     "%s holds neither model.safetensors nor model.safetensors.index.json; pass a "
                     "Hugging Face model folder or a .safetensors file", dir);
    }
  }
  free(p);
  return s;
}

kiln_status kiln_safetensors_open(const char *path, kiln_safetensors **out) {
  if (!path || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_open: NULL argument");
  kiln_safetensors *st = calloc(1, sizeof *st);
  if (!st) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory opening %s", path);
  kiln_status s;
  if (is_dir(path)) {
    s = open_dir(st, path);
  } else if (ends_with(path, ".json")) {
    s = open_index(st, path);
  } else {
    s = open_file(st, path);
    if (s == KILN_OK) s = finish(st, path);
  }
  if (s != KILN_OK) {
    kiln_safetensors_close(st);
    return s;
  }
  *out = st;
  return KILN_OK;
}

int64_t kiln_safetensors_count(const kiln_safetensors *st) { return st ? st->n : 0; }

static void fill(const kiln_safetensors *st, const st_entry *e, kiln_safetensors_tensor *out) {
  out->name = e->name;
  out->st_dtype = e->dtype;
  out->dtype = kiln_dtypes[e->dtype];
  out->dims = e->dims;
  out->data = e->data;
  out->bytes = (size_t)(e->end - e->begin);
  out->file = st->files[e->file].path;
}

kiln_status kiln_safetensors_get(const kiln_safetensors *st, int64_t index,
                                 kiln_safetensors_tensor *out) {
  if (!st || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_get: NULL argument");
  if (index < 0 || index >= st->n)
    return kiln_error(KILN_ERR_INVALID_ARG, "tensor index %lld is outside 0..%lld",
                      (long long)index, (long long)st->n - 1);
  fill(st, &st->t[index], out);
  return KILN_OK;
}

kiln_status kiln_safetensors_find(const kiln_safetensors *st, const char *name,
                                  kiln_safetensors_tensor *out) {
  if (!st || !name || !out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_safetensors_find: NULL argument");
  int64_t lo = 0, hi = st->n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    int c = strcmp(st->t[mid].name, name);
    if (c == 0) {
      fill(st, &st->t[mid], out);
      return KILN_OK;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return kiln_error(KILN_ERR_NOT_FOUND, "tensor \"%s\" is not in the checkpoint %s; check the name "
                    "or the model it was exported from", name,
                    st->n_files ? st->files[0].path : "");
}

const char *kiln_safetensors_metadata(const kiln_safetensors *st, const char *key) {
  if (!st || !key) return NULL;
  for (int32_t i = 0; i < st->n_meta; i++)
    if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
  return NULL;
}

/* kiln/plugin.h - the plugin ABI: custom layers written in C, CUDA C or Triton (compiled ahead of
 * time into C) that join a network.
 *
 * A plugin is described by a kiln_plugin_creator: a plain C struct of function pointers with an
 * ABI version, a name and a version. No C++ types cross this boundary. A plugin instance is an
 * opaque `void *state` owned by the plugin; kiln only passes it back.
 *
 * Life of a plugin layer:
 *   build:  create(fields) -> output_shapes / supports_format / workspace_size for each profile
 *           shape -> (optional) tactics timed by the builder -> serialize(state) into the engine;
 *   run:    deserialize(bytes) -> enqueue(..., tactic, stream) many times -> destroy.
 * Every callback returns a kiln_status; on error it may log a message through kiln_log().
 *
 * Registry: kiln_plugin_registry_default() holds the built-in plugins (registered when first
 * asked for). kiln_plugin_registry_load() dlopen()s a shared library and calls its exported
 * function KILN_PLUGIN_REGISTER_SYMBOL ("kiln_register_plugins") with the registry and
 * KILN_PLUGIN_ABI_VERSION; that function adds its creators with kiln_plugin_registry_add().
 * Look-ups key on (name, version). Adding a creator whose (name, version) exists already is an
 * error. The registry is thread-safe; creators must stay valid while registered (static storage).
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_PLUGIN_ABI_VERSION 1u
#define KILN_PLUGIN_REGISTER_SYMBOL "kiln_register_plugins"

typedef enum kiln_target {
  KILN_TARGET_CPU = 0,
  KILN_TARGET_CUDA = 1
} kiln_target;

typedef enum kiln_plugin_field_type {
  KILN_PLUGIN_FIELD_INT32 = 0,   /* int32_t[count] */
  KILN_PLUGIN_FIELD_FLOAT32 = 1, /* float[count] */
  KILN_PLUGIN_FIELD_STRING = 2,  /* char[count], not necessarily NUL-terminated */
  KILN_PLUGIN_FIELD_BYTES = 3    /* uint8_t[count] */
} kiln_plugin_field_type;

typedef struct kiln_plugin_field {
  const char *name;
  kiln_plugin_field_type type;
  int32_t count;
  const void *data;
} kiln_plugin_field;

/* Shape and dtype of a plugin input or output. */
typedef struct kiln_plugin_desc {
  kiln_dtype dtype;
  kiln_dims shape;
} kiln_plugin_desc;

typedef struct kiln_plugin_creator {
  uint32_t abi_version; /* KILN_PLUGIN_ABI_VERSION */
  const char *name;
  int32_t version;
  int32_t num_outputs;

  kiln_status (*create)(int32_t n_fields, const kiln_plugin_field *fields, void **state);
  kiln_status (*deserialize)(const void *data, size_t size, void **state);
  /* With buf == NULL, stores the needed size in *size. Otherwise writes at most *size bytes. */
  kiln_status (*serialize)(const void *state, void *buf, size_t *size);
  void (*destroy)(void *state);

  /* Output dtypes and shapes for the given inputs (ERR_SHAPE for inputs it cannot take). */
  kiln_status (*output_shapes)(const void *state, int32_t n_in, const kiln_plugin_desc *in,
                               int32_t n_out, kiln_plugin_desc *out);
  /* 1 when the plugin runs on `target` with these input dtypes, else 0. */
  int32_t (*supports_format)(const void *state, kiln_target target, int32_t n_in,
                             const kiln_plugin_desc *in);
  /* Scratch bytes needed for these shapes (may be NULL: none). */
  size_t (*workspace_size)(const void *state, kiln_target target, int32_t n_in,
                           const kiln_plugin_desc *in);
  /* Number of tactics (variants) the builder may time; NULL or <= 1 means one. */
  int32_t (*num_tactics)(const void *state, kiln_target target);
  /* 1 if `tactic` can run these shapes on the current device (e.g. its shared memory fits),
   * else 0 and a log line saying why. NULL: every tactic is valid. */
  int32_t (*tactic_valid)(const void *state, kiln_target target, int32_t tactic, int32_t n_in,
                          const kiln_plugin_desc *in);
  /* Run on `stream` (a cudaStream_t for KILN_TARGET_CUDA, NULL for the CPU). Data pointers are
   * device pointers for CUDA, host pointers for the CPU. */
  kiln_status (*enqueue)(void *state, kiln_target target, int32_t tactic, int32_t n_in,
                         const kiln_tensor *in, int32_t n_out, kiln_tensor *out, void *workspace,
                         void *stream);
} kiln_plugin_creator;

typedef struct kiln_plugin_registry kiln_plugin_registry;

/* A new, empty registry (for tests and embedders that want isolation); destroy it when done. */
kiln_status kiln_plugin_registry_create(kiln_plugin_registry **out);
void kiln_plugin_registry_destroy(kiln_plugin_registry *reg);
/* The process-wide registry, with the built-in plugins. Never NULL. */
kiln_plugin_registry *kiln_plugin_registry_default(void);
kiln_status kiln_plugin_registry_add(kiln_plugin_registry *reg, const kiln_plugin_creator *creator);
/* NULL if absent. */
const kiln_plugin_creator *kiln_plugin_registry_find(kiln_plugin_registry *reg, const char *name,
                                                     int32_t version);
/* Load an external plugin library (see the top of this file). */
kiln_status kiln_plugin_registry_load(kiln_plugin_registry *reg, const char *path);
/* Enumerate: returns the count; fills up to `cap` pointers. */
int32_t kiln_plugin_registry_list(kiln_plugin_registry *reg, const kiln_plugin_creator **out,
                                  int32_t cap);

/* What an external library exports. */
typedef kiln_status (*kiln_plugin_register_fn)(kiln_plugin_registry *reg, uint32_t abi_version);

/* Helpers for plugin authors: find a field by name and type (NULL if absent). */
const kiln_plugin_field *kiln_plugin_field_find(int32_t n, const kiln_plugin_field *fields,
                                                const char *name, kiln_plugin_field_type type);

#ifdef __cplusplus
}
#endif
#endif /* KILN_PLUGIN_H */

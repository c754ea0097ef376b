/* src/plugins/registry.c - the plugin registry: built-ins, external libraries (dlopen), look-up
 * by (name, version). Thread-safe through one mutex; the default registry lives for the process.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kiln/plugin.h"
#include "plugins/builtin.h"

#define KILN_MAX_PLUGINS 256

struct kiln_plugin_registry {
  pthread_mutex_t lock;
  const kiln_plugin_creator *creators[KILN_MAX_PLUGINS];
  int32_t n;
};

static kiln_plugin_registry default_registry = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void register_builtins(void) { kiln_register_builtin_plugins(&default_registry); }

kiln_status kiln_plugin_registry_create(kiln_plugin_registry **out) {
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "registry_create: out is NULL");
  kiln_plugin_registry *reg = calloc(1, sizeof *reg);
  if (!reg) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
  pthread_mutex_init(&reg->lock, NULL);
  *out = reg;
  return KILN_OK;
}

void kiln_plugin_registry_destroy(kiln_plugin_registry *reg) {
  if (!reg || reg == &default_registry) return;
  pthread_mutex_destroy(&reg->lock);
  free(reg);
}

kiln_plugin_registry *kiln_plugin_registry_default(void) {
  pthread_once(&default_once, register_builtins);
  return &default_registry;
}

static const kiln_plugin_creator *find_locked(kiln_plugin_registry *reg, const char *name, int32_t version) {
  for (int32_t i = 0; i < reg->n; i++)
    if (reg->creators[i]->version == version && strcmp(reg->creators[i]->name, name) == 0) return reg->creators[i];
  return NULL;
}

kiln_status kiln_plugin_registry_add(kiln_plugin_registry *reg, const kiln_plugin_creator *c) {
  if (!reg || !c || !c->name)
    return kiln_error(KILN_ERR_INVALID_ARG, "plugin registry: NULL registry, creator or name");
  if (c->abi_version != KILN_PLUGIN_ABI_VERSION)
    return kiln_error(KILN_ERR_PLUGIN, "plugin \"%s\" was built for plugin ABI %u, kiln has ABI %u; rebuild the plugin against this kiln",
                      c->name, c->abi_version, KILN_PLUGIN_ABI_VERSION);
  if (!c->create || !c->deserialize || !c->serialize || !c->destroy || !c->output_shapes || !c->supports_format ||
      !c->enqueue || c->num_outputs < 1 || c->num_outputs > 16)
    return kiln_error(KILN_ERR_PLUGIN,
                      "plugin \"%s\": create, deserialize, serialize, destroy, output_shapes, supports_format and enqueue are "
                      "required and num_outputs must be 1..16",
                      c->name);
  kiln_status s = KILN_OK;
  pthread_mutex_lock(&reg->lock);
  if (find_locked(reg, c->name, c->version))
    s = kiln_error(KILN_ERR_PLUGIN, "plugin \"%s\" version %d is registered already", c->name, c->version);
  else if (reg->n >= KILN_MAX_PLUGINS)
    s = kiln_error(KILN_ERR_PLUGIN, "too many plugins (at most %d)", KILN_MAX_PLUGINS);
  else
    reg->creators[reg->n++] = c;
  pthread_mutex_unlock(&reg->lock);
  return s;
}

const kiln_plugin_creator *kiln_plugin_registry_find(kiln_plugin_registry *reg, const char *name, int32_t version) {
  if (!reg || !name) return NULL;
  pthread_mutex_lock(&reg->lock);
  const kiln_plugin_creator *c = find_locked(reg, name, version);
  pthread_mutex_unlock(&reg->lock);
  return c;
}

int32_t kiln_plugin_registry_list(kiln_plugin_registry *reg, const kiln_plugin_creator **out, int32_t cap) {
  if (!reg) return 0;
  pthread_mutex_lock(&reg->lock);
  int32_t n = reg->n;
  for (int32_t i = 0; out && i < n && i < cap; i++) out[i] = reg->creators[i];
  pthread_mutex_unlock(&reg->lock);
  return n;
}

kiln_status kiln_plugin_registry_load(kiln_plugin_registry *reg, const char *path) {
  if (!reg || !path) return kiln_error(KILN_ERR_INVALID_ARG, "plugin library path is NULL");
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *why = dlerror();
    return kiln_error(KILN_ERR_PLUGIN, "cannot load plugin library %s: %s (check the path and that its dependencies are installed)",
                      path, why ? why : "unknown error");
  }
  kiln_plugin_register_fn fn;
  void *sym = dlsym(lib, KILN_PLUGIN_REGISTER_SYMBOL);
  memcpy(&fn, &sym, sizeof fn);
  if (!sym) {
    dlclose(lib);
    return kiln_error(KILN_ERR_PLUGIN, "plugin library %s does not export %s(); see include/kiln/plugin.h", path,
                      KILN_PLUGIN_REGISTER_SYMBOL);
  }
  kiln_status s = fn(reg, KILN_PLUGIN_ABI_VERSION);
  if (s != KILN_OK) {
    /* Creators it added stay registered and point into the library, so it stays loaded. */
    return kiln_error_context(s, "plugin library %s failed to register: ", path);
  }
  return KILN_OK; /* the library stays loaded for the life of the process */
}

const kiln_plugin_field *kiln_plugin_field_find(int32_t n, const kiln_plugin_field *fields, const char *name,
                                                kiln_plugin_field_type type) {
  for (int32_t i = 0; fields && i < n; i++)
    if (fields[i].name && strcmp(fields[i].name, name) == 0 && fields[i].type == type) return &fields[i];
  return NULL;
}

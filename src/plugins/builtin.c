/* src/plugins/builtin.c - the list of built-in plugins. Plugins compiled only with CUDA/Triton
 * register themselves here under their feature macros. */
#include "core/error.h"
#include "plugins/builtin.h"

#ifdef KILN_HAVE_TRITON_KERNELS
const kiln_plugin_creator *kiln_fmha_plugin_creator(void);
#endif

void kiln_register_builtin_plugins(kiln_plugin_registry *reg) {
#ifdef KILN_HAVE_TRITON_KERNELS
  if (kiln_plugin_registry_add(reg, kiln_fmha_plugin_creator()) != KILN_OK)
    kiln_log(KILN_LOG_WARN, "built-in plugin fmha not registered: %s", kiln_last_error());
#else
  (void)reg;
#endif
}

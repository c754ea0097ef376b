/* src/plugins/builtin.h - kiln's built-in plugins, registered into the default registry. */
#ifndef KILN_PLUGINS_BUILTIN_H
#define KILN_PLUGINS_BUILTIN_H

#include "kiln/plugin.h"

/* Called once when the default registry is first used. */
void kiln_register_builtin_plugins(kiln_plugin_registry *reg);

#endif

/* kiln/kiln.h - everything public in one include. See each header for usage. */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include "kiln/builder.h"
#include "kiln/dtype.h"
#include "kiln/engine.h"
#include "kiln/network.h"
#include "kiln/network_json.h"
#include "kiln/plugin.h"
#include "kiln/status.h"

#endif

/* src/net/weights.c - the weight source of JSON networks: constants read by name from a
 * safetensors file. (Stub until the safetensors reader lands: every open fails clearly.) */
#include <stdlib.h>

#include "core/error.h"
#include "core/file.h"

kiln_status kiln_weight_source_open(const char *path, const char *base_dir, kiln_weight_source **out) {
  (void)base_dir;
  *out = NULL;
  return kiln_error(KILN_ERR_UNSUPPORTED, "reading weights from %s: safetensors support is not built in yet", path);
}

void kiln_weight_source_close(kiln_weight_source *w) { (void)w; }

int32_t kiln_weight_source_add(kiln_weight_source *w, kiln_network *net, const char *name, int32_t rank, const int64_t *dims) {
  (void)w, (void)net, (void)name, (void)rank, (void)dims;
  return KILN_ERR_NOT_FOUND;
}

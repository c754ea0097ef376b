/* src/backends/cpu/embedding.c - y[..., N] = table[ids[...], :].
 *
 * table [V, N] float, ids int32 of any shape, y [ids..., N] float. Every id is checked before
 * anything is written: an id outside [0, V) is KILN_ERR_INVALID_ARG naming the id, its position
 * and V. (The GPU backend writes zero rows instead; see network.h.)
 */
#include "backends/cpu/cpu_internal.h"
#include "core/error.h"

static kiln_status check_embedding(const kiln_tensor *table, const kiln_tensor *ids,
                                   const kiln_tensor *y) {
  char st[128], si[128], sy[128], sw[128];
  KILN_TRY(kiln_cpu_check_float(table, "embedding", "table"));
  KILN_TRY(kiln_cpu_check_dtype(ids, KILN_DTYPE_INT32, "embedding", "ids"));
  KILN_TRY(kiln_cpu_check_float(y, "embedding", "y"));
  if (table->shape.rank != 2)
    return kiln_error(KILN_ERR_SHAPE, "embedding: table %s must be [V, N]",
                      kiln_dims_str(&table->shape, st, sizeof st));
  kiln_dims want = ids->shape;
  if (want.rank >= KILN_MAX_DIMS)
    return kiln_error(KILN_ERR_SHAPE, "embedding: ids %s have rank %d; at most %d is supported",
                      kiln_dims_str(&ids->shape, si, sizeof si), (int)want.rank, KILN_MAX_DIMS - 1);
  want.d[want.rank++] = table->shape.d[1];
  if (!kiln_dims_equal(&want, &y->shape))
    return kiln_error(KILN_ERR_SHAPE, "embedding: y is %s but ids %s with table %s give %s",
                      kiln_dims_str(&y->shape, sy, sizeof sy),
                      kiln_dims_str(&ids->shape, si, sizeof si),
                      kiln_dims_str(&table->shape, st, sizeof st),
                      kiln_dims_str(&want, sw, sizeof sw));
  return KILN_OK;
}

kiln_status kiln_cpu_embedding(const kiln_tensor *table, const kiln_tensor *ids, kiln_tensor *y) {
  KILN_TRY(check_embedding(table, ids, y));
  int64_t count = kiln_dims_count(&ids->shape);
  int64_t v = table->shape.d[0], n = table->shape.d[1];
  const int32_t *id = (const int32_t *)ids->data;
  for (int64_t i = 0; i < count; i++)
    if (id[i] < 0 || id[i] >= v)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "embedding: id %d at position %lld is outside the table's range [0, %lld); "
                        "check the token ids against the vocabulary size V = %lld",
                        (int)id[i], (long long)i, (long long)v, (long long)v);
  for (int64_t i = 0; i < count; i++)
    for (int64_t j = 0; j < n; j++)
      kiln_cpu_store(y->data, y->dtype, i * n + j,
                     kiln_cpu_load(table->data, table->dtype, (int64_t)id[i] * n + j));
  return KILN_OK;
}

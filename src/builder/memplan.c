/* src/builder/memplan.c - the activation memory planner.
 *
 * Every activation that is not a network output gets an offset in one arena per context. Two
 * tensors may share bytes when their lifetimes (from the producing layer to the last reading
 * layer) do not overlap. Sizes are the largest over every profile's min/opt/max shapes. Greedy
 * placement, largest first, at the lowest 256-byte-aligned offset free over the tensor's
 * lifetime: simple, and close to optimal for the chain-like graphs of transformers.
 */
#include <stdlib.h>
#include <string.h>

#include "builder/builder_internal.h"
#include "core/error.h"

#define KILN_ARENA_ALIGN 256

typedef struct plan_item {
  int32_t tensor;
  int32_t first, last; /* layer indices */
  size_t bytes;
  size_t offset;
} plan_item;

static int by_size_desc(const void *a, const void *b) {
  const plan_item *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
  return x->tensor - y->tensor;
}

static size_t align_up(size_t n) { return (n + KILN_ARENA_ALIGN - 1) / KILN_ARENA_ALIGN * KILN_ARENA_ALIGN; }

kiln_status kiln_builder_plan_memory(kiln_graph *g, const kiln_shape_set *s, size_t *naive_bytes) {
  plan_item *items = calloc((size_t)g->n_tensors + 1, sizeof *items);
  if (!items) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory planning memory");
  int32_t n = 0;
  size_t naive = 0;
  for (int32_t i = 0; i < g->n_tensors; i++) {
    kiln_tensor_def *t = &g->tensors[i];
    t->offset = -1;
    if (t->kind != KILN_TENSOR_ACTIVATION || t->is_output || t->producer < 0) continue;
    size_t bytes = 0;
    for (int32_t p = 0; p < s->n_points; p++) {
      size_t b = kiln_dtype_bytes(t->dtype, kiln_dims_count(&s->dims[(size_t)p * g->n_tensors + i]));
      if (b > bytes) bytes = b;
    }
    plan_item *it = &items[n++];
    it->tensor = i;
    it->first = t->producer;
    it->last = t->producer;
    it->bytes = align_up(bytes ? bytes : 1);
    naive += it->bytes;
  }
  for (int32_t li = 0; li < g->n_layers; li++)
    for (int32_t j = 0; j < g->layers[li].n_in; j++)
      for (int32_t k = 0; k < n; k++)
        if (items[k].tensor == g->layers[li].in[j] && li > items[k].last) items[k].last = li;
  qsort(items, (size_t)n, sizeof *items, by_size_desc);
  size_t arena = 0;
  for (int32_t k = 0; k < n; k++) {
    size_t offset = 0;
    int moved = 1;
    while (moved) { /* bump past every placed, lifetime-overlapping item that collides */
      moved = 0;
      for (int32_t j = 0; j < k; j++) {
        const plan_item *o = &items[j];
        if (o->last < items[k].first || items[k].last < o->first) continue;
        if (offset < o->offset + o->bytes && o->offset < offset + items[k].bytes) {
          offset = o->offset + o->bytes;
          moved = 1;
        }
      }
    }
    items[k].offset = offset;
    g->tensors[items[k].tensor].offset = (int64_t)offset;
    if (offset + items[k].bytes > arena) arena = offset + items[k].bytes;
  }
  g->arena_bytes = arena;
  if (naive_bytes) *naive_bytes = naive;
  free(items);
  return KILN_OK;
}

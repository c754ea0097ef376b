/* src/builder/memplan.c - the activation memory planner.
 *
 * Every activation that is not a network output gets an offset in one arena per context. Two
 * tensors may share bytes when their lifetimes (from the producing layer to the last reading
 * layer) do not overlap. Sizes are the largest over every profile's min/opt/max shapes. Greedy
 * placement, largest first, at the lowest 256-byte-aligned offset free over the tensor's
 * lifetime: simple, and close to optimal for the chain-like graphs of transformers.
 *
 * Reshapes are views: a reshape's output takes its input's offset when both are planned
 * activations of one dtype (the two are planned as one item over the union of their lifetimes),
 * and the backends skip a reshape whose input and output are the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "builder/builder_internal.h"
#include "core/error.h"
#include "core/round.h"

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

static int planned(const kiln_tensor_def *t) {
  return t->kind == KILN_TENSOR_ACTIVATION && !t->is_output && t->producer >= 0;
}

kiln_status kiln_builder_plan_memory(kiln_graph *g, const kiln_shape_set *s, size_t *naive_bytes) {
  plan_item *items = calloc((size_t)g->n_tensors + 1, sizeof *items);
  int32_t *root = malloc(sizeof *root * ((size_t)g->n_tensors + 1)); /* the tensor whose bytes it uses */
  int32_t *item_of = malloc(sizeof *item_of * ((size_t)g->n_tensors + 1));
  if (!items || !root || !item_of) {
    free(items), free(root), free(item_of);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory planning memory");
  }
  for (int32_t i = 0; i < g->n_tensors; i++) root[i] = i, item_of[i] = -1;
  for (int32_t li = 0; li < g->n_layers; li++) { /* layers are in order: an input's root is final */
    const kiln_layer_def *l = &g->layers[li];
    if (l->op != KILN_OP_RESHAPE || l->n_in != 1 || l->n_out != 1) continue;
    const kiln_tensor_def *a = &g->tensors[l->in[0]], *b = &g->tensors[l->out[0]];
    if (planned(a) && planned(b) && a->dtype == b->dtype) root[l->out[0]] = root[l->in[0]];
  }
  int32_t n = 0;
  size_t naive = 0;
  for (int pass = 0; pass < 2; pass++) /* the roots' items, then the views joining them */
    for (int32_t i = 0; i < g->n_tensors; i++) {
      kiln_tensor_def *t = &g->tensors[i];
      if (pass == 0) t->offset = -1;
      if (!planned(t) || (root[i] != i) != pass) continue;
      size_t bytes = 0;
      for (int32_t p = 0; p < s->n_points; p++) {
        size_t b = kiln_dtype_bytes(t->dtype, kiln_dims_count(&s->dims[(size_t)p * g->n_tensors + i]));
        if (b > bytes) bytes = b;
      }
      bytes = kiln_round_up(bytes ? bytes : 1, KILN_ARENA_ALIGN);
      naive += bytes;
      if (pass == 1) {
        plan_item *it = &items[item_of[root[i]]];
        if (bytes > it->bytes) it->bytes = bytes;
        item_of[i] = item_of[root[i]];
        continue;
      }
      plan_item *it = &items[n];
      item_of[i] = n++;
      it->tensor = i;
      it->first = t->producer;
      it->last = t->producer;
      it->bytes = bytes;
    }
  for (int32_t li = 0; li < g->n_layers; li++)
    for (int32_t j = 0; j < g->layers[li].n_in; j++) {
      int32_t k = item_of[g->layers[li].in[j]];
      if (k >= 0 && li > items[k].last) items[k].last = li;
    }
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
  for (int32_t i = 0; i < g->n_tensors; i++)
    if (root[i] != i && planned(&g->tensors[i])) g->tensors[i].offset = g->tensors[root[i]].offset;
  g->arena_bytes = arena;
  if (naive_bytes) *naive_bytes = naive;
  free(items), free(root), free(item_of);
  return KILN_OK;
}

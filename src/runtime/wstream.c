/* src/runtime/wstream.c - weight streaming's schedule: where each constant of an engine goes in a
 * context's ring, and which layer must have run before its copy may overwrite the ring (the rules
 * are in runtime_internal.h). Made once at load, read by every context of the engine.
 *
 * Not here: the copies, events and ring memory (context.c), the host copy of the constants
 * (engine.c).
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/round.h"
#include "runtime/runtime_internal.h"

#define WS_ALIGN 256

static size_t ws_size(const kiln_tensor_def *t) { return kiln_round_up(t->bytes, WS_ALIGN); }

/* First and last layer reading each constant (-1: none; other tensors -1 too). */
static void ws_uses(const kiln_graph *g, int32_t *first, int32_t *last) {
  for (int32_t t = 0; t < g->n_tensors; t++) first[t] = last[t] = -1;
  for (int32_t li = 0; li < g->n_layers; li++)
    for (int32_t j = 0; j < g->layers[li].n_in; j++) {
      int32_t t = g->layers[li].in[j];
      if (t < 0 || t >= g->n_tensors || g->tensors[t].kind != KILN_TENSOR_CONSTANT) continue;
      if (first[t] < 0) first[t] = li;
      last[t] = li;
    }
}

typedef struct ws_slot {
  size_t off, size;
  int32_t last;
} ws_slot;

/* Places every constant that some layer reads in a ring of `ring` bytes (the rules in
 * runtime_internal.h); slots has room for one entry per tensor. Fills offset (per tensor, -1 for
 * those not placed) and wait (per layer). Returns 1 when everything fits, 0 otherwise. */
static int ws_place(const kiln_graph *g, const int32_t *first, const int32_t *last, size_t ring, int64_t *offset,
                    int32_t *wait, ws_slot *slots) {
  int32_t n = 0;
  size_t cur = 0;
  for (int32_t t = 0; t < g->n_tensors; t++) offset[t] = -1;
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    wait[li] = -1;
    for (int32_t j = 0; j < l->n_in; j++) {
      int32_t t = l->in[j];
      if (t < 0 || t >= g->n_tensors || first[t] != li || offset[t] >= 0) continue;
      size_t size = ws_size(&g->tensors[t]);
      if (size == 0) { /* nothing to copy: any address in the ring */
        offset[t] = 0;
        continue;
      }
      if (size > ring) return 0;
      int wraps = 0;
      size_t p = cur;
      if (p + size > ring) p = 0, wraps = 1;
      for (;;) { /* past every constant in the way that is still to be read */
        size_t end = 0;
        for (int32_t k = 0; k < n; k++)
          if (slots[k].last >= li && slots[k].off < p + size && p < slots[k].off + slots[k].size &&
              slots[k].off + slots[k].size > end)
            end = slots[k].off + slots[k].size;
        if (!end) break;
        p = end;
        if (p + size > ring) {
          if (wraps++) return 0;
          p = 0;
        }
      }
      for (int32_t k = 0; k < n; k++) /* what it overwrites: read for the last time before li */
        if (slots[k].off < p + size && p < slots[k].off + slots[k].size && slots[k].last > wait[li])
          wait[li] = slots[k].last;
      slots[n++] = (ws_slot){p, size, last[t]};
      offset[t] = (int64_t)p;
      cur = p + size;
    }
  }
  return 1;
}

/* Scratch for ws_place: first, last, offset and wait arrays and the slots. */
typedef struct ws_scratch {
  int32_t *first, *last, *wait;
  int64_t *offset;
  ws_slot *slots;
} ws_scratch;

static void ws_scratch_free(ws_scratch *s) {
  free(s->first), free(s->last), free(s->wait), free(s->offset), free(s->slots);
  memset(s, 0, sizeof *s);
}

static kiln_status ws_scratch_init(const kiln_graph *g, ws_scratch *s) {
  size_t nt = (size_t)g->n_tensors + 1, nl = (size_t)g->n_layers + 1;
  s->first = malloc(nt * sizeof *s->first);
  s->last = malloc(nt * sizeof *s->last);
  s->offset = malloc(nt * sizeof *s->offset);
  s->slots = malloc(nt * sizeof *s->slots);
  s->wait = malloc(nl * sizeof *s->wait);
  if (!s->first || !s->last || !s->offset || !s->slots || !s->wait) {
    ws_scratch_free(s);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory planning weight streaming");
  }
  ws_uses(g, s->first, s->last);
  return KILN_OK;
}

/* The smallest ring that fits, by bisection between the most bytes any one layer needs live at
 * once (no ring can be smaller) and all of them (always fits: no wrapping). The answer is one
 * that was seen to fit. The layer needing the most is returned in *peak_layer. */
static size_t ws_min_bytes(const kiln_graph *g, ws_scratch *s, int32_t *peak_layer, size_t *peak_bytes) {
  size_t total = 0, peak = 0;
  *peak_layer = -1;
  for (int32_t t = 0; t < g->n_tensors; t++)
    if (s->first[t] >= 0) total += ws_size(&g->tensors[t]);
  for (int32_t li = 0; li < g->n_layers; li++) {
    size_t live = 0;
    for (int32_t t = 0; t < g->n_tensors; t++)
      if (s->first[t] >= 0 && s->first[t] <= li && li <= s->last[t]) live += ws_size(&g->tensors[t]);
    if (live > peak) peak = live, *peak_layer = li;
  }
  *peak_bytes = peak;
  size_t lo = peak / WS_ALIGN, hi = total / WS_ALIGN;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (ws_place(g, s->first, s->last, mid * WS_ALIGN, s->offset, s->wait, s->slots)) hi = mid;
    else lo = mid + 1;
  }
  return hi * WS_ALIGN;
}

size_t kiln_wstream_min_bytes(const kiln_graph *g) {
  ws_scratch s;
  int32_t layer;
  size_t peak;
  if (!g || ws_scratch_init(g, &s) != KILN_OK) return 0;
  size_t min = ws_min_bytes(g, &s, &layer, &peak);
  ws_scratch_free(&s);
  return min;
}

void kiln_wstream_free(kiln_wstream *ws) {
  if (!ws) return;
  free(ws->offset), free(ws->last), free(ws->group_start), free(ws->copy), free(ws->wait), free(ws->signals);
  memset(ws, 0, sizeof *ws);
}

static kiln_status ws_too_small(const kiln_graph *g, ws_scratch *s, size_t ring) {
  int32_t layer;
  size_t peak, min = ws_min_bytes(g, s, &layer, &peak);
  const char *name = layer >= 0 && g->layers[layer].name ? g->layers[layer].name : "?";
  if (ring < min)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "weight streaming: a ring of %zu bytes (%.2f MiB) is too small for this engine: it needs at "
                      "least %zu bytes (%.2f MiB; layer %s alone reads %zu bytes of constants that must be in the "
                      "ring together); give weight_stream_bytes >= %zu, or 0 to keep the weights on the device",
                      ring, (double)ring / 1048576.0, min, (double)min / 1048576.0, name, peak, min);
  return kiln_error(KILN_ERR_INVALID_ARG,
                    "weight streaming: the constants do not pack into a ring of %zu bytes (%.2f MiB: the gaps left "
                    "by constants read later are too small); a ring of %zu bytes works",
                    ring, (double)ring / 1048576.0, min);
}

kiln_status kiln_wstream_plan(const kiln_graph *g, size_t ring_bytes, kiln_wstream *ws) {
  ws_scratch s;
  if (!g || !ws || ring_bytes == 0) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_wstream_plan: no graph, output or ring");
  memset(ws, 0, sizeof *ws);
  KILN_TRY(ws_scratch_init(g, &s));
  if (!ws_place(g, s.first, s.last, ring_bytes, s.offset, s.wait, s.slots)) {
    kiln_status st = ws_too_small(g, &s, ring_bytes);
    ws_scratch_free(&s);
    return st;
  }
  size_t nl = (size_t)g->n_layers + 1;
  ws->group_start = malloc(nl * sizeof *ws->group_start);
  ws->copy = malloc(((size_t)g->n_tensors + 1) * sizeof *ws->copy);
  ws->signals = calloc(nl, 1);
  if (!ws->group_start || !ws->copy || !ws->signals) {
    ws_scratch_free(&s);
    kiln_wstream_free(ws);
    return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory planning weight streaming");
  }
  int32_t n = 0;
  for (int32_t li = 0; li < g->n_layers; li++) {
    const kiln_layer_def *l = &g->layers[li];
    ws->group_start[li] = n;
    for (int32_t j = 0; j < l->n_in; j++) {
      int32_t t = l->in[j], dup = 0;
      if (t < 0 || t >= g->n_tensors || s.first[t] != li || g->tensors[t].bytes == 0) continue;
      for (int32_t k = ws->group_start[li]; k < n; k++) dup |= ws->copy[k] == t;
      if (!dup) ws->copy[n++] = t, ws->streamed_bytes += ws_size(&g->tensors[t]);
    }
    if (s.wait[li] >= 0) ws->signals[s.wait[li]] = 1;
  }
  ws->group_start[g->n_layers] = n;
  ws->ring_bytes = ring_bytes;
  ws->offset = s.offset, ws->last = s.last, ws->wait = s.wait; /* kept; the rest is scratch */
  free(s.first), free(s.slots);
  return KILN_OK;
}

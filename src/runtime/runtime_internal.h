/* src/runtime/runtime_internal.h - the engine and context structs (engine.c, context.c) and
 * weight streaming's schedule (wstream.c). */
#ifndef KILN_RUNTIME_INTERNAL_H
#define KILN_RUNTIME_INTERNAL_H

#include "kiln/engine.h"
#include "net/graph.h"
#include "runtime/engine_format.h"

/* Weight streaming (kiln_engine_load_params.weight_stream_bytes): the constants stay in host
 * memory and each context copies them into a ring of its own ahead of the layers that read
 * them. The schedule, made once per engine at load:
 *   - each constant is copied once per run, before its first reader, and stays in the ring until
 *     its last reader has run (a constant read by several layers is placed once);
 *   - constants are placed in first-use order, each where the previous one ended (wrapping to 0
 *     at the end of the ring), moved further along past any constant still to be read, at
 *     256-byte aligned offsets;
 *   - group li, the constants layer li reads first, may be copied once layer wait[li] has run
 *     (the last reader of whatever it overwrites; -1: nothing of this run, only the previous
 *     run's layers). So copies run ahead of the layers as far as the ring has room.
 * context.c issues the copies (a second CUDA stream and events; memcpy on the CPU). */
typedef struct kiln_wstream {
  size_t ring_bytes;      /* 0: no streaming (constants resident) */
  size_t streamed_bytes;  /* the streamed constants, each rounded up to 256 bytes */
  int64_t *offset;        /* per tensor: ring offset of a streamed constant, -1 for other tensors */
  int32_t *last;          /* per tensor: last layer reading it (-1: none) */
  int32_t *group_start;   /* n_layers + 1 entries: layer li's group is copy[group_start[li] ..
                             group_start[li + 1]) */
  int32_t *copy;          /* streamed constants in first-use order (those of 0 bytes left out) */
  int32_t *wait;          /* per layer: see above */
  uint8_t *signals;       /* per layer: 1 when some group waits for it */
} kiln_wstream;

/* The schedule of g's constants for a ring of ring_bytes (> 0). A ring too small: an error that
 * names the smallest ring that works. */
kiln_status kiln_wstream_plan(const kiln_graph *g, size_t ring_bytes, kiln_wstream *ws);
void kiln_wstream_free(kiln_wstream *ws);
/* The smallest ring (a multiple of 256 bytes) kiln_wstream_plan accepts for g; 0 when g reads no
 * constants. */
size_t kiln_wstream_min_bytes(const kiln_graph *g);

struct kiln_engine {
  kiln_graph g;              /* constants borrow from `image` */
  kiln_engine_meta meta;
  const void *image;
  size_t image_size;
  void *map_handle;          /* from kiln_file_map, or NULL when `owned_image` */
  void *owned_image;
  void **weights;            /* per tensor: where the constant lives for the target (NULL otherwise);
                                for a streamed constant, its host copy */
  void *device_weights;      /* one device allocation holding every constant (CUDA) */
  void *host_weights;        /* streaming CUDA engines: pinned host memory holding the constants */
  size_t weight_bytes;       /* resident on the target (0 when streaming) */
  kiln_wstream ws;
  int32_t *io;               /* tensor ids of inputs then outputs */
  int32_t n_io, n_inputs;
  void *cuda;                /* kiln_cuda_ctx * for CUDA engines */
  int32_t device;
  kiln_target exec;          /* where layers run: meta.target, or CPU with run_on_cpu */
};

/* A context's memory is one block: the activation arena, then the workspace, then the weight
 * streaming ring, each starting on a multiple of KILN_CONTEXT_ALIGN bytes. */
#define KILN_CONTEXT_ALIGN 256
typedef struct kiln_context_layout {
  size_t workspace, ring; /* offsets in the block */
  size_t bytes;           /* the block's size (kiln_engine_context_bytes) */
} kiln_context_layout;
kiln_context_layout kiln_context_layout_of(const kiln_engine *e);

#endif

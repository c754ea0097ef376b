/* src/runtime/runtime_internal.h - the engine and context structs (engine.c, context.c). */
#ifndef KILN_RUNTIME_INTERNAL_H
#define KILN_RUNTIME_INTERNAL_H

#include "kiln/engine.h"
#include "net/graph.h"
#include "runtime/engine_format.h"

struct kiln_engine {
  kiln_graph g;              /* constants borrow from `image` */
  kiln_engine_meta meta;
  const void *image;
  size_t image_size;
  void *map_handle;          /* from kiln_file_map, or NULL when `owned_image` */
  void *owned_image;
  void **weights;            /* per tensor: where the constant lives for the target (NULL otherwise) */
  void *device_weights;      /* one device allocation holding every constant (CUDA) */
  size_t weight_bytes;
  int32_t *io;               /* tensor ids of inputs then outputs */
  int32_t n_io, n_inputs;
  void *cuda;                /* kiln_cuda_ctx * for CUDA engines */
  int32_t device;
  kiln_target exec;          /* where layers run: meta.target, or CPU with run_on_cpu */
};

#endif

/* kiln/engine.h - loading and running engines.
 *
 * An engine is immutable once loaded and may be shared by many execution contexts (one per
 * thread or stream, each with its own activation memory and input shapes).
 *
 * Usage:
 *   kiln_engine *eng; kiln_engine_load("model.engine", NULL, &eng);
 *   kiln_context *ctx; kiln_context_create(eng, 0, &ctx);          // profile 0
 *   kiln_context_set_input_shape(ctx, "x", &dims);
 *   kiln_context_set_tensor(ctx, "x", d_x);  kiln_context_set_tensor(ctx, "y", d_y);
 *   kiln_context_get_shape(ctx, "y", &ydims);                      // to size the output
 *   kiln_context_enqueue(ctx, stream);                             // cudaStream_t, or NULL
 * Pointers are device pointers for a CUDA engine and host pointers for a CPU engine.
 *
 * Weight streaming (load parameter weight_stream_bytes > 0): the engine's constants stay in host
 * memory (pinned for a CUDA engine) instead of device memory, and each context copies them into
 * a device ring of that many bytes of its own, each just before the first layer that reads it,
 * as far ahead as the ring has room: on a second CUDA stream, overlapping the layers that run,
 * with events ordering the copies and the layers. The ring must hold at least the constants of
 * the largest layer (kiln_engine_stream_min_bytes); more lets copies run further ahead. Every
 * run copies every constant again (host to device bandwidth: ~25 GB/s on PCIe 4, ~50 GB/s on
 * PCIe 5), so it suits engines that compute long on each weight (an encoder on a batch of
 * windows), not a decoder step. A streaming context cannot use CUDA graphs.
 *
 * The engine file format is documented in src/runtime/engine_format.h. The loader checks it
 * all before use (magic, version, checksums, every index and offset, target GPU, plugins) and
 * rejects a bad file with a message that says what to do.
 *
 * Thread-safety: a kiln_engine may be used from many threads; a kiln_context from one at a time.
 */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/plugin.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_engine kiln_engine;
typedef struct kiln_context kiln_context;

typedef struct kiln_engine_load_params {
  int32_t device;                 /* CUDA device (default 0) */
  kiln_plugin_registry *plugins;  /* NULL: kiln_plugin_registry_default() */
  int32_t skip_device_check;      /* 1: only parse and validate (for `kiln inspect`) */
  int32_t run_on_cpu;             /* 1: run a CUDA engine's layers on the CPU backend, the oracle
                                     (for verification; tactics are ignored) */
  size_t weight_stream_bytes;     /* 0 (default): the weights are copied to the device at load and
                                     stay there. N > 0: weight streaming (above) through a ring of
                                     N bytes per context; smaller than kiln_engine_stream_min_bytes:
                                     the load fails, naming the minimum */
} kiln_engine_load_params;

kiln_engine_load_params kiln_engine_default_load_params(void);

kiln_status kiln_engine_load(const char *path, const kiln_engine_load_params *params,
                             kiln_engine **out);
/* The image is copied. */
kiln_status kiln_engine_load_memory(const void *image, size_t size,
                                    const kiln_engine_load_params *params, kiln_engine **out);
void kiln_engine_destroy(kiln_engine *engine);

typedef struct kiln_io_info {
  const char *name;
  int32_t is_input;
  kiln_dtype dtype;
  kiln_dims dims; /* -1 for dynamic dims */
} kiln_io_info;

kiln_target kiln_engine_target(const kiln_engine *engine);
kiln_dtype kiln_engine_precision(const kiln_engine *engine);
int32_t kiln_engine_num_io(const kiln_engine *engine);
kiln_status kiln_engine_io(const kiln_engine *engine, int32_t index, kiln_io_info *info);
int32_t kiln_engine_num_profiles(const kiln_engine *engine);
/* min/opt/max dims of input `name` in `profile`. */
kiln_status kiln_engine_profile_dims(const kiln_engine *engine, int32_t profile, const char *name,
                                     kiln_dims *min, kiln_dims *opt, kiln_dims *max);
/* Device memory the engine holds (weights: 0 when streaming) and one context will need
 * (activations + workspace + the weight streaming ring, as one block: what
 * kiln_context_create_with_memory takes). For a CPU engine, the same in host memory. */
size_t kiln_engine_weight_bytes(const kiln_engine *engine);
size_t kiln_engine_context_bytes(const kiln_engine *engine);
/* Weight streaming: bytes of constants a run copies into the ring (0 when not streaming), and
 * the smallest ring weight_stream_bytes may give for this engine (also for an engine loaded
 * with skip_device_check or without streaming; 0 when no layer reads a constant). */
size_t kiln_engine_streamed_bytes(const kiln_engine *engine);
size_t kiln_engine_stream_min_bytes(const kiln_engine *engine);

/* Human-readable description of everything in the engine (layers, tactics, memory plan,
 * profiles, plugins, kernels). *text is malloc()ed: free with kiln_free(). */
kiln_status kiln_engine_describe(const kiln_engine *engine, char **text);

kiln_status kiln_context_create(kiln_engine *engine, int32_t profile, kiln_context **out);
/* As kiln_context_create, with memory the caller owns for the context's activations, workspace
 * and weight streaming ring: `bytes` >= kiln_engine_context_bytes(engine), device memory for a
 * CUDA engine (host memory for a CPU one), aligned to 256 bytes (cudaMalloc's and
 * kiln_cuda_malloc's are), freed by the caller after the context is destroyed. Contexts whose runs
 * never overlap (enqueued on one stream, or on one thread for CPU engines) may share one block
 * of the largest size, as an encoder and a decoder that take turns do: nothing in it outlives a
 * run. A streaming context's copies into its ring then wait for the work enqueued before each of
 * its runs. With KILN_POISON set the block is filled with 0xFF here, as a context's own is. */
kiln_status kiln_context_create_with_memory(kiln_engine *engine, int32_t profile, void *memory,
                                            size_t bytes, kiln_context **out);
void kiln_context_destroy(kiln_context *ctx);
kiln_status kiln_context_set_input_shape(kiln_context *ctx, const char *name,
                                         const kiln_dims *dims);
/* Shape of any input or output for the current input shapes. */
kiln_status kiln_context_get_shape(kiln_context *ctx, const char *name, kiln_dims *dims);
kiln_status kiln_context_set_tensor(kiln_context *ctx, const char *name, void *data);
/* Run the engine on `stream` (cudaStream_t; NULL for the CPU or the default stream). */
kiln_status kiln_context_enqueue(kiln_context *ctx, void *stream);
/* CUDA graphs: when enabled, the first enqueue for a set of shapes and bindings captures a
 * graph and later ones with the same shapes and bindings replay it. A context keeps up to 8
 * graphs (e.g. one per batch size), replacing the least recently used. Turning graphs off
 * keeps the captured ones for when they are turned on again. Default off. Refused
 * (KILN_ERR_UNSUPPORTED) for an engine loaded with weight streaming. */
kiln_status kiln_context_set_cuda_graphs(kiln_context *ctx, int32_t enable);

#ifdef __cplusplus
}
#endif
#endif /* KILN_ENGINE_H */

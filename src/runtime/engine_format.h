/* src/runtime/engine_format.h - the kiln engine file: one self-contained, mmap()-able file that
 * holds a built graph (layers, tactics, memory plan, profiles, plugins) and its weights.
 *
 * This header is the format's documentation. It is the serializer and the validating parser,
 * not the loader: checking the target GPU against the device, looking plugins up in a registry
 * and uploading weights are the runtime's job (engine.c), working on the kiln_graph and
 * kiln_engine_meta this file returns.
 *
 * ---- Layout ---------------------------------------------------------------------------------
 * All integers are little-endian; floats are IEEE-754 binary32 bit patterns stored as u32.
 *
 *   [0, 128)          header (fixed size, KILN_ENGINE_HEADER_BYTES)
 *   [128, 128+M)      metadata section (M = meta_size bytes)
 *   zero padding      up to the next multiple of 256
 *   [W, W+S)          weights section (W = weights_offset, a multiple of 256; S = weights_size)
 *   file_size = W + S exactly (no trailing bytes)
 *
 * Header (offsets in bytes):
 *     0  u8[8]  magic "KILNENG1"
 *     8  u32    format version (KILN_ENGINE_FORMAT_VERSION)
 *    12  u32    header size (128)
 *    16  u32    flags (0; no flags defined yet; a reader rejects unknown flag bits)
 *    20  u32    target (kiln_target: 0 CPU, 1 CUDA)
 *    24  i32    compute capability major (0 for CPU)
 *    28  i32    compute capability minor
 *    32  i32    CUDA runtime version at build (cudaRuntimeGetVersion, 0 for CPU)
 *    36  u32    reserved, 0
 *    40  u64    metadata offset (always 128)
 *    48  u64    metadata size
 *    56  u64    weights offset (multiple of 256, >= metadata end)
 *    64  u64    weights size
 *    72  u64    total file size
 *    80  u32    CRC-32 (zlib crc32) of the metadata section
 *    84  u32    CRC-32 of the weights section
 *    88  u8[36] reserved, 0
 *   124  u32    CRC-32 of header bytes [0, 124)
 *
 * Metadata section, fields in this order. Notation: str = u32 length + that many bytes, no NUL
 * inside and no terminator; dims = i32 rank (0..8) + rank x i64; optstr = u32 present (0/1)
 * then a str when present.
 *     str    kiln version that wrote the file (< 32 bytes)
 *     str    GPU name (< 128 bytes; "" for CPU)
 *     optstr kernel manifest (JSON text of the Triton kernels' manifest)
 *     u32    precision (kiln_dtype)
 *     u64    arena bytes (activation arena per context)
 *     u64    workspace bytes (largest layer workspace)
 *     u32    tensor count, then per tensor:
 *              str name, u32 kind (kiln_tensor_kind), u32 dtype (kiln_dtype), dims,
 *              i32 is_output (0/1), i32 producer (layer index or -1), i64 arena offset (-1 =
 *              not planned), i64 weight offset (relative to the weights section; -1 = no data),
 *              u64 weight bytes
 *     u32    layer count, then per layer:
 *              str name, u32 op (kiln_op), i32 n_in, n_in x i32 tensor ids, i32 n_out,
 *              n_out x i32 tensor ids,
 *              params: i32 activation, f32 eps, f32 scale, i32 causal, i32 stride, i32 axis,
 *                      i64 start, i64 end, dims dims, i32 plugin, i32 heads, i32 group, i32 fuse,
 *                      i32 cache_dtype (0, or KILN_DTYPE_INT8 on kv_attention layers),
 *              tactic: i32 kind, i32 index, f32 time_ms, u64 workspace, u8[64] data
 *     u32    plugin count, then per plugin: str name, i32 version, u64 size, size bytes
 *     u32    profile count, then per profile: i32 n, then n x (i32 input tensor id,
 *              dims min, dims opt, dims max)
 *   The section must end exactly after the last profile.
 *
 * Weights section: the data of every constant tensor, each starting at a multiple of 256 bytes
 * from the file start (so an mmap()ed file can be used in place and copied to the GPU with
 * aligned transfers), padding bytes 0.
 *
 * ---- Versioning -------------------------------------------------------------------------------
 * Any change to the layout or to the meaning of a field bumps KILN_ENGINE_FORMAT_VERSION; a
 * reader accepts exactly its own version and tells the user to rebuild the engine otherwise
 * (engines are build artefacts, cheap to rebuild, so there is no compatibility layer). New enum
 * values (ops, dtypes) also bump the version. The magic's trailing "1" never changes.
 * Version 3 added the layer parameter cache_dtype and the op quantize_int8 (int8 KV caches);
 * version 2 engines are refused with the message to rebuild them.
 *
 * ---- What the reader checks (in this order; the first failure is reported) -----------------------
 *   magic ("not a kiln engine file"), version, header size, header CRC, flags, target,
 *   declared file size against the bytes present (truncated or trailing bytes), section bounds
 *   and alignment, metadata CRC, weights CRC; then, while parsing, every read is bounds-checked
 *   and every count is checked against the bytes left before anything is allocated; then the
 *   graph: names non-empty, NUL-free and unique (tensors among tensors, layers among layers),
 *   kinds/dtypes/ops/activations/tactic kinds valid, ranks 0..8, constant dims >= 0 and other
 *   dims >= -1, constant weight ranges 256-aligned inside the weights section with byte counts
 *   equal to kiln_dtype_bytes(dtype, elements), no data on non-constants, layers' n_in/n_out
 *   within 0..KILN_MAX_LAYER_IO, every tensor id and plugin index in range, topological order
 *   (a layer reads only inputs, constants and tensors produced by earlier layers; each layer
 *   output is an activation whose producer is that layer; each activation's producer lists it),
 *   arena offsets -1 or within the arena, profiles naming each input at most once with
 *   0 <= min <= opt <= max of the input's rank.
 * The same graph checks run in kiln_engine_serialize(), so a builder bug fails the build rather
 * than writing a file no reader accepts.
 *
 * Thread-safety: all functions are reentrant. Errors set kiln_last_error().
 */
#ifndef KILN_RUNTIME_ENGINE_FORMAT_H
#define KILN_RUNTIME_ENGINE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "core/file_map.h"
#include "kiln/status.h"
#include "net/graph.h"

#define KILN_ENGINE_MAGIC "KILNENG1"
#define KILN_ENGINE_FORMAT_VERSION 3u
#define KILN_ENGINE_HEADER_BYTES 128u
#define KILN_ENGINE_WEIGHT_ALIGN 256u

typedef struct kiln_engine_meta {
  kiln_target target;
  int32_t cc_major, cc_minor;   /* GPU compute capability it was built for (0 for CPU) */
  int32_t cuda_runtime_version; /* cudaRuntimeGetVersion at build (0 for CPU) */
  char gpu_name[128];
  char kiln_version[32];
  char *kernel_manifest;        /* JSON text of the Triton kernels' manifest, or NULL (owned) */
} kiln_engine_meta;

/* Serialize g and meta into one image: *image is malloc()ed (free with free()/kiln_free()).
 * meta->target is the one written; g->target must agree. On error, image and size are
 * untouched. */
kiln_status kiln_engine_serialize(const kiln_graph *g, const kiln_engine_meta *meta, void **image,
                                  size_t *size);

/* Parse and validate everything. With borrow_weights, constant tensors' data point into `image`
 * (g->borrowed_weights = 1) and the caller keeps the image alive (mmap); else they are copied.
 * g must not hold a graph (it is overwritten, not freed). On error, g and meta are untouched. */
kiln_status kiln_engine_parse(const void *image, size_t size, int borrow_weights, kiln_graph *g,
                              kiln_engine_meta *meta);

void kiln_engine_meta_free(kiln_engine_meta *meta);

/* The graph checks listed above (everything but the file-level ones), for a graph in memory:
 * KILN_OK, or KILN_ERR_FORMAT with a message naming the tensor/layer/plugin/profile. */
kiln_status kiln_engine_validate_graph(const kiln_graph *g);

/* kiln_file_map() / kiln_file_unmap() (mmap a file read-only) come from core/file_map.h. */

#endif /* KILN_RUNTIME_ENGINE_FORMAT_H */

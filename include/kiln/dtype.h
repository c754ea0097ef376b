/* kiln/dtype.h - element types, dimensions and tensor views.
 *
 * dtypes: fp32, fp16 (IEEE half), bf16, int8, packed int4 (two signed 4-bit values per byte,
 * the element with the even index in the low nibble), int32 (indices), int64 (indices read from
 * files). Sizes of packed int4 tensors are computed with kiln_dtype_bytes(), which rounds up.
 *
 * A kiln_tensor is a non-owning view: a data pointer (host or device, said by the caller),
 * a dtype, a shape and strides in elements. kiln_tensor_contiguous() fills row-major strides.
 */
#ifndef KILN_DTYPE_H
#define KILN_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_MAX_DIMS 8

typedef enum kiln_dtype {
  KILN_DTYPE_INVALID = 0,
  KILN_DTYPE_FP32 = 1,
  KILN_DTYPE_FP16 = 2,
  KILN_DTYPE_BF16 = 3,
  KILN_DTYPE_INT8 = 4,
  KILN_DTYPE_INT4 = 5,
  KILN_DTYPE_INT32 = 6,
  KILN_DTYPE_INT64 = 7,
  KILN_DTYPE_COUNT_ = 8
} kiln_dtype;

/* "fp32", "fp16", ... ("invalid" for unknown values). */
const char *kiln_dtype_name(kiln_dtype dtype);
/* Parse "fp32"/"float32"/"fp16"/"float16"/"half"/"bf16"/"bfloat16"/"int8"/"int4"/"int32"/"int64". */
kiln_dtype kiln_dtype_from_name(const char *name);
/* Bytes for n elements (int4 rounds up to whole bytes); 0 for an invalid dtype. */
size_t kiln_dtype_bytes(kiln_dtype dtype, int64_t n);
/* 1 for fp32/fp16/bf16. */
int kiln_dtype_is_float(kiln_dtype dtype);

/* Scalar conversions (round to nearest even; NaN and Inf preserved). */
uint16_t kiln_fp32_to_fp16(float f);
float kiln_fp16_to_fp32(uint16_t h);
uint16_t kiln_fp32_to_bf16(float f);
float kiln_bf16_to_fp32(uint16_t b);

/* Convert n float elements between fp32/fp16/bf16 buffers on the host (src and dst may not
 * overlap unless the dtypes are equal and the pointers equal). The values are those of the
 * functions above; fp16 -> fp32 uses the CPU's F16C instructions where it has them, which return
 * a signaling NaN quiet (its payload otherwise kept). */
int kiln_convert_floats(void *dst, kiln_dtype dst_dtype, const void *src, kiln_dtype src_dtype,
                        int64_t n);

typedef struct kiln_dims {
  int32_t rank;
  int64_t d[KILN_MAX_DIMS];
} kiln_dims;

/* Number of elements (1 for rank 0; INT64_MAX when the product overflows). */
int64_t kiln_dims_count(const kiln_dims *dims);
int kiln_dims_equal(const kiln_dims *a, const kiln_dims *b);
/* Writes "[2, 3, -1]" into buf (always NUL-terminated); returns buf. */
char *kiln_dims_str(const kiln_dims *dims, char *buf, size_t size);

typedef struct kiln_tensor {
  void *data;
  kiln_dtype dtype;
  kiln_dims shape;
  int64_t strides[KILN_MAX_DIMS]; /* in elements */
} kiln_tensor;

/* A contiguous (row-major) view. */
kiln_tensor kiln_tensor_contiguous(void *data, kiln_dtype dtype, const kiln_dims *shape);
int kiln_tensor_is_contiguous(const kiln_tensor *t);

#ifdef __cplusplus
}
#endif
#endif /* KILN_DTYPE_H */

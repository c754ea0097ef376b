/* src/models/whisper/greedy_cuda.h - greedy token choice on the GPU (greedy_cuda.cu). */
#ifndef KILN_WHISPER_GREEDY_CUDA_H
#define KILN_WHISPER_GREEDY_CUDA_H

#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[r] (device) = the first index of the largest of logits[r, 0..vocab) (device, dtype) leaving
 * out suppress[0..n_suppress) (device) and `extra` (-1: none); stream order, no sync. */
kiln_status kiln_whisper_cuda_greedy(const void *logits, kiln_dtype dtype, int32_t rows, int32_t vocab,
                                     const int32_t *suppress, int32_t n_suppress, int32_t extra, int32_t *out,
                                     void *stream);

#ifdef __cplusplus
}
#endif
#endif

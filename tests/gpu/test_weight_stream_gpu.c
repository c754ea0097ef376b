/* tests/gpu/test_weight_stream_gpu.c - the weight streaming test (tests/cpu/test_weight_stream.c)
 * with CUDA engines: streaming (copies on a second stream, events between copies and layers,
 * KILN_POISON memsets of released ring bytes) gives bitwise the outputs of the resident engine,
 * in fp32 and fp16, for the chain network at ring sizes from the minimum to twice the weights,
 * two contexts on two streams, and for the weight-only network (fp16, int8 and bf16/int4 weights:
 * the skinny kernels that prefetch weights before griddepcontrol.wait). Exits 77 without a GPU. */
#define WSTREAM_TEST_GPU 1
#include "../cpu/test_weight_stream.c"

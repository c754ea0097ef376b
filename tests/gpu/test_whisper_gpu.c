/* tests/gpu/test_whisper_gpu.c - the Whisper model test (tests/model/test_whisper.c) with the
 * encoder and decoder engines built for the GPU: fp32 must give transformers' greedy tokens and
 * logits within fp32 tolerance, fp16/bf16 stay within the same nmse limits as on the CPU.
 * Exits 77 without a GPU. */
#define WHISPER_TEST_GPU 1
#include "../model/test_whisper.c"

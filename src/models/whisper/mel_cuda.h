/* src/models/whisper/mel_cuda.h - Whisper's log-mel spectrogram on the GPU (internal header).
 *
 * Same semantics as kiln_mel_compute() (include/kiln/audio.h): periodic Hann 400, hop 160,
 * centred frames with reflect padding, last frame dropped, power spectrum, kiln's mel filters,
 * log10(max(x, 1e-10)), floor at (max over the whole padded input - 8), (x + 4) / 4. The mel is
 * [n_mels x frames] fp32 in device memory, kept by the object until the next compute; windows
 * of it go to the encoder's input in the engine precision with kiln_mel_cuda_window().
 *
 * Usage (the Whisper runtime; `enc_in` is the encoder input [B, n_mels, 3000] in fp16):
 *   kiln_mel_cuda *m;
 *   kiln_mel_cuda_create(n_mels, device, &m);                         // once
 *   // long-form, as transcribe.c does: the whole file plus 30 s of zeros
 *   kiln_mel_cuda_compute(m, pcm, n, KILN_WHISPER_CHUNK_SAMPLES, stream, NULL,
 *                         KILN_DTYPE_FP32, NULL);
 *   int64_t content = kiln_mel_cuda_n_frames(m) - KILN_WHISPER_CHUNK_FRAMES;
 *   int64_t take = min(KILN_WHISPER_CHUNK_FRAMES, content - seek);
 *   kiln_mel_cuda_window(m, seek, take, KILN_WHISPER_CHUNK_FRAMES, enc_in, KILN_DTYPE_FP16,
 *                        b, stream);                                  // batch row b
 *   // one 30 s window (kiln_mel_compute_window): n' = min(n, 480000), pad 480000 - n'
 *   kiln_mel_cuda_compute(m, pcm, n', 480000 - n', stream, enc_in, KILN_DTYPE_FP16, NULL);
 *   kiln_mel_cuda_destroy(m);
 *
 * How it runs: samples go to the device (host memory through two pinned 4 MB staging buffers,
 * so the caller may reuse its buffer as soon as compute returns); then per chunk of 4096 frames
 * one kernel frames and windows the signal, cuFFT computes the real FFTs (n = 400, batched) and
 * one kernel computes power, the sparse mel product, log10 and the running maximum; a last
 * kernel applies the floor and the scaling. Framing, FFT, power and the mel sums are in double
 * precision: fp32 FFTs are off by up to 7e-5 after normalization near the floor (a chirp's
 * spectral leakage), double keeps the GPU within ~1e-7 of the CPU; the cost is small even on
 * GPUs with slow fp64 (the work is ~1 GFLOP per 10 minutes of audio).
 *
 * Streams: every call enqueues on `stream` (a cudaStream_t; NULL is the default stream) and
 * waits, on that stream, for the object's previous work (an event), so the calls of one object
 * run in call order whatever streams they use. Nothing synchronizes the device; a call blocks
 * the host only to hand back host_out (it waits for its stream), and, for inputs over 8 MB, to
 * reuse a staging buffer once its previous copy is done.
 * Memory: created with the FFT plan, filters and chunk buffers (~27 MB); the sample and mel
 * buffers grow on demand with stream-ordered allocations (cudaMallocAsync) and are kept, so a
 * warm object allocates nothing per call.
 * Thread-safety: calls on one object are serialized by a mutex; different objects are
 * independent. kiln_mel_cuda_window() reads the latest compute's mel: threads sharing an object
 * must pair those calls themselves. Errors go through kiln_error (kiln_last_error()).
 * Only built with KILN_HAVE_CUDA. Checked by tests/gpu/test_mel_gpu.c against kiln_mel_compute().
 */
#ifndef KILN_MODELS_WHISPER_MEL_CUDA_H
#define KILN_MODELS_WHISPER_MEL_CUDA_H

#include <stdint.h>

#include "kiln/dtype.h"
#include "kiln/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kiln_mel_cuda kiln_mel_cuda;

/* A front end for n_mels (80 or 128) bins on CUDA device `device`. The current device of the
 * calling thread is left as it was (here and in every call below).
 * Errors: KILN_ERR_INVALID_ARG, KILN_ERR_NO_DEVICE, KILN_ERR_OUT_OF_DEVICE_MEMORY, KILN_ERR_CUDA. */
kiln_status kiln_mel_cuda_create(int32_t n_mels, int32_t device, kiln_mel_cuda **out);

/* Waits for the object's work and frees everything. NULL is fine. */
void kiln_mel_cuda_destroy(kiln_mel_cuda *m);

/* Log-mel of samples[n_samples] followed by pad_zeros zero samples, as kiln_mel_compute(); the
 * total must exceed 200 samples. The result, [n_mels x kiln_mel_n_frames(n_samples + pad_zeros)]
 * fp32, stays in the object (kiln_mel_cuda_window / _device_data) until the next compute.
 * samples: host memory (pageable or pinned: copied before the call returns) or device memory
 * of this device (read in stream order: keep it until the stream has passed this call).
 * device_out (optional): also writes the whole mel there in out_dtype (fp32, fp16 or bf16), in
 * stream order. host_out (optional): also copies the fp32 mel there and waits for the stream.
 * On error (any, arguments included), device_out and host_out are untouched and the object
 * holds no mel until the next successful compute. */
kiln_status kiln_mel_cuda_compute(kiln_mel_cuda *m, const float *samples, int64_t n_samples,
                                  int64_t pad_zeros, void *stream, void *device_out,
                                  kiln_dtype out_dtype, float *host_out);

/* One encoder input row from the latest mel: dst is a device buffer [rows, n_mels, width] in
 * `dtype` (fp32, fp16 or bf16); row `row` gets dst[row, r, c] = mel[r, f0 + c] for
 * c < min(n_take, width) while f0 + c < frames, and 0 for the other columns (openai-whisper's
 * pad_or_trim(mel[:, f0 : f0 + n_take])). For Whisper: width 3000, n_take = the frames of
 * content left at seek f0 (at most 3000). Other rows of dst are not touched. Stream-ordered.
 * Errors: KILN_ERR_STATE before a successful compute; KILN_ERR_INVALID_ARG; KILN_ERR_UNSUPPORTED. */
kiln_status kiln_mel_cuda_window(kiln_mel_cuda *m, int64_t f0, int64_t n_take, int64_t width,
                                 void *dst, kiln_dtype dtype, int64_t row, void *stream);

/* Frames of the latest mel (0 before the first successful compute). */
int64_t kiln_mel_cuda_n_frames(kiln_mel_cuda *m);

/* The latest mel on the device, fp32 [n_mels x frames] (NULL before a compute). Valid until
 * the next compute or destroy; read it in stream order after the compute. */
const float *kiln_mel_cuda_device_data(kiln_mel_cuda *m);

#ifdef __cplusplus
}
#endif
#endif /* KILN_MODELS_WHISPER_MEL_CUDA_H */

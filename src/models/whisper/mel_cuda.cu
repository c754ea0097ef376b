/* src/models/whisper/mel_cuda.cu - Whisper's log-mel spectrogram on the GPU (kiln_mel_cuda_*,
 * declared in mel_cuda.h, which says how to call it).
 *
 * What it is: the CUDA twin of mel.c, exact to ~1e-7 against it. Per chunk of 4096 frames:
 *   frame_kernel   [4096 x 400] double: centred, reflect-padded frames times the periodic Hann
 *   cuFFT D2Z      [4096 x 201] complex double (batched, n = 400)
 *   logmel_kernel  power, sparse mel product, log10(max(e, 1e-10)) -> mel [n_mels x frames]
 *                  fp32, and an atomic running maximum of those values
 * then normalize_kernel applies max(v, max - 8) and (v + 4) / 4 in place, and window_kernel
 * copies column ranges, zero-padded and converted, to encoder inputs.
 * Double precision up to the log: see mel_cuda.h for why (fp32 FFTs reach 7e-5 on chirps).
 * What it is not: a general STFT (n_fft, hop and window are Whisper's), or a batched front end
 * for many files at once (one file per call; windows of it go to any batch row).
 */
#include <cufft.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cuda/cuda_common.cuh"
#include "core/round.h"
#include "kiln/audio.h"
#include "models/whisper/mel_cuda.h"

extern "C" {
#include "models/whisper/mel_filters.h"
}

enum {
  N_FFT = KILN_WHISPER_N_FFT,
  HOP = KILN_WHISPER_HOP_LENGTH,
  N_BINS = N_FFT / 2 + 1,
  CHUNK_FRAMES = 4096,      /* frames per FFT batch (bounds the work buffers at ~27 MB) */
  STAGE_SAMPLES = 1 << 20,  /* floats per pinned staging buffer (4 MB, two of them) */
  FRAMES_PER_BLOCK = 16,    /* frames per logmel_kernel block: 16 x 201 doubles of shared memory */
  GROW_BYTES = 1 << 22      /* device buffers grow in steps of 4 MB */
};

struct kiln_mel_cuda {
  int32_t n_mels, device;
  int pools;                  /* the device has stream-ordered allocation (cudaMallocAsync) */
  pthread_mutex_t lock;
  cufftHandle plan;
  int has_plan;
  double *window;             /* [400] periodic Hann */
  int32_t *rows;              /* [n_mels x 3]: first FFT bin, bin count, offset into values */
  float *values;              /* the filters' non-zero weights, row after row */
  double *frames;             /* [CHUNK_FRAMES x 400] */
  cufftDoubleComplex *spec;   /* [CHUNK_FRAMES x 201] */
  float *max;                 /* [1] running max of the log10 mel values */
  float *stage[2];            /* pinned host staging for host samples */
  cudaEvent_t staged[2];      /* the last copy out of each staging buffer */
  cudaEvent_t done;           /* the object's last enqueued work */
  float *samples;             /* device copy of host samples */
  size_t samples_cap;         /* bytes */
  float *mel;                 /* [n_mels x n_frames] fp32 */
  size_t mel_cap;             /* bytes */
  int64_t n_frames;           /* of the latest successful compute; 0 = none */
};

/* ---- errors and devices ------------------------------------------------------------------- */

static kiln_status cufft_status(cufftResult err, const char *stmt, const char *file, int line) {
  if (err == CUFFT_ALLOC_FAILED)
    return kiln_error(KILN_ERR_OUT_OF_DEVICE_MEMORY,
                      "%s failed at %s:%d: cuFFT could not allocate GPU memory; free GPU memory "
                      "(other processes, larger batches)", stmt, file, line);
  return kiln_error(KILN_ERR_CUDA,
                    "%s failed at %s:%d: cuFFT error %d; check the GPU and driver (nvidia-smi) "
                    "and that libcufft matches the CUDA runtime", stmt, file, line, (int)err);
}

#define MEL_CUFFT_CHECK(stmt)                                                  \
  do {                                                                         \
    cufftResult mel_cufft_e_ = (stmt);                                         \
    if (mel_cufft_e_ != CUFFT_SUCCESS)                                         \
      return cufft_status(mel_cufft_e_, #stmt, __FILE__, __LINE__);            \
  } while (0)

/* Make m's device current; *prev receives the thread's device, for device_leave(). */
static kiln_status device_enter(int32_t device, int *prev) {
  KILN_CUDA_CHECK(cudaGetDevice(prev));
  if (*prev != device) KILN_CUDA_CHECK(cudaSetDevice(device));
  return KILN_OK;
}

static void device_leave(int32_t device, int prev) {
  if (prev != device) (void)cudaSetDevice(prev);
}

static const kiln_mel_bank *bank_for(int32_t n_mels) {
  return n_mels == 80 ? &kiln_mel_bank_80 : n_mels == 128 ? &kiln_mel_bank_128 : NULL;
}

/* ---- kernels -------------------------------------------------------------------------------- */

static __global__ void set_kernel(float *p, float v) { *p = v; }

/* Atomic max of floats through their bits: non-negative floats order as signed ints, negative
 * ones in reverse as unsigned ints. */
static __device__ void atomic_max_float(float *addr, float v) {
  if (__float_as_int(v) >= 0)
    atomicMax((int *)addr, __float_as_int(v));
  else
    atomicMin((unsigned int *)addr, __float_as_uint(v));
}

/* frames[f, j] = window[j] * padded(t * 160 - 200 + j), t = t0 + f, for f < n_chunk; padded is
 * x[0..n_avail) then zeros up to total, reflected at both ends (mel.c: padded_sample). */
static __global__ void frame_kernel(const float *x, int64_t n_avail, int64_t total, int64_t t0,
                                    int64_t n_chunk, const double *window, double *frames) {
  int64_t n = n_chunk * N_FFT, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t f = i / N_FFT, j = i % N_FFT;
    int64_t k = (t0 + f) * HOP - N_FFT / 2 + j;
    if (k < 0) k = -k;
    if (k >= total) k = 2 * (total - 1) - k;
    frames[i] = k < n_avail ? window[j] * (double)x[k] : 0.0;
  }
}

/* One block per FRAMES_PER_BLOCK frames of the chunk: power spectra into shared memory, then
 * mel[r, t0 + f] = log10(max(sum_j values[j] * power[f, start_r + j], 1e-10)) for every mel row
 * r, and the block's maximum into *max. */
static __global__ void logmel_kernel(const cufftDoubleComplex *spec, int64_t t0, int64_t n_chunk,
                                     int64_t n_frames, const int32_t *rows, const float *values,
                                     int32_t n_mels, float *mel, float *max) {
  __shared__ double power[FRAMES_PER_BLOCK][N_BINS];
  __shared__ float red[32];
  const int64_t f0 = (int64_t)blockIdx.x * FRAMES_PER_BLOCK;
  for (int i = threadIdx.x; i < FRAMES_PER_BLOCK * N_BINS; i += blockDim.x) {
    int f = i / N_BINS, k = i % N_BINS;
    double p = 0.0;
    if (f0 + f < n_chunk) {
      cufftDoubleComplex c = spec[(f0 + f) * N_BINS + k];
      p = c.x * c.x + c.y * c.y;
    }
    power[f][k] = p;
  }
  __syncthreads();
  float local_max = -INFINITY;
  for (int i = threadIdx.x; i < n_mels * FRAMES_PER_BLOCK; i += blockDim.x) {
    int r = i / FRAMES_PER_BLOCK, f = i % FRAMES_PER_BLOCK;
    if (f0 + f >= n_chunk) continue;
    const int32_t start = rows[3 * r], count = rows[3 * r + 1], off = rows[3 * r + 2];
    double acc = 0.0;
    for (int32_t j = 0; j < count; j++) acc += (double)values[off + j] * power[f][start + j];
    float v = (float)log10(acc > 1e-10 ? acc : 1e-10);
    mel[(int64_t)r * n_frames + t0 + f0 + f] = v;
    local_max = fmaxf(local_max, v);
  }
  float block_max = kiln_block_reduce(local_max, red, 1); /* every thread takes part */
  if (threadIdx.x == 0) atomic_max_float(max, block_max);
}

/* In place: v = (max(v, *max - 8) + 4) / 4, in double as mel.c does. */
static __global__ void normalize_kernel(float *mel, int64_t n, const float *max) {
  const double floor_value = (double)*max - 8.0;
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    double v = mel[i];
    v = v > floor_value ? v : floor_value;
    mel[i] = (float)((v + 4.0) / 4.0);
  }
}

/* dst[r, c] (dst already at the row) = mel[r, f0 + c] for c < take and f0 + c < n_frames,
 * else 0; dst is [n_mels x width] in dtype. */
static __global__ void window_kernel(const float *mel, int64_t n_frames, int32_t n_mels,
                                     int64_t f0, int64_t take, int64_t width, void *dst,
                                     int dtype) {
  int64_t n = (int64_t)n_mels * width, step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t r = i / width, c = i % width;
    float v = c < take && f0 + c < n_frames ? mel[r * n_frames + f0 + c] : 0.0f;
    kiln_st(dst, dtype, i, v);
  }
}

/* ---- creation --------------------------------------------------------------------------------- */

/* The Hann window and the sparse filters, built on the host as mel.c builds them. */
static kiln_status upload_constants(kiln_mel_cuda *m) {
  const kiln_mel_bank *bank = bank_for(m->n_mels);
  const double two_pi = 6.283185307179586476925286766559;
  double window[N_FFT];
  int32_t rows[3 * 128];
  int32_t n_values = 0;
  for (int k = 0; k < N_FFT; k++) window[k] = 0.5 - 0.5 * cos(two_pi * k / N_FFT);
  for (int32_t r = 0; r < m->n_mels; r++) {
    rows[3 * r] = bank->start[r];
    rows[3 * r + 1] = bank->count[r];
    rows[3 * r + 2] = n_values;
    n_values += bank->count[r];
  }
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->window, sizeof window));
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->rows, sizeof(int32_t) * 3 * (size_t)m->n_mels));
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->values, sizeof(float) * (size_t)(n_values ? n_values : 1)));
  KILN_CUDA_CHECK(cudaMemcpy(m->window, window, sizeof window, cudaMemcpyHostToDevice));
  KILN_CUDA_CHECK(cudaMemcpy(m->rows, rows, sizeof(int32_t) * 3 * (size_t)m->n_mels,
                             cudaMemcpyHostToDevice));
  KILN_CUDA_CHECK(cudaMemcpy(m->values, bank->values, sizeof(float) * (size_t)n_values,
                             cudaMemcpyHostToDevice));
  return KILN_OK;
}

static kiln_status create_resources(kiln_mel_cuda *m) {
  int pools = 0, n = N_FFT, in_embed = N_FFT, out_embed = N_BINS;
  KILN_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, m->device));
  m->pools = pools;
  KILN_TRY(upload_constants(m));
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->frames, sizeof(double) * CHUNK_FRAMES * N_FFT));
  /* zeros once: a last, partial chunk leaves finite stale frames behind, never garbage */
  KILN_CUDA_CHECK(cudaMemset(m->frames, 0, sizeof(double) * CHUNK_FRAMES * N_FFT));
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->spec, sizeof(cufftDoubleComplex) * CHUNK_FRAMES * N_BINS));
  KILN_CUDA_CHECK(cudaMalloc((void **)&m->max, sizeof(float)));
  for (int i = 0; i < 2; i++) {
    KILN_CUDA_CHECK(cudaMallocHost((void **)&m->stage[i], sizeof(float) * STAGE_SAMPLES));
    KILN_CUDA_CHECK(cudaEventCreateWithFlags(&m->staged[i], cudaEventDisableTiming));
  }
  KILN_CUDA_CHECK(cudaEventCreateWithFlags(&m->done, cudaEventDisableTiming));
  MEL_CUFFT_CHECK(cufftPlanMany(&m->plan, 1, &n, &in_embed, 1, N_FFT, &out_embed, 1, N_BINS,
                                CUFFT_D2Z, CHUNK_FRAMES));
  m->has_plan = 1;
  return KILN_OK;
}

extern "C" kiln_status kiln_mel_cuda_create(int32_t n_mels, int32_t device, kiln_mel_cuda **out) {
  int count = 0, prev = 0;
  if (!out) return kiln_error(KILN_ERR_INVALID_ARG, "kiln_mel_cuda_create: out is NULL");
  if (!bank_for(n_mels))
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_mel_cuda_create: n_mels must be 80 or 128 (got %d); large-v3 models "
                      "use 128, the others 80", (int)n_mels);
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    (void)cudaGetLastError();
    return kiln_error(KILN_ERR_NO_DEVICE,
                      "kiln_mel_cuda_create: no CUDA device found; check the GPU and driver "
                      "(nvidia-smi), or use kiln_mel_compute() on the CPU");
  }
  if (device < 0 || device >= count)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_mel_cuda_create: CUDA device %d does not exist (this machine has %d); "
                      "pass 0..%d", (int)device, count, count - 1);
  kiln_mel_cuda *m = (kiln_mel_cuda *)calloc(1, sizeof *m);
  if (!m) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "kiln_mel_cuda_create: out of host memory");
  m->n_mels = n_mels;
  m->device = device;
  pthread_mutex_init(&m->lock, NULL);
  kiln_status st = device_enter(device, &prev);
  if (st != KILN_OK) {
    pthread_mutex_destroy(&m->lock);
    free(m);
    return st;
  }
  st = create_resources(m);
  device_leave(device, prev);
  if (st != KILN_OK) {
    kiln_mel_cuda_destroy(m);
    return st;
  }
  *out = m;
  return KILN_OK;
}

extern "C" void kiln_mel_cuda_destroy(kiln_mel_cuda *m) {
  int prev = 0;
  if (!m) return;
  if (device_enter(m->device, &prev) == KILN_OK) {
    if (m->done) (void)cudaEventSynchronize(m->done);
    if (m->has_plan) cufftDestroy(m->plan);
    for (int i = 0; i < 2; i++) {
      if (m->staged[i]) {
        (void)cudaEventSynchronize(m->staged[i]);
        cudaEventDestroy(m->staged[i]);
      }
      if (m->stage[i]) cudaFreeHost(m->stage[i]);
    }
    if (m->done) cudaEventDestroy(m->done);
    cudaFree(m->window), cudaFree(m->rows), cudaFree(m->values), cudaFree(m->frames);
    cudaFree(m->spec), cudaFree(m->max), cudaFree(m->samples), cudaFree(m->mel);
    device_leave(m->device, prev);
  }
  pthread_mutex_destroy(&m->lock);
  free(m);
}

/* ---- computing -------------------------------------------------------------------------------- */

/* *p holds at least `bytes` (contents not kept); stream-ordered where the device allows it. */
static kiln_status grow(kiln_mel_cuda *m, void **p, size_t *cap, size_t bytes, cudaStream_t s) {
  if (bytes <= *cap) return KILN_OK;
  size_t want = kiln_round_up(bytes, GROW_BYTES);
  if (m->pools) {
    if (*p) KILN_CUDA_CHECK(cudaFreeAsync(*p, s));
    *p = NULL, *cap = 0;
    KILN_CUDA_CHECK(cudaMallocAsync(p, want, s));
  } else {
    if (*p) KILN_CUDA_CHECK(cudaFree(*p)); /* synchronizes: only while growing */
    *p = NULL, *cap = 0;
    KILN_CUDA_CHECK(cudaMalloc(p, want));
  }
  *cap = want;
  return KILN_OK;
}

/* *dev = samples readable on the device: device memory as it is, host memory copied through the
 * two pinned staging buffers (each reused once its previous copy has finished). */
static kiln_status upload(kiln_mel_cuda *m, const float *x, int64_t n, cudaStream_t s,
                          const float **dev) {
  cudaPointerAttributes a;
  KILN_CUDA_CHECK(cudaPointerGetAttributes(&a, x));
  if (a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged) {
    if (a.type == cudaMemoryTypeDevice && a.device != m->device)
      return kiln_error(KILN_ERR_INVALID_ARG,
                        "kiln_mel_cuda_compute: the samples are on CUDA device %d but this front "
                        "end runs on device %d; pass host memory or create it on device %d",
                        a.device, (int)m->device, a.device);
    *dev = (const float *)a.devicePointer;
    return KILN_OK;
  }
  KILN_TRY(grow(m, (void **)&m->samples, &m->samples_cap, sizeof(float) * (size_t)n, s));
  int64_t piece = 0;
  for (int64_t off = 0; off < n; off += STAGE_SAMPLES, piece++) {
    const int slot = (int)(piece & 1);
    const size_t bytes = sizeof(float) * (size_t)(n - off < STAGE_SAMPLES ? n - off : (int64_t)STAGE_SAMPLES);
    KILN_CUDA_CHECK(cudaEventSynchronize(m->staged[slot]));
    memcpy(m->stage[slot], x + off, bytes);
    KILN_CUDA_CHECK(cudaMemcpyAsync(m->samples + off, m->stage[slot], bytes,
                                    cudaMemcpyHostToDevice, s));
    KILN_CUDA_CHECK(cudaEventRecord(m->staged[slot], s));
  }
  *dev = m->samples;
  return KILN_OK;
}

static kiln_status launch_window(const kiln_mel_cuda *m, int64_t f0, int64_t n_take, int64_t width,
                                 void *dst, kiln_dtype dtype, int64_t row, cudaStream_t s) {
  const size_t row_bytes = kiln_dtype_bytes(dtype, (int64_t)m->n_mels * width);
  const int64_t take = n_take < width ? n_take : width;
  window_kernel<<<kiln_grid_1d((int64_t)m->n_mels * width), KILN_CUDA_THREADS, 0, s>>>(
      m->mel, m->n_frames, m->n_mels, f0, take, width, (char *)dst + (size_t)row * row_bytes, dtype);
  KILN_CUDA_CHECK_LAUNCH();
  return KILN_OK;
}

/* Everything after the argument checks, with the lock held and the device current. */
static kiln_status compute_locked(kiln_mel_cuda *m, const float *samples, int64_t n_samples,
                                  int64_t total, cudaStream_t s, void *device_out,
                                  kiln_dtype out_dtype, float *host_out) {
  const int64_t n_frames = kiln_mel_n_frames(total), count = (int64_t)m->n_mels * n_frames;
  const float *x = NULL;
  if (n_samples > 0) KILN_TRY(upload(m, samples, n_samples, s, &x));
  KILN_TRY(grow(m, (void **)&m->mel, &m->mel_cap, sizeof(float) * (size_t)count, s));
  set_kernel<<<1, 1, 0, s>>>(m->max, -INFINITY);
  KILN_CUDA_CHECK_LAUNCH();
  MEL_CUFFT_CHECK(cufftSetStream(m->plan, s));
  for (int64_t t0 = 0; t0 < n_frames; t0 += CHUNK_FRAMES) {
    const int64_t n_chunk = n_frames - t0 < CHUNK_FRAMES ? n_frames - t0 : (int64_t)CHUNK_FRAMES;
    frame_kernel<<<kiln_grid_1d(n_chunk * N_FFT), KILN_CUDA_THREADS, 0, s>>>(
        x, n_samples, total, t0, n_chunk, m->window, m->frames);
    KILN_CUDA_CHECK_LAUNCH();
    MEL_CUFFT_CHECK(cufftExecD2Z(m->plan, m->frames, m->spec));
    const unsigned int blocks = (unsigned int)((n_chunk + FRAMES_PER_BLOCK - 1) / FRAMES_PER_BLOCK);
    logmel_kernel<<<blocks, KILN_CUDA_THREADS, 0, s>>>(m->spec, t0, n_chunk, n_frames, m->rows,
                                                       m->values, m->n_mels, m->mel, m->max);
    KILN_CUDA_CHECK_LAUNCH();
  }
  normalize_kernel<<<kiln_grid_1d(count), KILN_CUDA_THREADS, 0, s>>>(m->mel, count, m->max);
  KILN_CUDA_CHECK_LAUNCH();
  m->n_frames = n_frames;
  if (device_out) KILN_TRY(launch_window(m, 0, n_frames, n_frames, device_out, out_dtype, 0, s));
  if (host_out) {
    KILN_CUDA_CHECK(cudaMemcpyAsync(host_out, m->mel, sizeof(float) * (size_t)count,
                                    cudaMemcpyDeviceToHost, s));
    KILN_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  return KILN_OK;
}

/* ordered_begin: m's device current, and `s` waits for the object's previous work.
 * ordered_end: marks what was enqueued on `s` as the object's latest work (also after a failure:
 * what was enqueued must finish before the next call reuses the buffers); restores the device. */
static kiln_status ordered_begin(kiln_mel_cuda *m, cudaStream_t s, int *prev) {
  KILN_TRY(device_enter(m->device, prev));
  cudaError_t err = cudaStreamWaitEvent(s, m->done, 0);
  if (err != cudaSuccess) {
    device_leave(m->device, *prev);
    return kiln_cuda_status_(err, "cudaStreamWaitEvent(s, m->done, 0)", __FILE__, __LINE__);
  }
  return KILN_OK;
}

static kiln_status ordered_end(kiln_mel_cuda *m, cudaStream_t s, int prev, kiln_status st) {
  cudaError_t err = cudaEventRecord(m->done, s);
  if (st == KILN_OK && err != cudaSuccess)
    st = kiln_cuda_status_(err, "cudaEventRecord(m->done, s)", __FILE__, __LINE__);
  device_leave(m->device, prev);
  return st;
}

static kiln_status check_out_dtype(kiln_dtype dtype, const char *op) {
  if (dtype == KILN_DTYPE_FP32 || dtype == KILN_DTYPE_FP16 || dtype == KILN_DTYPE_BF16) return KILN_OK;
  return kiln_error(KILN_ERR_UNSUPPORTED, "%s: output dtype %s; use fp32, fp16 or bf16", op,
                    kiln_dtype_name(dtype));
}

static kiln_status check_compute_args(const float *samples, int64_t n_samples, int64_t pad_zeros,
                                      const void *device_out, kiln_dtype out_dtype) {
  const char *op = "kiln_mel_cuda_compute";
  if (n_samples < 0 || pad_zeros < 0)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: n_samples (%lld) and pad_zeros (%lld) must be >= 0",
                      op, (long long)n_samples, (long long)pad_zeros);
  if (n_samples > 0 && !samples)
    return kiln_error(KILN_ERR_INVALID_ARG, "%s: samples is NULL but n_samples is %lld", op,
                      (long long)n_samples);
  if (n_samples + pad_zeros <= N_FFT / 2)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "%s: the input has %lld samples, but reflect padding needs more than %d; "
                      "pad the audio (pad_zeros)", op, (long long)(n_samples + pad_zeros), N_FFT / 2);
  return device_out ? check_out_dtype(out_dtype, op) : KILN_OK;
}

extern "C" kiln_status kiln_mel_cuda_compute(kiln_mel_cuda *m, const float *samples,
                                             int64_t n_samples, int64_t pad_zeros, void *stream,
                                             void *device_out, kiln_dtype out_dtype,
                                             float *host_out) {
  if (!m)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "kiln_mel_cuda_compute: m is NULL; create it with kiln_mel_cuda_create()");
  int prev = 0;
  cudaStream_t s = kiln_stream(stream);
  kiln_status st = check_compute_args(samples, n_samples, pad_zeros, device_out, out_dtype);
  pthread_mutex_lock(&m->lock);
  m->n_frames = 0; /* no mel until this call succeeds */
  if (st == KILN_OK) st = ordered_begin(m, s, &prev);
  if (st == KILN_OK) {
    st = compute_locked(m, samples, n_samples, n_samples + pad_zeros, s, device_out, out_dtype,
                        host_out);
    if (st != KILN_OK) m->n_frames = 0;
    st = ordered_end(m, s, prev, st);
  }
  pthread_mutex_unlock(&m->lock);
  return st;
}

extern "C" kiln_status kiln_mel_cuda_window(kiln_mel_cuda *m, int64_t f0, int64_t n_take,
                                            int64_t width, void *dst, kiln_dtype dtype,
                                            int64_t row, void *stream) {
  const char *op = "kiln_mel_cuda_window";
  if (!m || !dst) return kiln_error(KILN_ERR_INVALID_ARG, "%s: m and dst must not be NULL", op);
  if (f0 < 0 || n_take < 0 || width <= 0 || row < 0)
    return kiln_error(KILN_ERR_INVALID_ARG,
                      "%s: f0 (%lld), n_take (%lld) and row (%lld) must be >= 0 and width (%lld) > 0",
                      op, (long long)f0, (long long)n_take, (long long)row, (long long)width);
  KILN_TRY(check_out_dtype(dtype, op));
  int prev = 0;
  cudaStream_t s = kiln_stream(stream);
  pthread_mutex_lock(&m->lock);
  kiln_status st = m->n_frames > 0 ? KILN_OK
                   : kiln_error(KILN_ERR_STATE, "%s: no mel yet; call kiln_mel_cuda_compute() first "
                                "(and check that it succeeded)", op);
  if (st == KILN_OK) st = ordered_begin(m, s, &prev);
  if (st == KILN_OK) st = ordered_end(m, s, prev, launch_window(m, f0, n_take, width, dst, dtype, row, s));
  pthread_mutex_unlock(&m->lock);
  return st;
}

extern "C" int64_t kiln_mel_cuda_n_frames(kiln_mel_cuda *m) {
  if (!m) return 0;
  pthread_mutex_lock(&m->lock);
  int64_t n = m->n_frames;
  pthread_mutex_unlock(&m->lock);
  return n;
}

extern "C" const float *kiln_mel_cuda_device_data(kiln_mel_cuda *m) {
  if (!m) return NULL;
  pthread_mutex_lock(&m->lock);
  const float *p = m->n_frames > 0 ? m->mel : NULL;
  pthread_mutex_unlock(&m->lock);
  return p;
}

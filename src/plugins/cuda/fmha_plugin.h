/* src/plugins/cuda/fmha_plugin.h - the built-in fused-attention plugin ("fmha", version 1).
 *
 * Fields (kiln_plugin_field):
 *   num_heads     int32   H
 *   head_size     int32   D: 32, 64, 80, 96 or 128
 *   scale         float32 softmax scale (default 1/sqrt(D))
 *   causal        int32   0 or 1 (bottom-right aligned: key j masked for query i when
 *                         j > i + Skv - Sq)
 *   layout        string  "bhsd"   q [B,H,Sq,D], k/v [B,H,Skv,D]            -> out [B,H,Sq,D]
 *                         "bshd"   q [B,Sq,H,D], k/v [B,Skv,H,D]            -> out [B,Sq,H,D]
 *                         "qkv"    qkv [B,S,3,H,D] (packed)                  -> out [B,S,H,D]
 *                         "varlen" q [Tq,H,D], k/v [Tk,H,D], cu_seqlens_q [B+1] and
 *                                  cu_seqlens_k [B+1] int32 (device)         -> out [Tq,H,D]
 *   max_seqlen_q  int32   optional, varlen only: the longest query sequence (sizes the grid;
 *                         default Tq, which is correct but launches idle programs).
 * Runs on CUDA only, fp16 or bf16 (all float inputs alike). Tactics are the Triton variants
 * compiled for the head size (tile shapes) of two kernels: fmha_fwd (plain loads, every arch)
 * first, then fmha_fwd_tma (keys and values through TMA descriptors, sm_90 and newer, 1.3-1.4x
 * faster on an H100); tactic_valid rejects those with no code for the current device or whose
 * shared memory exceeds it. Only built with the Triton kernels (KILN_HAVE_TRITON_KERNELS).
 */
#ifndef KILN_PLUGINS_CUDA_FMHA_PLUGIN_H
#define KILN_PLUGINS_CUDA_FMHA_PLUGIN_H

#include "kiln/plugin.h"

const kiln_plugin_creator *kiln_fmha_plugin_creator(void);

#endif

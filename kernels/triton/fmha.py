"""kernels/triton/fmha.py - forward fused multi-head attention (flash-attention style online
softmax) for kiln, compiled ahead of time by tools/triton_aot.py.

What it is: one Triton kernel, `fmha_fwd`, written with plain pointers and strides, so one
kernel serves every layout kiln uses:
  - [batch, heads, seq, head] (stride_b, stride_h, stride_s; the head dim is contiguous),
  - [batch, seq, heads, head] and packed QKV [batch, seq, 3, heads, head] (other strides),
  - variable sequence lengths without padding (varlen != 0): tokens packed as
    [total, heads, head], sequence b spans rows cu_seqlens[b] .. cu_seqlens[b + 1] (int32);
    the caller passes stride_b = 0 and the grid covers the longest sequence (programs past the
    end of a shorter sequence return at once).
Causal masking is bottom-right aligned: key j is masked for query i when j > i + Skv - Sq
(kiln's attention semantics). A query row with no visible key (causal, Sq > Skv) yields zeros.
The softmax scale is an fp32 runtime argument. The head dim is padded to BLOCK_D (a power of
two) with masks, so head sizes 80 and 96 run with BLOCK_D = 128.

What it is not: a backward pass, dropout, ALiBi or a KV-cache paging scheme; fp32 inputs are
not compiled (the plugin reports fp16/bf16 only).

Grid: (cdiv(max_seqlen_q, BLOCK_M), batch * heads, 1).
Variants (AOT_KERNELS below): per dtype and head size, a few tile shapes the builder times.
"""
import triton
import triton.language as tl


@triton.jit
def _seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen):
    """(q_start, k_start, sq, sk) of sequence b: the whole tensors, or (varlen) its slice of the
    packed tokens."""
    q_start = 0
    k_start = 0
    sq = seqlen_q
    sk = seqlen_k
    if varlen != 0:
        q_start = tl.load(cu_seqlens_q + b)
        sq = tl.load(cu_seqlens_q + b + 1) - q_start
        k_start = tl.load(cu_seqlens_k + b)
        sk = tl.load(cu_seqlens_k + b + 1) - k_start
    return q_start, k_start, sq, sk


@triton.jit
def _key_range(pid_m, sq, sk, causal, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Key blocks split in two loops: [0, lo) needs no mask at all (every key is inside the
    sequence and, when causal, visible to every query row of this block); [lo, hi) is masked.
    shift = sk - sq aligns the causal mask bottom-right."""
    shift = sk - sq
    hi = sk
    lo = (sk // BLOCK_N) * BLOCK_N
    if causal != 0:
        hi = tl.minimum(sk, (pid_m + 1) * BLOCK_M + shift)
        first_row_limit = pid_m * BLOCK_M + shift + 1  # keys < this are visible to every row
        lo = tl.minimum(lo, tl.maximum(first_row_limit, 0) // BLOCK_N * BLOCK_N)
    lo = tl.maximum(tl.minimum(lo, hi), 0)
    return lo, hi, shift


@triton.jit
def _q_tile(Q, b64, h64, q_start, stride_qb, stride_qh, stride_qs, pid_m, sq,
            HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr):
    """This program's query rows [BLOCK_M, BLOCK_D] (zeros past sq and HEAD_DIM), their offsets
    and masks."""
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < HEAD_DIM
    m_ok = offs_m < sq
    q_base = Q + b64 * stride_qb + h64 * stride_qh + q_start.to(tl.int64) * stride_qs
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    return q, offs_m, offs_d, m_ok, d_ok


@triton.jit
def _store_out(o_base, acc, l_i, offs_m, offs_d, stride_os, m_ok, d_ok):
    """out = acc / l (rows that saw no key: zeros)."""
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(o_base + offs_m[:, None] * stride_os + offs_d[None, :],
             out.to(o_base.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])


@triton.jit
def fmha_fwd(Q, K, V, Out, cu_seqlens_q, cu_seqlens_k,
             stride_qb, stride_qh, stride_qs,
             stride_kb, stride_kh, stride_ks,
             stride_vb, stride_vh, stride_vs,
             stride_ob, stride_oh, stride_os,
             num_heads, seqlen_q, seqlen_k, scale, causal, varlen,
             HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads

    q_start, k_start, sq, sk = _seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen)
    if pid_m * BLOCK_M >= sq:
        return

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    k_base = K + b64 * stride_kb + h64 * stride_kh + k_start.to(tl.int64) * stride_ks
    v_base = V + b64 * stride_vb + h64 * stride_vh + k_start.to(tl.int64) * stride_vs
    o_base = Out + b64 * stride_ob + h64 * stride_oh + q_start.to(tl.int64) * stride_os
    q, offs_m, offs_d, m_ok, d_ok = _q_tile(Q, b64, h64, q_start, stride_qb, stride_qh, stride_qs, pid_m, sq,
                                            HEAD_DIM, BLOCK_D, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    qk_scale = scale * 1.4426950408889634  # softmax in base 2

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    lo, hi, shift = _key_range(pid_m, sq, sk, causal, BLOCK_M, BLOCK_N)
    # in-slice offsets fit in 32 bits; the slice bases above are 64-bit
    sks = stride_ks.to(tl.int32)
    svs = stride_vs.to(tl.int32)
    kt_ptrs = k_base + offs_n[None, :] * sks + offs_d[:, None]  # k^T [BLOCK_D, BLOCK_N]
    v_ptrs = v_base + offs_n[:, None] * svs + offs_d[None, :]   # v [BLOCK_N, BLOCK_D]
    for start_n in range(0, lo, BLOCK_N):
        if BLOCK_D == HEAD_DIM:
            kt = tl.load(kt_ptrs)
            v = tl.load(v_ptrs)
        else:
            kt = tl.load(kt_ptrs, mask=d_ok[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=d_ok[None, :], other=0.0)
        qk = tl.dot(q, kt) * qk_scale
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
        kt_ptrs += BLOCK_N * sks
        v_ptrs += BLOCK_N * svs
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        n_ok = cols < sk
        kt = tl.load(kt_ptrs, mask=n_ok[None, :] & d_ok[:, None], other=0.0)
        qk = tl.dot(q, kt) * qk_scale
        keep = n_ok[None, :] & ((cols[None, :] <= offs_m[:, None] + shift) | (causal == 0))
        qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
        kt_ptrs += BLOCK_N * sks
        v_ptrs += BLOCK_N * svs

    _store_out(o_base, acc, l_i, offs_m, offs_d, stride_os, m_ok, d_ok)


@triton.jit
def fmha_fwd_tma(Q, Out, desc_k, desc_v, cu_seqlens_q, cu_seqlens_k,
                 stride_qb, stride_qh, stride_qs,
                 stride_ob, stride_oh, stride_os,
                 num_heads, seqlen_q, seqlen_k, scale, causal, varlen,
                 HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # fmha_fwd with keys and values read through TMA (sm_90): desc_k and desc_v describe K and V
    # as [B, H, S, D] (varlen: [1, H, total, D]) in whatever strides the layout has, with blocks
    # [1, 1, BLOCK_N, BLOCK_D]; rows past the tensor and columns past HEAD_DIM read as zeros.
    # q and out use plain pointers (read once, written once). Same semantics as fmha_fwd.
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads

    q_start, k_start, sq, sk = _seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen)
    kb = tl.where(varlen == 0, b, 0)  # the descriptor's batch coordinate (varlen: one packed "batch")
    if pid_m * BLOCK_M >= sq:
        return

    b64 = b.to(tl.int64)
    h64 = h.to(tl.int64)
    o_base = Out + b64 * stride_ob + h64 * stride_oh + q_start.to(tl.int64) * stride_os
    q, offs_m, offs_d, m_ok, d_ok = _q_tile(Q, b64, h64, q_start, stride_qb, stride_qh, stride_qs, pid_m, sq,
                                            HEAD_DIM, BLOCK_D, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    qk_scale = scale * 1.4426950408889634  # softmax in base 2

    m_i = tl.zeros([BLOCK_M], dtype=tl.float32) - 1.0e30
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, hi, shift = _key_range(pid_m, sq, sk, causal, BLOCK_M, BLOCK_N)
    row = k_start
    for start_n in range(0, lo, BLOCK_N):
        k = desc_k.load([kb, h, row, 0]).reshape(BLOCK_N, BLOCK_D)
        qk = tl.dot(q, k.T)
        m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
        p = tl.math.exp2(qk * qk_scale - m_new[:, None])  # the scale folded into one FMA
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = desc_v.load([kb, h, row, 0]).reshape(BLOCK_N, BLOCK_D)
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
        row += BLOCK_N
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = desc_k.load([kb, h, row, 0]).reshape(BLOCK_N, BLOCK_D)
        qk = tl.dot(q, k.T) * qk_scale
        # keys past sk are zeros (past the tensor) or the next sequence's (varlen): masked
        keep = (cols[None, :] < sk) & ((cols[None, :] <= offs_m[:, None] + shift) | (causal == 0))
        qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.math.exp2(qk - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None]
        v = desc_v.load([kb, h, row, 0]).reshape(BLOCK_N, BLOCK_D)
        acc = tl.dot(p.to(v.dtype), v, acc)
        m_i = m_new
        row += BLOCK_N

    _store_out(o_base, acc, l_i, offs_m, offs_d, stride_os, m_ok, d_ok)


def _signature(dtype):
    ptr = "*" + dtype + ":16"
    sig = {"Q": ptr, "K": ptr, "V": ptr, "Out": ptr,
           "cu_seqlens_q": "*i32", "cu_seqlens_k": "*i32"}
    # Strides are in elements and multiples of 16 for every head size kiln compiles (32, 64, 80,
    # 96, 128) in every layout; saying so (":16", checked by the launcher) lets Triton vectorize
    # the loads, as its JIT does when it specializes on the values (2x at 8x32x512x64 on an H200).
    for t in ("q", "k", "v", "o"):
        for s in ("b", "h", "s"):
            sig["stride_" + t + s] = "i64:16"
    sig.update({"num_heads": "i32", "seqlen_q": "i32", "seqlen_k": "i32", "scale": "fp32",
                "causal": "i32", "varlen": "i32",
                "HEAD_DIM": "constexpr", "BLOCK_D": "constexpr",
                "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"})
    return sig


# Tile shapes timed by the builder: (BLOCK_M, BLOCK_N, num_warps, num_stages). Chosen with
# bench/fmha_lab.py on an H200 (2026-11-21): BLOCK_N = 32 with 3 stages won at every shape
# measured (head 64 and 128), BLOCK_M = 128 with 8 warps first; the others stay as candidates for
# other GPUs and shapes (the builder times them all).
_TILES_SMALL_D = [(128, 32, 8, 3), (128, 32, 4, 3), (64, 32, 4, 3), (64, 64, 4, 3)]
_TILES_LARGE_D = [(128, 32, 8, 3), (128, 64, 8, 3), (128, 32, 8, 4)]


def _signature_tma(dtype):
    ptr = "*" + dtype + ":16"
    desc = "tensordesc<" + dtype + "[1, 1, BLOCK_N, BLOCK_D]>"
    sig = {"Q": ptr, "Out": ptr, "desc_k": desc, "desc_v": desc,
           "cu_seqlens_q": "*i32", "cu_seqlens_k": "*i32"}
    for t in ("q", "o"):
        for s in ("b", "h", "s"):
            sig["stride_" + t + s] = "i64:16"
    sig.update({"num_heads": "i32", "seqlen_q": "i32", "seqlen_k": "i32", "scale": "fp32",
                "causal": "i32", "varlen": "i32",
                "HEAD_DIM": "constexpr", "BLOCK_D": "constexpr",
                "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"})
    return sig


# TMA tiles, from bench/fmha_tma_lab.py on an H100 (2026-11-22): BLOCK_N 64 with 4 warps won at
# head 64 (BLOCK_M 64 at 1500 and causal 512, 128 elsewhere); head 128 liked (128, 64, 4, 2).
_TMA_TILES_SMALL_D = [(64, 64, 4, 3), (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 4, 4), (128, 128, 4, 3)]
_TMA_TILES_LARGE_D = [(128, 64, 4, 2), (128, 128, 8, 3), (128, 64, 8, 3), (64, 64, 4, 3)]


def _variants(small=None, large=None):
    small = small or _TILES_SMALL_D
    large = large or _TILES_LARGE_D
    out = []
    for head_dim in (32, 64, 80, 96, 128):
        block_d = 1 << (head_dim - 1).bit_length()
        tiles = small if head_dim <= 64 else large
        for bm, bn, warps, stages in tiles:
            out.append({"constexprs": {"HEAD_DIM": head_dim, "BLOCK_D": block_d,
                                       "BLOCK_M": bm, "BLOCK_N": bn},
                        "num_warps": warps, "num_stages": stages})
    return out


# One AoT kernel per dtype: the plugin picks the kernel by dtype and the variants by HEAD_DIM.
AOT_KERNELS = {
    "fmha_fwd_fp16": {"fn": fmha_fwd, "signature": _signature("fp16"), "variants": _variants()},
    "fmha_fwd_bf16": {"fn": fmha_fwd, "signature": _signature("bf16"), "variants": _variants()},
    # sm_90 and newer: keys and values through TMA; the builder times these next to the above
    "fmha_fwd_tma_fp16": {"fn": fmha_fwd_tma, "signature": _signature_tma("fp16"), "min_arch": 90,
                          "variants": _variants(_TMA_TILES_SMALL_D, _TMA_TILES_LARGE_D)},
    "fmha_fwd_tma_bf16": {"fn": fmha_fwd_tma, "signature": _signature_tma("bf16"), "min_arch": 90,
                          "variants": _variants(_TMA_TILES_SMALL_D, _TMA_TILES_LARGE_D)},
}

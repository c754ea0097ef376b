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

Two more kernels with the same arguments and semantics read keys and values through TMA
descriptors on sm_90: fmha_fwd_tma (Triton) and fmha_fwd_wgmma (Gluon, with two warpgroup MMAs
kept in flight; see its comment below). A fourth, fmha_fwd_ws (Gluon, sm_90), has the same
semantics but is persistent and warp-specialized: it takes Q through a descriptor too, the batch
size, and a grid of about one program per SM (see its comment). The plugin offers all four
kernels' tiles as tactics.

Grid: (cdiv(max_seqlen_q, BLOCK_M), batch * heads, 1).
Variants (AOT_KERNELS below): per dtype and head size, a few tile shapes the builder times.
"""
import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma, warpgroup_mma,
                                                               warpgroup_mma_wait)


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


# ---- sm_90: the same attention in Gluon, with warpgroup MMAs kept in flight -----------------
#
# fmha_fwd_tma leaves the overlap of its two matmuls and the softmax to Triton's pipeliner, which
# waits for each wgmma before the code that reads its result. This kernel, written in Gluon
# (Triton's lower-level dialect: explicit layouts, shared memory, mbarriers and async wgmma),
# keeps two in flight: at step j it issues S = Q K_{j+1}^T and O += P_j V_j, waits for S only,
# and computes the softmax of S while the tensor cores run P_j V_j (flash-attention 3's
# intra-warpgroup overlap). K and V blocks stream through a ring of STAGES slots filled by TMA,
# one mbarrier per slot and operand; a slot is refilled as soon as both of its reads are done.
# The key blocks that need no mask run first, the masked ones (sequence end, causal diagonal)
# after, so the unmasked loop carries no branch. One warpgroup (4 warps) per program: a second
# one in the same program would have to meet it at a barrier before each refill.
# Q is loaded with pointers and staged in shared memory (the first wgmma operand); O is stored
# with pointers.
# Same arguments and semantics as fmha_fwd_tma.


@gluon.jit
def _g_softmax(s, m_i, l_i, col0, sk, rows, shift, causal, qk_scale, MASK: gl.constexpr,
               s_layout: gl.constexpr, BLOCK_N: gl.constexpr):
    if MASK:  # keys past sk, and (causal) keys after the query row's diagonal
        cols = col0 + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        keep = (gl.expand_dims(cols, 0) < sk) & ((gl.expand_dims(cols, 0) <= gl.expand_dims(rows, 1) + shift) |
                                                  (causal == 0))
        s = gl.where(keep, s, float("-inf"))
    m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
    p = gl.exp2(s * qk_scale - gl.expand_dims(m_new, 1))  # the scale folded into one FMA
    alpha = gl.exp2(m_i - m_new)
    l_i = l_i * alpha + gl.sum(p, 1)
    return p, alpha, m_new, l_i


@gluon.jit
def _g_seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen):
    """As _seq_bounds, for the Gluon kernels (which cannot call triton.jit functions)."""
    q_start = 0
    k_start = 0
    sq = seqlen_q
    sk = seqlen_k
    if varlen != 0:
        q_start = gl.load(cu_seqlens_q + b)
        sq = gl.load(cu_seqlens_q + b + 1) - q_start
        k_start = gl.load(cu_seqlens_k + b)
        sk = gl.load(cu_seqlens_k + b + 1) - k_start
    return q_start, sq, k_start, sk


@gluon.jit
def _g_keys(r0, r1, sq, sk, causal, BLOCK_N: gl.constexpr):
    """Key blocks for query rows [r0, r1) (as _key_range): n in all, of which the first n_free
    need no mask (the sequence end and the causal diagonal fall in the others); none when r0 is
    past the sequence."""
    shift = sk - sq
    hi = sk
    lo = (sk // BLOCK_N) * BLOCK_N
    if causal != 0:
        hi = gl.minimum(sk, r1 + shift)
        lo = gl.minimum(lo, gl.maximum(r0 + shift + 1, 0) // BLOCK_N * BLOCK_N)
    hi = gl.maximum(hi, 0)
    lo = gl.maximum(gl.minimum(lo, hi), 0)
    n = (hi + BLOCK_N - 1) // BLOCK_N
    if r0 >= sq:
        n = 0
    return n, lo // BLOCK_N


@gluon.jit
def _g_load_kv(desc_k, desc_v, k_smem, v_smem, k_bar, v_bar, slot, kb, h, row, go):
    mbarrier.expect(k_bar.index(slot), desc_k.block_type.nbytes, pred=go)
    tma.async_copy_global_to_shared(desc_k, [kb, h, row, 0], k_bar.index(slot), k_smem.index(slot), pred=go)
    mbarrier.expect(v_bar.index(slot), desc_v.block_type.nbytes, pred=go)
    tma.async_copy_global_to_shared(desc_v, [kb, h, row, 0], v_bar.index(slot), v_smem.index(slot), pred=go)


@gluon.jit
def _g_first(q, k_smem, k_bar, st, ph, zero_s, m_i, l_i, n_free, sk, rows, shift, causal, qk_scale,
             s_layout: gl.constexpr, p_layout: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_D: gl.constexpr):
    """The first step: S_0 = Q K_0^T from slot st (parity ph), waited for, and its softmax (masked
    unless n_free > 0); -> P_0 as the next wgmma's operand, m_i, l_i."""
    mbarrier.wait(k_bar.index(st), ph)
    s = warpgroup_mma(q, k_smem.index(st).reshape([BLOCK_N, BLOCK_D]).permute((1, 0)), zero_s, use_acc=False,
                      is_async=True)
    s = warpgroup_mma_wait(num_outstanding=0, deps=(s,))
    if n_free > 0:
        p, alpha, m_i, l_i = _g_softmax(s, m_i, l_i, 0, sk, rows, shift, causal, qk_scale, False, s_layout, BLOCK_N)
    else:
        p, alpha, m_i, l_i = _g_softmax(s, m_i, l_i, 0, sk, rows, shift, causal, qk_scale, True, s_layout, BLOCK_N)
    return gl.convert_layout(p.to(k_smem.dtype), p_layout), m_i, l_i


@gluon.jit
def _g_core(q, k_smem, v_smem, k_bar, v_bar, st, ph, st1, ph1, zero_s, acc, pa, m_i, l_i, col1, sk, rows, shift,
            causal, qk_scale, MASK: gl.constexpr, s_layout: gl.constexpr, p_layout: gl.constexpr,
            BLOCK_N: gl.constexpr, BLOCK_D: gl.constexpr):
    """One step of both Gluon kernels: S_{j+1} = Q K_{j+1}^T (slot st1, parity ph1; its keys start
    at column col1) and O += P_j V_j (slot st, parity ph) in flight together; the softmax of S_{j+1}
    runs while P_j V_j does. Slot st (K_j and V_j) is no longer read when it returns: the caller
    frees it, then finishes the step with _g_rescale (the ws kernel frees the slot first, so the
    producer's refill starts sooner: arriving after the rescale measured slower on an H100)."""
    mbarrier.wait(k_bar.index(st1), ph1)
    s = warpgroup_mma(q, k_smem.index(st1).reshape([BLOCK_N, BLOCK_D]).permute((1, 0)), zero_s, use_acc=False,
                      is_async=True)
    mbarrier.wait(v_bar.index(st), ph)
    acc = warpgroup_mma(pa, v_smem.index(st).reshape([BLOCK_N, BLOCK_D]), acc, is_async=True)
    s = warpgroup_mma_wait(num_outstanding=1, deps=(s,))
    p, alpha, m_i, l_i = _g_softmax(s, m_i, l_i, col1, sk, rows, shift, causal, qk_scale, MASK, s_layout, BLOCK_N)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    return acc, p, alpha, m_i, l_i


@gluon.jit
def _g_rescale(acc, p, alpha, dtype: gl.constexpr, p_layout: gl.constexpr):
    """The end of a step: O rescaled by alpha, P_{j+1} made the next wgmma's operand (dtype)."""
    acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, acc.type.layout)), 1)
    return acc, gl.convert_layout(p.to(dtype), p_layout)


@gluon.jit
def _g_last(pa, v_smem, v_bar, st, ph, acc, BLOCK_N: gl.constexpr, BLOCK_D: gl.constexpr):
    """The last step: O += P V from slot st (parity ph), waited for."""
    mbarrier.wait(v_bar.index(st), ph)
    acc = warpgroup_mma(pa, v_smem.index(st).reshape([BLOCK_N, BLOCK_D]), acc, is_async=True)
    return warpgroup_mma_wait(num_outstanding=0, deps=(acc,))


@gluon.jit
def _g_store(Out, acc, l_i, b, h, q_start, r0, sq, stride_ob, stride_oh, stride_os, HEAD_DIM: gl.constexpr,
             BLOCK_D: gl.constexpr, BLOCK_M: gl.constexpr, o_layout: gl.constexpr, ld_layout: gl.constexpr):
    """out = acc / l (rows that saw no key: zeros) for query rows [r0, r0 + BLOCK_M) of head h of
    sequence b, stored with pointers (rows past sq and columns past HEAD_DIM masked)."""
    l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
    out = acc / gl.expand_dims(gl.where(l_o > 0.0, l_o, 1.0), 1)
    out = gl.convert_layout(out.to(Out.dtype.element_ty), ld_layout)
    lrows = r0 + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld_layout))
    lcols = gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, ld_layout))
    lmask = gl.expand_dims(lrows < sq, 1) & gl.expand_dims(lcols < HEAD_DIM, 0)
    o_base = Out + b.to(gl.int64) * stride_ob + h.to(gl.int64) * stride_oh + q_start.to(gl.int64) * stride_os
    gl.store(o_base + gl.expand_dims(lrows, 1) * stride_os + gl.expand_dims(lcols, 0), out, mask=lmask)


@gluon.jit
def _g_step(j, q, k_smem, v_smem, k_bar, v_bar, desc_k, desc_v, zero_s, acc, pa, m_i, l_i, kb, h, k_start, n,
            sk, rows, shift, causal, qk_scale, MASK: gl.constexpr, s_layout: gl.constexpr,
            p_layout: gl.constexpr, BLOCK_N: gl.constexpr, BLOCK_D: gl.constexpr, STAGES: gl.constexpr):
    """_g_core for key block j (slot j % STAGES); then that slot takes block j + STAGES."""
    st = j % STAGES
    j1 = j + 1
    acc, p, alpha, m_i, l_i = _g_core(q, k_smem, v_smem, k_bar, v_bar, st, (j // STAGES) & 1, j1 % STAGES,
                                      (j1 // STAGES) & 1, zero_s, acc, pa, m_i, l_i, j1 * BLOCK_N, sk, rows, shift,
                                      causal, qk_scale, MASK, s_layout, p_layout, BLOCK_N, BLOCK_D)
    acc, pa = _g_rescale(acc, p, alpha, k_smem.dtype, p_layout)
    nxt = j + STAGES
    _g_load_kv(desc_k, desc_v, k_smem, v_smem, k_bar, v_bar, st, kb, h, k_start + nxt * BLOCK_N, nxt < n)
    return acc, pa, m_i, l_i


@gluon.jit
def fmha_fwd_wgmma(Q, Out, desc_k, desc_v, cu_seqlens_q, cu_seqlens_k,
                   stride_qb, stride_qh, stride_qs,
                   stride_ob, stride_oh, stride_os,
                   num_heads, seqlen_q, seqlen_k, scale, causal, varlen,
                   HEAD_DIM: gl.constexpr, BLOCK_D: gl.constexpr,
                   BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):
    dtype: gl.constexpr = desc_k.dtype
    NW: gl.constexpr = gl.num_warps()
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[NW, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[NW, 1],
                                                       instr_shape=[16, BLOCK_D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // BLOCK_D, BLOCK_D // 8], [NW, 1], [1, 0])
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)

    pid_m = gl.program_id(0)
    pid_bh = gl.program_id(1)
    b = pid_bh // num_heads
    h = pid_bh % num_heads
    q_start, sq, k_start, sk = _g_seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen)
    kb = gl.where(varlen == 0, b, 0)  # the descriptors' batch coordinate (varlen: one packed "batch")
    if pid_m * BLOCK_M >= sq:
        return

    shift = sk - sq
    n, n_free = _g_keys(pid_m * BLOCK_M, (pid_m + 1) * BLOCK_M, sq, sk, causal, BLOCK_N)

    k_smem = gl.allocate_shared_memory(dtype, [STAGES] + desc_k.block_type.shape, desc_k.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES] + desc_v.block_type.shape, desc_v.layout)
    k_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(k_bar.index(i), count=1)
        mbarrier.init(v_bar.index(i), count=1)
    for i in gl.static_range(STAGES):
        _g_load_kv(desc_k, desc_v, k_smem, v_smem, k_bar, v_bar, i, kb, h, k_start + i * BLOCK_N, i < n)

    b64 = b.to(gl.int64)
    h64 = h.to(gl.int64)
    lrows = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld_layout))
    lcols = gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, ld_layout))
    lmask = gl.expand_dims(lrows < sq, 1) & gl.expand_dims(lcols < HEAD_DIM, 0)
    q_base = Q + b64 * stride_qb + h64 * stride_qh + q_start.to(gl.int64) * stride_qs
    q = gl.load(q_base + gl.expand_dims(lrows, 1) * stride_qs + gl.expand_dims(lcols, 0), mask=lmask, other=0.0)
    q_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, BLOCK_D],
                                       gl.NVMMASharedLayout.get_default_for([BLOCK_M, BLOCK_D], dtype))
    q_smem.store(q)
    fence_async_shared()
    q = q_smem

    qk_scale = scale * 1.4426950408889634  # softmax in base 2
    rows = pid_m * BLOCK_M + gl.arange(0, BLOCK_M, layout=row_s)
    m_i = gl.full([BLOCK_M], -1.0e30, gl.float32, layout=row_s)
    l_i = gl.zeros([BLOCK_M], gl.float32, layout=row_s)
    zero_s = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, layout=s_layout)
    acc = gl.zeros([BLOCK_M, BLOCK_D], gl.float32, layout=o_layout)
    if n > 0:
        pa, m_i, l_i = _g_first(q, k_smem, k_bar, 0, 0, zero_s, m_i, l_i, n_free, sk, rows, shift, causal, qk_scale,
                                s_layout, p_layout, BLOCK_N, BLOCK_D)
        for j in range(0, n_free - 1):
            acc, pa, m_i, l_i = _g_step(j, q, k_smem, v_smem, k_bar, v_bar, desc_k, desc_v, zero_s, acc, pa, m_i,
                                        l_i, kb, h, k_start, n, sk, rows, shift, causal, qk_scale, False, s_layout,
                                        p_layout, BLOCK_N, BLOCK_D, STAGES)
        for j in range(gl.maximum(n_free - 1, 0), n - 1):
            acc, pa, m_i, l_i = _g_step(j, q, k_smem, v_smem, k_bar, v_bar, desc_k, desc_v, zero_s, acc, pa, m_i,
                                        l_i, kb, h, k_start, n, sk, rows, shift, causal, qk_scale, True, s_layout,
                                        p_layout, BLOCK_N, BLOCK_D, STAGES)
        last = n - 1
        acc = _g_last(pa, v_smem, v_bar, last % STAGES, (last // STAGES) & 1, acc, BLOCK_N, BLOCK_D)

    _g_store(Out, acc, l_i, b, h, q_start, pid_m * BLOCK_M, sq, stride_ob, stride_oh, stride_os, HEAD_DIM, BLOCK_D,
             BLOCK_M, o_layout, ld_layout)


# The persistent, warp-specialized kernel (sm_90): a grid of about one program per SM (PER_SM
# each) walks the tiles (b, h, NC * 64 query rows) in turn. Inside a program:
#   - a producer warp loads, through TMA, each tile's Q (one 64-row block per consumer, QBUF
#     buffers each) and its K/V blocks into a ring of STAGES slots that runs on across tiles, so
#     the next tile's first blocks load while this one finishes;
#   - NC consumer warpgroups take 64 rows each and share the K/V stream. Each keeps S_{j+1} and
#     O += P_j V_j in flight as fmha_fwd_wgmma does, and frees a slot (an mbarrier counting NC
#     arrivals) once it has read it. A warpgroup that needs fewer key blocks (causal, or rows past
#     the sequence) still waits for each further block and frees it, so the ring stays in step.
# Ready barriers have one arrival (the TMA bytes); "empty" ones start free (waits on parity 1 pass).
# CREGS: registers of each consumer warpgroup besides the first (it takes what is left of maxnreg).
@gluon.jit
def _ws_tile(t, n_mb, num_heads, cu_seqlens_q, cu_seqlens_k, seqlen_q, seqlen_k, causal, varlen):
    """Tile t: query block m of head h of sequence b, with the sequence's bounds."""
    m = t % n_mb
    bh = t // n_mb
    if causal != 0:  # the longest tiles first
        m = n_mb - 1 - m
    b = bh // num_heads
    q_start, sq, k_start, sk = _g_seq_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q, seqlen_k, varlen)
    return m, b, bh % num_heads, q_start, sq, k_start, sk


@gluon.jit
def _ws_consumer(WG: gl.constexpr, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, Out,
                 cu_seqlens_q, cu_seqlens_k, stride_ob, stride_oh, stride_os, batch, num_heads, seqlen_q, seqlen_k,
                 scale, causal, varlen, HEAD_DIM: gl.constexpr, BLOCK_D: gl.constexpr, NC: gl.constexpr,
                 BLOCK_N: gl.constexpr, STAGES: gl.constexpr, QBUF: gl.constexpr):
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 * 8 // BLOCK_D, BLOCK_D // 8], [4, 1], [1, 0])
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    TM: gl.constexpr = NC * 64
    qk_scale = scale * 1.4426950408889634
    n_mb = (seqlen_q + TM - 1) // TM
    g = 0  # the ring's block count (slot g % STAGES, parity (g // STAGES) & 1)
    tc = 0  # tiles done (Q buffer tc % QBUF)
    for t in range(gl.program_id(0), n_mb * batch * num_heads, gl.num_programs(0)):
        m, b, h, q_start, sq, k_start, sk = _ws_tile(t, n_mb, num_heads, cu_seqlens_q, cu_seqlens_k, seqlen_q,
                                                     seqlen_k, causal, varlen)
        if m * TM < sq:
            n_tile, _ = _g_keys(m * TM, m * TM + TM, sq, sk, causal, BLOCK_N)
            r0 = m * TM + WG * 64
            n, n_free = _g_keys(r0, r0 + 64, sq, sk, causal, BLOCK_N)
            shift = sk - sq
            qi = WG * QBUF + tc % QBUF
            mbarrier.wait(q_ready.index(qi), (tc // QBUF) & 1)
            q = q_smem.index(qi).reshape([64, BLOCK_D])
            rows = r0 + gl.arange(0, 64, layout=row_s)
            m_i = gl.full([64], -1.0e30, gl.float32, layout=row_s)
            l_i = gl.zeros([64], gl.float32, layout=row_s)
            zero_s = gl.zeros([64, BLOCK_N], gl.float32, layout=s_layout)
            acc = gl.zeros([64, BLOCK_D], gl.float32, layout=o_layout)
            if n > 0:
                pa, m_i, l_i = _g_first(q, k_smem, k_ready, g % STAGES, (g // STAGES) & 1, zero_s, m_i, l_i, n_free,
                                        sk, rows, shift, causal, qk_scale, s_layout, p_layout, BLOCK_N, BLOCK_D)
                for j in range(0, n_free - 1):
                    acc, pa, m_i, l_i = _ws_step(g + j, q, k_smem, v_smem, k_ready, v_ready, kv_empty, zero_s, acc,
                                                 pa, m_i, l_i, (j + 1) * BLOCK_N, sk, rows, shift, causal, qk_scale,
                                                 False, s_layout, p_layout, BLOCK_N, BLOCK_D, STAGES)
                for j in range(gl.maximum(n_free - 1, 0), n - 1):
                    acc, pa, m_i, l_i = _ws_step(g + j, q, k_smem, v_smem, k_ready, v_ready, kv_empty, zero_s, acc,
                                                 pa, m_i, l_i, (j + 1) * BLOCK_N, sk, rows, shift, causal, qk_scale,
                                                 True, s_layout, p_layout, BLOCK_N, BLOCK_D, STAGES)
                mbarrier.arrive(q_empty.index(qi))  # every S is done: the producer may load the next Q
                gl_ = g + n - 1
                st = gl_ % STAGES
                acc = _g_last(pa, v_smem, v_ready, st, (gl_ // STAGES) & 1, acc, BLOCK_N, BLOCK_D)
                mbarrier.arrive(kv_empty.index(st))
            else:
                mbarrier.arrive(q_empty.index(qi))
            for j in range(n, n_tile):  # blocks only the other warpgroups use: free each in its turn
                gj = g + j
                mbarrier.wait(k_ready.index(gj % STAGES), (gj // STAGES) & 1)
                mbarrier.wait(v_ready.index(gj % STAGES), (gj // STAGES) & 1)
                mbarrier.arrive(kv_empty.index(gj % STAGES))
            _g_store(Out, acc, l_i, b, h, q_start, r0, sq, stride_ob, stride_oh, stride_os, HEAD_DIM, BLOCK_D, 64,
                     o_layout, ld_layout)
            g += n_tile
            tc += 1


@gluon.jit
def _ws_step(g, q, k_smem, v_smem, k_ready, v_ready, kv_empty, zero_s, acc, pa, m_i, l_i, col1, sk, rows, shift,
             causal, qk_scale, MASK: gl.constexpr, s_layout: gl.constexpr, p_layout: gl.constexpr,
             BLOCK_N: gl.constexpr, BLOCK_D: gl.constexpr, STAGES: gl.constexpr):
    """_g_core for ring block g (slot g % STAGES), which then goes back to the producer."""
    st = g % STAGES
    g1 = g + 1
    acc, p, alpha, m_i, l_i = _g_core(q, k_smem, v_smem, k_ready, v_ready, st, (g // STAGES) & 1, g1 % STAGES,
                                      (g1 // STAGES) & 1, zero_s, acc, pa, m_i, l_i, col1, sk, rows, shift, causal,
                                      qk_scale, MASK, s_layout, p_layout, BLOCK_N, BLOCK_D)
    mbarrier.arrive(kv_empty.index(st))
    acc, pa = _g_rescale(acc, p, alpha, k_smem.dtype, p_layout)
    return acc, pa, m_i, l_i


@gluon.jit
def _ws_producer(desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty,
                 cu_seqlens_q, cu_seqlens_k, batch, num_heads, seqlen_q, seqlen_k, causal, varlen,
                 NC: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, QBUF: gl.constexpr):
    TM: gl.constexpr = NC * 64
    n_mb = (seqlen_q + TM - 1) // TM
    g = 0
    tc = 0
    for t in range(gl.program_id(0), n_mb * batch * num_heads, gl.num_programs(0)):
        m, b, h, q_start, sq, k_start, sk = _ws_tile(t, n_mb, num_heads, cu_seqlens_q, cu_seqlens_k, seqlen_q,
                                                     seqlen_k, causal, varlen)
        if m * TM < sq:
            n_tile, _ = _g_keys(m * TM, m * TM + TM, sq, sk, causal, BLOCK_N)
            kb = gl.where(varlen == 0, b, 0)  # the descriptors' batch coordinate (varlen: one packed "batch")
            for i in gl.static_range(NC):
                qi = i * QBUF + tc % QBUF
                mbarrier.wait(q_empty.index(qi), ((tc // QBUF) & 1) ^ 1)
                mbarrier.expect(q_ready.index(qi), desc_q.block_type.nbytes)
                tma.async_copy_global_to_shared(desc_q, [kb, h, q_start + m * TM + i * 64, 0], q_ready.index(qi),
                                                q_smem.index(qi))
            for j in range(n_tile):
                st = (g + j) % STAGES
                mbarrier.wait(kv_empty.index(st), (((g + j) // STAGES) & 1) ^ 1)
                _g_load_kv(desc_k, desc_v, k_smem, v_smem, k_ready, v_ready, st, kb, h, k_start + j * BLOCK_N, True)
            g += n_tile
            tc += 1


@gluon.jit
def fmha_fwd_ws(desc_q, Out, desc_k, desc_v, cu_seqlens_q, cu_seqlens_k,
                stride_ob, stride_oh, stride_os,
                batch, num_heads, seqlen_q, seqlen_k, scale, causal, varlen,
                HEAD_DIM: gl.constexpr, BLOCK_D: gl.constexpr, NC: gl.constexpr, BLOCK_N: gl.constexpr,
                STAGES: gl.constexpr, QBUF: gl.constexpr, CREGS: gl.constexpr, PER_SM: gl.constexpr):
    # PER_SM (programs per SM) is the launcher's: the grid is min(tiles, SMs * PER_SM).
    dtype: gl.constexpr = desc_k.dtype
    q_smem = gl.allocate_shared_memory(dtype, [NC * QBUF] + desc_q.block_type.shape, desc_q.layout)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES] + desc_k.block_type.shape, desc_k.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES] + desc_v.block_type.shape, desc_v.layout)
    q_ready = gl.allocate_shared_memory(gl.int64, [NC * QBUF, 1], mbarrier.MBarrierLayout())
    q_empty = gl.allocate_shared_memory(gl.int64, [NC * QBUF, 1], mbarrier.MBarrierLayout())
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    kv_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(NC * QBUF):
        mbarrier.init(q_ready.index(i), count=1)
        mbarrier.init(q_empty.index(i), count=1)
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(kv_empty.index(i), count=NC)
    # The partitions' argument tuples are written out in each call: Triton 3.6 keeps constexprs
    # only in a tuple built at the call.
    if NC == 1:
        gl.warp_specialize([
            (_ws_consumer, (0, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, Out, cu_seqlens_q,
                            cu_seqlens_k, stride_ob, stride_oh, stride_os, batch, num_heads, seqlen_q, seqlen_k, scale,
                            causal, varlen, HEAD_DIM, BLOCK_D, NC, BLOCK_N, STAGES, QBUF)),
            (_ws_producer, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready,
                            kv_empty, cu_seqlens_q, cu_seqlens_k, batch, num_heads, seqlen_q, seqlen_k, causal,
                            varlen, NC, BLOCK_N, STAGES, QBUF)),
        ], [1], [24])
    else:
        gl.static_assert(NC == 2, "one or two consumer warpgroups")
        gl.warp_specialize([
            (_ws_consumer, (0, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, Out, cu_seqlens_q,
                            cu_seqlens_k, stride_ob, stride_oh, stride_os, batch, num_heads, seqlen_q, seqlen_k, scale,
                            causal, varlen, HEAD_DIM, BLOCK_D, NC, BLOCK_N, STAGES, QBUF)),
            (_ws_consumer, (1, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready, kv_empty, Out, cu_seqlens_q,
                            cu_seqlens_k, stride_ob, stride_oh, stride_os, batch, num_heads, seqlen_q, seqlen_k, scale,
                            causal, varlen, HEAD_DIM, BLOCK_D, NC, BLOCK_N, STAGES, QBUF)),
            (_ws_producer, (desc_q, desc_k, desc_v, q_smem, k_smem, v_smem, q_ready, q_empty, k_ready, v_ready,
                            kv_empty, cu_seqlens_q, cu_seqlens_k, batch, num_heads, seqlen_q, seqlen_k, causal,
                            varlen, NC, BLOCK_N, STAGES, QBUF)),
        ], [4, 1], [CREGS, 24])


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


def _signature_wgmma(dtype):
    return dict(_signature_tma(dtype), STAGES="constexpr")


# Gluon kernel tiles (BLOCK_M, BLOCK_N, num_warps = 4, STAGES), from a lab on an H100
# (2026-11-22, the kernel through Triton's JIT): (64, 128, 4, 2) led at head 64 (512 to 16384
# keys), (64, 64, 4, 3) was next; head 128 keeps BLOCK_N 64 (two slots of K and V are 64 KB).
_WGMMA_TILES_SMALL_D = [(64, 128, 2), (64, 64, 3), (64, 64, 2), (128, 64, 2)]
_WGMMA_TILES_LARGE_D = [(64, 64, 2), (128, 64, 2), (64, 64, 3)]


def _variants_wgmma():
    out = []
    for head_dim in (32, 64, 80, 96, 128):
        block_d = 1 << (head_dim - 1).bit_length()
        for bm, bn, stages in (_WGMMA_TILES_SMALL_D if head_dim <= 64 else _WGMMA_TILES_LARGE_D):
            out.append({"constexprs": {"HEAD_DIM": head_dim, "BLOCK_D": block_d, "BLOCK_M": bm, "BLOCK_N": bn,
                                       "STAGES": stages},
                        "num_warps": 4, "num_stages": 1})
    return out


def _signature_ws(dtype):
    ptr = "*" + dtype + ":16"
    desc = "tensordesc<" + dtype + "[1, 1, BLOCK_N, BLOCK_D]>"
    sig = {"desc_q": "tensordesc<" + dtype + "[1, 1, 64, BLOCK_D]>", "Out": ptr, "desc_k": desc, "desc_v": desc,
           "cu_seqlens_q": "*i32", "cu_seqlens_k": "*i32",
           "stride_ob": "i64:16", "stride_oh": "i64:16", "stride_os": "i64:16",
           "batch": "i32", "num_heads": "i32", "seqlen_q": "i32", "seqlen_k": "i32", "scale": "fp32",
           "causal": "i32", "varlen": "i32"}
    for c in ("HEAD_DIM", "BLOCK_D", "NC", "BLOCK_N", "STAGES", "QBUF", "CREGS", "PER_SM"):
        sig[c] = "constexpr"
    return sig


# Persistent kernel tiles (NC, BLOCK_N, STAGES, QBUF, CREGS, maxnreg, PER_SM), from a lab on an H100
# (2026-11-23, through Triton's JIT): one consumer warpgroup and two programs per SM led at head 64
# (448 TF/s at 1x16x16384x64, where fmha_fwd_wgmma did 422), two consumers sharing K/V at head 128
# (567 at 4x32x4096x128, against 520). maxnreg bounds the registers per thread before the
# partitions trade them: PER_SM programs of 4 * (NC + 1) warps must fit in the 64K registers.
_WS_TILES_SMALL_D = [(1, 128, 2, 2, 240, 128, 2), (2, 128, 3, 2, 240, 168, 1), (1, 64, 3, 2, 240, 128, 2)]
_WS_TILES_LARGE_D = [(2, 128, 2, 1, 240, 168, 1), (2, 64, 3, 2, 240, 168, 1), (1, 64, 2, 2, 240, 128, 2)]


def _variants_ws():
    out = []
    for head_dim in (32, 64, 80, 96, 128):
        block_d = 1 << (head_dim - 1).bit_length()
        for nc, bn, stages, qbuf, cregs, maxnreg, per_sm in (_WS_TILES_SMALL_D if head_dim <= 64
                                                             else _WS_TILES_LARGE_D):
            out.append({"constexprs": {"HEAD_DIM": head_dim, "BLOCK_D": block_d, "NC": nc, "BLOCK_N": bn,
                                       "STAGES": stages, "QBUF": qbuf, "CREGS": cregs, "PER_SM": per_sm},
                        "num_warps": 4, "num_stages": 1, "maxnreg": maxnreg})
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
    # sm_90 (wgmma): the Gluon kernel; also timed by the builder
    "fmha_fwd_wgmma_fp16": {"fn": fmha_fwd_wgmma, "signature": _signature_wgmma("fp16"), "min_arch": 90,
                            "max_arch": 90, "variants": _variants_wgmma()},
    "fmha_fwd_wgmma_bf16": {"fn": fmha_fwd_wgmma, "signature": _signature_wgmma("bf16"), "min_arch": 90,
                            "max_arch": 90, "variants": _variants_wgmma()},
    # sm_90: the persistent, warp-specialized Gluon kernel (its own arguments; a grid of SMs)
    "fmha_fwd_ws_fp16": {"fn": fmha_fwd_ws, "signature": _signature_ws("fp16"), "min_arch": 90, "max_arch": 90,
                         "variants": _variants_ws()},
    "fmha_fwd_ws_bf16": {"fn": fmha_fwd_ws, "signature": _signature_ws("bf16"), "min_arch": 90, "max_arch": 90,
                         "variants": _variants_ws()},
}

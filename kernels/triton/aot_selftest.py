"""kernels/triton/aot_selftest.py - tiny kernels that test kiln's Triton ahead-of-time path.

What it is: kernels whose only job is to let tests/gpu/test_triton_aot.c catch defects of a
generated launcher: `aot_scale` writes y = x * scale with an fp32 `scale` (a float passed as 8
bytes arrives as garbage) and an int64 `offset` after it (so misaligned argument packing shows);
`aot_bigsmem` multiplies two tiles so large that its shared memory (512 KiB) exceeds every
GPU kiln supports, so loading it must fail with an error that names it; `aot_tma_copy` reads
a 2-D fp16 tensor through a TMA descriptor (sm_90) and writes it scaled into a padded fp32
buffer, so a wrong map (strides, box, element type), the zero fill past the tensor's edge, and
the packing of the scalars after the expanded descriptor all show.
What it is not: a kernel any network uses.
"""
import triton
import triton.language as tl


@triton.jit
def aot_scale(x_ptr, y_ptr, n, scale, offset, BLOCK: tl.constexpr):
    # x [n] fp32, y [n] fp32: y[i] = x[i] * scale + offset
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    ok = offs < n
    x = tl.load(x_ptr + offs, mask=ok, other=0.0)
    tl.store(y_ptr + offs, x * scale + offset.to(tl.float32), mask=ok)


@triton.jit
def aot_bigsmem(a_ptr, b_ptr, c_ptr, BLOCK: tl.constexpr, K: tl.constexpr):
    # a [BLOCK, K], b [K, BLOCK], c [BLOCK, BLOCK] fp16, one program: c = a @ b; the operand
    # tiles staged in shared memory take 2 * BLOCK * K * 2 bytes.
    r = tl.arange(0, BLOCK)
    kk = tl.arange(0, K)
    a = tl.load(a_ptr + r[:, None] * K + kk[None, :])
    b = tl.load(b_ptr + kk[:, None] * BLOCK + r[None, :])
    c = tl.dot(a, b)
    tl.store(c_ptr + r[:, None] * BLOCK + r[None, :], c.to(tl.float16))


@triton.jit
def aot_tma_copy(desc_x, y_ptr, ldy, scale, BR: tl.constexpr, BC: tl.constexpr):
    # y [grid_r * BR, ldy] fp32: the block (pid_r, pid_c) of x * scale, zeros past x's edges
    pid_r = tl.program_id(0)
    pid_c = tl.program_id(1)
    x = desc_x.load([pid_r * BR, pid_c * BC])
    r = pid_r * BR + tl.arange(0, BR)
    c = pid_c * BC + tl.arange(0, BC)
    tl.store(y_ptr + r[:, None] * ldy + c[None, :], x.to(tl.float32) * scale)


AOT_KERNELS = {
    "aot_scale": {
        "fn": aot_scale,
        "signature": {"x_ptr": "*fp32:16", "y_ptr": "*fp32:16", "n": "i32", "scale": "fp32",
                      "offset": "i64", "BLOCK": "constexpr"},
        "variants": [
            {"constexprs": {"BLOCK": 128}, "num_warps": 4, "num_stages": 1},
            {"constexprs": {"BLOCK": 256}, "num_warps": 4, "num_stages": 1},
        ],
    },
    "aot_bigsmem": {
        "fn": aot_bigsmem,
        "signature": {"a_ptr": "*fp16:16", "b_ptr": "*fp16:16", "c_ptr": "*fp16:16",
                      "BLOCK": "constexpr", "K": "constexpr"},
        "variants": [
            {"constexprs": {"BLOCK": 16, "K": 8192}, "num_warps": 8, "num_stages": 1},
        ],
    },
    "aot_tma_copy": {
        "fn": aot_tma_copy,
        "signature": {"desc_x": "tensordesc<fp16[BR, BC]>", "y_ptr": "*fp32:16", "ldy": "i32",
                      "scale": "fp32", "BR": "constexpr", "BC": "constexpr"},
        "min_arch": 90,
        "variants": [{"constexprs": {"BR": 32, "BC": 64}, "num_warps": 4, "num_stages": 1}],
    },
}

#!/usr/bin/env python3
"""bench/fmha_lab.py - the FMHA kernel lab: runs kernels/triton/fmha.py through Triton's JIT (no
AoT build needed) over tile configurations, checks each against PyTorch SDPA, times each with
triton.testing.do_bench (median), and prints TFLOP/s next to SDPA's flash and cuDNN backends.
Both kernels: fmha_fwd (plain loads, "ptr") and fmha_fwd_tma (keys and values through TMA
descriptors, sm_90). The configurations that win here become the AoT variants in fmha.py.
Needs a GPU.

usage: python3 bench/fmha_lab.py [--shapes quick|all] [--kernel PATH] [--family ptr|tma|both]
                                 [--configs BM,BN,W,S;...]
  --kernel: another copy of fmha.py (an experiment) instead of kernels/triton/fmha.py;
  --configs: only these tile configurations (default: the whole grid below).
"""
import argparse
import importlib.util
import os
import sys

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.tools.tensor_descriptor import TensorDescriptor

HERE = os.path.dirname(os.path.abspath(__file__))
fmha = None


def load_kernel(path):
    spec = importlib.util.spec_from_file_location("fmha", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

SHAPES = [(8, 32, 512, 64, False), (8, 32, 512, 64, True), (4, 20, 1500, 64, False),
          (4, 32, 4096, 128, False), (1, 16, 16384, 64, False)]
CONFIGS = [(bm, bn, w, s) for bm in (64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)
           if not (bm == 64 and w == 8)]


def launch(q, k, v, o, causal, cfg, family="ptr"):
    bm, bn, w, st = cfg
    b, h, s, d = q.shape
    bd = 1 << (d - 1).bit_length()
    grid = (triton.cdiv(s, bm), b * h, 1)
    dummy = torch.zeros(1, dtype=torch.int32, device=q.device)
    tail = (h, s, s, 1.0 / d ** 0.5, int(causal), 0)
    meta = dict(HEAD_DIM=d, BLOCK_D=bd, BLOCK_M=bm, BLOCK_N=bn, num_warps=w, num_stages=st)
    if family == "tma":  # K, V as [B, H, S, D] descriptors, blocks [1, 1, BLOCK_N, BLOCK_D]
        dk, dv = (TensorDescriptor(t, list(t.shape), list(t.stride()), [1, 1, bn, bd]) for t in (k, v))
        fmha.fmha_fwd_tma[grid](q, o, dk, dv, dummy, dummy, *q.stride()[:3], *o.stride()[:3], *tail, **meta)
        return
    fmha.fmha_fwd[grid](q, k, v, o, dummy, dummy, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
                        *tail, **meta)


def sdpa_time(q, k, v, causal, backend):
    try:
        with sdpa_kernel([backend]):
            return triton.testing.do_bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                           warmup=25, rep=100, return_mode="median")
    except RuntimeError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="all")
    ap.add_argument("--kernel", default=os.path.join(HERE, "..", "kernels", "triton", "fmha.py"))
    ap.add_argument("--configs", default="")
    ap.add_argument("--family", default="both", choices=("ptr", "tma", "both"))
    args = ap.parse_args()
    global fmha, CONFIGS
    fmha = load_kernel(args.kernel)
    if args.configs:
        CONFIGS = [tuple(int(x) for x in c.split(",")) for c in args.configs.split(";") if c]
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))
    torch.manual_seed(0)
    shapes = SHAPES[:2] if args.shapes == "quick" else SHAPES
    print(f"GPU {torch.cuda.get_device_name()}, triton {triton.__version__}, torch {torch.__version__}, kernel {args.kernel}")
    for (b, h, s, d, causal) in shapes:
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.float16) for _ in range(3))
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        flops = 4.0 * b * h * s * s * d / (2 if causal else 1)
        tf = lambda ms: flops / ms / 1e9 if ms else 0.0
        flash, cudnn = sdpa_time(q, k, v, causal, SDPBackend.FLASH_ATTENTION), sdpa_time(q, k, v, causal, SDPBackend.CUDNN_ATTENTION)
        results = []
        families = ("ptr", "tma") if args.family == "both" else (args.family,)
        for fam, cfg in ((f, c) for f in families for c in CONFIGS):
            o = torch.full_like(q, float("nan"))
            try:
                launch(q, k, v, o, causal, cfg, fam)
                torch.cuda.synchronize()
            except Exception as e:  # out of resources etc.
                continue
            err = (o.float() - ref.float()).abs().max().item()
            if not err < 2e-2:
                print(f"  {fam} config {cfg}: WRONG (max err {err})")
                continue
            ms = triton.testing.do_bench(lambda: launch(q, k, v, o, causal, cfg, fam), warmup=25, rep=100,
                                         return_mode="median")
            results.append((ms, fam + " " + str(cfg), err))
        results.sort()
        best = min(t for t in (flash, cudnn) if t)
        print(f"({b},{h},{s},{d}) {'causal' if causal else 'full'}: flash {tf(flash):.0f} cudnn {tf(cudnn):.0f} TF/s")
        for ms, cfg, err in results[:4]:
            print(f"   kiln {cfg}: {ms:.4f} ms {tf(ms):.0f} TF/s  ({best / ms:.2f}x best peer), err {err:.1e}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

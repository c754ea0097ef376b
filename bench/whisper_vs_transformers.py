#!/usr/bin/env python3
"""bench/whisper_vs_transformers.py - kiln's Whisper engines next to transformers (fp16, SDPA) on
the same GPU, same random-weight large-v3-geometry checkpoint, in one run.

Makes the checkpoint with transformers from a fixed seed (d_model 1280, 32+32 layers, 20 heads,
128 mel bins; the 51865-token multilingual vocabulary, since the tokenizer files at hand are
that one's), builds kiln's fp16 engines for each batch size (`kiln build whisper --max-batch B`, so the
planned memory is that batch's), times kiln with build/whisper_bench (B random 30 s windows
decoded as one batch, encoder + exactly `steps` greedy tokens each) and transformers' generate()
(min_new_tokens = max_new_tokens = steps, greedy) at the same batch sizes, and prints one table:
wall time, per window, RTF, decode tokens/s, kiln's step time against the memory-bandwidth
floor, GPU memory and the ratios.

usage: python3 bench/whisper_vs_transformers.py --kiln build/kiln --bench build/whisper_bench
       --tokenizer ../shared/data/whisper/tokenizer-hf [--steps 100] [--batches 1,4,16]
       [--build-flags '--weight-only int8']
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration


def make_checkpoint(path, tokenizer_dir):
    if os.path.exists(os.path.join(path, "model.safetensors")):
        with open(os.path.join(path, "config.json")) as f:
            if json.load(f).get("encoder_layers") == 32:
                return
        shutil.rmtree(path)
    with open(os.path.join(tokenizer_dir, "config.json")) as f:
        base = json.load(f)
    for alias in ("num_hidden_layers", "hidden_size", "num_attention_heads"):  # they would override below
        base.pop(alias, None)
    base.update(d_model=1280, encoder_layers=32, decoder_layers=32, encoder_attention_heads=20,
                decoder_attention_heads=20, encoder_ffn_dim=5120, decoder_ffn_dim=5120, num_mel_bins=128)
    torch.manual_seed(0)
    config = WhisperConfig(**base)
    assert (config.encoder_layers, config.decoder_layers, config.d_model) == (32, 32, 1280), config
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising 1.5B weights on the GPU is fast
        model = WhisperForConditionalGeneration(config).half()
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(tokenizer_dir):
        if f not in ("config.json",) and not os.path.exists(os.path.join(path, f)):
            shutil.copy(os.path.join(tokenizer_dir, f), path)


def time_transformers(path, batch, steps, reps=3):
    model = WhisperForConditionalGeneration.from_pretrained(path, torch_dtype=torch.float16,
                                                            attn_implementation="sdpa").cuda().eval()
    feats = torch.randn(batch, 128, 3000, device="cuda", dtype=torch.float16)
    torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):
            torch.cuda.synchronize()
            t = time.perf_counter()
            # no language/task: a random checkpoint's generation config has no language table
            model.generate(feats, min_new_tokens=steps, max_new_tokens=steps, do_sample=False, num_beams=1)
            torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - t) * 1e3)
    peak = torch.cuda.max_memory_allocated()
    del model
    torch.cuda.empty_cache()
    return sorted(times)[len(times) // 2], peak


def build_engines(args, ckpt, batch):
    tag = re.sub(r"[^a-z0-9]+", "-", args.build_flags.lower()).strip("-")
    out = os.path.join(args.workdir, f"kiln-b{batch}" + (f"-{tag}" if tag else ""))
    if os.path.exists(os.path.join(out, "whisper.json")) and not args.rebuild:
        return out
    t = time.time()
    cmd = [args.kiln, "build", "whisper", "--checkpoint", ckpt, "--dtype", "fp16", "--max-batch", str(batch),
           "--timing-cache", os.path.join(args.workdir, "timing.cache"), "-o", out] + args.build_flags.split()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        sys.exit("kiln build whisper failed:\n" + p.stderr[-3000:])
    print(f"kiln build whisper --max-batch {batch} {args.build_flags}: {time.time() - t:.0f} s", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--bench", default="build/whisper_bench")
    ap.add_argument("--tokenizer", default="../shared/data/whisper/tokenizer-hf")
    ap.add_argument("--workdir", default="/tmp/kiln-whisper-bench")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--build-flags", default="", help="extra `kiln build whisper` flags, e.g. '--weight-only int8'")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-transformers", action="store_true")
    args = ap.parse_args()
    ckpt = os.path.join(args.workdir, "ckpt")
    os.makedirs(args.workdir, exist_ok=True)
    t = time.time()
    make_checkpoint(ckpt, args.tokenizer)
    print(f"checkpoint ready in {time.time() - t:.0f} s", flush=True)
    rows = []
    for batch in [int(b) for b in args.batches.split(",")]:
        engines = build_engines(args, ckpt, batch)
        p = subprocess.run([args.bench, engines, "--batch", str(batch), "--steps", str(args.steps)],
                           capture_output=True, text=True)
        if p.returncode:
            sys.exit("whisper_bench failed:\n" + p.stderr[-3000:])
        print(p.stdout.strip(), flush=True)
        k = dict(re.findall(r"(\w+) (-?[\d.]+)", p.stdout))
        k_ms, k_mib = float(k["ms_per_batch"]), int(k["planned_bytes"]) / 2**20
        row = (f"| kiln fp16 {args.build_flags} | {batch} | {k_ms:.1f} ms | {k_ms / batch:.1f} ms | "
               f"{k_ms / batch / 30000:.5f} | {float(k['tokens_per_s']):.0f} | {float(k['ms_per_step']):.3f} ms "
               f"(floor {float(k['floor_ms']):.3f} ms, {float(k['step_over_floor']):.2f}x) | "
               f"{float(k['encoder_ms']):.1f} ms | {k_mib:.0f} MiB planned, "
               f"{int(k['device_used_delta_bytes']) / 2**20:.0f} MiB in use |")
        if not args.no_transformers:
            ms, peak = time_transformers(ckpt, batch, args.steps)
            row += (f"\n| transformers fp16 SDPA | {batch} | {ms:.1f} ms | {ms / batch:.1f} ms | "
                    f"{ms / batch / 30000:.5f} | {batch * args.steps / (ms / 1e3):.0f} | | | "
                    f"{peak / 2**20:.0f} MiB peak allocated |"
                    f"\n| ratio (transformers / kiln) | {batch} | {ms / k_ms:.2f}x faster | | | | | | "
                    f"memory {k_mib / (peak / 2**20):.2f}x |")
        rows.append(row)
        print(row, flush=True)
    print("\n== Whisper large-v3 geometry (random weights), fp16, "
          f"{args.steps} greedy steps per 30 s window; GPU {torch.cuda.get_device_name()}")
    print("| system | batch | wall time | per window | RTF | decode tokens/s | decoding step | encoder | GPU memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/whisper_vs_transformers.py - kiln's Whisper engines next to transformers (fp16, SDPA) on
the same GPU, same random-weight large-v3-geometry checkpoint, in one run.

Makes the checkpoint with transformers from a fixed seed (d_model 1280, 32+32 layers, 20 heads,
128 mel bins; the 51865-token multilingual vocabulary, since the tokenizer files at hand are
that one's), builds kiln's fp16 engines (`kiln build whisper`), times kiln with
build/whisper_bench (random 30 s windows, encoder + a fixed number of greedy steps, one window at
a time) and transformers' generate() (min_new_tokens = max_new_tokens = steps, greedy) at batch 1
and 4, and prints wall time per window, RTF, GPU memory and the ratios.

usage: python3 bench/whisper_vs_transformers.py --kiln build/kiln --bench build/whisper_bench
       --tokenizer ../shared/data/whisper/tokenizer-hf [--steps 100] [--windows 4]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--bench", default="build/whisper_bench")
    ap.add_argument("--tokenizer", default="../shared/data/whisper/tokenizer-hf")
    ap.add_argument("--workdir", default="/tmp/kiln-whisper-bench")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--windows", type=int, default=4)
    args = ap.parse_args()
    ckpt, engines = os.path.join(args.workdir, "ckpt"), os.path.join(args.workdir, "kiln")
    os.makedirs(args.workdir, exist_ok=True)
    t = time.time()
    make_checkpoint(ckpt, args.tokenizer)
    print(f"checkpoint ready in {time.time() - t:.0f} s", flush=True)
    t = time.time()
    p = subprocess.run([args.kiln, "build", "whisper", "--checkpoint", ckpt, "--dtype", "fp16", "--timing-cache",
                        os.path.join(args.workdir, "timing.cache"), "-o", engines], capture_output=True, text=True)
    if p.returncode:
        sys.exit("kiln build whisper failed:\n" + p.stderr[-3000:])
    print(f"kiln build whisper: {time.time() - t:.0f} s", flush=True)
    p = subprocess.run([args.bench, engines, "--windows", str(args.windows), "--steps", str(args.steps)],
                       capture_output=True, text=True)
    if p.returncode:
        sys.exit("whisper_bench failed:\n" + p.stderr[-3000:])
    print(p.stdout.strip(), flush=True)
    k = dict(re.findall(r"(\w+) (-?[\d.]+)", p.stdout))
    k_win = float(k["ms_per_window"])
    rows = [f"kiln fp16, one window at a time: {k_win:.1f} ms per window (encoder {float(k['encoder_ms']):.1f} ms, "
            f"{float(k['ms_per_step']):.3f} ms per decoding step), RTF {k_win / 30000:.5f}, "
            f"planned GPU bytes {int(k['planned_bytes']) / 2**20:.0f} MiB, device memory in use "
            f"{int(k['device_used_delta_bytes']) / 2**20:.0f} MiB"]
    for batch in (1, args.windows):
        ms, peak = time_transformers(ckpt, batch, args.steps)
        per_win = ms / batch
        rows.append(f"transformers fp16 SDPA batch {batch}: {ms:.1f} ms for {batch} window(s) x {args.steps} tokens "
                    f"({per_win:.1f} ms per window, RTF {per_win / 30000:.5f}), peak allocated {peak / 2**20:.0f} MiB; "
                    f"kiln per window is {per_win / k_win:.2f}x faster")
        print(rows[-1], flush=True)
    print("\n== Whisper large-v3 geometry (random weights), fp16, "
          f"{args.steps} greedy steps per 30 s window; GPU {torch.cuda.get_device_name()}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/fw_random_bench.py - faster-whisper's engine (CTranslate2) on the random-weight checkpoint
of bench/whisper_vs_transformers.py: the same work kiln's whisper_bench and transformers do there
(B random 30 s windows, encoder + a fixed number of greedy decoding steps), timed on the GPU.
Run by whisper_vs_transformers.py --faster-whisper in a subprocess (CTranslate2 may need
LD_LIBRARY_PATH set for its cuBLAS, see docs/peers.md); prints one JSON line.

usage: python3 bench/fw_random_bench.py CKPT CT2_DIR --batches 1,4,16 --steps 100
       [--compute-type float16] [--reps 3]

  - converts CKPT (Hugging Face) to CT2_DIR once (ctranslate2's TransformersConverter, float16),
    unless CT2_DIR/model.bin exists;
  - per batch: ctranslate2.models.Whisper.generate on B random [n_mels, 3000] windows (seeded),
    prompt <|startoftranscript|> (transformers' generate() on a checkpoint without a language
    table starts from it too), greedy, <|endoftext|> suppressed and max_length = 2 x steps + 1
    (CTranslate2's Whisper decodes at most max_length // 2 tokens, as openai-whisper's sample_len
    = n_ctx // 2: seen with 4.8.5, 101 -> 50, 201 -> 100 tokens), so every row decodes exactly
    `steps` tokens (checked); median wall ms of --reps after one warm-up; the GPU memory the
    process holds (NVML, CUDA context included) after the runs.
"""
import argparse
import json
import os
import sys
import time

import numpy as np


def nvml_process_bytes():
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid == os.getpid():
                return int(p.usedGpuMemory or 0)
    except Exception:  # noqa: BLE001 - memory is optional
        return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("ct2_dir")
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--compute-type", default="float16")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    import ctranslate2

    t0 = time.time()
    if not os.path.exists(os.path.join(args.ct2_dir, "model.bin")):
        ctranslate2.converters.TransformersConverter(args.ckpt).convert(args.ct2_dir, quantization="float16", force=True)
    convert_s = time.time() - t0
    with open(os.path.join(args.ckpt, "config.json")) as f:
        cfg = json.load(f)
    sot, eot, n_mels = cfg.get("decoder_start_token_id", 50258), cfg.get("eos_token_id", 50257), cfg["num_mel_bins"]
    model = ctranslate2.models.Whisper(args.ct2_dir, device="cuda", compute_type=args.compute_type)
    rng = np.random.default_rng(0)
    out = {"ctranslate2": ctranslate2.__version__, "compute_type": args.compute_type, "convert_s": round(convert_s, 1),
           "runs": {}}
    for b in [int(x) for x in args.batches.split(",")]:
        feats = ctranslate2.StorageView.from_array(rng.standard_normal((b, n_mels, 3000)).astype(np.float32))
        times, n_tokens = [], None
        for i in range(args.reps + 1):
            t = time.perf_counter()
            res = model.generate(feats, [[sot]] * b, beam_size=1, max_length=2 * args.steps + 1, suppress_blank=False,
                                 suppress_tokens=[eot])
            times.append((time.perf_counter() - t) * 1e3)
            n_tokens = [len(r.sequences_ids[0]) for r in res]
        ms = sorted(times[1:])[len(times[1:]) // 2]
        out["runs"][str(b)] = {"ms": ms, "tokens": n_tokens}
        print(f"faster-whisper batch {b}: {ms:.1f} ms, tokens per row {sorted(set(n_tokens))}", file=sys.stderr,
              flush=True)
    out["process_bytes"] = nvml_process_bytes()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

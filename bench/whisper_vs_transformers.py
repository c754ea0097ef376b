#!/usr/bin/env python3
"""bench/whisper_vs_transformers.py - kiln's Whisper engines in several quantization configurations
next to transformers (fp16, SDPA) on the same GPU, same random-weight large-v3-geometry
checkpoint, in one run: the quantization table of kiln issue 5.

Configurations (--configs, comma-separated; each a '+'-joined set of parts, mapped to `kiln build
whisper` flags): fp16 (none: fp16 weights and KV cache), int8 (--weight-only int8), int4
(--weight-only int4), int4g64 (--weight-only int4 --group-size 64), kv8 (--kv-cache int8); e.g.
fp16,int8,int4,fp16+kv8,int8+kv8,int4+kv8. --build-flags are added to every configuration, and
--bench-flags to every whisper_bench run (e.g. --bench-flags=--stream-encoder-weights: the encoder's
weights streamed from host memory, so the memory columns count its ring instead of its weights;
the engines are the same, so a run with it reuses those of a run without).

What it does:
  - makes the checkpoint with transformers from a fixed seed (d_model 1280, 32+32 layers, 20
    heads, 128 mel bins; the 51865-token multilingual vocabulary, since the tokenizer files at
    hand are that one's; transformers' default init, std 0.02), or takes --checkpoint;
  - builds each configuration once, at the largest batch (`kiln build whisper --max-batch 16`),
    and times batches 1, 4 and 16 on those engines with bench/whisper_bench.c (B random 30 s
    windows as one batch, encoder + exactly --steps greedy tokens each; step time against the
    memory-bandwidth floor: the bytes a step reads, from the engine, over the measured device
    bandwidth). A configuration whose build fails is a row saying so, with the end of kiln's
    error output, and the others go on; so is a failed run;
  - GPU memory: kiln's runtime allocates for the engines' --max-batch (its KV caches, buffers and
    the engines' activation arenas are sized for it, whatever batch runs), so the memory of a
    max-16 engine says nothing about batch 1 or 4. Memory columns are therefore taken from
    engines built for that batch: at the largest batch from the timing run, at each
    --memory-batches (e.g. 4; default none) from an extra `--max-batch B` build run once (planned
    bytes = kiln_whisper_device_bytes; in use = cudaMemGetInfo's rise over whisper_bench's run,
    sampled after each repetition); other batches show none. A run with --batches 4 alone gives
    batch 4's memory (and its timings on max-4 engines) without the max-16 builds;
  - logit agreement: each configuration's engines decode one forced sequence (<|startoftranscript|>
    and --agreement-steps seeded random text tokens, one step at a time through the KV cache,
    `whisper_bench --dump-logits`) on the first random window; normalized mean squared error of
    the logits against the fp16 configuration's and the fraction of steps whose argmax agrees.
    Same random checkpoint (not a larger init std); the fp16 logits' std and median top1-top2
    margin are printed with the table to judge how flat they are;
  - transformers' generate() (min_new_tokens = max_new_tokens = steps, greedy) once per batch;
  - prints one markdown table (and writes it, with its notes, to --output; the raw numbers to
    WORKDIR/results.json).

Engines are kept in WORKDIR/engines/<config>-max<B> and reused (whisper.json present) unless
--rebuild; --build-only builds and stops. Transformers runs first, then each configuration is
built and measured in turn and the table (--output) rewritten after each one, so a run stopped
by a time limit leaves the rows of the configurations it finished.

usage: python3 bench/whisper_vs_transformers.py --kiln build/kiln --bench build/whisper_bench
       --tokenizer ../shared/data/whisper/tokenizer-hf [--configs fp16,int8,...] [--steps 100]
       [--batches 1,4,16] [--memory-batches 4] [--output table.md] [--build-only]
       [--no-transformers] [--checkpoint DIR] [--workdir DIR]
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

CONFIG_PARTS = {
    "fp16": [],
    "int8": ["--weight-only", "int8"],
    "int4": ["--weight-only", "int4"],
    "int4g64": ["--weight-only", "int4", "--group-size", "64"],
    "kv8": ["--kv-cache", "int8"],
}
REFERENCE = "fp16"  # the configuration the others' logits are compared with


def parse_configs(text, extra_flags):
    """'fp16,int8+kv8' -> [(name, flags)]; ValueError on an unknown part or a repeated name."""
    configs = []
    for name in [c.strip() for c in text.split(",") if c.strip()]:
        flags = []
        for part in name.split("+"):
            if part not in CONFIG_PARTS:
                raise ValueError(f"unknown configuration part '{part}' in '{name}' (parts: {', '.join(CONFIG_PARTS)})")
            flags += CONFIG_PARTS[part]
        if name in [c[0] for c in configs]:
            raise ValueError(f"configuration '{name}' given twice")
        configs.append((name, flags + extra_flags))
    if not configs:
        raise ValueError("no configurations")
    return configs


def parse_ints(text, what):
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"{what}: comma-separated positive integers, got '{text}'")
    if any(v < 1 for v in values):
        raise ValueError(f"{what}: comma-separated positive integers, got '{text}'")
    return values


def error_tail(text, lines=3, chars=300):
    """The end of a program's error output, for a markdown table cell."""
    tail = [l.strip() for l in (text or "").strip().splitlines() if l.strip()][-lines:]
    cell = " / ".join(tail) or "no error output"
    if len(cell) > chars:
        cell = "..." + cell[-chars:]
    return cell.replace("|", "\\|")


def run(cmd, timeout):
    """(returncode, stdout, stderr); a timeout or a missing program is a failure, not an exception."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return -1, "", out + f"\ntimed out after {timeout} s"
    except OSError as e:
        return -1, "", f"cannot run {cmd[0]}: {e}"


def make_checkpoint(path, tokenizer_dir):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

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
    """(median ms of generate(), peak allocated bytes or None): fp16 SDPA on the GPU, fp32 on the
    CPU when there is none (a smoke test of this script, not a measurement)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    cuda = torch.cuda.is_available()
    dev, dtype = ("cuda", torch.float16) if cuda else ("cpu", torch.float32)
    model = WhisperForConditionalGeneration.from_pretrained(path, torch_dtype=dtype,
                                                            attn_implementation="sdpa").to(dev).eval()
    feats = torch.randn(batch, model.config.num_mel_bins, 3000, device=dev, dtype=dtype)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            # no language/task: a random checkpoint's generation config has no language table
            model.generate(feats, min_new_tokens=steps, max_new_tokens=steps, do_sample=False, num_beams=1)
            if cuda:
                torch.cuda.synchronize()
            if i:
                times.append((time.perf_counter() - t) * 1e3)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    del model
    if cuda:
        torch.cuda.empty_cache()
    return sorted(times)[len(times) // 2], peak


def time_faster_whisper(args, ckpt, batches):
    """{batch: {"ms": ...} or an error string} from bench/fw_random_bench.py (subprocess)."""
    env = dict(os.environ)
    if args.fw_python_path:
        env["PYTHONPATH"] = args.fw_python_path + ":" + env.get("PYTHONPATH", "")
    if args.fw_lib_dir:
        env["LD_LIBRARY_PATH"] = os.path.abspath(args.fw_lib_dir) + ":" + env.get("LD_LIBRARY_PATH", "")
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fw_random_bench.py"), ckpt,
           os.path.join(args.workdir, "ct2"), "--batches", ",".join(map(str, batches)), "--steps", str(args.steps)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.bench_timeout * 2, env=env)
    except subprocess.TimeoutExpired:
        return {b: "faster-whisper timed out" for b in batches}
    sys.stderr.write(p.stderr[-2000:])
    if p.returncode != 0 or not p.stdout.strip():
        return {b: "faster-whisper failed: " + error_tail(p.stderr, lines=1, chars=150) for b in batches}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    res = {}
    for b in batches:
        r = out["runs"].get(str(b))
        if r and all(t == args.steps for t in r["tokens"]):
            res[b] = {"ms": r["ms"]}
        else:
            res[b] = "faster-whisper decoded %s tokens, not %d" % (r and sorted(set(r["tokens"])), args.steps)
    return res


def engine_dir(args, name, max_batch):
    return os.path.join(args.workdir, "engines", re.sub(r"[^a-z0-9]+", "-", name.lower()) + f"-max{max_batch}")


def build(args, ckpt, name, flags, max_batch):
    """The engine folder, or (None, error text)."""
    out = engine_dir(args, name, max_batch)
    if os.path.exists(os.path.join(out, "whisper.json")) and not args.rebuild:
        print(f"[{name}] reusing {out}", flush=True)
        return out, None
    cmd = [args.kiln, "build", "whisper", "--checkpoint", ckpt, "--dtype", args.dtype, "--max-batch", str(max_batch),
           "--timing-cache", os.path.join(args.workdir, "timing.cache"), "-o", out] + flags
    os.makedirs(os.path.dirname(out), exist_ok=True)
    t = time.time()
    rc, _, err = run(cmd, args.build_timeout)
    if rc:
        print(f"[{name}] kiln build whisper --max-batch {max_batch} FAILED ({' '.join(flags) or 'no flags'}):\n"
              + err[-3000:], flush=True)
        shutil.rmtree(out, ignore_errors=True)  # no half-written folder for the next call to trust
        return None, "build failed: " + error_tail(err)
    print(f"[{name}] kiln build whisper --max-batch {max_batch} {' '.join(flags)}: {time.time() - t:.0f} s", flush=True)
    return out, None


def bench(args, name, engines, batch, reps=None):
    """whisper_bench's figures as a dict of floats, or (None, error text)."""
    cmd = [args.bench, engines, "--batch", str(batch), "--steps", str(args.steps)] + args.bench_flags.split()
    if reps:
        cmd += ["--reps", str(reps)]
    rc, out, err = run(cmd, args.bench_timeout)
    if rc:
        print(f"[{name}] whisper_bench --batch {batch} FAILED:\n" + (out + err)[-3000:], flush=True)
        return None, "whisper_bench failed: " + error_tail(err)
    print(f"[{name}] " + out.strip(), flush=True)
    k = {key: float(v) for key, v in re.findall(r"(\w+) (-?[\d.]+)", out)}
    missing = [key for key in ("ms_per_batch", "ms_per_step", "tokens_per_s", "floor_ms", "planned_bytes")
               if key not in k]
    if missing:
        return None, "whisper_bench printed no " + ", ".join(missing)
    return k, None


def dump_logits(args, name, engines):
    path = os.path.join(args.workdir, "logits", re.sub(r"[^a-z0-9]+", "-", name.lower()) + ".npy")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    rc, out, err = run([args.bench, engines, "--steps", str(args.agreement_steps), "--dump-logits", path],
                       args.bench_timeout)
    if rc:
        print(f"[{name}] whisper_bench --dump-logits FAILED:\n" + (out + err)[-3000:], flush=True)
        return None, "logits failed: " + error_tail(err)
    return path, None


def agreement(path, ref_path):
    """nmse of the logits against the reference's, fraction of steps with the same argmax."""
    import numpy as np

    x, r = np.load(path).astype(np.float64), np.load(ref_path).astype(np.float64)
    if x.shape != r.shape:
        raise ValueError(f"logits {x.shape} vs reference {r.shape}")
    nmse = float(((x - r) ** 2).sum() / max((r ** 2).sum(), 1e-30))
    return nmse, float((x.argmax(axis=1) == r.argmax(axis=1)).mean())


def flatness(ref_path):
    """The reference logits' std (per step, median) and median top1-top2 margin."""
    import numpy as np

    r = np.load(ref_path).astype(np.float64)
    top = np.sort(r, axis=1)[:, -2:]
    return float(np.median(r.std(axis=1))), float(np.median(top[:, 1] - top[:, 0]))


def num(v):
    """1987 for large values, 1.34 for small ones (CPU smoke runs)."""
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def mib(b):
    return b / 2**20


def fmt_memory(m):
    if m is None:
        return "—"
    if isinstance(m, str):
        return m
    if m["planned_bytes"] <= 0:
        return "n/a (CPU engines)"
    return f"{mib(m['planned_bytes']):.0f} / {mib(m['device_used_delta_bytes']):.0f}"


def table_rows(configs, batches, results, tf, fw, agree):
    """Markdown rows: one per (configuration, batch), or one per configuration that did not build."""
    rows = []
    for name, _ in configs:
        r = results[name]
        a = agree.get(name)
        if isinstance(a, str):
            a_cells = [a, ""]
        elif a is None:
            a_cells = ["—", "—"]
        elif name == REFERENCE:
            a_cells = ["(reference)", "(reference)"]
        else:
            a_cells = [f"{a[0]:.2e}", f"{100 * a[1]:.1f}%"]
        if r.get("error"):
            rows.append(f"| {name} | all | {r['error']} |" + " |" * 13 + f" {a_cells[0]} | {a_cells[1]} |")
            continue
        for b in batches:
            k, mem = r["runs"].get(b), r["memory"].get(b)
            t = tf.get(b)
            t_ms = t_mem = "—"
            if isinstance(t, str):
                t_ms = t
            elif t:
                t_ms = f"{t['ms']:.1f}"
                t_mem = f"{mib(t['peak_bytes']):.0f}" if t["peak_bytes"] else "n/a (CPU)"
            f = fw.get(b)
            f_ms = f if isinstance(f, str) else (f"{f['ms']:.1f}" if f else "—")
            if isinstance(k, str):
                rows.append(f"| {name} | {b} | {k} |" + " |" * 6 + f" {fmt_memory(mem)} | {t_ms} | {t_mem} | | |"
                            f" {f_ms} | | {a_cells[0]} | {a_cells[1]} |")
                continue
            f_speed = f"{f['ms'] / k['ms_per_batch']:.2f}x" if isinstance(f, dict) else ""
            speed = f"{t['ms'] / k['ms_per_batch']:.2f}x" if isinstance(t, dict) else ""
            ratio = ""
            if isinstance(t, dict) and t["peak_bytes"] and isinstance(mem, dict) and mem["planned_bytes"] > 0:
                ratio = f"{mem['planned_bytes'] / t['peak_bytes']:.2f}x"
            floor = f"{k['floor_ms']:.3f}" if k["floor_ms"] > 0 else "n/a"
            over = f"{k['step_over_floor']:.2f}x" if k["floor_ms"] > 0 else "n/a"
            enc = f"{k['encoder_ms']:.1f}" if "encoder_ms" in k else "n/a"
            if k.get("dense_gemm_tflops", 0) > 0:
                enc += f" ({k['encoder_tflops']:.0f} TF/s, {k['encoder_over_gemm']:.2f}x of {k['dense_gemm_tflops']:.0f})"
            rows.append(f"| {name} | {b} | {k['ms_per_batch']:.1f} | {k['ms_per_batch'] / b / 30000:.5f} | "
                        f"{num(k['tokens_per_s'])} | {k['ms_per_step']:.3f} | {floor} | {over} | {enc} | {fmt_memory(mem)} | "
                        f"{t_ms} | {t_mem} | {speed} | {ratio} | {f_ms} | {f_speed} | {a_cells[0]} | {a_cells[1]} |")
    return rows


HEADER = ("| config | batch | kiln wall ms | RTF | decode tokens/s | step ms | floor ms | step/floor | "
          "encoder ms (TFLOP/s, share of the dense fp16 GEMM rate) | "
          "kiln GPU MiB planned / in use | transformers ms | transformers MiB (peak alloc.) | speed (transformers / kiln) | "
          "memory (kiln / transformers) | faster-whisper ms | speed (faster-whisper / kiln) | logits nmse vs fp16 | "
          "argmax agreement |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def device_name():
    try:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (CPU engines)"
    except ImportError:
        return "unknown (no torch)"


def tf_cuda():
    import torch

    return torch.cuda.is_available()


def commit():
    rc, out, _ = run(["git", "rev-parse", "--short", "HEAD"], 10)
    return out.strip() if rc == 0 else "unknown"


def compute_agreement(args, configs, results, agree):
    """Fills agree[name] for every configuration whose logits are in; returns the note line."""
    if not args.agreement_steps:
        return "logit agreement off (--agreement-steps 0)"
    ref = results.get(REFERENCE, {}).get("logits")
    ref_pending = REFERENCE in [n for n, _ in configs] and REFERENCE not in results  # runs later
    for name, _ in configs:
        r = results.get(name)
        if not r or name in agree or r.get("error") or "logits" not in r:
            continue
        if not ref:
            if not ref_pending:
                agree[name] = f"no {REFERENCE} reference"
            continue
        try:
            agree[name] = agreement(r["logits"], ref)
        except (OSError, ValueError) as e:
            agree[name] = error_tail(str(e))
    note = (f"logit agreement: {args.agreement_steps + 1} decoder steps of one window (forced: <|startoftranscript|> + "
            f"seeded random text tokens, the same for every engine), batch 1, against the {REFERENCE} configuration's "
            "logits on the same checkpoint")
    if ref:
        std, margin = flatness(ref)
        note += (f"; the {REFERENCE} logits have std {std:.3g} per step and a median top1-top2 margin of {margin:.3g} "
                 "(argmax agreement says little where that margin is small against the quantization error)")
    return note


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--bench", default="build/whisper_bench")
    ap.add_argument("--tokenizer", default="../shared/data/whisper/tokenizer-hf")
    ap.add_argument("--checkpoint", help="an existing checkpoint folder instead of the random large-v3 one")
    ap.add_argument("--workdir", default="/tmp/kiln-whisper-bench")
    ap.add_argument("--configs", default="fp16,int8,int4,fp16+kv8,int8+kv8,int4+kv8")
    ap.add_argument("--dtype", default="fp16", help="kiln build whisper --dtype (default fp16)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--memory-batches", default="",
                    help="batches below the largest whose memory is measured on engines built for them, e.g. 4 "
                         "(default none: each is one more build per configuration)")
    ap.add_argument("--agreement-steps", type=int, default=100, help="forced tokens for the logit agreement (0: off)")
    ap.add_argument("--build-flags", default="", help="extra `kiln build whisper` flags for every configuration")
    ap.add_argument("--bench-flags", default="", help="extra whisper_bench flags for every run (e.g. "
                    "--bench-flags=--stream-encoder-weights)")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--build-only", action="store_true", help="make the checkpoint and build the engines, then stop")
    ap.add_argument("--no-transformers", action="store_true")
    ap.add_argument("--faster-whisper", action="store_true",
                    help="also time faster-whisper (CTranslate2, float16) on the same checkpoint: "
                         "bench/fw_random_bench.py in a subprocess (converts the checkpoint to WORKDIR/ct2 once)")
    ap.add_argument("--fw-python-path", default="", help="PYTHONPATH for that subprocess (where ctranslate2 is)")
    ap.add_argument("--fw-lib-dir", default="", help="prepended to its LD_LIBRARY_PATH (cuBLAS 12 shim, docs/peers.md)")
    ap.add_argument("--build-timeout", type=int, default=300)
    ap.add_argument("--bench-timeout", type=int, default=300)
    ap.add_argument("--output", help="also write the table (with its notes) to this file, rewritten after each "
                                     "configuration")
    args = ap.parse_args()
    try:
        configs = parse_configs(args.configs, args.build_flags.split())
        batches = parse_ints(args.batches, "--batches")
        mem_batches = [b for b in parse_ints(args.memory_batches, "--memory-batches") if b < batches[-1]]
    except ValueError as e:
        ap.error(str(e))
    if not 0 <= args.agreement_steps < 448 or args.steps < 1:
        ap.error("--steps >= 1 and 0 <= --agreement-steps < 448")
    max_b = batches[-1]
    os.makedirs(args.workdir, exist_ok=True)
    t0 = time.time()
    ckpt = args.checkpoint
    if not ckpt:
        ckpt = os.path.join(args.workdir, "ckpt")
        make_checkpoint(ckpt, args.tokenizer)
        print(f"checkpoint ready in {time.time() - t0:.0f} s", flush=True)

    # transformers first: each configuration's rows are complete (ratios included) as soon as it
    # is measured, and the table is rewritten then, so a run cut short still leaves its rows
    tf = {}
    if not args.no_transformers and not args.build_only:
        for b in batches:
            try:
                ms, peak = time_transformers(ckpt, b, args.steps)
                tf[b] = {"ms": ms, "peak_bytes": peak}
                print(f"transformers batch {b}: {ms:.1f} ms, peak {mib(peak or 0):.0f} MiB", flush=True)
            except Exception as e:  # noqa: BLE001 - any failure (OOM, CUDA) is a cell of the table
                print(f"transformers batch {b} FAILED: {e!r}", flush=True)
                tf[b] = "transformers failed: " + error_tail(repr(e), lines=1, chars=150)

    fw = {}
    if args.faster_whisper and not args.build_only:
        fw = time_faster_whisper(args, ckpt, batches)

    results, agree = {}, {}
    for name, flags in configs:
        r = results[name] = {"flags": flags, "runs": {}, "memory": {}, "engines": {}}
        out, err = build(args, ckpt, name, flags, max_b)
        if err:
            r["error"] = err
        else:
            r["engines"][max_b] = out
            for b in mem_batches:
                out, err = build(args, ckpt, name, flags, b)
                r["engines"][b] = out
                if err:
                    r["memory"][b] = err
        if args.build_only or r.get("error"):
            continue
        for b in batches:
            k, err = bench(args, name, r["engines"][max_b], b)
            r["runs"][b] = err or k
            if b == max_b:
                r["memory"][b] = err or k
        for b in mem_batches:
            if r["engines"].get(b):
                k, err = bench(args, name, r["engines"][b], b, reps=1)
                r["memory"][b] = err or k
        if args.agreement_steps:
            path, err = dump_logits(args, name, r["engines"][max_b])
            r["logits"] = path
            if err:
                agree[name] = err
        write_table(args, configs, batches, mem_batches, ckpt, results, tf, fw, agree, final=False)
    if args.build_only:
        failed = [n for n, r in results.items() if r.get("error")]
        print(f"built in {time.time() - t0:.0f} s; failed: {', '.join(failed) or 'none'}")
        return 0
    write_table(args, configs, batches, mem_batches, ckpt, results, tf, fw, agree, final=True)
    failures = sum(1 for r in results.values() if r.get("error")) + sum(
        1 for r in results.values() for b, v in list(r["runs"].items()) + [(b, r["memory"].get(b)) for b in mem_batches]
        if isinstance(v, str))
    print(f"{failures} failed configuration(s) or run(s): see the rows" if failures else "all configurations ran")
    return 0


def write_table(args, configs, batches, mem_batches, ckpt, results, tf, fw, agree, final):
    """The notes and the table for what has run so far: printed when final, written to --output
    (and the raw numbers to WORKDIR/results.json) every time."""
    max_b = batches[-1]
    notes_agree = compute_agreement(args, configs, results, agree)
    mem_note = (f"kiln memory: planned (kiln_whisper_device_bytes) / in use (cudaMemGetInfo rise) in MiB, of engines "
                f"built with --max-batch equal to the row's batch: batch {max_b} from the timing run"
                + (f", batch {', '.join(map(str, mem_batches))} from `--max-batch` builds of their own" if mem_batches else "")
                + "; other rows '—': the runtime sizes its KV caches, buffers and activation arenas for the engines' "
                f"--max-batch, so a max-{max_b} engine's memory is not that of a smaller batch"
                + ("; the encoder's weights streamed from host memory (whisper_bench --stream-encoder-weights): its "
                   "ring is counted instead of its weights" if "--stream-encoder-weights" in args.bench_flags else ""))
    ckpt_note = ckpt if args.checkpoint else "random large-v3 geometry (seed 0, transformers' default init std 0.02), fp16"
    notes = [
        f"GPU: {device_name()}; {datetime.date.today()}; kiln {commit()}; checkpoint {ckpt_note}",
        f"command: {' '.join(sys.argv)}",
        f"kiln: engines built with --dtype {args.dtype} --max-batch {max_b} (+ each config's flags), batches "
        f"{', '.join(map(str, batches))} timed on them; {args.steps} greedy steps per random 30 s window; RTF = wall / "
        "(batch x 30 s); step = (wall - encoder) / (steps + 1); floor = bytes a step reads (decoder weights as stored "
        "+ cross-attention K/V of every window + self-attention caches at their mean length, dtypes and scales from the "
        "engine) / device-to-device copy bandwidth; encoder = kiln_whisper_encode_batch alone, its TFLOP/s from the "
        "model's matmul and attention FLOPs (whisper_bench.c encoder_flops) against cuBLAS's fp16 GEMM rate at the "
        "encoder's MLP shape measured in the same process",
        mem_note,
        notes_agree,
        "transformers: " + ("not run" if args.no_transformers else
                            ("fp16" if tf_cuda() else "fp32 on the CPU (no GPU: a smoke test of this script)")
                            + ", SDPA, generate() with min_new_tokens = max_new_tokens = steps, greedy, median of 3 "
                            "after a warm-up; memory: torch.cuda.max_memory_allocated()"),
        "faster-whisper: " + ("not run (--faster-whisper)" if not args.faster_whisper else
                              "CTranslate2 float16 on the same checkpoint (converted), bench/fw_random_bench.py: the "
                              "same random windows' shape, prompt <|startoftranscript|>, <|endoftext|> suppressed so "
                              "each row decodes exactly the steps, median of 3 after a warm-up"),
    ]
    done = [(n, f) for n, f in configs if n in results]
    text = ("\n".join("- " + n for n in notes) + "\n\n" + HEADER + "\n"
            + "\n".join(table_rows(done, batches, results, tf, fw, agree)) + "\n")
    if final:
        print("\n== Whisper quantization table\n" + text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text if final else text + "\n(partial: the run has not finished)\n")
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({"results": results, "transformers": tf, "faster_whisper": fw, "agreement": agree, "notes": notes}, f,
                  indent=1,
                  default=str)


if __name__ == "__main__":
    sys.exit(main())

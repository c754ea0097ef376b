#!/usr/bin/env python3
"""bench/peer_eval.py - kiln's `kiln eval` result on a speech test set next to its GPU peers on
the same audio, scored the same way: one table of WER, RTF and peak GPU memory (kiln issue 6).

What it runs, each engine configuration in its own worker process (so that its GPU memory is its
own, and one failing does not stop the others):
  - transformers' WhisperForConditionalGeneration, fp16 on the GPU (fp32 on the CPU),
    attn_implementation="sdpa", at each --batch-sizes (default 1 and 16);
  - faster-whisper (CTranslate2) at each --fw-compute-types (default int8 and float16 on the GPU,
    int8 and float32 on the CPU), beam 1: batch 1 through WhisperModel.transcribe(), larger
    --fw-batch-sizes through CTranslate2's Whisper.generate() on a batch of windows with the
    prompt and token suppression transcribe() uses (left out, saying why, where faster-whisper
    does not import);
both with the decoding `kiln eval` does (kiln_eval_run -> kiln_whisper_transcribe): the first
30 s of each file, language en, task transcribe, no timestamps (<|notimestamps|> in the prompt),
greedy (temperature 0, no fallback, no beam), at most 224 new tokens, suppress blank and the
checkpoint's suppress tokens; no VAD, no no-speech skipping, no previous-text prompt.
Audio is read as kiln reads it (libsndfile through soundfile, mean of the channels, libsoxr high
quality through soxr, to 16 kHz). Each engine then makes its own log-mel: transformers'
WhisperFeatureExtractor (torch, on the --device), faster-whisper's (numpy, CPU).

Timing, as kiln eval's: wall time of the whole test set, audio loading included, model loading
excluded; RTF = wall seconds / audio seconds (full length of each file, as kiln counts it).
Unlike kiln eval, each peer first runs its first batch once untimed (CUDA context, cuBLAS
handles, kernel loading and, for CTranslate2 on sm_90, the PTX JIT would otherwise be timed).
Transcripts are in manifest order; batches are consecutive utterances (not sorted by length).

Memory: torch.cuda.max_memory_allocated() for transformers (live tensors after the warm-up
reset: weights included); and for every engine NVML's figure for the worker process (CUDA
context and allocator caches included), sampled every --interval-ms by bench/gpu_mem.py.
kiln's summary holds planned bytes (engines + contexts + buffers, not measured); pass
--kiln-mem with bench/gpu_mem.py's JSON for a run of `kiln eval` to compare measured with
measured.

Scoring: bench/peer_score.py: with --libkiln, kiln's own scoring code (kiln_eval_report through
ctypes), else Whisper's English normalizer in Python + a port of kiln's jiwer-compatible WER
(checked equal to kiln and to jiwer + openai-whisper's normalizer: bench/peer_score.py --check).
Each engine's hypotheses.tsv and summary.json (kiln eval's format) go to OUT/<engine>/.

What it is not: a benchmark of long-form transcription (30 s windows only) or of beam search.

usage (GPU machine; see docs/peers.md):
  python3 bench/peer_eval.py --manifest data/testset/manifest.jsonl --model models/whisper-base \\
      --ct2-model models/whisper-base-ct2 --kiln-summary eval-out/summary.json \\
      [--kiln-mem kiln_mem.json] [--libkiln build/libkiln.so] [--output-dir peer-out]
  CPU smoke test: ... --manifest tests/data/testset-mini/manifest.jsonl --device cpu
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_mem import GpuMemSampler, best_bytes  # noqa: E402
from peer_score import GROUP_KEYS_DEFAULT, make_scorer, read_manifest  # noqa: E402

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE
MAX_NEW_TOKENS = 224  # kiln_whisper_default_decode_params(): openai-whisper's sample_len


# ---- worker side: one engine configuration ------------------------------------------------------


def load_audio(path):
    """16 kHz mono float32 as kiln_audio_load() makes it: libsndfile, mean of channels, soxr HQ."""
    import numpy as np
    import soundfile as sf
    import soxr
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


class HFEngine:
    def __init__(self, cfg):
        import torch
        from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer
        self.torch = torch
        self.device = f"cuda:{cfg['gpu_index']}" if cfg["device"] == "cuda" else "cpu"
        self.dtype = torch.float16 if cfg["dtype"] == "fp16" else torch.float32
        self.model = WhisperForConditionalGeneration.from_pretrained(
            cfg["model"], dtype=self.dtype, attn_implementation="sdpa").to(self.device).eval()
        self.fe = WhisperFeatureExtractor.from_pretrained(cfg["model"])
        self.tok = WhisperTokenizer.from_pretrained(cfg["model"])
        self.eot = self.model.generation_config.eos_token_id
        multilingual = self.model.config.vocab_size >= 51865
        self.kw = dict(language=cfg["language"], task="transcribe") if multilingual else {}

    def transcribe(self, pcms):
        torch = self.torch
        feats = self.fe([p[:WINDOW_SAMPLES] for p in pcms], sampling_rate=SAMPLE_RATE, return_tensors="pt",
                        device=self.device).input_features.to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.generate(feats, return_timestamps=False, do_sample=False, num_beams=1,
                                      max_new_tokens=MAX_NEW_TOKENS, **self.kw)
        seqs = out.sequences if hasattr(out, "sequences") else out
        return [self.tok.decode([t for t in row.tolist() if t < self.eot]).strip() for row in seqs]

    def memory(self):
        if self.device == "cpu":
            return {}
        t, d = self.torch.cuda, self.device
        return {"torch_peak_allocated_bytes": t.max_memory_allocated(d), "torch_peak_reserved_bytes": t.max_memory_reserved(d)}

    def reset_memory(self):
        if self.device != "cpu":
            self.torch.cuda.synchronize(self.device)
            self.torch.cuda.reset_peak_memory_stats(self.device)

    def versions(self):
        import transformers
        v = {"torch": self.torch.__version__, "transformers": transformers.__version__}
        if self.device != "cpu":
            v["gpu"] = self.torch.cuda.get_device_name(self.device)
        return v


class FWEngine:
    def __init__(self, cfg):
        try:
            import av  # noqa: F401  (faster_whisper.audio imports it at module level)
            self.av_stub = False
        except ImportError:  # only its file decoding needs PyAV; we pass PCM arrays
            import types
            sys.modules["av"] = types.ModuleType("av")
            self.av_stub = True
        from faster_whisper import WhisperModel
        self.model = WhisperModel(cfg["ct2_model"], device=cfg["device"], device_index=cfg["gpu_index"],
                                  compute_type=cfg["compute_type"], cpu_threads=os.cpu_count() or 1)
        self.cfg = cfg
        if cfg["batch"] > 1:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
            m = self.model
            self.tokenizer = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe",
                                       language=cfg["language"])
            self.prompt = m.get_prompt(self.tokenizer, [], without_timestamps=True)
            self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))

    def transcribe(self, pcms):
        return self._one(pcms[0]) if self.cfg["batch"] == 1 else self._batch(pcms)

    def _one(self, pcm):
        segments, _ = self.model.transcribe(
            pcm[:WINDOW_SAMPLES], language=self.cfg["language"], task="transcribe", beam_size=1, best_of=1,
            temperature=0.0, without_timestamps=True, condition_on_previous_text=False,
            compression_ratio_threshold=None, log_prob_threshold=None, no_speech_threshold=None,
            vad_filter=False, max_new_tokens=MAX_NEW_TOKENS, suppress_blank=True, suppress_tokens=[-1])
        return ["".join(s.text for s in segments).strip()]

    def _batch(self, pcms):
        """What transcribe() does for one window (features of the clip, the first 3000 frames,
        padded), for a batch of windows in one CTranslate2 generate() call."""
        import numpy as np
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_ctranslate2_storage
        m = self.model
        feats = []
        for p in pcms:
            f = m.feature_extractor(p[:WINDOW_SAMPLES])
            feats.append(pad_or_trim(f[:, :min(f.shape[-1] - 1, m.feature_extractor.nb_max_frames)]))
        enc = m.model.encode(get_ctranslate2_storage(np.stack(feats)), to_cpu=False)
        res = m.model.generate(enc, [self.prompt] * len(pcms), beam_size=1, patience=1, length_penalty=1,
                               repetition_penalty=1, no_repeat_ngram_size=0,
                               max_length=len(self.prompt) + MAX_NEW_TOKENS, return_scores=False,
                               return_no_speech_prob=False, suppress_blank=True, suppress_tokens=self.suppress)
        return [self.tokenizer.decode(r.sequences_ids[0]).strip() for r in res]

    def memory(self):
        return {}

    def reset_memory(self):
        pass

    def versions(self):
        import ctranslate2
        import faster_whisper
        return {"ctranslate2": ctranslate2.__version__, "faster_whisper": faster_whisper.__version__,
                "pyav": "stub (not installed)" if self.av_stub else "installed"}


def worker(cfg, out_path):
    try:
        import soundfile  # noqa: F401
        import soxr  # noqa: F401
    except ImportError as e:
        sys.exit(f"peer_eval worker: {e}: install soundfile and soxr (scripts/gpu_peer_setup.sh installs them "
                 f"from the wheel folder; docs/peers.md)")
    entries = read_manifest(cfg["manifest"])[: cfg["limit"] or None]
    t = time.perf_counter()
    eng = (HFEngine if cfg["engine"] == "transformers" else FWEngine)(cfg)
    load_s = time.perf_counter() - t
    batch = cfg["batch"]
    batches = [entries[i:i + batch] for i in range(0, len(entries), batch)]
    t = time.perf_counter()
    for _ in range(cfg["warmup"]):  # untimed: first calls pay for kernel loading and the PTX JIT
        eng.transcribe([load_audio(e["audio"]) for e in batches[0]])
    warmup_s = time.perf_counter() - t
    eng.reset_memory()
    hyps, errors, audio_s, load_audio_s = {}, {}, 0.0, 0.0
    t0 = time.perf_counter()
    for b in batches:
        ta = time.perf_counter()
        pcms, ok = [], []
        for e in b:
            try:
                pcms.append(load_audio(e["audio"]))
                ok.append(e)
            except Exception as ex:  # a file that cannot be read is left out, as kiln eval does
                errors[e["id"]] = f"{type(ex).__name__}: {ex}"
        load_audio_s += time.perf_counter() - ta
        if not ok:
            continue
        for e, text in zip(ok, eng.transcribe(pcms)):
            hyps[e["id"]] = text
        audio_s += sum(len(p) for p in pcms) / SAMPLE_RATE
    wall_s = time.perf_counter() - t0
    res = {"name": cfg["name"], "hypotheses": hyps, "errors": errors, "audio_seconds": audio_s,
           "wall_seconds": wall_s, "audio_load_seconds": load_audio_s, "load_seconds": load_s,
           "warmup_seconds": warmup_s, "batches": len(batches), **eng.memory(), "versions": eng.versions()}
    with open(out_path, "w") as f:
        json.dump(res, f)


# ---- parent side ----------------------------------------------------------------------------


def configs(args):
    gpu = args.device != "cpu"
    base = {"manifest": args.manifest, "limit": args.limit, "device": args.device, "gpu_index": args.gpu_index,
            "language": args.language, "warmup": args.warmup, "model": args.model, "ct2_model": args.ct2_model}
    out = []
    engines = [e for e in args.engines.split(",") if e]
    if "transformers" in engines:
        dtype = "fp16" if gpu else "fp32"
        for b in int_list(args.batch_sizes):
            out.append(base | {"engine": "transformers", "dtype": dtype, "batch": b,
                               "name": f"transformers-{dtype}-sdpa-b{b}"})
    if "faster-whisper" in engines:
        cts = args.fw_compute_types or ("int8,float16" if gpu else "int8,float32")
        for ct in cts.split(","):
            for b in int_list(args.fw_batch_sizes):
                out.append(base | {"engine": "faster-whisper", "compute_type": ct, "batch": b,
                                   "name": f"faster-whisper-{ct}-b{b}"})
    return out


def int_list(s):
    return [int(x) for x in s.split(",") if x]


def importable(args, engine):
    """Whether the engine's Python package imports in a worker's environment (error text if not)."""
    code = ("import transformers, torch" if engine == "transformers" else
            "import sys, types\ntry:\n    import av\nexcept ImportError:\n    sys.modules['av'] = types.ModuleType('av')\n"
            "import faster_whisper, ctranslate2")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=worker_env(args, engine))
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


def worker_env(args, engine):
    env = dict(os.environ)
    if engine == "faster-whisper" and args.fw_lib_dir:
        env["LD_LIBRARY_PATH"] = os.path.abspath(args.fw_lib_dir) + ":" + env.get("LD_LIBRARY_PATH", "")
    return env


def run_worker(args, cfg, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    res_path, log_path = os.path.join(out_dir, "worker.json"), os.path.join(out_dir, "worker.log")
    if os.path.exists(res_path):
        os.remove(res_path)
    env = worker_env(args, cfg["engine"])
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg), "--worker-out", res_path]
    sampler, mem = None, {}
    if args.device != "cpu":
        try:
            sampler = GpuMemSampler(args.gpu_index, args.interval_ms / 1e3).__enter__()
        except RuntimeError as e:
            print(f"peer_eval: {e}", file=sys.stderr)
    t = time.perf_counter()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        if sampler:
            sampler.watch(p.pid)
        try:
            rc = p.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
            print(f"peer_eval: {cfg['name']}: past --timeout {args.timeout} s, stopped", file=sys.stderr)
    if sampler:
        sampler.__exit__(None, None, None)
        mem = sampler.result()
    elapsed = time.perf_counter() - t
    if rc != 0 or not os.path.exists(res_path):
        with open(log_path) as f:
            tail = f.read()[-2500:]
        print(f"peer_eval: {cfg['name']} failed (exit {rc}); {log_path} ends with:\n{tail}", file=sys.stderr)
        return None
    with open(res_path) as f:
        res = json.load(f)
    res["gpu_mem"] = mem
    res["process_seconds"] = elapsed
    return res


def kiln_row(args):
    if not args.kiln_summary:
        return None
    with open(args.kiln_summary) as f:
        s = json.load(f)
    perf = s.get("perf", {})
    row = {"name": "kiln", "batch": int(s.get("metrics", {}).get("batch_size", 1)), "utterances": s["utterances"],
           "wer": s["wer"], "substitutions": s["substitutions"], "deletions": s["deletions"],
           "insertions": s["insertions"], "ref_words": s["ref_words"], "rtf": perf.get("rtf"),
           "wall_seconds": perf.get("wall_seconds"), "audio_seconds": perf.get("audio_seconds"),
           "mem_bytes": perf.get("peak_device_bytes") or None,
           "mem_how": "planned (kiln summary)" if perf.get("peak_device_bytes") else "-"}
    if args.kiln_mem:
        with open(args.kiln_mem) as f:
            b, how = best_bytes(json.load(f))
        if b is not None:
            row["planned_bytes"], row["mem_bytes"], row["mem_how"] = row["mem_bytes"], b, how
    return row


def peer_row(cfg, res, summary_path):
    with open(summary_path) as f:
        s = json.load(f)
    b, how = best_bytes(res["gpu_mem"]) if res.get("gpu_mem") else (None, "-")
    return {"name": cfg["name"], "batch": cfg["batch"], "utterances": s["utterances"], "wer": s["wer"],
            "substitutions": s["substitutions"], "deletions": s["deletions"], "insertions": s["insertions"],
            "ref_words": s["ref_words"], "rtf": s["perf"]["rtf"], "wall_seconds": res["wall_seconds"],
            "audio_seconds": res["audio_seconds"], "mem_bytes": b, "mem_how": how,
            "torch_peak_allocated_bytes": res.get("torch_peak_allocated_bytes"),
            "load_seconds": res["load_seconds"], "warmup_seconds": res["warmup_seconds"],
            "audio_load_seconds": res["audio_load_seconds"], "failed": len(res["errors"]),
            "versions": res["versions"], "gpu_mem": res.get("gpu_mem")}


def mib(b):
    return f"{b / 2**20:.0f}" if b else "-"


def table(rows, kiln):
    head = ("| engine | batch | utts | WER % | S / D / I | RTF | RTF / kiln RTF | peak GPU MiB | measured as | "
            "memory / kiln's | torch max allocated MiB |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in ([kiln] if kiln else []) + rows:
        t_ratio = (f"{r['rtf'] / kiln['rtf']:.2f}x" if kiln and kiln.get("rtf") and r.get("rtf") and r is not kiln
                   else "-")
        m_ratio = (f"{r['mem_bytes'] / kiln['mem_bytes']:.2f}x"
                   if kiln and kiln.get("mem_bytes") and r.get("mem_bytes") and r is not kiln else "-")
        rtf = f"{r['rtf']:.5f}" if r.get("rtf") is not None else "-"
        lines.append(f"| {r['name']} | {r['batch']} | {r['utterances']} | {100 * r['wer']:.2f} | "
                     f"{r['substitutions']} / {r['deletions']} / {r['insertions']} | {rtf} | {t_ratio} | "
                     f"{mib(r.get('mem_bytes'))} | {r.get('mem_how', '-')} | {m_ratio} | "
                     f"{mib(r.get('torch_peak_allocated_bytes'))} |")
    lines.append("")
    lines.append("RTF = wall seconds / audio seconds (audio loading included, model loading not). RTF / kiln RTF "
                 "< 1: the peer is faster than kiln. Peak GPU memory: NVML process = the worker process as NVML "
                 "sees it (CUDA context and allocator caches included); device rise = the GPU's used memory above "
                 "its value before the run; planned = kiln's own estimate from its summary, not a measurement.")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="The module docstring (head -60 bench/peer_eval.py) says what is measured and how.")
    ap.add_argument("--manifest", help="the test set (TSV or JSON lines, as kiln eval reads)")
    ap.add_argument("--model", default="models/whisper-base", help="Hugging Face Whisper folder (transformers)")
    ap.add_argument("--ct2-model", default="models/whisper-base-ct2", help="CTranslate2 Whisper folder (faster-whisper)")
    ap.add_argument("--kiln-summary", help="kiln eval's summary.json for the same manifest")
    ap.add_argument("--kiln-mem", help="bench/gpu_mem.py --json output of that kiln eval run (measured memory)")
    ap.add_argument("--libkiln", help="libkiln.so: score with kiln's own code (default: Python port)")
    ap.add_argument("--spelling", help="British->American map (default MODEL/normalizer.json)")
    ap.add_argument("--normalizer", default="auto", choices=["auto", "openai", "transformers"],
                    help="Python scorer's normalizer (default: openai-whisper's if importable, else transformers')")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--gpu-index", type=int, default=0, help="CUDA device and NVML index (default 0)")
    ap.add_argument("--engines", default="transformers,faster-whisper")
    ap.add_argument("--batch-sizes", default="1,16", help="transformers batch sizes (default 1,16)")
    ap.add_argument("--fw-batch-sizes", default="1,16", help="faster-whisper batch sizes (default 1,16)")
    ap.add_argument("--fw-compute-types", help="default int8,float16 (GPU) or int8,float32 (CPU)")
    ap.add_argument("--fw-lib-dir", help="prepended to LD_LIBRARY_PATH of the faster-whisper workers "
                    "(the libcublas.so.12 folder scripts/gpu_peer_setup.sh makes)")
    ap.add_argument("--language", default="en")
    ap.add_argument("--group-by", default=",".join(GROUP_KEYS_DEFAULT))
    ap.add_argument("--limit", type=int, default=0, help="only the first N utterances")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of the first batch (default 1)")
    ap.add_argument("--interval-ms", type=float, default=20, help="NVML sampling interval")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per engine configuration")
    ap.add_argument("--output-dir", default="peer-eval")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker), args.worker_out)
    if not args.manifest:
        ap.error("--manifest is required")
    entries = read_manifest(args.manifest)[: args.limit or None]
    group_keys = [k for k in args.group_by.split(",") if k]
    scorer = make_scorer(args.libkiln, args.spelling or os.path.join(args.model, "normalizer.json"), args.normalizer)
    kiln = kiln_row(args)
    if kiln and kiln["utterances"] != len(entries):
        print(f"peer_eval: warning: kiln's summary has {kiln['utterances']} utterances, the peers run "
              f"{len(entries)}: the comparison is not on the same audio", file=sys.stderr)
    rows, versions, todo = [], {}, configs(args)
    for engine in dict.fromkeys(c["engine"] for c in todo):
        err = importable(args, engine)
        if err:
            print(f"peer_eval: {engine} does not import ({err}): its configurations are left out", file=sys.stderr)
            todo = [c for c in todo if c["engine"] != engine]
    for cfg in todo:
        print(f"peer_eval: {cfg['name']} ...", file=sys.stderr, flush=True)
        out_dir = os.path.join(args.output_dir, cfg["name"])
        res = run_worker(args, cfg, out_dir)
        if not res:
            continue
        hyps = [res["hypotheses"].get(e["id"]) for e in entries]
        measured = best_bytes(res["gpu_mem"])[0] if res.get("gpu_mem") else None
        perf = {"audio_seconds": res["audio_seconds"], "wall_seconds": res["wall_seconds"],
                "peak_device_bytes": measured if measured is not None else -1}
        metrics = {"failed_utterances": len(res["errors"]), "batch_size": cfg["batch"],
                   "audio_load_seconds": res["audio_load_seconds"], "load_seconds": res["load_seconds"]}
        if res.get("torch_peak_allocated_bytes") is not None:
            metrics["torch_peak_allocated_bytes"] = res["torch_peak_allocated_bytes"]
        row = peer_row(cfg, res, scorer.write(out_dir, entries, hyps, group_keys, perf, metrics))
        rows.append(row)
        versions.update(res["versions"])
        if res["errors"]:
            first = next(iter(res["errors"].items()))
            print(f"peer_eval: {cfg['name']}: {len(res['errors'])} utterances failed and are left out "
                  f"(first: {first[0]}: {first[1]})", file=sys.stderr)
        print(f"peer_eval: {cfg['name']}: WER {100 * row['wer']:.2f}%, RTF {row['rtf']:.5f} "
              f"({row['wall_seconds']:.1f} s for {row['audio_seconds']:.1f} s of audio), peak GPU "
              f"{mib(row['mem_bytes'])} MiB ({row['mem_how']})", file=sys.stderr, flush=True)
    md = table(rows, kiln)
    head = (f"peer_eval: {len(entries)} utterances of {args.manifest}, device {args.device}"
            f"{' (' + versions['gpu'] + ')' if 'gpu' in versions else ''}; scorer: {scorer.name}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "gpu"))
    print(head + "\n\n" + md)
    os.makedirs(args.output_dir, exist_ok=True)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(head + "\n\n" + md + "\n")
    with open(os.path.join(args.output_dir, "peers.json"), "w") as f:
        json.dump({"manifest": args.manifest, "device": args.device, "scorer": scorer.name, "versions": versions,
                   "kiln": kiln, "peers": rows}, f, indent=1)
    return 0 if len(rows) == len(todo) else 1


if __name__ == "__main__":
    sys.exit(main())

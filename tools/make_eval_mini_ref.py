#!/usr/bin/env python3
"""tools/make_eval_mini_ref.py - the reference result of `kiln eval` on the mini test set:
transformers' greedy transcription of every utterance of tests/data/testset-mini/manifest.jsonl
with a Hugging Face Whisper checkpoint (the settings of tools/whisper_hf_greedy.py, which this
imports: first 30 s, language en, no timestamps, greedy, at most 224 new tokens, audio read with
soundfile + soxr HQ), normalized with openai-whisper's EnglishTextNormalizer and scored with
jiwer 4 (corpus WER, overall and per synth / voice group).

Writes JSON (default tests/data/eval_mini_whisper_base.json):
  {"checkpoint": "...", "manifest": "...", "utterances": [{"audio", "text", "tokens", "ref_norm",
   "hyp_norm", "hits", "substitutions", "deletions", "insertions"}],
   "overall": {"wer", "hits", "substitutions", "deletions", "insertions", "ref_words"},
   "groups": {key: {value: {"utterances", "wer", ...}}}}
tests/model/test_eval_cmd.c checks kiln's hypotheses and WER against it.
What it is not: run by CI (needs the checkpoint, scripts/fetch_model.sh, and torch).
Usage: python3 tools/make_eval_mini_ref.py [CHECKPOINT_DIR [OUT.json]]
"""
import json
import os
import sys

import jiwer
import torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer
from whisper.normalizers import EnglishTextNormalizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from whisper_hf_greedy import load  # noqa: E402  (same audio loading as the other reference)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "tests/data/testset-mini/manifest.jsonl"
GROUP_KEYS = ["synth", "voice"]


def transcribe(model, fe, tok, path):
    feats = fe(load(path)[:480000], sampling_rate=16000, return_tensors="pt").input_features
    kw = dict(language="en", task="transcribe") if model.config.vocab_size >= 51865 else {}
    with torch.no_grad():
        out = model.generate(feats, return_timestamps=False, do_sample=False, num_beams=1,
                             max_new_tokens=224, **kw)
    seq = out.sequences[0] if hasattr(out, "sequences") else out[0]
    eot = model.generation_config.eos_token_id
    toks = [t for t in seq.tolist() if t < eot]
    return tok.decode(toks).strip(), toks


def score(refs, hyps):
    o = jiwer.process_words(refs, hyps)
    return {"wer": o.wer, "hits": o.hits, "substitutions": o.substitutions,
            "deletions": o.deletions, "insertions": o.insertions,
            "ref_words": o.hits + o.substitutions + o.deletions}


def main():
    ckpt = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models/whisper-base")
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests/data/eval_mini_whisper_base.json")
    model = WhisperForConditionalGeneration.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    fe = WhisperFeatureExtractor.from_pretrained(ckpt)
    tok = WhisperTokenizer.from_pretrained(ckpt)
    norm = EnglishTextNormalizer()
    entries = [json.loads(l) for l in open(os.path.join(ROOT, MANIFEST)) if l.strip()]
    utts = []
    for e in entries:
        text, toks = transcribe(model, fe, tok, os.path.join(ROOT, os.path.dirname(MANIFEST), e["audio"]))
        r, h = norm(e["text"]), norm(text)
        s = score([r], [h])
        utts.append({"audio": e["audio"], "text": text, "tokens": toks, "ref_norm": r, "hyp_norm": h,
                     **{k: s[k] for k in ("hits", "substitutions", "deletions", "insertions")}})
        print(f"{e['audio']}: {text}", file=sys.stderr)
    refs = [u["ref_norm"] for u in utts]
    hyps = [u["hyp_norm"] for u in utts]
    groups = {}
    for key in GROUP_KEYS:
        for value in sorted({str(e[key]) for e in entries if e.get(key) is not None}):
            idx = [i for i, e in enumerate(entries) if str(e.get(key)) == value]
            groups.setdefault(key, {})[value] = {"utterances": len(idx),
                                                 **score([refs[i] for i in idx], [hyps[i] for i in idx])}
    doc = {"checkpoint": os.path.basename(os.path.normpath(ckpt)), "manifest": MANIFEST,
           "utterances": utts, "overall": score(refs, hyps), "groups": groups}
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"WER {doc['overall']['wer']:.4f} over {len(utts)} utterances -> {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()

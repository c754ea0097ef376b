#!/usr/bin/env python3
"""tools/make_eval_refs.py - reference WER reports from jiwer, for tests/unit/test_eval_report.c.

What it is: takes the references of the mini test set (tests/data/testset-mini/manifest.jsonl),
makes 3 sets of synthetic hypotheses with a fixed seed (random word substitutions, deletions and
insertions, plus changes the normalizer must undo: case, punctuation, British spellings,
contractions, "Mr." titles, spelled-out numbers and fillers; one set also has an empty and an
exact hypothesis), normalizes reference and hypothesis with openai-whisper's
EnglishTextNormalizer and scores them with jiwer 4, and writes tests/data/eval_report_cases.json:
  {"manifest": "tests/data/testset-mini/manifest.jsonl", "group_keys": ["synth", "voice"],
   "sets": [{"hypotheses": [...one per utterance...],
             "utterances": [{"ref_norm", "hyp_norm", "hits", "substitutions", "deletions",
                             "insertions", "ops"}],  # ops: one letter a step (= s d i)
             "overall": {"wer", "hits", ...}, "groups": {key: {value: {"utterances", "wer", ...}}}}]}
Group and overall WERs are corpus WERs: jiwer.wer(list_of_refs, list_of_hyps).
What it is not: a recognizer; the hypotheses are made up.
Usage: python3 tools/make_eval_refs.py [out.json]
"""
import json
import os
import random
import sys

import jiwer
from whisper.normalizers import EnglishTextNormalizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = "tests/data/testset-mini/manifest.jsonl"
GROUP_KEYS = ["synth", "voice"]
SEED = 6
VOCAB = ["the", "a", "of", "man", "woman", "devil", "believer", "traveler", "words", "cat",
         "seriously", "never", "always", "house"]
# Variants the normalizer maps back: (word as in the reference, lower-case) -> spoken variant.
VARIANTS = {"traveler": "traveller", "honor": "honour", "color": "colour", "offense": "offence",
            "do not": "don't", "it is": "it's", "you are": "you're", "mister": "Mr.",
            "two": "2", "one": "1", "three": "3", "is not": "isn't"}
FILLERS = ["um", "uh", "hmm"]


def perturb(ref, rng, rate):
    words = ref.split()
    out = []
    for w in words:
        r = rng.random()
        if r < rate:  # substitution
            out.append(rng.choice(VOCAB))
        elif r < 1.5 * rate:  # deletion
            continue
        else:
            out.append(w.upper() if rng.random() < 0.1 else w)
        if rng.random() < rate / 2:  # insertion
            out.append(rng.choice(VOCAB + FILLERS))
    hyp = " ".join(out)
    for k, v in VARIANTS.items():  # spellings and contractions the normalizer undoes
        if rng.random() < 0.7:
            hyp = hyp.replace(k, v)
    if rng.random() < 0.5:
        hyp = hyp.rstrip(".") + "!"
    if rng.random() < 0.3:
        hyp = hyp.replace(",", "")
    return hyp


def counts(out):
    return dict(hits=out.hits, substitutions=out.substitutions, deletions=out.deletions,
                insertions=out.insertions)


def ops_string(alignment):
    letters = {"equal": "=", "substitute": "s", "delete": "d", "insert": "i"}
    return "".join(letters[c.type] * max(c.ref_end_idx - c.ref_start_idx,
                                         c.hyp_end_idx - c.hyp_start_idx) for c in alignment)


def corpus(refs, hyps):
    out = jiwer.process_words(refs, hyps)
    d = counts(out)
    d["wer"] = out.wer
    d["ref_words"] = d["hits"] + d["substitutions"] + d["deletions"]
    d["hyp_words"] = d["hits"] + d["substitutions"] + d["insertions"]
    d["utterances"] = len(refs)
    return d


def score_set(entries, hyps, norm):
    refs_n = [norm(e["text"]) for e in entries]
    hyps_n = [norm(h) for h in hyps]
    utts = []
    for r, h in zip(refs_n, hyps_n):
        out = jiwer.process_words(r, h)
        utts.append(dict(ref_norm=r, hyp_norm=h, ops=ops_string(out.alignments[0]), **counts(out)))
    groups = {}
    for key in GROUP_KEYS:
        groups[key] = {}
        for v in dict.fromkeys(e[key] for e in entries):  # order of first appearance
            idx = [i for i, e in enumerate(entries) if e[key] == v]
            groups[key][v] = corpus([refs_n[i] for i in idx], [hyps_n[i] for i in idx])
    return dict(hypotheses=hyps, utterances=utts, overall=corpus(refs_n, hyps_n), groups=groups)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests/data/eval_report_cases.json")
    with open(os.path.join(ROOT, MANIFEST), encoding="utf-8") as f:
        entries = [json.loads(line) for line in f if line.strip()]
    norm = EnglishTextNormalizer()
    rng = random.Random(SEED)
    sets = []
    for rate in (0.05, 0.15, 0.4):
        hyps = [perturb(e["text"], rng, rate) for e in entries]
        if rate == 0.15:
            hyps[0] = ""  # nothing recognized
            hyps[1] = entries[1]["text"].upper().replace(",", "").rstrip(".")  # exact after norm
        sets.append(score_set(entries, hyps, norm))
    doc = dict(manifest=MANIFEST, group_keys=GROUP_KEYS, sets=sets)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {out_path}: " + ", ".join(f"WER {s['overall']['wer']:.3f}" for s in sets))


if __name__ == "__main__":
    main()

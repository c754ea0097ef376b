#!/usr/bin/env python3
"""bench/peer_score.py - scores any recognizer's transcripts of a test set the way `kiln eval`
does, so that kiln and its peers (bench/peer_eval.py) are compared on the same numbers.

What it is:
  - a manifest reader with kiln_manifest_load()'s rules (kiln/manifest.h: TSV or JSON lines,
    relative audio paths against the manifest's folder, other JSON fields kept as text);
  - two scorers that write kiln eval's files (hypotheses.tsv, summary.json, and with the first
    also alignments.txt) for one list of (utterance, transcript):
      KilnScorer   kiln's own code through its C API (libkiln.so via ctypes: kiln_textnorm_create,
                   kiln_eval_report_add, kiln_eval_report_write_*): exactly `kiln eval`'s scoring;
      PyScorer     Whisper's English normalizer in Python (openai-whisper's when importable, else
                   transformers' port with the checkpoint's normalizer.json) and a port of kiln's
                   WER alignment (src/models/whisper/wer.c: jiwer 4's / rapidfuzz's editops
                   backtrace, so S, D and I split as jiwer splits them, not only their sum);
  - a check (`--check`) that both scorers, and jiwer + openai-whisper's normalizer where
    importable, give the same counts on a manifest and a hypotheses file.
What it is not: a recognizer, nor a timer (bench/peer_eval.py runs the engines).

usage:
  python3 bench/peer_score.py --manifest M --hypotheses H.tsv --spelling models/whisper-base/normalizer.json \
      [--libkiln build/libkiln.so] [--output-dir DIR] [--check]
H.tsv is `kiln eval`'s hypotheses.tsv format (audio path as the manifest writes it<TAB>text).
"""
import argparse
import ctypes
import json
import os
import re
import sys

GROUP_KEYS_DEFAULT = ("synth", "voice")

# ---- manifests --------------------------------------------------------------------------------


def json_text(v):
    """A JSON value as kiln_manifest_field() returns it (cJSON's compact printing); None for null."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:  # cJSON prints integral doubles as integers
            return str(int(v))
        s = "%1.15g" % v
        return s if float(s) == v else "%1.17g" % v
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def read_manifest(path):
    """[{id, audio (resolved path), text, fields{key: text}}] in file order."""
    with open(path, encoding="utf-8-sig") as f:
        data = f.read()
    base = os.path.dirname(os.path.abspath(path))
    lines = data.replace("\r\n", "\n").split("\n")
    is_jsonl = data.lstrip()[:1] == "{"
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or (not is_jsonl and line.startswith("#")):
            continue
        if is_jsonl:
            obj = json.loads(line)
            if not isinstance(obj.get("audio"), str) or not isinstance(obj.get("text"), str):
                sys.exit(f"{path}:{n}: a JSON line needs string \"audio\" and \"text\"")
            audio, text = obj["audio"], obj["text"]
            fields = {k: json_text(v) for k, v in obj.items() if k not in ("audio", "text")}
            fields = {k: v for k, v in fields.items() if v is not None}
        else:
            if "\t" not in line:
                sys.exit(f"{path}:{n}: a TSV line is audio-path<TAB>reference")
            audio, text = line.split("\t", 1)
            fields = {}
        resolved = audio if os.path.isabs(audio) else os.path.join(base, audio)
        out.append({"id": audio, "audio": resolved, "text": text, "fields": fields})
    if not out:
        sys.exit(f"{path}: no utterances")
    return out


def read_hypotheses(path):
    """kiln eval's hypotheses.tsv: {id: text}."""
    hyps = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                k, _, v = line.partition("\t")
                hyps[k] = v
    return hyps


def tsv_safe(text):
    """Tabs and line breaks to spaces, as kiln_eval_report_write_hypotheses() writes them."""
    return re.sub(r"[\t\r\n]", " ", text)


# ---- WER: a port of src/models/whisper/wer.c ----------------------------------------------------

_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def split_words(s):
    return [w for w in _SPACE.split(s) if w]


def wer_ops(ref, hyp):
    """Word alignment as rapidfuzz's Levenshtein.editops (jiwer 4): list of ops in order,
    each 'M', 'S', 'D' or 'I'."""
    r, h = split_words(ref), split_words(hyp)
    prefix = 0
    while prefix < len(r) and prefix < len(h) and r[prefix] == h[prefix]:
        prefix += 1
    suffix = 0
    while (suffix < len(r) - prefix and suffix < len(h) - prefix
           and r[len(r) - 1 - suffix] == h[len(h) - 1 - suffix]):
        suffix += 1
    a, b = r[prefix:len(r) - suffix], h[prefix:len(h) - suffix]
    n1, n2 = len(a), len(b)
    d = [[0] * (n2 + 1) for _ in range(n1 + 1)]
    for j in range(n2 + 1):
        d[0][j] = j
    for i in range(1, n1 + 1):
        d[i][0] = i
        for j in range(1, n2 + 1):
            d[i][j] = min(d[i - 1][j - 1] + (a[i - 1] != b[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1)
    ops = ["M"] * suffix  # collected last step first
    i, j = n1, n2
    while i > 0 and j > 0:
        if d[i][j] - d[i - 1][j] == 1:
            i -= 1
            ops.append("D")
            continue
        j -= 1
        if j > 0 and d[i][j] - d[i - 1][j] == -1:
            ops.append("I")
            continue
        i -= 1
        ops.append("M" if a[i] == b[j] else "S")
    ops += ["D"] * i + ["I"] * j + ["M"] * prefix
    return ops[::-1], len(r), len(h)


def wer_counts(ref, hyp):
    ops, n_ref, n_hyp = wer_ops(ref, hyp)
    return {"hits": ops.count("M"), "substitutions": ops.count("S"), "deletions": ops.count("D"),
            "insertions": ops.count("I"), "ref_words": n_ref, "hyp_words": n_hyp}


COUNT_KEYS = ("hits", "substitutions", "deletions", "insertions", "ref_words", "hyp_words")


def rate(c):
    """kiln_wer_rate: (S + D + I) / N; with N = 0, the number of insertions (jiwer's edge case)."""
    if c["ref_words"] == 0:
        return float(c["insertions"])
    return (c["substitutions"] + c["deletions"] + c["insertions"]) / c["ref_words"]


# ---- normalizers ------------------------------------------------------------------------------


def make_normalizer(impl, spelling):
    """impl: 'openai' (openai-whisper's EnglishTextNormalizer, which reads its own english.json),
    'transformers' (transformers' port; spelling = the checkpoint's normalizer.json), 'none', or
    'auto' (openai when importable, else transformers). Returns (name, function)."""
    if impl in ("auto", "openai"):
        try:
            from whisper.normalizers import EnglishTextNormalizer
            return "openai-whisper", EnglishTextNormalizer()
        except ImportError:
            if impl == "openai":
                raise
    if impl in ("auto", "transformers"):
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer
        if not spelling or not os.path.exists(spelling):
            sys.exit(f"peer_score: the transformers normalizer needs the spelling map (normalizer.json "
                     f"of the checkpoint); not found: {spelling}")
        with open(spelling, encoding="utf-8") as f:
            return "transformers", EnglishTextNormalizer(json.load(f))
    if impl == "none":
        return "none", lambda s: s
    sys.exit(f"peer_score: unknown normalizer {impl}")


# ---- scorers ----------------------------------------------------------------------------------


def utterance_groups(entry, group_keys):
    return [(k, entry["fields"][k]) for k in group_keys if k in entry["fields"]]


class PyScorer:
    """Scores in Python and writes kiln eval's hypotheses.tsv and summary.json (same layout:
    groups and their values in order of first appearance)."""

    def __init__(self, spelling, impl="auto"):
        self.normalizer_name, self.norm = make_normalizer(impl, spelling)
        self.name = f"python ({self.normalizer_name} normalizer)"

    def score(self, entries, hyps, group_keys):
        """entries: manifest entries; hyps: list of transcripts (None = failed, left out).
        Returns (total counts, {key: {value: counts + utterances}}, per-utterance counts)."""
        total = dict.fromkeys(COUNT_KEYS, 0)
        groups, per_utt = {}, []
        for e, hyp in zip(entries, hyps):
            if hyp is None:
                continue
            c = wer_counts(self.norm(e["text"]), self.norm(hyp))
            per_utt.append(c)
            for k in COUNT_KEYS:
                total[k] += c[k]
            for key, value in utterance_groups(e, group_keys):
                g = groups.setdefault(key, {}).setdefault(value, {**dict.fromkeys(COUNT_KEYS, 0), "utterances": 0})
                g["utterances"] += 1
                for k in COUNT_KEYS:
                    g[k] += c[k]
        total["utterances"] = len(per_utt)
        return total, groups, per_utt

    def write(self, out_dir, entries, hyps, group_keys, perf=None, metrics=None):
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "hypotheses.tsv"), "w", encoding="utf-8") as f:
            for e, h in zip(entries, hyps):
                if h is not None:
                    f.write(f"{e['id']}\t{tsv_safe(h)}\n")
        total, groups, _ = self.score(entries, hyps, group_keys)

        def block(c):
            return {"utterances": c["utterances"], "wer": rate(c), **{k: c[k] for k in COUNT_KEYS}}

        doc = {"format": "kiln-eval-summary", "version": 1,
               "normalizer": "none" if self.normalizer_name == "none" else "whisper-english",
               **block(total),
               "groups": {k: {v: block(c) for v, c in vals.items()} for k, vals in groups.items()}}
        if perf:
            doc["perf"] = perf_block(perf)
        if metrics:
            doc["metrics"] = metrics
        path = os.path.join(out_dir, "summary.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent="\t")
            f.write("\n")
        return path


def perf_block(perf):
    """perf: {audio_seconds, wall_seconds, peak_host_bytes, peak_device_bytes}, negative = unknown."""
    out = {}
    a, w = perf.get("audio_seconds", -1), perf.get("wall_seconds", -1)
    if a >= 0:
        out["audio_seconds"] = a
    if w >= 0:
        out["wall_seconds"] = w
    if a > 0 and w >= 0:
        out["rtf"] = w / a
    for k in ("peak_host_bytes", "peak_device_bytes"):
        if perf.get(k, -1) >= 0:
            out[k] = perf[k]
    return out


class _Group(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class _Perf(ctypes.Structure):
    _fields_ = [("audio_seconds", ctypes.c_double), ("wall_seconds", ctypes.c_double),
                ("peak_host_bytes", ctypes.c_int64), ("peak_device_bytes", ctypes.c_int64)]


class KilnScorer:
    """kiln's own scoring (include/kiln/eval.h) through libkiln.so: what `kiln eval` writes,
    alignments.txt included. A CPU build of the library is enough (no GPU is touched)."""

    def __init__(self, libkiln, spelling):
        self.lib = lib = ctypes.CDLL(libkiln)
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        for name, args in {
            "kiln_textnorm_create": [cp, ctypes.POINTER(vp)],
            "kiln_eval_report_create": [vp, ctypes.POINTER(vp)],
            "kiln_eval_report_add": [vp, cp, cp, cp, ctypes.POINTER(_Group), ctypes.c_int32],
            "kiln_eval_report_set_perf": [vp, ctypes.POINTER(_Perf)],
            "kiln_eval_report_set_metric": [vp, cp, ctypes.c_double],
            "kiln_eval_report_write_hypotheses": [vp, cp],
            "kiln_eval_report_write_alignments": [vp, cp],
            "kiln_eval_report_write_summary": [vp, cp],
        }.items():
            getattr(lib, name).argtypes = args
            getattr(lib, name).restype = ctypes.c_int
        lib.kiln_eval_report_destroy.argtypes = [vp]
        lib.kiln_eval_report_destroy.restype = None
        lib.kiln_textnorm_destroy.argtypes = [vp]
        lib.kiln_textnorm_destroy.restype = None
        lib.kiln_last_error.restype = cp
        self.tn = vp()
        self._check(lib.kiln_textnorm_create(spelling.encode(), ctypes.byref(self.tn)), spelling)
        self.name = "kiln (libkiln: kiln_eval_report)"
        self.normalizer_name = "kiln"

    def _check(self, status, what):
        if status != 0:
            raise RuntimeError(f"libkiln: {what}: {self.lib.kiln_last_error().decode(errors='replace')}")

    def write(self, out_dir, entries, hyps, group_keys, perf=None, metrics=None):
        os.makedirs(out_dir, exist_ok=True)
        lib, r = self.lib, ctypes.c_void_p()
        self._check(lib.kiln_eval_report_create(self.tn, ctypes.byref(r)), "creating a report")
        try:
            for e, h in zip(entries, hyps):
                if h is None:
                    continue
                g = utterance_groups(e, group_keys)
                arr = (_Group * max(1, len(g)))(*[_Group(k.encode(), v.encode()) for k, v in g])
                self._check(lib.kiln_eval_report_add(r, e["id"].encode(), e["text"].encode(), h.encode(),
                                                     arr, len(g)), e["id"])
            if perf:
                p = _Perf(perf.get("audio_seconds", -1), perf.get("wall_seconds", -1),
                          int(perf.get("peak_host_bytes", -1)), int(perf.get("peak_device_bytes", -1)))
                self._check(lib.kiln_eval_report_set_perf(r, ctypes.byref(p)), "perf")
            for k, v in (metrics or {}).items():
                self._check(lib.kiln_eval_report_set_metric(r, k.encode(), float(v)), k)
            for what in ("hypotheses", "alignments", "summary"):
                path = os.path.join(out_dir, {"hypotheses": "hypotheses.tsv", "alignments": "alignments.txt",
                                              "summary": "summary.json"}[what])
                self._check(getattr(lib, f"kiln_eval_report_write_{what}")(r, path.encode()), path)
        finally:
            lib.kiln_eval_report_destroy(r)
        return os.path.join(out_dir, "summary.json")

    def close(self):
        if self.tn:
            self.lib.kiln_textnorm_destroy(self.tn)
            self.tn = ctypes.c_void_p()


def make_scorer(libkiln, spelling, impl="auto"):
    return KilnScorer(libkiln, spelling) if libkiln else PyScorer(spelling, impl)


# ---- the check --------------------------------------------------------------------------------


def summary_counts(path):
    with open(path) as f:
        s = json.load(f)
    flat = {"overall": tuple(s[k] for k in COUNT_KEYS)}
    for key, vals in s.get("groups", {}).items():
        for value, c in vals.items():
            flat[f"{key}={value}"] = tuple(c[k] for k in COUNT_KEYS)
    return flat


def jiwer_counts(entries, hyps, group_keys):
    """jiwer 4 + openai-whisper's normalizer, as tools/make_eval_mini_ref.py scores."""
    import jiwer
    from whisper.normalizers import EnglishTextNormalizer
    norm = EnglishTextNormalizer()
    pairs = [(e, norm(e["text"]), norm(h)) for e, h in zip(entries, hyps) if h is not None]

    def counts(sel):
        refs, hs = [p[1] for p in sel], [p[2] for p in sel]
        o = jiwer.process_words(refs, hs)
        n_hyp = sum(len(split_words(x)) for x in hs)
        return (o.hits, o.substitutions, o.deletions, o.insertions, o.hits + o.substitutions + o.deletions, n_hyp)

    flat = {"overall": counts(pairs)}
    for key in group_keys:
        for value in dict.fromkeys(p[0]["fields"][key] for p in pairs if key in p[0]["fields"]):
            flat[f"{key}={value}"] = counts([p for p in pairs if p[0]["fields"].get(key) == value])
    return flat


def check(args, entries, hyps, group_keys):
    import tempfile
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in ("openai", "transformers"):
            try:
                sc = PyScorer(args.spelling, impl)
            except ImportError as e:
                print(f"  (python scorer with the {impl} normalizer: not importable: {e})")
                continue
            results[sc.name] = summary_counts(sc.write(os.path.join(tmp, impl), entries, hyps, group_keys))
        if args.libkiln:
            ks = KilnScorer(args.libkiln, args.spelling)
            results[ks.name] = summary_counts(ks.write(os.path.join(tmp, "kiln"), entries, hyps, group_keys))
            ks.close()
        try:
            results["jiwer 4 + openai-whisper normalizer"] = jiwer_counts(entries, hyps, group_keys)
        except ImportError as e:
            print(f"  (jiwer + openai-whisper: not importable: {e})")
    names = list(results)
    base = results[names[0]]
    ok = True
    for name in names:
        diff = [k for k in set(base) | set(results[name]) if base.get(k) != results[name].get(k)]
        o = results[name]["overall"]
        print(f"  {name:42s} WER {100 * (o[1] + o[2] + o[3]) / max(o[4], 1):7.3f}%  "
              f"H/S/D/I/N/hyp {'/'.join(map(str, o))}  groups {len(results[name]) - 1}  "
              f"{'same as ' + names[0] if not diff else 'DIFFERS from ' + names[0] + ' at ' + ', '.join(sorted(diff)[:5])}")
        ok = ok and not diff
    print(f"check: {'all ' + str(len(names)) + ' scorers agree' if ok else 'MISMATCH'} on {sum(h is not None for h in hyps)} "
          f"utterances, overall and {len(base) - 1} groups (hits, S, D, I, ref words, hyp words)")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--hypotheses", required=True, help="audio-path<TAB>transcript (kiln eval's hypotheses.tsv)")
    ap.add_argument("--spelling", default="models/whisper-base/normalizer.json",
                    help="British->American spellings (the checkpoint's normalizer.json)")
    ap.add_argument("--libkiln", help="libkiln.so: score with kiln's own code")
    ap.add_argument("--normalizer", default="auto", choices=["auto", "openai", "transformers", "none"],
                    help="python scorer's normalizer (default: openai-whisper's when importable)")
    ap.add_argument("--group-by", default=",".join(GROUP_KEYS_DEFAULT))
    ap.add_argument("--output-dir", help="write hypotheses.tsv and summary.json there")
    ap.add_argument("--check", action="store_true", help="compare every available scorer; exit 1 on a mismatch")
    args = ap.parse_args()
    entries = read_manifest(args.manifest)
    by_id = read_hypotheses(args.hypotheses)
    hyps = [by_id.get(e["id"]) for e in entries]
    missing = sum(h is None for h in hyps)
    if missing:
        print(f"peer_score: {missing} of {len(entries)} utterances have no hypothesis; left out", file=sys.stderr)
    group_keys = [k for k in args.group_by.split(",") if k]
    if args.check:
        sys.exit(0 if check(args, entries, hyps, group_keys) else 1)
    sc = make_scorer(args.libkiln, args.spelling, args.normalizer)
    path = sc.write(args.output_dir or "peer-score", entries, hyps, group_keys)
    c = summary_counts(path)["overall"]
    print(f"{sc.name}: WER {100 * (c[1] + c[2] + c[3]) / max(c[4], 1):.2f}% (S {c[1]}, D {c[2]}, I {c[3]}, N {c[4]}) -> {path}")


if __name__ == "__main__":
    main()

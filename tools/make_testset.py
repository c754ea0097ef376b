#!/usr/bin/env python3
"""tools/make_testset.py - a deterministic English speech test set for Whisper WER evaluation.

What it is: picks 300 sentences of 5-25 words from Ambrose Bierce's "The Devil's Dictionary"
(1911, public domain; Debian package dict-devil, /usr/share/dictd/devil.dict.dz), has them spoken
by the speech synthesizers Debian ships (espeak-ng with 10 voices/variants, flite with kal,
kal16, slt, rms and awb, festival with kal_diphone, ked_diphone and cmu_us_slt_arctic_hts) at
relative speaking rates 0.8, 1.0 and 1.25, and post-processes them with numpy: peak gain,
leading/trailing silence, white noise at a fixed signal-to-noise ratio (seeded per utterance),
16-bit output, mostly 16 kHz mono FLAC, some 16 kHz WAV, some 22.05 kHz stereo WAV and 44.1 kHz
stereo FLAC (to exercise resampling and down-mixing). jfk.flac (real speech) from
/work/shared/data/whisper/audio is copied in with its reference transcript.
Re-running gives the same bytes (same Debian package versions assumed).

Output folder (default data/testset/, git-ignored):
  audio/NNNN_<synth>_<voice>.{flac,wav}, audio/jfk.flac
  manifest.tsv    one utterance a line: `audio-path<TAB>reference text` (paths relative to the
                  manifest's folder)
  manifest.jsonl  one JSON object a line: {"audio", "text", "synth", "voice", "rate" (relative
                  speaking rate, 1.0 = the voice's default), "noise_db" (signal-to-noise ratio of
                  the added white noise in dB, null = clean), "source" (where the sentence comes
                  from), "sample_rate", "channels", "duration_s", "lead_silence_s",
                  "trail_silence_s", "peak"}
With --mini DIR it writes instead a 12-utterance subset (all FLAC, < 2 MB) chosen to cover every
synthesizer, rate, noise level and file layout: tests/data/testset-mini/ is made this way.

What it is not: a natural-speech benchmark (synthetic voices are far easier and far more
regular than people); mbrola voices are left out (Debian ships mbrola in non-free only).
Needs: espeak-ng, flite, festival + festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts, sox,
dict-devil (`scripts/setup.sh --testset` installs them); Python numpy, soundfile, soxr.
Usage: python3 tools/make_testset.py [--out data/testset] [--mini tests/data/testset-mini] [-j 2]
Takes about 2 minutes on 2 cores.
"""
import argparse
import gzip
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
import soxr

SEED = 20240617
N_SYNTH = 300
DEVIL = "/usr/share/dictd/devil.dict.dz"
DEVIL_SOURCE = "Ambrose Bierce, The Devil's Dictionary (1911, public domain), entry {}"
JFK = "/work/shared/data/whisper/audio/jfk.flac"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
JFK_SOURCE = "John F. Kennedy, inaugural address, 20 January 1961 (openai-whisper tests/jfk.flac)"

# (synth, voice, utterance count): 120 espeak-ng, 100 flite, 80 festival.
VOICES = ([("espeak-ng", v, 12) for v in
           ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3", "en-us+m3",
            "en-gb+f4", "en-us+klatt", "en-gb-x-gbclan"]] +
          [("flite", v, 20) for v in ["kal", "kal16", "slt", "rms", "awb"]] +
          [("festival", "kal_diphone", 27), ("festival", "ked_diphone", 27),
           ("festival", "cmu_us_slt_arctic_hts", 26)])
# Conditions cycle with the utterance index; coprime periods mix them.
RATES = [1.0, 0.8, 1.0, 1.25, 1.0]
NOISE_SNR_DB = [None, None, 20, None, 10, None, 5]
SILENCE_S = [(0.0, 0.0), (0.8, 1.2), (0.05, 0.3)]
PEAKS = [0.9, 0.5, 0.25, 0.7]
LAYOUTS = ([("flac", 16000, 1)] * 8 + [("wav", 16000, 1), ("wav", 22050, 2), ("flac", 44100, 2)])
N_MINI = 12


# ---- text ------------------------------------------------------------------------------------

HEADWORD = re.compile(r"^([A-Z][A-Z' -]*[A-Z]), ((?:[a-z]+\.)+(?: ?[a-z]+\.)*)\s+")
SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"])")
GOOD = re.compile(r"^[A-Z][A-Za-z ,;:'\"!?.-]*[.!?]\"?$")


def devil_entries(path):
    """Yields (headword, prose) for each entry: its non-indented paragraphs, verse left out."""
    with gzip.open(path, "rt", encoding="latin-1") as f:
        lines = f.read().split("\n")
    word, prose = None, []
    for line in lines:
        m = HEADWORD.match(line)
        if m:
            if word and prose:
                yield word, " ".join(prose)
            word, prose = m.group(1), [line[m.end():]]
        elif word and line and not line[0].isspace() and prose is not None:
            prose.append(line)
        elif word and line and line[0].isspace():
            prose.append("\n")  # verse or attribution: ends the running sentence
    if word and prose:
        yield word, " ".join(prose)


def usable(sentence):
    words = sentence.split()
    if not 5 <= len(words) <= 25 or not GOOD.match(sentence):
        return False
    if sentence.count('"') % 2 or "--" in sentence or " - " in sentence:
        return False
    for w in words:
        core = w.strip(",;:'\"!?.-")
        # all-caps words (cross references), single letters other than a/I, abbreviations
        if len(core) > 1 and core.isupper():
            return False
        if len(core) == 1 and core not in ("a", "A", "I"):
            return False
        if re.fullmatch(r"(Mr|Mrs|Dr|St|Co|Esq|vs|etc|viz|ie|eg)\.?", core):
            return False
    return True


def sentences():
    """All usable sentences in file order, with their source, duplicates dropped."""
    out, seen = [], set()
    for word, prose in devil_entries(DEVIL):
        for chunk in prose.split("\n"):
            for s in SENT_END.split(" ".join(chunk.split())):
                s = s.strip()
                if usable(s) and s not in seen:
                    seen.add(s)
                    out.append((s, DEVIL_SOURCE.format(word)))
    return out


# ---- plan ------------------------------------------------------------------------------------

def plan():
    """The utterance specs, a pure function of SEED and the sentence list."""
    rng = random.Random(SEED)
    pool = sentences()
    if len(pool) < N_SYNTH:
        sys.exit(f"make_testset: only {len(pool)} usable sentences in {DEVIL}, need {N_SYNTH}")
    picked = rng.sample(pool, N_SYNTH)
    slots = [(s, v) for s, v, n in VOICES for _ in range(n)]
    rng.shuffle(slots)
    specs = []
    for i, ((text, source), (synth, voice)) in enumerate(zip(picked, slots)):
        fmt, sr, ch = LAYOUTS[i % len(LAYOUTS)]
        lead, trail = SILENCE_S[i % len(SILENCE_S)]
        tag = voice.replace("+", "-")
        specs.append(dict(index=i, text=text, source=source, synth=synth, voice=voice,
                          rate=RATES[i % len(RATES)], noise_db=NOISE_SNR_DB[i % len(NOISE_SNR_DB)],
                          lead=lead, trail=trail, peak=PEAKS[i % len(PEAKS)], fmt=fmt, sr=sr,
                          channels=ch, name=f"{i:04d}_{synth}_{tag}"))
    return specs


def mini_plan(specs):
    """N_MINI short utterances chosen greedily to cover the most new conditions (each layout
    clean too, so tests can check levels; the smallest layout among equals); all FLAC."""
    def features(s):
        return {("synth", s["synth"]), ("voice", s["voice"]), ("rate", s["rate"]),
                ("noise", s["noise_db"]), ("layout", (s["sr"], s["channels"])),
                ("silence", s["lead"]),
                ("clean layout", (s["sr"], s["channels"]) if s["noise_db"] is None else None)}
    short = [s for s in specs if len(s["text"].split()) <= 14]
    chosen, covered = [], set()
    while len(chosen) < N_MINI:
        best = max((s for s in short if s not in chosen),
                   key=lambda s: (len(features(s) - covered), -s["sr"] * s["channels"], -s["index"]))
        chosen.append(best)
        covered |= features(best)
    return [dict(s, fmt="flac") for s in sorted(chosen, key=lambda s: s["index"])]


# ---- synthesis -------------------------------------------------------------------------------

def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")


def synthesize(spec, tmp):
    """Runs the synthesizer; returns (mono float64 samples, sample rate)."""
    txt, wav = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.wav")
    with open(txt, "w") as f:
        f.write(spec["text"] + "\n")
    rate, voice = spec["rate"], spec["voice"]
    if spec["synth"] == "espeak-ng":
        run(["espeak-ng", "-v", voice, "-s", str(round(175 * rate)), "-w", wav, "-f", txt])
    elif spec["synth"] == "flite":
        run(["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.4f}", "-f", txt,
             "-o", wav])
    else:
        cmd = ["text2wave", "-eval", f"(voice_{voice})"]
        if not voice.endswith("_hts"):  # HTS voices ignore Duration_Stretch: sox tempo below
            cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {1 / rate:.4f})"]
        run(cmd + [txt, "-o", wav])
        if voice.endswith("_hts") and rate != 1.0:
            # -D -R and float output: sox would otherwise dither with a time-seeded generator
            run(["sox", "-D", "-R", wav, "-e", "floating-point", "-b", "32",
                 os.path.join(tmp, "tempo.wav"), "tempo", "-s", str(rate)])
            wav = os.path.join(tmp, "tempo.wav")
    x, sr = sf.read(wav, dtype="float64", always_2d=True)
    return x.mean(axis=1), sr


def render(spec):
    """Synthesizes and post-processes one utterance: returns int16 frames [n x channels]."""
    with tempfile.TemporaryDirectory(prefix="kiln_testset_") as tmp:
        x, sr = synthesize(spec, tmp)
    if not np.any(x):
        raise RuntimeError(f"{spec['name']}: the synthesizer produced silence")
    x = soxr.resample(x, sr, spec["sr"], quality="HQ") if sr != spec["sr"] else x
    x = x * (spec["peak"] / np.max(np.abs(x)))
    rng = np.random.default_rng([SEED, spec["index"]])
    speech_rms = float(np.sqrt(np.mean(x * x)))
    pad = lambda s: np.zeros(int(round(s * spec["sr"])))
    x = np.concatenate([pad(spec["lead"]), x, pad(spec["trail"])])
    chans = [x, 0.8 * x][:spec["channels"]]
    out = []
    for c in chans:
        if spec["noise_db"] is not None:
            c = c + rng.normal(0.0, speech_rms * 10 ** (-spec["noise_db"] / 20), size=c.shape)
        out.append(np.clip(np.round(c * 32767), -32768, 32767).astype(np.int16))
    return np.stack(out, axis=1)


def write_one(args):
    spec, folder = args
    frames = render(spec)
    rel = f"audio/{spec['name']}.{spec['fmt']}"
    sf.write(os.path.join(folder, rel), frames, spec["sr"], subtype="PCM_16",
             format=spec["fmt"].upper())
    return dict(audio=rel, text=spec["text"], synth=spec["synth"], voice=spec["voice"],
                rate=spec["rate"], noise_db=spec["noise_db"], source=spec["source"],
                sample_rate=spec["sr"], channels=spec["channels"],
                duration_s=round(len(frames) / spec["sr"], 6), lead_silence_s=spec["lead"],
                trail_silence_s=spec["trail"], peak=spec["peak"])


def jfk_entry(folder):
    shutil.copyfile(JFK, os.path.join(folder, "audio/jfk.flac"))
    info = sf.info(JFK)
    return dict(audio="audio/jfk.flac", text=JFK_TEXT, synth="human", voice="jfk", rate=1.0,
                noise_db=None, source=JFK_SOURCE, sample_rate=info.samplerate,
                channels=info.channels, duration_s=round(info.frames / info.samplerate, 6),
                lead_silence_s=0.0, trail_silence_s=0.0, peak=None)


def write_manifests(folder, entries):
    with open(os.path.join(folder, "manifest.tsv"), "w", encoding="utf-8") as f:
        for e in entries:
            f.write(f"{e['audio']}\t{e['text']}\n")
    with open(os.path.join(folder, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")


def check_tools():
    missing = [t for t in ("espeak-ng", "flite", "text2wave", "sox") if not shutil.which(t)]
    voices = ["/usr/share/festival/voices/english/kal_diphone",
              "/usr/share/festival/voices/english/ked_diphone",
              "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts", DEVIL]
    missing += [v for v in voices if not os.path.exists(v)]
    if missing:
        sys.exit("make_testset: missing " + ", ".join(missing) +
                 "; install them with `scripts/setup.sh --testset`")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/testset", help="output folder (full set)")
    ap.add_argument("--mini", help="write the small CI subset to this folder instead")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    check_tools()
    specs = plan()
    folder = a.mini or a.out
    if a.mini:
        specs = mini_plan(specs)
    if os.path.isdir(os.path.join(folder, "audio")):
        shutil.rmtree(os.path.join(folder, "audio"))
    os.makedirs(os.path.join(folder, "audio"))
    with multiprocessing.Pool(a.jobs) as pool:
        entries = pool.map(write_one, [(s, folder) for s in specs], chunksize=4)
    if not a.mini:
        entries.append(jfk_entry(folder))
    write_manifests(folder, entries)
    total = sum(e["duration_s"] for e in entries)
    print(f"make_testset: {len(entries)} utterances, {total / 60:.1f} min of audio in {folder}")


if __name__ == "__main__":
    main()

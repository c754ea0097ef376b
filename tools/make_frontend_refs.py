#!/usr/bin/env python3
"""tools/make_frontend_refs.py - reference dumps for kiln's Whisper front-end tests.

Writes, from the reference implementations (openai-whisper, transformers, tiktoken, and
soundfile + python-soxr for audio decoding):
  tests/data/mel_refs.bin        log-mel spectrograms of synthetic signals (full), of a noise
                                 signal in a 30 s window (frames 80..119 + stats), of a padded
                                 chirp, and of jfk.flac (every 50th frame + stats); jfk.flac
                                 decoded to 16 kHz mono (every 64th sample + stats)
  tests/data/tokenizer_refs.json token ids of test texts (tiktoken via openai-whisper, and
                                 transformers' WhisperTokenizer), decodes, special token ids for
                                 the 51864 / 51865 / 51866 vocabularies
The synthetic signals are generated identically here and in tests/model/test_mel.c (see
make_signal()). The .bin format is read by tests/refs.h:
  "KLNREF01", uint32 count, then per entry: uint16 name length, name, uint8 dtype (0 float32,
  1 int32, 2 float64), uint8 ndim, int64 dims[ndim], data (little-endian, row-major).
Run where openai-whisper, transformers, soundfile and soxr are installed:
    python3 tools/make_frontend_refs.py [--data /work/shared/data]
Not run by the build or by CI.
"""
import argparse
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "..", "tests", "data")


# ---- signals (mirror make_signal() in tests/model/test_mel.c) -------------------------------

def lcg_noise(n, seed):
    """Uniform noise in [-1, 1) from a 64-bit LCG (exactly reproducible in C)."""
    out = np.empty(n, dtype=np.float32)
    s = seed
    mask = (1 << 64) - 1
    for i in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        out[i] = np.float32(((s >> 40) / 16777216.0) * 2.0 - 1.0)
    return out


def make_signal(kind):
    sr = 16000
    if kind == "chirp":  # 1.5 s linear chirp 100 Hz -> 7 kHz, amplitude 0.5
        n = 24000
        t = np.arange(n, dtype=np.float64) / sr
        dur = n / sr
        phase = 2 * np.pi * (100.0 * t + (7000.0 - 100.0) * t * t / (2 * dur))
        return (0.5 * np.sin(phase)).astype(np.float32)
    if kind == "noise":  # 1 s uniform noise, amplitude 0.3
        return (lcg_noise(16000, 12345) * np.float32(0.3)).astype(np.float32)
    if kind == "silence_tone":  # 0.5 s of zeros, then 0.5 s of 440 Hz at 0.25
        n = 16000
        x = np.zeros(n, dtype=np.float32)
        t = np.arange(n // 2, dtype=np.float64) / sr
        x[n // 2:] = (0.25 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        return x
    raise ValueError(kind)


# ---- writer -----------------------------------------------------------------------------------

class RefWriter:
    def __init__(self):
        self.entries = []

    def add(self, name, arr):
        arr = np.ascontiguousarray(arr)
        code = {np.dtype(np.float32): 0, np.dtype(np.int32): 1, np.dtype(np.float64): 2}[arr.dtype]
        self.entries.append((name, code, arr))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(b"KLNREF01")
            f.write(struct.pack("<I", len(self.entries)))
            for name, code, arr in self.entries:
                nb = name.encode()
                f.write(struct.pack("<H", len(nb)) + nb)
                f.write(struct.pack("<BB", code, arr.ndim))
                f.write(struct.pack("<%dq" % arr.ndim, *arr.shape))
                f.write(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


# ---- mel ----------------------------------------------------------------------------------

def ref_mel(x, n_mels, padding=0):
    import torch
    import whisper
    return whisper.log_mel_spectrogram(torch.from_numpy(x), n_mels=n_mels, padding=padding).numpy()


def ref_mel_window(x, n_mels):
    import torch
    import whisper
    return whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(x)), n_mels=n_mels).numpy()


def hf_mel_window(x, n_mels):
    from transformers import WhisperFeatureExtractor
    fe = WhisperFeatureExtractor(feature_size=n_mels)
    return fe(x, sampling_rate=16000, return_tensors="np").input_features[0]


def decode_jfk(data_dir):
    import soundfile
    import soxr
    pcm, rate = soundfile.read(os.path.join(data_dir, "whisper", "audio", "jfk.flac"), dtype="float32",
                               always_2d=True)
    mono = pcm.astype(np.float64).mean(axis=1).astype(np.float32)
    out = soxr.resample(mono, rate, 16000, quality="HQ").astype(np.float32)
    # Independent sanity check (not circular): band-limited FFT resampling with numpy.
    n_out = int(round(len(mono) * 16000 / rate))
    spec = np.fft.rfft(mono.astype(np.float64))
    keep = n_out // 2 + 1
    fft_res = np.fft.irfft(spec[:keep], n_out) * (n_out / len(mono))
    m = min(len(out), len(fft_res))
    lo, hi = 2000, m - 2000
    err = out[lo:hi] - fft_res[lo:hi]
    snr = 10 * np.log10(np.sum(fft_res[lo:hi] ** 2) / np.sum(err ** 2))
    print(f"jfk: {pcm.shape} at {rate} Hz -> {len(out)} samples; soxr vs numpy FFT resampling: SNR {snr:.1f} dB")
    assert snr > 40, "soxr and FFT resampling disagree: check the reference decode"
    return out


def mel_refs(data_dir, w):
    for kind in ("chirp", "noise", "silence_tone"):
        x = make_signal(kind)
        w.add(f"signal_{kind}_sum", np.array([np.sum(x.astype(np.float64))]))
        w.add(f"mel80_{kind}", ref_mel(x, 80))
    w.add("mel128_chirp_every3", ref_mel(make_signal("chirp"), 128)[:, ::3].copy())
    # padding: frames 120..199 cover the end of the chirp and the zeros after it
    w.add("mel80_chirp_pad8000_last80", ref_mel(make_signal("chirp"), 80, padding=8000)[:, 120:].copy())

    noise = make_signal("noise")
    win = ref_mel_window(noise, 80)
    hf = hf_mel_window(noise, 80)
    print(f"noise window: openai vs transformers max abs diff {np.abs(win - hf).max():.2e}")
    w.add("win80_noise_80to120", win[:, 80:120].copy())  # the signal's end and the padding
    w.add("win80_noise_stats", np.array([win.sum(dtype=np.float64), win.min(), win.max()], dtype=np.float64))

    jfk = decode_jfk(data_dir)
    w.add("jfk_n", np.array([len(jfk)], dtype=np.int32))
    w.add("jfk_every64", jfk[::64].copy())
    w.add("jfk_stats", np.array([jfk.astype(np.float64).sum(), (jfk.astype(np.float64) ** 2).sum()]))
    for n_mels in (80, 128):
        mel = ref_mel_window(jfk, n_mels)
        hf = hf_mel_window(jfk, n_mels)
        print(f"jfk mel{n_mels}: openai vs transformers max abs diff {np.abs(mel - hf).max():.2e}")
        w.add(f"jfk_mel{n_mels}_every50", mel[:, ::50].copy())
        w.add(f"jfk_mel{n_mels}_stats", np.array([mel.sum(dtype=np.float64), mel.min(), mel.max()], dtype=np.float64))


# ---- tokenizer --------------------------------------------------------------------------------

TEXTS = [
    " Hello world",
    "Hello, world!",
    " And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "café naïve résumé Ångström façade",
    "日本語のテキストです。",
    "中文测试，你好世界！",
    "emoji 🙂🎉👍🏽 done",
    "numbers 12345 3.14159 1,000,000 and 2024-01-31",
    "I'm sure they'll say we've done what you'd've liked; it's John's.",
    "   leading spaces",
    "multiple   spaces    here",
    "new\nlines\n\nand\ttabs\r\n",
    "  trailing  ",
    "Привет, мир! Как дела?",
    "مرحبا بالعالم",
    "¿Qué tal? ¡Muy bien! Ça va?",
    "Größe Straße über",
    "",
    "a",
    "😀",
    "x\u00a0y non\u2009breaking",
    "DON'T SHOUT'LL",
    "तुम कैसे हो",
    "한국어 텍스트",
    "a" * 300,
    "1234567890123456789",
]
PLAIN_ONLY = ["text with <|en|> and <|endoftext|> spelled out"]


def tokenizer_refs(data_dir):
    import whisper.tokenizer as wt
    from transformers import WhisperTokenizer

    hf_dir = os.path.join(data_dir, "whisper", "tokenizer-hf")
    hf = WhisperTokenizer.from_pretrained(hf_dir)
    ml = wt.get_tokenizer(multilingual=True, num_languages=99)
    en = wt.get_tokenizer(multilingual=False)
    texts = []
    for text in TEXTS + PLAIN_ONLY:
        item = {
            "text": text,
            "multilingual": ml.encoding.encode_ordinary(text),
            "gpt2": en.encoding.encode_ordinary(text),
        }
        if text not in PLAIN_ONLY:
            item["hf"] = hf.encode(text, add_special_tokens=False)
            if item["hf"] != item["multilingual"]:
                print("note: transformers and tiktoken differ on", repr(text))
        texts.append(item)

    vocabs = []
    for name, file, multilingual, n_lang in (("gpt2", "gpt2.tiktoken", False, 99),
                                             ("multilingual", "multilingual.tiktoken", True, 99),
                                             ("multilingual_v3", "multilingual.tiktoken", True, 100)):
        tok = wt.get_tokenizer(multilingual=multilingual, num_languages=n_lang,
                               language="en" if multilingual else None,
                               task="transcribe" if multilingual else None)
        v = {
            "name": name, "file": file, "num_languages": n_lang, "n_vocab": tok.encoding.n_vocab,
            "eot": tok.eot, "sot": tok.sot, "transcribe": tok.transcribe, "translate": tok.translate,
            "sot_lm": tok.sot_lm, "sot_prev": tok.sot_prev, "no_speech": tok.no_speech,
            "no_timestamps": tok.no_timestamps, "timestamp_begin": tok.timestamp_begin,
            "sot_sequence": list(tok.sot_sequence),
            "sot_sequence_including_notimestamps": list(tok.sot_sequence_including_notimestamps),
            "languages": {c: tok.encoding.encode_single_token(f"<|{c}|>")
                          for c in list(wt.LANGUAGES)[:n_lang]},
        }
        vocabs.append(v)

    # decode: specials and timestamps, and a split multi-byte character
    ml_v = wt.get_tokenizer(multilingual=True, num_languages=99, language="de", task="translate")
    words = ml_v.encode(" Guten Tag, café 🙂")
    seq = list(ml_v.sot_sequence) + [ml_v.timestamp_begin] + words + [ml_v.timestamp_begin + 50,
                                                                       ml_v.timestamp_begin + 1500, ml_v.eot]
    emoji = ml_v.encode("🙂")
    decodes = {
        "ids": seq,
        "with_timestamps": ml_v.decode_with_timestamps(seq),  # specials and timestamps kept
        "without_timestamps": ml_v.decode(seq),  # specials kept, timestamps dropped
        "text_only": ml_v.decode([t for t in seq if t < ml_v.eot]),
        "partial_emoji_ids": emoji[:1],
        "partial_emoji": ml_v.encoding.decode(emoji[:1]),
    }
    hf_specials = {
        "n_vocab": len(hf),  # transformers' count (may omit timestamps for old checkpoints)
        "sot": hf.convert_tokens_to_ids("<|startoftranscript|>"),
        "eot": hf.convert_tokens_to_ids("<|endoftext|>"),
        "no_timestamps": hf.convert_tokens_to_ids("<|notimestamps|>"),
        "en": hf.convert_tokens_to_ids("<|en|>"),
    }
    return {"texts": texts, "vocabs": vocabs, "decode": decodes, "hf": hf_specials}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/work/shared/data")
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    w = RefWriter()
    mel_refs(args.data, w)
    w.write(os.path.join(OUT_DIR, "mel_refs.bin"))
    refs = tokenizer_refs(args.data)
    path = os.path.join(OUT_DIR, "tokenizer_refs.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(refs, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()

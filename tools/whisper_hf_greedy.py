#!/usr/bin/env python3
"""tools/whisper_hf_greedy.py - transformers' greedy transcription of audio files with a Hugging
Face Whisper checkpoint, with the settings `kiln transcribe` uses (first 30 s, language en,
task transcribe, no timestamps, greedy, at most 224 new tokens), printing the text and the
sampled token ids in `kiln transcribe --tokens`'s format, for comparing kiln with the reference
on real checkpoints (not run by CI; weights are not committed).

Usage: python3 tools/whisper_hf_greedy.py CHECKPOINT_DIR AUDIO...
Audio is read with soundfile and resampled to 16 kHz with soxr (as kiln does with libsndfile and
libsoxr), mean of the channels.
"""
import sys

import numpy as np
import soundfile as sf
import soxr
import torch
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration


def load(path):
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, sr, 16000, quality="HQ").astype(np.float32) if sr != 16000 else x


def main():
    ckpt, files = sys.argv[1], sys.argv[2:]
    model = WhisperForConditionalGeneration.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    fe = WhisperFeatureExtractor.from_pretrained(ckpt)
    multilingual = model.config.vocab_size >= 51865
    for path in files:
        feats = fe(load(path)[:480000], sampling_rate=16000, return_tensors="pt").input_features
        kw = dict(language="en", task="transcribe") if multilingual else {}
        with torch.no_grad():
            out = model.generate(feats, return_timestamps=False, do_sample=False, num_beams=1,
                                 max_new_tokens=224, **kw)
        seq = out.sequences[0] if hasattr(out, "sequences") else out[0]
        eot = model.generation_config.eos_token_id
        toks = [t for t in seq.tolist() if t < eot]  # drop the start sequence and <|endoftext|>
        from transformers import WhisperTokenizer
        text = WhisperTokenizer.from_pretrained(ckpt).decode(toks)
        print(text.strip())
        print(" ".join(str(t) for t in toks))


if __name__ == "__main__":
    main()

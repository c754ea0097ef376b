#!/usr/bin/env python3
"""tools/make_whisper_refs.py - reference outputs of transformers' Whisper for kiln's Whisper
model test (tests/model/test_whisper.c).

What it does: makes a random-weight Whisper of tiny geometry (d_model 64, 2 encoder + 2 decoder
layers, 2 heads, ffn 128; vocab 51865, 80 mels, 1500/448 positions, the rest from
/work/shared/data/whisper/tokenizer-hf/config.json) whose every tensor comes from a
counter-based generator that the C test reproduces bit for bit (gen() below, gen() in the
test), so no weights are committed: the test writes the same model.safetensors itself.
It then runs WhisperForConditionalGeneration (fp32, CPU) on a generated mel input and writes:
  tests/data/whisper-tiny-random/config.json    the tiny config (save_pretrained's)
  tests/data/whisper-tiny-random/tensors.txt    one line per checkpoint tensor:
                                                name lo hi rank dims... (uniform [lo, hi))
  tests/data/whisper_refs.bin (tests/refs.h format):
    mel_head            [80, 16] the input's first frames (the test regenerates all of it)
    encoder_out         [1500, 64] encoder output
    forced_tokens       [S] int32, forced_logits_cols [S, 6484] (logits[:, ::8]),
    forced_argmax       [S] int32 (argmax over the full vocabulary)
    greedy_tokens       [n] int32: generate(language="en", task="transcribe", no timestamps,
                        greedy, max_new_tokens=224), start sequence and <|endoftext|> removed
Random weights transcribe garbage; kiln must produce the identical garbage.
Generator: for tensor `name`, seed = FNV-1a-64(name); element i: z = splitmix64 step
(seed + (i + 1) * 0x9E3779B97F4A7C15), value = float32(lo + (hi - lo) * (z >> 11) * 2^-53),
computed in float64.
Run: python3 tools/make_whisper_refs.py   (needs torch, transformers, safetensors; not run by CI)
"""
import json
import math
import os
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_frontend_refs import RefWriter  # noqa: E402

DATA = os.path.join(HERE, "..", "tests", "data")
SHARED = os.path.join(HERE, "..", "..", "shared", "data", "whisper", "tokenizer-hf")
M64 = (1 << 64) - 1
START_EN = [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
EOT = 50257


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def gen(name, shape, lo, hi):
    n = int(np.prod(shape)) if len(shape) else 1
    seed = np.uint64(fnv1a64(name))
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = seed + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    return (lo + (hi - lo) * u).astype(np.float32).reshape(shape)


def tensor_range(name, shape):
    if name.endswith("layer_norm.weight"):
        return 0.8, 1.2
    if name.endswith(".bias"):
        return -0.1, 0.1
    fan_in = int(np.prod(shape[1:]))
    a = math.sqrt(3.0 / fan_in)
    return -a, a


def strip_start_and_eot(seq):
    """generate()'s sequence as the C tests compare it: without the English transcribe start
    sequence and the trailing <|endoftext|> tokens (kiln_whisper_result's tokens)."""
    seq = seq.tolist()
    if seq[:len(START_EN)] == START_EN:
        seq = seq[len(START_EN):]
    while seq and seq[-1] == EOT:
        seq = seq[:-1]
    return seq


def make_model():
    with open(os.path.join(SHARED, "config.json")) as f:
        cfg = json.load(f)
    cfg.update(d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
               decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
               num_hidden_layers=2, _name_or_path="kiln-whisper-tiny-random")
    config = WhisperConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(SHARED)
    ranges = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            lo, hi = tensor_range(name, tuple(p.shape))
            p.copy_(torch.from_numpy(gen(name, tuple(p.shape), lo, hi)))
            ranges[name] = (lo, hi)
    return model, ranges


def save_checkpoint(model, ranges, out_dir):
    """save_pretrained, then list what the file holds (tied tensors appear once)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tensors = load_file(os.path.join(tmp, "model.safetensors"))
        with open(os.path.join(tmp, "config.json")) as f:
            config = json.load(f)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    lines = []
    for name in sorted(tensors):
        arr = tensors[name]
        lo, hi = ranges[name]
        assert np.array_equal(arr, gen(name, arr.shape, lo, hi)), name
        lines.append("%s %r %r %d %s" % (name, lo, hi, arr.ndim, " ".join(str(d) for d in arr.shape)))
    with open(os.path.join(out_dir, "tensors.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("checkpoint:", len(lines), "tensors,", sum(t.size for t in tensors.values()), "parameters")


def main():
    torch.manual_seed(0)
    model, ranges = make_model()
    out_dir = os.path.join(DATA, "whisper-tiny-random")
    os.makedirs(out_dir, exist_ok=True)
    save_checkpoint(model, ranges, out_dir)

    mel = gen("input_features", (80, 3000), -1.0, 1.0)
    x = torch.from_numpy(mel)[None]
    w = RefWriter()
    w.add("mel_head", np.ascontiguousarray(mel[:, :16]))
    with torch.no_grad():
        enc = model.model.encoder(x).last_hidden_state[0].numpy()
        w.add("encoder_out", enc)
        forced = [50258, 50259, 50359, 50363, 440, 2068, 11, 293, 13, 1029]
        logits = model(input_features=x, decoder_input_ids=torch.tensor([forced])).logits[0].numpy()
        w.add("forced_tokens", np.array(forced, dtype=np.int32))
        w.add("forced_logits_cols", np.ascontiguousarray(logits[:, ::8]))
        w.add("forced_argmax", logits.argmax(-1).astype(np.int32))
        out = model.generate(x, language="en", task="transcribe", return_timestamps=False,
                             do_sample=False, num_beams=1, max_new_tokens=224)
    seq = strip_start_and_eot(out.sequences[0] if hasattr(out, "sequences") else out[0])
    print("greedy:", len(seq), "tokens:", seq[:12], "...")
    w.add("greedy_tokens", np.array(seq, dtype=np.int32))
    print("encoder_out std %.4f, logits std %.4f" % (enc.std(), logits.std()))
    w.write(os.path.join(DATA, "whisper_refs.bin"))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tools/ct2_to_safetensors.py - convert a CTranslate2 Whisper model.bin to a Hugging Face folder.

What it is: a converter from the faster-whisper (CTranslate2, WhisperSpec revision 3) layout to
the Hugging Face `WhisperForConditionalGeneration` layout: model.safetensors with HF tensor
names, config.json, generation_config.json, and the multilingual tokenizer files copied from
/work/shared/data/whisper/tokenizer-hf. Fused projections are split: CT2 self-attention
linear_0 is [q; k; v] (3d x d), cross-attention linear_1 is [k; v] (2d x d). The key projections
have no bias in Whisper (CT2 stores zeros there; we check they are zero and drop them).
What it is not: a general CT2 converter (Whisper only), nor a quantized-model converter (float16
and float32 only), and for English-only checkpoints (vocab 51864) it writes no tokenizer files.

Usage: python3 tools/ct2_to_safetensors.py CT2_DIR OUT_DIR [--check AUDIO]
CT2_DIR holds model.bin (joined from the split packages, see docs/real-checkpoints.md) and
config.json. --check transcribes AUDIO with the converted model (transformers) and with
faster-whisper on CT2_DIR, and prints both.
"""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ct2_inspect import read_ct2  # noqa: E402

TOKENIZER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                             "data", "whisper", "tokenizer-hf")
TOKENIZER_FILES = ["added_tokens.json", "merges.txt", "normalizer.json",
                   "preprocessor_config.json", "special_tokens_map.json", "tokenizer.json",
                   "tokenizer_config.json", "vocab.json"]


def split_rows(w, parts):
    """w: (parts*d, ...) -> list of `parts` arrays (d, ...)."""
    d = w.shape[0] // parts
    return [w[i * d:(i + 1) * d] for i in range(parts)]


def convert_attention(v, src, dst, out, fused_qkv):
    if fused_qkv:  # self-attention: linear_0 = [q; k; v], linear_1 = out
        q, k, vv = split_rows(v[f"{src}/linear_0/weight"], 3)
        qb, kb, vb = split_rows(v[f"{src}/linear_0/bias"], 3)
        out_name = "linear_1"
    else:  # cross-attention: linear_0 = q, linear_1 = [k; v], linear_2 = out
        q, qb = v[f"{src}/linear_0/weight"], v[f"{src}/linear_0/bias"]
        k, vv = split_rows(v[f"{src}/linear_1/weight"], 2)
        kb, vb = split_rows(v[f"{src}/linear_1/bias"], 2)
        out_name = "linear_2"
    if np.any(kb != 0):
        raise ValueError(f"{src}: key bias is not zero; Whisper has no key bias")
    out[f"{dst}.q_proj.weight"], out[f"{dst}.q_proj.bias"] = q, qb
    out[f"{dst}.k_proj.weight"] = k
    out[f"{dst}.v_proj.weight"], out[f"{dst}.v_proj.bias"] = vv, vb
    out[f"{dst}.out_proj.weight"] = v[f"{src}/{out_name}/weight"]
    out[f"{dst}.out_proj.bias"] = v[f"{src}/{out_name}/bias"]


def convert_norm(v, src, dst, out):
    out[f"{dst}.weight"] = v[f"{src}/gamma"]
    out[f"{dst}.bias"] = v[f"{src}/beta"]


def convert_ffn(v, src, prefix, out):
    convert_norm(v, f"{src}/layer_norm", f"{prefix}.final_layer_norm", out)
    for i, name in enumerate(["fc1", "fc2"]):
        out[f"{prefix}.{name}.weight"] = v[f"{src}/linear_{i}/weight"]
        out[f"{prefix}.{name}.bias"] = v[f"{src}/linear_{i}/bias"]


def count_layers(v, side):
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in v:
        n += 1
    return n


def convert_tensors(v):
    out = {}
    for c in ("conv1", "conv2"):
        out[f"model.encoder.{c}.weight"] = v[f"encoder/{c}/weight"]  # (d, c_in, 3)
        out[f"model.encoder.{c}.bias"] = v[f"encoder/{c}/bias"]
    out["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    for i in range(count_layers(v, "encoder")):
        src, dst = f"encoder/layer_{i}", f"model.encoder.layers.{i}"
        convert_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        convert_attention(v, f"{src}/self_attention", f"{dst}.self_attn", out, True)
        convert_ffn(v, f"{src}/ffn", dst, out)
    convert_norm(v, "encoder/layer_norm", "model.encoder.layer_norm", out)
    out["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]  # (vocab, d)
    out["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in range(count_layers(v, "decoder")):
        src, dst = f"decoder/layer_{i}", f"model.decoder.layers.{i}"
        convert_norm(v, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
        convert_attention(v, f"{src}/self_attention", f"{dst}.self_attn", out, True)
        convert_norm(v, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
        convert_attention(v, f"{src}/attention", f"{dst}.encoder_attn", out, False)
        convert_ffn(v, f"{src}/ffn", dst, out)
    convert_norm(v, "decoder/layer_norm", "model.decoder.layer_norm", out)
    return {k: np.ascontiguousarray(a) for k, a in out.items()}


def make_config(v, ct2_config):
    vocab, d = v["decoder/embeddings/weight"].shape
    english_only = vocab == 51864
    eot = 50256 if english_only else 50257
    sot = eot + 1
    ffn = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    return {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper",
        "activation_function": "gelu", "d_model": int(d), "vocab_size": int(vocab),
        "encoder_layers": count_layers(v, "encoder"), "decoder_layers": count_layers(v, "decoder"),
        "num_hidden_layers": count_layers(v, "encoder"),
        "encoder_attention_heads": int(v["encoder/num_heads"]),
        "decoder_attention_heads": int(v["decoder/num_heads"]),
        "encoder_ffn_dim": int(ffn), "decoder_ffn_dim": int(ffn),
        "num_mel_bins": int(v["encoder/conv1/weight"].shape[1]),
        "max_source_positions": int(v["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(v["decoder/position_encodings/encodings"].shape[0]),
        "scale_embedding": False, "tie_word_embeddings": True,
        "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
        "decoder_start_token_id": sot,
        "begin_suppress_tokens": ct2_config.get("suppress_ids_begin", [220, eot]),
        "suppress_tokens": ct2_config.get("suppress_ids", []),
        "torch_dtype": "float16",
    }, english_only


def make_generation_config(cfg, ct2_config, english_only):
    gen_path = os.path.join(TOKENIZER_DIR, "generation_config.json")
    with open(gen_path) as f:
        gen = json.load(f)  # language/task ids of the multilingual tokenizer
    gen["alignment_heads"] = ct2_config.get("alignment_heads", [])
    gen["suppress_tokens"] = cfg["suppress_tokens"]
    gen["begin_suppress_tokens"] = cfg["begin_suppress_tokens"]
    if english_only:
        gen = {"alignment_heads": gen["alignment_heads"], "is_multilingual": False,
               "suppress_tokens": cfg["suppress_tokens"],
               "begin_suppress_tokens": cfg["begin_suppress_tokens"],
               "bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
               "pad_token_id": cfg["pad_token_id"],
               "decoder_start_token_id": cfg["decoder_start_token_id"], "max_length": 448}
    return gen


def convert(ct2_dir, out_dir):
    from safetensors.numpy import save_file
    spec, revision, v, aliases = read_ct2(os.path.join(ct2_dir, "model.bin"))
    if spec != "WhisperSpec":
        raise ValueError(f"{ct2_dir}: spec {spec}, expected WhisperSpec")
    ct2_config = {}
    if os.path.exists(os.path.join(ct2_dir, "config.json")):
        with open(os.path.join(ct2_dir, "config.json")) as f:
            ct2_config = json.load(f)
    tensors = convert_tensors(v)
    used = {k for k in v if v[k].ndim > 0}
    print(f"{spec} r{revision}: {len(tensors)} HF tensors from {len(used)} CT2 tensors")
    cfg, english_only = make_config(v, ct2_config)
    os.makedirs(out_dir, exist_ok=True)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(make_generation_config(cfg, ct2_config, english_only), f, indent=2)
    if not english_only:
        for name in TOKENIZER_FILES:
            shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))


def check(ct2_dir, out_dir, audio):
    import soundfile as sf
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from faster_whisper import WhisperModel
    import whisper  # openai-whisper, for load_audio (ffmpeg) fallback-free resampling
    model = WhisperForConditionalGeneration.from_pretrained(out_dir, torch_dtype=torch.float32)
    missing = [n for n, p in model.named_parameters() if torch.all(p == 0)]
    print("parameters:", sum(p.numel() for p in model.parameters()), "all-zero tensors:", missing)
    try:
        samples = whisper.load_audio(audio)
    except Exception:  # no ffmpeg: soundfile + numpy resampling
        data, sr = sf.read(audio, dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        t = np.arange(0, len(mono) / sr, 1 / 16000)
        samples = np.interp(t, np.arange(len(mono)) / sr, mono).astype(np.float32)
    proc = WhisperProcessor.from_pretrained(out_dir)
    feats = proc(samples, sampling_rate=16000, return_tensors="pt").input_features
    ids = model.generate(feats, language="en", task="transcribe")
    print("transformers :", proc.batch_decode(ids, skip_special_tokens=True)[0].strip())
    fw = WhisperModel(ct2_dir, device="cpu", compute_type="float32")
    segs, _ = fw.transcribe(samples, language="en", beam_size=1)
    print("faster-whisper:", " ".join(s.text.strip() for s in segs))


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    convert(sys.argv[1], sys.argv[2])
    if "--check" in sys.argv:
        check(sys.argv[1], sys.argv[2], sys.argv[sys.argv.index("--check") + 1])


if __name__ == "__main__":
    main()

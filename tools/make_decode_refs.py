#!/usr/bin/env python3
"""tools/make_decode_refs.py - reference outputs of openai-whisper's decoding (timestamps, beam
search, long-form transcription, output writers) for tests/model/test_whisper_decode.c, computed
with the same weights kiln uses: the Hugging Face checkpoint (models/whisper-base) is loaded into
openai-whisper's own Whisper model (names mapped below, dims from config.json).

Writes:
  tests/data/longform.flac          ~70 s, 16 kHz mono PCM_16: jfk + test-set utterances + pauses,
                                    built deterministically from committed audio
  tests/data/decode_refs/whisper_base_decode.json   the reference results (tokens, segments)
  tests/data/decode_refs/longform.{txt,srt,vtt,tsv,json}   openai-whisper's writers' output

Not run by CI (needs torch, openai-whisper and the checkpoint). Audio is read with soundfile and
resampled with soxr HQ (as kiln_audio_load does with libsndfile + libsoxr), so both start from the
same samples. fp32 on the CPU.

Usage: python3 tools/make_decode_refs.py [models/whisper-base]
"""
import json
import os
import sys

import numpy as np
import soundfile as sf
import soxr
import torch
import whisper
from safetensors.torch import load_file
from whisper.model import ModelDimensions, Whisper
from whisper.utils import get_writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "decode_refs")
LONG = os.path.join(ROOT, "tests", "data", "longform.flac")
JFK = os.path.join(ROOT, "examples", "audio", "jfk.flac")
MINI = os.path.join(ROOT, "tests", "data", "testset-mini", "audio")
# pieces of the long file: (file or None for silence, seconds of silence after)
PIECES = ["0001_festival_ked_diphone", "0002_festival_cmu_us_slt_arctic_hts", "0014_flite_rms",
          "0016_espeak-ng_en-gb-x-gbclan", "0046_espeak-ng_en-us-f3", "0048_espeak-ng_en-gb-scotland",
          "0052_espeak-ng_en-gb-x-rp", "0003_flite_kal"]


def load(path):
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    return soxr.resample(x, sr, 16000, quality="HQ").astype(np.float32) if sr != 16000 else x


def hf_to_openai(ckpt):
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    dims = ModelDimensions(n_mels=cfg["num_mel_bins"], n_audio_ctx=cfg["max_source_positions"],
                           n_audio_state=cfg["d_model"], n_audio_head=cfg["encoder_attention_heads"],
                           n_audio_layer=cfg["encoder_layers"], n_vocab=cfg["vocab_size"],
                           n_text_ctx=cfg["max_target_positions"], n_text_state=cfg["d_model"],
                           n_text_head=cfg["decoder_attention_heads"], n_text_layer=cfg["decoder_layers"])
    hf = load_file(os.path.join(ckpt, "model.safetensors"))
    sub = [("model.", ""), ("layers.", "blocks."), ("self_attn_layer_norm", "attn_ln"),
           ("encoder_attn_layer_norm", "cross_attn_ln"), ("self_attn.", "attn."), ("encoder_attn.", "cross_attn."),
           ("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "out"), ("fc1", "mlp.0"),
           ("fc2", "mlp.2"), ("final_layer_norm", "mlp_ln"), ("embed_tokens.weight", "token_embedding.weight"),
           ("encoder.layer_norm", "encoder.ln_post"), ("decoder.layer_norm", "decoder.ln")]
    sd = {}
    for name, t in hf.items():
        if name.startswith("proj_out"):
            continue  # tied to the token embedding
        n = name
        for a, b in sub:
            n = n.replace(a, b)
        n = n.replace("embed_positions.weight", "positional_embedding")
        sd[n] = t.float()
    model = Whisper(dims)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(m == "alignment_heads" for m in missing), missing
    return model.eval()


def make_long():
    sr = 16000
    parts = [load(JFK), np.zeros(sr, np.float32)]
    for i, p in enumerate(PIECES):
        parts += [load(os.path.join(MINI, p + ".flac")), np.zeros(int(sr * (0.7 + 0.4 * (i % 3))), np.float32)]
    parts += [np.zeros(3 * sr, np.float32), load(JFK)]
    x = np.concatenate(parts)
    q = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
    sf.write(LONG, q, sr, subtype="PCM_16", format="FLAC")
    return load(LONG)


def segs(result):
    return [{k: s[k] for k in ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                               "compression_ratio", "no_speech_prob")} for s in result["segments"]]


def main():
    ckpt = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "whisper-base")
    torch.manual_seed(0)
    model = hf_to_openai(ckpt)
    os.makedirs(OUT, exist_ok=True)
    jfk = load(JFK)
    refs = {}
    # language detection on the first window
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(jfk), model.dims.n_mels)
    _, probs = model.detect_language(mel)
    refs["jfk_language"] = {k: v for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:5]}
    # one window, decode(): greedy with timestamps, greedy without, beam 5 without timestamps
    for name, opt in [("jfk_decode_ts", dict()), ("jfk_decode_beam5", dict(beam_size=5, without_timestamps=True)),
                      ("jfk_decode_beam5_ts", dict(beam_size=5))]:
        r = whisper.decode(model, mel, whisper.DecodingOptions(language="en", fp16=False, **opt))
        refs[name] = dict(tokens=r.tokens, text=r.text, avg_logprob=r.avg_logprob, no_speech_prob=r.no_speech_prob,
                          compression_ratio=r.compression_ratio)
    # a sampled decode (T = 0.5, best_of 3), for a sanity check only (the RNGs differ)
    r = whisper.decode(model, mel, whisper.DecodingOptions(language="en", fp16=False, temperature=0.5, best_of=3))
    refs["jfk_sampled_text"] = r.text
    # transcribe(): timestamps, beam 5, an initial prompt
    for name, kw in [("jfk_transcribe", dict()), ("jfk_transcribe_beam5", dict(beam_size=5)),
                     ("jfk_transcribe_prompt", dict(initial_prompt="President Kennedy's inaugural address."))]:
        r = whisper.transcribe(model, jfk, language="en", fp16=False, **kw)
        refs[name] = dict(text=r["text"], segments=segs(r))
    # long form, conditioned on the previous text (the defaults)
    long = make_long()
    r = whisper.transcribe(model, long, language="en", fp16=False, condition_on_previous_text=True)
    refs["long_transcribe"] = dict(text=r["text"], segments=segs(r), n_samples=len(long))
    for fmt in ("txt", "srt", "vtt", "tsv", "json"):
        get_writer(fmt, OUT)(r, "longform.flac", {"max_line_width": None, "max_line_count": None,
                                                  "highlight_words": False})
    with open(os.path.join(OUT, "whisper_base_decode.json"), "w") as f:
        json.dump(refs, f, indent=1)
    print(json.dumps({k: v.get("text") if isinstance(v, dict) else v for k, v in refs.items()}, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tools/whisper_geometry_ref.py - a random-weight Whisper checkpoint of a real geometry and
transformers' outputs on it, for tests/gpu/test_whisper_geometry.c (driven per geometry by
tests/gpu/whisper_geometry.sh; not run by CI, which has no GPU).

usage: python3 tools/whisper_geometry_ref.py GEOMETRY OUT_DIR [--device cuda|cpu] [--seed N]
       [--tries N] [--forced N] [--max-new-tokens N] [--tokenizer DIR]
GEOMETRY: tiny (d_model 384, 4+4 layers, 6 heads, ffn 1536, 80 mels), large-v3 (1280, 32+32,
20 heads, ffn 5120, 128 mels), large-v3-turbo (large-v3 with 4 decoder layers). The vocabulary is
the 51865-token one of the tokenizer files at hand (large-v3's own has 51866).

What it does, all from --seed (default 0):
  - input: a mel [1, n_mels, 3000], uniform in [-1, 1.5) from numpy's generator;
  - builds WhisperForConditionalGeneration (fp32, eager attention) on the device and
    re-initializes every parameter as tools/make_whisper_refs.py's ranges do (uniform, std
    1/sqrt(fan_in); LayerNorm weights in [0.8, 1.2], biases in [-0.1, 0.1]) from a seeded torch
    generator, the decoder's position embeddings larger (POSITION_STD below): transformers'
    default init (std 0.02) gives nearly flat logits, whose argmax ties would make the
    comparisons meaningless; with these the logits have std ~1;
  - fp32 greedy tokens (TF32 off; language en, transcribe, no timestamps, greedy, max_new_tokens
    224, i.e. kiln_whisper_transcribe's defaults; the start sequence and <|endoftext|> stripped
    as make_whisper_refs.py does), by an explicit loop of forward passes with generate()'s
    suppression (see greedy(): generate() itself gave wrong tokens once), generate()'s
    agreement with it printed and the margin between the best and
    the second-best processed score at each step. Weights whose greedy tokens are degenerate
    (too few, one token repeated) or have a near-tie step are replaced by the next seed's (at
    most --tries seeds; exit 1 if none does), so the test cannot pass vacuously nor fail on a
    coin toss;
  - saves the model (fp32 safetensors, save_pretrained) with the tokenizer files and the
    tokenizer's generation_config.json into OUT_DIR/ckpt;
  - fp32 logits of a forced sequence: the start sequence, the greedy tokens, then seeded random
    text tokens, --forced (400) tokens after the start sequence (of the 444 positions left: the
    longer, the more rows the argmax agreement counts);
  - fp16 (model.half(), SDPA) on the same forced sequence: its logits' normalized mean squared
    error against the fp32 logits (sum (a - b)^2 / sum b^2 over all rows and the whole
    vocabulary, in float64) and how many rows' argmax (first maximum) agree with fp32's: the
    bar kiln's fp16 engines must meet; and, for reading the numbers, the nmse of fp32 compute
    with fp16-rounded weights (the part of the error both share).

OUT_DIR/refs.bin (tests/refs.h format, RefWriter of make_frontend_refs.py):
  geometry        int32 [7]: d_model, encoder_layers, decoder_layers, heads, ffn, n_mels, vocab
  mel             float32 [n_mels, 3000]
  greedy_tokens   int32 [n]; greedy_margins float32 [n] (best - second-best processed score)
  max_new_tokens  int32 [1] (generate()'s, for kiln's decoding)
  forced_tokens   int32 [S]; forced_logits float32 [S, vocab] (fp32)
  hf_fp16_nmse    float64 [1]; hf_fp16_agree int32 [1] (rows of S whose argmax agrees)
  hf_fp16_argmax  int32 [S]: transformers' fp16 argmax per row (the test counts agreement on
                  the rows that are not near-ties at fp16 precision, for both)
  fp16_weights_nmse float64 [1]: the fp32 model with its weights and input rounded to fp16,
                  against the fp32 logits: the share of the fp16 error that every fp16 engine
                  has (the rest comes from rounding activations), printed by the test
Disk: the large-v3 checkpoint is 6.2 GB (fp32); the driver deletes OUT_DIR afterwards.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_frontend_refs import RefWriter  # noqa: E402
from make_whisper_refs import EOT, START_EN, strip_start_and_eot, tensor_range  # noqa: E402

GEOMETRIES = {
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, heads=6, ffn=1536, n_mels=80),
    "large-v3": dict(d_model=1280, encoder_layers=32, decoder_layers=32, heads=20, ffn=5120, n_mels=128),
    "large-v3-turbo": dict(d_model=1280, encoder_layers=32, decoder_layers=4, heads=20, ffn=5120, n_mels=128),
}
# Decoder position embeddings with std POSITION_STD * sqrt(decoder_layers) (not 1/sqrt(d_model)):
# each pre-LN layer adds a variance of ~2 to the residual stream, and with fan-in-scaled
# embeddings (variance 1/d_model) a step's state differs too little from the previous one's
# (the cross-attention dominates): greedy decoding repeats one token. With these the positions
# are about a fifth of the stream's variance (tiny: 49 distinct of 100 greedy tokens; large-v3's
# decoder: 35 of 60, measured on the CPU).
POSITION_STD = 0.75
# fp32 greedy tokens are only comparable where no step is a near-tie: seeds whose greedy steps
# have a best - second-best score margin below this (logits have std ~1; fp32 logit errors of a
# different kernel order are ~1e-5) are skipped for the next seed (--tries)
MIN_GREEDY_MARGIN = 2e-4
# where the tokenizer files are: next to the repository (the worktrees), the staged copy of
# scripts/gpu_stage.sh, a shared/ folder inside the repository, the shared folder
TOKENIZER_DIRS = [os.path.join(HERE, "..", "..", "shared", "data", "whisper", "tokenizer-hf"),
                  os.path.join(HERE, "..", ".gpu-stage", "shared", "data", "whisper", "tokenizer-hf"),
                  os.path.join(HERE, "..", "shared", "data", "whisper", "tokenizer-hf"),
                  "/work/shared/data/whisper/tokenizer-hf"]


def find_tokenizer(arg):
    for d in ([arg] if arg else TOKENIZER_DIRS):
        if os.path.exists(os.path.join(d, "vocab.json")):
            return d
    sys.exit("no tokenizer files (vocab.json) in %s: pass --tokenizer DIR" % (arg or ", ".join(TOKENIZER_DIRS)))


def make_model(geometry, tok_dir, device, seed):
    g = GEOMETRIES[geometry]
    with open(os.path.join(tok_dir, "config.json")) as f:
        cfg = json.load(f)
    for alias in ("num_hidden_layers", "hidden_size", "num_attention_heads", "_name_or_path"):
        cfg.pop(alias, None)  # aliases would override the geometry below
    cfg.update(d_model=g["d_model"], encoder_layers=g["encoder_layers"], decoder_layers=g["decoder_layers"],
               encoder_attention_heads=g["heads"], decoder_attention_heads=g["heads"],
               encoder_ffn_dim=g["ffn"], decoder_ffn_dim=g["ffn"], num_mel_bins=g["n_mels"])
    config = WhisperConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    config._attn_implementation = "eager"
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == \
        (g["d_model"], g["encoder_layers"], g["decoder_layers"]), config
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig.from_pretrained(tok_dir)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied proj_out appears once (as embed_tokens)
            lo, hi = tensor_range(name, tuple(p.shape))
            if name == "model.decoder.embed_positions.weight":
                hi = POSITION_STD * math.sqrt(3.0 * g["decoder_layers"])
                lo = -hi
            p.copy_(torch.rand(p.shape, generator=gen, device=device, dtype=torch.float32) * (hi - lo) + lo)
    return model, g


def greedy(model, x, max_new_tokens):
    """fp32 greedy tokens (start sequence and <|endoftext|> stripped) and, per sampled token, the
    margin between the best and the second-best processed score: an explicit loop of full
    forward passes (no KV cache) with generate()'s processors (suppress_tokens at every step,
    begin_suppress_tokens at the first), i.e. greedy decoding by its definition. generate()
    itself is not used for the tokens: transformers 5.17's generate on CUDA gave, for the
    large-v3-turbo geometry (seed 0) with max_new_tokens 224, first-step logits up to 3.2 away
    from its own forward pass and from generate with max_new_tokens 2 (which agree with each
    other and with kiln); generate_check() below reports whether generate agrees."""
    gc = model.generation_config
    suppress = torch.tensor(list(gc.suppress_tokens or []), dtype=torch.long, device=x.device)
    begin = torch.tensor(list(gc.begin_suppress_tokens or []), dtype=torch.long, device=x.device)
    enc = model.model.encoder(x)
    ids = list(START_EN)
    tokens, step_margins = [], []
    for step in range(max_new_tokens):
        dec = torch.tensor([ids], device=x.device)
        row = model(encoder_outputs=enc, decoder_input_ids=dec).logits[0, -1].float().clone()
        row[suppress] = -math.inf
        if step == 0:
            row[begin] = -math.inf
        top2 = torch.topk(row, 2).values
        tok = int(row.argmax())
        if tok == EOT:
            break
        tokens.append(tok)
        step_margins.append(float(top2[0] - top2[1]))
        ids.append(tok)
    return tokens, np.array(step_margins, dtype=np.float32)


def generate_check(model, x, max_new_tokens, tokens):
    """how many leading tokens of transformers' generate() (greedy, the same settings) equal the
    explicit loop's: for the log only (see greedy())"""
    out = model.generate(x, language="en", task="transcribe", return_timestamps=False, do_sample=False,
                         num_beams=1, max_new_tokens=max_new_tokens)
    seq = out[0].cpu() if not hasattr(out, "sequences") else out.sequences[0].cpu()
    gen = strip_start_and_eot(seq)
    same = 0
    while same < min(len(gen), len(tokens)) and gen[same] == tokens[same]:
        same += 1
    return same, len(gen)


def unusable(tokens, step_margins):
    """why greedy tokens would make a weak or fragile test (None when they are fine)"""
    tail = tokens[len(tokens) // 2:]
    if len(tokens) < 20 or len(set(tokens)) < 5 or len(set(tail)) < 2:
        return "degenerate greedy tokens (%d tokens, %d distinct)" % (len(tokens), len(set(tokens)))
    if step_margins.min() < MIN_GREEDY_MARGIN:
        return "a near-tie in greedy decoding (step %d: margin %.3g < %g)" % (
            int(step_margins.argmin()), step_margins.min(), MIN_GREEDY_MARGIN)
    return None


def save_checkpoint(model, tok_dir, path):
    model.save_pretrained(path, safe_serialization=True)
    for f in os.listdir(tok_dir):
        if not os.path.exists(os.path.join(path, f)):  # config.json and generation_config.json: the model's
            shutil.copy(os.path.join(tok_dir, f), path)


def nmse(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(((a - b) ** 2).sum() / max((b * b).sum(), 1e-30))


def margins(rows):
    """best - second-best of each row of a [n, vocab] array"""
    top2 = np.sort(rows, axis=-1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]).astype(np.float32)


def stats(x):
    if len(x) == 0:
        return "-"
    return "min %.3g, 5%% %.3g, median %.3g" % (np.min(x), np.percentile(x, 5), np.median(x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("geometry", choices=sorted(GEOMETRIES))
    ap.add_argument("out_dir")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--forced", type=int, default=400, help="forced tokens after the start sequence")
    ap.add_argument("--max-new-tokens", type=int, default=224)
    ap.add_argument("--tries", type=int, default=8, help="weights seeds tried (seed, seed + 1, ...)")
    ap.add_argument("--tokenizer", default=None, help="folder with the 51865-token tokenizer files")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device for torch: use --device cpu")
    # fp32 as fp32: no TF32 in matmuls or convolutions
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tok_dir = find_tokenizer(args.tokenizer)
    os.makedirs(args.out_dir, exist_ok=True)
    dev = torch.device(args.device)
    t0 = time.time()
    times = []

    def lap(what):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append("%s %.1f s" % (what, time.time() - lap.t))
        lap.t = time.time()
    lap.t = t0

    rng = np.random.default_rng(args.seed)
    g = GEOMETRIES[args.geometry]
    mel = rng.uniform(-1.0, 1.5, (g["n_mels"], 3000)).astype(np.float32)
    x = torch.from_numpy(mel)[None].to(dev)
    model = None
    for seed in range(args.seed, args.seed + args.tries):
        del model  # before the next one is made (large-v3: 6.2 GB)
        model, g = make_model(args.geometry, tok_dir, dev, seed)
        with torch.no_grad():
            tokens, step_margins = greedy(model, x, args.max_new_tokens)
        lap("model + fp32 generate (seed %d)" % seed)
        why = unusable(tokens, step_margins)
        if why is None:
            break
        print("weights seed %d: %s; trying the next seed" % (seed, why), flush=True)
    if why is not None:
        sys.exit("no usable weights seed in %d..%d: %s" % (args.seed, seed, why))
    vocab = model.config.vocab_size
    with torch.no_grad():
        gen_same, gen_n = generate_check(model, x, args.max_new_tokens, tokens)
    lap("generate check")
    save_checkpoint(model, tok_dir, os.path.join(args.out_dir, "ckpt"))
    lap("save")

    with torch.no_grad():
        fill = rng.integers(0, EOT, size=args.forced).tolist()  # text tokens
        forced = START_EN + (tokens + fill)[:args.forced]
        ids = torch.tensor([forced], device=dev)
        ref = model(input_features=x, decoder_input_ids=ids).logits[0].float().cpu().numpy()
        lap("fp32 forced")
        # the part of any fp16 engine's error that the fp16 weights (and input) alone cause: the
        # fp32 model with its weights rounded to fp16 (then model.half() below is exact)
        for p in model.parameters():
            p.copy_(p.half().float())
        floor = model(input_features=x.half().float(), decoder_input_ids=ids).logits[0].float().cpu().numpy()
        model.half()
        model.set_attn_implementation("sdpa")
        half = model(input_features=x.half(), decoder_input_ids=ids).logits[0].float().cpu().numpy()
        lap("fp16 forced")
    floor_nmse = nmse(floor, ref)
    hf_nmse = nmse(half, ref)
    hf_agree = int((half.argmax(-1) == ref.argmax(-1)).sum())

    w = RefWriter()
    w.add("geometry", np.array([g["d_model"], g["encoder_layers"], g["decoder_layers"], g["heads"], g["ffn"],
                                g["n_mels"], vocab], dtype=np.int32))
    w.add("mel", mel)
    w.add("greedy_tokens", np.array(tokens, dtype=np.int32))
    w.add("greedy_margins", step_margins)
    w.add("max_new_tokens", np.array([args.max_new_tokens], dtype=np.int32))
    w.add("forced_tokens", np.array(forced, dtype=np.int32))
    w.add("forced_logits", np.ascontiguousarray(ref, dtype=np.float32))
    w.add("hf_fp16_nmse", np.array([hf_nmse], dtype=np.float64))
    w.add("hf_fp16_agree", np.array([hf_agree], dtype=np.int32))
    w.add("hf_fp16_argmax", half.argmax(-1).astype(np.int32))
    w.add("fp16_weights_nmse", np.array([floor_nmse], dtype=np.float64))
    w.write(os.path.join(args.out_dir, "refs.bin"))
    lap("write")

    n_params = sum(p.numel() for p in model.parameters())
    forced_margins = margins(ref)
    print("reference %s (%s, weights seed %d): %.1fM parameters, vocab %d; transformers %s, torch %s" % (
        args.geometry, dev.type, seed, n_params / 1e6, vocab, __import__("transformers").__version__,
        torch.__version__))
    print("  greedy: %d tokens, %d distinct: %s ..." % (len(tokens), len(set(tokens)), tokens[:10]))
    print("  greedy step margins (best - second-best processed score): %s" % stats(step_margins))
    print("  transformers generate(): %d tokens, the first %d equal to the explicit greedy loop's%s" % (
        gen_n, gen_same, "" if gen_same == len(tokens) == gen_n else " (generate differs: the test uses the loop's)"))
    print("  forced: %d tokens; fp32 logits std %.3f; top-1/top-2 margins %s; %d rows below 1e-3" % (
        len(forced), ref.std(), stats(forced_margins), int((forced_margins < 1e-3).sum())))
    print("  transformers fp16 vs fp32: nmse %.3g, argmax agrees on %d of %d rows; fp16 weights alone: nmse %.3g" % (
        hf_nmse, hf_agree, len(forced), floor_nmse))
    print("  times: %s; total %.1f s" % (", ".join(times), time.time() - t0))

if __name__ == "__main__":
    main()

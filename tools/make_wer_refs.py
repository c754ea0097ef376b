#!/usr/bin/env python3
"""tools/make_wer_refs.py - reference word error rates from jiwer, for tests/unit/test_wer.c.

What it is: writes tests/data/wer_cases.tsv with hand-made and random (fixed seed) sentence
pairs, one a line: `ref<TAB>hyp<TAB>hits<TAB>subs<TAB>dels<TAB>ins<TAB>ops`, where ops has one
letter per alignment step from jiwer's alignment (= match, s substitution, d deletion,
i insertion), and a last line `#corpus<TAB>wer` with jiwer's corpus WER over all pairs.
References are never empty (jiwer rejects empty references). Words are single-space separated.
What it is not: a test of the text normalizer.
Usage: python3 tools/make_wer_refs.py [out.tsv]
"""
import os
import random
import sys

import jiwer

HAND = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on the mat", "the cat sat on mat"),
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("the cat sat on the mat", "a cat sat on the big mat"),
    ("a b", "b c"),
    ("a b c", "c b a"),
    ("hello world", ""),
    ("one", "two three four"),
    ("and so my fellow americans", "and so my fellow americans ask not"),
    ("x y z x y z", "x z y x z y"),
    ("a a a a", "a a"),
    ("a", "a a a a"),
    ("the quick brown fox", "quick brown the fox"),
    ("i am going to go", "im going to go"),
]


def random_pairs(n, seed=7):
    rng = random.Random(seed)
    vocab = ["a", "b", "c", "d", "the", "cat", "dog", "x"]
    pairs = []
    for _ in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 14))]
        if rng.random() < 0.3:
            hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 14))]
        else:  # random edits of the reference
            hyp = list(ref)
            for _ in range(rng.randint(0, 4)):
                op = rng.choice("sdi")
                pos = rng.randint(0, max(len(hyp) - 1, 0))
                if op == "s" and hyp:
                    hyp[pos] = rng.choice(vocab)
                elif op == "d" and hyp:
                    del hyp[pos]
                else:
                    hyp.insert(pos, rng.choice(vocab))
        pairs.append((" ".join(ref), " ".join(hyp)))
    return pairs


def ops_string(alignment):
    letters = {"equal": "=", "substitute": "s", "replace": "s", "delete": "d", "insert": "i"}
    out = []
    for chunk in alignment:
        n = (chunk.hyp_end_idx - chunk.hyp_start_idx if chunk.type == "insert"
             else chunk.ref_end_idx - chunk.ref_start_idx)
        out.append(letters[chunk.type] * n)
    return "".join(out)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "wer_cases.tsv")
    pairs = HAND + random_pairs(400)
    rows = []
    for ref, hyp in pairs:
        o = jiwer.process_words(ref, hyp)
        rows.append(f"{ref}\t{hyp}\t{o.hits}\t{o.substitutions}\t{o.deletions}\t{o.insertions}\t"
                    f"{ops_string(o.alignments[0])}\n")
    corpus = jiwer.process_words([r for r, _ in pairs], [h for _, h in pairs]).wer
    rows.append(f"#corpus\t{corpus!r}\n")
    with open(out, "w") as f:
        f.write("".join(rows))
    print(f"wrote {len(pairs)} pairs to {out}; corpus WER {corpus:.6f} (jiwer {jiwer.__version__ if hasattr(jiwer, '__version__') else '?'})",
          file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""tools/make_textnorm_refs.py - reference outputs of Whisper's English text normalizer.

What it is: runs openai-whisper's EnglishTextNormalizer on a fixed list of inputs, checks that
transformers' EnglishTextNormalizer (same english.json) gives the same output, and writes
tests/data/textnorm_cases.tsv: one case a line, `input<TAB>expected`, with backslash escapes
(\\\\, \\t, \\n, \\r) so that tabs and newlines survive. The C test tests/unit/test_textnorm.c
compares kiln's normalizer with every line. Inputs the Python reference itself rejects (it
asserts on a few malformed number sequences) are reported and left out.
What it is not: a fuzzer; the random part is a fixed-seed mix of the same vocabulary.
Usage: python3 tools/make_textnorm_refs.py [out.tsv]
"""
import json
import os
import random
import sys

from whisper.normalizers import EnglishTextNormalizer

CASES = [
    # empty, whitespace, punctuation
    "", " ", "   ", "\t\n", ".", "...", "Hello, world!", "Hello.", "  Hello   world  ",
    "What?! No way...", "a-b_c/d\\e", "semi;colon:colon", "quote \"this\" and 'that'",
    "tab\tseparated\twords", "line\nbreak", "hello\u00a0world", "wait\u2014what\u2026",
    # brackets, parentheses, fillers
    "[MUSIC] hello there", "<|endoftext|> hi", "hello (laughs) world", "(inaudible)",
    "um, I think, uh, yes", "Hmm. Mhm. Mm-hmm.", "mmm good", "umbrella and uhura",
    "[Applause] (Applause) Thanks", "a [b] c (d) e <f> g", "unclosed [bracket here",
    "nested ((inner) outer)",
    # contractions
    "I won't go", "You can't stop", "Let's go", "ain't nothing", "y'all come back",
    "I wanna go", "gotta run", "gonna win", "i'ma leave", "imma leave", "woulda coulda shoulda",
    "Yes ma'am", "I'd been there", "he's been there", "she'd gone", "it's gone", "we'd done it",
    "he's got it", "don't", "they're", "it's", "I'd", "we'll", "I've", "I'm", "isn't it",
    "the cat's toy", "James's book", "rock 'n' roll", "o'clock", "he 's here",
    "I don\u2019t know", "WON'T", "Can't Won't Shan't",
    # titles
    "Mr. Smith", "Mrs. Jones", "Dr. Who", "St. Louis", "Prof. X", "Capt. Hook", "Gov. Brown",
    "Gen. Lee", "Sen. Adams", "Rep. Lewis", "Pres. Lincoln", "Rev. King", "Hon. Judge",
    "Asst. Manager", "Assoc. Dean", "Lt. Dan", "Col. Mustard", "John Jr.", "John Sr.",
    "Esq. Bob", "Ald. Kim", "mrs smith and mr smith",
    # British spellings
    "The colour of the harbour", "I realise the organisation's behaviour", "centre theatre",
    "travelling cheque", "analyse the catalogue", "grey aluminium aeroplane",
    "favourite neighbours", "defence licence",
    # spelled-out numbers
    "one", "two", "ten", "eleven", "twenty", "twenty five", "twenty-five", "ninety nine",
    "one hundred", "one hundred and two", "two hundred fifty", "three thousand",
    "three thousand four hundred and fifty six", "a million", "one million two hundred thousand",
    "five billion", "seven trillion", "two decillion", "nine hundred ninety nine decillion",
    "one two three", "one oh one", "zero zero seven", "oh", "one and two",
    "nineteen eighty four", "twenty twenty", "two thousand and twenty",
    "one twenty three", "twenty three hundred", "twelve hundred",
    "first", "second", "third", "fourth", "fifth", "twelfth", "twenty first", "one hundredth",
    "thirtieth", "the nineteenth century", "ones", "twos", "sixes", "twenties", "the nineties",
    "hundreds of people", "thousands", "millionth", "zeroth",
    "point five", "three point one four", "zero point five", "one point oh five",
    "two and a half", "and a half", "a half", "three and a half million", "banana and a half",
    "double seven", "triple zero", "double o seven", "double trouble", "one double two",
    "minus five", "negative ten", "plus three", "positive", "minus the tax",
    "ten percent", "fifty per cent", "per person", "percent", "5 percent",
    # currencies
    "five dollars", "one dollar", "twenty dollars and fifty cents", "two dollars and seven cents",
    "$5", "$5.50", "$20 million", "£10", "€3", "three pounds", "ten euros", "fifty cents",
    "$0.05", "$0.5", "one cent", "a dollar", "dollars", "$2 and ¢7", "¢50",
    "it cost $1,000,000", "5,000 people", "1,2,3",
    # arabic numbers and suffixes
    "1", "1s", "the 1960s", "274th", "32nd", "1st", "2nd place", "3rd", "4th of July",
    "room 101", "version 2.0", "192.168.0.1", "3.14", "0.5", "007", "1.0", "2.50",
    "10am", "5pm", "covid19", "mp3 player", "a1b2c3", "1.5 million", "2.5 thousand",
    "1.23456 thousand", "0 point five", "12 twenty", "5 5", "100 and 2",
    "123456789012345678901234567890 one", "one two three four five six seven eight nine one two three four five six seven eight nine one two three four five six seven eight nine decillion",
    # diacritics and non-ASCII
    "café", "naïve résumé", "Ångström", "œuvre", "Straße", "smørrebrød", "Łódź", "Þór",
    "Đorđe", "æsir", "Ǣ ǽ ǿ", "ﬁne ﬂowers", "Ｆｕｌｌｗｉｄｔｈ １２３", "x² + y²", "½ cup",
    "™ and ©", "naïve’s", "İstanbul", "ΟΔΟΣ", "Москва", "北京", "한국어", "日本語です",
    "😀 emoji", "e\u0301", "ｄｏｕｂｌｅ ｓｅｖｅｎ", "٣ apples", "१२ mangoes", "Ⅻ", "Ⓐ",
    # mixed
    "Mr. Smith paid twenty-five dollars.", "Dr. Jones, Ph.D., arrived at 3:30 p.m.",
    "We need 2 and a half cups", "He's 6'2\" tall", "It's 50% off!", "100%", "50 %",
    "The U.S.A. and the U.K.", "e.g. i.e. etc.", "www.example.com", "user@example.com",
    "#hashtag @mention", "C++ and C#", "A&B", "the year 2000", "in 1999 and 2000",
    "On January 1st, 2020 at 10:30", "I have 3 apples and two oranges",
    "twenty five thousand dollars", "one hundred twenty three point four five",
]

VOCAB = ["one", "two", "five", "twelve", "twenty", "fifty", "hundred", "thousand", "million",
         "and", "a", "half", "point", "double", "triple", "oh", "zero", "dollars", "cents",
         "percent", "per", "cent", "minus", "first", "third", "twenties", "hundredth", "the",
         "cat", "mr", "won't", "colour", "$5", "10", "3.5", "1st", "um", "(aside)", "[x]", "é"]


def random_cases(n, seed=1234):
    rng = random.Random(seed)
    return [" ".join(rng.choice(VOCAB) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def escape(s):
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "textnorm_cases.tsv")
    ow = EnglishTextNormalizer()
    hf = None
    try:
        from transformers.models.whisper.english_normalizer import EnglishTextNormalizer as HF
        import whisper
        path = os.path.join(os.path.dirname(whisper.__file__), "normalizers", "english.json")
        with open(path) as f:
            hf = HF(json.load(f))
    except ImportError as e:
        print(f"transformers not available ({e}); skipping the cross-check", file=sys.stderr)
    rows, disagreements = [], 0
    for text in CASES + random_cases(60):
        try:
            want = ow(text)
        except Exception as e:  # the reference asserts on a few malformed sequences
            print(f"reference raised {type(e).__name__} on {text!r}; case left out", file=sys.stderr)
            continue
        if hf is not None and hf(text) != want:
            disagreements += 1
            print(f"transformers differs on {text!r}: {hf(text)!r} vs {want!r}", file=sys.stderr)
        rows.append(f"{escape(text)}\t{escape(want)}\n")
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(rows))
    print(f"wrote {len(rows)} cases to {out}; transformers disagreements: {disagreements}",
          file=sys.stderr)


if __name__ == "__main__":
    main()

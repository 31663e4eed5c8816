#!/usr/bin/env python3
"""Writes ids.jsonl: RoBERTa token ids (no special tokens) of hard texts and a sample of GLUE text, made by the
GPT-2/RoBERTa byte-level BPE of bench/reference.py (the same regex and merge loop as HF's RobertaTokenizer).
Rows: every hand-written case below, the shortest GLUE cells that between them hold every non-ASCII character
of GLUE, and 400 ASCII cells drawn with a fixed seed. Run from the repository root: /usr/bin/python3 test/MlNetPeft.Tests/Fixtures/tokenizer/make_ids.py
"""
import json, os, random, sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[".."] * 4))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from reference import BPE  # noqa: E402

CASES = [
    "", " ", "   leading", "trailing   ", "multiple   spaces  here", "tabs\tand\nnewlines\r\n", "\u00a0nbsp\u00a0",
    "zero\u200bwidth", "don't I'll we've they're she'd it's", "DON'T I'LL", "numbers 123456 3.14 1,000",
    "\u0661\u0662\u0663 arabic digits", "\u216b roman", "\u00bd fraction", "x\u00b2", "naïve café", "Ünïcödé",
    "e\u0301 and \u0301combining", "\ufb01 ligature", "Ω ω", "\u01c4 title case", "日本語のテキスト", "한국어",
    "emoji 😀👍🏽 and 👨\u200d👩\u200d👧", "math 𝐀𝐁𝐂 bold", "a𝐀b", "\U00020000\U00020001 ext-B",
    "<s> special </s> tokens <mask>", "\ufeffbyte order mark", "ctrl\x01\x7fchars",
]


def cells():
    glue = os.path.join(ROOT, "data", "glue")
    for task in sorted(d for d in os.listdir(glue) if os.path.isdir(os.path.join(glue, d))):
        for split in sorted(os.listdir(os.path.join(glue, task))):
            with open(os.path.join(glue, task, split), encoding="utf-8") as f:
                for line in f:
                    yield from (c for c in line.rstrip("\n").split("\t") if len(c) > 3)


def main():
    bpe = BPE(os.path.join(ROOT, "models", "roberta-mini"))
    texts = sorted(set(cells()))
    wide, seen = [], set()
    for t in sorted((t for t in texts if not t.isascii()), key=lambda t: (len(t), t)):
        if any(ord(c) > 127 and c not in seen for c in t):
            wide.append(t)
            seen.update(t)
    ascii_ = random.Random(42).sample([t for t in texts if t.isascii()], 400)
    with open(os.path.join(os.path.dirname(__file__), "ids.jsonl"), "w", encoding="utf-8") as out:
        for t in CASES + wide + ascii_:
            out.write(json.dumps({"text": t, "ids": bpe.encode(t)}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

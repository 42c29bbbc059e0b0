"""Where to end a curated text: the course's cut, a word cut, or back at a sentence end.

    PYTHONPATH=. python benchmarks/cut_rules.py \
        --raw ../shared/data/real_unpriced_meta.jsonl.gz \
        --priced ../shared/data/real_priced_items.jsonl.gz

Every rule keeps at most 160 tokens. The course decodes the first 160 (often mid-word); the
word cut (`items.truncate`, the default) ends at the last whole word; a sentence back-off then
goes back to the last sentence end when that drops at most a share `slack` of the text (the
default was the word cut and a back-off of 0.12 before this measure).

1. Text kept, on the raw records (`--raw`): each record curated in the course's mode and in
   the default mode (its price plays no part in the text), the back-offs applied to the default
   texts that were cut (those whose course text has 159-161 tokens): the mean tokens of the
   texts, and the share that ends at 150 tokens or fewer (the course's inclusion minimum) or at
   140 or fewer.
2. Accuracy, on the course's own texts with their real prices (`--priced`, format
   "course-prompt"): the only texts with real prices whose untruncated form is known to end
   where the course cut (159-161 tokens: cut at 160). Each rule is applied to those texts
   (the word cut takes off their last word, the cut being assumed to fall inside it: an upper
   bound on what it loses), every model trains on a seeded split under that rule and is scored
   on the 2,000 held-out items under the same rule. The difference in average error from the
   course's texts is paired over the same items, with its 95% interval.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
from pathlib import Path

import numpy as np

import baselines
import llama_tokens
from items import MAX_PRICE, MIN_PRICE, Item

SLACKS = (0.03, 0.06, 0.12)
RULES = [("course", None), ("word", 0.0)] + [(f"word, back to a sentence, {s}", s) for s in SLACKS]
TEST_SIZE = 2000
CUT = 159  # tokens: a course text this long was cut at 160
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def back_to_sentence(text: str, slack: float) -> str:
    """`text` up to its last sentence end, when that drops at most `slack` of it.

    >>> back_to_sentence("Boils fast. Holds eight cups. Pours", 0.2)
    'Boils fast. Holds eight cups.'
    """
    last_part = max(0, int(len(text) * (1 - slack)) - 2)  # only an end there can count
    ends = [m.end() for m in _SENTENCE_END.finditer(text, last_part)]
    if ends and len(text) - ends[-1] <= slack * len(text):
        text = text[: ends[-1]].rstrip()
    return text


def text_kept(records: list[dict]) -> None:
    pairs = [(Item(r, 10.0, course_compatible=True), Item(r, 10.0)) for r in records]
    pairs = [(course.text, word.text) for course, word in pairs if course.include and word.include]
    print(f"{len(records):,} raw records, {len(pairs):,} kept in both modes\n")
    print("| rule | mean tokens | <= 150 tokens | <= 140 tokens |")
    print("|---|---:|---:|---:|")
    cut = [llama_tokens.count(course) >= CUT for course, _ in pairs]
    for name, slack in RULES:
        texts = [course if slack is None else back_to_sentence(word, slack) if was_cut else word
                 for (course, word), was_cut in zip(pairs, cut, strict=True)]
        counts = np.array([llama_tokens.count(t) for t in texts])
        print(f"| {name} | {counts.mean():.1f} | {(counts <= 150).mean():.1%} | "
              f"{(counts <= 140).mean():.1%} |")


def course_texts(rows: list[dict]) -> list[tuple[str, float, str]]:
    """The distinct course texts cut at 160 tokens, with price and category."""
    seen, out = set(), []
    for row in rows:
        text, price = row["text"].strip(), row["price"]
        if row["format"] != "course-prompt" or text in seen or not MIN_PRICE <= price <= MAX_PRICE:
            continue
        seen.add(text)
        if llama_tokens.count(text) >= CUT:
            out.append((text, float(price), row.get("category") or ""))
    return out


def under_rule(text: str, slack: float | None) -> str:
    """A course text as the rule would have ended it (None: as the course did)."""
    if slack is None:
        return text
    space = max(text.rfind(" "), text.rfind("\n"))
    return back_to_sentence(text[:space].rstrip(), slack)


def as_item(text: str, price: float, category: str) -> Item:
    prompt = f"{Item.QUESTION}\n\n{text}\n\n{Item.PREFIX}{round(price)}.00"
    return Item.from_prompt(prompt, price, category, token_count=0)


def accuracy(rows: list[dict], seed: int) -> None:
    texts = course_texts(rows)
    random.Random(seed).shuffle(texts)
    print(f"\n{len(texts):,} course texts cut at 160 tokens; {TEST_SIZE:,} held out\n")
    print("| model | rule | mean tokens | error | RMSLE | error - course's [95% interval] |")
    print("|---|---|---:|---:|---:|---:|")
    for model in (baselines.TfidfRidgePricer, baselines.LightGBMPricer):
        course_errors = None
        for name, slack in RULES:
            data = [as_item(under_rule(t, slack), p, c) for t, p, c in texts]
            test, train = data[:TEST_SIZE], data[TEST_SIZE:]
            truth = np.array([i.price for i in test])
            guess = np.maximum(model().fit(train).predict_many(test), 0)
            errors = np.abs(guess - truth)
            rmsle = np.sqrt(np.mean((np.log1p(truth) - np.log1p(guess)) ** 2))
            tokens = np.mean([llama_tokens.count(i.text) for i in test])
            if course_errors is None:
                course_errors, vs = errors, "-"
            else:
                diff = errors - course_errors
                half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
                vs = f"{diff.mean():+.2f} [{diff.mean() - half:+.2f}, {diff.mean() + half:+.2f}]"
            print(f"| {model.name} | {name} | {tokens:.1f} | ${errors.mean():.2f} | {rmsle:.3f} "
                  f"| {vs} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--priced", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    text_kept(read(args.raw))
    accuracy(read(args.priced), args.seed)


if __name__ == "__main__":
    main()

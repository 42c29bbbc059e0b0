"""Compatible mode against the course's own curated texts, where the real data is at hand.

../shared/data holds texts the course curated (real_priced_items, format "course-prompt")
and raw Amazon records (real_unpriced_meta). A raw record is the course's when its scrubbed
title is a course text's title line and the course text's characters, spaces aside, start
the record's scrubbed contents: then the two differ, if at all, only where the course cut
and decoded. Skipped where the data is absent (e.g. in CI).
"""

import gzip
import json
import re
from pathlib import Path

import pytest

from items import CEILING_CHARS, Item

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
COURSE_TEXTS = DATA / "real_priced_items.jsonl.gz"
RAW_RECORDS = DATA / "real_unpriced_meta.jsonl.gz"

pytestmark = pytest.mark.skipif(not (COURSE_TEXTS.exists() and RAW_RECORDS.exists()),
                                reason=f"the real course data is not in {DATA}")


def read(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def squeezed(text: str) -> str:
    """The characters of `text` but whitespace, and a character cut in two at its end."""
    return re.sub(r"\s+", "", text).rstrip("\ufffd")


def scrubbed_words(record: dict) -> str:
    """Title and contents of a raw record, scrubbed and squeezed, before any cut in tokens."""
    contents = "\n".join(record["description"] + record["features"] + [""])
    details = record["details"]
    for remove in Item.REMOVALS:
        details = details.replace(remove, "")
    text = f"{Item.scrub(record['title'])}\n{Item.scrub((contents + details)[:CEILING_CHARS])}"
    return squeezed(text)


def course_pairs() -> list[tuple[dict, set[str]]]:
    """Each raw record with the course texts made from it."""
    by_title: dict[str, list[str]] = {}
    for row in read(COURSE_TEXTS):
        if row["format"] == "course-prompt":
            by_title.setdefault(row["text"].split("\n", 1)[0], []).append(row["text"])
    pairs = []
    for record in read(RAW_RECORDS):
        texts = by_title.get(Item.scrub(record["title"]), [])
        words = scrubbed_words(record) if texts else ""
        same = {t for t in texts if words.startswith(squeezed(t))}
        if same:
            pairs.append((record, same))
    return pairs


def test_compatible_mode_gives_the_course_text_on_every_matched_record():
    pairs = course_pairs()
    assert len(pairs) >= 30
    items = [(Item(record, 10.0, course_compatible=True), texts) for record, texts in pairs]
    differ = [item.title for item, texts in items if not item.include or item.text not in texts]
    assert differ == []

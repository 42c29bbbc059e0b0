"""One product: cleaned text, a 180-token training prompt, and its price.

An `Item` is built from one raw Amazon metadata record and its price. It keeps the course's
attributes (title, price, category, token_count, details, prompt, include) so that the
course's own pickled splits load straight into this class.

>>> item = Item({"title": "Kettle", "description": ["Boils water. " * 60], "features": [],
...              "details": "{}"}, price=24.99, category="Appliances")
>>> item.include, item.prompt.splitlines()[0]
(True, 'How much does this cost to the nearest dollar?')
>>> item.test_prompt().endswith("Price is $")
True
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
from functools import cache
from pathlib import Path
from typing import Any

import llama_tokens

MIN_PRICE = 0.5
MAX_PRICE = 999.49
MIN_CHARS = 300
MIN_TOKENS = 150
MAX_TOKENS = 160
CEILING_CHARS = MAX_TOKENS * 7

_RANGE = re.compile(r"\d\s*(-|–|to)\s*\$?\s*\d")
_LETTER = re.compile(r"[a-z]")
_AMOUNT = re.compile(r"\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*(usd)?")
_JSON_PUNCTUATION = ':[]"{}【】'
_ASCII_DIGIT = re.compile(r"[0-9]")


def parse_price(raw: Any) -> tuple[float | None, str | None]:
    """Read a raw price field: (price, None) when unambiguous, else (None, reason).

    >>> parse_price("$1,299.99"), parse_price("None"), parse_price("12.99 - 19.99")
    ((1299.99, None), (None, 'missing'), (None, 'a range'))
    """
    if raw is None or isinstance(raw, bool):
        return None, "missing"
    if isinstance(raw, (int, float)):
        value = float(raw)
    else:
        text = str(raw).strip().lower()
        if text in {"", "none", "null", "nan", "n/a", "-", "—"}:
            return None, "missing"
        if _RANGE.search(text):
            return None, "a range"
        if _LETTER.search(text.replace("usd", "")):
            return None, "qualified or not a price"
        match = _AMOUNT.fullmatch(text)
        if not match:
            return None, "malformed"
        value = float(match.group(1).replace(",", ""))
    if not math.isfinite(value) or value <= 0:
        return None, "not positive"
    return value, None


def course_price(raw: Any) -> tuple[float | None, str | None]:
    """Read a raw price field as the course did, with `float()`: (price, None), else
    (None, reason). It drops what `parse_price` reads ("$12.99") and keeps what it refuses.

    >>> course_price("12.99"), course_price("1e2"), course_price("$12.99"), course_price("")
    ((12.99, None), (100.0, None), (None, 'malformed'), (None, 'missing'))
    """
    if not raw:
        return None, "missing"
    try:
        return float(raw), None
    except (TypeError, ValueError):
        return None, "malformed"


def _lines(value: Any) -> list[str]:
    """A raw text field as a list of strings: lists stay, a lone string is one line."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value if v]


def details_text(details: Any) -> str:
    """The raw `details` field as a JSON string (it arrives as a string or as a dict)."""
    if not details:
        return ""
    if isinstance(details, dict):
        # The hub's JSON builder gives every record every key seen in the file; drop the Nones.
        return json.dumps({k: v for k, v in details.items() if v is not None})
    return str(details)


class Item:
    """A curated product: `prompt` ends with its price, `test_prompt()` stops before it."""

    PREFIX = "Price is $"
    QUESTION = "How much does this cost to the nearest dollar?"
    REMOVALS = [
        '"Batteries Included?": "No"', '"Batteries Included?": "Yes"',
        '"Batteries Required?": "No"', '"Batteries Required?": "Yes"',
        "By Manufacturer", "Item", "Date First", "Package", ":", "Number of",
        "Best Sellers", "Number", "Product ",
    ]

    title: str
    price: float
    category: str = ""
    token_count: int = 0
    details: str | None = None
    prompt: str | None = None
    include: bool = False
    excluded_because: str | None = None

    def __init__(self, data: dict, price: float, category: str = "",
                 course_compatible: bool = False):
        self.title = str(data.get("title") or "")
        self.price = price
        self.category = category
        self.parse(data, course_compatible)

    @classmethod
    def from_prompt(cls, prompt: str, price: float, category: str = "",
                    title: str | None = None, token_count: int | None = None) -> Item:
        """Rebuild an Item from a saved training prompt, e.g. a row of a columnar split
        (pass a saved `token_count` to skip counting again).

        >>> Item.from_prompt(f"{Item.QUESTION}\\n\\nKettle\\nBoils.\\n\\nPrice is $25.00", 24.99)
        <Kettle = $24.99>
        """
        item = cls.__new__(cls)
        item.prompt, item.price, item.category, item.include = prompt, price, category, True
        item.title = title if title is not None else item.text.split("\n", 1)[0]
        item.token_count = llama_tokens.count(prompt) if token_count is None else token_count
        return item

    def scrub_details(self) -> str:
        """Details with the course's boilerplate keys and colons removed."""
        details = self.details or ""
        for remove in self.REMOVALS:
            details = details.replace(remove, "")
        return details

    @staticmethod
    def scrub(stuff: str) -> str:
        """Collapse JSON punctuation and whitespace; drop part-number-like words.

        >>> Item.scrub('{"Model": "WR57X10051", "Color": "Red"}')
        'Model Color Red'
        """
        for mark in _JSON_PUNCTUATION:
            stuff = stuff.replace(mark, " ")
        # str.split() and regex's \s agree on what whitespace is.
        stuff = " ".join(stuff.split())
        stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
        return _drop_part_numbers(stuff)

    def parse(self, data: dict, course_compatible: bool = False) -> None:
        """Apply the curation rules; set `prompt` and `include` when the item qualifies.

        `course_compatible` reproduces the course's text exactly: its cut, mid-word ends and
        all, and its decode's clean-up of spaces (" ." -> ".", " 's" -> "'s", ...).
        """
        contents = "\n".join(_lines(data.get("description")))
        if contents:
            contents += "\n"
        features = "\n".join(_lines(data.get("features")))
        if features:
            contents += features + "\n"
        self.details = details_text(data.get("details"))
        # Past the ceiling already, the details would be cut off whole: skip scrubbing them.
        if self.details and len(contents) <= CEILING_CHARS:
            contents += self.scrub_details() + "\n"
        if len(contents) <= MIN_CHARS:
            self.excluded_because = "too short"
            return
        contents = _ceiling(contents, CEILING_CHARS, course_compatible)
        text = f"{self.scrub(self.title)}\n{self.scrub(contents)}"
        # One more token than is kept tells whether the text needs cutting.
        tokens = llama_tokens.encode_head(text, MAX_TOKENS + 1)
        if len(tokens) <= MIN_TOKENS:
            self.excluded_because = "too few tokens"
            return
        if course_compatible:
            # The course decoded every kept text, short ones too, and its decode cleaned up
            # spaces: the text changes, so its tokens are counted afresh.
            self.make_prompt(llama_tokens.decode_as_hub(tokens[:MAX_TOKENS]))
        else:
            self.make_prompt(truncate(text, tokens, MAX_TOKENS), tokens)
        self.include = True

    def make_prompt(self, text: str, tokens: list[int] | None = None) -> None:
        """The training prompt: question, text, and the price rounded to the dollar.

        `tokens`, the start of the encoding of a text that begins with `text`, spare
        encoding the whole prompt again to count its tokens.
        """
        price = f"\n\n{self.PREFIX}{round(self.price)}.00"
        self.prompt = f"{self.QUESTION}\n\n{text}{price}"
        # A text that starts with a line break would merge into the question's last token.
        if tokens and text[:1] not in ("", "\n", "\r"):
            self.token_count = _question_tokens() + llama_tokens.count_joined(text, tokens, price)
        else:
            self.token_count = llama_tokens.count(self.prompt)

    def test_prompt(self) -> str:
        """The prompt up to and including "Price is $": what a model completes."""
        return self.prompt.split(self.PREFIX)[0] + self.PREFIX

    @property
    def text(self) -> str:
        """The curated description (title line first), without the question or price."""
        body = self.prompt.split(self.PREFIX)[0]
        return body.removeprefix(f"{self.QUESTION}\n\n").rstrip("\n")

    def __repr__(self) -> str:
        return f"<{self.title} = ${self.price}>"


def _drop_part_numbers(text: str) -> str:
    """The words of `text` (split at single spaces) but those of 7+ characters with a digit.

    >>> _drop_part_numbers("Fits WR57X10051 and 2 more, model AB1234567")
    'Fits and 2 more, model'
    """
    if not text.isascii():
        return " ".join([w for w in text.split(" ")
                         if len(w) < 7 or not any(c.isdigit() for c in w)])
    # ASCII text: jump from digit to digit instead of looking at every word.
    pieces, start = [], 0
    match = _ASCII_DIGIT.search(text)
    while match:
        left = text.rfind(" ", 0, match.start()) + 1
        right = text.find(" ", match.start())
        right = len(text) if right < 0 else right
        if right - left >= 7:
            pieces.append(text[start:left])  # up to the word, with the space before it
            start = right + 1
        match = _ASCII_DIGIT.search(text, right)
    pieces.append(text[start:])
    kept = "".join(pieces)
    return kept[:-1] if kept.endswith(" ") else kept  # the last word went, and not its space


@cache
def _question_tokens() -> int:
    """Tokens of the prompt's opening question and the blank line after it."""
    return llama_tokens.count(f"{Item.QUESTION}\n\n")


def _ceiling(contents: str, limit: int, course_compatible: bool) -> str:
    """Cap the raw contents at `limit` characters; the fixed mode backs off to a space."""
    if len(contents) <= limit or course_compatible:
        return contents[:limit]
    cut = contents[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > 0 else cut


def truncate(text: str, tokens: list[int], max_tokens: int) -> str:
    """Cut `text` to at most `max_tokens` tokens (`tokens`: the start of its encoding).

    The course decoded the first `max_tokens` tokens, which often ends mid-word. This cut
    ends at the last whole word. (Going back further, to a sentence end, kept less text and
    scored no better: benchmarks/cut_rules.py.)
    """
    if len(tokens) <= max_tokens:
        return text
    head = llama_tokens.encoding().decode_bytes(tokens[:max_tokens]).decode("utf-8", "ignore")
    if not text[len(head)].isspace():
        space = max(head.rfind(" "), head.rfind("\n"))
        head = head[:space] if space > 0 else head
    return head.rstrip()


class _ItemsOnly(pickle.Unpickler):
    """An unpickler that builds Items and plain containers, and refuses every other class."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("items", "Item"):
            return Item
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: only items.Item is allowed in a split pickle"
        )


def load_pickle(path: str | Path) -> list[Item]:
    """Load a list of Items from a pickle, such as the course's train.pkl, safely.

    A pickle can run any code when loaded; this one only ever builds `items.Item`s.
    """
    data = Path(path).read_bytes()
    loaded = _ItemsOnly(io.BytesIO(data)).load()
    if not isinstance(loaded, list) or not all(isinstance(i, Item) for i in loaded):
        raise pickle.UnpicklingError(f"{path} does not hold a list of Items")
    return loaded


def save_pickle(items: list[Item], path: str | Path) -> None:
    """Save Items as the course did (a pickled list), loadable by `load_pickle`."""
    with open(path, "wb") as f:
        pickle.dump(items, f)

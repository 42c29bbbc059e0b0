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
# A cut at the last sentence end is preferred when it drops at most this share of the text.
SENTENCE_SLACK = 0.12
# Real Amazon titles run to about 450 characters; longer is junk that must not fill the text.
TITLE_CHARS = 500

_RANGE = re.compile(r"\d\s*(-|–|—|to)\s*\$?\s*\d")
_LETTER = re.compile(r"[a-z]")
# A currency mark before or after the amount: "$12", "USD 12", "US $12", "12 USD", "12$".
_CURRENCY = re.compile(r"^(us\s*\$|usd|\$)\s*|\s*(usd|\$)$")
_AMOUNT = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+")
# "1.299": a thousands separator, or a price in tenths of a cent? Amazon's US prices have two
# decimals, so three after a leading digit that is not 0 cannot be told apart: rejected.
_AMBIGUOUS = re.compile(r"[1-9]\d{0,2}\.\d{3}")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_JSON_PUNCTUATION = ':[]"{}【】'
_ASCII_DIGIT = re.compile(r"[0-9]")
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


def parse_price(raw: Any) -> tuple[float | None, str | None]:
    """Read a raw price field: (price, None) when unambiguous, else (None, reason).

    >>> parse_price("$1,299.99"), parse_price("US $12.99"), parse_price("12$")
    ((1299.99, None), (12.99, None), (12.0, None))
    >>> parse_price("None"), parse_price("12.99 - 19.99"), parse_price("1.299")
    ((None, 'missing'), (None, 'a range'), (None, 'ambiguous'))
    >>> parse_price("9" * 400), parse_price("0")
    ((None, 'too large'), (None, 'not positive'))
    """
    if raw is None or isinstance(raw, bool):
        return None, "missing"
    if isinstance(raw, (int, float)):
        try:
            value = float(raw)
        except OverflowError:  # an int too big for a float
            value = math.inf
    else:
        text = str(raw).translate(_INVISIBLE).strip().lower()
        if text in {"", "none", "null", "nan", "n/a", "-", "—"}:
            return None, "missing"
        if _RANGE.search(text):
            return None, "a range"
        amount = _CURRENCY.sub("", text)
        if _LETTER.search(amount):
            return None, "qualified or not a price"
        if not _AMOUNT.fullmatch(amount):
            return None, "malformed"
        if _AMBIGUOUS.fullmatch(amount):
            return None, "ambiguous"
        value = float(amount.replace(",", ""))
    if not value > 0:  # NaN too
        return None, "not positive"
    if math.isinf(value):
        return None, "too large"
    return value, None


def _lines(value: Any) -> list[str]:
    """A raw text field as a list of strings: a list's non-empty entries, else one line.

    >>> _lines(["Boils.", "", None, 5]), _lines("Boils."), _lines(7.5), _lines(None)
    (['Boils.', '5'], ['Boils.'], ['7.5'], [])
    """
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return [str(value)]


def details_text(details: Any) -> str:
    """The raw `details` field as a JSON string (it arrives as a string or as a dict).

    A structure nested too deeply to write as JSON raises a ValueError, as any malformed
    record does.
    """
    if not details:
        return ""
    if isinstance(details, dict):
        # The hub's JSON builder gives every record every key seen in the file; drop the Nones.
        try:
            return json.dumps({k: v for k, v in details.items() if v is not None})
        except RecursionError:
            raise ValueError("details nested too deeply") from None
    return str(details)


def title_text(title: Any) -> str:
    """A raw title as text, at most TITLE_CHARS characters (cut at a word where there is one).

    >>> title_text("Kettle"), len(title_text("Kettle " * 1000)), title_text(None)
    ('Kettle', 496, '')
    """
    return _ceiling(str(title or ""), TITLE_CHARS, course_compatible=False)


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
        self.title = title_text(data.get("title"))
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

        `course_compatible` reproduces the course's cut exactly, mid-word ends and all.
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
        cut = truncate(text, tokens, MAX_TOKENS, course_compatible, MIN_TOKENS)
        if cut is None:
            self.excluded_because = "too few tokens"
            return
        self.make_prompt(cut, tokens)
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


def truncate(text: str, tokens: list[int], max_tokens: int, course_compatible: bool,
             min_tokens: int = 0) -> str | None:
    """Cut `text` to at most `max_tokens` tokens (`tokens`: at least its first max_tokens + 1).

    The course decodes the first `max_tokens` tokens, which often ends mid-word. The fixed
    cut never ends inside a word of spaced text, and ends at a sentence when that loses
    little. It never goes back into the title line; when going back to a word leaves
    `min_tokens` or fewer (a long last word), there is no text worth keeping: None.
    """
    if len(tokens) <= max_tokens:
        return text
    if course_compatible:
        return llama_tokens.decode(tokens[:max_tokens])
    head = llama_tokens.encoding().decode_bytes(tokens[:max_tokens]).decode("utf-8", "ignore")
    body = head.find("\n") + 1  # where the description starts
    if not text[len(head)].isspace():
        # Back to the last space; a text with none after the title (Chinese, Japanese) is
        # cut between whole characters instead.
        space = max(head.rfind(" ", body), head.rfind("\n", body))
        head = head[:space].rstrip() if space > body else head
        if llama_tokens.count_joined(head, tokens, "") <= min_tokens:
            return None
    head = head.rstrip()
    # Only a sentence end in the last SENTENCE_SLACK of the text can count: look there.
    last_part = max(body, int(len(head) * (1 - SENTENCE_SLACK)) - 2)
    ends = [m.end() for m in _SENTENCE_END.finditer(head, last_part)]
    if ends and len(head) - ends[-1] <= SENTENCE_SLACK * len(head):
        head = head[: ends[-1]].rstrip()
    return head


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

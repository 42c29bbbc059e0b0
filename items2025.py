"""The course's 2025 edition of an Item: its rules for a raw record, its fields, its prompt.

The 2025 edition keeps more of each product (up to 4,000 characters of title, description,
features and details, an item needing 600) and asks an LLM to rewrite that text into a short
summary (summaries.py); the prompt is made from the summary:

>>> item = Item2025("Kettle", "Appliances", 24.49, summary="Title: Kettle\\nBrand: Crestwood")
>>> print(item.prompt)
What does this cost to the nearest dollar?
<BLANKLINE>
Title: Kettle
Brand: Crestwood
<BLANKLINE>
Price is $24.00
>>> item.test_prompt().endswith("Brand: Crestwood\\n\\nPrice is $")
True

An `Item2025` is an `Item` (every model, the Tester and the server take it as one): it keeps
the edition's fields (title, category, price, full, weight, summary, id) and derives what it
shows, `prompt`, `test_prompt()` and `text` (what the models read: the summary, or the full
text until there is one). `columns` and `from_columns` are the edition's hub rows.
"""

from __future__ import annotations

import json
import math
import numbers
import pickle
import re
from collections.abc import Sequence
from typing import Any

from items import Item

MIN_CHARS = 600  # an item needs this much text
MAX_EACH = 3_000  # characters kept of the description, and of the features
MAX_TOTAL = 4_000  # characters kept of the whole text
REMOVALS = ("Part Number", "Best Sellers Rank", "Batteries Included?", "Batteries Required?",
            "Item model number")
# The edition's hub rows, in its order; `prompt` is derived from the summary.
FIELDS = ("title", "category", "price", "full", "weight", "summary", "prompt", "id")
# Pounds per unit of the details' "Item Weight" ("<amount> <unit>"), as the edition reads it.
POUNDS = {"pounds": 1.0, "ounces": 1 / 16, "grams": 1 / 453.592, "milligrams": 1 / 453592,
          "kilograms": 1 / 0.453592}
_WORD = re.compile(r"\b[A-Z0-9]{7,}\b")  # a word of 7 or more capitals and digits
_CAPITAL, _DIGIT = re.compile(r"[A-Z]"), re.compile(r"\d")


def flattened(value: Any) -> str:
    """A raw field as the edition writes it: `str()` of it (a list keeps its brackets and
    quotes), line breaks as spaces, carriage returns and tabs dropped, each double space
    once made single, stripped, at most MAX_EACH characters.

    >>> flattened(["Boils water\\tfast.", "Auto  off."])
    "['Boils water\\\\tfast.', 'Auto off.']"
    """
    text = str(value).replace("\n", " ").replace("\r", "").replace("\t", "")
    return text.replace("  ", " ").strip()[:MAX_EACH]


def drop_part_numbers(text: str) -> str:
    """`text` without the words the edition takes for part numbers.

    The edition's pattern, r"\\b(?=[A-Z0-9]{7,}\\b)(?=.*[A-Z])(?=.*\\d)[A-Z0-9]+\\b", removes a
    word of 7 or more capitals and digits when its line holds a capital and a digit from the
    word's start on (its look-aheads read to the end of the line, not of the word): so
    "PREMIUM" goes when a digit follows later on its line. It looks ahead from every word, in
    quadratic time; this gives the same text in linear time.

    >>> drop_part_numbers("Fits WR57X10051. PREMIUM steel, 12 inches\\nPREMIUM steel")
    'Fits .  steel, 12 inches\\nPREMIUM steel'
    """
    pieces, start, line_end = [], 0, -1
    last_capital = last_digit = -1
    for match in _WORD.finditer(text):
        if match.start() > line_end:  # a new line: where its last capital and digit are
            line_start = text.rfind("\n", 0, match.start()) + 1
            line_end = text.find("\n", match.start())
            line_end = len(text) if line_end < 0 else line_end
            last_capital = _last(_CAPITAL, text, line_start, line_end)
            last_digit = _last(_DIGIT, text, line_start, line_end)
        if last_capital >= match.start() and last_digit >= match.start():
            pieces.append(text[start:match.start()])
            start = match.end()
    pieces.append(text[start:])
    return "".join(pieces)


def _last(pattern: re.Pattern, text: str, start: int, end: int) -> int:
    """The position of the last match of a one-character `pattern` in text[start:end], or -1."""
    found = pattern.search(text[start:end][::-1])
    return end - 1 - found.start() if found else -1


def full_text(title: str, description: Any, features: Any, details: dict) -> str:
    """The edition's text of a product: the title, the flattened description and features,
    the details as JSON without REMOVALS, each on its own line; part numbers dropped;
    stripped; at most MAX_TOTAL characters.

    >>> full_text("Kettle AB1234567", ["Boils."], [], {"Brand": "Crestwood", "Part Number": "X"})
    'Kettle \\n[\\'Boils.\\']\\n{"Brand": "Crestwood"}'
    """
    kept = {key: value for key, value in details.items() if key not in REMOVALS}
    text = title + "\n"
    if description:
        text += flattened(description) + "\n"
    if features:
        text += flattened(features) + "\n"
    if kept:
        text += json.dumps(kept) + "\n"
    return drop_part_numbers(text).strip()[:MAX_TOTAL]


def weight_in_pounds(details: dict) -> float:
    """The details' "Item Weight" in pounds; 0 where there is none, or one the edition cannot
    read (no unit it knows, or not "<amount> <unit>").

    >>> weight_in_pounds({"Item Weight": "12 Ounces"}), weight_in_pounds({"Item Weight": "2 kg"})
    (0.75, 0.0)
    >>> weight_in_pounds({"Item Weight": "150 hundredths pounds"}), weight_in_pounds({})
    (1.5, 0.0)
    """
    text = details.get("Item Weight")
    if not isinstance(text, str) or not text:
        return 0.0
    parts = text.split(" ")
    try:
        amount, unit = float(parts[0]), parts[1].lower()
    except (ValueError, IndexError):
        return 0.0
    if unit == "hundredths" and len(parts) > 2 and parts[2].lower() == "pounds":
        return amount / 100
    return amount * POUNDS[unit] if unit in POUNDS and math.isfinite(amount) else 0.0


def details_of(raw: Any) -> dict:
    """The raw `details` field as a dict: a JSON string parsed (the hub's files), a dict as it
    is without the Nones that the hub's JSON builder adds; anything else is a ValueError.

    >>> details_of('{"Brand": "Crestwood"}'), details_of({"Brand": "Crestwood", "Color": None})
    ({'Brand': 'Crestwood'}, {'Brand': 'Crestwood'})
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, RecursionError):
            raise ValueError("details are not JSON") from None
    elif isinstance(raw, dict):
        raw = {key: value for key, value in raw.items() if value is not None}
    elif raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"details are a {type(raw).__name__}, not an object")
    return raw


class Item2025(Item):
    """A product as the 2025 edition keeps it: title, category, price, the scrubbed `full`
    text, weight in pounds (0: unknown), the LLM's `summary` once written, and an `id`."""

    QUESTION = "What does this cost to the nearest dollar?"

    def __init__(self, title: str, category: str, price: float, full: str | None = None,
                 weight: float | None = None, summary: str | None = None, id: int | None = None):
        self.title, self.category, self.price = title, category, price
        self.full, self.weight, self.summary, self.id = full, weight, summary, id
        self.details, self.include, self.excluded_because = None, True, None
        self._token_count = None

    @classmethod
    def from_record(cls, record: dict, price: float, category: str = "") -> Item2025 | None:
        """The edition's Item of a raw record at `price`, or None when its text is under
        MIN_CHARS; malformed details are a ValueError."""
        details = details_of(record.get("details"))
        full = full_text(record["title"], record.get("description"), record.get("features"),
                         details)
        if len(full) < MIN_CHARS:
            return None
        return cls(record["title"], category, price, full, weight_in_pounds(details))

    # --- what it shows: derived, never stored ----------------------------------------------

    @property
    def text(self) -> str:
        """What the models read: the summary, or the full text until there is one."""
        return self.summary if self.summary is not None else self.full or ""

    @property
    def prompt(self) -> str:
        """The training prompt: the question, the summary, the price rounded to the dollar."""
        return f"{self.QUESTION}\n\n{self._summary()}\n\n{self.PREFIX}{round(self.price)}.00"

    def test_prompt(self) -> str:
        """The prompt cut after its first "Price is $", as the edition cuts it."""
        return self.prompt.split(self.PREFIX)[0] + self.PREFIX

    def _summary(self) -> str:
        if self.summary is None:
            raise ValueError(f"{self!r} has no summary yet: the 2025 edition's prompt is made "
                             "from an LLM's summary (summaries.summarise)")
        return self.summary

    # --- pickles ------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in FIELDS if name != "prompt"}

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled Item2025, checking every field's type so that a bad pickle fails
        here, not later."""
        try:
            made = from_row(state)
        except ValueError as e:
            raise pickle.UnpicklingError(str(e)) from None
        self.__dict__.update(made.__dict__)


_TYPES = {"title": str, "category": (str, type(None)), "price": numbers.Real,
          "full": (str, type(None)), "weight": (numbers.Real, type(None)),
          "summary": (str, type(None)), "prompt": (str, type(None)),
          "id": (numbers.Integral, type(None))}


def from_row(row: dict) -> Item2025:
    """The Item2025 of one hub row (or pickled state): its fields checked; a prompt without a
    summary gives the summary; a prompt that is not the one its summary makes is refused.

    >>> from_row({"title": "Kettle", "category": "Appliances", "price": 24.99,
    ...           "prompt": "What does this cost to the nearest dollar?\\n\\nKettle, red\\n\\n"
    ...                     "Price is $25.00"}).summary
    'Kettle, red'
    """
    unknown = set(row) - set(FIELDS)
    if unknown:
        raise ValueError(f"a 2025 item has no field {sorted(unknown)[0]!r}")
    for name, kinds in _TYPES.items():
        value = row.get(name)
        if (name in ("title", "price") or value is not None) and (
                not isinstance(value, kinds) or isinstance(value, bool)):
            raise ValueError(f"a 2025 item's {name!r} must be {kinds}, not "
                             f"{type(value).__name__}")
    if not 0 < float(row["price"]) < math.inf:
        raise ValueError(f"a 2025 item's price must be positive and finite, not {row['price']}")
    summary, prompt = row.get("summary"), row.get("prompt")
    item = Item2025(row["title"], row.get("category") or "", float(row["price"]), row.get("full"),
                    row.get("weight"), summary, row.get("id"))
    if prompt is not None:
        if summary is None:
            item.summary = _summary_of(prompt)
        if item.prompt != prompt:
            raise ValueError(f"{item!r}: its prompt is not the one its summary makes "
                             f"({prompt[:60]!r}...)")
    return item


def _summary_of(prompt: str) -> str:
    head, price_line = f"{Item2025.QUESTION}\n\n", f"\n\n{Item2025.PREFIX}"
    end = prompt.rfind(price_line)
    if not prompt.startswith(head) or end < len(head):
        raise ValueError(f"not a prompt of the 2025 edition: {prompt[:60]!r}...")
    return prompt[len(head):end]


def columns(items: Sequence[Item2025]) -> dict[str, list]:
    """The items as the edition's hub columns (FIELDS); `prompt` is None until a summary.

    >>> columns([Item2025("Kettle", "Appliances", 24.99, "Kettle\\nBoils.", 1.5)])["prompt"]
    [None]
    """
    return {name: [(item.prompt if item.summary is not None else None) if name == "prompt"
                   else getattr(item, name) for item in items] for name in FIELDS}


def from_columns(data: dict[str, list]) -> list[Item2025]:
    """Items from the edition's hub columns (any missing column is None)."""
    n = len(data["title"])
    rows = ({name: data[name][i] for name in FIELDS if name in data} for i in range(n))
    return [from_row(row) for row in rows]

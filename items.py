"""One product: cleaned text, a 180-token training prompt, and its price.

An `Item` is built from one raw Amazon metadata record and its price. It keeps its parts
(title, curated text, price, category, details, token count) and derives what it shows from
them, in one place: the training prompt, the test prompt and the chat for chat models. The
course's attribute names all work, and its pickled splits load into this class.

>>> item = Item({"title": "Kettle", "description": ["Boils water. " * 60], "features": [],
...              "details": "{}"}, price=24.99, category="Appliances")
>>> item.include, item.prompt.splitlines()[0]
(True, 'How much does this cost to the nearest dollar?')
>>> item.test_prompt().endswith("Price is $")
True
"""

from __future__ import annotations

import json
import math
import numbers
import pickle
import re
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import llama_tokens
import pickles

MIN_PRICE = 0.5
MAX_PRICE = 999.49
MIN_CHARS = 300
MIN_TOKENS = 150
MAX_TOKENS = 160
CEILING_CHARS = MAX_TOKENS * 7
# Real Amazon titles run to about 450 characters; longer is junk that must not fill the text.
TITLE_CHARS = 500

# Price patterns never meet two runs that can match the same characters (`\s*\$?\s*`, or an
# unanchored `\s*...$`): on a long field, those backtrack quadratically.
MAX_PRICE_CHARS = 500  # a price field longer than this is not a price
_RANGE = re.compile(r"\d\s*(-|–|—|to)\s*(?:\$\s*)?\d")
_LETTER = re.compile(r"[a-z]")
# A currency mark before or after the amount: "$12", "USD 12", "US $12", "12 USD", "12$".
_CURRENCY = re.compile(r"^(us\s*\$|usd|\$)|(usd|\$)$")
_AMOUNT = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+")
# "1.299": a thousands separator, or a price in tenths of a cent? Amazon's US prices have two
# decimals, so three after a leading digit that is not 0 cannot be told apart: rejected.
_AMBIGUOUS = re.compile(r"[1-9]\d{0,2}\.\d{3}")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_JSON_PUNCTUATION = ':[]"{}【】'
_DIGIT = re.compile(r"[0-9]")


def parse_price(raw: Any) -> tuple[float | None, str | None]:
    """Read a raw price field: (price, None) when unambiguous, else (None, reason).

    >>> parse_price("$1,299.99"), parse_price("US $12.99"), parse_price("12$")
    ((1299.99, None), (12.99, None), (12.0, None))
    >>> parse_price("None"), parse_price("12.99 - 19.99"), parse_price("1.299")
    ((None, 'missing'), (None, 'a range'), (None, 'ambiguous'))
    >>> parse_price("9" * 400), parse_price("0"), parse_price("1" + " " * 999 + "2")
    ((None, 'too large'), (None, 'not positive'), (None, 'too long'))
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
        if len(text) > MAX_PRICE_CHARS:
            return None, "too long"
        if text in {"", "none", "null", "nan", "n/a", "-", "—"}:
            return None, "missing"
        if _RANGE.search(text):
            return None, "a range"
        amount = _CURRENCY.sub("", text).strip()
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


def price_problem(price: Any) -> str | None:
    """Why `price` cannot teach a model or enter a store, or None: a price must be a finite
    number, $0 or more. One NaN makes every later sum NaN; a negative price has no log.

    >>> price_problem(24.99), price_problem(0), price_problem(float("nan")), price_problem(-5)
    (None, None, 'not a number', 'negative')
    >>> price_problem(float("inf")), price_problem(10 ** 400), price_problem("12.99")
    ('infinite', 'infinite', 'a str, not a number')
    """
    if isinstance(price, bool) or not isinstance(price, numbers.Real):
        return f"a {type(price).__name__}, not a number"
    try:
        value = float(price)
    except OverflowError:  # an int too big for a float
        return "infinite"
    if math.isnan(value):
        return "not a number"
    if math.isinf(value):
        return "infinite"
    return "negative" if value < 0 else None


def checked_prices(items: Iterable[Item], use: str) -> list[Item]:
    """`items` as a list, when every price is one to learn from or store (`price_problem`);
    else a ValueError that names the first item that is not, and what it was given to.

    >>> checked_prices([Item.from_text("Kettle", 24.99), Item.from_text("Pot", -5.0)],
    ...                "the vector store")
    Traceback (most recent call last):
    ...
    ValueError: the vector store: the price of item 1 ('Pot') is negative (-5.0); a price must \
be a finite number, $0 or more: fix or drop the item
    """
    items = list(items)
    for index, item in enumerate(items):
        price = getattr(item, "price", None)
        if type(price) is float and 0.0 <= price < math.inf:  # the usual case, at once
            continue
        why = price_problem(price)
        if why:
            raise ValueError(f"{use}: the price of item {index} "
                             f"({getattr(item, 'title', '')[:60]!r}) is {why} "
                             f"({repr(price)[:40]}); a price must be a finite number, $0 or "
                             "more: fix or drop the item")
    return items


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
    """A curated product. It keeps its parts (title, curated `text`, price, category, details,
    token_count) and derives what it shows from them: `prompt`, `test_prompt()`, the chat.

    Build one from a raw record with `Item(record, price, category)` (check `include`), or
    from an already curated text with `Item.from_text(text, price)`.
    """

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
    text: str = ""  # the curated description, title line first; no question, no price
    details: str | None = None
    include: bool = False
    excluded_because: str | None = None
    _token_count: int | None = None

    def __init__(self, data: dict, price: float, category: str = "",
                 course_compatible: bool = False):
        self.title = title_text(data.get("title"))
        self.price = price
        self.category = category
        self.parse(data, course_compatible)

    @classmethod
    def from_text(cls, text: str, price: float, category: str = "", title: str | None = None,
                  details: str | None = None, token_count: int | None = None) -> Item:
        """An Item from a curated text (title line first), e.g. a row of a saved split or
        a benchmark's data; `token_count` is counted when first asked for unless given.

        >>> item = Item.from_text("Kettle\\nBoils water. Our Price is $5 less.", 24.99)
        >>> item, item.test_prompt().endswith("less.\\n\\nPrice is $")
        (<Kettle = $24.99>, True)
        """
        item = cls.__new__(cls)
        item.text, item.price, item.category, item.details = text, price, category, details
        item.title = title if title is not None else text.split("\n", 1)[0]
        item.include, item._token_count = True, token_count
        return item

    @classmethod
    def from_prompt(cls, prompt: str, price: float, category: str = "",
                    title: str | None = None, token_count: int | None = None) -> Item:
        """An Item from a training or test prompt in the course's format (its hub datasets).

        >>> Item.from_prompt(f"{Item.QUESTION}\\n\\nKettle\\nBoils.\\n\\nPrice is $25.00", 24.99)
        <Kettle = $24.99>
        """
        return cls.from_text(text_of_prompt(prompt), price, category, title,
                             token_count=token_count)

    # --- what an Item shows: derived, never stored -------------------------------------------

    @property
    def prompt(self) -> str:
        """The training prompt: the question, the text, and the price rounded to the dollar."""
        return self.test_prompt() + f"{round(self.price)}.00"

    def test_prompt(self) -> str:
        """The prompt up to and including "Price is $": what a model completes."""
        return f"{self.QUESTION}\n\n{self.text}\n\n{self.PREFIX}"

    @property
    def token_count(self) -> int:
        """Llama 3.1 tokens in the training prompt (the course's measure of length)."""
        if self._token_count is None:
            self._token_count = llama_tokens.count(self.prompt)
        return self._token_count

    # --- curation ------------------------------------------------------------------------------

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
        """Apply the curation rules; set `text` and `include` when the item qualifies.

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
            self.text = llama_tokens.decode_as_hub(tokens[:MAX_TOKENS])
            self._token_count = llama_tokens.count(self.prompt)
        else:
            cut = truncate(text, tokens, MAX_TOKENS, MIN_TOKENS)
            if cut is None:
                self.excluded_because = "too few tokens"
                return
            self.text = cut
            self._token_count = _prompt_tokens(cut, tokens, f"\n\n{self.PREFIX}"
                                               f"{round(self.price)}.00")
        self.include = True

    # --- pickles: the course's shape, so that its code and ours read each other's ----------

    def __getstate__(self) -> dict:
        return {"title": self.title, "price": self.price, "category": self.category,
                "token_count": self._token_count, "details": self.details,
                "prompt": self.prompt if self.include else None, "include": self.include}

    def __setstate__(self, state: dict) -> None:
        """Restore a pickled Item (the course's shape), checking every field's type so that
        a bad pickle fails here, not later."""
        _check_state(state)
        prompt = state.get("prompt")
        self.title, self.price = state["title"], float(state["price"])
        self.category, self.details = state.get("category") or "", state.get("details")
        self.text = text_of_prompt(prompt) if prompt is not None else ""
        self.include = state.get("include", prompt is not None)
        self._token_count, self.excluded_because = state.get("token_count"), None

    def __repr__(self) -> str:
        return f"<{self.title} = ${self.price}>"


_STATE_TYPES = {"title": str, "price": (int, float), "category": (str, type(None)),
                "token_count": (int, type(None)), "details": (str, type(None)),
                "prompt": (str, type(None)), "include": bool}


def _check_state(state: dict) -> None:
    """Refuse an Item state with unknown fields or fields of the wrong type."""
    unknown = set(state) - set(_STATE_TYPES)
    if unknown:
        raise pickle.UnpicklingError(f"an Item has no field {sorted(unknown)[0]!r}")
    for name in ("title", "price"):
        if name not in state:
            raise pickle.UnpicklingError(f"an Item needs a {name!r}")
    for name, value in state.items():
        if not isinstance(value, _STATE_TYPES[name]) or (
                name == "token_count" and isinstance(value, bool)):
            raise pickle.UnpicklingError(
                f"an Item's {name!r} must be {_STATE_TYPES[name]}, not {type(value).__name__}")
    try:
        price = float(state["price"])
    except OverflowError:  # an int too big for a float
        price = math.inf
    if isinstance(state["price"], bool) or not 0 < price < math.inf:
        raise pickle.UnpicklingError("an Item's price must be a positive finite number")
    if (state.get("token_count") or 0) < 0:
        raise pickle.UnpicklingError("an Item's token_count cannot be negative")
    if state.get("include") and not state.get("prompt"):
        raise pickle.UnpicklingError("an included Item needs a prompt")


def text_of_prompt(prompt: str) -> str:
    """The curated text inside a training or test prompt of the course's format.

    The price line is the last "Price is $" of the prompt, so a description that mentions
    "Our Price is $5 less" stays whole.

    >>> text_of_prompt(f"{Item.QUESTION}\\n\\nKettle\\nBoils.\\n\\nPrice is $25.00")
    'Kettle\\nBoils.'
    """
    head = f"{Item.QUESTION}\n\n"
    end = prompt.rfind(f"\n\n{Item.PREFIX}")
    if not prompt.startswith(head) or end < len(head):
        raise ValueError(f"not a prompt of the course's format: {prompt[:60]!r}...")
    return prompt[len(head):end]


def _drop_part_numbers(text: str) -> str:
    """The words of `text` (split at single spaces) but those of 7+ characters with a digit
    (any character that `str.isdigit` calls one).

    >>> _drop_part_numbers("Fits WR57X10051 and 2 more, model AB1234567 ®ZX¹23456")
    'Fits and 2 more, model'
    """
    return " ".join(word for word in text.split(" ") if len(word) < 7 or not _has_digit(word))


def _has_digit(word: str) -> bool:
    """Whether `word` holds a digit: by regex where it is ASCII (most words, and fast)."""
    if word.isascii():
        return _DIGIT.search(word) is not None
    return any(char.isdigit() for char in word)  # superscripts and circled digits too


@cache
def _question_tokens() -> int:
    """Tokens of the prompt's opening question and the blank line after it."""
    return llama_tokens.count(f"{Item.QUESTION}\n\n")


def _prompt_tokens(text: str, tokens: list[int], price_line: str) -> int:
    """Tokens of the training prompt of `text`, where `tokens` start the encoding of a text
    that begins with `text`: only its last words are encoded again."""
    # A text that starts with a line break would merge into the question's last token.
    if text[:1] in ("", "\n", "\r"):
        return llama_tokens.count(f"{Item.QUESTION}\n\n{text}{price_line}")
    return _question_tokens() + llama_tokens.count_joined(text, tokens, price_line)


def _ceiling(contents: str, limit: int, course_compatible: bool) -> str:
    """Cap the raw contents at `limit` characters; the fixed mode backs off to a space."""
    if len(contents) <= limit or course_compatible:
        return contents[:limit]
    cut = contents[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > 0 else cut


def truncate(text: str, tokens: list[int], max_tokens: int, min_tokens: int = 0) -> str | None:
    """Cut `text` to at most `max_tokens` tokens (`tokens`: at least its first max_tokens + 1).

    The course decoded the first `max_tokens` tokens, which often ends mid-word. This cut
    ends at the last whole word of spaced text (going back further, to a sentence end, kept
    less text and scored no better: benchmarks/cut_rules.py). It never goes back into the
    title line; when going back to a word leaves `min_tokens` or fewer (a long last word),
    or the title alone fills the cut, there is no text worth keeping: None.
    """
    if len(tokens) <= max_tokens:
        return text
    head = llama_tokens.encoding().decode_bytes(tokens[:max_tokens]).decode("utf-8", "ignore")
    body = head.find("\n") + 1  # where the description starts
    if not body or not head[body:].strip():  # the title fills the cut: no description
        return None
    if not text[len(head)].isspace():
        # Back to the last space; a text with none after the title (Chinese, Japanese) is
        # cut between whole characters instead.
        space = max(head.rfind(" ", body), head.rfind("\n", body))
        head = head[:space].rstrip() if space > body else head
        if llama_tokens.count_joined(head, tokens, "") <= min_tokens:
            return None
    return head.rstrip()


def texts(items: Sequence[Item]) -> list[str]:
    """What the models read: each item's curated text, title first, no question or price."""
    return [item.text for item in items]


def load_pickle(path: str | Path) -> list[Item]:
    """Load a list of Items from a pickle, such as the course's train.pkl, safely.

    A pickle can run any code when loaded; this one (pickles.load) only ever builds Items,
    each with its fields checked, in plain containers.
    """
    loaded = pickles.load(path, "pickle of Items")
    if not isinstance(loaded, list) or not all(isinstance(i, Item) for i in loaded):
        raise pickle.UnpicklingError(f"{path} does not hold a list of Items")
    return loaded


def save_pickle(items: list[Item], path: str | Path) -> None:
    """Save Items as the course did (a pickled list), loadable by `load_pickle`."""
    with open(path, "wb") as f:
        pickle.dump(items, f)

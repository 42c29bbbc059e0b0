"""The course's question as a chat, for chat models: Item -> chat -> answer -> price, and back.

>>> item = Item.from_text("Kettle\\nBoils.", 24.99)
>>> messages_for(item)[-1]["content"]                # a chat model is asked, prefilled
'Price is $'
>>> training_messages(item)[-1]["content"]           # fine-tuning teaches the answer
'Price is $24.99'
>>> back = priced_item(training_messages(item))      # and a training chat is an Item again
>>> back.text == item.text, back.price, get_price(answer(7))
(True, 24.99, 7.0)

The server reads the same chats (`item_from_messages`) and answers with `answer(price)`; a
reply's price is read with the course's rule, `get_price`, or with `get_dollar_price`.
`rag_messages` is the course's week-8 chat: similar products and their prices, then the
question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from items import Item, price_problem

SYSTEM = "You estimate prices of items. Reply only with the price, no explanation"
CHAT_QUESTION = "How much does this cost?"
CONTEXT = ("To provide some context, here are some other items that might be similar to the "
           "item you need to estimate.\n\n")
RELATED = "Potentially related product:\n"
NOW = "And now the question for you:\n\n"
NO_RELATED = "No similar products were found to give as context.\n\n"


def messages_for(item: Item) -> list[dict]:
    """The course's chat: a system line, the item, and an answer prefilled with "Price is $".

    >>> [m["content"] for m in messages_for(Item.from_text("Kettle\\nBoils.", 25))][1:]
    ['How much does this cost?\\n\\nKettle\\nBoils.', 'Price is $']
    """
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{CHAT_QUESTION}\n\n{item.text}"},
        {"role": "assistant", "content": Item.PREFIX},
    ]


def rag_messages(item: Item, related: Sequence[tuple[str, float]]) -> list[dict]:
    """The course's week-8 chat: each related product's text and price, then the question.

    >>> user = rag_messages(Item.from_text("Kettle", 0), [("Teapot", 19.5)])[1]["content"]
    >>> user.startswith(CONTEXT)      # "To provide some context, here are some other items..."
    True
    >>> print(user.removeprefix(CONTEXT))
    Potentially related product:
    Teapot
    Price is $19.50
    <BLANKLINE>
    And now the question for you:
    <BLANKLINE>
    How much does this cost?
    <BLANKLINE>
    Kettle

    With no related products, the chat says so, and asks the zero-shot question:

    >>> print(rag_messages(Item.from_text("Kettle", 0), [])[1]["content"])
    No similar products were found to give as context.
    <BLANKLINE>
    How much does this cost?
    <BLANKLINE>
    Kettle
    """
    system, user, prefill = messages_for(item)
    if not related:
        return [system, {**user, "content": NO_RELATED + user["content"]}, prefill]
    context = "".join(f"{RELATED}{text}\n{answer(price)}\n\n" for text, price in related)
    return [system, {**user, "content": CONTEXT + context + NOW + user["content"]}, prefill]


def answer(price: float) -> str:
    """What a model answers, and what fine-tuning teaches: the prefill and the price in cents.

    >>> answer(24.989), answer(1299)
    ('Price is $24.99', 'Price is $1299.00')
    """
    return f"{Item.PREFIX}{price:.2f}"


def until_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """`text` cut before the first of the `stops` in it, and that stop (None: it has none).

    >>> until_stop("Price is $20.00", [".", "0"]), until_stop("Price is $7", ["\\n"])
    (('Price is $2', '0'), ('Price is $7', None))
    """
    at, stop = min(((text.find(s), s) for s in stops if s and s in text),
                   default=(len(text), None))
    return text[:at], stop


def training_messages(item: Item) -> list[dict]:
    """One training chat: the question's chat, its prefilled answer completed with the price
    to the cent, as the course wrote it."""
    return [*messages_for(item)[:-1], {"role": "assistant", "content": answer(item.price)}]


def priced_item(messages: list[dict]) -> Item:
    """The Item of a training chat, priced by its assistant answer; ValueError if it has none.

    >>> priced_item(messages_for(Item.from_text("Kettle", 1)))
    Traceback (most recent call last):
    ...
    ValueError: the assistant's answer has no price: 'Price is $'
    >>> kettle = messages_for(Item.from_text("Kettle", 1))[:-1]
    >>> priced_item([*kettle, {"role": "assistant", "content": answer(-5)}])
    Traceback (most recent call last):
    ...
    ValueError: the assistant's answer has a price that is negative: 'Price is $-5.00'
    """
    *question, last = messages
    content = last.get("content") if isinstance(last, dict) else None
    price = get_price(content) if isinstance(content, str) else None
    if price is None:
        raise ValueError(f"the assistant's answer has no price: {content!r}")
    why = price_problem(price)
    if why:
        raise ValueError(f"the assistant's answer has a price that is {why}: {content[:60]!r}")
    return item_from_messages(question, price)


def item_from_messages(messages: list[dict], price: float = 0.0) -> Item:
    """The Item that `messages_for` (or `rag_messages`) was given, rebuilt from its chat, at
    `price` (unknown: 0); the products given as context are not part of it.

    >>> item = Item.from_text("Kettle\\nBoils.", 25)
    >>> item_from_messages(messages_for(item)).text == item.text
    True
    >>> item_from_messages(rag_messages(item, [("Teapot", 19.5)])).text == item.text
    True
    >>> item_from_messages(rag_messages(item, [])).text == item.text
    True
    """
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise ValueError("the chat has no user message describing an item")
    text = users[-1].get("content") or ""
    if isinstance(text, list):  # OpenAI content parts
        text = [part.get("text", "") for part in text if isinstance(part, dict)]
        text = "".join(text) if all(isinstance(t, str) for t in text) else None
    if not isinstance(text, str):
        raise ValueError("the user message's content must be text")
    if text.startswith(CONTEXT):
        text = text.rpartition(NOW)[2]
    text = text.removeprefix(NO_RELATED).removeprefix(f"{CHAT_QUESTION}\n\n").strip()
    if not text:
        raise ValueError("the user message is empty")
    return Item.from_text(text, price)


_NUMBER = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"


def get_price(text: str | None) -> float | None:
    """The price in a reply by the course's rule: drop "$" and ",", take the first number
    (None where the course scored 0: no number at all, or one too large to be a price).

    >>> get_price("Price is $1,299.99"), get_price("about 45 dollars"), get_price("$.99")
    (1299.99, 45.0, 0.99)
    >>> get_price("2 for $30"), get_price("I cannot tell"), get_price(""), get_price("9" * 400)
    (2.0, None, None, None)
    """
    number = first_number(text)
    return finite(number) if number else None


def first_number(text: str | None) -> str | None:
    """The number the course reads as the price in a reply, as written (after dropping "$"
    and ","), or None.

    >>> first_number("Price is $1,299.99"), first_number("$-5.00"), first_number("none")
    ('1299.99', '-5.00', None)
    """
    match = re.search(r"[-+]?\d*\.\d+|\d+", (text or "").replace("$", "").replace(",", ""))
    return match.group() if match else None


def get_dollar_price(text: str | None) -> float | None:
    """The price in a reply: the first dollar amount, else the first number, else None.
    Unlike `get_price`, it reads past a count before the price and keeps commas' meaning.

    >>> get_dollar_price("2 for $30"), get_dollar_price("1,299.99"), get_dollar_price("12, 15")
    (30.0, 1299.99, 12.0)
    """
    if not text:
        return None
    match = re.search(r"\$\s*" + _NUMBER, text) or re.search(_NUMBER, text)
    return finite(match.group(1).replace(",", "")) if match else None


def finite(number: str) -> float | None:
    """A number's value, or None where it is too large to be finite (400 nines are `inf`).

    >>> finite("12.5"), finite("9" * 400)
    (12.5, None)
    """
    value = float(number)
    return value if math.isfinite(value) else None

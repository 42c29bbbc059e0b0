"""Llama 3.1's tokenizer, offline.

The course counts and truncates with Meta-Llama-3.1-8B's tokenizer, which is gated on the hub.
The llama-models package ships the identical tokenizer.model (a tiktoken BPE), so the same
token ids come back with no login and no network. It is loaded once, on first use.

>>> encode("Price is $")
[7117, 374, 400]
>>> decode([7117, 374, 400])
'Price is $'
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    """The Llama 3 BPE as a tiktoken Encoding (loaded on first call)."""
    from llama_models.llama3.tokenizer import Tokenizer

    return Tokenizer.get_instance().model


def encode(text: str) -> list[int]:
    """Token ids of `text`, with no special tokens (as `add_special_tokens=False` on the hub)."""
    return encoding().encode_ordinary(text)


def encode_batch(texts: list[str]) -> list[list[int]]:
    """Token ids of many texts at once (tiktoken tokenizes a batch on several threads)."""
    return encoding().encode_ordinary_batch(texts)


def decode(tokens: list[int]) -> str:
    """Text of token ids."""
    return encoding().decode(tokens)


def count(text: str) -> int:
    """Number of tokens in `text`."""
    return len(encode(text))

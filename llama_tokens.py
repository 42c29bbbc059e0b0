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

import re
import string
from functools import lru_cache

import tiktoken

# The pre-tokenizer always splits before a space that sits between two letters, so a text cut
# there encodes as its two pieces' tokens, end to end. Only ASCII letters are trusted here.
_GAP = re.compile(r"(?<=[A-Za-z]) (?=[A-Za-z])")
_LETTERS = frozenset(string.ascii_letters)
CHARS_PER_TOKEN = 4  # a little under the typical 4.5 of product text: pieces rarely overshoot
# transformers' clean_up_tokenization, in its order: the hub's Llama 3.1 tokenizer config sets
# clean_up_tokenization_spaces, so under transformers 4.x every decode did these replacements.
_CLEAN_UPS = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
              (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


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


def clean_up(text: str) -> str:
    """`text` with the spaces before punctuation and contractions removed, as transformers'
    clean-up does.

    >>> clean_up("Fits neck . It 's light , isn't it ?")
    "Fits neck. It's light, isn't it?"
    """
    for old, new in _CLEAN_UPS:
        text = text.replace(old, new)
    return text


def decode_as_hub(tokens: list[int]) -> str:
    """Text of token ids as the hub's Llama 3.1 tokenizer decoded them under transformers 4.x
    (the course's decode): bytes to text, then `clean_up`.

    >>> decode_as_hub(encode("Red , blue ."))
    'Red, blue.'
    """
    return clean_up(decode(tokens))


def count(text: str) -> int:
    """Number of tokens in `text`."""
    return len(encode(text))


def encode_head(text: str, n: int) -> list[int]:
    """The first `n` tokens of `text` (all when it has fewer), encoding little more than those.

    >>> text = "Boils water fast, then keeps it warm. " * 40
    >>> encode_head(text, 161) == encode(text)[:161]
    True
    """
    tokens: list[int] = []
    start = 0
    while len(tokens) < n:
        gap = _GAP.search(text, start + CHARS_PER_TOKEN * (n - len(tokens)))
        end = gap.start() if gap else len(text)
        tokens += encode(text[start:end])
        if gap is None:
            break
        start = end
    return tokens[:n]


def warm_up() -> None:
    """Load the tokenizer and its tables now, e.g. before forking worker processes."""
    _token_lengths()


@lru_cache(maxsize=1)
def _token_lengths() -> list[int]:
    """The length in bytes of every token, by id."""
    model = encoding()
    return [len(model.decode_single_token_bytes(i)) for i in range(model.n_vocab)]


def _last_gap(text: str) -> int:
    """Index of the last space between two ASCII letters in `text`, or 0 when there is none."""
    i = text.rfind(" ")
    while i > 0:
        if text[i - 1] in _LETTERS and text[i + 1:i + 2] in _LETTERS:
            return i
        i = text.rfind(" ", 0, i)
    return 0


def count_joined(text: str, tokens: list[int], suffix: str) -> int:
    """`count(text + suffix)`, where `tokens` start the encoding of a text that begins with
    `text`: only the words after the last cut point are encoded again.

    >>> text = "Boils water fast, then keeps it warm. " * 10
    >>> count_joined(text[:150], encode(text), "\\n\\nPrice is $9.00")
    46
    >>> count(text[:150] + "\\n\\nPrice is $9.00")
    46
    """
    cut = _last_gap(text)
    if cut:
        # Walk back from the end of `tokens` to the token that ends at the cut.
        lengths, k = _token_lengths(), len(tokens)
        end, head_bytes = sum(map(lengths.__getitem__, tokens)), len(text[:cut].encode())
        while end > head_bytes:
            k -= 1
            end -= lengths[tokens[k]]
        if end == head_bytes:
            return k + count(text[cut:] + suffix)
    return count(text + suffix)

"""Reading a price off a causal LM whose prompt ends "Price is $", for tokenizers that write
numbers digit by digit (SmolLM2, Gemma). Llama 3's one token per number up to 999 has its own
rule, `lora.weighted_price`.

Two ways, both over whole dollars (the course's completions are "{dollars}.00"):

* `greedy_digits`: the likeliest digit, then the next, until the likeliest token is no digit.
  Cheap, but it collapses onto the commonest leading digits ("1", "19").
* `digit_paths`: a beam search over digit strings that keeps the `beams` likeliest numbers
  with their probabilities (a number ends where a non-digit token follows); `expected_price`
  averages them by probability ("mean") or takes their weighted median ("median": the guess
  that minimises the expected absolute error under the model's own belief).

Both read the model through `Steps`: a torch model's cache, or a runtime's own next-token
log-probabilities (llama.cpp's, `llamacpp_chat.LlamaCppChat.digit_steps`), so the same
decodings price with whichever runtime holds the model.

>>> paths = [(19.0, 0.5), (25.0, 0.3), (120.0, 0.2)]
>>> expected_price(paths, "mean"), expected_price(paths, "median")
(41.0, 19.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import torch

MAX_DIGITS = 4  # whole dollars up to 9,999; the course's prices stop at 999


@lru_cache(maxsize=8)
def _digit_ids(tok) -> tuple[int, ...]:
    ids = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    if any(i is None or i == tok.unk_token_id for i in ids):
        raise ValueError(f"{type(tok).__name__} has no single-digit tokens 0-9: use the "
                         "one-token rule (lora.weighted_price) for its prices")
    return tuple(ids)


def digit_ids(tok) -> torch.Tensor:
    """The token ids of "0".."9" in `tok`'s vocabulary, in that order."""
    return torch.tensor(_digit_ids(tok))


# `Steps`: the model's next token after each kept prefix of digits, as log-probabilities
# (one row a prefix): of "0".."9", then of the likeliest token that is no digit. Called first
# as steps(None, None) for the prompt alone; then steps(rows, digits) for the prefixes made of
# last call's prefix `rows[i]` followed by digit `digits[i]`.
Steps = Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]


def steps_for(model, ids, tok) -> Steps:
    """`model`'s `Steps` after the prompt `ids` (1 x n): a runtime's own (`model.digit_steps`,
    e.g. llama.cpp's), or a torch model's, whose prefixes share the prompt's cache."""
    digits = digit_ids(tok)
    if hasattr(model, "digit_steps"):
        return model.digit_steps(torch.as_tensor(ids).flatten().tolist(), digits.tolist())
    return torch_steps(model, torch.as_tensor(ids), digits)


def torch_steps(model, ids: torch.Tensor, digits: torch.Tensor) -> Steps:
    """`Steps` of a torch causal LM: the prompt read once, each prefix one token more on its
    cache (repeated for the first digits, then reordered to follow the kept prefixes)."""
    state = {}

    @torch.inference_mode()
    def steps(rows: torch.Tensor | None, chosen: torch.Tensor | None) -> torch.Tensor:
        if rows is None:
            out = model(ids, use_cache=True, logits_to_keep=1)
        else:
            cache = state["out"].cache
            if len(state["out"].logits) == 1:  # every prefix continues the one before
                cache.batch_repeat_interleave(len(rows))
            else:
                cache.reorder_cache(rows)
            out = model(digits[chosen][:, None], cache=cache, use_cache=True)
        state["out"] = out
        logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        other = logprobs.index_fill(1, digits, -math.inf).max(dim=1, keepdim=True).values
        return torch.cat([logprobs[:, digits], other], dim=1)

    return steps


def greedy_digits(model, ids, tok, max_digits: int = MAX_DIGITS) -> float:
    """Whole dollars written greedily after `ids` (1 x n); NaN when the likeliest first token
    is no digit."""
    steps = steps_for(model, ids, tok)
    step, number = steps(None, None), ""
    for _ in range(max_digits):
        best = int(step[0].argmax())
        if best == 10:  # the likeliest token is no digit
            break
        number += str(best)
        if len(number) < max_digits:
            step = steps(torch.tensor([0]), torch.tensor([best]))
    return float(number) if number else math.nan


def digit_paths(model, ids, tok, beams: int = 8,
                max_digits: int = MAX_DIGITS) -> list[tuple[float, float]]:
    """The `beams` likeliest whole-dollar numbers after `ids` (1 x n), as (value, probability)
    pairs, most likely first; probabilities are the model's, not renormalised.

    Each step extends every kept prefix by each digit and keeps the `beams` likeliest; a
    prefix that ends (its next token is no digit) is a finished number. The prompt is read
    once (`steps_for`).
    """
    steps = steps_for(model, ids, tok)
    step = steps(None, None)[:, :10]
    prefixes, logps = [""], torch.zeros(1)
    finished: list[tuple[float, float]] = []
    for depth in range(max_digits + 1):
        if depth:  # the number may end here: the mass of every non-digit token
            ends = torch.log1p(-step.exp().sum(-1).clamp(max=1 - 1e-7))
            finished += [(float(prefix), math.exp(logp))
                         for prefix, logp in zip(prefixes, logps + ends, strict=True)]
        if depth == max_digits:
            break
        scores = (logps[:, None] + step).flatten()
        keep = scores.topk(min(beams, len(scores))).indices
        keep = keep[scores[keep] > -math.inf]  # a runtime that names only its likeliest tokens
        if not len(keep):
            break
        rows, digit = keep // 10, keep % 10
        prefixes = [prefixes[r] + str(int(d)) for r, d in zip(rows, digit, strict=True)]
        logps = scores[keep]
        step = steps(rows, digit)[:, :10]
    finished = [(v, p) for v, p in finished if p > 0]
    return sorted(finished, key=lambda path: -path[1])[:beams]


def expected_price(paths: list[tuple[float, float]], how: str = "mean") -> float:
    """One guess from (value, probability) paths: their weighted mean or weighted median.

    >>> expected_price([], "mean")
    nan
    """
    if how not in ("mean", "median"):
        raise ValueError(f"how must be 'mean' or 'median', not {how!r}")
    total = sum(p for _, p in paths)
    if not paths or total <= 0:
        return math.nan
    if how == "mean":
        return sum(v * p for v, p in paths) / total
    running = 0.0
    for value, p in sorted(paths):
        running += p
        if running >= total / 2:
            return value
    return paths[-1][0]

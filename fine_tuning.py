"""Fine-tune GPT-4o mini on prices through OpenAI's fine-tuning API (the course's week 6).

>>> train_file, validation_file = write_files(train, "data/fine_tune")      # doctest: +SKIP
>>> print(check(train_file))        # refuses a malformed file; tokens and dollars  # doctest: +SKIP
>>> job = create_job(client, upload(client, train_file), upload(client, validation_file))
...                                                                         # doctest: +SKIP
>>> model_name = follow(client, job.id).fine_tuned_model                    # doctest: +SKIP
>>> Tester.test(tuned_pricer(model_name), test)                             # doctest: +SKIP

Each example is the course's chat: the system line, the item's description, and the answer
"Price is $65.99", cents kept; a file is the course's to the byte. Files are checked against
the chat fine-tuning format, and their cost estimated, before anything is uploaded: an upload
is the point where money is spent.

Since May 2026 OpenAI refuses new fine-tuning jobs from accounts that never fine-tuned
before; `create_job` then raises `FineTuningUnavailable`, which names the ways on: any
OpenAI-compatible fine-tuning endpoint (`server.py` offline) through the same client code,
or the open-weights path, `lora.py`, on a GPU.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import tiktoken
from tqdm.auto import tqdm

import settings
from chat import first_number, training_messages
from items import Item, checked_prices, price_problem

if TYPE_CHECKING:
    import openai

    import frontier

BASE_MODEL = "gpt-4o-mini-2024-07-18"
MIN_EXAMPLES = 10                 # the API refuses smaller training files
DEFAULT_TOKEN_LIMIT = 65_536      # tokens per training example
TOKEN_LIMITS = {"gpt-3.5-turbo-0125": 16_385}
# USD per million training tokens, from OpenAI's price list; edit as it changes.
TRAINING_PRICES = {
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
}
ROLES = {"system", "user", "assistant"}
MESSAGE_KEYS = {"role", "content", "name", "weight", "function_call"}
FINISHED = {"succeeded", "failed", "cancelled"}
# A fine-tuned model's answer, "Price is $65.99", takes up to 7 tokens: the course asked for 7.
PARAMS = {"max_tokens": 7, "seed": 42}


def choose(train: Sequence[Item], n_train: int = 200,
           n_validation: int = 50) -> tuple[list[Item], list[Item]]:
    """The first `n_train` items to train on and the next `n_validation` to validate with."""
    if n_train < MIN_EXAMPLES:
        raise ValueError(f"OpenAI needs at least {MIN_EXAMPLES} training examples")
    if n_train + n_validation > len(train):
        raise ValueError(f"asked for {n_train} + {n_validation} examples from {len(train)} items")
    return list(train[:n_train]), list(train[n_train:n_train + n_validation])


def make_jsonl(items: Sequence[Item]) -> str:
    """The items as JSON Lines, one {"messages": [...]} chat per line, with no line break
    after the last: the course's file, byte for byte."""
    return "\n".join(json.dumps({"messages": training_messages(item)})
                     for item in checked_prices(items, "a fine-tuning file's items"))


def write_jsonl(items: Sequence[Item], path: str | Path) -> Path:
    """Write `make_jsonl(items)` to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make_jsonl(items))
    return path


def write_files(train: Sequence[Item], folder: str | Path, n_train: int = 200,
                n_validation: int = 50) -> tuple[Path, Path]:
    """Choose the examples and write fine_tune_train.jsonl and fine_tune_validation.jsonl."""
    chosen, validation = choose(train, n_train, n_validation)
    folder = Path(folder)
    return (write_jsonl(chosen, folder / "fine_tune_train.jsonl"),
            write_jsonl(validation, folder / "fine_tune_validation.jsonl"))


@lru_cache(maxsize=8)
def encoding_for(model: str) -> tuple[tiktoken.Encoding, bool]:
    """The model's tokenizer and True; offline, Llama 3's (a close 128k BPE) and False."""
    try:
        return tiktoken.encoding_for_model(model.removeprefix("ft:").split(":")[0]), True
    except (KeyError, ValueError, OSError):  # unknown model, or the encoding can't be fetched
        import llama_tokens

        return llama_tokens.encoding(), False


def count_tokens(messages: list[dict], encoding: tiktoken.Encoding) -> int:
    """Tokens of one chat as OpenAI's cookbook counts them: 3 per message, 1 per name, 3 more."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str) and key != "weight":
                total += len(encoding.encode_ordinary(value)) + (1 if key == "name" else 0)
    return total


def problem_in(example: object) -> str | None:
    """What is wrong with one example of the chat format, or with a price it teaches (read as
    the course reads one: NaN, infinite or negative), or None."""
    if not isinstance(example, dict):
        return "data_type"
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return "missing_messages_list"
    for message in messages:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return "message_missing_key"
        if set(message) - MESSAGE_KEYS:
            return "message_unrecognized_key"
        if message["role"] not in ROLES:
            return "unrecognized_role"
        if not isinstance(message["content"], str) or not message["content"].strip():
            return "missing_content"
        if message.get("weight", 1) not in (0, 1) or ("weight" in message
                                                     and message["role"] != "assistant"):
            return "bad_weight"
    roles = [m["role"] for m in messages]
    if "assistant" not in roles:
        return "example_missing_assistant_message"
    answers = (first_number(m["content"]) for m in messages if m["role"] == "assistant")
    if any(number is not None and price_problem(float(number)) for number in answers):
        return "invalid_price"  # what the course reads as the price is infinite or negative
    turns = roles[1:] if roles[0] == "system" else roles
    if any(role != ("user", "assistant")[i % 2] for i, role in enumerate(turns)) \
            or turns[-1] != "assistant":
        return "bad_message_order"
    return None


@dataclass
class Validation:
    """What a check of a fine-tuning file found: problems by kind, tokens per good example."""

    path: str
    model: str
    examples: int = 0
    errors: Counter = field(default_factory=Counter)
    first_problems: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    exact_tokens: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors

    def billed_tokens(self, epochs: int = 1) -> int:
        """Training tokens charged: each example up to the limit, once per epoch."""
        limit = TOKEN_LIMITS.get(self.model, DEFAULT_TOKEN_LIMIT)
        return epochs * sum(min(t, limit) for t in self.tokens)

    def dollars(self, epochs: int = 1) -> float | None:
        """Estimated cost of training on this file, or None for a model without a known price."""
        price = TRAINING_PRICES.get(self.model)
        return None if price is None else self.billed_tokens(epochs) * price / 1e6

    def __str__(self) -> str:
        head = f"{Path(self.path).name}: {self.examples:,} examples"
        if not self.ok:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.errors.items()))
            return f"{head}, refused: {kinds}\n" + "\n".join(self.first_problems)
        dollars = self.dollars()
        cost = "an unknown price" if dollars is None else f"about ${dollars:.2f}"
        counted = "" if self.exact_tokens else " (counted with Llama 3's tokenizer, offline)"
        return (f"{head}, {min(self.tokens):,} to {max(self.tokens):,} tokens each; "
                f"{self.billed_tokens():,} training tokens per epoch{counted}, {cost} "
                f"per epoch on {self.model}")


def jsonl_lines(path: str | Path) -> list[tuple[int, bytes]]:
    """The numbered non-blank lines of a JSONL file, split where bytes end a line, as JSON
    sees it: a U+2028 or U+0085 inside a string is text, not a line end.

    >>> import tempfile; path = Path(tempfile.mkdtemp()) / "x.jsonl"
    >>> _ = path.write_bytes(b'{"a": "1\\xe2\\x80\\xa8 2"}\\n\\n{"b": 3}\\n')  # U+2028 in UTF-8
    >>> jsonl_lines(path)
    [(1, b'{"a": "1\\xe2\\x80\\xa8 2"}'), (3, b'{"b": 3}')]
    """
    lines = enumerate(Path(path).read_bytes().splitlines(), start=1)
    return [(number, line) for number, line in lines if line.strip()]


def validate_jsonl(path: str | Path, model: str = BASE_MODEL,
                   min_examples: int = MIN_EXAMPLES) -> Validation:
    """Check a JSONL file against the chat fine-tuning format; count tokens of each example."""
    encoding, exact = encoding_for(model)
    limit = TOKEN_LIMITS.get(model, DEFAULT_TOKEN_LIMIT)
    report = Validation(str(path), model, exact_tokens=exact)
    for number, line in jsonl_lines(path):
        report.examples += 1
        try:
            example = json.loads(line.decode())
            problem = problem_in(example)
        except UnicodeDecodeError:
            problem = "invalid_utf8"
        except json.JSONDecodeError:
            problem = "invalid_json"
        if problem is None:
            tokens = count_tokens(example["messages"], encoding)
            problem = "too_many_tokens" if tokens > limit else None
            report.tokens.append(tokens)
        if problem:
            report.errors[problem] += 1
            if len(report.first_problems) < 5:
                report.first_problems.append(f"  line {number}: {problem}")
    if report.examples < min_examples:
        report.errors["too_few_examples"] += 1
        report.first_problems.append(f"  {report.examples} examples; at least {min_examples}")
    return report


def check(path: str | Path, model: str = BASE_MODEL,
          min_examples: int = MIN_EXAMPLES) -> Validation:
    """`validate_jsonl`, raising ValueError with the problems when the file would be refused."""
    report = validate_jsonl(path, model, min_examples)
    if not report.ok:
        raise ValueError(str(report))
    return report


def upload(client, path: str | Path, min_examples: int = 1) -> str:
    """Check a file's format, upload it for fine-tuning, return its file id."""
    check(path, min_examples=min_examples)
    with open(path, "rb") as f:
        return client.files.create(file=f, purpose="fine-tune").id


def integrations(project: str = "gpt-pricer") -> list[dict] | None:
    """The Weights & Biases integration when WANDB_API_KEY is set (the key must also be
    registered with the OpenAI organisation), else None."""
    if not settings.get("WANDB_API_KEY"):
        return None
    return [{"type": "wandb", "wandb": {"project": project}}]


class FineTuningUnavailable(RuntimeError):
    """The endpoint will not fine-tune for this account, and says so."""


# What a refusal of fine-tuning itself says, whatever its status code.
_NO_ACCESS = re.compile(r"not available|does not have access|do not have access|"
                        r"permission", re.IGNORECASE)


def said(error: openai.APIStatusError) -> str:
    """What the server said in an error reply: its message, else the client's summary."""
    body = error.body if isinstance(error.body, dict) else {}
    return str(body.get("message") or error.message)


def unavailable(client, error: openai.APIStatusError) -> FineTuningUnavailable:
    """The refusal of a job, explained, with the ways to fine-tune that remain."""
    return FineTuningUnavailable(
        f"{client.base_url} refused to create a fine-tuning job (HTTP {error.status_code}: "
        f"{said(error)}).\n"
        "Since May 2026 OpenAI no longer lets accounts that never fine-tuned before start "
        "fine-tuning jobs (models fine-tuned earlier still answer). Ways on:\n"
        "  - an account that has fine-tuned before: this same flow, unchanged;\n"
        "  - any OpenAI-compatible fine-tuning endpoint: pass openai.OpenAI(base_url=..., "
        "api_key=...) as the client; offline, this project's local server "
        "(server.start(..., trainer=...)) trains a model on /v1/fine_tuning/jobs;\n"
        "  - the open weights: LoRA / QLoRA of Llama 3.1 8B with lora.py on a CUDA GPU "
        "(notebook 06, part 2).")


def create_job(client, training_file: str, validation_file: str | None = None,
               model: str = BASE_MODEL, seed: int = 42, epochs: int = 1, suffix: str = "pricer"):
    """Start a supervised fine-tuning job on uploaded files; returns the job.

    Raises FineTuningUnavailable when the endpoint refuses fine-tuning to this account.
    """
    wandb = integrations()
    extra = {"integrations": wandb} if wandb else {}
    if validation_file:
        extra["validation_file"] = validation_file
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}}
    import openai

    try:
        return client.fine_tuning.jobs.create(training_file=training_file, model=model,
                                              seed=seed, suffix=suffix, method=method, **extra)
    except openai.APIStatusError as error:
        if error.status_code == 403 or _NO_ACCESS.search(said(error)):
            raise unavailable(client, error) from error
        raise


def tuned_pricer(model: str, base_url: str | None = None, api_key: str | None = None,
                 **kwargs) -> frontier.ChatPricer:
    """A fine-tuned model as a predictor, called as the course called it (`PARAMS`), over
    OpenAI or, with `base_url`, any OpenAI-compatible server; `kwargs` go to ChatPricer."""
    import chat_api
    import frontier

    tuned = chat_api.OpenAIChat(model, base_url=base_url, api_key=api_key, params=PARAMS)
    return frontier.ChatPricer(tuned, **kwargs)


class FineTuneFailed(RuntimeError):
    """The job ended without a model."""


def follow(client, job_id: str, poll_seconds: float = 10.0, timeout: float | None = None,
           progress: bool = True):
    """Wait for a job, showing its status and steps on a progress bar and its new events.

    Returns the finished job; raises FineTuneFailed if it failed or was cancelled, and
    TimeoutError after `timeout` seconds (the job goes on: follow it again later).
    """
    seen: set[str] = set()
    start = time.monotonic()
    with tqdm(desc="Fine-tuning", unit="step", disable=not progress) as bar:
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = client.fine_tuning.jobs.list_events(job_id, limit=50).data
            for event in reversed(events):  # the API lists the newest first
                if event.id in seen:
                    continue
                seen.add(event.id)
                data = event.data if isinstance(event.data, dict) else {}
                if "step" in data and "total_steps" in data:
                    bar.total = data["total_steps"]
                    bar.update(data["step"] - bar.n)
                else:
                    bar.write(event.message)
            bar.set_description(f"Fine-tuning ({job.status})")
            if job.status in FINISHED:
                if job.status == "succeeded" and bar.total:
                    bar.update(bar.total - bar.n)
                break
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout:.0f}s")
            time.sleep(poll_seconds)
    if job.status != "succeeded":
        reason = job.error.message if job.error and job.error.message else job.status
        raise FineTuneFailed(f"fine-tuning job {job_id} {job.status}: {reason}")
    return job


def fine_tune(client, train: Sequence[Item], folder: str | Path, model: str = BASE_MODEL,
              n_train: int = 200, n_validation: int = 50, progress: bool = True,
              poll_seconds: float = 10.0) -> str:
    """The whole flow: write and check both files, show the estimate, upload, train, wait.

    Returns the fine-tuned model's name, to score with the frontier predictor and the Tester.
    """
    train_path, validation_path = write_files(train, folder, n_train, n_validation)
    print(check(train_path, model))
    check(validation_path, model, min_examples=1)
    job = create_job(client, upload(client, train_path, MIN_EXAMPLES),
                     upload(client, validation_path), model)
    return follow(client, job.id, poll_seconds, progress=progress).fine_tuned_model

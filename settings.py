"""Every setting of the project, read when it is used, from the environment or a .env file.

>>> isinstance(data_dir(), Path), threads() >= 1
(True, True)

Nothing is read at import: a notebook may set `os.environ[...]`, or write `.env`, at any
point, and the next call sees it. The environment wins over `.env`, which is looked for
in the working folder and the folders above it (so notebooks/ finds the project's .env).
Reading `.env` never changes `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

ROOT = Path(__file__).parent


def get(name: str, default: str | None = None) -> str | None:
    """A setting: the environment's value, else `.env`'s, else `default`; blanks count as unset.

    >>> get("PRICER_NO_SUCH_SETTING", "fallback")
    'fallback'
    """
    value = os.environ.get(name)
    if value is None or not value.strip():
        path = find_dotenv(usecwd=True)
        value = dotenv_values(path).get(name) if path else None
    return value.strip() if value and value.strip() else default


def names(name: str, default: str) -> list[str]:
    """A comma-separated list setting.

    >>> names("PRICER_NO_SUCH_SETTING", "a, b")
    ['a', 'b']
    """
    return [n.strip() for n in (get(name) or default).split(",") if n.strip()]


def data_dir() -> Path:
    """Where data, caches, models and results go: PRICER_DATA_DIR, else ./data in the project."""
    return Path(get("PRICER_DATA_DIR") or ROOT / "data")


def jobs_dir() -> Path:
    """Where local fine-tuning jobs keep their trainers' scratch: open-jobs in the data folder."""
    return data_dir() / "open-jobs"


def server_uploads() -> int:
    """Bytes that the local server keeps of uploaded files at most, all files together
    (PRICER_SERVER_UPLOADS_MB, default 1024 MB): a course's training file is a few MB."""
    return count("PRICER_SERVER_UPLOADS_MB", 1024) << 20


def results_path() -> Path:
    """The table of scored runs: PRICER_RESULTS, else results.csv in the data folder."""
    return Path(get("PRICER_RESULTS") or data_dir() / "results.csv")


def source() -> str:
    """Where raw data comes from: PRICER_SOURCE, "sample" (the default), "hub", or a path."""
    return get("PRICER_SOURCE", "sample")


EDITIONS = ("2024", "2025")


def edition() -> str:
    """The course's edition to follow (PRICER_EDITION): "2024" (the default) curates Items
    with 160-token prompts and a balanced sample; "2025" parses records by its rules, samples
    by price squared into train / validation / test, and prompts with an LLM's summary.

    >>> edition() in EDITIONS
    True
    """
    return choice("PRICER_EDITION", EDITIONS, "2024")


def count(name: str, default: int) -> int:
    """A whole-number setting of at least 1.

    >>> count("PRICER_NO_SUCH_SETTING", 3)
    3
    """
    value = get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def choice(name: str, choices: Sequence[str], default: str) -> str:
    """A setting that names one of `choices` (in any case); `default` when unset.

    >>> choice("PRICER_NO_SUCH_SETTING", ("exact", "fast"), "fast")
    'fast'
    """
    value = get(name) or default
    if value.lower() not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value.lower()


# Up to this many items, models run on one thread unless PRICER_THREADS says otherwise: the
# bundled sample, the notebooks and the tests, whose printed digits must not depend on the
# machine. LightGBM sums its histograms, and torch its float32 gradients, in an order that
# depends on the thread count, so their guesses move in the last digits with it.
SAMPLE_ITEMS = 20_000


def threads(items: int | None = None) -> int:
    """Threads a model may use on `items` training items (PRICER_THREADS when set).

    By default every core for more than SAMPLE_ITEMS items (the course's real sizes, where
    time matters and float32 training differs by CPU anyway), else 1: the count changes the
    last digits of LightGBM's and the sparse MLP's guesses, and the notebooks compare them
    across machines. Work that does not say its size (`items` None) gets 1.

    >>> threads(800) == count("PRICER_THREADS", 1)  # the sample: one thread, unless set
    True
    >>> threads(400_000) == (count("PRICER_THREADS", 1) if get("PRICER_THREADS") else cores())
    True
    """
    if get("PRICER_THREADS"):
        return count("PRICER_THREADS", 1)
    return cores() if items is not None and items > SAMPLE_ITEMS else 1


def workers() -> int:
    """Processes that curate raw records (PRICER_WORKERS, default every core): the Items, and
    their order, are the same for any count."""
    return count("PRICER_WORKERS", cores())


EMBEDDING_MODES = ("exact", "fast")


def embeddings() -> str:
    """How sentence embeddings are computed (PRICER_EMBEDDINGS): "exact" (float64 on
    `threads()` threads: the same digits on every CPU) or "fast" (the fastest precision the
    machine has, on every core). Unset: exact on the bundled sample, which the notebooks and
    tests replay, fast on the hub's or a file's data, the course's real sizes.

    >>> embeddings() in EMBEDDING_MODES
    True
    """
    return choice("PRICER_EMBEDDINGS", EMBEDDING_MODES,
                  "exact" if source() == "sample" else "fast")


def cores() -> int:
    """The CPU cores this process may run on (all of the machine's where that is not known)."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity query
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def llm_threads() -> int:
    """Threads an open LLM may use to fine-tune or answer (PRICER_LLM_THREADS, default every
    core): its float32 arithmetic differs by CPU whatever the count, so nothing compared to
    the cent depends on it, and it trains and answers faster on every core.
    """
    return count("PRICER_LLM_THREADS", cores())


def llm_precision() -> str:
    """The precision an open LLM trains and answers in (PRICER_LLM_PRECISION): "auto" (the
    default: the fastest the machine multiplies natively, `hardware.precision`), "float32" or
    "bf16".

    >>> llm_precision()
    'auto'
    """
    return choice("PRICER_LLM_PRECISION", ("auto", "float32", "bf16"), "auto")


def llm_runtime(default: str = "transformers") -> str:
    """What answers an open LLM's chats in the local server (PRICER_LLM_RUNTIME): "openvino"
    (OpenVINO GenAI), "llama.cpp" (through the xllamacpp wheel) or "transformers"; `default`
    (the server's: `hardware.fastest_runtime()`) when unset.

    >>> llm_runtime("llama.cpp") in ("openvino", "llama.cpp", "transformers")
    True
    """
    return choice("PRICER_LLM_RUNTIME", ("openvino", "llama.cpp", "transformers"), default)


@contextmanager
def torch_threads(n: int | None = None) -> Iterator[None]:
    """Let torch use `n` threads (default `threads()`) inside the block, then restore its own
    count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def server_timeout() -> int:
    """Seconds the local server gives one answer, waiting for its model included
    (PRICER_SERVER_TIMEOUT, default 60): a 5-token price takes well under a second."""
    return count("PRICER_SERVER_TIMEOUT", 60)


def open_model() -> str:
    """The open LLM to load (PRICER_OPEN_MODEL): a name in `open_models.REGISTRY`."""
    return get("PRICER_OPEN_MODEL", "smollm2-135m")


def openvino():
    """OpenVINO, imported with its usage reporting off: its converter would otherwise send
    events to Google Analytics on import and on each conversion (openvino-telemetry, on until
    one opts out), where Chroma's reporting is switched off too (vectors.client). Every module
    that uses OpenVINO, or a package that imports it (openvino-genai), imports it here first.

    >>> openvino().__name__
    'openvino'
    """
    import sys

    reporting = sys.modules.get("openvino_telemetry")
    sys.modules["openvino_telemetry"] = None  # its import fails: OpenVINO uses its silent stub
    try:
        import openvino
    finally:
        if reporting is None:
            del sys.modules["openvino_telemetry"]
        else:
            sys.modules["openvino_telemetry"] = reporting
    return openvino


@contextmanager
def quiet_loading() -> Iterator[None]:
    """No progress bar from transformers inside the block: loading weights takes a second,
    and its bar would be a widget that differs on every run of a notebook."""
    from transformers.utils import logging

    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


def openai_models() -> list[str]:
    """OpenAI models to test (PRICER_OPENAI_MODELS): models retire, so this is a setting."""
    return names("PRICER_OPENAI_MODELS", "gpt-4o-mini,gpt-4o")


def anthropic_models() -> list[str]:
    """Anthropic models to test (PRICER_ANTHROPIC_MODELS)."""
    return names("PRICER_ANTHROPIC_MODELS", "claude-haiku-4-5")

"""Every setting of the project, read when it is used, from the environment or a .env file.

>>> data_dir().name, threads() >= 1
('data', True)

Nothing is read at import: a notebook may set `os.environ[...]`, or write `.env`, at any
point, and the next call sees it. The environment wins over `.env`, which is looked for
in the working folder and the folders above it (so notebooks/ finds the project's .env).
Reading `.env` never changes `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
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


def count(name: str, default: int) -> int:
    """A whole-number setting of at least 1.

    >>> count("PRICER_NO_SUCH_SETTING", 3)
    3
    """
    value = get(name, str(default))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def threads() -> int:
    """Threads a model may use (PRICER_THREADS, default 1).

    Fixed rather than "all cores" because some results (LightGBM, sentence embeddings) depend
    on the count; on a busy two-core machine one thread also trained faster than two.
    """
    return count("PRICER_THREADS", 1)


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
    value = (get("PRICER_LLM_PRECISION") or "auto").lower()
    if value not in ("auto", "float32", "bf16"):
        raise ValueError(f"PRICER_LLM_PRECISION must be auto, float32 or bf16, not {value!r}")
    return value


def llm_runtime() -> str:
    """What answers an open LLM's chats in the local server (PRICER_LLM_RUNTIME): "llama.cpp"
    (the default, through the xllamacpp wheel, when it is installed) or "transformers".

    >>> llm_runtime() in ("llama.cpp", "transformers")
    True
    """
    import importlib.util

    default = "llama.cpp" if importlib.util.find_spec("xllamacpp") else "transformers"
    value = get("PRICER_LLM_RUNTIME") or default
    if value not in ("llama.cpp", "transformers"):
        raise ValueError(f"PRICER_LLM_RUNTIME must be llama.cpp or transformers, not {value!r}")
    return value


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

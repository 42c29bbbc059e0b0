"""Chat APIs for price predictors: OpenAI, Anthropic or any OpenAI-compatible server, with
their answers cached on disk, failed calls retried and tokens metered.

>>> chat = OpenAIChat("gpt-4o-mini")                     # needs OPENAI_API_KEY  # doctest: +SKIP
>>> call(chat, messages, Backoff(), Meter(chat.model))   # a Reply, or why none  # doctest: +SKIP

Every answer can be stored in a SQLite `Cache` the moment it arrives, keyed by endpoint, model,
messages and parameters (`cache_key`): re-running, or resuming after a crash, never pays for a
call twice, and nor do two processes sharing the cache (a call in flight is claimed there).
Rate limits (429), server errors (5xx), timeouts and malformed replies are retried with
backoff and jitter, honouring Retry-After; a rejected key or an unknown model raises a
ChatAPIError that says what to fix. `OpenAIChat(model, base_url=...)` talks to any
OpenAI-compatible server (Ollama, vLLM, llama.cpp, OpenRouter, or this repository's own
`server.py`). `frontier.ChatPricer` turns any of these into a price predictor.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import os
import random
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import anthropic
import openai

import open_models
import settings
from files import gone
from pricer import PricerError

OPENAI_PARAMS = {"max_tokens": 5, "seed": 42}
ANTHROPIC_PARAMS = {"max_tokens": 5}

# List prices in USD per million tokens (input, output). Edit as providers change them.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4-5": (5.00, 25.00),
    **{name: (0.0, 0.0) for name in open_models.REGISTRY},  # open models, on this machine
}

@dataclass(frozen=True)
class Reply:
    """One answer and the tokens it was billed for."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class ChatAPIError(PricerError):
    """A call that cannot succeed as configured: a rejected key, an unknown model, a bad request.
    It stops a Tester run."""


class MalformedReply(Exception):
    """The endpoint answered 2xx with something that is not a chat completion."""


# Each provider's key setting, the setting its SDK reads a base URL from, and its own host.
PROVIDERS = {"OPENAI_API_KEY": ("OPENAI_BASE_URL", "api.openai.com"),
             "ANTHROPIC_API_KEY": ("ANTHROPIC_BASE_URL", "api.anthropic.com")}


def base_url_for(setting: str, base_url: str | None) -> str | None:
    """The URL a provider's SDK will really call: `base_url`, else the provider's base URL
    setting (environment or .env), else None: the provider's own.

    >>> base_url_for("OPENAI_API_KEY", "http://localhost:8000/v1")
    'http://localhost:8000/v1'
    """
    return base_url or settings.get(PROVIDERS[setting][0])


def is_provider(setting: str, base_url: str | None) -> bool:
    """Whether `base_url` (resolved by `base_url_for`) is the provider's own API.

    >>> is_provider("OPENAI_API_KEY", None), is_provider("OPENAI_API_KEY", "https://api.openai.com/v1")
    (True, True)
    >>> is_provider("OPENAI_API_KEY", "http://api.openai.com.example.net/v1")
    False
    """
    if base_url is None:
        return True
    parts = urlsplit(base_url)
    return parts.scheme == "https" and parts.hostname == PROVIDERS[setting][1]


def key_for(setting: str, api_key: str | None, base_url: str | None) -> tuple[str, str]:
    """(the key to send, where it came from): `api_key` if given; else the provider's own key
    (the `setting`, from the environment or .env) for the provider itself, and "none" for any
    other endpoint. `base_url` is the one the SDK will use (`base_url_for`). An explicit key,
    even "none", also stops the SDKs reading keys from the environment themselves.

    >>> key_for("OPENAI_API_KEY", None, "http://localhost:8000/v1")
    ('none', 'the api_key you passed')
    """
    if not is_provider(setting, base_url):
        return api_key or "none", "the api_key you passed"
    api_key = api_key or settings.get(setting)
    if not api_key:
        raise ChatAPIError(f"no key: set {setting} (e.g. in .env)")
    return api_key, setting


class Served:
    """What a chat over another endpoint than the provider's own adds to its identity: the
    fingerprint the endpoint reports for its model, when it reports one (this repository's
    server.py does, new each time it starts), so answers cached from one predictor are never
    taken for another's served under the same name at the same address."""

    client: openai.OpenAI | anthropic.Anthropic
    model: str
    _fingerprint: str | None = None
    _asked = False
    _ask_after = 0.0  # after a server error, when to ask again (time.monotonic)
    ASK_AGAIN_SECONDS = 60.0

    def served(self) -> dict:
        """{"served": fingerprint}, or {} for an endpoint that reports none."""
        if not self._asked and time.monotonic() >= self._ask_after:
            try:
                info = self.client.models.retrieve(self.model)
                self._fingerprint = getattr(info, "fingerprint", None)
            except STATUS_ERRORS as e:
                if e.status_code >= 500:  # ask again later, not at every item
                    self._ask_after = time.monotonic() + self.ASK_AGAIN_SECONDS
                    return {}
            except (*CONNECTION_ERRORS, *VALIDATION_ERRORS, json.JSONDecodeError):
                return {}
            self._asked = True
        return {"served": self._fingerprint} if self._fingerprint else {}


class OpenAIChat(Served):
    """OpenAI's chat completions, or any compatible endpoint when `base_url` is given.

    The OpenAI key, organization and project are only ever sent to OpenAI (whatever
    OPENAI_BASE_URL says): another endpoint gets `api_key` or "none", and no organization.
    """

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None,
                 params: dict | None = None, timeout: float = 30.0):
        base_url = base_url_for("OPENAI_API_KEY", base_url)
        api_key, self.key_hint = key_for("OPENAI_API_KEY", api_key, base_url)
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url,
                                    timeout=timeout, max_retries=0)
        own = is_provider("OPENAI_API_KEY", base_url)
        if not own:  # the SDK took them from OPENAI_ORG_ID / OPENAI_PROJECT_ID: OpenAI's
            self.client.organization = self.client.project = None
        self.model = model
        self.params = dict(OPENAI_PARAMS if params is None else params)
        self.endpoint = str(self.client.base_url).rstrip("/")
        self._asked = own  # OpenAI itself: nothing to ask

    def identity(self) -> dict:
        """What, besides the messages, decides the answer (the cache key)."""
        return {"endpoint": self.endpoint, "model": self.model, "params": self.params,
                **self.served()}

    def complete(self, messages: list[dict]) -> Reply:
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages,
                                                           **self.params)
        except json.JSONDecodeError as e:
            raise MalformedReply(f"the body is not JSON: {e}") from e
        try:
            text = response.choices[0].message.content or ""
            usage = response.usage
            return Reply(str(text), usage.prompt_tokens if usage else 0,
                         usage.completion_tokens if usage else 0)
        except (AttributeError, IndexError, TypeError) as e:
            raise MalformedReply(f"not a chat completion: {str(response)[:200]!r}") from e


class AnthropicChat(Served):
    """Anthropic's messages API: the system prompt goes apart, the answer is prefilled.

    Set `prefill=False` for models that refuse a prefilled assistant turn. The Anthropic key
    is only ever sent to Anthropic: another endpoint gets `api_key` or "none".
    """

    def __init__(self, model: str, api_key: str | None = None, base_url: str | None = None,
                 params: dict | None = None, timeout: float = 30.0, prefill: bool = True):
        base_url = base_url_for("ANTHROPIC_API_KEY", base_url)
        api_key, self.key_hint = key_for("ANTHROPIC_API_KEY", api_key, base_url)
        self.client = anthropic.Anthropic(api_key=api_key, base_url=base_url,
                                          timeout=timeout, max_retries=0)
        self.model, self.prefill = model, prefill
        self.params = dict(ANTHROPIC_PARAMS if params is None else params)
        self.endpoint = str(self.client.base_url).rstrip("/")
        self._asked = is_provider("ANTHROPIC_API_KEY", base_url)  # the provider: nothing to ask

    def identity(self) -> dict:
        return {"endpoint": self.endpoint, "model": self.model, "params": self.params,
                "prefill": self.prefill, **self.served()}

    def complete(self, messages: list[dict]) -> Reply:
        system, turns = messages[0]["content"], messages[1:]
        if not self.prefill and turns[-1]["role"] == "assistant":
            turns = turns[:-1]
        try:
            response = self.client.messages.create(model=self.model, system=system,
                                                   messages=turns, **self.params)
        except json.JSONDecodeError as e:
            raise MalformedReply(f"the body is not JSON: {e}") from e
        try:
            text = "".join(b.text for b in response.content if getattr(b, "type", "") == "text")
            usage = response.usage
            return Reply(text, usage.input_tokens, usage.output_tokens)
        except (AttributeError, TypeError) as e:
            raise MalformedReply(f"not a message: {str(response)[:200]!r}") from e


class Chat(Protocol):
    """What a ChatPricer needs of an API: a model, an endpoint, and one completion per call."""

    model: str
    endpoint: str
    key_hint: str

    def identity(self) -> dict: ...

    def complete(self, messages: list[dict]) -> Reply: ...


CONNECTION_ERRORS = (openai.APIConnectionError, anthropic.APIConnectionError)  # and timeouts
STATUS_ERRORS = (openai.APIStatusError, anthropic.APIStatusError)
VALIDATION_ERRORS = (openai.APIResponseValidationError, anthropic.APIResponseValidationError)
RETRYABLE_STATUS = {408, 409, 429}  # and every 5xx


def retryable(error: Exception, chat: Chat) -> bool:
    """True for a transient failure; a ChatAPIError for a request that can never succeed."""
    if isinstance(error, (MalformedReply, *VALIDATION_ERRORS, *CONNECTION_ERRORS)):
        return True
    if not isinstance(error, STATUS_ERRORS):
        return False
    status = error.status_code
    if status in RETRYABLE_STATUS or status >= 500:
        return True
    where = f"{chat.endpoint} ({chat.model})"
    if status == 401:
        message = f"{where} rejected the API key (HTTP 401): check {chat.key_hint}"
    elif status == 403:
        message = f"{where} refused access (HTTP 403): check {chat.key_hint} and the account"
    elif status == 404:
        message = f"{where} has no such model (HTTP 404): models retire, pick a current one"
    else:
        why = re.sub(r"^Error code: \d+ - ", "", error.message)
        message = f"{where} rejected the request (HTTP {status}): {why}"
        if "prefill" in message.lower():
            message += " (for this model use AnthropicChat(..., prefill=False))"
    raise ChatAPIError(message) from error


def retry_after(error: Exception) -> float | None:
    """The seconds a server asked us to wait (Retry-After or retry-after-ms), if it did."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        if re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            return float(value)
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass
class Backoff:
    """Retry policy: exponential backoff with jitter, unless the server says how long to wait.

    >>> 0.5 <= Backoff(base=1.0).delay(0, None) <= 1.0, Backoff().delay(3, 2.0) >= 2.0
    (True, True)
    """

    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, asked: float | None) -> float:
        if asked is not None:
            return min(asked, self.cap) + random.uniform(0, self.base / 10)
        ceiling = min(self.cap, self.base * 2 ** attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass
class Meter:
    """Calls, tokens and estimated dollars of one pricer's run."""

    model: str
    calls: int = 0  # answered calls: what is billed
    cached: int = 0  # answers read from the cache instead of calling
    retries: int = 0
    failed: int = 0  # items given up on after every retry (no price)
    no_price: int = 0  # answers with no number in them
    input_tokens: int = 0
    output_tokens: int = 0
    errors: Counter = field(default_factory=Counter)  # why calls were retried or given up
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def error(self, why: str) -> None:
        with self._lock:
            self.errors[why] += 1

    def dollars(self, prices: tuple[float, float] | None = None) -> float | None:
        """Estimated cost at `prices` (USD per million tokens in, out), by default PRICES'.

        >>> Meter("gpt-4o-mini", input_tokens=2_000_000, output_tokens=500_000).dollars()
        0.6
        """
        prices = prices or PRICES.get(self.model)
        if prices is None:
            return None
        return (self.input_tokens * prices[0] + self.output_tokens * prices[1]) / 1_000_000

    def __str__(self) -> str:
        dollars = self.dollars()
        cost = (f"about ${dollars:,.4f}" if dollars is not None
                else f"cost unknown: add {self.model!r} to chat_api.PRICES")
        text = (f"{self.model}: {self.calls:,} calls, {self.cached:,} from cache, "
                f"{self.retries:,} retries, {self.failed:,} failed, {self.no_price:,} without "
                f"a price; {self.input_tokens:,} tokens in, {self.output_tokens:,} out; {cost}")
        if self.errors:
            text += "\n  errors: " + ", ".join(f"{n} {why}" for why, n in self.errors.items())
        return text


SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY, endpoint TEXT, model TEXT, request TEXT, text TEXT,
    input_tokens INTEGER, output_tokens INTEGER, created REAL)"""
CLAIMS = "CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT, since REAL)"
FAILURES = "CREATE TABLE IF NOT EXISTS failures (key TEXT PRIMARY KEY, why TEXT, since REAL)"


class Cache:
    """Answers on disk (SQLite), one row per call, committed as each one arrives.

    A call in flight is claimed in the cache, so that another process (or thread) about to
    ask for the same answer waits for it instead of paying for it again. A claim whose
    owner died, or older than `claim_seconds`, is taken over.

    >>> cache = Cache(":memory:")
    >>> cache.claim("k")                  # None: nobody has it, and this caller now asks
    >>> cache.put("k", {"model": "m"}, Reply("Price is $12", 30, 4))
    >>> cache.release("k")
    >>> cache.get("k"), cache.get("other"), len(cache)
    (Reply(text='Price is $12', input_tokens=30, output_tokens=4), None, 1)
    >>> cache.claim("k")                  # answered: no need to ask
    Reply(text='Price is $12', input_tokens=30, output_tokens=4)
    """

    def __init__(self, path: str | Path | None = None, claim_seconds: float = 300.0):
        path = path or cache_path()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path, self.claim_seconds = path, claim_seconds
        self.owner = f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        # Autocommit: every answer is durable once `put` returns, whatever happens next.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(SCHEMA)
            self._db.execute(CLAIMS)
            self._db.execute(FAILURES)

    def get(self, key: str) -> Reply | None:
        with self._lock:
            return self._get(key)

    def _get(self, key: str) -> Reply | None:
        row = self._db.execute("SELECT text, input_tokens, output_tokens FROM replies "
                               "WHERE key = ?", (key,)).fetchone()
        return Reply(*row) if row else None

    def put(self, key: str, request: dict, reply: Reply) -> None:
        row = (key, request.get("endpoint"), request.get("model"), json.dumps(request),
               reply.text, reply.input_tokens, reply.output_tokens, time.time())
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def claim(self, key: str, poll: float = 0.05, failed_since: float = math.inf
              ) -> Reply | str | None:
        """The stored answer for `key`, waiting while another caller is asking for it; None
        once this caller holds the claim: it asks, then `put`s the answer (or `fail`s) and
        `release`s. Why asking failed, instead, when a caller gave up on `key` at or after
        `failed_since` (a run's start: a run asks once, however many processes share it)."""
        while True:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")  # one claimer at a time, across processes
                try:
                    reply = self._get(key) or self._failure(key, failed_since)
                    held = self._db.execute("SELECT owner, since FROM claims WHERE key = ?",
                                            (key,)).fetchone()
                    if reply is None and (held is None or self._stale(*held)):
                        self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)",
                                         (key, self.owner, time.time()))
                        return None
                finally:
                    self._db.execute("COMMIT")
            if reply is not None:
                return reply
            time.sleep(poll)

    def _failure(self, key: str, since: float) -> str | None:
        row = self._db.execute("SELECT why FROM failures WHERE key = ? AND since >= ?",
                               (key, since)).fetchone()
        return row[0] if row else None

    def fail(self, key: str, why: str) -> None:
        """Note that asking for `key` failed, and why (see `claim`'s `failed_since`)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)",
                             (key, why, time.time()))

    def release(self, key: str) -> None:
        """Give up this caller's claim on `key` (answered or not)."""
        with self._lock:
            self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self.owner))

    def _stale(self, owner: str, since: float) -> bool:
        """Whether a claim can be taken over: too old, or its process is gone."""
        return time.time() - since > self.claim_seconds or not _alive(owner)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _alive(owner: str) -> bool:
    """Whether the process of a claim's owner ("host/pid/token") may still run: only one on
    this machine can be told to be dead (files.gone); elsewhere a claim waits out its time."""
    host, pid, _ = owner.rsplit("/", 2)
    return not gone(f"{host}~{pid}")


def cache_path() -> Path:
    """The shared reply cache: frontier/replies.sqlite in the data folder."""
    return settings.data_dir() / "frontier" / "replies.sqlite"


def cache_key(identity: dict, messages: list[dict]) -> str:
    """A digest of everything that decides an answer: endpoint, model, params, messages."""
    blob = json.dumps({**identity, "messages": messages}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def ask(chat: Chat, messages: list[dict], cache: Cache, backoff: Backoff, meter: Meter,
        failed_since: float = math.inf) -> Reply | str:
    """The answer to `messages`: from the cache (waiting while another caller asks for it),
    else asked (`call`) and stored the moment it arrives; or why there is none, when every
    attempt failed here, or in a caller sharing the cache that gave up at or after
    `failed_since` (a run's start). Counted in `meter`: calls and tokens, or cached answers.
    """
    key = cache_key(chat.identity(), messages)
    answer = cache.claim(key, failed_since=failed_since)
    if isinstance(answer, Reply):
        meter.add(cached=1)
        return answer
    if isinstance(answer, str):
        meter.add(failed=1)
        return answer
    try:
        answer = call(chat, messages, backoff, meter)
        if isinstance(answer, Reply):
            cache.put(key, {**chat.identity(), "messages": messages}, answer)
        else:
            cache.fail(key, answer)
    finally:
        cache.release(key)
    if isinstance(answer, Reply):
        meter.add(calls=1, input_tokens=answer.input_tokens, output_tokens=answer.output_tokens)
    return answer


def call(chat: Chat, messages: list[dict], backoff: Backoff, meter: Meter) -> Reply | str:
    """One answer to `messages`, retrying transient failures as `backoff` says and counting
    them in `meter`; once every attempt failed, why. A ChatAPIError (a call that can never
    succeed) is raised at once."""
    errors: Counter = Counter()
    for attempt in range(backoff.attempts):
        try:
            return chat.complete(messages)
        except Exception as error:
            if not retryable(error, chat):
                raise
            errors[type(error).__name__] += 1
            meter.error(type(error).__name__)
            if attempt + 1 < backoff.attempts:
                meter.add(retries=1)
                time.sleep(backoff.delay(attempt, retry_after(error)))
    meter.add(failed=1)
    tally = ", ".join(f"{n} {why}" for why, n in errors.most_common())
    return f"gave up after {backoff.attempts} attempts ({tally})"

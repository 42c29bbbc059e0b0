"""Products summarised by a chat model: the 2025 edition's rewrite of each item's full text
into five short lines, which every later model reads instead.

>>> chat = OpenAIChat("gpt-5-nano", params=PARAMS)                  # doctest: +SKIP
>>> BatchSummaries(chat, folder).summarise(items)   # a batch API, half price  # doctest: +SKIP
>>> ChatSummaries(chat).summarise(items)            # one chat at a time       # doctest: +SKIP
>>> Outline().summarise(items)                      # rules, no LLM            # doctest: +SKIP

Every answer goes into chat_api's reply cache the moment it arrives, under the key of the
chat that asked for it (`chat_api.cache_key`): a rerun, or the other way of asking, finds it
there and pays nothing. `BatchSummaries` follows OpenAI's batch API, which Groq, the local
server (`batches.py`) and others speak too: requests are written as JSONL with a
`custom_id` each (the cache key), uploaded, submitted, polled, fetched and applied, and its
state is saved after every step, so a run killed at any point resumes where it was without
submitting anything twice. `Outline` writes the five lines from the item's own fields by
rule: free and instant, the bundled sample's default (PRICER_SUMMARISER), and the baseline an
LLM's summary has to beat.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import openai
from tqdm import tqdm

import settings
from chat_api import Backoff, Cache, Meter, OpenAIChat, Reply, ask, cache_key
from files import written
from items2025 import Item2025

SYSTEM = """Create a concise description of a product. Respond only in this format. \
Do not include part numbers.
Title: Rewritten short precise title
Category: eg Electronics
Brand: Brand name
Description: 1 sentence description
Details: 1 sentence on features"""
PARAMS = {"reasoning_effort": "low"}  # the edition's, for gpt-oss-20b (and OpenAI's gpt-5s)
LOCAL_PARAMS = {"max_tokens": 120}  # an open LLM on the local server: five short lines
BATCH_SIZE = 1_000  # requests a batch file holds, as the edition sent them


def messages(item: Item2025) -> list[dict]:
    """The edition's chat: its system prompt, then the item's full text."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": item.full}]


def missing(items: Sequence[Item2025]) -> list[Item2025]:
    """The items that have no summary yet."""
    return [item for item in items if item.summary is None]


def summariser(name: str | None = None) -> Outline | BatchSummaries:
    """The summariser that `name` (by default the PRICER_SUMMARISER setting) names:
    "outline" (the default: rules, no LLM), or a model asked through OpenAI's batch API
    (OPENAI_API_KEY; OPENAI_BASE_URL for another provider's, with its key in the setting).
    """
    name = name or settings.get("PRICER_SUMMARISER", "outline")
    if name == "outline":
        return Outline()
    return BatchSummaries(OpenAIChat(name, params=PARAMS))


# --- by rule ---------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")  # a full stop, ! or ? that ends a word
_BRAND = re.compile(r'"(?:Brand|Manufacturer)": "([^"]+)"')


def first_sentence(text: str) -> str | None:
    """`text` up to the end of its first sentence, within its first line; None if none ends.

    >>> first_sentence("Boils fast. Quiet!"), first_sentence("v2.0 kettle"), first_sentence(".")
    ('Boils fast.', None, None)
    """
    end = _SENTENCE_END.search(text, 1)
    return text[:end.start() + 1] if end and "\n" not in text[:end.start()] else None


def first_entry(line: str) -> str:
    """The first string of a list that the full text holds as Python writes it.

    >>> first_entry("['Boils fast.', 'Quiet.']"), first_entry('["Red"]'), first_entry("[]")
    ('Boils fast.', 'Red', '')
    """
    quote = line[1:2]
    if quote not in ("'", '"'):
        return ""
    end = min((at for at in (line.find(quote + ", ", 2), line.find(quote + "]", 2)) if at > 0),
              default=len(line))
    return line[2:end]


class Outline:
    """Five lines by rule from an item's fields and full text: the title, the category, the
    brand from the details, the description's first sentence, the first feature. No LLM.

    >>> item = Item2025("Kettle", "Home_and_Kitchen", 24.99, "Kettle\\n['Boils fast. Quiet.']"
    ...                 "\\n['2 litres']\\n" + '{"Brand": "Crestwood"}')
    >>> print(Outline().summary(item))
    Title: Kettle
    Category: Home and Kitchen
    Brand: Crestwood
    Description: Boils fast.
    Details: 2 litres
    """

    name = "outline"

    def summary(self, item: Item2025) -> str:
        title, *lines = (item.full or item.title).split("\n")  # the title without part numbers
        lists = [first_entry(line) for line in lines if line.startswith("[")]
        details = lines[-1] if lines and lines[-1].startswith("{") else ""
        brand = _BRAND.search(details)
        first = lists[0] if lists else ""
        sentence = first_sentence(first)
        facts = lists[1] if len(lists) > 1 and lists[1] else details[:200]
        return (f"Title: {title.strip()}\nCategory: {item.category.replace('_', ' ')}\n"
                f"Brand: {brand.group(1) if brand else 'Unknown'}\n"
                f"Description: {sentence or first[:200]}\n"
                f"Details: {facts}")

    def summarise(self, items: Sequence[Item2025], progress: bool = True) -> list[Item2025]:
        """Summarise every item without a summary; returns those left without one (none)."""
        for item in tqdm(missing(items), desc="outlines", disable=not progress):
            item.summary = self.summary(item)
        return missing(items)


# --- one chat at a time -----------------------------------------------------------------------

class ChatSummaries:
    """Summaries asked one chat per item, `concurrency` at a time, through chat_api: cached,
    retried and metered (`meter`)."""

    def __init__(self, chat: OpenAIChat, cache: Cache | None = None,
                 backoff: Backoff | None = None, concurrency: int = 8):
        self.chat, self.cache = chat, cache if cache is not None else Cache()
        self.backoff, self.concurrency = backoff or Backoff(), concurrency
        self.meter = Meter(chat.model)
        self.name = chat.model

    def summarise(self, items: Sequence[Item2025], progress: bool = True) -> list[Item2025]:
        """Summarise every item without a summary; returns those left without one (every
        attempt failed: a rerun asks for them only)."""
        started = time.time()
        todo = missing(items)

        def one(item: Item2025) -> None:
            answer = ask(self.chat, messages(item), self.cache, self.backoff, self.meter,
                         failed_since=started)
            if isinstance(answer, Reply):
                item.summary = answer.text.strip()

        with ThreadPoolExecutor(self.concurrency) as pool:
            list(tqdm(pool.map(one, todo), total=len(todo), desc=self.name,
                      disable=not progress))
        return missing(items)


# --- a batch API ------------------------------------------------------------------------------

DONE = ("completed", "failed", "expired", "cancelled")  # a batch's last statuses


@dataclass
class Batch:
    """One file of requests and where it stands: written, uploaded (`file_id`), submitted
    (`batch_id`), ended (`status`, `output_file_id`), fetched into the cache (`fetched`)."""

    number: int
    keys: list[str]
    file_id: str | None = None
    batch_id: str | None = None
    status: str = "new"
    output_file_id: str | None = None
    error_file_id: str | None = None
    fetched: bool = False

    @property
    def pending(self) -> bool:
        """Whether its requests are on their way: not to be asked again."""
        return not self.fetched and self.status not in ("failed", "expired", "cancelled")


@dataclass
class BatchSummaries:
    """Summaries through an OpenAI-compatible batch API, resumable after a kill at any step.

    `folder` keeps the request files and `batches.json`, the state saved after each step.
    A batch whose creation was not yet saved when the run died is found again among the
    provider's batches by its input file, and never submitted twice.
    """

    chat: OpenAIChat
    folder: Path | None = None
    cache: Cache | None = None
    batch_size: int = BATCH_SIZE
    poll_seconds: float = 60.0
    batches: list[Batch] = field(default_factory=list)

    def __post_init__(self):
        self.folder = Path(self.folder or settings.data_dir() / "summaries" / self.chat.model)
        self.cache = self.cache if self.cache is not None else Cache()
        self.meter, self.name = Meter(self.chat.model), self.chat.model
        state = self.folder / "batches.json"
        if state.exists():
            self.batches = [Batch(**b) for b in json.loads(state.read_text())]

    @property
    def client(self) -> openai.OpenAI:
        return self.chat.client

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with written(self.folder / "batches.json") as partial:
            partial.write_text(json.dumps([asdict(b) for b in self.batches], indent=1))

    def key(self, item: Item2025) -> str:
        return cache_key(self.chat.identity(), messages(item))

    def request(self, key: str, item: Item2025) -> dict:
        """One line of a batch file: the chat, under its cache key."""
        body = {"model": self.chat.model, "messages": messages(item), **self.chat.params}
        return {"custom_id": key, "method": "POST", "url": "/v1/chat/completions",
                "body": body}

    def submit(self, items: Sequence[Item2025]) -> int:
        """Write, upload and submit batches of the items that have neither a cached answer
        nor a pending request; then any batch an earlier run left unsubmitted. Returns how
        many requests were submitted."""
        pending = {key for batch in self.batches if batch.pending for key in batch.keys}
        todo = {}
        for item in missing(items):
            key = self.key(item)
            if key not in pending and key not in todo and self.cache.get(key) is None:
                todo[key] = item
        keys = list(todo)
        for start in range(0, len(keys), self.batch_size):
            batch = Batch(len(self.batches), keys[start:start + self.batch_size])
            path = self._path(batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            with written(path) as partial:
                partial.write_text("".join(json.dumps(self.request(key, todo[key])) + "\n"
                                           for key in batch.keys))
            self.batches.append(batch)
            self.save()
        submitted = 0
        for batch in self.batches:
            if batch.status == "new":
                self._send(batch)
                submitted += len(batch.keys)
        return submitted

    def _path(self, batch: Batch) -> Path:
        return self.folder / "requests" / f"{batch.number:05d}.jsonl"

    def _send(self, batch: Batch) -> None:
        if batch.file_id is None:
            with open(self._path(batch), "rb") as f:
                batch.file_id = self.client.files.create(file=f, purpose="batch").id
            self.save()
        made = self._submitted(batch.file_id) or self.client.batches.create(
            input_file_id=batch.file_id, endpoint="/v1/chat/completions",
            completion_window="24h", metadata={"purpose": "product summaries"})
        batch.batch_id = made.id
        self._update(batch, made)

    def _submitted(self, file_id: str):
        """The provider's batch of `file_id`, when a run died before it saved that batch."""
        return next((b for b in self.client.batches.list(limit=100)
                     if b.input_file_id == file_id), None)

    def _update(self, batch: Batch, found) -> None:
        """Take the provider's word on `batch` (its status and files), and save it."""
        batch.status = found.status
        batch.output_file_id, batch.error_file_id = found.output_file_id, found.error_file_id
        self.save()

    def poll(self) -> dict[str, int]:
        """Ask for the status of every unfinished batch; returns how many are in each."""
        for batch in self.batches:
            if batch.batch_id and batch.status not in DONE:
                self._update(batch, self.client.batches.retrieve(batch.batch_id))
        counts: dict[str, int] = {}
        for batch in self.batches:
            counts[batch.status] = counts.get(batch.status, 0) + 1
        return counts

    def fetch(self) -> int:
        """Read the answers of every ended batch into the cache (each billed call metered);
        returns how many answers arrived."""
        arrived = 0
        for batch in self.batches:
            if batch.status in DONE and not batch.fetched:
                requests = {}
                for line in self._path(batch).read_text().splitlines():
                    request = json.loads(line)
                    requests[request["custom_id"]] = request["body"]["messages"]
                for file_id in (batch.output_file_id, batch.error_file_id):
                    if file_id:
                        text = self.client.files.content(file_id).text
                        arrived += self._store(text, requests)
                batch.fetched = True
                self.save()
        return arrived

    def _store(self, text: str, requests: dict[str, list]) -> int:
        """Put each successful answer of a batch's output into the cache."""
        stored = 0
        for line in text.splitlines():
            result = json.loads(line)
            response = result.get("response") or {}
            key = result.get("custom_id")
            if key not in requests or response.get("status_code") != 200:
                self.meter.add(failed=1)
                self.meter.error(str((result.get("error") or {}).get("code", "no answer")))
                continue
            body = response["body"]
            usage = body.get("usage") or {}
            reply = Reply(body["choices"][0]["message"]["content"] or "",
                          usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
            self.cache.put(key, {**self.chat.identity(), "messages": requests[key]}, reply)
            self.meter.add(calls=1, input_tokens=reply.input_tokens,
                           output_tokens=reply.output_tokens)
            stored += 1
        return stored

    def apply(self, items: Sequence[Item2025]) -> list[Item2025]:
        """Give every item its cached answer; returns the items left without a summary."""
        for item in missing(items):
            reply = self.cache.get(self.key(item))
            if reply is not None:
                item.summary = reply.text.strip()
        return missing(items)

    def summarise(self, items: Sequence[Item2025], progress: bool = True) -> list[Item2025]:
        """Submit what is missing, wait for the batches, fetch and apply: returns the items
        left without a summary (a request the provider failed: a rerun asks for it only)."""
        self.submit(items)
        bar = tqdm(total=len(self.batches), desc=f"{self.name} batches", disable=not progress)
        while True:
            counts = self.poll()
            self.fetch()
            bar.n = sum(counts.get(status, 0) for status in DONE)
            bar.refresh()
            if bar.n == len(self.batches):
                break
            time.sleep(self.poll_seconds)
        bar.close()
        return self.apply(items)

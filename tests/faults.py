"""Test helpers for the local server: items, a recording predictor, and scripted faults.

The faults live here, in the tests, as a middleware added to `server.app_for`'s app: the
server itself has no failure modes built in.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from fastapi.responses import JSONResponse, Response

import server
from items import Item

Fault = Callable[..., Awaitable[Response]]


def make_items(n: int, start: int = 0) -> list[Item]:
    """`n` small distinct items, "Widget 0", "Widget 1", ..."""
    return [Item.from_text(f"Widget {i}\nA sturdy widget, model {i}, in steel.", float(i + 1))
            for i in range(start, start + n)]


def widget_price(item: Item) -> float:
    """What the test server answers: 2.5 times the widget's number, plus 10."""
    return 10 + 2.5 * int(item.title.split()[-1])


class Recorder:
    """A predictor that records every item it prices and how many ran at once."""

    def __init__(self, predict: Callable[[Item], float] = widget_price, delay: float = 0.0):
        self.predict, self.delay = predict, delay
        self.seen: Counter = Counter()
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, item: Item) -> float:
        with self._lock:
            self.seen[item.title] += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self._lock:
            self.in_flight -= 1
        return self.predict(item)

    @property
    def calls(self) -> int:
        return sum(self.seen.values())

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.most_in_flight = 0


class Faults:
    """A middleware answering the next requests to `paths` (by default, chats) from a script;
    an empty script passes through, as do other requests (a client asking which model it
    talks to)."""

    def __init__(self, paths: tuple[str, ...] = ("/chat/completions", "/messages")):
        self.script: deque[Fault] = deque()
        self.paths = paths

    def then(self, *faults: Fault) -> Faults:
        self.script.extend(faults)
        return self

    async def __call__(self, request, call_next) -> Response:
        scripted = request.url.path.endswith(self.paths)
        fault = self.script.popleft() if self.script and scripted else None
        return await (fault(request, call_next) if fault else call_next(request))


def status(code: int, message: str = "injected", **headers: str) -> Fault:
    """An error reply, e.g. status(429, **{"Retry-After": "1"})."""
    async def reply(request, call_next) -> Response:
        response = server.error(code, message, "injected")
        response.headers.update(headers)
        return response
    return reply


def slow(seconds: float) -> Fault:
    """A reply that comes too late: the client has timed out by then."""
    async def reply(request, call_next) -> Response:
        await asyncio.sleep(seconds)
        return server.error(504, "too late", "injected")
    return reply


def body(text: str) -> Fault:
    """A 200 whose body is `text`, whatever it is."""
    async def reply(request, call_next) -> Response:
        return Response(text, media_type="application/json")
    return reply


def content(text: str | None) -> Fault:
    """A well-formed completion whose answer is `text` (None: a null content)."""
    async def reply(request, call_next) -> Response:
        answer = server.completion("any", text or "", 10)
        answer["choices"][0]["message"]["content"] = text
        return JSONResponse(answer)
    return reply


def start(recorder: Recorder, faults: Faults, model: str = "widgets",
          api_key: str | None = None) -> server.Running:
    """The local server for `recorder`, behind the `faults` script."""
    app = server.app_for(recorder, model, api_key)
    app.middleware("http")(faults)
    return server.serve(app, model)

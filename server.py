"""Serve any price predictor on localhost behind the OpenAI chat-completions API.

From a shell (the predictor is any importable callable Item -> price), or an open LLM:

    python server.py --predictor mymodule:predict --model my-pricer --port 8000
    python server.py --model smollm2-135m

From a notebook cell:

>>> local = start(lambda item: 99.0, model="flat")          # a free port  # doctest: +SKIP
>>> pricer = frontier.compatible_pricer(local.base_url, local.model)      # doctest: +SKIP
>>> local.stop()                                                          # doctest: +SKIP
>>> llm = start(model="smollm2-135m")              # open_models.REGISTRY  # doctest: +SKIP

The chat that `chat.messages_for` builds is turned back into an Item, the predictor
prices it, and the answer comes back as "Price is $X.XX" in an OpenAI-shaped completion with
token usage (counted with the Llama 3 tokenizer), so the same client code that calls OpenAI
scores it over real HTTP. An open LLM (`open_chat.OpenChat`) answers the chat itself, through
its chat template, greedily, counting its own tokens, through the fastest runtime this CPU
has (`hardware.fastest_runtime`): OpenVINO GenAI (`openvino_chat`), llama.cpp (`llamacpp_chat`,
several chats at once), or transformers (PRICER_LLM_RUNTIME names one).
The server also answers Anthropic's /v1/messages, continuing a prefill.

Bad requests get clean 4xx errors: a chat body is limited to MAX_BODY bytes (413), a chat
that is not text is a 400, and a predictor's exception is a generic 500 whose details go to
the server's log only. An answer is bounded (`Asked`, `answered`): `max_tokens` must be a
count within an open LLM's context, a chat too long for it is refused before it is read,
`n` > 1 is refused (greedy choices would all be the same), stop sequences are honoured, and
an answer is called off when its client goes away or after PRICER_SERVER_TIMEOUT seconds
(504), so no request waits without end behind another. With an API key (`--api-key`, or
PRICER_SERVER_API_KEY so that it stays out of the process list), /docs and /openapi.json
are closed too; without one, requests from web pages of other sites are refused
(`SameOrigin`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import importlib
import ipaddress
import logging
import math
import reprlib
import socket
import sys
import tempfile
import threading
import time
import uuid
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

import hardware
import llama_tokens
import settings
from chat import answer, item_from_messages, until_stop
from jobs import FineTuningJobs
from pricer import Predictor, Trainer

if TYPE_CHECKING:
    import chat_api
    import frontier
    from open_chat import OpenChat

MAX_BODY = 1 << 20  # bytes of a chat request: a product's chat is a few KB
MAX_UPLOAD = 512 << 20  # bytes of an uploaded file, OpenAI's own limit
log = logging.getLogger("server")
T = TypeVar("T")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # max_tokens, stop, n: see `Asked`; seed...: taken
    model: str
    messages: list[Message]
    system: str | list[dict] | None = None  # Anthropic's messages API passes it apart
    stream: bool = False


def error(status: int, message: str, code: str) -> JSONResponse:
    """An error in OpenAI's shape, which the OpenAI client turns into its typed exceptions."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over its limit gets a 413 before a byte of it is read.

    Only bodies of a declared length are taken (as the OpenAI and Anthropic clients send):
    a chunked one, whose size is unknown until read, gets a 411, even when it also declares
    a length (the server would read the chunks, not the length).

    An upload (/v1/files) may be up to MAX_UPLOAD bytes, or what `upload_room()` says is
    left of the server's room for uploads, whichever is less.
    """

    def __init__(self, app, limit: int = MAX_BODY,
                 upload_room: Callable[[], int] = lambda: MAX_UPLOAD):
        self.app, self.limit, self.upload_room = app, limit, upload_room

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            upload = scope["path"] == "/v1/files"
            limit = min(MAX_UPLOAD, self.upload_room()) if upload else self.limit
            length = headers.get(b"content-length")
            refusal = None
            if b"transfer-encoding" in headers:
                refusal = error(411, "send the body with a Content-Length and no "
                                     "Transfer-Encoding", "length_required")
            elif length is not None and not length.isdigit():
                refusal = error(400, "the Content-Length is not a number", "bad_length")
            elif length is not None and int(length) > limit:
                room = " (the room left for uploads: PRICER_SERVER_UPLOADS_MB)" if upload else ""
                refusal = error(413, f"the request body is over {limit:,} bytes{room}",
                                "request_too_large")
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


class SameOrigin:
    """ASGI middleware for a server without a key: a request that a web page of another site
    sent (its Origin is not this server's own) or that names the server by a domain (a DNS
    rebinding: its Host is neither an IP address nor localhost) gets a 403 before a byte of
    its body is read. Clients that are not browsers send no Origin and are answered.

    Without it, any page the user opens could upload files and start jobs on localhost.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin", b"").decode("latin-1")
            port = (scope.get("server") or ("", None))[1]
            refusal = None
            if host and not local_name(hostname(host)):
                refusal = error(403, f"this server has no API key, so it answers only requests "
                                     f"addressed to an IP address or localhost, not {host!r}",
                                "host_not_allowed")
            elif origin and not own_origin(origin, port):
                refusal = error(403, f"this server has no API key, so it answers no web page of "
                                     f"another site ({origin!r}): start it with an API key "
                                     "(PRICER_SERVER_API_KEY) to serve other origins",
                                "cross_origin")
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


def hostname(netloc: str) -> str | None:
    """The host that a Host header (or a URL's network location) names, else None.

    >>> hostname("[::1]:8000"), hostname("Example.com"), hostname("[::1")
    ('::1', 'example.com', None)
    """
    try:
        return urlsplit(f"//{netloc}").hostname
    except ValueError:
        return None


def local_name(host: str | None) -> bool:
    """Whether `host` names a machine without DNS: an IP address or localhost.

    >>> local_name("127.0.0.1"), local_name("::1"), local_name("localhost"), local_name("a.com")
    (True, True, True, False)
    """
    if host is None:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.lower() == "localhost"
    return True


def own_origin(origin: str, port: int | None) -> bool:
    """Whether a page at `origin` is served by this server itself (listening on `port` of a
    loopback address): a page such as its own /docs.

    >>> own_origin("http://localhost:8000", 8000), own_origin("http://127.0.0.1:8000", 8000)
    (True, True)
    >>> own_origin("http://localhost:3000", 8000), own_origin("https://evil.example", 8000)
    (False, False)
    """
    try:
        parts = urlsplit(origin)
        given = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return False
    host = parts.hostname or ""
    loopback = host == "localhost" or (local_name(host) and ipaddress.ip_address(host).is_loopback)
    return parts.scheme == "http" and loopback and given == port


class KeyCheck:
    """ASGI middleware: a request without the server's API key (OpenAI's bearer header or
    Anthropic's x-api-key) gets a 401 before a byte of its body is read."""

    def __init__(self, app, api_key: str):
        self.app, self.api_key = app, api_key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            given = (headers.get(b"x-api-key", b""),
                     headers.get(b"authorization", b"").removeprefix(b"Bearer "))
            if not any(hmac.compare_digest(self.api_key, key) for key in given):
                refusal = error(401, "Incorrect API key provided", "invalid_api_key")
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


def completion(model: str, text: str, prompt_tokens: int, completion_tokens: int | None = None,
               finish: str = "stop", stop: str | None = None) -> dict:
    """A chat completion in OpenAI's shape, with usage (counted with Llama 3's tokenizer
    unless given); `finish` is "stop" or "length" (`stop`: the stop sequence it ended at)."""
    if completion_tokens is None:
        completion_tokens = llama_tokens.count(text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def message(model: str, text: str, prompt_tokens: int, completion_tokens: int | None = None,
            finish: str = "stop", stop: str | None = None) -> dict:
    """The same answer in the shape of Anthropic's messages API."""
    if completion_tokens is None:
        completion_tokens = llama_tokens.count(text)
    reason = "max_tokens" if finish == "length" else "stop_sequence" if stop else "end_turn"
    return {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": reason,
        "stop_sequence": stop,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


def refusal(status: int, message: str, code: str) -> HTTPException:
    """An error to raise from a route; the app answers it in OpenAI's shape (`error`)."""
    return HTTPException(status, {"message": message, "code": code})


@dataclass(frozen=True)
class Api:
    """A chat API that the server speaks: the shape of its answers, the request's field of
    stop sequences, and whether an answer continues a prefill (Anthropic's) or repeats it."""

    shape: Callable[..., dict]
    stops: str
    continues_prefill: bool = False


OPENAI = Api(completion, "stop")
ANTHROPIC = Api(message, "stop_sequences", continues_prefill=True)
MAX_STOPS = 4  # stop sequences in a request, as OpenAI allows


@dataclass(frozen=True)
class Asked:
    """What a request asks of its answer: at most `max_tokens` tokens, ending before any of
    `stop`."""

    max_tokens: int
    stop: tuple[str, ...]

    @classmethod
    def of(cls, request: ChatRequest, api: Api, default_tokens: int = 16) -> Asked:
        """The request's limits (`default_tokens` where it sets none); a 400, in OpenAI's
        words, for a value OpenAI refuses or one this server cannot honour (n > 1)."""
        extra = request.model_extra or {}
        n = extra.get("n")
        if n is not None and n != 1:
            raise refusal(400, f"n={reprlib.repr(n)} is not supported: this server answers "
                               "greedily, so every choice would be the same; ask for one "
                               "(n=1)", "unsupported_value")
        name = "max_completion_tokens" if "max_completion_tokens" in extra else "max_tokens"
        limit = extra.get(name)
        limit = default_tokens if limit is None else limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise refusal(400, f"Invalid '{name}': {reprlib.repr(limit)}; it must be a whole "
                               "number of at least 1", "invalid_value")
        stop = extra.get(api.stops)
        stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise refusal(400, f"Invalid '{api.stops}': {reprlib.repr(stop)}; it must be a "
                               "string or a list of non-empty strings", "invalid_value")
        if len(stop) > MAX_STOPS:
            raise refusal(400, f"Invalid '{api.stops}': {len(stop)} sequences; at most "
                               f"{MAX_STOPS} are allowed", "invalid_value")
        return cls(limit, tuple(stop))


class Chats:
    """The chat routes over `models` (name -> predictor, or an open LLM that answers chats
    itself): /v1/models, /v1/chat/completions, and Anthropic's /v1/messages, which continues a
    prefilled answer.

    Each answer is worked out in a thread of its own and called off when its client goes
    away or its time (PRICER_SERVER_TIMEOUT) runs out: an open LLM stops at its next token,
    and the client gets a 504. An open LLM also refuses, before reading it, a chat that
    with the answer asked for would not fit in its context.
    """

    def __init__(self, models: dict[str, Predictor | OpenChat]):
        self.models = models
        # Every start is a new fingerprint: a client's cache never takes one predictor's answers
        # for another's served under the same name.
        self.fingerprint = f"fp_{uuid.uuid4().hex[:12]}"
        self.router = APIRouter()
        self.router.get("/v1/models")(self.list_models)
        self.router.get("/v1/models/{name:path}")(self.model_of)
        self.router.post("/v1/chat/completions")(self.chat)
        self.router.post("/v1/messages")(self.messages)

    def described(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": 0, "owned_by": "local",
                "fingerprint": self.fingerprint}

    def list_models(self) -> dict:
        return {"object": "list", "data": [self.described(name) for name in self.models]}

    def model_of(self, name: str) -> dict:
        if name not in self.models:
            raise refusal(404, f"The model `{name}` does not exist", "model_not_found")
        return self.described(name)

    async def chat(self, request: Request, body: ChatRequest) -> dict:
        return await answered(request, lambda cancel: self.reply(body, OPENAI, cancel))

    async def messages(self, request: Request, body: ChatRequest) -> dict:
        return await answered(request, lambda cancel: self.reply(body, ANTHROPIC, cancel))

    def reply(self, request: ChatRequest, api: Api, cancel: threading.Event) -> dict:
        """Answer the chat (an open LLM) or price the item in it, in `api`'s shape."""
        if request.model not in self.models:
            raise refusal(404, f"The model `{request.model}` does not exist; this server has "
                               f"{', '.join(f'`{m}`' for m in self.models)}", "model_not_found")
        if request.stream:
            raise refusal(400, "streaming is not supported", "unsupported")
        asked = Asked.of(request, api)
        messages = [m.model_dump() for m in request.messages]
        try:
            item = item_from_messages(messages)
        except ValueError as e:
            raise refusal(400, str(e), "invalid_messages") from None
        served = self.models[request.model]
        respond = spoken if is_open_llm(served) else priced
        try:
            text, *rest = respond(served, request, messages, asked, cancel)
        except HTTPException:
            raise
        except Exception:  # the client retries as after any 500; why is for the server's log
            log.exception("the predictor for %s failed on %r", request.model, item.title)
            raise refusal(500, "the predictor failed; the server's log says why",
                          "predictor_error") from None
        if api.continues_prefill and messages[-1]["role"] == "assistant":
            text = text.removeprefix(str(messages[-1]["content"]))
        return api.shape(request.model, text, *rest)


async def answered(request: Request, work: Callable[[threading.Event], T]) -> T:
    """`work(cancel)` in a worker thread; `cancel` is set when the client goes away or the
    request's time (`settings.server_timeout()`) runs out, and then the client gets a 504
    at once, while the work ends at its next step."""
    cancel = threading.Event()
    working = asyncio.ensure_future(run_in_threadpool(work, cancel))
    gone = asyncio.ensure_future(disconnected(request))
    try:
        # The setting (whole seconds) is read only by an answer still working after one:
        # reading it (a .env looked for) takes about 5% of a simple answer's whole time.
        await asyncio.wait({working, gone}, timeout=1, return_when=FIRST_COMPLETED)
        if not (working.done() or gone.done()):
            seconds = settings.server_timeout()
            await asyncio.wait({working, gone}, timeout=seconds - 1,
                               return_when=FIRST_COMPLETED)
        left = gone.done()
    finally:
        gone.cancel()
    if working.done():
        return working.result()
    cancel.set()
    working.add_done_callback(lambda done: done.cancelled() or done.exception())  # unheard
    if left:
        raise refusal(499, "the client went away before the answer", "client_closed")
    raise refusal(504, f"the answer took more than PRICER_SERVER_TIMEOUT={seconds} seconds: "
                       "ask for fewer max_tokens, or raise the setting", "timeout")


async def disconnected(request: Request) -> None:
    """Returns once the client has gone away (its body has been read already)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def is_open_llm(served: object) -> bool:
    """Whether `served` is an open LLM, which answers the chat itself; checked without
    importing open_chat (and torch) into a server that serves none."""
    open_chat = sys.modules.get("open_chat")
    return open_chat is not None and isinstance(served, open_chat.OpenChat)


def priced(predictor: Predictor, request: ChatRequest, messages: list[dict], asked: Asked,
           cancel: threading.Event) -> tuple[str, int, None, str, str | None]:
    """A predictor's price for the item in the chat, in the course's answer (cut at a stop
    sequence after the prefill), with the chat's tokens counted by Llama 3's tokenizer."""
    price = float(predictor(item_from_messages(messages)))
    if not math.isfinite(price):
        raise refusal(500, f"the predictor returned {price}", "predictor_error")
    text = answer(max(price, 0.0))
    prefill = str(messages[-1]["content"]) if messages[-1]["role"] == "assistant" else ""
    head = prefill if text.startswith(prefill) else ""
    rest, stop = until_stop(text.removeprefix(head), asked.stop)
    texts = [str(request.system or "")] + [str(m["content"] or "") for m in messages]
    return head + rest, sum(llama_tokens.count(t) for t in texts), None, "stop", stop


def spoken(chat: OpenChat, request: ChatRequest, messages: list[dict], asked: Asked,
           cancel: threading.Event) -> tuple[str, int, int, str, str | None]:
    """An open LLM's answer to the chat (Anthropic's system prompt first), within the tokens
    the request allows, with its own token counts; a 400 when it cannot fit the context."""
    from open_chat import Cancelled, TooLong

    system = [{"role": "system", "content": request.system}] if request.system else []
    try:
        reply = chat.reply(system + messages, asked.max_tokens, asked.stop, cancel)
    except TooLong as e:
        code = "context_length_exceeded" if e.param == "messages" else "invalid_value"
        raise refusal(400, str(e), code) from None
    except Cancelled:  # called off, not failed: its client already has its 499 or 504
        raise refusal(499, "the answer was called off", "cancelled") from None
    return (reply.text, reply.input_tokens, reply.output_tokens, reply.finish_reason,
            reply.stop_sequence)


def app_for(predictor: Predictor | OpenChat, model: str = "pricer", api_key: str | None = None,
            trainer: Trainer | None = None) -> FastAPI:
    """The app serving `predictor` (or an open LLM) as `model`; with `api_key`, callers must
    present it.

    With a `trainer`, the app also takes files and fine-tuning jobs, and serves each job's
    trained model by its `fine_tuned_model` name (see jobs.py).
    """
    chats = Chats({model: predictor})
    jobs = FineTuningJobs(chats.models, trainer) if trainer is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if jobs is not None:
            jobs.close()

    # With a key, the API's description is closed too.
    hidden = {"docs_url": None, "redoc_url": None, "openapi_url": None} if api_key else {}
    app = FastAPI(title=f"{model}: an OpenAI-compatible price predictor", lifespan=lifespan,
                  **hidden)
    app.add_middleware(BodyLimit, upload_room=jobs.room if jobs else lambda: MAX_UPLOAD)
    # The outermost, checked first: the key, or without one, where a request comes from.
    if api_key is not None:
        app.add_middleware(KeyCheck, api_key=api_key)
    else:
        app.add_middleware(SameOrigin)

    @app.exception_handler(HTTPException)
    def openai_shaped(request, refused: HTTPException) -> JSONResponse:
        detail = refused.detail if isinstance(refused.detail, dict) else {
            "message": str(refused.detail), "code": None}
        return error(refused.status_code, detail["message"], detail["code"])

    app.include_router(chats.router)
    if jobs is not None:
        app.include_router(jobs.router)
    return app


@dataclass
class Running:
    """A server running in a background thread; `stop()` it (or use it in a `with`).

    `pricer()` hands out ChatPricers over it that share one reply cache, kept in a scratch
    folder until the server stops: its answers cost nothing, so nothing is worth keeping.
    They ask `at_once` items at a time, what the server answers at the same time (an open
    LLM's `at_once`: 1 through transformers, its slots through llama.cpp and OpenVINO GenAI),
    so that no request waits in a queue long enough to time out on a slow machine.
    """

    base_url: str
    model: str
    server: uvicorn.Server
    thread: threading.Thread
    api_key: str | None = None
    at_once: int = 8
    closes: Callable[[], None] | None = None  # frees what the server made for itself
    _scratch: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    _cache: chat_api.Cache | None = field(default=None, repr=False)

    def pricer(self, model: str | None = None, params: dict | None = None,
               **kwargs) -> frontier.ChatPricer:
        """A ChatPricer asking this server for `model` (the one it was started with), sent
        `params` (chat_api's by default); `kwargs` go to ChatPricer."""
        import chat_api
        import frontier

        if self._cache is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="pricer-server-")
            self._cache = chat_api.Cache(Path(self._scratch.name) / "replies.sqlite")
        # the server's own time limit answers first, with a clear 504
        chat = chat_api.OpenAIChat(model or self.model, base_url=self.base_url,
                                   api_key=self.api_key, params=params,
                                   timeout=settings.server_timeout() + 5)
        return frontier.ChatPricer(chat, cache=self._cache,
                                   **{"concurrency": self.at_once, **kwargs})

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.closes is not None:
            self.closes()
            self.closes = None
        if self._cache is not None:
            self._cache.close()
            self._scratch.cleanup()
            self._cache = self._scratch = None

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app: FastAPI, model: str, host: str = "127.0.0.1", port: int = 0,
          api_key: str | None = None, at_once: int = 8) -> Running:
    """Run `app` in a background thread on `port` (0: a free one) and wait until it listens."""
    # IPPROTO_TCP spelled out: asyncio only turns Nagle off (TCP_NODELAY) on sockets that say
    # so, and with Nagle on every keep-alive reply waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server for {model} did not start on {host}:{port}")
        time.sleep(0.01)
    return Running(f"http://{host}:{sock.getsockname()[1]}/v1", model, server, thread, api_key,
                   at_once)


def start(predictor: Predictor | OpenChat | None = None, model: str | None = None,
          api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
          trainer: Trainer | None = None, routers: Sequence[APIRouter] = ()) -> Running:
    """Serve `predictor` as `model` from a notebook: returns at once, with its base URL.

    Without a predictor, it serves the open LLM that `model` names (by default the
    PRICER_OPEN_MODEL setting), through `open_llm`, and frees it when the server stops.
    `routers` add routes of their own (e.g. `batches.Batches`).
    """
    own = None
    if predictor is None:
        predictor = own = open_llm(model)
        model = predictor.name
    model = model or "pricer"
    app = app_for(predictor, model, api_key, trainer)
    for router in routers:
        app.include_router(router)
    running = serve(app, model, host, port, api_key, getattr(predictor, "at_once", 8))
    running.closes = getattr(own, "close", None)
    return running


def open_llm(name: str | None = None) -> OpenChat:
    """The open LLM `name` (default PRICER_OPEN_MODEL), answering chats through the runtime
    that `settings.llm_runtime()` names (by default the fastest here) where that runtime can
    read the model (`available`: packaged models of Llama's architecture), else through
    transformers."""
    runtime = settings.llm_runtime(hardware.fastest_runtime())
    if runtime == "openvino":
        from openvino_chat import OpenVinoChat as Chat
    elif runtime == "llama.cpp":
        from llamacpp_chat import LlamaCppChat as Chat
    else:
        Chat = None
    if Chat is not None and Chat.available(name):
        return Chat(name)
    from open_chat import OpenChat

    return OpenChat(name)


def load_predictor(spec: str) -> Predictor:
    """`module:name` -> that callable, e.g. "mymodule:predict".

    >>> load_predictor("math:floor")(2.5)
    2
    """
    module, _, name = spec.partition(":")
    if not module or not name:
        raise SystemExit(f"--predictor must look like module:name, not {spec!r}")
    predictor = getattr(importlib.import_module(module), name, None)
    if not callable(predictor):
        raise SystemExit(f"{spec} is not a callable Item -> price")
    return predictor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictor", help="module:name of a callable Item -> price")
    parser.add_argument("--model", help="the model name clients ask for (default: the "
                                        "predictor's name); without --predictor, the open LLM "
                                        "to serve (open_models.REGISTRY)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", help="require this key from clients (better: set "
                                          "PRICER_SERVER_API_KEY, kept out of the process list)")
    args = parser.parse_args(argv)
    api_key = args.api_key or settings.get("PRICER_SERVER_API_KEY")
    predictor = load_predictor(args.predictor) if args.predictor else None
    model = args.model or (args.predictor or "").partition(":")[2] or None
    running = start(predictor, model, api_key, args.host, args.port)
    print(f"Serving {running.model} at {running.base_url}", flush=True)
    try:
        while running.thread.is_alive():
            running.thread.join(0.5)
    except KeyboardInterrupt:
        running.stop()


if __name__ == "__main__":
    main()

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
its chat template, greedily, counting its own tokens. The server also answers Anthropic's
/v1/messages, continuing a prefill.

Bad requests get clean 4xx errors: a chat body is limited to MAX_BODY bytes (413), a chat
that is not text is a 400, and a predictor's exception is a generic 500 whose details go to
the server's log only. With an API key (`--api-key`, or PRICER_SERVER_API_KEY so that it
stays out of the process list), /docs and /openapi.json are closed too.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import importlib
import logging
import math
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

import llama_tokens
import settings
from chat import answer, item_from_messages
from jobs import FineTuningJobs
from pricer import Predictor, Trainer

if TYPE_CHECKING:
    import chat_api
    import frontier
    from open_chat import OpenChat

MAX_BODY = 1 << 20  # bytes of a chat request: a product's chat is a few KB
MAX_UPLOAD = 512 << 20  # bytes of an uploaded file, OpenAI's own limit
log = logging.getLogger("server")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # max_tokens, seed, temperature...: accepted
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
    """

    def __init__(self, app, limit: int = MAX_BODY, upload_limit: int = MAX_UPLOAD):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            limit = self.upload_limit if scope["path"] == "/v1/files" else self.limit
            length = headers.get(b"content-length")
            refusal = None
            if b"transfer-encoding" in headers:
                refusal = error(411, "send the body with a Content-Length and no "
                                     "Transfer-Encoding", "length_required")
            elif length is not None and not length.isdigit():
                refusal = error(400, "the Content-Length is not a number", "bad_length")
            elif length is not None and int(length) > limit:
                refusal = error(413, f"the request body is over {limit:,} bytes",
                                "request_too_large")
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


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


def completion(model: str, text: str, prompt_tokens: int,
               completion_tokens: int | None = None) -> dict:
    """A chat completion in OpenAI's shape, with usage (counted with Llama 3's tokenizer
    unless given)."""
    if completion_tokens is None:
        completion_tokens = llama_tokens.count(text)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def message(model: str, text: str, prompt_tokens: int,
            completion_tokens: int | None = None) -> dict:
    """The same answer in the shape of Anthropic's messages API."""
    if completion_tokens is None:
        completion_tokens = llama_tokens.count(text)
    return {
        "id": f"msg_{uuid.uuid4().hex}", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": completion_tokens},
    }


def refusal(status: int, message: str, code: str) -> HTTPException:
    """An error to raise from a route; the app answers it in OpenAI's shape (`error`)."""
    return HTTPException(status, {"message": message, "code": code})


class Chats:
    """The chat routes over `models` (name -> predictor, or an open LLM that answers chats
    itself): /v1/models, /v1/chat/completions, and Anthropic's /v1/messages, which continues a
    prefilled answer."""

    def __init__(self, models: dict[str, Predictor | OpenChat]):
        self.models = models
        # Every start is a new fingerprint: a client's cache never takes one predictor's answers
        # for another's served under the same name.
        self.fingerprint = f"fp_{uuid.uuid4().hex[:12]}"
        self.router = APIRouter()
        self.router.get("/v1/models")(self.list_models)
        self.router.get("/v1/models/{name:path}")(self.model_of)
        # Plain methods, not async: FastAPI runs them in a thread pool, so slow predictors
        # serve concurrently.
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

    def chat(self, request: ChatRequest) -> dict:
        return self.reply(request, completion)

    def messages(self, request: ChatRequest) -> dict:
        return self.reply(request, message, continue_prefill=True)

    def reply(self, request: ChatRequest, shape: Callable[..., dict],
              continue_prefill: bool = False) -> dict:
        """Answer the chat (an open LLM) or price the item in it; the answer in `shape`."""
        if request.model not in self.models:
            raise refusal(404, f"The model `{request.model}` does not exist; this server has "
                               f"{', '.join(f'`{m}`' for m in self.models)}", "model_not_found")
        if request.stream:
            raise refusal(400, "streaming is not supported", "unsupported")
        messages = [m.model_dump() for m in request.messages]
        try:
            item = item_from_messages(messages)
        except ValueError as e:
            raise refusal(400, str(e), "invalid_messages") from None
        served = self.models[request.model]
        respond = spoken if is_open_llm(served) else priced
        try:
            text, *counts = respond(served, request, messages)
        except HTTPException:
            raise
        except Exception:  # the client retries as after any 500; why is for the server's log
            log.exception("the predictor for %s failed on %r", request.model, item.title)
            raise refusal(500, "the predictor failed; the server's log says why",
                          "predictor_error") from None
        if continue_prefill and messages[-1]["role"] == "assistant":
            text = text.removeprefix(str(messages[-1]["content"]))
        return shape(request.model, text, *counts)


def is_open_llm(served: object) -> bool:
    """Whether `served` is an open LLM, which answers the chat itself; checked without
    importing open_chat (and torch) into a server that serves none."""
    open_chat = sys.modules.get("open_chat")
    return open_chat is not None and isinstance(served, open_chat.OpenChat)


def priced(predictor: Predictor, request: ChatRequest, messages: list[dict]) -> tuple[str, int]:
    """A predictor's price for the item in the chat, in the course's answer, with the chat's
    tokens counted by Llama 3's tokenizer."""
    price = float(predictor(item_from_messages(messages)))
    if not math.isfinite(price):
        raise refusal(500, f"the predictor returned {price}", "predictor_error")
    texts = [str(request.system or "")] + [str(m["content"] or "") for m in messages]
    return answer(max(price, 0.0)), sum(llama_tokens.count(t) for t in texts)


def spoken(chat: OpenChat, request: ChatRequest, messages: list[dict]) -> tuple[str, int, int]:
    """An open LLM's answer to the chat (Anthropic's system prompt first), within the tokens
    the request allows, with its own token counts."""
    system = [{"role": "system", "content": request.system}] if request.system else []
    extra = request.model_extra or {}
    limit = extra.get("max_completion_tokens") or extra.get("max_tokens") or 16
    reply = chat.reply(system + messages, int(limit))
    return reply.text, reply.input_tokens, reply.output_tokens


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
    app.add_middleware(BodyLimit)
    if api_key is not None:
        app.add_middleware(KeyCheck, api_key=api_key)  # the outermost: checked first

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
    """

    base_url: str
    model: str
    server: uvicorn.Server
    thread: threading.Thread
    api_key: str | None = None
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
        chat = chat_api.OpenAIChat(model or self.model, base_url=self.base_url,
                                   api_key=self.api_key, params=params)
        return frontier.ChatPricer(chat, cache=self._cache, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self._cache is not None:
            self._cache.close()
            self._scratch.cleanup()
            self._cache = self._scratch = None

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app: FastAPI, model: str, host: str = "127.0.0.1", port: int = 0,
          api_key: str | None = None) -> Running:
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
    return Running(f"http://{host}:{sock.getsockname()[1]}/v1", model, server, thread, api_key)


def start(predictor: Predictor | OpenChat | None = None, model: str | None = None,
          api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
          trainer: Trainer | None = None) -> Running:
    """Serve `predictor` as `model` from a notebook: returns at once, with its base URL.

    Without a predictor, it serves the open LLM that `model` names (by default the
    PRICER_OPEN_MODEL setting), loaded with `open_models.load`.
    """
    if predictor is None:
        from open_chat import OpenChat

        predictor = OpenChat(model)
        model = predictor.name
    model = model or "pricer"
    return serve(app_for(predictor, model, api_key, trainer), model, host, port, api_key)


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

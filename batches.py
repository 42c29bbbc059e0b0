"""OpenAI's batch API on the local server: the 2025 edition's way of summarising, offline.

>>> local = start(model="smollm2-135m")          # the open LLM, with /v1/batches  # doctest: +SKIP
>>> chat = OpenAIChat(local.model, base_url=local.base_url, params=summaries.LOCAL_PARAMS)
... # doctest: +SKIP
>>> summaries.BatchSummaries(chat).summarise(items)                            # doctest: +SKIP
>>> local.stop()                                                               # doctest: +SKIP

Routes, as OpenAI's: POST and GET /v1/files, GET /v1/files/{id} and /v1/files/{id}/content;
POST and GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. A batch's
requests are sent to the server's own /v1/chat/completions, as many at once as the model
answers at once (llama.cpp's slots: their tokens share each pass), so that each is checked,
bounded and answered exactly as a chat sent alone; its output file holds each answer under
its `custom_id`, in the requests' order, its error file the requests that failed. Batches run
one after another, in a worker thread; a cancelled one sends no more requests and keeps the
answers it has. Files live in memory, PRICER_SERVER_UPLOADS_MB at most, and go with the
server. A server with batches serves no fine-tuning jobs (those have files of their own).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import queue
import threading
import time
from typing import Annotated

import httpx
from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

import server
import settings
from pricer import Predictor

ENDPOINT = "/v1/chat/completions"  # what a batch may ask for


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict | None = None


def refusal(status: int, message: str, code: str) -> HTTPException:
    return HTTPException(status, {"message": message, "code": code})


class Batches:
    """Files and batches of requests, answered by the server that serves this router: call
    `begin(base_url, api_key, at_once)` once it listens."""

    def __init__(self):
        self.at_once = 1
        self.files: dict[str, dict] = {}
        self.contents: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.count = itertools.count(1)
        self.todo: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self.base_url: str | None = None
        self.api_key: str | None = None
        self.router = APIRouter()
        self.router.post("/v1/files")(self.upload)
        self.router.get("/v1/files")(self.list_files)
        self.router.get("/v1/files/{file_id}")(self.file)
        self.router.get("/v1/files/{file_id}/content")(self.content)
        self.router.post("/v1/batches")(self.create)
        self.router.get("/v1/batches")(self.list_batches)
        self.router.get("/v1/batches/{batch_id}")(self.retrieve)
        self.router.post("/v1/batches/{batch_id}/cancel")(self.cancel)

    def begin(self, base_url: str, api_key: str | None = None, at_once: int = 1) -> None:
        """Start answering batches through the server at `base_url`, sending `at_once` of a
        batch's requests at a time (what the server answers at the same time)."""
        self.base_url, self.api_key, self.at_once = base_url, api_key, at_once
        threading.Thread(target=self.work, daemon=True, name="batches").start()

    # --- files ----------------------------------------------------------------------------

    def keep(self, data: bytes, filename: str, purpose: str) -> dict:
        """Keep `data` as a file; a 413 when it does not fit in the room left for files."""
        with self._lock:
            room = settings.server_uploads() - sum(map(len, self.contents.values()))
            if len(data) > room:
                raise refusal(413, f"the file's {len(data):,} bytes are over the {room:,} left "
                                   "for files (PRICER_SERVER_UPLOADS_MB)", "request_too_large")
            file_id = f"file-batch{next(self.count):014d}"
            self.contents[file_id] = data
            self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data),
                                   "created_at": int(time.time()), "filename": filename,
                                   "purpose": purpose, "status": "processed"}
        return self.files[file_id]

    def upload(self, file: Annotated[UploadFile, File()],
               purpose: Annotated[str, Form()]) -> dict:
        return self.keep(file.file.read(), file.filename or "upload.jsonl", purpose)

    def list_files(self) -> dict:
        return {"object": "list", "data": list(self.files.values()), "has_more": False}

    def file(self, file_id: str) -> dict:
        if file_id not in self.files:
            raise refusal(404, f"No such File object: {file_id}", "not_found")
        return self.files[file_id]

    def content(self, file_id: str) -> Response:
        self.file(file_id)
        return Response(self.contents[file_id], media_type="application/jsonl")

    # --- batches --------------------------------------------------------------------------

    def create(self, request: BatchRequest) -> dict:
        self.file(request.input_file_id)
        if request.endpoint != ENDPOINT:
            raise refusal(400, f"this server's batches ask {ENDPOINT} only, not "
                               f"{request.endpoint!r}", "invalid_value")
        if request.completion_window != "24h":
            raise refusal(400, "completion_window must be '24h'", "invalid_value")
        batch_id = f"batch_local{next(self.count):014d}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": request.endpoint, "errors": None,
            "input_file_id": request.input_file_id, "completion_window": "24h",
            "status": "validating", "output_file_id": None, "error_file_id": None,
            "created_at": int(time.time()), "in_progress_at": None, "completed_at": None,
            "cancelled_at": None, "metadata": request.metadata,
            "request_counts": {"total": 0, "completed": 0, "failed": 0}}
        self.todo.put(batch_id)
        return self.batches[batch_id]

    def list_batches(self, limit: int = 20, after: str | None = None) -> dict:
        """The batches, newest first, `limit` a page, after the one `after` names."""
        ordered = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
        if after is not None:
            ordered = [b for b in ordered if b["id"] < after]
        page = ordered[:max(1, min(limit, 100))]
        return {"object": "list", "data": page, "has_more": len(ordered) > len(page),
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None}

    def retrieve(self, batch_id: str) -> dict:
        if batch_id not in self.batches:
            raise refusal(404, f"No such Batch object: {batch_id}", "not_found")
        return self.batches[batch_id]

    def cancel(self, batch_id: str) -> dict:
        batch = self.retrieve(batch_id)
        if batch["status"] in ("validating", "in_progress"):
            batch["status"] = "cancelling"
        return batch

    # --- answering ------------------------------------------------------------------------

    def work(self) -> None:
        while True:
            self.run(self.batches[self.todo.get()])

    def run(self, batch: dict) -> None:
        """Answer every request of `batch` in order, then write its output and error files."""
        requests, errors = requests_in(self.contents[batch["input_file_id"]], batch["endpoint"])
        if errors:
            batch.update(status="failed", errors={"object": "list", "data": errors})
            return
        if batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
            return
        batch.update(status="in_progress", in_progress_at=int(time.time()))
        batch["request_counts"]["total"] = len(requests)
        answered, failed = [], []
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with (httpx.Client(timeout=settings.server_timeout() + 5, headers=headers) as client,
              concurrent.futures.ThreadPoolExecutor(self.at_once) as pool):
            for line in pool.map(lambda pair: self.answer(client, batch, *pair),
                                 enumerate(requests)):
                if line is None:  # not sent: the batch was cancelled
                    continue
                ok = line["error"] is None and line["response"]["status_code"] == 200
                (answered if ok else failed).append(line)
                batch["request_counts"]["completed" if ok else "failed"] += 1
        self.finish(batch, answered, failed)

    def answer(self, client: httpx.Client, batch: dict, number: int,
               request: dict) -> dict | None:
        """The output or error line of the batch's request `number`; None when the batch is
        cancelled before it is sent."""
        if batch["status"] == "cancelling":
            return None
        line = {"id": f"batch_req_{batch['id'][-8:]}_{number}", "custom_id": request["custom_id"]}
        try:
            response = client.post(self.base_url.removesuffix("/v1") + request["url"],
                                   json=request["body"])
            body = response.json()
        except (httpx.HTTPError, json.JSONDecodeError) as e:
            return {**line, "response": None,
                    "error": {"code": "request_failed", "message": str(e)}}
        return {**line, "response": {"status_code": response.status_code,
                                     "request_id": line["id"], "body": body}, "error": None}

    def finish(self, batch: dict, answered: list[dict], failed: list[dict]) -> None:
        """Write the batch's output and error files, and mark it ended."""
        for lines, name in ((answered, "output_file_id"), (failed, "error_file_id")):
            if lines:
                data = "".join(json.dumps(line) + "\n" for line in lines).encode()
                batch[name] = self.keep(data, f"{batch['id']}_{name[:-8]}.jsonl",
                                        "batch_output")["id"]
        ended = "cancelled" if batch["status"] == "cancelling" else "completed"
        batch.update(status=ended, **{f"{ended}_at": int(time.time())})


def requests_in(data: bytes, endpoint: str) -> tuple[list[dict], list[dict]]:
    """The requests of a batch's input file, and what is wrong with its lines (OpenAI's
    batch errors: each with its line number). Each line is a JSON object with a `custom_id`
    (unique in the file), method POST, the batch's `url` and a `body` object.

    >>> requests_in(b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
    ...             b'"body": {}}\\nnot json\\n', "/v1/chat/completions")[1]
    [{'code': 'invalid_json_line', 'message': 'line 2 is not a JSON object', 'line': 2}]
    """
    requests, errors, seen = [], [], set()
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            errors.append({"code": "invalid_json_line", "message": f"line {number} is not a "
                           "JSON object", "line": number})
            continue
        why = (f"its custom_id {request.get('custom_id')!r} is not a new string"
               if not isinstance(request.get("custom_id"), str) or request["custom_id"] in seen
               else f"its method must be POST and its url {endpoint}"
               if request.get("method") != "POST" or request.get("url") != endpoint
               else "its body must be an object" if not isinstance(request.get("body"), dict)
               else None)
        if why:
            errors.append({"code": "invalid_request", "message": f"line {number}: {why}",
                           "line": number})
            continue
        seen.add(request["custom_id"])
        requests.append(request)
    if not requests and not errors:
        errors.append({"code": "empty_file", "message": "the file holds no requests",
                       "line": None})
    return requests, errors


def start(predictor: Predictor | None = None, model: str | None = None,
          api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> server.Running:
    """`server.start`, with files and batches: serve `predictor` as `model` (default its name),
    or without a predictor the open LLM that `model` names (open_models.REGISTRY), on the
    runtime that `server.open_llm` picks."""
    batches = Batches()
    running = server.start(predictor, model or getattr(predictor, "name", None), api_key, host,
                           port, routers=[batches.router])
    batches.begin(running.base_url, api_key, running.at_once)
    return running

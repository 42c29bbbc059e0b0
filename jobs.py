"""Files and fine-tuning jobs on the local server: OpenAI's flow, with a job that really trains.

`fine_tuning.py`'s client code runs unchanged against the local server: it uploads the JSONL
files, creates a job, follows its status and events, then asks for completions from the
job's `fine_tuned_model`. Here a job checks the training file as OpenAI would, turns each
example's chat back into an Item and its price, trains a local model on them with `trainer`,
and serves the result under the new model's name. What the trainer logs to the "training"
logger while it trains (lora.py logs each step's loss) becomes the job's progress events.

>>> local = server.start(predictor, trainer=lambda items: TfidfRidgePricer().fit(items))
... # doctest: +SKIP
>>> llm = server.start(model="smollm2-135m", trainer=lora.open_trainer(minutes=5))
... # doctest: +SKIP

Jobs train one at a time, in the order they were created ("queued" until their turn): two
models loading at once in one process break each other. `POST .../jobs/{id}/cancel` cancels a
job at once, as OpenAI's does: a queued one never starts, and a running one stops at its
trainer's next progress event (which raises `JobCancelled` in the trainer), or is dropped
when it ends. A trained model that can be saved (a `Pricer`) waits on disk in the job's
folder, and is loaded when asked for: only the model asked for last stays in memory. Uploads
and models live in the server's own folder under `server-files/`, removed when it stops; a
job's folder goes when the job fails or is cancelled. What a killed server left there, or in
its trainers' scratch (`settings.jobs_dir()`), goes when the next server starts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from pydantic import BaseModel, ConfigDict

import fine_tuning
import settings
from chat import priced_item
from files import owner, remove_stale
from items import Item
from pricer import Predictor, Pricer, Trainer

log = logging.getLogger("server")
ENDED = ("succeeded", "failed", "cancelled")  # a job's last statuses


class JobCancelled(Exception):
    """Raised in a trainer, at its next progress event, once its job is cancelled."""


class _ToJob(logging.Handler):
    """Turns the records that one thread logs into a job's events; once the job is cancelled,
    the next record stops the trainer that logs it."""

    def __init__(self, job: Job):
        super().__init__(logging.INFO)
        self.job, self.thread = job, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread:
            return
        if self.job.cancelled.is_set():
            raise JobCancelled(self.job.id)
        self.job.log(record.getMessage(), getattr(record, "data", None))


@contextmanager
def progress_events(job: Job) -> Iterator[None]:
    """Inside the block, what this thread logs to the "training" logger is `job`'s events,
    and a cancelled job's next one raises JobCancelled."""
    logger = logging.getLogger("training")
    logger.setLevel(logging.INFO)
    handler = _ToJob(job)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def examples_to_items(path: Path) -> list[Item]:
    """The training Items of a checked chat JSONL file, priced by each assistant answer."""
    items = []
    for _, line in fine_tuning.jsonl_lines(path):
        items.append(priced_item(json.loads(line)["messages"]))
    return items


@dataclass
class Job:
    """One fine-tuning job and everything its API object and event list report."""

    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int | None
    status: str = "validating_files"
    created_at: int = field(default_factory=lambda: int(time.time()))
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict | None = None
    events: list[dict] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def log(self, message: str, data: dict | None = None) -> None:
        self.events.append({"id": f"ftevent-{self.id[-8:]}-{len(self.events) + 1:04d}",
                            "object": "fine_tuning.job.event", "created_at": int(time.time()),
                            "level": "info" if self.error is None else "error",
                            "message": message, "data": data or {}, "type": "message"})

    def api(self) -> dict:
        return {"id": self.id, "object": "fine_tuning.job", "model": self.model,
                "created_at": self.created_at, "finished_at": self.finished_at,
                "fine_tuned_model": self.fine_tuned_model, "organization_id": "org-local",
                "result_files": [], "status": self.status, "validation_file":
                self.validation_file, "training_file": self.training_file,
                "hyperparameters": {"n_epochs": 1, "batch_size": 1,
                                    "learning_rate_multiplier": 1.0},
                "trained_tokens": self.trained_tokens, "error": self.error, "seed": self.seed,
                "suffix": self.suffix, "integrations": None, "estimated_finish": None}


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # method, hyperparameters, integrations...
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    seed: int | None = None


class OnDisk:
    """Trained models that wait on disk until asked for: `keep(model, folder)` saves a Pricer
    and gives a predictor that loads it at its first use; only the model used last stays in
    memory. A model that cannot be saved (a plain function) is served as it is."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loaded: tuple[Path, Predictor] | None = None

    def keep(self, model: Predictor, folder: Path) -> Predictor:
        if not (isinstance(model, Pricer) and model.savable):
            return model
        path, kind = model.save(folder / "model"), type(model)
        return lambda item: self.model(kind, path)(item)

    def model(self, kind: type[Pricer], path: Path) -> Predictor:
        with self._lock:
            if self._loaded is None or self._loaded[0] != path:
                self._loaded = None  # the model used before goes first
                self._loaded = path, kind.load(path)
            return self._loaded[1]


class FineTuningJobs:
    """Uploaded files and jobs; `router` serves them, `models` receives each trained model."""

    def __init__(self, models: dict[str, Predictor], trainer: Trainer):
        self.models, self.trainer = models, trainer
        folder = settings.data_dir() / "server-files"
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale(folder)  # of servers that were killed before they stopped
        self.folder = Path(tempfile.mkdtemp(dir=folder, prefix=f"{owner()}~"))  # its own
        remove_stale(settings.jobs_dir())  # and their trainers' scratch, also as it was
        for legacy in settings.jobs_dir().glob("tmp*"):  # named before: for no process
            shutil.rmtree(legacy, ignore_errors=True)
        self.files: dict[str, dict] = {}
        self.jobs: dict[str, Job] = {}
        self.count = itertools.count(1)  # ids: unique per server, the same on every run
        self.stored = OnDisk()
        self._lock = threading.Lock()  # a job's end against its cancellation; uploads' room
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self.work, daemon=True)
        self._worker.start()
        self.router = APIRouter()
        self.router.post("/v1/files")(self.upload)
        self.router.get("/v1/files")(self.list_files)
        self.router.get("/v1/files/{file_id}")(self.file)
        self.router.delete("/v1/files/{file_id}")(self.delete_file)
        self.router.post("/v1/fine_tuning/jobs")(self.create)
        self.router.get("/v1/fine_tuning/jobs/{job_id}")(self.retrieve)
        self.router.get("/v1/fine_tuning/jobs/{job_id}/events")(self.events)
        self.router.post("/v1/fine_tuning/jobs/{job_id}/cancel")(self.cancel)

    def close(self) -> None:
        """Cancel what has not ended and remove the uploads and models (the server stops)."""
        for job in list(self.jobs.values()):
            with contextlib.suppress(HTTPException):  # ended meanwhile
                self.cancel(job.id)
        self._queue.put(None)
        self._worker.join(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def not_found(what: str, id: str) -> HTTPException:
        return HTTPException(404, {"message": f"No such {what}: {id}", "code": f"{what}_not_found"})

    def room(self) -> int:
        """Bytes left for uploads (`settings.server_uploads()` in all)."""
        return max(0, settings.server_uploads() - sum(f["bytes"] for f in self.files.values()))

    def upload(self, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> dict:
        file_id = f"file-local{next(self.count):016d}"
        with open(self.folder / file_id, "wb") as saved:
            shutil.copyfileobj(file.file, saved)
            size = saved.tell()
        with self._lock:  # uploads sent side by side may each fit alone, not together
            if size > (room := self.room()):
                (self.folder / file_id).unlink()
                raise HTTPException(413, {"message": f"the file's {size:,} bytes are over the "
                                                     f"{room:,} left for uploads (PRICER_SERVER"
                                                     "_UPLOADS_MB): delete files first",
                                          "code": "request_too_large"})
            self.files[file_id] = {"id": file_id, "object": "file", "bytes": size,
                                   "created_at": int(time.time()), "filename": file.filename,
                                   "purpose": purpose, "status": "processed"}
        return self.files[file_id]

    def list_files(self) -> dict:
        return {"object": "list", "data": list(self.files.values()), "has_more": False}

    def file(self, file_id: str) -> dict:
        if file_id not in self.files:
            raise self.not_found("file", file_id)
        return self.files[file_id]

    def delete_file(self, file_id: str) -> dict:
        with self._lock:
            self.file(file_id)
            (self.folder / file_id).unlink(missing_ok=True)
            del self.files[file_id]
        return {"id": file_id, "object": "file", "deleted": True}

    def create(self, request: JobRequest) -> dict:
        for file_id in filter(None, (request.training_file, request.validation_file)):
            if file_id not in self.files:
                raise self.not_found("file", file_id)
        job = Job(f"ftjob-local{next(self.count):016d}", request.model, request.training_file,
                  request.validation_file, request.suffix, request.seed)
        self.jobs[job.id] = job
        job.log(f"Created fine-tuning job: {job.id}")
        created = job.api()  # as it was created: the job may finish before this returns
        job.status = "queued"
        self._queue.put(job)
        return created

    def job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise self.not_found("job", job_id)
        return self.jobs[job_id]

    def retrieve(self, job_id: str) -> dict:
        return self.job(job_id).api()

    def events(self, job_id: str, limit: int = 20) -> dict:
        newest_first = self.job(job_id).events[::-1]
        return {"object": "list", "data": newest_first[:limit],
                "has_more": len(newest_first) > limit}

    def cancel(self, job_id: str) -> dict:
        """Cancel a job that has not ended: it is "cancelled" at once, and its trainer stops
        at its next progress event."""
        job = self.job(job_id)
        with self._lock:
            if job.status in ENDED:
                raise HTTPException(400, {"message": f"Job {job_id} has already {job.status}: "
                                                     "only a job that has not ended can be "
                                                     "cancelled", "code": "job_ended"})
            job.cancelled.set()
            job.status, job.finished_at = "cancelled", int(time.time())
            job.log("Fine-tuning job cancelled")
        return job.api()

    def work(self) -> None:
        """Run the queued jobs, one at a time, until the server stops."""
        while (job := self._queue.get()) is not None:
            if not job.cancelled.is_set():
                self.run(job)

    def run(self, job: Job) -> None:
        """The job's whole life, which always ends: `failed` with a reason if anything raises,
        `cancelled` when it is; either way its folder goes."""
        folder = self.folder / job.id
        try:
            self.train(job, folder)
        except JobCancelled:
            log.info("fine-tuning job %s stopped: it was cancelled", job.id)
        except Exception:  # a job must always end, never hang in a dead thread
            log.exception("fine-tuning job %s failed", job.id)
            self.fail(job, "server_error", "the job failed on the server; its log says why")
        if job.status != "succeeded":
            shutil.rmtree(folder, ignore_errors=True)

    def train(self, job: Job, folder: Path) -> None:
        """Check the training file, train on it, and serve the model."""
        path = self.folder / job.training_file
        report = fine_tuning.validate_jsonl(path, job.model)
        if not report.ok:
            return self.fail(job, "invalid_training_file", str(report))
        with self._lock:
            if job.cancelled.is_set():
                return
            job.status = "running"
            job.log("Fine-tuning job started")
        start = time.monotonic()
        try:
            items = examples_to_items(path)
            with progress_events(job):
                model = self.trainer(items)
            folder.mkdir()
            served = self.stored.keep(model, folder)
            del model  # served from disk, where it can be: its memory goes now
        except JobCancelled:
            raise
        except Exception as e:  # the job fails, as a remote one would; details stay here
            log.exception("training for fine-tuning job %s failed", job.id)
            return self.fail(job, "training_failed", f"training failed ({type(e).__name__}); "
                                                     "the server's log says why")
        name = f"ft:{job.model}:local:{job.suffix or 'model'}:{job.id[-8:]}"
        with self._lock:
            if job.cancelled.is_set():  # while it trained on, past its last progress event
                return
            job.log(f"Step {len(items)}/{len(items)}: trained on {len(items)} examples in "
                    f"{time.monotonic() - start:.1f}s", {"step": len(items),
                                                          "total_steps": len(items)})
            self.models[name] = served
            job.fine_tuned_model, job.trained_tokens = name, report.billed_tokens()
            job.status, job.finished_at = "succeeded", int(time.time())
            job.log(f"New fine-tuned model created: {name}")
            job.log("The job has successfully completed")

    def fail(self, job: Job, code: str, message: str) -> None:
        with self._lock:
            if job.cancelled.is_set():
                return
            job.error = {"code": code, "message": message, "param": "training_file"}
            job.status, job.finished_at = "failed", int(time.time())
            job.log(f"Job failed: {message}")


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
"""

from __future__ import annotations

import itertools
import json
import logging
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
from files import gone, owner
from items import Item
from pricer import Predictor, Trainer

log = logging.getLogger("server")


class _ToJob(logging.Handler):
    """Turns the records that one thread logs into a job's events."""

    def __init__(self, job: Job):
        super().__init__(logging.INFO)
        self.job, self.thread = job, threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.job.log(record.getMessage(), getattr(record, "data", None))


@contextmanager
def progress_events(job: Job) -> Iterator[None]:
    """Inside the block, what this thread logs to the "training" logger is `job`'s events."""
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


class FineTuningJobs:
    """Uploaded files and jobs; `router` serves them, `models` receives each trained model."""

    def __init__(self, models: dict[str, Predictor], trainer: Trainer):
        self.models, self.trainer = models, trainer
        folder = settings.data_dir() / "server-files"
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*~*~*"):  # of servers that were killed before they stopped
            if gone(stale.name.rpartition("~")[0]):
                shutil.rmtree(stale, ignore_errors=True)
        self.folder = Path(tempfile.mkdtemp(dir=folder, prefix=f"{owner()}~"))  # its own
        self.files: dict[str, dict] = {}
        self.jobs: dict[str, Job] = {}
        self.count = itertools.count(1)  # ids: unique per server, the same on every run
        self.router = APIRouter()
        self.router.post("/v1/files")(self.upload)
        self.router.get("/v1/files")(self.list_files)
        self.router.get("/v1/files/{file_id}")(self.file)
        self.router.post("/v1/fine_tuning/jobs")(self.create)
        self.router.get("/v1/fine_tuning/jobs/{job_id}")(self.retrieve)
        self.router.get("/v1/fine_tuning/jobs/{job_id}/events")(self.events)

    def close(self) -> None:
        """Remove the uploaded files (the server is stopping)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def not_found(what: str, id: str) -> HTTPException:
        return HTTPException(404, {"message": f"No such {what}: {id}", "code": f"{what}_not_found"})

    def upload(self, file: Annotated[UploadFile, File()], purpose: Annotated[str, Form()]) -> dict:
        file_id = f"file-local{next(self.count):016d}"
        with open(self.folder / file_id, "wb") as saved:
            shutil.copyfileobj(file.file, saved)
            size = saved.tell()
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

    def create(self, request: JobRequest) -> dict:
        for file_id in filter(None, (request.training_file, request.validation_file)):
            if file_id not in self.files:
                raise self.not_found("file", file_id)
        job = Job(f"ftjob-local{next(self.count):016d}", request.model, request.training_file,
                  request.validation_file, request.suffix, request.seed)
        self.jobs[job.id] = job
        job.log(f"Created fine-tuning job: {job.id}")
        created = job.api()  # as it was created: the job may finish before this returns
        threading.Thread(target=self.run, args=(job,), daemon=True).start()
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

    def run(self, job: Job) -> None:
        """The job's whole life, which always ends: `failed` with a reason if anything raises."""
        try:
            self.train(job)
        except Exception:  # a job must always end, never hang in a dead thread
            log.exception("fine-tuning job %s failed", job.id)
            self.fail(job, "server_error", "the job failed on the server; its log says why")

    def train(self, job: Job) -> None:
        """Check the training file, train on it, and serve the model."""
        path = self.folder / job.training_file
        report = fine_tuning.validate_jsonl(path, job.model)
        if not report.ok:
            return self.fail(job, "invalid_training_file", str(report))
        job.status = "running"
        job.log("Fine-tuning job started")
        start = time.monotonic()
        try:
            items = examples_to_items(path)
            with progress_events(job):
                model = self.trainer(items)
        except Exception as e:  # the job fails, as a remote one would; details stay here
            log.exception("training for fine-tuning job %s failed", job.id)
            return self.fail(job, "training_failed", f"training failed ({type(e).__name__}); "
                                                     "the server's log says why")
        job.log(f"Step {len(items)}/{len(items)}: trained on {len(items)} examples in "
                f"{time.monotonic() - start:.1f}s", {"step": len(items),
                                                      "total_steps": len(items)})
        name = f"ft:{job.model}:local:{job.suffix or 'model'}:{job.id[-8:]}"
        self.models[name] = model
        job.fine_tuned_model, job.trained_tokens = name, report.billed_tokens()
        job.status, job.finished_at = "succeeded", int(time.time())
        job.log(f"New fine-tuned model created: {name}")
        job.log("The job has successfully completed")

    def fail(self, job: Job, code: str, message: str) -> None:
        job.error = {"code": code, "message": message, "param": "training_file"}
        job.status, job.finished_at = "failed", int(time.time())
        job.log(f"Job failed: {message}")

"""OpenAI's fine-tuning flow, unchanged, against the local server over real HTTP."""

import gc
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import faults
import openai
import pytest

import chat_api
import fine_tuning
import server
from baselines import ConstantPricer
from chat import get_price
from items import Item

TEXT = ("Kettle\nA sturdy kettle that boils water fast and switches itself off. " * 3).strip()


def item(price: float) -> Item:
    return Item.from_text(TEXT, price)


TRAIN = [item(10.0 + 7 * i) for i in range(30)]


TRAINED: list[Item] = []


def mean_trainer(items: list[Item]):
    """A real, if simple, fit: the mean price of the training examples."""
    TRAINED[:] = items
    mean = statistics.mean(i.price for i in items)
    return lambda _: mean


def failing_trainer(items: list[Item]):
    raise RuntimeError("cannot open /srv/secret/weights: out of memory")


@pytest.fixture
def serve():
    """Start a local server whose fine-tuning jobs train with the given trainer."""
    running = []

    def start(trainer=mean_trainer):
        running.append(server.start(lambda _: 1.0, model="base", trainer=trainer))
        return running[-1]

    yield start
    for local in running:
        local.stop()


def client_for(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.base_url, api_key="local", max_retries=0)


def test_a_job_trains_a_model_that_the_server_then_serves(serve, tmp_path):
    local = serve()
    client = client_for(local)
    train_file, validation_file = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    job = fine_tuning.create_job(client, fine_tuning.upload(client, train_file, 10),
                                 fine_tuning.upload(client, validation_file))
    assert job.status == "validating_files" and job.seed == 42 and job.suffix == "pricer"
    done = fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)
    assert done.status == "succeeded" and done.fine_tuned_model.startswith("ft:gpt-4o-mini")
    trained = [json.loads(line) for line in train_file.read_text().splitlines()]
    answers = [round(get_price(t["messages"][-1]["content"])) for t in trained]
    pricer = fine_tuning.tuned_pricer(done.fine_tuned_model, base_url=local.base_url,
                                cache=chat_api.Cache(tmp_path / "cache.sqlite"))
    assert pricer.chat.params == {"max_tokens": 7, "seed": 42}  # as the course called it
    # the server answers in whole cents
    assert pricer(TRAIN[-1]) == pytest.approx(statistics.mean(answers), abs=0.005)
    assert [i.prompt for i in TRAINED] == [item.prompt for item in TRAIN[:20]]
    models = [m.id for m in client.models.list()]
    assert models == ["base", done.fine_tuned_model]
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id).data]
    assert messages[0] == "The job has successfully completed"


def test_a_failing_job_says_what_failed_and_logs_why(serve, tmp_path, caplog):
    """The client learns that training failed, and of what kind; the details (paths,
    messages) stay in the server's log."""
    client = client_for(serve(failing_trainer))
    train_file, _ = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    job = fine_tuning.create_job(client, fine_tuning.upload(client, train_file, 10))
    with pytest.raises(fine_tuning.FineTuneFailed, match=r"training failed \(RuntimeError\)"):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)
    said = client.fine_tuning.jobs.retrieve(job.id).error.message + json.dumps(
        [e.message for e in client.fine_tuning.jobs.list_events(job.id).data])
    assert "/srv/secret" not in said and "/srv/secret" in caplog.text


def test_a_raw_line_separator_inside_a_string_trains(serve, tmp_path):
    """U+2028 and U+0085 are text inside a JSON string, for the check and the job alike."""
    client = client_for(serve())
    train_file, _ = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    path = tmp_path / "separators.jsonl"
    path.write_text(train_file.read_text().replace("sturdy", "stur\u2028dy\u0085"))
    job = fine_tuning.create_job(client, fine_tuning.upload(client, path, 10))
    done = fine_tuning.follow(client, job.id, poll_seconds=0.05, timeout=20, progress=False)
    assert done.status == "succeeded" and "stur\u2028dy\u0085" in TRAINED[0].text


def test_a_malformed_file_is_refused_before_upload(serve, tmp_path):
    client = client_for(serve())
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n' * 12)
    with pytest.raises(ValueError, match="example_missing_assistant_message"):
        fine_tuning.upload(client, path)
    assert client.files.list().data == []


def test_the_server_checks_a_file_uploaded_around_the_client_check(serve, tmp_path):
    client = client_for(serve())
    path = tmp_path / "bad.jsonl"
    path.write_text("not json\n" * 12)
    with open(path, "rb") as f:
        file_id = client.files.create(file=f, purpose="fine-tune").id
    job = fine_tuning.create_job(client, file_id)
    with pytest.raises(fine_tuning.FineTuneFailed, match="invalid_json"):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)


def test_a_job_refuses_a_file_that_teaches_a_negative_price(serve, tmp_path):
    client = client_for(serve())
    path = tmp_path / "negative.jsonl"
    fine_tuning.write_jsonl(TRAIN[:12], path)
    path.write_text(path.read_text().replace("Price is $24.00", "Price is $-24.00"))
    with open(path, "rb") as f:  # around the client's own check
        file_id = client.files.create(file=f, purpose="fine-tune").id
    job = fine_tuning.create_job(client, file_id)
    with pytest.raises(fine_tuning.FineTuneFailed, match="line 3: invalid_price"):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)


def test_unknown_files_and_jobs_are_404s(serve):
    client = client_for(serve())
    with pytest.raises(openai.NotFoundError):
        fine_tuning.create_job(client, "file-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")


def test_a_file_that_is_not_utf8_fails_its_job(serve, tmp_path):
    client = client_for(serve())
    train_file, _ = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(train_file.read_text().replace("Kettle", "Kettle é").encode("latin-1"))
    with open(path, "rb") as f:
        file_id = client.files.create(file=f, purpose="fine-tune").id
    job = fine_tuning.create_job(client, file_id)
    with pytest.raises(fine_tuning.FineTuneFailed, match="invalid_utf8"):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, timeout=10, progress=False)


def test_anything_that_breaks_a_job_fails_it(serve, tmp_path, monkeypatch):
    client = client_for(serve())
    train_file, _ = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    file_id = fine_tuning.upload(client, train_file)

    def broken(*args, **kwargs):
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(fine_tuning, "validate_jsonl", broken)
    job = fine_tuning.create_job(client, file_id)
    with pytest.raises(fine_tuning.FineTuneFailed, match="the job failed on the server"):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, timeout=10, progress=False)


@pytest.mark.parametrize("status, said", [
    (403, "You have insufficient permissions for this operation."),
    (400, "Fine-tuning is not available for this organization."),
    (404, "The model gpt-4o-mini-2024-07-18 does not exist or you do not have access to it."),
])
def test_a_refused_job_names_the_ways_on(tmp_path, status, said):
    script = faults.Faults(paths=("/fine_tuning/jobs",))
    app = server.app_for(lambda _: 1.0, "base", trainer=mean_trainer)
    app.middleware("http")(script)
    with server.serve(app, "base") as local:
        client = client_for(local)
        file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
        script.then(faults.status(status, said))
        with pytest.raises(fine_tuning.FineTuningUnavailable) as refused:
            fine_tuning.create_job(client, file_id)
    message = str(refused.value)
    assert f"refused to create a fine-tuning job (HTTP {status}: {said})" in message
    for way in ("fine-tuned before", "base_url=", "server.start", "lora.py"):
        assert way in message


def test_what_a_trainer_logs_becomes_the_jobs_events(serve, tmp_path):
    def logging_trainer(items):
        logging.getLogger("training").info("Step %d/%d: training loss=%.4f", 1, 2, 0.5,
                                           extra={"data": {"step": 1, "train_loss": 0.5}})
        return mean_trainer(items)

    local = serve(logging_trainer)
    client = client_for(local)
    train_file, _ = fine_tuning.write_files(TRAIN, tmp_path, 20, 5)
    job = fine_tuning.create_job(client, fine_tuning.upload(client, train_file, 10))
    fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)
    events = client.fine_tuning.jobs.list_events(job.id).data
    step = [e for e in events if e.message.startswith("Step 1/2")]
    assert step[0].data == {"step": 1, "train_loss": 0.5}
    logging.getLogger("training").info("Step 9/9: after the job")  # another thread's: not its
    assert len(client.fine_tuning.jobs.list_events(job.id).data) == len(events)


def wait_for(check, seconds: float = 20):
    """Poll `check()` until it is true."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.02)


def test_two_jobs_at_once_both_succeed_one_after_the_other(serve, tmp_path):
    running, most = [], []
    lock = threading.Lock()

    def slow_trainer(items):
        with lock:
            running.append(1)
            most.append(len(running))
        time.sleep(0.3)
        with lock:
            running.pop()
        return mean_trainer(items)

    client = client_for(serve(slow_trainer))
    file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
    first, second = (fine_tuning.create_job(client, file_id) for _ in range(2))
    assert client.fine_tuning.jobs.retrieve(second.id).status == "queued"
    for job in (first, second):
        done = fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)
        assert done.status == "succeeded"
    assert most == [1, 1]  # never two trainers at once


def stepping_trainer(steps: list[int], total: int = 500):
    """A trainer that reports each of `total` steps, 10 ms apart, as lora.py reports its own."""
    def train(items):
        for step in range(1, total + 1):
            steps.append(step)
            logging.getLogger("training").info("Step %d/%d", step, total)
            time.sleep(0.01)
        return mean_trainer(items)
    return train


def test_a_running_job_cancelled_stops_at_its_next_step(serve, data, tmp_path):
    steps = []
    local = serve(stepping_trainer(steps))
    client = client_for(local)
    file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
    job = fine_tuning.create_job(client, file_id)
    wait_for(lambda: steps)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    stopped_at = len(steps)
    time.sleep(0.2)
    assert len(steps) <= stopped_at + 1 < 500  # it stopped at the step after
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert (done.status, done.fine_tuned_model, done.error) == ("cancelled", None, None)
    assert [m.id for m in client.models.list()] == ["base"]
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == \
        "Fine-tuning job cancelled"
    assert not list(local_folder(data).glob("ftjob-*"))  # its folder went
    with pytest.raises(openai.BadRequestError, match="already cancelled"):
        client.fine_tuning.jobs.cancel(job.id)


def test_a_queued_job_cancelled_never_starts(serve, tmp_path):
    steps = []
    client = client_for(serve(stepping_trainer(steps, total=30)))
    file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
    first, second = (fine_tuning.create_job(client, file_id) for _ in range(2))
    assert client.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    assert fine_tuning.follow(client, first.id, poll_seconds=0.05,
                              progress=False).status == "succeeded"
    assert len(steps) == 30  # the first job's steps alone
    messages = [e.message for e in client.fine_tuning.jobs.list_events(second.id).data]
    assert messages == ["Fine-tuning job cancelled", f"Created fine-tuning job: {second.id}"]


def local_folder(data: Path) -> Path:
    """The server's own folder of uploads and models."""
    (folder,) = (data / "server-files").iterdir()
    return folder


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_a_finished_jobs_model_waits_on_disk_until_asked_for(serve, data, tmp_path):
    trained = []

    def constant_trainer(items):
        trained.append(ConstantPricer().fit(items))
        return trained[-1]

    local = serve(constant_trainer)
    client = client_for(local)
    file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
    done = [fine_tuning.follow(client, fine_tuning.create_job(client, file_id).id,
                               poll_seconds=0.05, progress=False) for _ in range(2)]
    means = [model.mean for model in trained]
    released = [weakref.ref(model) for model in trained]
    trained.clear()
    gc.collect()
    assert [ref() for ref in released] == [None, None]  # no trained model stays in memory
    saved = sorted(local_folder(data).glob("ftjob-*/model"))
    assert len(saved) == 2
    for job, mean in zip(done, means, strict=True):
        pricer = fine_tuning.tuned_pricer(job.fine_tuned_model, base_url=local.base_url,
                                          cache=chat_api.Cache(":memory:"))
        assert pricer(TRAIN[0]) == pytest.approx(mean, abs=0.005)
    local.stop()
    assert not any((data / "server-files").iterdir())


def test_a_failed_jobs_folder_goes(serve, data, tmp_path):
    local = serve(failing_trainer)
    client = client_for(local)
    file_id = fine_tuning.upload(client, fine_tuning.write_files(TRAIN, tmp_path, 20, 5)[0])
    job = fine_tuning.create_job(client, file_id)
    with pytest.raises(fine_tuning.FineTuneFailed):
        fine_tuning.follow(client, job.id, poll_seconds=0.05, progress=False)
    assert [p.name for p in local_folder(data).iterdir()] == [file_id]


def ended_process() -> str:
    """The owner name of a process of this machine that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}~{child.pid}"


def test_what_a_killed_server_left_goes_at_the_next_start(serve, data):
    """A server killed during a job leaves its uploads and models, and its trainer's scratch
    (named for its process, or `tmp*` as earlier versions named it); the next server to
    start removes them, and leaves those of processes still running."""
    dead, alive = ended_process(), f"{socket.gethostname()}~{os.getpid()}"
    left = [data / "server-files" / f"{dead}~a1b2", data / "open-jobs" / f"{dead}~c3d4",
            data / "open-jobs" / "tmpe5f6"]
    kept = [data / "open-jobs" / f"{alive}~g7h8"]
    for folder in left + kept:
        (folder / "checkpoint-2").mkdir(parents=True)
        (folder / "checkpoint-2" / "model.safetensors").write_bytes(b"\0" * 1024)
    serve()
    assert [folder.exists() for folder in left + kept] == [False, False, False, True]

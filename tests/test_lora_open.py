"""The course's fine-tune on a real pretrained LLM, SmolLM2 135M, on a CPU, in a few steps."""

import math

import numpy as np
import openai
import pytest
import torch

import decoding
import fine_tuning
import lora
import open_models
import server
import settings
from items import Item

pytestmark = pytest.mark.slow  # trains a model with torch

ITEMS = [Item.from_text(f"{name}\n{text}", price) for name, text, price in [
    ("Stainless steel kettle", "1.7 litres, boils fast, auto shut-off.", 35),
    ("Refrigerator water filter", "Fits most side-by-side fridges, six months.", 24),
    ("Front-load washer", "4.5 cubic feet, steam clean, energy star.", 899),
    ("Dryer vent hose", "Flexible aluminium, 8 feet, with clamps.", 15),
]]


def completion_loss(model, tok) -> float:
    with torch.no_grad():
        losses = [model(**{k: torch.tensor([v]) for k, v in
                           lora.encode(lora.example(item), tok).items()}).loss.item()
                  for item in ITEMS]
    return sum(losses) / len(losses)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    model, tok = open_models.load("smollm2-135m", progress=False)
    before = completion_loss(model, tok)
    hyperparameters = lora.Hyperparameters(batch_size=2, max_steps=6, learning_rate=1e-3,
                                           warmup=0)
    pricer = lora.LlamaPricer(model, tok, name="SmolLM2 LoRA", hyperparameters=hyperparameters,
                              output_dir=tmp_path_factory.mktemp("smollm2")).fit(ITEMS)
    return pricer, before


def test_the_prompt_ends_on_a_token_boundary_and_only_the_price_is_learned():
    tok = open_models.load("smollm2-135m", progress=False)[1]
    encoded = lora.encode(lora.example(ITEMS[2]), tok)
    price = [tok.decode([t]) for t in encoded["labels"] if t != -100]
    assert "".join(price) == "899.00" and len(price) == 6  # one token per character


def test_the_loss_falls(tuned):
    pricer, before = tuned
    assert pricer.decoding == "mean"  # SmolLM2 writes digits one by one
    assert completion_loss(pricer.model, pricer.tokenizer) < before * 0.8


def test_adapters_save_and_reload_with_the_same_prices(tuned, tmp_path):
    pricer, _ = tuned
    pricer.save(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_config.json").exists()
    again = lora.LlamaPricer.load(tmp_path / "adapters", base=open_models.load(
        "smollm2-135m", progress=False)[0])
    # the same adapters, loaded into a fresh copy of the base: the same arithmetic
    assert np.array_equal(again.predict_many(ITEMS), pricer.predict_many(ITEMS))


def test_the_decodings_read_digit_paths(tuned):
    pricer, _ = tuned
    ids = pricer.tokenizer(ITEMS[0].test_prompt(), return_tensors="pt")["input_ids"]
    paths = decoding.digit_paths(pricer.model, ids, pricer.tokenizer, beams=8)
    values = [v for v, _ in paths]
    probabilities = [p for _, p in paths]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert all(v == int(v) for v in values) and len(set(values)) == len(values)
    assert min(values) <= decoding.expected_price(paths, "mean") <= max(values)
    greedy = decoding.greedy_digits(pricer.model, ids, pricer.tokenizer)
    assert not math.isnan(greedy) and greedy == int(greedy)


def test_a_local_job_fine_tunes_the_open_model_and_serves_it(tmp_path):
    jobs = settings.data_dir() / "open-jobs"
    before = set(jobs.iterdir()) if jobs.exists() else set()
    trainer = lora.open_trainer("smollm2-135m", minutes=2,
                                hyperparameters=lora.Hyperparameters(batch_size=2, max_steps=3))
    with server.start(lambda _: 1.0, model="base", trainer=trainer) as local:
        client = openai.OpenAI(base_url=local.base_url, api_key="local", max_retries=0)
        train_file, _ = fine_tuning.write_files(ITEMS * 3, tmp_path, 10, 2)
        job = fine_tuning.create_job(client, fine_tuning.upload(client, train_file, 10))
        done = fine_tuning.follow(client, job.id, poll_seconds=0.5, progress=False)
        assert done.status == "succeeded", done.error
        losses = [e.data["train_loss"] for e in client.fine_tuning.jobs.list_events(job.id).data
                  if e.data and "train_loss" in e.data]
        assert losses and all(loss > 0 for loss in losses)
        price = local.pricer(done.fine_tuned_model)(ITEMS[0])
        assert math.isfinite(price) and price > 0
    assert set(jobs.iterdir()) == before  # the job's trainer files went with it


def test_an_example_over_max_length_is_refused_not_cut():
    with pytest.raises(ValueError, match="over max_length=5"):
        lora.encode(lora.example(ITEMS[0]), max_length=5)

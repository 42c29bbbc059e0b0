"""LoRA fine-tuning, end to end on a tiny random Llama with the real Llama 3 vocabulary."""

import math

import numpy as np
import pytest
import torch
from tolerance import TRANSFORMER, assert_close, rtol

import llama_tokens
import lora
import sample_data
from items import Item
from loaders import item_from_record

pytestmark = pytest.mark.slow  # trains a model with torch


def short_item(n: int, price: float) -> Item:
    text = f"Kettle model {n}\nBoils {n} cups of water, steel body."
    return Item.from_text(text, price)


# Short prompts keep each training step well under a second on a CPU.
ITEMS = [short_item(i, p) for i, p in enumerate([25, 130, 48, 999, 7, 310, 62, 15])]


def real_items(n: int = 12) -> list[Item]:
    """Full-length curated items from the synthetic sample."""
    found = (item_from_record(r, "Appliances")[0]
             for r in sample_data.generate("Appliances", n=6 * n))
    return [item for item in found if item][:n]


def completion_loss(model, items) -> float:
    """Mean cross-entropy of the completion tokens, the quantity training lowers."""
    model.eval()
    losses = []
    with torch.no_grad():
        for item in items:
            encoded = lora.encode(lora.example(item))
            ids, labels = (torch.tensor([encoded[k]]) for k in ("input_ids", "labels"))
            losses.append(model(input_ids=ids, labels=labels).loss.item())
    return sum(losses) / len(losses)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    lora.tiny_llama().save_pretrained(folder / "base")
    base = lora.load_base(folder / "base", quantize=False)
    before = completion_loss(base, ITEMS)
    hyperparameters = lora.Hyperparameters(batch_size=4, epochs=4, learning_rate=5e-3)
    run = lora.fine_tune(base, ITEMS, folder / "adapter", hyperparameters, logging_steps=1)
    return folder, run, before


def test_example_splits_before_the_price():
    pair = lora.example(ITEMS[1])
    assert pair["prompt"].endswith("\n\nPrice is $")
    assert pair["completion"] == "130.00"
    assert pair["prompt"] + pair["completion"] == ITEMS[1].prompt


def test_a_price_that_is_not_one_is_never_a_training_example():
    bad = Item.from_text(ITEMS[1].text, -130.0)
    with pytest.raises(ValueError, match=r"LoRA training items: the price of item 1 .* negative"):
        lora.dataset([ITEMS[0], bad])


def test_tokenizer_gives_the_llama_ids():
    tok = lora.tokenizer()
    for item in real_items(5):
        ids = tok(item.prompt)["input_ids"]
        assert ids[0] == 128000 and ids[1:] == llama_tokens.encode(item.prompt)
    assert tok.eos_token_id == 128001 and tok.pad_token_id == 128001


@pytest.mark.parametrize("end_token, end", [(False, ""), (True, "<|end_of_text|>")])
def test_loss_mask_covers_exactly_the_price(end_token, end):
    # The course's target is the price alone: its collator masked every end token (the pad).
    items = real_items()
    hyperparameters = lora.Hyperparameters(max_steps=1, end_token=end_token)
    run = lora.trainer(lora.tiny_llama(), items, "unused", hyperparameters)
    tok = lora.tokenizer()
    assert len(run.train_dataset) == len(items)
    for row, item in zip(run.train_dataset, items, strict=True):
        trained = [(i, t) for i, t in enumerate(row["labels"]) if t != -100]
        positions, tokens = zip(*trained, strict=True)
        assert tok.decode(tokens) == f"{round(item.price)}.00{end}"
        # The price tokens are the last ones, right after "Price is $", and nothing else.
        assert positions == tuple(range(len(row["input_ids"]) - len(tokens), len(row["input_ids"])))
        assert row["input_ids"][positions[0] - 3:positions[0]] == [7117, 374, 400]
        assert row["input_ids"] == tok(item.prompt + end)["input_ids"]


def test_training_changes_the_adapters_and_lowers_the_loss(trained):
    folder, run, before = trained
    losses = [h["loss"] for h in run.state.log_history if "loss" in h]
    assert len(losses) == 8 and all(torch.isfinite(torch.tensor(losses)))
    adapters = {n: p for n, p in run.model.named_parameters() if "lora_B" in n}
    assert len(adapters) == 2 * 4  # two layers, four projections
    assert all(p.abs().sum() > 0 for p in adapters.values())  # lora_B starts at zero
    assert not any(p.requires_grad for n, p in run.model.named_parameters() if "lora" not in n)
    assert completion_loss(run.model, ITEMS) < before - 0.25


def test_adapter_round_trip_gives_identical_outputs(trained):
    folder, run, _ = trained
    assert (folder / "adapter" / "adapter_model.safetensors").exists()
    reloaded = lora.load_adapter(lora.load_base(folder / "base", quantize=False),
                                 folder / "adapter")
    ids = lora.tokenizer()(ITEMS[0].test_prompt(), return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(run.model.eval()(ids).logits, reloaded(ids).logits)
    pricer, again = lora.LlamaPricer(run.model), lora.LlamaPricer(reloaded)
    assert np.array_equal(pricer.predict_many(ITEMS), again.predict_many(ITEMS), equal_nan=True)


def test_load_adapter_refuses_a_folder_without_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        lora.load_adapter(lora.tiny_llama(), tmp_path)


def test_pricer_reads_prices_from_the_fine_tuned_model(trained):
    """Each guess is the model's own next-token distribution after "Price is $", read back
    independently here: the likeliest number tokens 1..999, weighted by probability."""
    _, run, _ = trained
    number = {llama_tokens.encode(str(n))[0]: n for n in range(1, 1000)}
    ids = torch.tensor(list(number))
    guesses = lora.LlamaPricer(run.model, prices_first=True).predict_many(ITEMS)
    for item, guess in zip(ITEMS, guesses, strict=True):
        prompt = lora.tokenizer()(item.test_prompt(), return_tensors="pt")
        with torch.no_grad():
            logits = run.model(**prompt).logits[0, -1]
        top = logits[ids].topk(lora.TOP_K)
        weights = torch.softmax(top.values, dim=0)
        expected = sum(w * number[int(ids[i])] for w, i in zip(weights, top.indices, strict=True))
        # a padded batch against one prompt: float32 through the tiny Llama
        assert_close(guess, float(expected), TRANSFORMER, "one prompt against a batch")
    assert len(set(guesses.round(4))) > 1  # the price depends on the item
    course = lora.LlamaPricer(run.model)  # the course's rule, checked in its own test
    for item, guess in zip(ITEMS, course.predict_many(ITEMS), strict=True):
        logits = course.next_token_logits(item.test_prompt())
        assert guess == pytest.approx(lora.weighted_price(logits, course.values), nan_ok=True)


def logits_for(probabilities: dict[str, float]) -> torch.Tensor:
    """Next-token logits giving these tokens these probabilities, and the rest next to none."""
    logits = torch.full((len(lora.tokenizer()),), -30.0)
    for text, p in probabilities.items():
        logits[llama_tokens.encode(text)[0]] = torch.log(torch.tensor(p))
    return logits


def test_weighted_price_is_the_courses_decoding():
    # The course: the top 3 tokens of the whole vocabulary, the prices among them, renormalised.
    values = lora.price_values()
    logits = logits_for({"765": 0.5, "Price": 0.3, "700": 0.15, "800": 0.05})
    assert lora.weighted_price(logits, values) == pytest.approx(750.00)
    # The prices-first rule takes the 3 likeliest prices instead.
    assert lora.weighted_price(logits, values, prices_first=True) == pytest.approx(
        (765 * 0.5 + 700 * 0.15 + 800 * 0.05) / 0.7)
    assert round(lora.weighted_price(logits, values, prices_first=True), 2) == 753.57


def test_weighted_price_with_no_price_among_the_top_tokens():
    values = lora.price_values()
    logits = logits_for({"Price": 0.5, "The": 0.3, "About": 0.15, "765": 0.05})
    assert math.isnan(lora.weighted_price(logits, values))  # no price: the course scored 0
    assert lora.weighted_price(logits, values, prices_first=True) == pytest.approx(765)


def test_weighted_price_reads_a_model_wider_than_its_tokenizer():
    values = lora.price_values()
    logits = torch.cat([logits_for({"765": 0.6, "700": 0.4}), torch.tensor([5.0])])
    assert lora.weighted_price(logits, values) == pytest.approx(765 * 0.6 + 700 * 0.4)


def test_price_tokens_cover_one_to_999():
    values = lora.price_values()
    for n in (1, 9, 42, 765, 999):
        assert values[llama_tokens.encode(str(n))[0]] == n


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_quantization_says_why_it_cannot_run():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*quantize=False"):
        lora.quantization_config()
    assert lora.load_base.__defaults__[1] is None  # quantize only when possible, by default


@pytest.mark.parametrize("full", [False, True])
def test_the_loss_reads_only_the_last_positions_and_equals_trls(full):
    # Items of different lengths, so the batch is padded and the labels start at different
    # places; the loss and every gradient match TRL's, which scores every position.
    from trl import SFTTrainer

    items = [short_item(i, p) for i, p in enumerate([25, 130, 48])] + real_items(1)
    run = lora.trainer(lora.tiny_llama(), items, "unused",
                       lora.Hyperparameters(max_steps=1, full=full))
    run.model.eval()  # no dropout: the two passes see the same network
    batch = next(iter(run.get_train_dataloader()))
    assert len(set((batch["labels"] != -100).int().argmax(dim=1).tolist())) > 1
    weights = [p for p in run.model.parameters() if p.requires_grad]
    for p in weights:  # adapters away from their zero start, so every gradient is non-zero
        p.data += 0.01 * torch.randn_like(p)
    ours = run.compute_loss(run.model, dict(batch))
    theirs = SFTTrainer.compute_loss(run, run.model, dict(batch))
    # Fewer positions through the output layer, in float32: its sums over the hidden size
    # and the 128,256-word softmax round differently.
    close = rtol("float32", 128_256 + 2 * 2_300)
    assert ours.item() == pytest.approx(theirs.item(), rel=close)
    mine, trls = (torch.autograd.grad(loss, weights) for loss in (ours, theirs))
    for a, b in zip(mine, trls, strict=True):
        torch.testing.assert_close(a, b, rtol=close, atol=close * float(b.abs().max()))
    assert all(g.abs().sum() > 0 for g in mine)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU's training settings")
def test_a_cpu_trains_without_recomputing_the_forward_pass(tmp_path):
    config = lora.sft_config(tmp_path)
    assert not config.gradient_checkpointing and config.optim == "adamw_torch"
    assert lora.sft_config(tmp_path, gradient_checkpointing=True).gradient_checkpointing


def test_a_time_budget_schedules_the_learning_rate_over_its_time(tmp_path, monkeypatch):
    budget = lora.sft_config(tmp_path, lora.Hyperparameters(max_minutes=15))
    assert (budget.lr_scheduler_type, budget.warmup_steps) == ("cosine", 10)
    steps = lora.sft_config(tmp_path, lora.Hyperparameters(max_minutes=15, max_steps=100))
    assert (steps.lr_scheduler_type, steps.warmup_steps) == ("cosine", 0.03)  # the course's
    with pytest.raises(ValueError, match="one of constant, linear, cosine"):
        lora.sft_config(tmp_path, lora.Hyperparameters(max_minutes=1, scheduler="polynomial"))
    clock = [100.0]
    monkeypatch.setattr(lora.time, "monotonic", lambda: clock[0])
    timer = lora.TimeBudget(minutes=10)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    rates = timer.schedule(optimizer, "cosine", warmup=10)
    timer.on_train_begin(None, None, None)
    seen = []
    for spent in (0.0, 0.25, 0.5, 1.0):  # 12 steps in, past the warmup
        clock[0] = 100.0 + spent * 600
        rates.last_epoch = 11
        optimizer.step()
        rates.step()
        seen.append(rates.get_last_lr()[0])
    assert seen == pytest.approx([1.0, 0.5 + 0.5 ** 0.5 / 2, 0.5, 0.0])

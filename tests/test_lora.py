"""LoRA fine-tuning, end to end on a tiny random Llama with the real Llama 3 vocabulary."""

import pytest
import torch

import llama_tokens
import lora
import sample_data
from items import Item
from loaders import item_from_record


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
    settings = lora.Settings(batch_size=4, epochs=4, learning_rate=5e-3)
    run = lora.fine_tune(base, ITEMS, folder / "adapter", settings, logging_steps=1)
    return folder, run, before


def test_example_splits_before_the_price():
    pair = lora.example(ITEMS[1])
    assert pair["prompt"].endswith("\n\nPrice is $")
    assert pair["completion"] == "130.00"
    assert pair["prompt"] + pair["completion"] == ITEMS[1].prompt


def test_tokenizer_gives_the_llama_ids():
    tok = lora.tokenizer()
    for item in real_items(5):
        ids = tok(item.prompt)["input_ids"]
        assert ids[0] == 128000 and ids[1:] == llama_tokens.encode(item.prompt)
    assert tok.eos_token_id == 128001 and tok.pad_token_id == 128001


def test_loss_mask_covers_exactly_the_price():
    items = real_items()
    run = lora.trainer(lora.tiny_llama(), items, "unused", lora.Settings(max_steps=1))
    tok = lora.tokenizer()
    assert len(run.train_dataset) == len(items)
    for row, item in zip(run.train_dataset, items, strict=True):
        trained = [(i, t) for i, t in enumerate(row["labels"]) if t != -100]
        positions, tokens = zip(*trained, strict=True)
        assert tok.decode(tokens) == f"{round(item.price)}.00<|end_of_text|>"
        # The price tokens are the last ones, right after "Price is $", and nothing else.
        assert positions == tuple(range(len(row["input_ids"]) - len(tokens), len(row["input_ids"])))
        assert row["input_ids"][positions[0] - 3:positions[0]] == [7117, 374, 400]
        assert lora.encode(lora.example(item)) == {k: row[k] for k in ("input_ids", "labels")}


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
    assert [pricer(i) for i in ITEMS] == [again(i) for i in ITEMS]


def test_load_adapter_refuses_a_folder_without_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        lora.load_adapter(lora.tiny_llama(), tmp_path)


def test_pricer_reads_prices_from_the_fine_tuned_model(trained):
    """Each guess is the model's own next-token distribution after "Price is $", read back
    independently here: the likeliest number tokens 1..999, weighted by probability."""
    _, run, _ = trained
    number = {llama_tokens.encode(str(n))[0]: n for n in range(1, 1000)}
    ids = torch.tensor(list(number))
    guesses = lora.LlamaPricer(run.model).predict_many(ITEMS)
    for item, guess in zip(ITEMS, guesses, strict=True):
        prompt = lora.tokenizer()(item.test_prompt(), return_tensors="pt")
        with torch.no_grad():
            logits = run.model(**prompt).logits[0, -1]
        top = logits[ids].topk(lora.TOP_K)
        weights = torch.softmax(top.values, dim=0)
        expected = sum(w * number[int(ids[i])] for w, i in zip(weights, top.indices, strict=True))
        assert guess == pytest.approx(float(expected), rel=1e-5)
    assert len(set(guesses.round(4))) > 1  # the price depends on the item


def test_weighted_price_averages_the_likeliest_price_tokens():
    values = lora.price_values()
    logits = torch.full((len(values),), -20.0)
    ids = {text: llama_tokens.encode(text)[0] for text in ("100", "200", "300", "Price")}
    logits[ids["Price"]] = 10.0                           # likeliest, but not a price
    logits[ids["100"]] = logits[ids["200"]] = 2.0         # equally likely prices
    logits[ids["300"]] = 2.0 + torch.log(torch.tensor(2.0))   # twice as likely
    assert lora.weighted_price(logits, values, top_k=3) == pytest.approx(
        (100 + 200 + 2 * 300) / 4)
    assert lora.weighted_price(logits, values, top_k=1) == pytest.approx(300)


def test_price_tokens_cover_one_to_999():
    values = lora.price_values()
    for n in (1, 9, 42, 765, 999):
        assert values[llama_tokens.encode(str(n))[0]] == n


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_quantization_says_why_it_cannot_run():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU.*quantize=False"):
        lora.quantization_config()
    assert lora.load_base.__defaults__[1] is None  # quantize only when possible, by default

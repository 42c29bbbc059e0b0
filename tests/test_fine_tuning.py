"""The OpenAI fine-tuning files: examples, JSONL, format checks and cost estimates."""

import json

import pytest

import fine_tuning as ft
import llama_tokens
from chat import training_messages
from items import Item


def item(n: int, price: float) -> Item:
    text = f"Kettle model {n}\nBoils {n} cups of water, steel body."
    return Item.from_text(text, price)


ITEMS = [item(i, 10.0 + 7.5 * i) for i in range(30)]


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path, examples) -> None:
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n"
                            for e in examples))


def test_choose_takes_the_first_examples_in_order():
    train, validation = ft.choose(ITEMS, 20, 5)
    assert train == ITEMS[:20] and validation == ITEMS[20:25]
    with pytest.raises(ValueError, match="from 30 items"):
        ft.choose(ITEMS, 200, 50)
    with pytest.raises(ValueError, match="at least 10"):
        ft.choose(ITEMS, 5, 5)


def course_jsonl(items: list[Item]) -> str:
    """The course's week 6 file, built as its notebook built it."""
    result = ""
    for one in items:
        system = "You estimate prices of items. Reply only with the price, no explanation"
        user = one.test_prompt().replace(" to the nearest dollar", "").replace(
            "\n\nPrice is $", "")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user},
                    {"role": "assistant", "content": f"Price is ${one.price:.2f}"}]
        result += '{"messages": ' + json.dumps(messages) + "}\n"
    return result.strip()


def test_the_file_is_the_courses_to_the_byte(tmp_path):
    items = [item(i, p) for i, p in enumerate([65.99, 0.5, 999.49, 12.0, 30.005])]
    odd = "Café “Kettle” — 1½ L"
    items.append(Item.from_prompt(f"{Item.QUESTION}\n\n{odd}\n\nPrice is $9.00", 8.5))
    path = ft.write_jsonl(items, tmp_path / "train.jsonl")
    assert path.read_bytes() == course_jsonl(items).encode()
    assert not path.read_bytes().endswith(b"\n")


def test_write_files_makes_valid_jsonl(tmp_path):
    train_path, validation_path = ft.write_files(ITEMS, tmp_path / "files", 20, 5)
    examples = lines_of(train_path)
    assert len(examples) == 20 and len(lines_of(validation_path)) == 5
    assert examples[3] == {"messages": training_messages(ITEMS[3])}
    assert ft.make_jsonl(ITEMS[:20]) == train_path.read_text()
    report = ft.check(train_path)
    assert report.ok and report.examples == 20 and len(report.tokens) == 20


def test_token_counts_follow_the_cookbook():
    messages = training_messages(ITEMS[0])
    encoding = llama_tokens.encoding()
    values = sum(len(encoding.encode_ordinary(m[k])) for m in messages for k in ("role", "content"))
    assert ft.count_tokens(messages, encoding) == values + 3 * len(messages) + 3
    named = [{**messages[0], "name": "pricer"}] + messages[1:]
    name = len(encoding.encode_ordinary("pricer"))
    assert ft.count_tokens(named, encoding) == ft.count_tokens(messages, encoding) + name + 1


def test_estimate_counts_tokens_and_dollars(tmp_path):
    path = ft.write_jsonl(ITEMS[:20], tmp_path / "train.jsonl")
    report = ft.validate_jsonl(path)
    encoding, _ = ft.encoding_for(ft.BASE_MODEL)
    expected = sum(ft.count_tokens(training_messages(i), encoding) for i in ITEMS[:20])
    assert report.billed_tokens() == expected and report.billed_tokens(3) == 3 * expected
    assert report.dollars() == pytest.approx(expected * 3.00 / 1e6)
    assert ft.validate_jsonl(path, model="a-model-without-a-price").dollars() is None
    assert f"{expected:,} training tokens per epoch" in str(report)


BAD = {
    "invalid_json": '{"messages": [',
    "data_type": [1, 2],
    "missing_messages_list": {"prompt": "x"},
    "message_missing_key": {"messages": [{"role": "user"}]},
    "message_unrecognized_key": {"messages": [{"role": "user", "content": "x", "mood": "ok"},
                                              {"role": "assistant", "content": "y"}]},
    "unrecognized_role": {"messages": [{"role": "robot", "content": "x"}]},
    "missing_content": {"messages": [{"role": "user", "content": "  "},
                                     {"role": "assistant", "content": "y"}]},
    "example_missing_assistant_message": {"messages": [{"role": "user", "content": "x"}]},
    "bad_message_order": {"messages": [{"role": "assistant", "content": "y"},
                                       {"role": "user", "content": "x"}]},
    "bad_weight": {"messages": [{"role": "user", "content": "x", "weight": 0},
                                {"role": "assistant", "content": "y"}]},
    "invalid_price": {"messages": [{"role": "user", "content": "x"},
                                   {"role": "assistant", "content": "Price is $-5.00"}]},
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_malformed_example_is_refused_with_its_line(tmp_path, kind):
    path = tmp_path / "train.jsonl"
    good = [{"messages": training_messages(i)} for i in ITEMS[:12]]
    write_lines(path, good[:4] + [BAD[kind]] + good[4:])
    report = ft.validate_jsonl(path)
    assert not report.ok and report.errors == {kind: 1}
    assert report.first_problems == [f"  line 5: {kind}"]
    with pytest.raises(ValueError, match=f"refused: 1 {kind}"):
        ft.check(path)
    with pytest.raises(ValueError, match=kind):
        ft.upload(object(), path)  # refused before any call: the client is never touched


def test_a_price_that_is_not_one_is_never_written_or_sent(tmp_path):
    bad = item(3, 10.0)
    bad.price = float("nan")
    with pytest.raises(ValueError, match=r"fine-tuning file's items: the price of item 3 \("):
        ft.write_jsonl([*ITEMS[:3], bad], tmp_path / "train.jsonl")
    assert not (tmp_path / "train.jsonl").exists()
    nines = {"role": "assistant", "content": "Price is $" + "9" * 400}  # an infinite float
    assert ft.problem_in({"messages": [*training_messages(ITEMS[0])[:-1], nines]}) == \
        "invalid_price"


def test_system_then_alternating_turns_ending_with_the_assistant():
    ok = [{"role": r, "content": "x"} for r in ("system", "user", "assistant", "user", "assistant")]
    assert ft.problem_in({"messages": ok}) is None
    assert ft.problem_in({"messages": ok[1:]}) is None
    assert ft.problem_in({"messages": ok[:-1]}) == "bad_message_order"
    assert ft.problem_in({"messages": ok[:2] + ok[:1] + ok[2:]}) == "bad_message_order"


def test_too_long_and_too_few_examples_are_refused(tmp_path, monkeypatch):
    path = ft.write_jsonl(ITEMS[:5], tmp_path / "train.jsonl")
    assert ft.validate_jsonl(path).errors == {"too_few_examples": 1}
    assert ft.validate_jsonl(path, min_examples=1).ok
    monkeypatch.setitem(ft.TOKEN_LIMITS, ft.BASE_MODEL, 20)
    assert ft.validate_jsonl(path, min_examples=1).errors == {"too_many_tokens": 5}


def test_wandb_integration_only_with_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert ft.integrations() is None
    monkeypatch.setenv("WANDB_API_KEY", "key")
    assert ft.integrations() == [{"type": "wandb", "wandb": {"project": "gpt-pricer"}}]

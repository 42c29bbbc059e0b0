"""The course's chat, one round trip: Item -> chat -> answer -> price, and a training chat back
to its Item; the server and fine-tuning read and write exactly these."""

import re

import faults
import pytest

from chat import (
    answer,
    get_dollar_price,
    get_price,
    item_from_messages,
    messages_for,
    priced_item,
    training_messages,
)
from items import Item


def test_messages_are_the_courses():
    item = faults.make_items(1)[0]
    system, user, assistant = messages_for(item)
    assert system == {"role": "system", "content": "You estimate prices of items. "
                                                   "Reply only with the price, no explanation"}
    assert user["role"] == "user"
    assert user["content"] == "How much does this cost?\n\nWidget 0\nA sturdy widget, model 0, " \
                              "in steel."
    assert assistant == {"role": "assistant", "content": "Price is $"}


def test_the_server_gets_the_item_back():
    for item in faults.make_items(3):
        rebuilt = item_from_messages(messages_for(item))
        assert (rebuilt.title, rebuilt.test_prompt()) == (item.title, item.test_prompt())
    with pytest.raises(ValueError, match="no user message"):
        item_from_messages([{"role": "system", "content": "hi"}])


def course_get_price(s: str) -> float:
    """The course's rule, as it was written."""
    s = s.replace("$", "").replace(",", "")
    match = re.search(r"[-+]?\d*\.\d+|\d+", s)
    return float(match.group()) if match else 0


REPLIES = ["$1,299.99", "about 45 dollars", "Price is $99", "99.99", "Price is $1,234.",
           "$ 12.50 or so", "2 for $30", ".99", "-5", "Price is $1.5k", "12, 15", "3-pack: $24.99",
           "I cannot tell", ""]


@pytest.mark.parametrize("text", REPLIES)
def test_get_price_is_the_courses_rule(text):
    assert (get_price(text) or 0) == course_get_price(text)


@pytest.mark.parametrize("text, price", [
    ("$1,299.99", 1299.99), ("about 45 dollars", 45.0), ("Price is $99", 99.0),
    ("99.99", 99.99), ("Price is $1,234.", 1234.0), ("$ 12.50 or so", 12.5),
    ("2 for $30", 30.0), ("3-pack: $24.99", 24.99), ("12, 15", 12.0), (".99", 0.99),
    ("I cannot tell", None), ("", None), (None, None),
])
def test_get_dollar_price(text, price):
    assert get_dollar_price(text) == price


def test_the_rules_differ_where_a_count_comes_first():
    differ = [t for t in REPLIES if get_price(t) != get_dollar_price(t)]
    assert differ == ["2 for $30", "3-pack: $24.99"]


def test_messages_end_with_the_price_to_the_cent():
    messages = training_messages(Item.from_text("Kettle model 1\nBoils water.", 65.99))
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[1]["content"].startswith("How much does this cost?\n\nKettle model 1")
    assert "Price is" not in messages[1]["content"]
    assert messages[2]["content"] == "Price is $65.99"


def test_a_training_chat_round_trips_to_its_item():
    for item in faults.make_items(3):
        back = priced_item(training_messages(item))
        assert (back.text, back.price) == (item.text, round(item.price, 2))
        assert get_price(answer(item.price)) == round(item.price, 2)
    chat = training_messages(faults.make_items(1)[0])
    for bad in ("Price is $", "no idea", None, 12):
        with pytest.raises(ValueError, match="has no price"):
            priced_item([*chat[:-1], {"role": "assistant", "content": bad}])
    with pytest.raises(ValueError, match="has a price that is negative"):
        priced_item([*chat[:-1], {"role": "assistant", "content": "Price is $-5.00"}])


@pytest.mark.parametrize("read", [get_price, get_dollar_price])
@pytest.mark.parametrize("text", ["9" * 400, "Price is $" + "9" * 400 + ".00", "1" + "0" * 309])
def test_a_number_too_large_to_be_finite_is_no_price(read, text):
    assert read(text) is None


def test_a_training_chat_with_an_infinite_price_is_refused():
    chat = training_messages(faults.make_items(1)[0])
    with pytest.raises(ValueError, match="has no price"):
        priced_item([*chat[:-1], {"role": "assistant", "content": "Price is $" + "9" * 400}])

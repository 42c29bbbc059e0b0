"""Item's curation rules, prompts, price parsing and pickle compatibility."""

import copyreg
import io
import json
import os
import pickle
import random
import re
import string
import time

import pytest

import items
import llama_tokens
import testing
from items import MAX_TOKENS, MIN_TOKENS, Item, load_pickle, parse_price, save_pickle, truncate
from loaders import ItemLoader, item_from_record

WORDS = ("The sturdy kettle boils water quickly and switches itself off when done. "
         "It holds enough for eight cups of tea and pours without dripping. ").split()


def record(text: str = " ".join(WORDS * 8), title: str = "Kettle", **fields) -> dict:
    return {"title": title, "description": [text], "features": [], "details": "", **fields}


# --- price parsing -------------------------------------------------------------------------

@pytest.mark.parametrize("raw, price", [
    ("$1,299.99", 1299.99), ("12.99", 12.99), (" $5 ", 5.0), ("1299", 1299.0), (".99", 0.99),
    (12.5, 12.5), (7, 7.0), ("19.99 USD", 19.99), ("USD 12", 12.0), ("12.", 12.0),
    ("US $12.99", 12.99), ("12$", 12.0), ("12.99\u200b", 12.99), ("\ufeff$5", 5.0),
    ("0.299", 0.299), ("1,299.5", 1299.5),
])
def test_parse_price_reads_unambiguous_prices(raw, price):
    assert parse_price(raw) == (price, None)


@pytest.mark.parametrize("raw, why", [
    (None, "missing"), ("", "missing"), ("None", "missing"), ("nan", "missing"),
    (True, "missing"), ("12.99 - 19.99", "a range"), ("$12.99 to $19.99", "a range"),
    ("from 12.99", "qualified or not a price"),
    ("Currently unavailable", "qualified or not a price"),
    ("$12.99+", "malformed"), ("1.2.3", "malformed"), ("12,99", "malformed"), ("-5", "malformed"),
    ("0", "not positive"), (0.0, "not positive"), (float("nan"), "not positive"),
    ("1.299", "ambiguous"), ("12.999", "ambiguous"),
    pytest.param("9" * 400, "too large", id="400 digits"),
    pytest.param(10 ** 400, "too large", id="a 400-digit int"), (float("inf"), "too large"),
    ("12—19", "a range"),
])
def test_parse_price_rejects_with_a_reason(raw, why):
    assert parse_price(raw) == (None, why)


# --- scrubbing and thresholds --------------------------------------------------------------

def test_scrub_drops_part_numbers_and_json_punctuation():
    assert Item.scrub('{"Model": "WR57X10051", "Size": "12x4"}') == "Model Size 12x4"
    assert Item.scrub("fits ABCDEFGH and AB12345 and 1234567") == "fits ABCDEFGH and and"
    assert Item.scrub("a  [b]\n\n c ,d,,e") == "a b c,d,e"


def test_part_numbers_are_dropped_word_by_word_in_any_script():
    """The ASCII words' regex keeps what the plain rule keeps: words split at single spaces,
    those of 7+ characters with any character that str.isdigit calls a digit dropped."""
    def plain(text):
        return " ".join(w for w in text.split(" ")
                        if len(w) < 7 or not any(c.isdigit() for c in w))

    rng = random.Random(0)
    letters = list("ab  Z1é®٣²①") + ["\u00b9", "\U0001d7ce"]  # Arabic-Indic, superscripts...
    for _ in range(20_000):
        text = "".join(rng.choice(letters) for _ in range(rng.randint(0, 30)))
        assert items._drop_part_numbers(text) == plain(text), repr(text)
    assert items._drop_part_numbers("fits AB12345 ") == "fits "


def test_scrub_details_removes_boilerplate_keys():
    details = json.dumps({"Batteries Required?": "No", "Item Weight": "2 pounds",
                          "Date First Available": "May 1, 2020", "Best Sellers Rank": 5})
    scrubbed = Item(record(details=details), 10.0).scrub_details()
    assert "Weight" in scrubbed and "Available" in scrubbed and "Rank" in scrubbed
    for gone in ("Batteries", "Item", "Date First", "Best Sellers", ":"):
        assert gone not in scrubbed


def test_details_given_as_a_dict_drop_missing_keys():
    item = Item(record(details={"Brand": "Acme", "Color": None}), 10.0)
    assert json.loads(item.details) == {"Brand": "Acme"}


def test_content_must_exceed_300_characters():
    # The description plus its newline: 299 + 1 characters is too short, 300 + 1 is enough.
    assert Item(record("x" * 299), 10.0).excluded_because == "too short"
    assert Item(record("x" * 300), 10.0).excluded_because == "too few tokens"


def test_text_must_exceed_150_tokens():
    def text_tokens(n: int) -> int:
        return llama_tokens.count("Kettle\n" + " ".join(["apple"] * n))

    n = next(n for n in range(100, 200) if text_tokens(n) == MIN_TOKENS)
    at, above = (Item(record(" ".join(["apple"] * k)), 10.0) for k in (n, n + 1))
    assert not at.include and at.excluded_because == "too few tokens"
    assert above.include and above.prompt


def test_odd_field_shapes_are_tolerated():
    item = Item({"title": "Kettle", "description": " ".join(WORDS * 8), "features": None,
                 "details": None}, 10.0)
    assert item.include


def nested(depth: int) -> list:
    inner: list = []
    for _ in range(depth):
        inner = [inner]
    return inner


@pytest.mark.parametrize("scalar", [5, 7.5, True])
def test_a_scalar_text_field_is_one_line(scalar):
    item = Item(record(features=[" ".join(WORDS * 8)]) | {"description": scalar}, 10.0)
    assert item.include and item.text.startswith(f"Kettle\n{scalar} The sturdy")
    assert Item(record(features=scalar), 10.0).include


def test_details_nested_too_deeply_are_a_clear_error():
    with pytest.raises(ValueError, match="nested too deeply"):
        Item(record(details={"a": nested(5000)}), 10.0)


# --- text without spaces, and huge titles --------------------------------------------------

@pytest.mark.parametrize("text", ["中文的电水壶烧水很快，自动断电。" * 400,
                                  "電気ケトルはすぐにお湯を沸かします。" * 400],
                         ids=["Chinese", "Japanese"])
def test_unspaced_text_is_cut_between_characters_not_back_to_the_title(text):
    item = Item(record(text, title="电水壶"), 10.0)
    assert item.include and item.text.startswith("电水壶\n" + text[:20])
    assert MIN_TOKENS < llama_tokens.count(item.text) <= MAX_TOKENS


def test_a_cut_that_falls_under_the_minimum_is_rejected():
    # A few words, then a run of 300 tokens without a space: the cut goes back to the words.
    run = "".join(random.Random(0).choices(string.ascii_lowercase, k=900))
    item = Item(record("Boils water fast. " * 10 + run + " and more words" * 10), 10.0)
    assert not item.include and item.excluded_because == "too few tokens"


def test_a_huge_title_is_capped():
    item = Item(record(title="Kettle " * 2_000_000), 10.0)
    assert len(item.title) <= 500 and item.title.endswith("Kettle")
    assert item.include and llama_tokens.count(item.text) <= MAX_TOKENS


# --- truncation ----------------------------------------------------------------------------

def is_whole_word_end(item: Item, source: str) -> bool:
    return item.text.split()[-1].strip(",.") in {w.strip(",.") for w in source.split()}


def test_fixed_cut_never_ends_inside_a_word():
    # Long made-up words are several tokens each, so a token cut lands inside them.
    text = " ".join(["Superconductive Thermoregulating Electroluminescent"] * 30)
    fixed, course = Item(record(text), 10.0), Item(record(text), 10.0, course_compatible=True)
    assert fixed.include and course.include
    assert is_whole_word_end(fixed, text)
    assert not is_whole_word_end(course, text)  # the course's known bug, kept in its mode


def test_fixed_cut_keeps_every_whole_word_that_fits():
    item = Item(record(), 10.0)
    words = item.text.split()
    full = "Kettle\n" + " ".join(WORDS * 8)
    assert full.startswith(item.text) and full[len(item.text)] == " "
    assert llama_tokens.count(item.text) <= MAX_TOKENS
    # One more word would not fit.
    longer = full[: full.index(" ", len(item.text) + 1)]
    assert len(longer.split()) == len(words) + 1
    assert llama_tokens.count(longer) > MAX_TOKENS


def test_truncate_leaves_short_text_alone():
    text = "Short text."
    assert truncate(text, llama_tokens.encode(text), MAX_TOKENS) == text


def course_scrub(stuff: str) -> str:
    """The course's scrub, written as it was (a regex), to check the project's own."""
    stuff = re.sub(r'[:\[\]"{}【】\s]+', " ", stuff).strip()
    stuff = stuff.replace(" ,", ",").replace(",,,", ",").replace(",,", ",")
    words = stuff.split(" ")
    return " ".join(w for w in words if len(w) < 7 or not any(c.isdigit() for c in w))


def hub_decode(tokens: list[int]) -> str:
    """The hub tokenizer's decode under transformers 4.x: bytes, then clean_up_tokenization."""
    return (llama_tokens.decode(tokens).replace(" .", ".").replace(" ?", "?")
            .replace(" !", "!").replace(" ,", ",").replace(" ' ", "'").replace(" n't", "n't")
            .replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


def course_item(data: dict) -> tuple[str, int] | None:
    """The course's loader and Item, step for step: the reference for its compatible mode.

    (prompt, token_count) for a record the course kept, None for one it dropped.
    """
    try:
        price = float(data["price"]) if data["price"] else None
    except ValueError:
        return None
    if price is None or not 0.5 <= price <= 999.49:
        return None
    contents = "\n".join(data["description"])
    if contents:
        contents += "\n"
    features = "\n".join(data["features"])
    if features:
        contents += features + "\n"
    details = data["details"]
    if details:
        for remove in Item.REMOVALS:
            details = details.replace(remove, "")
        contents += details + "\n"
    if len(contents) <= 300:
        return None
    contents = contents[:1120]
    text = f"{course_scrub(data['title'])}\n{course_scrub(contents)}"
    tokens = llama_tokens.encode(text)
    if len(tokens) <= 150:
        return None
    text = hub_decode(tokens[:160])
    prompt = f"{Item.QUESTION}\n\n{text}\n\nPrice is ${round(price)}.00"
    return prompt, llama_tokens.count(prompt)


def compat_item(data: dict) -> tuple[str, int] | None:
    item, _ = item_from_record(data, "Appliances", course_compatible=True)
    return None if item is None else (item.prompt, item.token_count)


def test_course_compatible_mode_reproduces_the_course_item():
    compared = 0
    for raw in ItemLoader("Appliances").records():
        expected = course_item(raw)
        assert compat_item(raw) == expected
        compared += expected is not None
    assert compared > 500


@pytest.mark.parametrize("price", ["12.99", " 12.99 ", "1e2", "$12.99", "1,299", "None", "nan",
                                   "", None, "0.49", "999.5", "inf"])
def test_course_compatible_mode_reads_prices_as_the_course(price):
    assert compat_item(record(price=price)) == course_item(record(price=price))


def test_course_compatible_mode_cleans_up_short_texts_too():
    # Under 160 tokens the course did not cut, but its decode still cleaned up the spaces.
    def body(n: int) -> str:
        return "It 's light , isn't it ? Yes . " + " ".join(WORDS * 2 + ["apple"] * n)

    n = next(n for n in range(100) if llama_tokens.count(f"Kettle\n{body(n)}") == MAX_TOKENS - 2)
    data = record(body(n), price="24.99")
    prompt, token_count = compat_item(data)
    assert (prompt, token_count) == course_item(data)
    assert "\nIt's light, isn't it? Yes. The sturdy" in prompt
    assert token_count == llama_tokens.count(prompt)


# --- prompts -------------------------------------------------------------------------------

def test_prompts():
    item = Item(record(), 24.99, category="Appliances")
    assert item.prompt.startswith("How much does this cost to the nearest dollar?\n\nKettle\n")
    assert item.prompt.endswith("\n\nPrice is $25.00")
    assert item.test_prompt() == item.prompt[: -len("25.00")]
    assert item.test_prompt().endswith("Price is $")
    assert item.token_count == llama_tokens.count(item.prompt)
    assert item.category == "Appliances"
    assert repr(item) == "<Kettle = $24.99>"
    assert item.text.startswith("Kettle\nThe sturdy kettle")


def test_from_prompt_round_trip():
    item = Item(record(), 24.99, category="Appliances")
    back = Item.from_prompt(item.prompt, item.price, item.category, item.title)
    assert (back.prompt, back.price, back.title, back.category, back.token_count) == \
        (item.prompt, item.price, item.title, item.category, item.token_count)
    assert Item.from_prompt(item.prompt, 24.99).title == "Kettle"


# --- pickles -------------------------------------------------------------------------------

COURSE_FIELDS = ["title", "price", "category", "token_count", "details", "prompt", "include"]


def course_pickle(items: list[Item], protocol: int = pickle.DEFAULT_PROTOCOL,
                  **changes) -> bytes:
    """Items pickled as the course's train.pkl holds them: plain objects of class items.Item
    whose __dict__ is the course's attributes (a `prompt`, no `text`), with `changes`."""
    class CoursePickler(pickle.Pickler):
        def reducer_override(self, obj):
            if not isinstance(obj, Item):
                return NotImplemented
            state = {**{k: getattr(obj, k) for k in COURSE_FIELDS}, **changes}
            if protocol < 2:  # what object.__reduce_ex__ gives for these protocols
                return copyreg._reconstructor, (Item, object, None), state
            return copyreg.__newobj__, (Item,), state

    buffer = io.BytesIO()
    CoursePickler(buffer, protocol).dump(items)
    return buffer.getvalue()


def test_course_pickles_load_and_work_with_the_tester(tmp_path, capsys):
    made = [Item(record(), p, category="Appliances") for p in (10.0, 99.0, 450.0)]
    path = tmp_path / "test.pkl"
    path.write_bytes(course_pickle(made))
    loaded = load_pickle(path)
    for attribute in ("prompt", "token_count", "title", "price", "category", "details", "text"):
        assert [getattr(i, attribute) for i in loaded] == [getattr(i, attribute) for i in made]
    assert [i.test_prompt() for i in loaded] == [i.test_prompt() for i in made]
    scores = testing.Tester.test(lambda item: 100.0, loaded)
    assert scores.size == 3 and round(scores.average_error, 2) == round((90 + 1 + 350) / 3, 2)


def test_save_and_load_pickle(tmp_path):
    made = [Item(record(), 10.0)]
    save_pickle(made, tmp_path / "x.pkl")
    assert load_pickle(tmp_path / "x.pkl")[0].prompt == made[0].prompt


def test_saved_pickles_have_the_courses_shape(tmp_path):
    """The course's own code reads our train.pkl: an Item's state is its attributes."""
    made = Item(record(), 10.0, "Appliances")
    state = pickle.loads(pickle.dumps(made), fix_imports=False).__getstate__()
    assert sorted(state) == sorted(COURSE_FIELDS) and state["prompt"] == made.prompt


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_loads(tmp_path, protocol):
    made = [Item(record(), 10.0, "Appliances")]
    for data in (course_pickle(made, protocol), pickle.dumps(made, protocol)):
        (tmp_path / "x.pkl").write_bytes(data)
        assert load_pickle(tmp_path / "x.pkl")[0].prompt == made[0].prompt


def test_a_pickle_cannot_call_item(tmp_path):
    """REDUCE with Item as the callable would curate whatever record the pickle chose."""
    class Call:
        def __reduce__(self):
            return Item, ({"title": "x", "description": ["y" * 400]}, 10.0)

    (tmp_path / "x.pkl").write_bytes(pickle.dumps([Call()]))
    with pytest.raises(pickle.UnpicklingError, match="may not call Item"):
        load_pickle(tmp_path / "x.pkl")


@pytest.mark.parametrize("field, value", [
    ("title", ["x"]), ("prompt", 5), ("price", "12"), ("price", float("nan")),
    ("token_count", "many"), ("include", "yes"), ("extra", 1),
])
def test_an_items_state_is_type_checked(tmp_path, field, value):
    (tmp_path / "x.pkl").write_bytes(course_pickle([Item(record(), 10.0)], **{field: value}))
    with pytest.raises(pickle.UnpicklingError, match=str(tmp_path / "x.pkl")):
        load_pickle(tmp_path / "x.pkl")


def test_an_item_that_mentions_price_is_round_trips():
    item = Item(record("Our Price is $5 less than the shops'. " + " ".join(WORDS * 8)), 24.99)
    assert item.include and item.text.startswith("Kettle\nOur Price is $5 less")
    assert item.test_prompt() == f"{Item.QUESTION}\n\n{item.text}\n\nPrice is $"
    assert item.prompt == item.test_prompt() + "25.00"
    again = Item.from_prompt(item.prompt, item.price)
    assert again.text == item.text and again.test_prompt() == item.test_prompt()
    assert pickle.loads(pickle.dumps(item)).text == item.text
    assert item.token_count == llama_tokens.count(item.prompt)


class Exploit:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_safe_loader_refuses_code(tmp_path):
    Exploit.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([Exploit()]))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_pickle(path)
    assert not Exploit.marker.exists()


def test_safe_loader_refuses_anything_but_a_list_of_items(tmp_path):
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(pickle.UnpicklingError, match="list of Items"):
        load_pickle(path)




# --- hostile price strings: refused fast, never backtracked over --------------------------

@pytest.mark.parametrize("raw", [
    pytest.param("1" + " " * 30_000 + "2", id="spaces between digits"),
    pytest.param("1-" + " " * 30_000 + "x", id="spaces after a dash"),
    pytest.param("1 to " + " $" * 15_000, id="dollars after to"),
    pytest.param("9" * 30_000 + "x", id="digits then a letter"),
])
def test_a_long_price_string_is_refused_at_once(raw):
    start = time.perf_counter()
    assert parse_price(raw) == (None, "too long")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("pattern", ["_RANGE", "_CURRENCY", "_AMOUNT", "_AMBIGUOUS"])
def test_no_price_pattern_backtracks_over_spaces(pattern):
    """Each pattern, on 20,000 characters shaped to make a backtracking one quadratic,
    returns in linear time (these inputs would take seconds)."""
    compiled = getattr(items, pattern)
    for raw in ("1" + " " * 20_000 + "2", "1-" + " " * 20_000 + "x", "1" * 20_000 + "x",
                "us" + " " * 20_000 + "x", " $" * 10_000 + "x"):
        start = time.perf_counter()
        compiled.search(raw)
        compiled.sub("", raw)
        assert time.perf_counter() - start < 0.05, (pattern, raw[:5])


def item_pickle(**state) -> bytes:
    """A protocol-2 pickle of one Item with this state, however wrong."""
    item = Item.from_text("Kettle\nBoils.", 10.0)
    fields = {**item.__getstate__(), **state}
    return (b"\x80\x02]q\x00citems\nItem\nq\x01)\x81q\x02" + pickle.dumps(fields, 2)[2:-1]
            + b"ba.")  # [Item.__new__(), BUILD state, APPEND]


@pytest.mark.parametrize("data", [
    pytest.param(item_pickle(price=10 ** 400), id="a price too big for a float"),
    pytest.param(item_pickle(price=-5.0), id="a negative price"),
    pytest.param(item_pickle(price=0), id="a zero price"),
    pytest.param(item_pickle(token_count=-7), id="a negative token count"),
    pytest.param(item_pickle(include=True, prompt=None), id="included without a prompt"),
    pytest.param(b"\x80\x02]cbuiltins\nobject\n)\x81}X\x01\x00\x00\x00ab\x86ba.",
                 id="BUILD on an object"),
    pytest.param(b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"x.",
                 id="BINBYTES8 of a terabyte"),
    pytest.param(b"\x80\x02]" + b"(" * 100_000 + b".", id="100,000 marks"),
])
def test_a_bad_split_pickle_is_one_kind_of_error(tmp_path, data):
    path = tmp_path / "x.pkl"
    path.write_bytes(data)
    with pytest.raises(pickle.UnpicklingError, match="x.pkl"):
        load_pickle(path)


def test_a_valid_item_pickle_of_that_shape_loads(tmp_path):
    (tmp_path / "x.pkl").write_bytes(item_pickle())
    assert load_pickle(tmp_path / "x.pkl")[0].text == "Kettle\nBoils."


@pytest.mark.parametrize("title", [
    pytest.param("T" * 5_000, id="5,000 characters unspaced"),
    pytest.param("😀 " * 250, id="500 characters of emoji with spaces"),
    pytest.param("水壶 " * 167, id="500 characters of CJK with spaces"),
])
def test_a_title_that_fills_the_cut_is_no_item(title):
    """A title that leaves no room for any description is refused, as a text that cannot
    be cut at a word is: never a title-only Item."""
    item = Item(record(title=title), 10.0)
    assert not item.include and item.excluded_because == "too few tokens"
    assert item_from_record(record(title=title, price="10"), "Appliances") == \
        (None, "too few tokens")

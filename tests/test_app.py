"""The pricing page: clear words for bad input, and a real browser that prices a product.

The browser tier drives the system's Chromium (Debian's `chromium` package, which
scripts/test.sh installs when it can) with Playwright; without it, it skips and says why.
"""

import shutil
import socket

import pytest

import app
import baselines
import curation
import sentences
import settings
from ensemble import FittedEnsemble
from vectors import VectorStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def pricing(tmp_path_factory):
    train, test = curation.lite()
    train = train[:200]
    ensemble = FittedEnsemble([baselines.ConstantPricer(), baselines.TfidfRidgePricer()])
    store = VectorStore.build(train, tmp_path_factory.mktemp("vectors"), progress=False)
    return app.Pricing(ensemble.fit(train), store, test[:10])


@pytest.mark.parametrize("text, words", [
    ("", "Paste a product description first."),
    ("   \n ", "Paste a product description first."),
    ("x" * (1 << 20), "1,048,576 characters; a description is at most 20,000"),
    (bytes(range(256)).decode("latin-1") * 4, "binary data, not text"),
    ("\ufffd\ufffdPNG\ufffd" * 50, "binary data, not text"),
])
def test_bad_input_gets_a_clear_message(text, words, pricing):
    head, guesses, neighbours = app.answer(text, pricing)
    assert words in head and guesses == neighbours == ""


def test_a_description_gets_a_price_a_range_each_guess_and_five_neighbours(pricing):
    item = pricing.examples[0]
    head, guesses, neighbours = app.answer(item.text, pricing)
    price = pricing.ensemble.predict_many([item])[0]
    assert head.startswith(f"## ${price:,.2f}\n\n80% range: $")
    assert guesses.count("\n| ") == 2 and "| TF-IDF + Ridge | $" in guesses
    assert neighbours.count("\n| ") == 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(not CHROMIUM, reason="no Chromium here: apt-get install -y chromium")
def test_the_page_prices_a_pasted_description_in_a_real_browser(pricing):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    demo = app.page(pricing)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#go").click()  # nothing pasted yet
            expect(page.locator("#price")).to_contain_text("Paste a product description",
                                                           timeout=30_000)
            page.locator("#description textarea").fill(pricing.examples[1].text)
            page.locator("#go").click()
            expect(page.locator("#price")).to_contain_text("80% range", timeout=30_000)
            assert page.locator("#price h2").inner_text().startswith("$")
            expect(page.locator("#neighbours tbody tr")).to_have_count(5)
            expect(page.locator("#guesses tbody tr")).to_have_count(2)
            browser.close()
    finally:
        demo.close()


def test_pasted_descriptions_are_not_kept_in_the_embedding_cache(pricing, monkeypatch,
                                                                 tmp_path):
    cache = sentences.EmbeddingCache(tmp_path / "e.npz")
    monkeypatch.setattr(sentences, "_cache", cache)
    for litres in range(3):
        head, _, neighbours = app.answer(f"Kettle, {litres} litres, stainless steel", pricing)
        assert head.startswith("## $") and neighbours.count("\n| ") == 5
    assert not cache.file().exists() and not cache.vectors and len(cache.passing) == 3


def test_the_saved_ensemble_is_named_for_the_code_that_reads_it(tmp_path, monkeypatch):
    train = curation.lite()[0][:20]
    for path in settings.ROOT.glob("*.py"):
        shutil.copy(path, tmp_path)
    monkeypatch.setattr(settings, "ROOT", tmp_path)
    before = app.model_path(train).name
    (tmp_path / "app.py").write_text("# not a model's code\n")
    assert app.model_path(train).name == before
    (tmp_path / "ensemble.py").write_text((tmp_path / "ensemble.py").read_text() + "# edit\n")
    assert app.model_path(train).name != before  # a file that older code saved is not read
    assert app.model_path(train[:-1]).name != app.model_path(train).name

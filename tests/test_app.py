"""The pricing page: clear words for bad input, and a real browser that prices a product.

The browser tier drives the system's Chromium (Debian's `chromium` package, which
scripts/test.sh installs when it can) with Playwright; without it, it skips and says why.
"""

import shutil
import socket

import gradio
import httpx
import pytest
from markdown_it import MarkdownIt

import app
import baselines
import curation
import sentences
import settings
from ensemble import FittedEnsemble
from items import Item
from vectors import VectorStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A stored product whose title is markup: the page must show it as written.
HOSTILE_TITLE = "<img src=x onerror=alert(1)> **Kettle** [deal](http://e.x) ![](http://e.x/p)"
HOSTILE = Item.from_text(f"{HOSTILE_TITLE}\nA steel kettle with a glass window that boils 1.7 "
                         "litres of water fast and switches itself off.", 30.0, "Appliances")


@pytest.fixture(scope="module")
def pricing(tmp_path_factory):
    train, test = curation.lite()
    train = train[:200]
    ensemble = FittedEnsemble([baselines.ConstantPricer(), baselines.TfidfRidgePricer()])
    store = VectorStore.build([*train, HOSTILE], tmp_path_factory.mktemp("vectors"),
                              progress=False)
    return app.Pricing(ensemble.fit(train), store, test[:10])


@pytest.mark.parametrize("text, words", [
    ("", "Paste a product description first."),
    ("   \n ", "Paste a product description first."),
    ("x" * (1 << 20), "1,048,576 characters; a description is at most 20,000"),
    (bytes(range(256)).decode("latin-1") * 4, "binary data, not text"),
    ("\ufffd\ufffdPNG\ufffd" * 50, "binary data, not text"),
    ("Kettle, 1.7 litres \udc80 steel", "not valid Unicode: character 20 is half of a"),
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


def test_a_stored_title_shows_as_written_never_as_markup(pricing):
    _, _, neighbours = app.answer(HOSTILE.text.replace("fast", "quickly"), pricing)
    html = MarkdownIt("commonmark").enable("table").render(neighbours)
    assert html.count("<tr>") == 6 and HOSTILE_TITLE.replace("<", "&lt;") \
        .replace(">", "&gt;").replace('"', "&quot;") in html
    assert not any(tag in html for tag in ("<img", "<a ", "<strong", "<em"))


def test_anything_else_that_fails_is_named_on_the_page(pricing, monkeypatch):
    def broken(items):
        raise RuntimeError("the <b>store</b> is closed")

    monkeypatch.setattr(pricing.store, "similar", broken)
    head, guesses, neighbours = app.respond("Kettle, 1.7 litres, stainless steel", pricing)
    assert head.startswith("That description could not be priced (RuntimeError: the &lt;b&gt;")
    assert guesses == neighbours == ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_only_the_launch_call_can_open_a_public_link(pricing, monkeypatch):
    tunnels = []
    monkeypatch.setenv("GRADIO_SHARE", "True")
    monkeypatch.setattr(gradio.utils, "colab_check", lambda: True)
    monkeypatch.setattr(gradio.utils, "is_hosted_notebook", lambda: True)
    monkeypatch.setattr(gradio.networking, "setup_tunnel",
                        lambda *args, **kwargs: tunnels.append(kwargs) or "https://x.gradio.live")
    demo = app.launch(pricing, free_port(), prevent_thread_lock=True, quiet=True)
    try:
        assert demo.share is False and demo.share_url is None and tunnels == []
    finally:
        demo.close()
    with pytest.raises(TypeError, match="share must be True or False"):
        app.launch(pricing, free_port(), share="yes")


def test_a_request_body_over_the_cap_is_refused_unread(pricing):
    port = free_port()
    demo = app.launch(pricing, port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/gradio_api/queue/join"
    try:
        declared = httpx.post(url, content=b"x" * (app.MAX_BODY + 1))
        chunked = httpx.post(url, content=iter([b"x" * 65_536] * 17))  # no Content-Length
        small = httpx.post(url, content=iter([b'{"data": []}']))
        assert (declared.status_code, chunked.status_code) == (413, 413)
        assert "That request is 1,048,577 bytes; the page takes at most 1,048,576. A " \
               "description is at most 20,000 characters" in declared.json()["detail"]
        assert "That request is over 1,048,576 bytes" in chunked.json()["detail"]
        assert small.status_code == 422  # read whole and handed on to Gradio, which checks it
    finally:
        demo.close()


@pytest.mark.skipif(not CHROMIUM, reason="no Chromium here: apt-get install -y chromium")
def test_the_page_prices_a_pasted_description_in_a_real_browser(pricing):
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    demo = app.launch(pricing, port, prevent_thread_lock=True, quiet=True)
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
            # A stored product's title is shown as written.
            page.locator("#description textarea").fill(HOSTILE.text + " Brand new.")
            page.locator("#go").click()
            expect(page.locator("#neighbours")).to_contain_text(HOSTILE_TITLE, timeout=30_000)
            expect(page.locator("#neighbours img, #neighbours a, #neighbours strong")) \
                .to_have_count(0)
            # Text a browser can hold but not send as UTF-8, and a paste past the body cap.
            for value, words in (("'Kettle \\ud800 steel'", "not valid Unicode"),
                                 ("'x'.repeat(1100000)", "the page takes at most")):
                page.locator("#description textarea").evaluate(
                    f"box => {{ box.value = {value}; "
                    "box.dispatchEvent(new Event('input', {bubbles: true})); }")
                page.locator("#go").click()
                expect(page.get_by_text(words).first).to_be_visible(timeout=30_000)
            browser.close()
    finally:
        demo.close()


def test_pasted_descriptions_are_not_kept_in_the_embedding_cache(pricing, monkeypatch,
                                                                 tmp_path):
    cache = sentences.EmbeddingCache(tmp_path / "e")
    monkeypatch.setattr(sentences, "_cache", cache)
    for litres in range(3):
        head, _, neighbours = app.answer(f"Kettle, {litres} litres, stainless steel", pricing)
        assert head.startswith("## $") and neighbours.count("\n| ") == 5
    assert not cache.folder().exists() and len(cache.passing) == 3


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

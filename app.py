"""A web page that prices any product, as the course's week 8 ends: paste a description.

    python app.py                 # then open http://127.0.0.1:7860
    python app.py --share         # and a public link: anyone who has it can use the page

The page shows the ensemble's price with its 80% range, each model's guess, and the five most
similar training products with their prices. Its models are the CPU ones, so it answers
offline: a FittedEnsemble of the stack and MiniLM + SVR (`ensemble.cpu_members()`), with the
lite split's vector store for the neighbours. The first start trains them (a few minutes on 2
cores, with progress in the terminal) and saves the ensemble under data/models/; later
starts load it, until the models' code changes (see `model_path`).

The page is served on this machine only unless `launch(..., share=True)` (or `--share`) asks
for a public link: GRADIO_SHARE and hosted notebooks (Colab), which Gradio would otherwise
let open one, do not. What a visitor sends is bounded: a description of at most MAX_CHARS
characters of valid Unicode, a request of at most MAX_BODY bytes (refused unread beyond
that); what the page shows of stored products is escaped, never Markdown or HTML.

>>> problem("   ")
'Paste a product description first.'
"""

from __future__ import annotations

import argparse
import json
import logging
import string
from dataclasses import dataclass
from pathlib import Path

import curation
import settings
from ensemble import FittedEnsemble, cpu_members
from items import Item
from sentences import ready, transient
from vectors import VectorStore

MAX_CHARS = 20_000  # a long product page is a few thousand characters
# Bytes of one request: the page's JSON for MAX_CHARS characters is at most ~125 KB.
MAX_BODY = 1 << 20
PORT = 7860
# Every ASCII punctuation mark escaped, &, < and > as HTML entities: shown, never markup.
_LITERAL = {ord(c): "\\" + c for c in string.punctuation if c not in "&<>"} | {
    ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;"}

log = logging.getLogger(__name__)


@dataclass
class Pricing:
    """What the page asks: the ensemble, the store of training products, and test items."""

    ensemble: FittedEnsemble
    store: VectorStore
    examples: list[Item]


def problem(text: str | None) -> str | None:
    """Why `text` cannot be priced, in words for the page; None when it can.

    >>> problem("Kettle, 1.7 litres, stainless steel"), problem("\\x00\\x01PK\\x03")
    (None, 'That looks like binary data, not text: paste the description of a product.')
    >>> problem("Kettle \\ud800")[:60]
    'That text is not valid Unicode: character 8 is half of a cha'
    """
    if not text or not text.strip():
        return "Paste a product description first."
    if len(text) > MAX_CHARS:
        return (f"That is {len(text):,} characters; a description is at most {MAX_CHARS:,}: "
                "paste the title and the main details.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return (f"That text is not valid Unicode: character {error.start + 1:,} is half of a "
                "character (a lone UTF-16 surrogate, which some copies leave behind): copy the "
                "description again, or delete that character.")
    control = sum(ch < " " and ch not in "\t\n\r" or ch == "\ufffd" for ch in text)
    if control > len(text) // 100:
        return "That looks like binary data, not text: paste the description of a product."
    return None


def answer(text: str | None, pricing: Pricing) -> tuple[str, str, str]:
    """(price, each model's guess, the five neighbours), as Markdown for the page; for text
    that cannot be priced, why, and nothing else."""
    why = problem(text)
    if why is not None:
        return why, "", ""
    item = Item.from_text(text.strip(), 0.0)
    model = pricing.ensemble
    with transient():  # a pasted description is encoded, not kept in the embedding cache
        price = model.predict_many([item])[0]
        low, high = model.predict_interval([item], 0.8)
        members = [(member.name, member.predict_many([item])[0]) for member in model.members]
        near = pricing.store.similar([item])[0]
    head = f"## ${price:,.2f}\n\n80% range: ${low[0]:,.2f} to ${high[0]:,.2f}"
    guesses = "| model | guess |\n|---|---|\n" + "\n".join(
        f"| {name} | ${guess:,.2f} |" for name, guess in members)
    neighbours = "| similarity | price | product |\n|---|---|---|\n" + "\n".join(
        f"| {n.similarity:.2f} | ${n.price:,.2f} | {_cell(n.text)} |" for n in near)
    return head, guesses, neighbours


def _cell(text: str) -> str:
    """A product's title line, at most 90 characters on one line, as a Markdown table cell
    shows it: literally (`literal`)."""
    return literal(" ".join(text.split("\n", 1)[0].split())[:90])


def literal(text: str) -> str:
    """`text` escaped for Markdown, so that it shows as written: no link, image, emphasis,
    table cell break or HTML.

    >>> print(literal("<img src=x> [Kettle](http://x.io) *1|2*"))
    &lt;img src\\=x&gt; \\[Kettle\\]\\(http\\:\\/\\/x\\.io\\) \\*1\\|2\\*
    """
    return text.translate(_LITERAL)


def page(pricing: Pricing):
    """The Gradio page over `pricing`; serve it with `launch`, which bounds what it exposes."""
    import gradio as gr

    titles = {item.title[:80]: item for item in pricing.examples}
    with gr.Blocks(title="Product Pricer", analytics_enabled=False) as demo:
        gr.Markdown("# Product Pricer\nPaste a product's description, or pick a test product.")
        pick = gr.Dropdown(list(titles), value=None, label="A test product", elem_id="pick")
        text = gr.Textbox(lines=8, label="Description", elem_id="description")
        go = gr.Button("Price it", variant="primary", elem_id="go")
        price = gr.Markdown(elem_id="price")
        with gr.Row():
            guesses = gr.Markdown(elem_id="guesses")
            neighbours = gr.Markdown(elem_id="neighbours")
        pick.change(lambda title: titles[title].text if title in titles else "", pick, text)
        go.click(lambda t: respond(t, pricing), text, [price, guesses, neighbours])
        text.submit(lambda t: respond(t, pricing), text, [price, guesses, neighbours])
    return demo


def respond(text: str | None, pricing: Pricing) -> tuple[str, str, str]:
    """`answer`, and for whatever else goes wrong, words on the page (not Gradio's bare
    "Error") and the traceback in the terminal."""
    try:
        return answer(text, pricing)
    except Exception as error:
        log.exception("pricing a description failed")
        return (f"That description could not be priced ({type(error).__name__}: "
                f"{literal(str(error)[:200])}); the terminal shows where.", "", "")


def launch(pricing: Pricing, port: int = PORT, share: bool = False, **options):
    """Serve the page at http://127.0.0.1:`port`, on this machine only; `share=True` also
    opens a public Gradio link that anyone who has it can use. Only this argument opens one:
    it goes to Gradio as given, so neither GRADIO_SHARE nor a hosted notebook (Colab) can.
    `options` go to Gradio's `launch` (e.g. prevent_thread_lock); returns the running page.
    """
    if not isinstance(share, bool):
        raise TypeError(f"share must be True or False, not {share!r}")
    from starlette.middleware import Middleware

    demo = page(pricing)
    demo.launch(server_name="127.0.0.1", server_port=port, share=share,
                app_kwargs={"middleware": [Middleware(BodyLimit, limit=MAX_BODY)]}, **options)
    return demo


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413 and words that
    the page shows, before it is read (by its Content-Length) or once it passes the limit
    (a body sent in chunks, read here before the app sees it)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if int(length) > self.limit:
                return await self.refuse(send, f"{int(length):,}")
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body, more = body + message.get("body", b""), message.get("more_body", False)
            if len(body) > self.limit:
                return await self.refuse(send, f"over {self.limit:,}")
        first = [{"type": "http.request", "body": body, "more_body": False}]

        async def replay():
            return first.pop() if first else await receive()

        await self.app(scope, replay, send)

    async def refuse(self, send, size: str) -> None:
        words = (f"That request is {size} bytes; the page takes at most {self.limit:,}. A "
                 f"description is at most {MAX_CHARS:,} characters: paste the title and the "
                 "main details.")
        body = json.dumps({"detail": words, "error": words}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def model_path(train: list[Item]) -> Path:
    """Where the page's ensemble for `train` is saved: named for the training items, for the
    embedding mode, and for the code of every project module that a model file may name, and
    of the loader, so that after an edit of how a model predicts the page trains afresh rather
    than load a file the new code misreads."""
    from files import digest
    from pickles import ALLOWED
    from vectors import items_digest

    sources = {settings.ROOT / f"{module}.py" for module, _ in ALLOWED}
    loader = {settings.ROOT / "pricer.py", settings.ROOT / "pickles.py"}
    sources = sorted(path for path in sources | loader if path.exists())
    code = digest(*sources)
    name = f"app-ensemble-{items_digest(train)}-{settings.embeddings()}-{code}.pkl"
    return settings.data_dir() / "models" / name


def load_or_train() -> Pricing:
    """The lite split's models: loaded when saved before, else trained and saved."""
    train, test = curation.lite()
    path = model_path(train)
    if path.exists():
        ensemble = FittedEnsemble.load(path)
    else:
        print(f"First start: training the stack and MiniLM + SVR on {len(train):,} products "
              "(a few minutes on 2 cores)...", flush=True)
        ensemble = FittedEnsemble(cpu_members()).fit(train)
        ensemble.save(path)
        print(f"Saved to {path}", flush=True)
    ready()  # the encoder loaded now, not when the first description is pasted
    return Pricing(ensemble, VectorStore.build(train), test[:50])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--share", action="store_true",
                        help="also open a public Gradio link: anyone who has it can use the page")
    args = parser.parse_args(argv)
    launch(load_or_train(), args.port, share=args.share)


if __name__ == "__main__":
    main()

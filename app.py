"""A web page that prices any product, as the course's week 8 ends: paste a description.

    python app.py                 # then open http://127.0.0.1:7860

The page shows the ensemble's price with its 80% range, each model's guess, and the five most
similar training products with their prices. Its models are the CPU ones, so it answers
offline: a FittedEnsemble of the stack and MiniLM + SVR (`ensemble.cpu_members()`), with the
lite split's vector store for the neighbours. The first start trains them (a few minutes on 2
cores, with progress in the terminal) and saves the ensemble under data/models/; later
starts load it, until the models' code changes (see `model_path`).

>>> problem("   ")
'Paste a product description first.'
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import curation
import settings
from ensemble import FittedEnsemble, cpu_members
from items import Item
from sentences import sentence_encoder, transient
from vectors import VectorStore

MAX_CHARS = 20_000  # a long product page is a few thousand characters
PORT = 7860


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
    """
    if not text or not text.strip():
        return "Paste a product description first."
    if len(text) > MAX_CHARS:
        return (f"That is {len(text):,} characters; a description is at most {MAX_CHARS:,}: "
                "paste the title and the main details.")
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
    """A product's title line, safe inside a Markdown table cell."""
    return text.split("\n", 1)[0][:90].replace("|", "/")


def page(pricing: Pricing):
    """The Gradio page over `pricing` (launch it with `.launch(...)`)."""
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
        go.click(lambda t: answer(t, pricing), text, [price, guesses, neighbours])
        text.submit(lambda t: answer(t, pricing), text, [price, guesses, neighbours])
    return demo


def model_path(train: list[Item]) -> Path:
    """Where the page's ensemble for `train` is saved: named for the training items and for
    the code of every project module that a model file may name, and of the loader, so that
    after an edit of how a model predicts the page trains afresh rather than load a file the
    new code misreads."""
    from files import digest
    from pickles import ALLOWED
    from vectors import items_digest

    sources = {settings.ROOT / f"{module}.py" for module, _ in ALLOWED}
    loader = {settings.ROOT / "pricer.py", settings.ROOT / "pickles.py"}
    sources = sorted(path for path in sources | loader if path.exists())
    code = digest(*sources)
    return settings.data_dir() / "models" / f"app-ensemble-{items_digest(train)}-{code}.pkl"


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
    sentence_encoder()  # loaded now, not when the first description is pasted
    return Pricing(ensemble, VectorStore.build(train), test[:50])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args(argv)
    page(load_or_train()).launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()

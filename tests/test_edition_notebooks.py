"""The notebooks' 2025 path runs: each notebook executed under PRICER_EDITION=2025 on the
bundled sample, its outputs not compared (the committed ones are the 2024 edition's).

Notebooks 01 to 03 curate, and every cell depends on the edition: they run whole. Notebooks
04 to 07 only read their split by the edition and then run the same code either way (notebook
04 also trains the 2025 edition's deep network): their cells up to the split's, and every
later cell that asks for the edition, run.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
EDITION = "settings.edition()"


def edition_cells(notebook: nbformat.NotebookNode) -> list:
    """The code cells to run: all of them in a notebook that keeps the edition in EDITION;
    else those up to the first that asks for it, and each later one that does."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    if any("EDITION = settings.edition()" in cell.source for cell in code):
        return code
    first = next(n for n, cell in enumerate(code) if EDITION in cell.source)
    return code[:first + 1] + [cell for cell in code[first + 1:] if EDITION in cell.source]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_the_notebook_runs_in_the_2025_edition(path, monkeypatch):
    monkeypatch.setenv("PRICER_EDITION", "2025")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells = edition_cells(notebook)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # a failing cell raises CellExecutionError, naming it
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors, json.dumps(errors)[:2000]


def test_the_later_notebooks_branch_on_the_edition():
    """Each notebook reads its split by the edition (else this check would run nothing)."""
    for path in NOTEBOOKS[3:]:
        cells = edition_cells(nbformat.read(path, as_version=4))
        assert any("curation2025" in cell.source for cell in cells), path.name

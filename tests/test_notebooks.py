"""The committed notebooks are lessons: small, with outputs, and no execution metadata."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_there_are_seven_notebooks():
    assert [n.stem[:2] for n in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda n: n.stem)
def test_a_notebook_is_small_and_keeps_its_outputs(notebook):
    assert notebook.stat().st_size < 300_000
    cells = json.loads(notebook.read_text())["cells"]
    assert any(cell.get("outputs") for cell in cells if cell["cell_type"] == "code")


def test_no_execution_metadata_is_committed():
    """What scripts/run.sh --refresh leaves: stripping them would change nothing."""
    check = subprocess.run(["bash", str(ROOT / "scripts" / "strip.sh"), "--verify",
                            *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

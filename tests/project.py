"""The project's modules, as pyproject.toml lists them for installation."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def modules() -> list[str]:
    """The names of the project's modules, e.g. "items"."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["py-modules"]

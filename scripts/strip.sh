#!/usr/bin/env bash
# Strip executed notebooks of what changes from run to run or machine to machine (timings,
# ids, the Python version in language_info), keeping outputs and execution counts: nbval
# compares the outputs, and takes a cell without a count for one that never ran.
#   bash scripts/strip.sh notebooks/*.ipynb            strip in place
#   bash scripts/strip.sh --verify notebooks/*.ipynb   fail if anything would be stripped
set -euo pipefail
python -m nbstripout --keep-output --keep-count --extra-keys "metadata.language_info" "$@"

#!/usr/bin/env bash
# Create .venv (torch==2.13.0 first, so no CUDA build is pulled), install the project, and make the
# data sets available under data/: linked from ../shared/data when it exists, else downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e ".[test]"
mkdir -p data
for dataset in atis snips; do
  if [ -e "data/$dataset" ]; then continue; fi
  if [ -d "../shared/data/$dataset" ]; then
    ln -s "../../shared/data/$dataset" "data/$dataset"
  else
    .venv/bin/python -m training download "$dataset" --dest data
  fi
done

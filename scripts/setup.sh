#!/usr/bin/env bash
# Creates .venv and installs keras_vit with every backend and the test tools.
# torch is pinned to 2.13.0: the CPU build; an unpinned torch pulls the CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import keras_vit, torch, jax, tensorflow, transformers, ai_edge_litert, matplotlib, xdist, huggingface_hub, PIL, keras_hub" >/dev/null 2>&1; then
    .venv/bin/pip install -q --disable-pip-version-check "torch==2.13.0"
    .venv/bin/pip install -q --disable-pip-version-check -e ".[all]"
fi

#!/usr/bin/env bash
# Sets up .venv (once) and runs the main job: train a ViT on the digits that ship with the
# package, evaluate it on the test split, save it and export it under saved_models/.
# Extra arguments go to `keras-vit train` (see `keras-vit train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/keras-vit train "$@"

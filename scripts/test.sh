#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite on the TensorFlow, JAX and
# PyTorch backends, one pytest run per backend; fails if any backend fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
status=0
for backend in tensorflow jax torch; do
    echo "=== pytest on the $backend backend"
    KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider --durations=10 "$@" || status=1
done
exit $status

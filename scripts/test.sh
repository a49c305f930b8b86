#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite on the TensorFlow, JAX and
# PyTorch backends, one pytest run per backend; fails if any backend fails.
# Each run uses two pytest-xdist workers, one test file per worker at a time (--dist loadfile keeps a
# file's shared models in one process): on two cores much of a small test is single-threaded Python.
# KERAS_VIT_TEST_WORKERS=0 runs in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
status=0
for backend in tensorflow jax torch; do
    echo "=== pytest on the $backend backend"
    KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 \
        -n "${KERAS_VIT_TEST_WORKERS:-2}" --dist loadfile "$@" || status=1
done
exit $status

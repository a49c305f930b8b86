#!/usr/bin/env bash
# Sets up .venv (once) and runs the whole test suite on the TensorFlow, JAX and
# PyTorch backends, one pytest run per backend; fails if any backend fails.
# Each run uses two pytest-xdist workers, one test file per worker at a time (--dist loadfile keeps a
# file's shared models in one process): on two cores much of a small test is single-threaded Python.
# KERAS_VIT_TEST_WORKERS=0 runs in one process.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# The tests' models are tiny, so XLA's compile time, not run time, dominates the JAX run (and TensorFlow's
# jit_compile tests): LLVM at -O0 compiles faster (JAX layer harness 485 s -> 362 s, ViT and distillation
# example tests 356 s -> 252 s, measured on a loaded machine). Same numerics rules; users' runs unaffected.
export XLA_FLAGS="--xla_backend_optimization_level=0 ${XLA_FLAGS:-}"
status=0
for backend in tensorflow jax torch; do
    echo "=== pytest on the $backend backend"
    KERAS_BACKEND=$backend .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 \
        -n "${KERAS_VIT_TEST_WORKERS:-2}" --dist loadfile "$@" || status=1
done
exit $status

"""The MAE digits example runs end to end with tiny settings (its full run is in its docstring)."""

import importlib.util
import os

import pytest

from conftest import BACKEND

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "mae_digits.py")


@pytest.mark.skipif(BACKEND == "jax", reason="JAX compiles the example's five models one by one: about 3 min on "
                    "2 cores for a tiny run; the example's code is backend-neutral and runs here under TF and PyTorch")
def test_example_runs_and_prints_its_table(capsys):
    spec = importlib.util.spec_from_file_location("mae_digits", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--seeds", "0", "--pretrain-epochs", "1", "--finetune-steps", "2", "--batch-size", "256"])
    printed = capsys.readouterr().out
    assert set(results[0]) == {"scratch", "MAE + fine-tuning", "MAE + linear probe", "MAE + VPT-deep"}
    assert all(0.0 <= accuracy <= 1.0 for accuracy, _ in results[0].values())
    assert results[0]["MAE + linear probe"][1] == 64 * 10 + 10  # the head alone
    assert "fine-tuning - scratch" in printed

"""examples/distill_deit_digits.py runs end to end (a tiny setting) on the current backend, so it never rots.

The comparison it exists for (distillation against none, several seeds, minutes
each) is an example run, not a test: its figures are in the example's docstring.
"""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "distill_deit_digits.py")


def load_example():
    spec = importlib.util.spec_from_file_location("distill_deit_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_trains_the_teacher_and_both_students(capsys):
    example = load_example()
    results = example.main([
        "--seeds", "0", "--train-size", "64", "--epochs", "1", "--teacher-epochs", "1",
        "--batch-size", "32", "--modes", "none", "hard",
    ])
    assert sorted(results) == ["hard", "none", "teacher"]
    for mode, accuracies in results.items():
        assert len(accuracies) == 1 and 0.0 <= accuracies[0] <= 1.0, (mode, accuracies)
    printed = capsys.readouterr().out
    assert "teacher trains on 64 images, students on 64" in printed
    assert "hard distillation vs none" in printed
    assert "distillation head" in printed  # the distilled student reports each head

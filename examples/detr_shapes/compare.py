"""Plain DETR vs Conditional DETR vs Conditional DETR + denoising on the synthetic shapes: same data and budget.

    KERAS_BACKEND=jax python examples/detr_shapes/compare.py --output-dir detr_compare      # 30 epochs each
    KERAS_BACKEND=jax python examples/detr_shapes/compare.py --output-dir /tmp/c --epochs 2 --train-images 256
    KERAS_BACKEND=jax python examples/detr_shapes/compare.py --output-dir c --epochs 10 --learning-rate 1e-3 \
        --backbone-learning-rate 1e-4 --lr-drop-epoch 8       # 10x lower rates for the last 2 epochs

Runs `train.py` once per detector (one process each, the same seed, data, backbone, transformer sizes,
queries, optimizer and epochs; every option compare.py does not know, such as `--learning-rate`,
`--lr-drop-epoch` or `--seed`, is passed to all three), evaluating held-out COCO mAP after every epoch, then writes
`comparison.md` (mAP@0.5 and mAP per epoch, training minutes) and `comparison.png` (the curves) into
the output directory. A detector whose `<name>.json` is already there is not trained again, so a
killed comparison continues where it stopped (`--resume` is passed to the run that was cut; that
run's per-epoch mAP then starts at the epoch it resumed from).
"""

import argparse
import json
import os
import subprocess
import sys

from keras_vit.atomic_files import atomic_open, atomic_path

RUNS = {
    "detr": ("DETR", ["--model", "detr"]),
    "conditional_detr": ("Conditional DETR", ["--model", "conditional-detr"]),
    "conditional_detr_dn": ("Conditional DETR + denoising", ["--model", "conditional-detr", "--denoising"]),
}


def train_missing_runs(args, passthrough):
    train_script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
    for name, (title, flags) in RUNS.items():
        output = os.path.join(args.output_dir, name + ".json")
        if os.path.exists(output):
            print(f"{title}: {output} exists, not trained again")
            continue
        resume = ["--resume"] if os.path.isdir(os.path.join(args.output_dir, name + ".backup")) else []
        command = [sys.executable, train_script, *flags, "--epochs", str(args.epochs), "--eval-every", "1",
                   "--output", output, *resume, *passthrough]  # fmt: skip
        print(f"{title}: {' '.join(command)}", flush=True)
        subprocess.run(command, check=True)


def first_epoch_reaching(history, key, target):
    return next((entry["epoch"] for entry in history if entry[key] >= target), None)


def describe_recipe(args):
    """One line for the table: the optimizer's rates and schedule, epochs and seed of a run (None without args)."""
    if not args:
        return None
    drop, warmup, cosine = args.get("lr_drop_epoch"), args.get("warmup_epochs", 0), args.get("cosine", False)
    steps = [f"{warmup:g}-epoch linear warmup"] if warmup else []
    steps += ["cosine decay"] if cosine else []
    steps += [f"x{args.get('lr_drop_factor', 0.1):g} after epoch {drop}"] if drop else []
    schedule = ", ".join(steps) or "constant"
    return (f"learning rate {args['learning_rate']:g} (backbone {args['backbone_learning_rate']:g}), {schedule}, "
            f"{args['epochs']} epochs, seed {args['seed']}")


def write_table_and_plot(output_dir, target_map50, target_source):
    results = {}
    for name, (title, _) in RUNS.items():
        with open(os.path.join(output_dir, name + ".json")) as f:
            results[title] = json.load(f)
    lines = []
    lines.append(f"Target: held-out mAP@0.5 {target_map50:.3f} ({target_source}).\n")
    recipes = {describe_recipe(result.get("args")) for result in results.values()}
    if recipes != {None}:
        lines.append("Recipe: " + " | ".join(sorted(map(str, recipes)))
                     + (" (the same for every detector)." if len(recipes) == 1 else " (NOT the same for every detector).")
                     + "\n")  # fmt: skip
    lines += ["| detector | epochs | final mAP@0.5 | final mAP | first epoch at target | training minutes |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for title, result in results.items():
        reached = first_epoch_reaching(result["history"], "mAP50", target_map50)
        lines.append(f"| {title} | {len(result['epochs'])} | {result['metrics']['mAP50']:.3f} | "
                     f"{result['metrics']['mAP']:.3f} | {reached or 'not reached'} | "
                     f"{result['train_minutes']:.1f} |")  # fmt: skip
    lines += ["", "mAP@0.5 / mAP after each epoch:", "",
              "| epoch | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]  # fmt: skip
    by_epoch = {title: {e["epoch"]: e for e in r["history"]} for title, r in results.items()}
    for epoch in sorted(set().union(*by_epoch.values())):
        cells = [f"{h[epoch]['mAP50']:.3f} / {h[epoch]['mAP']:.3f}" if epoch in h else "" for h in by_epoch.values()]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    with atomic_open(os.path.join(output_dir, "comparison.md"), "w") as f:
        f.write(table)

    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for title, result in results.items():
        epochs = [e["epoch"] for e in result["history"]]
        left.plot(epochs, [e["mAP50"] for e in result["history"]], marker=".", label=title)
        right.plot(epochs, [e["mAP"] for e in result["history"]], marker=".", label=title)
    left.axhline(target_map50, color="grey", linestyle="--", label="target")
    for axis, label in ((left, "held-out mAP@0.5"), (right, "held-out mAP@[.5:.95]")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    left.legend()
    figure.suptitle("Synthetic shapes, same data, seed and budget")
    figure.tight_layout()
    path = os.path.join(output_dir, "comparison.png")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)
    print(f"wrote {os.path.join(output_dir, 'comparison.md')} and {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target-map50", type=float, default=None,
                        help="the mAP@0.5 to reach (default: plain DETR's final mAP@0.5 of this comparison)")
    parser.add_argument("--target-source", default="given with --target-map50",
                        help="where --target-map50 comes from, for the table")
    args, passthrough = parser.parse_known_args()
    os.makedirs(args.output_dir, exist_ok=True)
    train_missing_runs(args, passthrough)
    target, source = args.target_map50, args.target_source
    if target is None:
        with open(os.path.join(args.output_dir, "detr.json")) as f:
            target = json.load(f)["metrics"]["mAP50"]
        source = f"plain DETR's final mAP@0.5 after {args.epochs} epochs"
    write_table_and_plot(args.output_dir, target, source)


if __name__ == "__main__":
    main()

"""Two checkouts of keras_vit (and timm) side by side, alternating, each in its own worker process.

    KERAS_BACKEND=torch python benchmarks/compare_checkouts.py --before /tmp/main_copy [--mode infer|train]
        [--rounds 6] [--steps 3] [--model vit_b16] [--batch-size 8] [--timm-path /tmp/timmpkg]

`--before` is a second checkout (e.g. `git archive main | tar -x -C /tmp/main_copy`); the "after" is the
checkout this script lives in. Each worker is `benchmarks/throughput.py --worker` of its own checkout
(so it imports that checkout's keras_vit); round 0 warms them all, then each round times `--steps` calls
of each worker, in alternating order. Prints img/s per round, the medians, and after/before and
after/timm ratios, per round and of the medians: on a shared machine only these same-run ratios count.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from throughput import MESSAGE_PREFIX  # the workers' line protocol, defined once (stdlib-only import)

HERE = os.path.dirname(os.path.abspath(__file__))


def start_worker(checkout, impl, args):
    script = os.path.join(checkout, "benchmarks", "throughput.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=checkout)
    command = [sys.executable, script, "--worker", impl, "--model", args.model, "--size", "224", "224",
               "--batch", str(args.batch_size), "--timm-path", args.timm_path, "--threads", "0"]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env, cwd=tempfile.gettempdir())


def receive(process):
    for line in process.stdout:
        if line.startswith(MESSAGE_PREFIX):
            return json.loads(line[len(MESSAGE_PREFIX):])
    raise RuntimeError("a worker exited")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the other checkout (its root folder)")
    parser.add_argument("--mode", choices=("infer", "train"), default="infer")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model", default="vit_b16")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--timm-path", default="/tmp/timmpkg")
    args = parser.parse_args(argv)
    checkouts = {"before": os.path.abspath(args.before), "after": os.path.dirname(HERE)}
    workers = {"before": start_worker(checkouts["before"], "keras_vit", args),
               "after": start_worker(checkouts["after"], "keras_vit", args),
               "timm": start_worker(checkouts["after"], "timm", args)}
    for name, process in workers.items():
        status = receive(process)
        if status.get("status") != "ready":
            raise RuntimeError(f"{name}: {status}")
    print(f"{args.model} batch {args.batch_size} {args.mode}: before = {checkouts['before']}, "
          f"after = {checkouts['after']}, load {os.getloadavg()[0]:.1f}", flush=True)
    rates = {name: [] for name in workers}
    names = list(workers)
    for round_index in range(args.rounds + 1):
        for name in names if round_index % 2 == 0 else names[::-1]:
            workers[name].stdin.write(f"{args.mode} {args.steps}\n")
            workers[name].stdin.flush()
            result = receive(workers[name])
            if round_index:  # round 0 warms every worker
                rates[name].append(args.batch_size * args.steps / result["seconds"])
        if round_index:
            print(f"round {round_index} load {os.getloadavg()[0]:.1f}: "
                  + ", ".join(f"{name} {rates[name][-1]:.2f} img/s" for name in names), flush=True)
    for process in workers.values():
        process.stdin.write("quit\n")
        process.stdin.flush()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print("median img/s: " + ", ".join(f"{name} {medians[name]:.2f}" for name in names))
    print(f"RATIO {args.mode} after/before = {medians['after'] / medians['before']:.3f}x; "
          f"before/timm = {medians['before'] / medians['timm']:.3f}x; "
          f"after/timm = {medians['after'] / medians['timm']:.3f}x")
    print("per-round after/before: " + ", ".join(f"{a / b:.3f}" for a, b in zip(rates["after"], rates["before"])))
    print("per-round after/timm: " + ", ".join(f"{a / t:.3f}" for a, t in zip(rates["after"], rates["timm"])))


if __name__ == "__main__":
    main()

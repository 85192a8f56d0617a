"""Training speed: the workshop's tutorial script vs `train/train.py`, side by side, one run.

    python train/benchmark_training.py [--repeats 3] [--data-dir DIR] [--output report.json]

Both train the same network (Conv 32@3x3 → MaxPool → Dense 128 → Dense 10, batch 128,
5 epochs) on the same MNIST. Each run is a fresh process, timed end to end (start-up, data
loading, training, evaluation), so the comparison is what a user waits for.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgedigits import cli
from edgedigits.data.mnist import load_mnist
from edgedigits.files import write_json
from edgedigits.report import markdown_table

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "smart-video-workshop" / "dl-model-training" / "Deep_Learning_Tutorial.py"
TRAIN = ROOT / "train" / "train.py"


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def run_tutorial(env: dict) -> tuple[float, float]:
    seconds, stdout = timed([sys.executable, str(TUTORIAL)], TUTORIAL.parent, env)
    accuracy = float(re.search(r"Accuracy = ([\d.]+)%", stdout).group(1)) / 100
    return seconds, accuracy


def run_pipeline(env: dict, output: Path) -> tuple[float, float]:
    seconds, _ = timed([sys.executable, str(TRAIN), "--output", str(output)], ROOT, env)
    accuracy = json.loads((output / "metrics.json").read_text())["test_accuracy"]
    return seconds, accuracy


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=cli.positive_int, default=1,
                        help="runs of each (alternating); median reported")
    cli.add_data_dir_argument(parser)
    cli.add_output_argument(parser, "also write the results as JSON to this file")
    cli.add_json_argument(parser, "print the results as JSON instead of the table")
    cli.add_verbosity_arguments(parser)
    args = parser.parse_args(argv)
    say = print if not (args.quiet or args.json) else (lambda *parts, **options: None)
    data_dir = args.data_dir or os.environ.get("MNIST_DIR")
    mnist = load_mnist(data_dir)  # fail early, with one line, if there is no data
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if data_dir:
        env["MNIST_DIR"] = str(Path(data_dir).resolve())
    say(f"MNIST from {mnist.source}; {os.cpu_count()} CPUs; {args.repeats} run(s) each")

    runs = {"tutorial script": [], "train/train.py": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            runs["tutorial script"].append(run_tutorial(env))
            say(f"  run {repeat + 1}: tutorial script {runs['tutorial script'][-1][0]:.1f} s, "
                  f"accuracy {runs['tutorial script'][-1][1]:.2%}", flush=True)
            runs["train/train.py"].append(run_pipeline(env, Path(scratch) / f"run{repeat}"))
            say(f"  run {repeat + 1}: train/train.py  {runs['train/train.py'][-1][0]:.1f} s, "
                  f"accuracy {runs['train/train.py'][-1][1]:.2%}", flush=True)

    rows = []
    for name, results in runs.items():
        times = [seconds for seconds, _ in results]
        accuracies = [accuracy for _, accuracy in results]
        rows.append({
            "command": name,
            "wall_seconds_median": round(statistics.median(times), 1),
            "wall_seconds_min": round(min(times), 1),
            "wall_seconds_max": round(max(times), 1),
            "test_accuracy_median": round(statistics.median(accuracies), 4),
        })
    speedup = rows[0]["wall_seconds_median"] / rows[1]["wall_seconds_median"]
    results = {"rows": rows, "speedup": round(speedup, 2),
               "runs": {name: results for name, results in runs.items()}}
    if args.output:
        write_json(args.output, results)
    if args.json:
        print(cli.to_json(results))
        return 0
    print()
    print(markdown_table(rows, list(rows[0])), end="")
    print(f"\ntrain/train.py is {speedup:.2f}x faster in wall time than the tutorial script "
          f"({'meets' if speedup >= 2 else 'misses'} the 2x goal), accuracy "
          f"{rows[1]['test_accuracy_median']:.2%} vs {rows[0]['test_accuracy_median']:.2%}.")
    return 0


if __name__ == "__main__":
    cli.run(main, prog="benchmark_training.py")

"""Benchmark native TensorFlow against OpenVINO FP32 / FP16 / INT8 (and peers, if installed).

    python infer/benchmark.py                      # every variant under models/
    python infer/benchmark.py --variants ov-int8,tf-function --batch-sizes 1,64
    python infer/benchmark.py --quick --output /tmp/bench   # a fast smoke run, not a measurement
    python infer/benchmark.py --baseline old/benchmark.json # each figure beside an earlier run's

The kind of model is read from the models folder (its IRs' metadata, or metrics.json): for the
number reader (train/train.py --arch number-reader) every row reads lines of digits rendered from
MNIST test digits and accuracy counts the lines read exactly; its peer rows are skipped.

Each variant runs in its own process through the same runtime backends classify and webcam use;
the table is printed and written, with a chart, as benchmark.json / benchmark.md / benchmark.png
in models/benchmark/ (or --output). ONNX Runtime and LiteRT rows need:
pip install -r requirements-peers.txt
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgedigits import benchmark, cli, contract
from edgedigits.benchmark import compare
from edgedigits.errors import CommandFailed, UserError
from edgedigits.files import ensure_writable_dir


def variant_names(text: str) -> list[str]:
    try:
        return benchmark.parse_variant_names(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_model_argument(parser, help="a models folder (model.keras and ir/<variant>/model.xml;"
                                        " default: models/, or $EDGEDIGITS_MODELS), or the Keras "
                                        "model for the TensorFlow and peer rows (its folder's "
                                        "IRs are measured)")
    parser.add_argument("--models-dir", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--variants", type=variant_names, default=None,
                        help="comma-separated rows to measure (default: all): "
                             + ", ".join(benchmark.VARIANTS_BY_NAME))
    parser.add_argument("--batch-sizes", type=cli.batch_sizes, default=(1, 32, 256),
                        help="throughput batch sizes (default: 1,32,256; each at most "
                             f"{cli.MAX_BATCH_SIZE})")
    parser.add_argument("--threads", type=cli.positive_int, default=None,
                        help="inference threads for every runtime (default: all usable cores, "
                             f"{benchmark.usable_cores()} here)")
    cli.add_device_argument(parser)
    parser.add_argument("--quick", action="store_true",
                        help="few iterations on a small subset: checks the pipeline, "
                             "numbers are not a measurement")
    parser.add_argument("--baseline", metavar="FILE",
                        help="a benchmark.json saved earlier: print each row's figures beside "
                             "the baseline's row of the same variant and backend, with the "
                             "ratio now / baseline")
    cli.add_data_dir_argument(parser)
    cli.add_output_argument(parser, "where the report goes (default: <models>/benchmark/)")
    cli.add_json_argument(parser, "print the report as JSON instead of the table")
    cli.add_verbosity_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def models_and_keras(args) -> tuple[Path, Path]:
    """--model is a folder (its model.keras) or a .keras file (its folder's IRs)."""
    model = Path(args.model) if args.model else None
    if model is not None and model.is_file():
        return args.models_dir or model.parent, model
    models_dir = args.models_dir or model or contract.default_models_dir()
    keras_model = model / contract.KERAS_FILE if model and args.models_dir else None
    return models_dir, keras_model or models_dir / contract.KERAS_FILE


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    baseline = None
    if args.baseline:  # checked before anything is measured
        baseline = compare.read_baseline(args.baseline, compare.BENCHMARK)
    models_dir, keras_model = models_and_keras(args)
    settings = benchmark.Settings(
        models_dir=models_dir,
        keras_model=keras_model,
        output=args.output or models_dir / "benchmark",
        variants=args.variants,
        batch_sizes=args.batch_sizes,
        threads=args.threads or 0,
        device=args.device,
        quick=args.quick,
        data_dir=args.data_dir,
        progress=not (args.no_progress or args.quiet or args.json),
        command=shlex.join(["python", "infer/benchmark.py", *argv]),
    )
    if not models_dir.is_dir():
        raise UserError(f"no models folder {models_dir}: run train/train.py and "
                        "convert/to_ir.py first, or pass --model")
    ensure_writable_dir(settings.output)

    report = benchmark.run_benchmark(settings)
    paths = benchmark.write_report(report, settings.output)
    comparison = None if baseline is None else compare.compare_benchmarks(report, baseline)
    if args.json:
        if comparison is not None:
            report = {**report, "baseline_comparison": compare.benchmark_comparison_json(
                comparison, args.baseline)}
        print(cli.to_json(report))
    else:
        print(benchmark.format_table(report))
        for line in benchmark.format_goals(report):
            print(line)
        if args.verbose or not args.quiet:
            for line in benchmark.environment_lines(report):
                print(line)
        print("wrote " + ", ".join(str(path) for path in paths.values()))
        if comparison is not None:
            print()
            for line in compare.benchmark_comparison_lines(comparison, args.baseline):
                print(line)
    failed = [row for row in report["rows"] if row["status"] == "failed"]
    if failed and not any(row["status"] == "ok" for row in report["rows"]):
        reasons = "; ".join(f"{row['variant']}: {row['note']}" for row in failed)
        if all(row.get("user_error") for row in failed):
            raise UserError(f"no variant could be measured ({reasons})")
        raise CommandFailed(f"no variant could be measured ({reasons})")
    return 0


if __name__ == "__main__":
    cli.run(main)

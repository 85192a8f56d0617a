"""Benchmark native TensorFlow against OpenVINO FP32 / FP16 / INT8 (and peers, if installed).

    python infer/benchmark.py                      # every variant under models/
    python infer/benchmark.py --variants ov-int8,tf-function --batch-sizes 1,64
    python infer/benchmark.py --quick --output /tmp/bench   # a fast smoke run, not a measurement

Each variant runs in its own process; the table is printed and written, with a chart, as
benchmark.json / benchmark.md / benchmark.png in models/benchmark/ (or --output).
ONNX Runtime and LiteRT rows need: pip install -r requirements-peers.txt
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edgedigits import benchmark, contract
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.errors import UserError
from edgedigits.files import ensure_writable_dir


def batch_sizes(text: str) -> tuple[int, ...]:
    """argparse type: "1,32,256" -> (1, 32, 256), every size > 0."""
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected whole numbers like 1,32,256, "
                                             f"got {part.strip()!r}") from None
        if size <= 0:
            raise argparse.ArgumentTypeError(f"batch sizes must be greater than 0, got {size}")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


def variant_names(text: str) -> list[str]:
    try:
        return benchmark.parse_variant_names(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="folder with model.keras and ir/<variant>/model.xml "
                             "(default: models/, or $EDGEDIGITS_MODELS)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the Keras model for the TensorFlow and peer rows "
                             "(default: <models-dir>/model.keras)")
    parser.add_argument("--variants", type=variant_names, default=None,
                        help="comma-separated rows to measure (default: all): "
                             + ", ".join(benchmark.VARIANTS_BY_NAME))
    parser.add_argument("--batch-sizes", type=batch_sizes, default=(1, 32, 256),
                        help="throughput batch sizes (default: 1,32,256)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="inference threads for every runtime (default: all usable cores, "
                             f"{benchmark.usable_cores()} here)")
    parser.add_argument("--device", default="CPU",
                        help="OpenVINO device: CPU (default), GPU, NPU, AUTO")
    parser.add_argument("--quick", action="store_true",
                        help="few iterations on a small subset: checks the pipeline, "
                             "numbers are not a measurement")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST folder (default: $MNIST_DIR or Keras' download)")
    parser.add_argument("--output", type=Path, default=None,
                        help="where the report goes (default: <models-dir>/benchmark/)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    models_dir = args.models_dir or contract.default_models_dir()
    settings = benchmark.Settings(
        models_dir=models_dir,
        keras_model=args.model or models_dir / contract.KERAS_FILE,
        output=args.output or models_dir / "benchmark",
        variants=args.variants,
        batch_sizes=args.batch_sizes,
        threads=args.threads or 0,
        device=args.device,
        quick=args.quick,
        data_dir=args.data_dir,
        progress=not args.no_progress,
        command=shlex.join(["python", "infer/benchmark.py",
                            *(sys.argv[1:] if argv is None else argv)]),
    )
    if not models_dir.is_dir():
        raise UserError(f"no models folder {models_dir}: run train/train.py and "
                                  "convert/to_ir.py first, or pass --models-dir")
    ensure_writable_dir(settings.output)

    report = benchmark.run_benchmark(settings)
    print(benchmark.format_table(report))
    for line in benchmark.format_goals(report):
        print(line)
    for line in benchmark.environment_lines(report):
        print(line)
    paths = benchmark.write_report(report, settings.output)
    print("wrote " + ", ".join(str(path) for path in paths.values()))
    return 0


if __name__ == "__main__":
    run(main)

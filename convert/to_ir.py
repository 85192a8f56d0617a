"""Convert a trained digit classifier to OpenVINO IR (FP32, and FP16 / INT8 on request), verified.

    python convert/to_ir.py                 # models/model.keras -> models/ir/fp32/model.xml
    python convert/to_ir.py --fp16 --int8   # ... plus models/ir/fp16/ and models/ir/int8/

Every run checks the FP32 IR against the Keras model (exit status 1 if parity is broken) and
measures each variant's accuracy on the 10,000 MNIST test images; see models/ir/report.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgedigits import cli, contract
from edgedigits.cli import ArgumentParser, positive_float, positive_int, quiet_tensorflow, run

# imports OpenVINO only; TensorFlow is loaded later, quietly
from edgedigits.conversion.convert import DEFAULT_CALIBRATION_SIZE, ConversionOptions, convert
from edgedigits.conversion.report import format_table, summary_rows
from edgedigits.conversion.verify import ParityError
from edgedigits.errors import CommandFailed


def parse_args(argv: list[str] | None):
    parser = ArgumentParser(
        prog="to_ir.py",
        description="Convert a Keras digit classifier to OpenVINO IR and verify it against Keras.",
    )
    cli.add_model_argument(
        parser, type=Path, help="the model to convert: a .keras file or a SavedModel folder "
        "(default: models/model.keras)",
    )
    parser.add_argument("--input", type=Path, dest="model", help=argparse.SUPPRESS)
    cli.add_output_argument(
        parser, "folder for <variant>/model.xml and the reports (default: <model's folder>/ir)"
    )
    parser.add_argument("--fp16", action="store_true", help="also write FP16-weight IR (fp16/)")
    parser.add_argument("--int8", action="store_true", help="also write INT8 IR by NNCF (int8/)")
    parser.add_argument(
        "--calibration-size", type=positive_int, default=DEFAULT_CALIBRATION_SIZE, metavar="N",
        help=f"MNIST training images used to calibrate INT8 (default: {DEFAULT_CALIBRATION_SIZE})",
    )
    parser.add_argument(
        "--max-drop", type=positive_float, default=None, metavar="D",
        help="accuracy-controlled INT8: lose at most D accuracy (0.001 = 0.1 pt) against FP32 "
        "on the held-out validation images",
    )
    cli.add_batch_size_argument(
        parser, "bake a static batch size into the IR (default: dynamic batch; at most "
        f"{cli.MAX_BATCH_SIZE})",
    )
    parser.add_argument("--batch", type=cli.batch_size, dest="batch_size", help=argparse.SUPPRESS)
    cli.add_data_dir_argument(parser)
    cli.add_json_argument(parser, "print the conversion report as JSON instead of the table")
    cli.add_verbosity_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_tensorflow(args.verbose)

    options = ConversionOptions(
        input_path=args.model or contract.default_models_dir() / contract.KERAS_FILE,
        output_dir=args.output,
        fp16=args.fp16,
        int8=args.int8,
        calibration_size=args.calibration_size,
        max_drop=args.max_drop,
        batch=args.batch_size,
        data_dir=args.data_dir,
        verbose=args.verbose,
    )
    log = (lambda line: None) if args.quiet or args.json else print
    try:
        report = convert(options, log=log)
    except ParityError as error:
        raise CommandFailed(str(error)) from None
    if args.json:
        print(cli.to_json(report.to_json()))
        return 0
    for removed in report.removed_stale:
        print(f"removed {removed} (left from an earlier conversion, not rebuilt this run)")
    print("wrote:")
    for path in report.files:
        print(f"  {path}")
    print()
    print(format_table(summary_rows(report)))
    return 0


if __name__ == "__main__":
    run(main)

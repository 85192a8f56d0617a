"""Classify handwritten digits in image files (OpenVINO by default; no TensorFlow needed).

    python infer/classify.py photo.jpg scans/ "shots/*.png"     # table + summary
    python infer/classify.py --json photo.jpg                    # JSON list, one object per input
    python infer/classify.py --multi number.jpg                  # several digits, left to right
    python infer/classify.py --eval labelled/ --output report/   # DIR/<digit>/*.jpg -> accuracy
    python infer/classify.py --eval numbers/    # DIR/labels.csv (file,number) -> string accuracy

Steps: find the images -> read and normalise each to MNIST format (edgedigits.reading.classify, in
parallel threads) -> one batched inference (edgedigits.runtime) -> print. --eval runs the same
on a labelled folder and reports accuracy (edgedigits.reading.evaluate).
Exit status: 0 all read; 1 some inputs failed (each says why in its row); 2 nothing could be
read, or a bad flag/model/device (one line on stderr).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edgedigits import cli
from edgedigits.cli import ArgumentParser, run
from edgedigits.errors import UserError
from edgedigits.files import check_outputs, ensure_writable_dir
from edgedigits.reading import classify, evaluate
from edgedigits.tasks import MULTI, SINGLE, kinds_for

EXIT_SOME_FAILED = 1
EXIT_ALL_FAILED = 2


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="classify.py",
        description="Read handwritten digits in image files with OpenVINO (or TensorFlow).",
        epilog="Exit status: 0 every input read, 1 some failed (see their rows), 2 none could "
               "be read or a bad flag/model/device.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files, folders (searched recursively) or globs")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list (path, digit, confidence, top3, error) instead")
    parser.add_argument("--multi", action="store_true",
                        help="each image holds several digits: read them left to right")
    parser.add_argument("--eval", metavar="DIR",
                        help="evaluate a labelled folder DIR/<digit>/<image>: accuracy, "
                             "per-digit accuracy, confusion matrix, misread files; or a folder "
                             "of written numbers listed in DIR/labels.csv (file,number): "
                             "string and digit accuracy, misread files")
    parser.add_argument("--output", metavar="DIR",
                        help="with --eval: write confusion_matrix.png and eval.json here")
    cli.add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    # 1. Check the flags and the output folder before loading anything
    if args.eval and (args.paths or args.multi):
        raise UserError("--eval DIR takes no other PATH and no --multi")
    if not args.eval and not args.paths:
        raise UserError("give at least one image, folder or glob (or --eval DIR)")
    if args.output and not args.eval:
        raise UserError("--output is for --eval (where to write confusion_matrix.png)")
    check_outputs(folders={"--output": args.output}, inputs={"--eval": args.eval})
    output = ensure_writable_dir(args.output) if args.output else None

    # 2. Load the model: one that reads single digits, or for whole numbers (--multi, a numbers
    #    set) any that reads several (the number reader when --model names one or
    #    models/number-reader/ holds one)
    reads_numbers = args.multi or (args.eval and evaluate.is_number_folder(args.eval))
    classifier = cli.load_from_args(args, accept=kinds_for(MULTI if reads_numbers
                                                               else SINGLE))
    if args.verbose:
        print(f"model: {classifier.describe()}", file=sys.stderr)
    started = time.perf_counter()

    # 3a. --eval: a labelled folder -> accuracy, per-digit accuracy, confusion matrix, misreads
    if args.eval:
        report = evaluate.evaluate_folder(classifier, args.eval, args.quiet)
        if output is not None:
            written = evaluate.write_evaluation(
                report, output, title=f"{Path(args.eval).name} ({classifier.variant})")
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            evaluate.print_evaluation(report)
            if output is not None:
                print(f"\nwrote {' and '.join(str(path) for path in written)}")
        return 0

    # 3b. Files, folders and globs -> one row each: a digit (or with --multi a number), or why not
    rows = classify.classify_inputs(classifier, args.paths, args.multi, args.quiet)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps([row.as_json(args.multi) for row in rows], indent=2))
    else:
        classify.print_table(rows, args.multi)
        print(classify.summary_line(rows, classifier, seconds))
    failed = sum(row.error is not None for row in rows)
    if failed == 0:
        return 0
    return EXIT_ALL_FAILED if failed == len(rows) else EXIT_SOME_FAILED


if __name__ == "__main__":
    run(main)

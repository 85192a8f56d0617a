"""Split a numbers set (images + labels.csv ``file,number``) into a training part and a
held-out part, reproducibly, e.g. to measure fine-tuning on numbers it never saw:

    python tools/split_numbers.py DIR OUTDIR [--held-out 120] [--seed 0]

Writes OUTDIR/train/ and OUTDIR/held-out/ (each: images/ and labels.csv); same DIR and seed,
same split. Fine-tune on OUTDIR/train, ``classify.py --eval OUTDIR/held-out``.
"""

import argparse

from edgedigits import cli
from edgedigits.data.evalsets import split_number_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a numbers set (labels.csv: file,number)")
    parser.add_argument("output", help="a new folder: OUTPUT/train and OUTPUT/held-out")
    parser.add_argument("--held-out", type=cli.positive_int, default=120,
                        help="numbers held out (default 120)")
    parser.add_argument("--seed", type=cli.seed, default=0, help="default 0")
    args = parser.parse_args(argv)
    train, held_out = split_number_folder(args.folder, args.output, args.held_out, args.seed)
    print(f"{train}\n{held_out}")
    return 0


if __name__ == "__main__":
    cli.run(main, prog="split_numbers.py")

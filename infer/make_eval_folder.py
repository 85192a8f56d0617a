"""Write a digit set from a text format into the labelled folder layout (DIR/<digit>/*.png).

    python infer/make_eval_folder.py semeion ../shared/data/ood/semeion/semeion.data OUTDIR
    python infer/make_eval_folder.py optdigits optdigits-orig.tra optdigits-orig.tes OUTDIR
    python infer/make_eval_folder.py mnist-paper ../shared/data/mnist OUTDIR [--count 1000]
    python infer/classify.py --eval OUTDIR

Images are written as dark ink on white, at their original size (16x16 or 32x32), so they go
through exactly the preprocessing a user's photos go through. ``mnist-paper`` renders MNIST
*test* digits as camera-like photos of paper (perspective, uneven light, shadow, blur, noise,
JPEG): a large labelled set of "photos" that is free to use for tuning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedigits import evalsets
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.data import load_mnist


def load_mnist_paper(folder: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    mnist = load_mnist(folder)
    images, labels = mnist.x_test[:count], mnist.y_test[:count]
    return evalsets.render_mnist_on_paper(images, seed=0), labels


LOADERS = {"semeion": evalsets.load_semeion, "optdigits": evalsets.load_optdigits}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("format", choices=[*sorted(LOADERS), "mnist-paper"],
                        help="format of the input file(s)")
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="input file(s) (for mnist-paper: the MNIST folder), then OUTDIR")
    parser.add_argument("--count", type=positive_int, default=1000,
                        help="mnist-paper: how many test digits to render (default 1000)")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("give at least one input file and the output folder")
    *inputs, output = args.inputs
    evalsets.check_new_folder(output)

    # 1. Load every input file (all are checked before anything is written)
    images, labels = [], []
    for path in inputs:
        if args.format == "mnist-paper":
            set_images, set_labels = load_mnist_paper(path, args.count)
        else:
            set_images, set_labels = LOADERS[args.format](path)
        images.append(set_images)
        labels.append(set_labels)
        print(f"{path}: {len(set_labels)} digits")
    images, labels = np.concatenate(images), np.concatenate(labels)

    # 2. Write the folder layout (atomically: all or nothing)
    evalsets.write_folder(images, labels, output, prefix=f"{args.format}-")
    counts = ", ".join(f"{d}: {int(np.sum(labels == d))}" for d in range(10))
    print(f"wrote {len(labels)} images to {output}/<digit>/ ({counts})")
    print(f"evaluate with: python infer/classify.py --eval {output}")
    return 0


if __name__ == "__main__":
    run(main)

"""Write a digit set from a text format into the labelled folder layout (DIR/<digit>/*.png).

    python infer/make_eval_folder.py semeion ../shared/data/ood/semeion/semeion.data OUTDIR
    python infer/make_eval_folder.py optdigits optdigits-orig.tra optdigits-orig.tes OUTDIR
    python infer/make_eval_folder.py mnist-paper ../shared/data/mnist OUTDIR [--count 1000]
    python infer/make_eval_folder.py mnist-paper-tight ../shared/data/mnist OUTDIR  # or -faint
    python infer/make_eval_folder.py numbers ../shared/data/mnist OUTDIR [--count 1000]
    python infer/classify.py --eval OUTDIR

Images are written as dark ink on white, at their original size (16x16 or 32x32), so they go
through exactly the preprocessing a user's photos go through. ``mnist-paper`` renders MNIST
*test* digits as camera-like photos of paper (perspective, uneven light, shadow, blur, noise,
JPEG): a large labelled set of "photos" that is free to use for tuning; ``mnist-paper-tight``
crops each to its ink (tight crops), ``-faint`` leaves its ink only 30-70 grey levels darker
than the paper (pencil), ``-faint-small`` does both and shrinks it to 28x28.
``numbers`` writes whole
numbers of 3-6 MNIST *test* digits written fast (touching or overlapping, slanted, separators,
ruled lines, form boxes, printed patterns; edgedigits.data.render.written_number) photographed the
same way, as OUTDIR/number-*.png and OUTDIR/labels.csv (file,number); --eval reads numbers there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.data import evalsets, load_mnist, render


def load_mnist_paper(folder: Path, count: int,
                     variant: str | None = None) -> tuple[list, np.ndarray]:
    mnist = load_mnist(folder)
    images, labels = mnist.x_test[:count], mnist.y_test[:count]
    photos = render.render_mnist_on_paper(images, seed=0)
    if variant is None:
        return list(photos), labels
    rng = np.random.default_rng(1)
    return [render.hard_variant(photo, variant, rng) for photo in photos], labels


NUMBER_LENGTHS = (3, 6)


def make_numbers(folder: Path, count: int, seed: int = 0) -> tuple[list, list[str], list[str]]:
    """``count`` photos of numbers written with random MNIST *test* digits, their labels and
    file names (which say the background: each of render.BACKGROUNDS in turn)."""
    mnist = load_mnist(folder)
    rng = np.random.default_rng(seed)
    images, numbers, names = [], [], []
    for index in range(count):
        length = int(rng.integers(NUMBER_LENGTHS[0], NUMBER_LENGTHS[1] + 1))
        chosen = rng.integers(0, len(mnist.y_test), length)
        background = render.BACKGROUNDS[index % len(render.BACKGROUNDS)]
        images.append(render.written_number(mnist.x_test[chosen], rng, background=background))
        numbers.append("".join(str(int(d)) for d in mnist.y_test[chosen]))
        names.append(f"number-{index:0{len(str(count - 1))}d}-{background}.png")
    return images, numbers, names


LOADERS = {"semeion": evalsets.load_semeion, "optdigits": evalsets.load_optdigits}


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    paper_formats = ["mnist-paper", *(f"mnist-paper-{v}" for v in render.VARIANTS)]
    parser.add_argument("format", choices=[*sorted(LOADERS), *paper_formats, "numbers"],
                        help="format of the input file(s)")
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="input file(s) (for mnist-paper: the MNIST folder), then OUTDIR")
    parser.add_argument("--count", type=positive_int, default=1000,
                        help="mnist-paper, numbers: how many digits / numbers to render "
                             "(default 1000)")
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error("give at least one input file and the output folder")
    *inputs, output = args.inputs
    evalsets.check_new_folder(output)
    if args.format == "numbers":
        if len(inputs) != 1:
            parser.error("numbers takes one input: the MNIST folder")
        images, numbers, names = make_numbers(inputs[0], args.count)
        evalsets.write_number_folder(images, numbers, output, names)
        digits = sum(len(number) for number in numbers)
        print(f"wrote {len(numbers)} numbers ({digits} digits) to {output}/ with "
              f"{evalsets.NUMBER_LABELS}")
        print(f"evaluate with: python infer/classify.py --eval {output}")
        return 0

    # 1. Load every input file (all are checked before anything is written)
    images, labels = [], []
    for path in inputs:
        if args.format.startswith("mnist-paper"):
            variant = args.format.removeprefix("mnist-paper").removeprefix("-") or None
            set_images, set_labels = load_mnist_paper(path, args.count, variant)
        else:
            set_images, set_labels = LOADERS[args.format](path)
        images.append(set_images)
        labels.append(set_labels)
        print(f"{path}: {len(set_labels)} digits")
    images = [image for part in images for image in part]  # sizes may differ (tight crops)
    labels = np.concatenate(labels)

    # 2. Write the folder layout (atomically: all or nothing)
    evalsets.write_folder(images, labels, output, prefix=f"{args.format}-")
    counts = ", ".join(f"{d}: {int(np.sum(labels == d))}" for d in range(10))
    print(f"wrote {len(labels)} images to {output}/<digit>/ ({counts})")
    print(f"evaluate with: python infer/classify.py --eval {output}")
    return 0


if __name__ == "__main__":
    run(main)

"""How the splitting gates trade single digits against touching ones (docs/infer.md).

    python tools/split_gate.py MODEL NUMBERS_DIR [GATE,SURE ...]

For each pair of gates (edgedigits.tasks.splitting.SPLIT_GATE, SURE_GATE): how many of 400
MNIST test digits rendered one per scene are split in two or more (should be none), and how
many numbers of NUMBERS_DIR (a numbers set: ``infer/make_eval_folder.py numbers --count 400``)
the digit classifier reads exactly. Needs MNIST_DIR.
"""

import csv
import sys
from pathlib import Path

from edgedigits import runtime
from edgedigits.data import load_mnist, render
from edgedigits.image.image import Image
from edgedigits.reading import classify
from edgedigits.tasks import splitting


def main() -> None:
    model, numbers = sys.argv[1], Path(sys.argv[2])
    specs = sys.argv[3:] or [f"{splitting.SPLIT_GATE},{splitting.SURE_GATE}"]
    mnist = load_mnist()
    classifier = runtime.load_classifier(model, variant="fp32", inference_precision="f32")
    rows = list(csv.reader((numbers / "labels.csv").open()))[1:]
    images = [Image.read(numbers / name) for name, _ in rows]
    scenes = [render.paper_scene([mnist.x_test[i]], [(40, 40)], size=(200, 200), digit_px=110,
                                 seed=i) for i in range(400)]
    for spec in specs:
        splitting.SPLIT_GATE, splitting.SURE_GATE = map(float, spec.split(","))
        split = sum(len(classify.read_image(classifier, scene).digits) > 1 for scene in scenes)
        exact = sum(classify.read_image(classifier, image).number == number
                    for image, (_, number) in zip(images, rows, strict=True))
        print(f"gates {spec}: single digits split {split}/400, numbers read exactly "
              f"{exact}/{len(rows)}", flush=True)


if __name__ == "__main__":
    main()

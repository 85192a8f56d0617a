"""edgedigits: handwritten-digit recognition from Keras training to OpenVINO edge inference.

The stages' commands (``train/``, ``convert/``, ``infer/``) share this package, laid out by
role: ``data`` (MNIST, evaluation sets, rendering), ``training``, ``conversion``, ``runtime``
(one model interface, a registry of backends), ``image`` (the one Image: decoding, gray,
shrinking, ink), ``tasks`` (one wrapper per kind of model, one Reading), ``reading`` (files,
evaluation, DigitReader), ``video``, ``benchmark``, ``serving``, ``web``; and the shared
``cli``, ``errors``, ``files``, ``contract`` and ``report`` (docs/architecture.md).

The Python API (imported on first use, so ``import edgedigits`` stays light)::

    from edgedigits import DigitReader, load_classifier
"""

import os

# OpenCV reads these once, when it loads: set them before any module imports cv2. The pixel
# limit backs up edgedigits.image.decode's header checks; OpenCV's own log lines ("[ WARN:0@0.17]
# ... buffer is incomplete") would repeat, without the file's name, what a UserError says.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(100_000_000))  # decode.MAX_IMAGE_PIXELS
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")

__version__ = "0.1.0"

CLASS_LABELS = tuple(str(digit) for digit in range(10))

_API = {"DigitReader": "edgedigits.reading.reader", "Reading": "edgedigits.tasks.result",
        "Digit": "edgedigits.tasks.result", "Image": "edgedigits.image.image",
        "load_classifier": "edgedigits.runtime", "DigitClassifier": "edgedigits.runtime",
        "get_task": "edgedigits.tasks", "register_task": "edgedigits.tasks",
        "Task": "edgedigits.tasks"}
__all__ = ["CLASS_LABELS", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgedigits' has no attribute {name!r}")

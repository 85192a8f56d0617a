"""edgedigits: handwritten-digit recognition from Keras training to OpenVINO edge inference.

Stages (each a thin command in its own folder) share this package:
``data`` (MNIST loading and validation), ``models`` (architecture registry),
``training`` (fast tf.data training loop), ``augment`` (photo-like augmentation),
``report`` (JSON/CSV/plots), ``files`` (atomic writes), ``cli`` (errors and exit codes),
``runtime`` (one DigitClassifier interface, a registry of backends), ``contract`` (files and
the IR contract), ``benchmark`` (the benchmark package).

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

_API = {"DigitReader": "edgedigits.reading.reader", "Reading": "edgedigits.reading.reader",
        "Digit": "edgedigits.reading.reader", "load_classifier": "edgedigits.runtime",
        "DigitClassifier": "edgedigits.runtime"}
__all__ = ["CLASS_LABELS", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'edgedigits' has no attribute {name!r}")

"""edgedigits: handwritten-digit recognition from Keras training to OpenVINO edge inference.

Stages (each a thin command in its own folder) share this package:
``data`` (MNIST loading and validation), ``models`` (architecture registry),
``training`` (fast tf.data training loop), ``augment`` (photo-like augmentation),
``report`` (JSON/CSV/plots), ``files`` (atomic writes), ``cli`` (errors and exit codes).
"""

__version__ = "0.1.0"

CLASS_LABELS = tuple(str(digit) for digit in range(10))

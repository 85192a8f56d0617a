"""Importing TensorFlow quietly: its start-up log noise kept off the console unless asked for.

Shared by training, conversion, the TensorFlow backend and the MNIST download fallback; nothing
here imports TensorFlow until :func:`import_tensorflow` is called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings


def quiet_tensorflow(verbose: bool = False) -> None:
    """Silence TensorFlow's start-up log noise unless ``verbose``; call before importing it."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


@contextlib.contextmanager
def _stderr_silenced():
    """Point file descriptor 2 at /dev/null: C++ logs written before absl is set up ignore
    TF_CPP_MIN_LOG_LEVEL, so this is the only way to keep them off the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(verbose: bool = False):
    """Import TensorFlow (and Keras) without its start-up noise unless ``verbose``."""
    quiet_tensorflow(verbose)
    if verbose or "tensorflow" in sys.modules:
        import tensorflow
    else:
        with _stderr_silenced():
            import tensorflow
    import keras  # noqa: F401  (Keras reads the backend at import; keep it next to TF)

    return tensorflow

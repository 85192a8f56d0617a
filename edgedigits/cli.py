"""What every command-line entry point shares: quiet start-up, argument checks, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable

from edgedigits.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (argparse's own code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def run(main: Callable[[], int | None], prog: str | None = None) -> None:
    """Run an entry point: UserError -> one line + exit 2, Ctrl-C -> one line + exit 130."""
    name = prog or os.path.basename(sys.argv[0])
    try:
        code = main()
    except UserError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print(f"{name}: interrupted, nothing partial was written", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code or 0)

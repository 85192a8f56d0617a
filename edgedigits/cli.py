"""What every command-line entry point shares: quiet start-up, argument checks, exit codes."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgedigits import contract, runtime, system
from edgedigits.errors import CommandFailed, UserError
from edgedigits.tensorflow_import import import_tensorflow, quiet_tensorflow  # noqa: F401

# What --precision accepts (what a model computes in), in training and in inference.
PRECISIONS = contract.PRECISIONS
EXIT_FAILED = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# --------------------------------------------------------------------------------------------
# The one command-line vocabulary: each shared flag defined once, with one meaning everywhere.


def add_model_argument(parser: argparse.ArgumentParser, help: str, **options) -> None:
    """--model: the model to use (a file, or a models folder to search)."""
    parser.add_argument("--model", metavar="PATH", default=None, help=help, **options)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="CPU",
                        help="OpenVINO device: CPU (default), GPU, NPU, AUTO")


# Older spellings --precision still accepts (training used to say float32 / bfloat16 / auto).
_PRECISION_ALIASES = {"float32": "f32", "fp32": "f32", "bfloat16": "bf16", "float16": "f16",
                      "fp16": "f16", "auto": None}


def precision(text: str) -> str | None:
    """argparse type for --precision: f32 | bf16 | f16 (or an older spelling; auto = None)."""
    name = text.strip().lower()
    name = _PRECISION_ALIASES.get(name, name)
    if name is not None and name not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(PRECISIONS)}, got {text!r}")
    return name


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--precision: what the model computes in, in training and in inference alike."""
    parser.add_argument("--precision", type=precision, default=None, metavar="{f32,bf16,f16}",
                        help="what non-quantized layers compute in: f32 (true FP32), bf16 or f16 "
                             "(default: the device's choice, bf16 where the CPU has it natively;"
                             " saved models stay f32)")


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="MNIST folder (default: $MNIST_DIR or Keras' download)")


def add_output_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--output", type=Path, default=None, metavar="PATH", help=help)


def add_json_argument(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--json", action="store_true", help=help)


def add_batch_size_argument(parser: argparse.ArgumentParser, help: str,
                            default: int | None = None) -> None:
    parser.add_argument("--batch-size", type=batch_size, default=default, metavar="N", help=help)


def to_json(data: Any) -> str:
    """What --json prints: indented JSON; numpy numbers and paths as plain values."""
    def plain(value: Any) -> Any:
        if hasattr(value, "item"):  # numpy scalars
            return value.item()
        if hasattr(value, "tolist"):
            return value.tolist()
        return str(value)

    return json.dumps(data, indent=2, default=plain)


def add_verbosity_arguments(parser: argparse.ArgumentParser) -> None:
    """--quiet / --verbose, the same in every command."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true",
                       help="print only results and errors (no progress)")
    group.add_argument("--verbose", action="store_true",
                       help="show runtime details and library logs")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (argparse's own code)."""

    def _get_value(self, action, arg_string):
        # An empty value is an unset shell variable, never "the default" ("--output $OUT").
        if isinstance(arg_string, str) and not arg_string.strip():
            raise argparse.ArgumentError(action, "empty value: give one or leave the flag out")
        return super()._get_value(action, arg_string)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer greater than zero."""
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


# Largest batch a command accepts: 4,096 images are 3 MB of pixels; far beyond what helps.
MAX_BATCH_SIZE = 4096


def batch_size(text: str) -> int:
    """argparse type: a batch size, 1 to MAX_BATCH_SIZE."""
    value = positive_int(text)
    if value > MAX_BATCH_SIZE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_BATCH_SIZE}, got {value}")
    return value


def batch_sizes(text: str) -> tuple[int, ...]:
    """argparse type: "1,32,256" -> (1, 32, 256), each 1 to MAX_BATCH_SIZE, duplicates dropped."""
    sizes = []
    for part in text.split(","):
        try:
            size = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected whole numbers like 1,32,256, "
                                             f"got {part.strip()!r}") from None
        if size <= 0:
            raise argparse.ArgumentTypeError(f"batch sizes must be greater than 0, got {size}")
        if size > MAX_BATCH_SIZE:
            raise argparse.ArgumentTypeError(f"batch sizes must be at most {MAX_BATCH_SIZE}, "
                                             f"got {size}")
        sizes.append(size)
    return tuple(dict.fromkeys(sizes))


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_float(text: str) -> float:
    """argparse type: a number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def seed(text: str) -> int:
    """argparse type: a random seed, 0 to 2**32 - 1 (what NumPy and TensorFlow accept)."""
    value = _whole_number(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
    return value


# SIGTERM, and SIGHUP (POSIX) or SIGBREAK (Ctrl-Break, Windows): whichever exist here.
STOP_SIGNALS = system.stop_signals()


# The stop signal received, if any. A KeyboardInterrupt raised inside a library's callback
# (OpenVINO's converter calls Python from C++) can come back wrapped in that library's own
# error; ``run`` still reports it as the interruption it was.
_stopped_by: str | None = None


def _stop(signum: int, frame) -> None:
    global _stopped_by
    _stopped_by = signal.Signals(signum).name
    raise KeyboardInterrupt(_stopped_by)


def _interrupted(name: str, how: str | None) -> None:
    how = f" by {how}" if how else ""
    print(f"{name}: interrupted{how}, nothing partial was written", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def stop_signals_interrupt() -> None:
    """Treat SIGTERM and SIGHUP (kill, a closed terminal, ``timeout``, ``docker stop``, a
    service manager) and, on Windows, SIGBREAK (Ctrl-Break) like Ctrl-C: they raise
    KeyboardInterrupt in the main thread, so every ``finally`` runs, staging is removed and
    earlier outputs stay as they were. Signals a system does not have are skipped
    (``system.stop_signals``).

    A server that runs its own event loop installs its own handlers after this (asyncio's
    ``loop.add_signal_handler``) and shuts down gracefully from them.
    """
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, None, _stop):
            signal.signal(signum, _stop)


def disk_error_message(error: OSError) -> str | None:
    """One line for a full disk or a file-size limit; None for other OS errors."""
    from edgedigits.files import DISK_FULL_ERRNOS

    if error.errno not in DISK_FULL_ERRNOS:
        return None
    where = f" writing {error.filename}" if error.filename else ""
    return f"{error.strerror or 'disk full'}{where}; earlier outputs were left as they were"


def run(main: Callable[[], int | None], prog: str | None = None) -> None:
    """Run an entry point ``main(argv=None) -> int`` (argv None: the command line).

    UserError or a full disk -> one line + exit 2; CommandFailed -> one line + exit 1; Ctrl-C,
    SIGTERM, SIGHUP or Ctrl-Break -> one line + exit 130; otherwise main's return value.
    """
    name = prog or os.path.basename(sys.argv[0])
    stop_signals_interrupt()
    try:
        code = main()
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except UserError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except CommandFailed as error:  # same one line, exit 1: the command ran but did not succeed
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt as interrupt:
        _interrupted(name, interrupt.args[0] if interrupt.args else None)
    except BrokenPipeError:
        # the reader of our output went away (`| head`): stop quietly, as Python's docs advise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
    except OSError as error:
        message = disk_error_message(error)
        if message is None:
            if _stopped_by:
                _interrupted(name, _stopped_by)
            raise
        print(f"{name}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception:
        if _stopped_by:  # the interrupt came back wrapped in a library's error
            _interrupted(name, _stopped_by)
        raise
    sys.exit(code or 0)


# --------------------------------------------------------------------------------------------
# The flags every inference command shares (same words as train/convert/benchmark): the
# runtime's options, turned into a loaded model by load_from_args (the runtime never sees argparse)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --precision, --threads (and --quiet/--verbose)."""
    group = parser.add_argument_group("model and runtime")
    group.add_argument("--model", metavar="PATH",
                       help="model file (.xml IR or .keras) or a models folder to search "
                            f"(default: {contract.default_models_dir()}/, the best IR: "
                            "int8, else fp16, else fp32; model.keras for --backend tf)")
    group.add_argument("--backend", default="openvino", type=runtime.normalize_backend,
                       help="openvino (default), tf (native TensorFlow, for comparison), or "
                            "any of: " + ", ".join(runtime.BACKENDS))
    add_device_argument(group)
    add_precision_argument(group)
    group.add_argument("--threads", type=positive_int, default=None,
                       help="inference threads (default: the runtime's choice)")
    group.add_argument("--server", metavar="URL",
                       help="run inference on an Open Inference Protocol v2 server instead "
                            "(http://HOST:8080 REST or grpc://HOST:8081; infer/serve.py, OVMS, "
                            "Triton); preprocessing stays local")
    add_verbosity_arguments(parser)


def load_from_args(args: argparse.Namespace, **overrides: Any) -> runtime.DigitClassifier:
    """load_classifier with the flags of :func:`add_runtime_arguments`."""
    if getattr(args, "server", None):  # --server URL = --backend remote --model URL
        return runtime.load_classifier(args.server, "remote", verbose=args.verbose)
    options = dict(model=args.model, backend=args.backend, device=args.device,
                   inference_precision=args.precision, threads=args.threads,
                   verbose=args.verbose)
    options.update(overrides)
    return runtime.load_classifier(**options)

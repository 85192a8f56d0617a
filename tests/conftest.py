"""Shared fixtures: real MNIST (from $MNIST_DIR) and a small real model trained once per session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgedigits import contract
from edgedigits.cli import quiet_tensorflow
from edgedigits.data.mnist import load_mnist

ROOT = Path(__file__).resolve().parents[1]

quiet_tensorflow()


def with_default_signals() -> None:
    """``preexec_fn`` for commands a signal test stops: the dispositions a terminal gives.

    A suite run under ``nohup`` or as a background job hands its children SIGHUP or SIGINT
    ignored, and our commands rightly leave an ignored signal ignored; a test that sends one
    must start the command as a user's shell would.
    """
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def run_command(
    *args: str, cwd: str | os.PathLike | None = None, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run one of the project's commands as a user would: ``python <script> args...``."""
    script, *rest = args
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *rest],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def mnist():
    if not os.environ.get("MNIST_DIR"):
        pytest.fail(
            "set MNIST_DIR to a folder with the MNIST IDX files (CI uses ../shared/data/mnist)"
        )
    return load_mnist()


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory, mnist) -> Path:
    """A real tutorial-architecture model: 1 epoch on 10,000 MNIST images (~95 % accuracy).

    Laid out as training writes it: ``model.keras``, ``saved_model/``, ``metrics.json``.
    """
    import keras

    from edgedigits.files import write_json
    from edgedigits.training.architectures import build_model

    folder = tmp_path_factory.mktemp("models")
    model = build_model("tutorial", seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x = mnist.x_train[:10000, :, :, None].astype(np.float32) / 255.0
    model.fit(x, mnist.y_train[:10000], batch_size=128, epochs=1, verbose=0)
    x_test = mnist.x_test[:, :, :, None].astype(np.float32) / 255.0
    _, accuracy = model.evaluate(x_test, mnist.y_test, verbose=0)
    model.save(folder / contract.KERAS_FILE)
    model.export(str(folder / contract.SAVED_MODEL_DIR), verbose=False)
    write_json(folder / contract.METRICS_FILE, {"arch": "tutorial", "test_accuracy": accuracy})
    return folder


@pytest.fixture(scope="session")
def ir_models_dir(tmp_path_factory, small_model_dir) -> Path:
    """``small_model_dir``'s model converted by the real CLI to ``<dir>/ir/{fp32,fp16,int8}``.

    A copy of the models folder (model.keras, saved_model/, metrics.json) is converted with
    ``python convert/to_ir.py --fp16 --int8`` and no --input, the way a user runs it after
    training (models folder given by $EDGEDIGITS_MODELS). INT8 is calibrated on 100 images to
    stay quick. Returns the models folder; ``<dir>/ir/report.json`` holds the measured numbers.
    """
    import shutil

    folder = tmp_path_factory.mktemp("converted") / "models"
    shutil.copytree(small_model_dir, folder)
    result = run_command(
        "convert/to_ir.py", "--fp16", "--int8", "--calibration-size", "100",
        env={contract.MODELS_DIR_ENV: str(folder)},
    )
    if result.returncode != 0:
        pytest.fail(
            f"convert/to_ir.py failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return folder


@pytest.fixture(scope="session")
def number_reader_dir(tmp_path_factory, mnist) -> Path:
    """A tiny real number reader, trained and converted by the commands as a user runs them:
    ``train.py --arch number-reader`` on 400 lines for 2 epochs (it reads little: this is
    the plumbing, not the accuracy), then ``convert/to_ir.py --int8``. ~1-2 minutes."""
    folder = tmp_path_factory.mktemp("number-reader")
    trained = run_command("train/train.py", "--arch", "number-reader", "--lines", "400",
                          "--epochs", "2", "--output", str(folder), "--json")
    if trained.returncode != 0:
        pytest.fail(f"train.py --arch number-reader failed:\n{trained.stderr}")
    converted = run_command("convert/to_ir.py", "--model", str(folder / contract.KERAS_FILE),
                            "--int8", "--calibration-size", "30")
    if converted.returncode != 0:
        pytest.fail(f"convert/to_ir.py failed:\n{converted.stdout}\n{converted.stderr}")
    return folder

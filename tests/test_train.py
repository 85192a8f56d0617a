"""The training stage as a user runs it: real TensorFlow, real MNIST subsets, real artifacts."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, run_command, with_default_signals
from edgedigits.training.loop import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("train")
    done = run_command("train/train.py", "--epochs", "2", "--train-size", "10000",
                       "--output", str(output))
    assert done.returncode == 0, done.stderr
    return output, done


@pytest.mark.slow
def test_short_training_reaches_floor_and_writes_everything(trained):
    import keras

    output, done = trained
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["arch"] == "tutorial" and metrics["epochs"] == 2
    assert metrics["params"] == 693_962
    for key in ("test_loss", "train_seconds", "per_class", "confusion_matrix", "versions",
                "data_source"):
        assert key in metrics
    assert sum(map(sum, metrics["confusion_matrix"])) == 10_000
    assert set(metrics["per_class"]["7"]) == {"precision", "recall", "f1", "support"}
    with open(output / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and {"loss", "val_accuracy"} <= set(rows[0])
    for name in ("training_curves.png", "confusion_matrix.png", "saved_model/saved_model.pb"):
        assert (output / name).stat().st_size > 1000
    model = keras.models.load_model(output / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 10)
    assert "Test accuracy" in done.stdout and "Next: python convert/to_ir.py" in done.stdout
    assert "oneDNN" not in done.stderr and "cuda" not in done.stderr  # start-up noise hidden


def test_same_seed_same_weights(mnist):
    def weights(seed):
        config = TrainConfig(epochs=1, train_size=1200, validation_size=200, seed=seed,
                             augment="photo", verbose=0)
        return train(mnist, config).model.get_weights()

    first, second, other = weights(3), weights(3), weights(4)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "resnet"], "unknown architecture"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "-5"], "--batch-size"),
        (["--augment", "lots"], "--augment"),
        (["--data-dir", "/nonexistent/mnist"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    done = run_command("train/train.py", *args, "--output", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "model.keras").exists()


def test_unwritable_output_and_corrupt_data(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_command("train/train.py", "--output", str(blocker / "models"))
    assert done.returncode == 2 and "cannot write" in done.stderr
    corrupt = tmp_path / "mnist"
    corrupt.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (corrupt / name).write_bytes(b"\x00\x00\x08\x03garbage")
    done = run_command("train/train.py", "--data-dir", str(corrupt), "--output",
                       str(tmp_path / "out"))
    assert done.returncode == 2 and "train-images-idx3-ubyte" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "out" / "model.keras").exists()


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_130_and_writes_nothing(tmp_path):
    output = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train/train.py"), "--epochs", "50", "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=with_default_signals,
    )
    deadline = time.time() + 120
    for line in process.stdout:  # wait until training has really started
        if line.startswith("Training") or time.time() > deadline:
            break
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not (output / "model.keras").exists() and not (output / "metrics.json").exists()

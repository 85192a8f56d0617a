"""Fine-tuning the number reader on a user's numbers: ``train.py --arch number-reader --finetune
DIR``. Bad input is refused in one line with nothing written; a tiny reader is fine-tuned for
real and its folder read by ``classify.py --eval``; the held-out split is reproducible."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgedigits import contract
from edgedigits.data import evalsets, render
from edgedigits.training.finetune import split_samples, varied
from tests.conftest import run_command

FINETUNE = ("train/train.py", "--arch", "number-reader", "--finetune")


def _numbers_folder(folder, digits, labels, count=4, seed=0):
    """``count`` written numbers of 2-5 digits (from ``digits``), as --eval reads them."""
    rng = np.random.default_rng(seed)
    images, numbers, names = [], [], []
    for k in range(count):
        chosen = rng.integers(0, len(digits), int(rng.integers(2, 6)))
        images.append(render.written_number(digits[chosen], rng, background="plain"))
        numbers.append("".join(str(int(d)) for d in labels[chosen]))
        names.append(f"number-{k}.png")
    return evalsets.write_number_folder(images, numbers, folder, names)


def _refused(result, output):
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    return result.stderr


def _blank_folder(folder, header="file,number"):
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 80), 255, np.uint8))
    (folder / "labels.csv").write_text(f"{header}\na.png,12\n")
    return folder


@pytest.fixture
def fake_reader(tmp_path):
    """A file where a reader should be: the checks that come before loading it pass."""
    path = tmp_path / "reader" / contract.KERAS_FILE
    path.parent.mkdir()
    path.write_bytes(b"not read: every refusal below comes first")
    return path


def test_a_missing_folder_is_refused(tmp_path, fake_reader):
    output = tmp_path / "out"
    error = _refused(run_command(*FINETUNE, str(tmp_path / "nowhere"), "--model",
                                 str(fake_reader), "--output", str(output)), output)
    assert "no such folder" in error


def test_a_folder_without_labels_is_refused(tmp_path, fake_reader):
    (tmp_path / "numbers").mkdir()
    output = tmp_path / "out"
    error = _refused(run_command(*FINETUNE, str(tmp_path / "numbers"), "--model",
                                 str(fake_reader), "--output", str(output)), output)
    assert "labels.csv" in error


def test_a_bad_header_is_refused(tmp_path, fake_reader):
    folder = _blank_folder(tmp_path / "numbers", header="file,label")
    output = tmp_path / "out"
    error = _refused(run_command(*FINETUNE, str(folder), "--model", str(fake_reader),
                                 "--output", str(output)), output)
    assert "file,number" in error


def test_no_reader_to_start_from_is_refused(tmp_path):
    folder = _blank_folder(tmp_path / "numbers")
    output = tmp_path / "out"
    empty_models = tmp_path / "models"
    empty_models.mkdir()
    error = _refused(run_command(*FINETUNE, str(folder), "--output", str(output),
                                 env={contract.MODELS_DIR_ENV: str(empty_models)}), output)
    assert "no trained number reader" in error and "--arch number-reader" in error
    assert list(empty_models.iterdir()) == []
    _refused(run_command(*FINETUNE, str(folder), "--model", str(tmp_path / "none.keras"),
                         "--output", str(output)), output)


def test_an_output_inside_the_numbers_folder_is_refused(tmp_path, fake_reader):
    folder = _blank_folder(tmp_path / "numbers")
    output = folder / "model"
    error = _refused(run_command(*FINETUNE, str(folder), "--model", str(fake_reader),
                                 "--output", str(output)), output)
    assert "inside the numbers folder" in error
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "labels.csv"]


def test_finetune_flags_need_the_number_reader(tmp_path, fake_reader):
    folder = _blank_folder(tmp_path / "numbers")
    output = tmp_path / "out"
    error = _refused(run_command("train/train.py", "--finetune", str(folder), "--model",
                                 str(fake_reader), "--output", str(output)), output)
    assert "--arch number-reader" in error


def test_the_validation_split_is_seeded_and_disjoint():
    train, valid = split_samples(50, 0.2, seed=3)
    assert len(valid) == 10 and not set(train) & set(valid)
    assert sorted(train + valid) == list(range(50))
    assert split_samples(50, 0.2, seed=3) == (train, valid)
    assert split_samples(50, 0.2, seed=4) != (train, valid)


def test_varied_copies_keep_the_line_shape():
    lines = np.zeros((3, 32, 192), np.uint8)
    lines[:, 8:24, 0:60] = 255
    out = varied(lines, 3, seed=0)
    assert out.shape == (9, 32, 192) and out.dtype == np.uint8
    assert np.array_equal(out[:3], lines)
    assert all(copy.sum() > 0 for copy in out[3:])


def test_a_split_is_reproducible_and_the_held_out_part_apart(tmp_path, mnist):
    source = _numbers_folder(tmp_path / "numbers", mnist.x_test, mnist.y_test, count=10)
    first = evalsets.split_number_folder(source, tmp_path / "a", held_out=3, seed=1)
    second = evalsets.split_number_folder(source, tmp_path / "b", held_out=3, seed=1)
    rows = [(folder / "labels.csv").read_text() for folder in (*first, *second)]
    assert rows[0] == rows[2] and rows[1] == rows[3]
    train, held = (evalsets.load_number_folder(folder) for folder in first)
    assert len(train.samples) == 7 and len(held.samples) == 3
    assert not {p.name for p, _ in train.samples} & {p.name for p, _ in held.samples}


@pytest.mark.slow
def test_a_tiny_reader_is_finetuned_into_a_complete_folder(tmp_path, mnist, number_reader_dir):
    # the user's numbers: written with MNIST test digits (never the shared data)
    folder = _numbers_folder(tmp_path / "numbers", mnist.x_test, mnist.y_test, count=16)
    output = tmp_path / "mine"
    result = run_command(*FINETUNE, str(folder), "--model",
                         str(number_reader_dir / contract.KERAS_FILE), "--output", str(output),
                         "--epochs", "2", "--lines", "100", "--validation-share", "0.25")
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout and "Before:" in result.stdout
    metrics = json.loads((output / contract.METRICS_FILE).read_text())
    assert metrics["model_type"] == contract.NUMBER_READER
    assert metrics["validation_numbers"] == 4 and metrics["training_numbers"] == 12
    for key in ("validation_accuracy_before", "validation_accuracy"):
        assert 0 <= metrics[key] <= 1
    assert set(metrics["validation_files"]).isdisjoint(
        metrics["training_files"])
    history = (output / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss") and len(history) == 3
    # the model written is the epoch that read the most validation numbers (the later of equals)
    column = history[0].split(",").index("val_accuracy")
    per_epoch = [float(row.split(",")[column]) for row in history[1:]]
    assert metrics["best_epoch"] == 2 - per_epoch[::-1].index(max(per_epoch))
    assert metrics["validation_accuracy"] == pytest.approx(max(per_epoch), abs=1e-4)
    # the new folder is a model the commands read (converting it to IR is convert/to_ir.py's
    # own, tested with the tiny reader; here the Keras file is read through TensorFlow)
    evaluated = run_command("infer/classify.py", "--eval", str(folder), "--model",
                            str(output / contract.KERAS_FILE), "--backend", "tf", "--json")
    assert evaluated.returncode in (0, 1), evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["count"] == 16 and report["kind"] == "numbers"

"""Bad input a user can cause is one line and exit 2, never a traceback (issue 13, class 4)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from conftest import run_command
from edgedigits import contract


def one_line_exit_2(result, expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr, result.stderr


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("digit") / "digit.png"
    cv2.imwrite(str(path), 255 - cv2.resize(mnist.x_test[0], (112, 112)))
    return path


def test_a_camera_index_past_a_c_int_is_one_line(ir_models_dir):
    result = run_command("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                         "--source", "2147483648")
    one_line_exit_2(result, "no camera 2147483648")


def test_an_ir_whose_outputs_are_nan_is_called_broken(ir_models_dir, digit_png, tmp_path):
    import openvino as ov
    from openvino import opset13

    core = ov.Core()
    model = core.read_model(ir_models_dir / contract.IR_DIR / "fp32" / contract.IR_FILE)
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0) == ov.Type.f32:
            shape = tuple(op.get_output_shape(0))
            poisoned = opset13.constant(np.full(shape, np.nan, np.float32))
            op.output(0).replace(poisoned.output(0))
    broken = tmp_path / "broken" / contract.IR_FILE
    broken.parent.mkdir()
    ov.save_model(model, broken)
    result = run_command("infer/classify.py", "--model", str(broken), "--json", str(digit_png))
    one_line_exit_2(result, "is broken")
    assert "NaN" not in result.stdout


def test_a_corrupt_keras_file_under_the_tensorflow_backend(small_model_dir, digit_png, tmp_path):
    corrupt = tmp_path / "model.keras"
    data = (small_model_dir / contract.KERAS_FILE).read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    result = run_command("infer/classify.py", "--backend", "tensorflow", "--model", str(corrupt),
                         str(digit_png))
    one_line_exit_2(result, "corrupt or truncated .keras archive")


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1e3"])
def test_a_seed_out_of_range_is_one_line(seed, tmp_path):
    result = run_command("train/train.py", "--seed", seed, "--output", str(tmp_path / "m"))
    one_line_exit_2(result, "--seed")


@pytest.mark.parametrize("rate", ["inf", "nan", "-1"])
def test_a_learning_rate_that_is_not_a_finite_positive_number(rate, tmp_path):
    result = run_command("train/train.py", "--learning-rate", rate, "--output", str(tmp_path))
    one_line_exit_2(result, "--learning-rate")


def test_more_training_images_than_there_are_is_refused(tmp_path):
    result = run_command("train/train.py", "--train-size", "10000000", "--output",
                         str(tmp_path / "m"))
    one_line_exit_2(result, "more than the 60,000 training images")


@pytest.mark.slow
def test_a_diverging_training_keeps_the_previous_model(small_model_dir, tmp_path):
    from test_reliability_outputs import snapshot

    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models)
    before = snapshot(models)
    result = run_command("train/train.py", "--output", str(models), "--train-size", "2000",
                         "--validation-size", "200", "--epochs", "2", "--learning-rate", "1e30")
    one_line_exit_2(result, "diverged")
    assert snapshot(models) == before


def test_opencv_log_lines_stay_off_the_console(ir_models_dir, tmp_path):
    _, png = cv2.imencode(".png", np.full((64, 64), 255, np.uint8))
    (tmp_path / "truncated.png").write_bytes(png.tobytes()[:60])
    _, jpeg = cv2.imencode(".jpg", np.full((64, 64), 255, np.uint8))
    (tmp_path / "truncated.jpg").write_bytes(jpeg.tobytes()[:300])
    result = run_command("infer/classify.py", "--model", str(ir_models_dir), str(tmp_path))
    assert "Traceback" not in result.stderr
    assert "WARN" not in result.stderr and "ERROR:" not in result.stderr, result.stderr
    assert result.stdout.count("error:") == 2, result.stdout

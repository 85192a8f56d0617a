"""infer/classify.py as a user runs it: generated photos of MNIST digits, real OpenVINO."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from conftest import run_command
from edgedigits import contract, runtime
from edgedigits.data.render import ink_box, paper_scene

SCRIPT = "infer/classify.py"


# --------------------------------------------------------------------------------------------
# Scenes: MNIST test digits drawn dark onto paper (shared with test_webcam.py)


def reliable_digits(models_dir, mnist, per_class: int = 1) -> dict[int, list[np.ndarray]]:
    """Test digits the model itself reads confidently as MNIST images, ``per_class`` each.

    The commands are tested on these so that a failure means the pipeline around the model
    (reading, preprocessing, segmentation, batching) lost the digit, not the 1-epoch model.
    """
    classifier = runtime.load_classifier(models_dir, variant="fp32")
    images, labels = mnist.x_test[:2000], mnist.y_test[:2000]
    probabilities = classifier.predict(images)
    chosen: dict[int, list[np.ndarray]] = {digit: [] for digit in range(10)}
    for image, label, p in zip(images, labels, probabilities, strict=True):
        if p.argmax() == label and p.max() > 0.98 and len(chosen[int(label)]) < per_class:
            chosen[int(label)].append(image)
    return chosen


def overlap(a, b) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def digits(ir_models_dir, mnist):
    return reliable_digits(ir_models_dir, mnist, per_class=3)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, digits):
    """One photo per digit (0-9, JPEG and PNG, different sizes/positions) in nested folders."""
    folder = tmp_path_factory.mktemp("photos")
    expected = {}
    for label in range(10):
        size = (300 + 20 * label, 260 + 15 * label)
        position = (40 + 7 * label, 50 + 5 * label)
        image = paper_scene([digits[label][0]], [position], size=size, digit_px=150, seed=label)
        sub = folder / ("a" if label < 5 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"digit{label}.{'jpg' if label % 2 else 'png'}"
        cv2.imwrite(str(path), image)
        expected[path.name] = label
    return folder, expected


def _env(models_dir):
    return {contract.MODELS_DIR_ENV: str(models_dir)}


def _json(result):
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


# --------------------------------------------------------------------------------------------
# Reading digits


def test_reads_a_folder_of_photos_with_no_model_argument(ir_models_dir, photos):
    folder, expected = photos
    result = run_command(SCRIPT, str(folder), "--json", env=_env(ir_models_dir))
    assert result.returncode == 0, result.stderr
    rows = _json(result)
    assert len(rows) == 10  # found recursively
    for row in rows:
        assert set(row) >= {"path", "digit", "confidence", "top3", "error"}
        assert row["error"] is None
        assert 0 <= row["confidence"] <= 1
        assert row["top3"][0]["digit"] == row["digit"]
        assert len(row["top3"]) == 3
    right = sum(row["digit"] == expected[row["path"].rsplit("/", 1)[1]] for row in rows)
    assert right >= 9, rows


def test_table_glob_and_summary(ir_models_dir, photos):
    folder, _ = photos
    result = run_command(SCRIPT, f"{folder}/**/*.jpg", "--model", str(ir_models_dir),
                         "--backend", "openvino", "--device", "CPU")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["file", "digit", "confidence"]
    assert len(lines) == 1 + 5 + 1  # header, the five odd digits (JPEG), summary
    assert "5 inputs: 5 read, 0 failed" in lines[-1]
    assert "openvino int8" in lines[-1]


def _huge_png(path):
    """A PNG whose header claims 30000 x 30000 pixels: refused before decoding."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 30001 * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))


def test_every_bad_input_gets_its_own_row_and_the_rest_still_run(ir_models_dir, photos,
                                                                    tmp_path):
    folder, _ = photos
    good = next(folder.glob("a/digit3.*"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "zero.png").write_bytes(b"")
    jpeg = cv2.imencode(".jpg", cv2.imread(str(good)))[1].tobytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp_path / "text.png").write_text("this is not an image\n")
    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((1, 1), 255, np.uint8))
    _huge_png(tmp_path / "huge.png")
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((200, 200), 230, np.uint8))
    bad = ["missing.png", "empty", "zero.png", "truncated.jpg", "text.png", "tiny.png",
           "huge.png", "blank.png", "nothing*.png"]
    args = [str(tmp_path / name) for name in bad]
    result = run_command(SCRIPT, args[0], str(good), *args[1:], "--json",
                         env=_env(ir_models_dir))
    assert result.returncode == 1, result.stderr  # some inputs failed, not all
    rows = _json(result)
    assert [row["path"] for row in rows] == [args[0], str(good), *args[1:]]  # order kept
    assert rows[1]["digit"] == 3 and rows[1]["error"] is None
    errors = {row["path"].rsplit("/", 1)[1]: row["error"] for row in rows if row is not rows[1]}
    for name, error in errors.items():
        assert error, name
        assert rows[[r["path"] for r in rows].index(str(tmp_path / name))]["digit"] is None
    assert "no such file" in errors["missing.png"]
    assert "no image" in errors["empty"]
    assert "empty file" in errors["zero.png"]
    assert "pixels" in errors["huge.png"] or "large" in errors["huge.png"]
    assert "no digit" in errors["blank.png"]
    assert "no file matches" in errors["nothing*.png"]

    # Table form: the same rows, one line each, no traceback.
    result = run_command(SCRIPT, *args, env=_env(ir_models_dir))
    assert result.returncode == 2  # nothing could be read
    assert "Traceback" not in result.stderr
    assert result.stdout.count("error: ") == len(bad)


@pytest.mark.parametrize("case", ["no_bin", "not_ours", "device", "no_models", "no_paths"])
def test_model_device_and_usage_errors_are_one_line(ir_models_dir, photos, tmp_path, case):
    folder, _ = photos
    args = [str(folder)]
    if case == "no_bin":
        lonely = tmp_path / "model.xml"
        lonely.write_bytes((ir_models_dir / "ir/int8/model.xml").read_bytes())
        args += ["--model", str(lonely)]
        expected = "no weights file"
    elif case == "not_ours":
        from test_runtime import _foreign_ir

        args += ["--model", str(_foreign_ir(tmp_path / "foreign", rt_info=False))]
        expected = "not an edgedigits digit classifier"
    elif case == "device":
        args += ["--model", str(ir_models_dir), "--device", "NPU7"]
        expected = "CPU"
    elif case == "no_models":
        args += ["--model", str(tmp_path)]
        expected = "no OpenVINO IR"
    else:
        args = ["--model", str(ir_models_dir)]
        expected = "at least one image"
    result = run_command(SCRIPT, *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("classify.py: error:"), result.stderr
    assert expected in lines[0]


NO_TF_WRAPPER = """
import json, runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as stop:
    code = stop.code
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"tensorflow", "keras"})
print(json.dumps({"exit": code, "loaded": loaded}), file=sys.stderr)
"""


@pytest.mark.slow  # the TensorFlow half imports TensorFlow (~10 s)
def test_openvino_path_never_imports_tensorflow(ir_models_dir, photos, tmp_path):
    folder, _ = photos
    wrapper = tmp_path / "report_modules.py"
    wrapper.write_text(NO_TF_WRAPPER)
    from conftest import ROOT

    for extra in ([], ["--multi"]):
        result = run_command(str(wrapper), str(ROOT / SCRIPT), str(folder), "--json", *extra,
                             env=_env(ir_models_dir))
        report = json.loads(result.stderr.strip().splitlines()[-1])
        assert report["exit"] in (0, None), result.stderr
        assert len(json.loads(result.stdout)) == 10
        assert report["loaded"] == [], f"imported {report['loaded']} on the OpenVINO path"
    # The check itself can fail: the TensorFlow backend does import it.
    result = run_command(str(wrapper), str(ROOT / SCRIPT), str(folder / "a"), "--json",
                         "--backend", "tf", env=_env(ir_models_dir))
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["exit"] in (0, None), result.stderr
    assert "tensorflow" in report["loaded"]
    assert [row["digit"] for row in json.loads(result.stdout)] == [0, 1, 2, 3, 4]


# --------------------------------------------------------------------------------------------
# --multi


def test_multi_reads_a_number_left_to_right_with_boxes(ir_models_dir, digits, tmp_path):
    labels = [2, 0, 2, 6]
    # Written out of order on purpose: the answer must come back sorted by position.
    positions = [(60, 150), (230, 170), (400, 140), (570, 160)]
    images = [digits[label][1] for label in labels]
    photo = paper_scene(images, positions, size=(450, 760), digit_px=130, seed=7)
    path = tmp_path / "number.jpg"
    cv2.imwrite(str(path), photo)
    result = run_command(SCRIPT, "--multi", str(path), "--json", env=_env(ir_models_dir))
    assert result.returncode == 0, result.stderr
    (row,) = _json(result)
    assert row["error"] is None
    assert row["number"] == "2026"
    assert len(row["detections"]) == 4
    for detection, image, position in zip(row["detections"], images, positions, strict=True):
        assert overlap(detection["box"], ink_box(image, position, 130)) > 0.5, detection
        assert 0 < detection["confidence"] <= 1
    table = run_command(SCRIPT, "--multi", str(path), env=_env(ir_models_dir))
    assert "2026" in table.stdout.splitlines()[1]


# --------------------------------------------------------------------------------------------
# --eval (issue 6)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, digits):
    root = tmp_path_factory.mktemp("labelled")
    for label in range(10):
        sub = root / str(label)
        sub.mkdir()
        for k, digit in enumerate(digits[label]):
            image = paper_scene([digit], [(30 + 10 * k, 40)], size=(240, 220), digit_px=140,
                                seed=10 * label + k)
            cv2.imwrite(str(sub / f"sample{k}.png"), image)
    (root / "4" / "notes.txt").write_text("written by writer 3")
    (root / "README.md").write_text("digits")
    return root


def test_eval_reports_accuracy_per_digit_confusion_and_misreads(ir_models_dir, labelled,
                                                                 tmp_path):
    # Plant one mislabelled file so that the error list is exercised on purpose.
    wrong = labelled / "7" / "actually_a_one.png"
    cv2.imwrite(str(wrong), cv2.imread(str(labelled / "1" / "sample0.png")))
    try:
        out = tmp_path / "report"
        result = run_command(SCRIPT, "--eval", str(labelled), "--json", "--output", str(out),
                             env=_env(ir_models_dir))
    finally:
        wrong.unlink()
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["count"] == 31
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert report["per_class"]["7"]["count"] == 4
    assert 28 / 31 <= report["accuracy"] < 1.0
    planted = [e for e in report["errors"] if e["path"].endswith("actually_a_one.png")]
    assert planted and planted[0]["label"] == 7 and planted[0]["digit"] == 1
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 31 - report["unread"]
    assert matrix[7, 1] >= 1
    skipped = {item["path"].rsplit("/", 1)[1] for item in report["skipped"]}
    assert skipped == {"notes.txt", "README.md"}
    png = cv2.imread(str(out / "confusion_matrix.png"))
    assert png is not None and png.shape[0] > 200
    assert json.loads((out / "eval.json").read_text())["count"] == 31

    text = run_command(SCRIPT, "--eval", str(labelled), env=_env(ir_models_dir))
    assert text.returncode == 0
    assert "accuracy" in text.stdout and "confusion matrix" in text.stdout
    assert "notes.txt" in text.stdout  # the skipped file is named, not silently dropped


def test_eval_output_inside_the_set_is_refused(ir_models_dir, tmp_path):
    labelled = tmp_path / "set"
    (labelled / "3").mkdir(parents=True)
    cv2.imwrite(str(labelled / "3" / "a.png"), np.zeros((28, 28), np.uint8))
    before = sorted(p.relative_to(labelled) for p in labelled.rglob("*"))
    for output, expected in ((labelled / "3", "inside the input folder"),
                             (labelled / "report" / "new", "inside the input folder"),
                             (labelled, "is the input (--eval)")):
        result = run_command(SCRIPT, "--eval", str(labelled), "--output", str(output),
                             env=_env(ir_models_dir))
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "--output" in lines[0], result.stderr
        assert result.stdout == ""
    assert sorted(p.relative_to(labelled) for p in labelled.rglob("*")) == before  # untouched


def test_eval_bad_folders(ir_models_dir, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    cv2.imwrite(str(flat / "x.png"), np.zeros((28, 28), np.uint8))
    hollow = tmp_path / "hollow"
    for digit in "0123":
        (hollow / digit).mkdir(parents=True)
    (hollow / "2" / "notes.txt").write_text("no images here")
    for folder, expected in ((flat, "no digit sub-folders"), (hollow, "hold no image"),
                             (tmp_path / "missing", "does not exist")):
        result = run_command(SCRIPT, "--eval", str(folder), env=_env(ir_models_dir))
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr
    result = run_command(SCRIPT, "--eval", str(flat), "--multi", env=_env(ir_models_dir))
    assert result.returncode == 2 and "--eval" in result.stderr

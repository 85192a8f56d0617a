"""The task layer: the registry, the one Reading, and a third kind of model added from outside.

The toy kind (tests/toy_task.py, a 14x14 digit classifier whose IR is built here with OpenVINO's
own opset: a linear classifier from MNIST's class means) is one module and one registration.
With $EDGEDIGITS_TASKS naming it, ``classify.py`` and ``serve.py`` read images with it, unchanged;
without, the same IR is refused in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_serving import Server

from conftest import ROOT, run_command
from edgedigits import contract
from edgedigits.image.image import Image
from edgedigits.tasks import MULTI, SINGLE, get_task, kinds_for, model_types
from edgedigits.tasks.checks import check_signature
from edgedigits.tasks.result import Digit, Reading

TOY_ENV = {"EDGEDIGITS_TASKS": "toy_task",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


def test_the_built_in_kinds_and_what_they_read():
    assert set(model_types()) >= {contract.MODEL_TYPE, contract.NUMBER_READER}
    assert contract.MODEL_TYPE in kinds_for(SINGLE)
    assert contract.NUMBER_READER in kinds_for(MULTI)
    assert contract.NUMBER_READER not in kinds_for(SINGLE)
    assert get_task(contract.NUMBER_READER).input_shape == contract.LINE_SHAPE
    with pytest.raises(Exception, match="no task reads models of type 'nothing'"):
        get_task("nothing")
    # a model's kind is its shapes'; another kind where one is expected is refused in words
    assert check_signature((None, 28, 28, 1), (None, 10), "m").model_type == contract.MODEL_TYPE
    with pytest.raises(Exception, match="is a number reader, not a digit classifier"):
        check_signature((None, 32, 192, 1), (None, 48, 11), "m", kinds_for(SINGLE))


def test_one_reading_and_its_json():
    probabilities = np.array([0.01, 0.02, 0.9, 0.03, 0.01, 0.01, 0.0, 0.015, 0.0, 0.005])
    reading = Reading([Digit.from_probabilities(probabilities, (4, 5, 6, 7)),
                       Digit.from_probabilities(np.roll(probabilities, 1), (20, 5, 6, 7))])
    assert reading.number == "23" and reading.confidence == 0.9
    first = reading.detections[0]
    assert first == {"box": [4, 5, 6, 7], "digit": 2, "confidence": 0.9,
                     "top3": [{"digit": 2, "confidence": 0.9}, {"digit": 3, "confidence": 0.03},
                              {"digit": 1, "confidence": 0.02}]}
    assert json.loads(json.dumps(reading.detections)) == reading.detections
    assert Reading([]).number == "" and Reading([]).confidence is None


# --------------------------------------------------------------------------------------------
# A third kind, from outside the package


@pytest.fixture(scope="module")
def toy_ir(mnist, tmp_path_factory) -> Path:
    """The toy kind's IR: uint8 [N,14,14,1] -> softmax of a linear classifier (class means)."""
    import openvino as ov
    import openvino.opset13 as ops
    from toy_task import MODEL_TYPE, SIDE, to_toy_inputs

    small = to_toy_inputs(mnist.x_train[:20000]).reshape(-1, SIDE * SIDE) / 255.0
    means = np.stack([small[mnist.y_train[:20000] == d].mean(axis=0) for d in range(10)])
    weights = (means.T * 8).astype(np.float32)  # logits = 8 (x . mean - |mean|^2 / 2)
    bias = (-4 * (means ** 2).sum(axis=1)).astype(np.float32)
    images = ops.parameter([-1, SIDE, SIDE, 1], ov.Type.u8, name="images")
    flat = ops.reshape(ops.divide(ops.convert(images, ov.Type.f32), np.float32(255.0)),
                       np.array([-1, SIDE * SIDE], np.int64), special_zero=False)
    logits = ops.add(ops.matmul(flat, ops.constant(weights), False, False), ops.constant(bias))
    probabilities = ops.softmax(logits, 1)
    probabilities.output(0).get_tensor().set_names({"probabilities"})
    model = ov.Model([probabilities], [images], "toy")
    contract.write_metadata(model, {"model_type": MODEL_TYPE, "variant": "fp32"})
    path = tmp_path_factory.mktemp("toy") / "model.xml"
    ov.save_model(model, path)
    return path


@pytest.fixture(scope="module")
def digit_files(mnist, tmp_path_factory) -> tuple[list[Path], list[int]]:
    """20 MNIST test digits as dark-on-light PNG files, 84 px."""
    folder = tmp_path_factory.mktemp("toy-digits")
    paths = []
    for index in range(20):
        image = 255 - cv2.resize(mnist.x_test[index], (84, 84), interpolation=cv2.INTER_CUBIC)
        paths.append(folder / f"d{index:02d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths, [int(d) for d in mnist.y_test[:20]]


def _expected(ir: Path, paths: list[Path], mode: str = SINGLE) -> list[str]:
    """What the toy model says for each file, computed here: the digit classifier's preparation
    (the whole file, or the digits found in it), then OpenVINO on the 14x14 inputs."""
    import openvino as ov
    from toy_task import to_toy_inputs

    compiled = ov.Core().compile_model(ir, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    digits = get_task(contract.MODEL_TYPE)
    read = []
    for path in paths:
        inputs = digits.prepare(Image.read(path), mode).inputs
        read.append("".join(str(d) for d in compiled(to_toy_inputs(inputs)[..., None])[0]
                            .argmax(axis=1)))
    return read


@pytest.mark.slow
def test_a_third_kind_reads_through_classify_and_the_server(toy_ir, digit_files):
    paths, labels = digit_files
    expected = _expected(toy_ir, paths)
    assert sum(e == str(label) for e, label in zip(expected, labels, strict=True)) >= 14

    # without the registration the IR is no kind a command knows: one line, exit 2
    refused = run_command("infer/classify.py", "--model", str(toy_ir), str(paths[0]))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "model_type 'toy-digits-14'" in refused.stderr

    # classify.py, one digit per file and --multi, as the toy kind reads them
    single = run_command("infer/classify.py", "--model", str(toy_ir), "--precision", "f32",
                         "--json", *map(str, paths), env=TOY_ENV)
    assert single.returncode == 0, single.stderr
    rows = json.loads(single.stdout)
    assert [str(row["digit"]) for row in rows] == expected
    multi = run_command("infer/classify.py", "--model", str(toy_ir), "--precision", "f32",
                        "--multi", "--json", *map(str, paths[:5]), env=TOY_ENV)
    assert multi.returncode == 0, multi.stderr
    assert [row["number"] for row in json.loads(multi.stdout)] == \
        _expected(toy_ir, paths[:5], MULTI)

    # the server: the toy IR is the `digits` model, digit-reader reads files with its task
    server = Server("--model", str(toy_ir), "--precision", "f32", env=TOY_ENV)
    try:
        status, metadata = server.request("GET", "/v2/models/digits")
        assert status == 200 and metadata["inputs"][0]["shape"] == [-1, 14, 14, 1]
        import base64

        body = json.dumps({"inputs": [{
            "name": "images", "datatype": "BYTES", "shape": [3],
            "data": [base64.b64encode(p.read_bytes()).decode() for p in paths[:3]]}]})
        status, answer = server.request("POST", "/v2/models/digit-reader/infer", body.encode(),
                                        {"Content-Type": "application/json"})
        assert status == 200, answer
        results = [json.loads(item) for item in answer["outputs"][0]["data"]]
        assert [str(r["digit"]) for r in results] == expected[:3]
    finally:
        assert server.stop() == 0

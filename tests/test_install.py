"""Install per role: the pins agree everywhere, and the edge role alone runs classify and the
webcam pipeline (a real virtual environment built with pip from requirements-edge.txt)."""

from __future__ import annotations

import json
import re
import subprocess
import venv

import cv2
import pytest
from test_classify import paper_scene, reliable_digits
from test_webcam import write_video

from conftest import ROOT


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(3)
    return pins


def test_every_role_pins_the_versions_requirements_txt_pins():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    full = _pins((ROOT / "requirements.txt").read_text().splitlines())
    full |= _pins((ROOT / "requirements-peers.txt").read_text().splitlines())
    roles = project["optional-dependencies"]
    assert {"edge", "train", "serve", "peers", "dev"} <= set(roles)
    for role, requirements in roles.items():
        for name, version in _pins(requirements).items():
            if name in full:  # serve's pins live in requirements.txt once serving lands
                assert full[name] == version, (role, name, version, full[name])
    edge = _pins(roles["edge"])
    assert {"openvino", "opencv-python", "numpy"} <= set(edge)
    assert not {"tensorflow", "keras", "nncf"} & set(edge)  # the point of the edge role


@pytest.mark.slow
def test_the_edge_install_runs_classify_and_the_headless_webcam(ir_models_dir, mnist,
                                                                 tmp_path):
    environment = tmp_path / "edge"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", "requirements-edge.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; "
         "print([m for m in ('tensorflow', 'keras', 'nncf', 'matplotlib') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]"  # nothing of the training role on disk

    digits = reliable_digits(ir_models_dir, mnist)
    photo = tmp_path / "seven.png"
    cv2.imwrite(str(photo), paper_scene([digits[7][0]], [(60, 50)], size=(260, 260),
                                        digit_px=150))
    model = str(ir_models_dir / "ir" / "int8" / "model.xml")
    env = {"PATH": str(environment / "bin"), "HOME": str(tmp_path)}  # nothing from this venv
    classify = subprocess.run([python, str(ROOT / "infer/classify.py"), "--model", model,
                               "--json", str(photo)],
                              capture_output=True, text=True, env=env, timeout=300)
    assert classify.returncode == 0, classify.stderr
    assert json.loads(classify.stdout)[0]["digit"] == 7
    # Asking an edge box for TensorFlow is a clear refusal, not a traceback.
    native = subprocess.run([python, str(ROOT / "infer/classify.py"), "--model",
                             str(ir_models_dir), "--backend", "tf", str(photo)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert native.returncode == 2, native.stderr
    assert native.stderr.strip().splitlines() == [
        "classify.py: error: the tensorflow backend needs tensorflow: pip install -r "
        "requirements.txt (the full install; an edge box runs OpenVINO IRs)"]

    frames = [paper_scene([digits[3][0], digits[8][0]], [(60 + k, 150), (300, 160 + k)],
                          size=(480, 640), digit_px=110, seed=k) for k in range(10)]
    video = tmp_path / "digits.mp4"
    write_video(video, frames)
    jsonl = tmp_path / "frames.jsonl"
    webcam = subprocess.run([python, str(ROOT / "infer/webcam.py"), "--no-display", "--source",
                             str(video), "--model", model, "--jsonl", str(jsonl)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert webcam.returncode == 0, webcam.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 10
    assert [d["digit"] for d in records[0]["detections"]] == [3, 8]

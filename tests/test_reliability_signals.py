"""SIGTERM and SIGHUP are treated like Ctrl-C (issue 13, class 3; Windows: issue 22).

``kill``, a closed terminal, ``timeout``, ``docker stop`` or a service manager stop a run: it
exits with one line and status 130, earlier outputs stay byte-identical, no staging is left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_reliability_outputs import snapshot, write_counting_clip

from conftest import ROOT, with_default_signals
from edgedigits import contract

# Sent with POSIX's kill (the commands' Windows signals are tests/test_system.py's).
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals sent by kill")
SIGNALS = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / args[0]), *args[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=with_default_signals,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if marker in line:
            return
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail(f"never saw {marker!r}: {process.communicate()}")


def wait_for_staging(folder: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(f".tmp-{process.pid}-" in name for name in os.listdir(folder)):
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no staging appeared in {folder}: {process.communicate()}")


def stop(process: subprocess.Popen, signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    return process.returncode, stderr


def assert_clean_stop(code: int, stderr: str, signum: int, folder: Path, before: dict) -> None:
    assert code == 130, stderr
    assert stderr.strip().splitlines() == [stderr.strip()], stderr  # one line
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert snapshot(folder) == before
    assert not [name for name in os.listdir(folder) if ".tmp-" in name]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    return write_counting_clip(tmp_path_factory.mktemp("long") / "long.mp4", 3000, (320, 240), 30)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_webcam_stopped_by_a_signal_keeps_earlier_outputs(ir_models_dir, long_clip, tmp_path,
                                                          signum):
    (tmp_path / "out.jsonl").write_text('{"earlier": 1}\n')
    (tmp_path / "out.mp4").write_bytes(b"earlier video")
    before = snapshot(tmp_path)
    process = start("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                    "--source", str(long_clip), "--realtime", "--jsonl",
                    str(tmp_path / "out.jsonl"), "--save", str(tmp_path / "out.mp4"))
    wait_for_staging(tmp_path, process)
    time.sleep(1.0)  # frames are being written
    code, stderr = stop(process, signum)
    assert_clean_stop(code, stderr, signum, tmp_path, before)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_convert_stopped_by_a_signal_keeps_the_previous_ir(ir_models_dir, tmp_path, signum):
    models = tmp_path / "models"
    shutil.copytree(ir_models_dir, models, symlinks=True)
    ir = models / contract.IR_DIR
    before = snapshot(ir)
    process = start("convert/to_ir.py", "--int8", "--calibration-size", "100",
                    env={contract.MODELS_DIR_ENV: str(models)})
    wait_for_line(process, "source:")
    wait_for_staging(ir, process)
    time.sleep(0.5)
    code, stderr = stop(process, signum)
    assert_clean_stop(code, stderr, signum, ir, before)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_train_stopped_by_a_signal_keeps_the_previous_model(small_model_dir, tmp_path, signum):
    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models, symlinks=True)
    before = snapshot(models)
    process = start("train/train.py", "--output", str(models), "--train-size", "3000",
                    "--epochs", "200", "--validation-size", "500")
    wait_for_line(process, "Training")
    time.sleep(3.0)  # inside the training loop
    code, stderr = stop(process, signum)
    assert_clean_stop(code, stderr, signum, models, before)

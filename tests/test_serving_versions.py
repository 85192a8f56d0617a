"""Live model versions (edgedigits/serving/versions.py) and weights held in memory, on a real
server: ``infer/serve.py`` in a subprocess on free ports, real IRs converted by the tests'
fixtures, published into a model repository the way convert/to_ir.py publishes them
(``model_repository.publish_version``: one rename, under the version lock) while clients keep
sending requests.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_serving import Server, _png

from conftest import run_command
from edgedigits import contract, runtime
from edgedigits import model_repository as repository

VARIANTS = {1: "fp32", 2: "int8", 3: "fp16", 4: "fp32"}  # version -> the IR it publishes


def _ir(models_dir: Path, variant: str) -> Path:
    return models_dir / contract.IR_DIR / variant / contract.IR_FILE


def _infer(connection: http.client.HTTPConnection, images: np.ndarray,
           version: str | None = None) -> tuple[int, dict]:
    body = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape),
                                   "datatype": "UINT8", "data": images.ravel().tolist()}]})
    path = "/v2/models/digits" + (f"/versions/{version}" if version else "") + "/infer"
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


class Clients:
    """Threads sending requests without pause: digits over REST (what answered, which version),
    digit-reader over REST; every answer recorded."""

    def __init__(self, server: Server, images: np.ndarray, png: bytes) -> None:
        self.server, self.images, self.png = server, images, png
        self.answers: list[tuple[float, int, str | None, np.ndarray | None]] = []
        self.reader_statuses: list[int] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._digits, daemon=True),
                         threading.Thread(target=self._reader, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _digits(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.http_port, timeout=60)
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status, answer = _infer(connection, self.images)
            except (OSError, http.client.HTTPException):
                status, answer = 0, {}
                connection = http.client.HTTPConnection("127.0.0.1", self.server.http_port,
                                                        timeout=60)
            self.slowest = max(self.slowest, time.perf_counter() - started)
            outputs = answer.get("outputs") or [{}]
            data = outputs[0].get("data")
            self.answers.append((time.monotonic(), status, answer.get("model_version"),
                                 None if data is None else
                                 np.array(data, np.float32).reshape(len(self.images), 10)))

    def _reader(self) -> None:
        import base64

        body = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                       "data": [base64.b64encode(self.png).decode()]}]})
        while not self._stop.is_set():
            try:
                status, _ = self.server.request("POST", "/v2/models/digit-reader/infer",
                                                body.encode())
            except OSError:
                status = 0
            self.reader_statuses.append(status)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_new_versions_are_served_live_under_load(ir_models_dir, mnist, tmp_path):
    serving = tmp_path / "models" / repository.SERVING_DIR
    repository.publish_version(_ir(ir_models_dir, VARIANTS[1]), serving)
    images = mnist.x_test[:8, :, :, None]
    expected = {version: runtime.load_classifier(_ir(ir_models_dir, variant),
                                                 inference_precision="f32").predict(images)
                for version, variant in VARIANTS.items()}
    # Each published version is told apart by its answers (fp32, int8 and fp16 weights).
    gaps = [np.abs(expected[a] - expected[b]).max() for a, b in ((1, 2), (1, 3), (2, 3))]
    tolerance = min(gaps) / 4

    def answered_by(version: str, probabilities: np.ndarray) -> bool:
        return np.abs(probabilities - expected[int(version)]).max() <= tolerance

    server = Server("--model", str(serving / "digits"), "--precision", "f32",
                    "--model-version-policy", "latest 2")
    clients = Clients(server, images, _png(mnist.x_test[0]))
    try:
        assert server.request("GET", "/v2/models/digits")[1]["versions"] == ["1"]
        for version in (2, 3, 4):
            time.sleep(1.5)  # requests on the version being replaced
            published = repository.publish_version(_ir(ir_models_dir, VARIANTS[version]), serving)
            assert published.name == str(version)
            _wait_for(lambda v=version: clients.answers[-1][2] == str(v),
                      what=f"version {version}")
            assert server.request("GET", "/v2/models/digits")[1]["versions"] == [
                str(version - 1), str(version)]  # latest 2
        # Every version still loaded answers at its own route, with its own weights.
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        for version in ("3", "4"):
            status, answer = _infer(connection, images, version)
            assert status == 200 and answer["model_version"] == version
            assert answered_by(version, np.array(answer["outputs"][0]["data"]).reshape(8, 10))
        status, answer = _infer(connection, images, "1")  # unloaded by latest 2
        assert status == 404 and "no version '1' loaded" in answer["error"]

        # A broken version (truncated weights, published whole) is refused; 4 keeps serving.
        broken = tmp_path / "broken"
        broken.mkdir()
        shutil.copyfile(_ir(ir_models_dir, "fp32"), broken / contract.IR_FILE)
        (broken / "model.bin").write_bytes(_ir(ir_models_dir, "fp32").with_suffix(
            ".bin").read_bytes()[:1000])
        os.rename(broken, serving / "digits" / "5")
        _wait_for(lambda: any("version 5 not loaded" in line for line in server.stderr),
                  what="the refusal of version 5")
        refusal = [line for line in server.stderr if "version 5 not loaded" in line]
        assert len(refusal) == 1 and "still serving 3, 4" in refusal[0], refusal
        assert server.request("GET", "/v2/models/digits")[1]["versions"] == ["3", "4"]
        settled = len(clients.answers)
        time.sleep(1.5)
        assert {a[2] for a in clients.answers[settled:]} == {"4"}

        # The newest folder removed: back to the previous version (2 and 3 under latest 2).
        shutil.rmtree(serving / "digits" / "5")
        shutil.rmtree(serving / "digits" / "4")
        _wait_for(lambda: clients.answers[-1][2] == "3", what="the return to version 3")
        assert server.request("GET", "/v2/models/digits")[1]["versions"] == ["2", "3"]
    finally:
        clients.stop()
    try:
        # 0 failed requests, and each answer is the one of the version it names.
        statuses = [a[1] for a in clients.answers]
        assert statuses.count(200) == len(statuses), [s for s in statuses if s != 200][:5]
        assert clients.reader_statuses.count(200) == len(clients.reader_statuses)
        for _, _, version, probabilities in clients.answers:
            assert answered_by(version, probabilities), version
        seen = [a[2] for a in clients.answers]
        assert [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]] == [
            "1", "2", "3", "4", "3"]
        print(f"{len(statuses)} digits requests and {len(clients.reader_statuses)} digit-reader "
              f"requests, slowest digits request {clients.slowest * 1000:.0f} ms")
        # /metrics: the versions loaded, the unloaded ones' series gone.
        status, text = server.request("GET", "/metrics")
        loaded = sorted(line.split('version="')[1].split('"')[0] for line in text.splitlines()
                        if line.startswith("edgedigits_model_loaded{") and 'model="digits"' in line)
        assert loaded == ["2", "3"], loaded
        lines = "".join(server.stdout)
        assert "digits: version 4 loaded" in lines and "version 4 unloaded" in lines
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_loaded_weights_do_not_follow_the_file(ir_models_dir, mnist, tmp_path):
    """Issue 20 row 10: cp over model.bin, then truncate it, while the server runs: the answers
    stay those of the weights loaded (OpenVINO mapped model.bin: INT8 answers changed, a
    truncated file could SIGBUS the server)."""
    folder = tmp_path / "int8"
    shutil.copytree(_ir(ir_models_dir, "int8").parent, folder)
    server = Server("--model", str(folder / contract.IR_FILE))
    try:
        images = mnist.x_test[:64, :, :, None]
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        status, before = _infer(connection, images)
        assert status == 200
        weights = np.fromfile(folder / "model.bin", np.uint8)
        np.random.default_rng(1).shuffle(weights)  # another model's weights, same size
        with open(folder / "model.bin", "r+b") as file:  # in place, as cp and scp write
            file.write(weights.tobytes())
        expected = np.array(before["outputs"][0]["data"]).reshape(-1, 10)
        for batch in (images, images[:3], images[:1], images):  # compiled shapes, and new ones
            status, after = _infer(connection, batch)
            assert status == 200
            answer = np.array(after["outputs"][0]["data"]).reshape(-1, 10)
            assert np.abs(answer - expected[:len(batch)]).max() <= 1e-5
        os.truncate(folder / "model.bin", 100)
        status, after = _infer(connection, images)
        assert status == 200
        answer = np.array(after["outputs"][0]["data"]).reshape(-1, 10)
        assert np.abs(answer - expected).max() <= 1e-5
        assert server.process.poll() is None
    finally:
        assert server.stop() == 0


def test_version_policy_is_ovms_model_version_policy():
    parse = repository.parse_policy
    assert parse("latest 2").select([1, 2, 3, 5]) == [3, 5]
    assert parse("latest").select([4, 1]) == [4]
    assert parse("all").select([3, 1, 2]) == [1, 2, 3]
    assert parse("specific 1,3").select([1, 2, 3, 4]) == [1, 3]
    assert parse("specific 7").select([1, 2]) == []
    assert str(parse("specific 3, 1")) == "specific 1,3"
    for wrong in ("latest 0", "newest 1", "specific", "specific a", "all 2", ""):
        with pytest.raises(Exception, match="expected 'latest N'"):
            parse(wrong)
    result = run_command("infer/serve.py", "--model-version-policy", "latest zero")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "expected 'latest N'" in result.stderr


def test_a_repository_with_nothing_to_serve_is_one_line_and_exit_2(ir_models_dir, tmp_path):
    broken = tmp_path / "digits" / "1"
    broken.mkdir(parents=True)
    shutil.copyfile(_ir(ir_models_dir, "fp32"), broken / contract.IR_FILE)
    (broken / "model.bin").write_bytes(b"\0" * 100)
    result = run_command("infer/serve.py", "--model", str(tmp_path / "digits"),
                         "--number-model", "none")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "digits version 1 not loaded" in result.stderr
    assert "no version of" in result.stderr.splitlines()[-1]
    repository.publish_version(_ir(ir_models_dir, "fp32"), tmp_path)  # version 2, loadable
    result = run_command("infer/serve.py", "--model", str(tmp_path / "digits"),
                         "--number-model", "none", "--model-version-policy", "specific 7")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'specific 7' selects none of the versions" in result.stderr

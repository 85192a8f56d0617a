"""infer/serve.py as clients use it: a real server in a subprocess on free ports, real clients.

tritonclient (the client OVMS documents) over REST with the binary tensor extension and over
gRPC; raw HTTP for the bad requests a client can send. kserve is never imported in this process
(it and tritonclient.grpc register the same protobuf symbols): the server runs in its own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_classify import reliable_digits
from test_webcam import write_video

from conftest import ROOT, run_command, with_default_signals
from edgedigits import contract, runtime
from edgedigits import model_repository as repository
from edgedigits.data.render import paper_scene
from edgedigits.reading import classify

SCRIPT = "infer/serve.py"
MAX_BATCH = 64
MAX_BODY_MB = 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``python infer/serve.py ...`` on free ports; waits for its ready line."""

    def __init__(self, *args: str, env: dict | None = None, timeout: float = 120) -> None:
        if "--number-model" not in args:  # not whatever ./models/number-reader holds here
            args = (*args, "--number-model", "none")
        self.http_port, self.grpc_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / SCRIPT), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=with_default_signals)  # a terminal's SIGHUP/SIGINT, even under nohup
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._drains = [threading.Thread(target=self._drain, args=(self.process.stderr,
                                                                   self.stderr), daemon=True)]
        self._drains[0].start()
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.stdout.append(line)
            if line.startswith("ready in"):
                break
            if time.monotonic() > deadline:
                break
        if not any(line.startswith("ready in") for line in self.stdout):
            self.process.kill()
            raise AssertionError(f"server did not start: {''.join(self.stdout)}"
                                 f"{''.join(self.stderr)}")
        self._drains.append(threading.Thread(target=self._drain,
                                             args=(self.process.stdout, self.stdout), daemon=True))
        self._drains[-1].start()

    @staticmethod
    def _drain(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, dict | str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        for drain in self._drains:  # all it said, up to its last line
            drain.join(timeout=5)
        return code


@pytest.fixture(scope="module")
def fp32_ir(ir_models_dir) -> Path:
    return ir_models_dir / contract.IR_DIR / "fp32" / contract.IR_FILE


@pytest.fixture(scope="module")
def server(fp32_ir):
    """The OpenVINO server on the FP32 IR at f32, limits small enough to test."""
    running = Server("--model", str(fp32_ir), "--precision", "f32", "--max-batch", str(MAX_BATCH),
                     "--max-body-mb", str(MAX_BODY_MB), "--max-images", "8")
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def local(fp32_ir):
    """The in-process runtime on the same IR, same precision: what the server must match."""
    return runtime.load_classifier(fp32_ir, inference_precision="f32")


@pytest.fixture(scope="module")
def digits(ir_models_dir, mnist):
    return reliable_digits(ir_models_dir, mnist, per_class=1)


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _http_client(server):
    import tritonclient.http as client

    return client, client.InferenceServerClient(server.url)


# --------------------------------------------------------------------------------------------
# The OVMS model repository convert lays out


def test_convert_writes_an_ovms_repository_and_keeps_old_versions(ir_models_dir, tmp_path):
    serving = ir_models_dir / repository.SERVING_DIR
    config = json.loads((serving / repository.CONFIG_FILE).read_text())
    assert config == {"model_config_list": [{"config": {
        "name": "digits", "base_path": "digits",
        "model_version_policy": {"latest": {"num_versions": 1}}}}]}
    assert repository.versions(serving / "digits") == [1]
    int8 = ir_models_dir / contract.IR_DIR / "int8"  # the best variant the run wrote
    version = serving / "digits" / "1"
    assert (version / "model.xml").read_bytes() == (int8 / "model.xml").read_bytes()
    assert (version / "model.bin").read_bytes() == (int8 / "model.bin").read_bytes()
    assert runtime.load_classifier(version / "model.xml").variant == "int8"

    # A second conversion adds version 2 beside version 1 and leaves no temporary behind.
    copy = tmp_path / "models"
    (copy / "ir").mkdir(parents=True)
    for variant in ("fp32", "int8"):
        (copy / "ir" / variant).mkdir()
        for name in ("model.xml", "model.bin"):
            (copy / "ir" / variant / name).write_bytes((ir_models_dir / "ir" / variant /
                                                        name).read_bytes())
    repository.publish_best(copy / "ir", ["fp32"])
    written = repository.publish_best(copy / "ir", ["fp32", "int8"])
    assert repository.versions(copy / "serving" / "digits") == [1, 2]
    assert sorted(p.name for p in (copy / "serving" / "digits").iterdir()) == ["1", "2"]
    assert written[0] == str(copy / "serving" / "digits" / "2" / "model.xml")
    assert ((copy / "serving" / "digits" / "2" / "model.bin").read_bytes()
            == (copy / "ir" / "int8" / "model.bin").read_bytes())
    assert ((copy / "serving" / "digits" / "1" / "model.bin").read_bytes()
            == (copy / "ir" / "fp32" / "model.bin").read_bytes())


# --------------------------------------------------------------------------------------------
# Round trips: the server's numbers are the runtime's numbers


def test_metadata_health_and_page(server):
    assert server.request("GET", "/v2/health/live") == (200, {"live": True})
    assert server.request("GET", "/v2/health/ready") == (200, {"ready": True})
    status, metadata = server.request("GET", "/v2/models/digits")
    assert status == 200
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8",
                                   "shape": [-1, 28, 28, 1]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32",
                                    "shape": [-1, 10]}]
    assert server.request("GET", "/v2/models/digit-reader/ready")[0] == 200
    assert server.request("GET", "/v2/models/digits-tf/ready")[0] in (400, 404)  # no --compare
    status, page = server.request("GET", "/")
    assert status == 200 and "<html" in page.lower()
    assert server.request("GET", "/index.html")[0] == 200


def test_rest_binary_and_json_equal_the_runtime(server, local, mnist):
    client, triton = _http_client(server)
    images = mnist.x_test[:MAX_BATCH, :, :, None]
    expected = local.predict(images)
    for binary in (True, False):
        tensor = client.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images, binary_data=binary)
        output = client.InferRequestedOutput("probabilities", binary_data=binary)
        result = triton.infer("digits", [tensor], outputs=[output]).as_numpy("probabilities")
        assert result.dtype == np.float32 and result.shape == (MAX_BATCH, 10)
        assert np.abs(result - expected).max() <= 1e-6, binary
    single = images[:1]
    tensor = client.InferInput("images", [1, 28, 28, 1], "UINT8")
    tensor.set_data_from_numpy(single, binary_data=True)
    result = triton.infer("digits", [tensor]).as_numpy("probabilities")
    assert np.abs(result - expected[:1]).max() <= 1e-6


def test_grpc_equals_the_runtime_with_raw_tensors(server, local, mnist):
    import tritonclient.grpc as client

    triton = client.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    assert triton.is_server_ready() and triton.is_model_ready("digits")
    images = mnist.x_test[100:100 + MAX_BATCH, :, :, None]
    tensor = client.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = triton.infer("digits", [tensor])
    assert len(result.get_response().raw_output_contents) == 1  # what tritonclient reads
    probabilities = result.as_numpy("probabilities")
    assert np.abs(probabilities - local.predict(images)).max() <= 1e-6

    # digit-reader over gRPC: BYTES in, JSON rows out
    encoded = np.array([_png(image) for image in mnist.x_test[:3]], dtype=np.object_)
    tensor = client.InferInput("images", [3], "BYTES")
    tensor.set_data_from_numpy(encoded)
    rows = [json.loads(r) for r in triton.infer("digit-reader", [tensor]).as_numpy("results")]
    assert [row["path"] for row in rows] == ["images[0]", "images[1]", "images[2]"]

    # a bad request is INVALID_ARGUMENT, and the next one is served
    wrong = client.InferInput("images", [1, 28, 28, 1], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(client.InferenceServerException, match="UINT8") as refused:
        triton.infer("digits", [wrong])
    assert "INVALID_ARGUMENT" in str(refused.value.status())
    assert triton.infer("digits", [tensor_of(client, images[:1])]).as_numpy(
        "probabilities").shape == (1, 10)


def tensor_of(client, images):
    tensor = client.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return tensor


# --------------------------------------------------------------------------------------------
# digit-reader: the rows classify.py --json prints


def test_reader_rows_are_classify_rows(server, local, digits, tmp_path):
    client, triton = _http_client(server)
    single = tmp_path / "single.png"
    cv2.imwrite(str(single), paper_scene([digits[7][0]], [(60, 50)], size=(260, 240),
                                         digit_px=140, seed=1))
    number = tmp_path / "number.jpg"
    cv2.imwrite(str(number), paper_scene([digits[d][0] for d in (4, 0, 9)],
                                         [(30, 120), (220, 100), (410, 130)], seed=2))
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200), 230, np.uint8))
    files = [single, number, blank]

    def ask(parameters: dict) -> list[dict]:
        encoded = np.array([f.read_bytes() for f in files], dtype=np.object_)
        tensor = client.InferInput("images", [len(files)], "BYTES")
        tensor.set_data_from_numpy(encoded, binary_data=True)
        result = triton.infer("digit-reader", [tensor], parameters=parameters)
        return [json.loads(row) for row in result.as_numpy("results")]

    for multi in (False, True):
        rows = ask({"multi": multi, "preprocessed": True})
        expected = classify.classify_inputs(local, [str(f) for f in files], multi, quiet=True)
        for i, (row, want) in enumerate(zip(rows, expected, strict=True)):
            want = want.as_json(multi)
            assert row.pop("path") == f"images[{i}]" and want.pop("path") == str(files[i])
            assert row.pop("inference_ms") >= 0
            preprocessed = row.pop("preprocessed")
            assert row == want
            if want["error"]:  # blank: no digit, no guess, nothing the model saw
                assert want["digit"] is None and preprocessed in (None, [])
                continue
            urls = preprocessed if multi else [preprocessed]
            assert len(urls) == (len(want["detections"]) if multi else 1)
            seen = cv2.imdecode(np.frombuffer(base64.b64decode(urls[0].split(",", 1)[1]),
                                              np.uint8), cv2.IMREAD_UNCHANGED)
            assert seen.shape == (28, 28) and seen.dtype == np.uint8
        if multi:
            assert rows[1]["number"] == "409"
        else:
            assert rows[0]["digit"] == 7

    # JSON clients send the image as base64 text
    body = json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                   "data": [base64.b64encode(single.read_bytes()).decode()]}]})
    status, answer = server.request("POST", "/v2/models/digit-reader/infer", body.encode())
    assert status == 200, answer
    assert json.loads(answer["outputs"][0]["data"][0])["digit"] == 7

    # compare needs a server started with --compare
    status, answer = server.request("POST", "/v2/models/digit-reader/infer", json.dumps(
        {"inputs": json.loads(body)["inputs"], "parameters": {"compare": True}}).encode())
    assert status == 400 and "TensorFlow is not loaded" in answer["error"]


# --------------------------------------------------------------------------------------------
# Bad input: a 4xx with one line, and the server keeps serving


def _valid_json_request(mnist) -> bytes:
    image = mnist.x_test[0][None, :, :, None]
    return json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                   "datatype": "UINT8", "data": image.ravel().tolist()}]}).encode()


def _bytes_request(blobs: list[bytes]) -> tuple[bytes, dict]:
    """A digit-reader request with the binary tensor extension, as the page sends it."""
    payload = b"".join(len(blob).to_bytes(4, "little") + blob for blob in blobs)
    header = json.dumps({"inputs": [{"name": "images", "shape": [len(blobs)],
                                     "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return header + payload, {"Inference-Header-Content-Length": str(len(header)),
                              "Content-Type": "application/octet-stream"}


def _bomb() -> bytes:
    """A 36-megapixel PNG of one colour: ~40 KB on the wire, 36 MB+ once decoded."""
    return _png(np.zeros((6000, 6000), np.uint8))


BAD_REQUESTS = {
    "not JSON": ("digits", lambda mnist: (b"\x89PNG this is not json", {}), 400, "not JSON"),
    "wrong datatype": ("digits", lambda mnist: (json.dumps({"inputs": [{
        "name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32",
        "data": [0.0] * 784}]}).encode(), {}), 400, "must be UINT8"),
    "wrong shape": ("digits", lambda mnist: (json.dumps({"inputs": [{
        "name": "images", "shape": [1, 28, 28], "datatype": "UINT8",
        "data": [0] * 784}]}).encode(), {}), 400, "[N, 28, 28, 1]"),
    "data not matching shape": ("digits", lambda mnist: (json.dumps({"inputs": [{
        "name": "images", "shape": [2, 28, 28, 1], "datatype": "UINT8",
        "data": [0] * 784}]}).encode(), {}), 400, "does not match"),
    "over the batch limit": ("digits", lambda mnist: (json.dumps({"inputs": [{
        "name": "images", "shape": [MAX_BATCH + 1, 28, 28, 1], "datatype": "UINT8",
        "data": [0] * 784 * (MAX_BATCH + 1)}]}).encode(), {}), 400, "limit of 64"),
    "bytes that are not an image": ("digit-reader", lambda mnist: _bytes_request(
        [b"GIF89a but not really an image at all"]), 400, "images[0]"),
    "BYTES elements cut short": ("digit-reader", lambda mnist: _cut_bytes(), 400,
                                 "does not match"),
    "decompression bomb": ("digit-reader", lambda mnist: _bytes_request([_bomb()]), 400,
                           "pixels"),
    "unknown model": ("no-such-model", lambda mnist: (_valid_json_request(mnist), {}), 404,
                      "no-such-model"),
    "binary size past the body": ("digits", lambda mnist: _short_binary(), 400, "past the end"),
}


def _cut_bytes() -> tuple[bytes, dict]:
    """A BYTES element whose 4-byte length promises more than the tensor holds."""
    body, headers = _bytes_request([b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
    header_length = int(headers["Inference-Header-Content-Length"])
    header, payload = body[:header_length], body[header_length:]
    cut = (1000).to_bytes(4, "little") + payload[4:]
    return header + cut, headers


def _short_binary() -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                     "datatype": "UINT8",
                                     "parameters": {"binary_data_size": 784}}]}).encode()
    return header + b"\0" * 10, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_a_4xx_with_one_line_and_the_server_keeps_serving(server, mnist, case):
    model, make, status, text = BAD_REQUESTS[case]
    body, headers = make(mnist)
    got, answer = server.request("POST", f"/v2/models/{model}/infer", body, headers)
    assert got == status, answer
    assert isinstance(answer, dict) and text in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    got, answer = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist))
    assert got == 200 and len(answer["outputs"][0]["data"]) == 10


def _raw_exchange(port: int, head: bytes, timeout: float = 10) -> bytes:
    """Send ``head`` (request line, headers, maybe part of a body) and read what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        raw.sendall(head)
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received and b'"}' in received:
                break
        return received


def test_body_over_the_size_limit_is_413_before_it_is_read(server, mnist):
    declared = (MAX_BODY_MB << 20) + 1
    answer = _raw_exchange(server.http_port, b"POST /v2/models/digits/infer HTTP/1.1\r\n"
                           b"Host: 127.0.0.1\r\n" + f"Content-Length: {declared}\r\n\r\n".encode()
                           + b"{" * 1000)
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line, answer[:200]
    assert b"over this server's limit" in rest
    # chunked, no Content-Length: counted as it arrives
    chunk = b"x" * (1 << 20)
    head = (b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                    for _ in range(MAX_BODY_MB + 1)) + b"0\r\n\r\n"
    answer = _raw_exchange(server.http_port, head + body)
    assert b" 413 " in answer.partition(b"\r\n")[0], answer[:200]
    got, _ = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist))
    assert got == 200


def test_client_vanishing_mid_request_leaves_the_server_serving(server, mnist):
    for declared in (100_000, 4096):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=10) as raw:
            raw.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\n"
                        + f"Content-Length: {declared}\r\n\r\n".encode() + b'{"inputs": [')
        time.sleep(0.2)
    got, _ = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist))
    assert got == 200
    assert server.process.poll() is None
    assert "Traceback" not in "".join(server.stderr)


# --------------------------------------------------------------------------------------------
# The process: no TensorFlow, start-up errors, graceful stop


def test_the_openvino_server_never_loads_tensorflow(server):
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert "site-packages/openvino/" in maps  # the check can see packages' shared libraries
    # TensorFlow's own package and runtime (openvino's TF *frontend* library is not TensorFlow)
    assert "site-packages/tensorflow/" not in maps
    assert "libtensorflow_framework" not in maps


def test_start_up_errors_are_one_line(server, tmp_path):
    taken = run_command(SCRIPT, "--http-port", str(server.http_port), "--grpc-port",
                        str(free_port()), timeout=120)
    assert taken.returncode == 2
    assert "cannot listen on" in taken.stderr and "Traceback" not in taken.stderr
    missing = run_command(SCRIPT, "--model", str(tmp_path / "none.xml"), "--http-port",
                          str(free_port()), "--grpc-port", str(free_port()), timeout=120)
    assert missing.returncode == 2 and "model not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_sigterm_finishes_the_request_in_flight_and_exits_0(fp32_ir, digits):
    server = Server("--model", str(fp32_ir), "--max-images", "64")
    scene = paper_scene([digits[d][0] for d in (1, 2, 3)], [(30, 120), (220, 100), (410, 130)],
                        size=(1200, 1600), digit_px=300, seed=3)
    body, headers = _bytes_request([cv2.imencode(".jpg", scene)[1].tobytes()] * 48)
    answers = []
    worker = threading.Thread(target=lambda: answers.append(server.request(
        "POST", "/v2/models/digit-reader/infer", body, headers)))
    worker.start()
    time.sleep(0.3)  # the request is in: now ask the server to stop
    code = server.stop(signal.SIGTERM)
    worker.join(timeout=60)
    assert code == 0, "".join(server.stderr)
    assert answers and answers[0][0] == 200, answers
    assert len(answers[0][1]["outputs"][0]["data"]) == 48
    assert "Traceback" not in "".join(server.stderr)


# --------------------------------------------------------------------------------------------
# --server: the same commands through the server, the same output


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_classify_through_the_server_prints_what_local_classify_prints(server, fp32_ir, digits,
                                                                       tmp_path, scheme):
    folder = tmp_path / "photos"
    folder.mkdir()
    for label in (0, 3, 8):
        cv2.imwrite(str(folder / f"{label}.png"), paper_scene(
            [digits[label][0]], [(50, 40)], size=(240, 260), digit_px=150, seed=label))
    cv2.imwrite(str(folder / "number.jpg"), paper_scene(
        [digits[d][0] for d in (5, 6)], [(30, 120), (250, 100)], seed=4))
    port = server.http_port if scheme == "http" else server.grpc_port
    for extra in ([], ["--multi"]):
        local = run_command("infer/classify.py", "--json", "--model", str(fp32_ir),
                            "--precision", "f32", str(folder), *extra)
        remote = run_command("infer/classify.py", "--json", "--server",
                             f"{scheme}://127.0.0.1:{port}", str(folder), *extra)
        assert remote.returncode == local.returncode == 0, remote.stderr
        assert json.loads(remote.stdout) == json.loads(local.stdout)
    refused = run_command("infer/classify.py", "--server", f"{scheme}://127.0.0.1:{free_port()}",
                          str(folder))
    assert refused.returncode == 2 and "cannot reach" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_webcam_through_the_server_reads_what_local_webcam_reads(server, fp32_ir, digits,
                                                                 tmp_path):
    path = tmp_path / "digits.mp4"
    write_video(path, [paper_scene([digits[(i + k * 3) % 10][0] for k in range(3)],
                                   [(40 + 190 * k + i, 150 + 20 * k) for k in range(3)],
                                   digit_px=110, seed=i) for i in range(20)])
    local_lines, remote_lines = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    common = ["--source", str(path), "--no-display", "--max-frames", "20"]
    local = run_command("infer/webcam.py", *common, "--jsonl", str(local_lines), "--model",
                        str(fp32_ir), "--precision", "f32")
    remote = run_command("infer/webcam.py", *common, "--jsonl", str(remote_lines), "--server",
                         f"http://{server.url}")
    assert local.returncode == remote.returncode == 0, remote.stderr
    local_records = [json.loads(line) for line in local_lines.read_text().splitlines()]
    remote_records = [json.loads(line) for line in remote_lines.read_text().splitlines()]
    assert len(remote_records) == 20
    assert [r["detections"] for r in remote_records] == [r["detections"] for r in local_records]
    assert sum(len(r["detections"]) for r in remote_records) >= 20


@pytest.mark.slow
def test_compare_server_answers_with_tensorflow_beside_openvino(ir_models_dir, digits, mnist):
    server = Server("--model", str(ir_models_dir), "--compare")
    try:
        assert server.request("GET", "/v2/models/digits-tf/ready") == (
            200, {"name": "digits-tf", "ready": True})
        images = mnist.x_test[:16, :, :, None]
        body = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape),
                                       "datatype": "UINT8",
                                       "data": images.ravel().tolist()}]}).encode()
        tf_answer = server.request("POST", "/v2/models/digits-tf/infer", body)[1]
        ov_answer = server.request("POST", "/v2/models/digits/infer", body)[1]
        tf_p = np.array(tf_answer["outputs"][0]["data"]).reshape(16, 10)
        ov_p = np.array(ov_answer["outputs"][0]["data"]).reshape(16, 10)
        assert (tf_p.argmax(1) == ov_p.argmax(1)).mean() >= 0.9  # INT8 IR against Keras

        scene = paper_scene([digits[2][0]], [(60, 50)], size=(260, 240), digit_px=140, seed=5)
        request, headers = _bytes_request([_png(scene)])
        header_length = int(headers["Inference-Header-Content-Length"])
        header = json.loads(request[:header_length])
        header["parameters"] = {"compare": True}
        new_header = json.dumps(header).encode()
        headers["Inference-Header-Content-Length"] = str(len(new_header))
        status, answer = server.request("POST", "/v2/models/digit-reader/infer",
                                        new_header + request[header_length:], headers)
        assert status == 200, answer
        row = json.loads(answer["outputs"][0]["data"][0])
        assert set(row["compare"]) == {"openvino", "tensorflow"}
        assert row["compare"]["openvino"]["digit"] == row["digit"] == 2
        assert row["compare"]["tensorflow"]["digit"] == 2
        assert row["compare"]["tensorflow"]["inference_ms"] > 0
    finally:
        assert server.stop() == 0


def test_reader_in_front_of_another_server_as_a_kserve_transformer(server, digits, tmp_path):
    """The transformer half alone: KServe's --predictor_host points it at the predictor."""
    front = Server("--predictor_host", server.url, "--model_name", "digit-reader")
    try:
        assert f"remote OIP v2 model 'digits' at http://{server.url}" in "".join(front.stdout)
        scene = paper_scene([digits[d][0] for d in (3, 1)], [(30, 120), (250, 100)], seed=6)
        request, headers = _bytes_request([_png(scene)])
        status, answer = front.request("POST", "/v2/models/digit-reader/infer", request, headers)
        assert status == 200, answer
        through_front = json.loads(answer["outputs"][0]["data"][0])
        status, answer = server.request("POST", "/v2/models/digit-reader/infer", request, headers)
        direct = json.loads(answer["outputs"][0]["data"][0])
        through_front.pop("inference_ms"), direct.pop("inference_ms")
        assert through_front == direct and direct["digit"] is not None
    finally:
        assert front.stop() == 0


@pytest.mark.slow
def test_multi_reading_uses_the_number_reader_when_the_server_has_one(fp32_ir, number_reader_dir,
                                                                     mnist, tmp_path):
    from edgedigits.data.render import written_number

    number = tmp_path / "number.png"
    cv2.imwrite(str(number), written_number(mnist.x_test[:4], np.random.default_rng(0),
                                            background="plain"))
    reader_ir = number_reader_dir / contract.IR_DIR / "fp32" / contract.IR_FILE
    running = Server("--model", str(fp32_ir), "--number-model", str(reader_ir),
                     "--precision", "f32")
    try:
        status, metadata = running.request("GET", "/v2/models/number-reader")
        assert status == 200
        assert metadata["inputs"][0]["shape"] == [-1, 32, 192, 1]
        assert metadata["outputs"][0]["shape"] == [-1, 48, 11]
        status, answer = running.request(
            "POST", "/v2/models/digit-reader/infer",
            json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES",
                                    "data": [base64.b64encode(number.read_bytes()).decode()]}],
                        "parameters": {"multi": True, "preprocessed": True}}).encode())
        assert status == 200, answer
        row = json.loads(answer["outputs"][0]["data"][0])
        with runtime.load_classifier(reader_ir, inference_precision="f32",
                                     accept=(contract.NUMBER_READER,)) as local:
            want = classify.classify_inputs(local, [str(number)], True, quiet=True)[0]
        want = want.as_json(True)
        row.pop("inference_ms")
        preprocessed = row.pop("preprocessed")
        assert row.pop("path") == "images[0]" and want.pop("path") == str(number)
        assert row == want
        seen = cv2.imdecode(np.frombuffer(base64.b64decode(preprocessed[0].split(",", 1)[1]),
                                          np.uint8), cv2.IMREAD_UNCHANGED)
        assert seen.shape == (32, 192)  # the line the number reader read
        # a digit-shaped tensor is not a line: 400, and the server keeps serving
        wrong = json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                        "datatype": "UINT8", "data": [0] * 784}]}).encode()
        status, answer = running.request("POST", "/v2/models/number-reader/infer", wrong)
        assert status == 400 and "[N, 32, 192, 1]" in str(answer)
        status, _ = running.request("GET", "/v2/models/number-reader/ready")
        assert status == 200
    finally:
        assert running.stop() == 0


def test_the_page_takes_the_model_names_from_the_server(server):
    status, names = server.request("GET", "/page-config.json")
    assert status == 200
    assert names == {"reader": "digit-reader", "input": "images", "output": "results",
                     "tensorflow": None, "number_reader": None}  # no --compare, --number-model
    status, metadata = server.request("GET", f"/v2/models/{names['reader']}")
    assert status == 200
    assert metadata["inputs"][0]["name"] == names["input"]
    assert metadata["outputs"][0]["name"] == names["output"]

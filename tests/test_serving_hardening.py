"""infer/serve.py facing a network (issue 20): what a browser on another site, a re-pointed name,
an admin route or an old protocol gets; the page's security headers; /metrics after real
requests; and on disk, zip bombs posing as .keras models and two publishers at once.

Every server here is a real ``infer/serve.py`` on free loopback ports (tests/test_serving.py's
``Server``); after each refusal a normal request is answered.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_serving import MAX_BATCH, Server, _bytes_request, _png, _valid_json_request

from conftest import run_command
from edgedigits import contract
from edgedigits import model_repository as repository
from edgedigits.data.render import paper_scene
from edgedigits.errors import UserError
from edgedigits.runtime.tensorflow_backend import check_keras_archive


@pytest.fixture(scope="module")
def fp32_ir(ir_models_dir):
    return ir_models_dir / contract.IR_DIR / "fp32" / contract.IR_FILE


@pytest.fixture(scope="module")
def server(fp32_ir):
    running = Server("--model", str(fp32_ir), "--precision", "f32", "--max-batch",
                     str(MAX_BATCH))
    yield running
    assert running.stop() == 0


def _still_serving(server, mnist) -> None:
    status, answer = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist))
    assert status == 200 and len(answer["outputs"][0]["data"]) == 10, answer


def _one_line_refusal(answer, status: int, got: int, text: str) -> None:
    assert got == status, answer
    assert isinstance(answer, dict) and text in answer["error"], answer
    assert "\n" not in answer["error"]


# --------------------------------------------------------------------------------------------
# 1. Model control: off unless --allow-model-control


def test_repository_load_and_unload_are_refused_without_the_flag(server, mnist):
    import tritonclient.grpc as grpc_client

    for action in ("unload", "load"):
        got, answer = server.request("POST", f"/v2/repository/models/digits/{action}")
        _one_line_refusal(answer, 403, got, "--allow-model-control")
        _still_serving(server, mnist)
    assert server.request("GET", "/v2/health/ready") == (200, {"ready": True})
    assert server.request("GET", "/v2/models/digits/ready")[0] == 200
    triton = grpc_client.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    with pytest.raises(grpc_client.InferenceServerException, match="--allow-model-control") as no:
        triton.unload_model("digits")
    assert "PERMISSION_DENIED" in str(no.value.status())
    assert triton.is_model_ready("digits")
    _still_serving(server, mnist)


def test_allow_model_control_turns_the_routes_on(fp32_ir, mnist):
    running = Server("--model", str(fp32_ir), "--allow-model-control")
    try:
        # KServe's route itself answers (an unknown model: its 404), not our refusal
        got, answer = running.request("POST", "/v2/repository/models/no-such-model/unload")
        assert got == 404 and "--allow-model-control" not in str(answer), answer
        _still_serving(running, mnist)
    finally:
        assert running.stop() == 0


# --------------------------------------------------------------------------------------------
# 2. Other web pages, and names re-pointed at 127.0.0.1


def test_cross_origin_browser_requests_are_refused_and_the_page_is_served(server, mnist):
    own = f"http://127.0.0.1:{server.http_port}"
    body = _valid_json_request(mnist)
    refused = [
        {"Origin": "http://evil.example"},
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},  # a "simple" request
        {"Origin": "null"},  # sandboxed frames, file: pages
        {"Origin": f"http://127.0.0.1:{server.http_port + 1}"},  # another port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": own, "Sec-Fetch-Site": "cross-site"},
    ]
    for headers in refused:
        for path in ("/v2/models/digits/infer", "/v2/models/digit-reader/infer",
                     "/v2/repository/models/digits/unload"):
            got, answer = server.request("POST", path, body, headers)
            _one_line_refusal(answer, 403, got, "cross-")
        _still_serving(server, mnist)
    # the page's own requests (a browser sends Origin and Sec-Fetch-Site on a same-origin POST)
    for headers in ({"Origin": own, "Sec-Fetch-Site": "same-origin"},
                    {"Origin": f"http://localhost:{server.http_port}",
                     "Host": f"localhost:{server.http_port}"}, {}):
        got, answer = server.request("POST", "/v2/models/digits/infer", body, headers)
        assert got == 200, (headers, answer)
    request, headers = _bytes_request([_png(mnist.x_test[0])])
    got, answer = server.request("POST", "/v2/models/digit-reader/infer", request,
                                 {**headers, "Origin": own, "Sec-Fetch-Site": "same-origin"})
    assert got == 200, answer
    # following a link from another site to the page is fine (reading, not changing)
    got, page = server.request("GET", "/", headers={"Sec-Fetch-Site": "cross-site"})
    assert got == 200 and "<html" in page.lower()


def test_a_loopback_server_answers_only_to_loopback_host_names(server, mnist):
    for host in ("evil.example", f"evil.example:{server.http_port}", "192.168.1.10",
                 "127.0.0.1.evil.example"):
        for method, path, body in (("GET", "/", None), ("GET", "/v2/models/digits", None),
                                   ("POST", "/v2/models/digits/infer",
                                    _valid_json_request(mnist))):
            got, answer = server.request(method, path, body, {"Host": host})
            _one_line_refusal(answer, 421, got, "DNS rebinding")
        _still_serving(server, mnist)
    for host in ("localhost", f"localhost:{server.http_port}", f"127.0.0.1:{server.http_port}",
                 "127.0.0.2", f"[::1]:{server.http_port}"):
        assert server.request("GET", "/v2/health/ready", headers={"Host": host})[0] == 200, host


# --------------------------------------------------------------------------------------------
# 3. KServe's v1 route; 4. the page's headers


def test_the_v1_route_is_a_404_with_one_log_line(server, mnist):
    before = len(server.stderr)
    for path in ("/v1/models/digits:predict", "/v1/models/digits:explain"):
        got, answer = server.request("POST", path, json.dumps({"instances": [[0] * 784]}).encode())
        _one_line_refusal(answer, 404, got, "/v2/models/<model>/infer")
    _still_serving(server, mnist)
    time.sleep(0.3)
    logged = server.stderr[before:]
    assert not any("Traceback" in line for line in logged), logged
    assert sum("/v1/models/" in line for line in logged) == 2, logged  # one line each
    assert len(logged) == 2, logged  # and nothing else (the other refusals: with --verbose)


def test_the_page_and_answers_carry_security_headers(server, mnist):
    import http.client

    for method, path, body in (("GET", "/", None), ("GET", "/app.js", None),
                               ("POST", "/v2/models/digits/infer", _valid_json_request(mnist))):
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        assert response.status == 200, path
        policy = response.getheader("Content-Security-Policy")
        assert policy and "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.getheader("X-Content-Type-Options") == "nosniff"
        assert response.getheader("X-Frame-Options") == "DENY"


# --------------------------------------------------------------------------------------------
# 7. /metrics


def _scrape(server) -> dict[tuple[str, tuple], float]:
    status, text = server.request("GET", "/metrics")
    assert status == 200
    if isinstance(text, dict):
        raise AssertionError(text)
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _delta(after, before, name, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_requests_errors_latency_batches_and_versions(server, mnist):
    import tritonclient.grpc as grpc_client

    before = _scrape(server)
    for _ in range(3):
        _still_serving(server, mnist)
    got, _ = server.request("POST", "/v2/models/digits/infer", b"not json")
    assert got == 400
    got, _ = server.request("POST", "/v2/models/digits/infer", _valid_json_request(mnist),
                            {"Origin": "http://evil.example"})
    assert got == 403
    got, _ = server.request("POST", "/v2/models/made-up-name/infer", _valid_json_request(mnist))
    assert got == 404
    request, headers = _bytes_request([_png(image) for image in mnist.x_test[:3]])
    assert server.request("POST", "/v2/models/digit-reader/infer", request, headers)[0] == 200
    triton = grpc_client.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    images = mnist.x_test[:8, :, :, None]
    tensor = grpc_client.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    for _ in range(2):
        triton.infer("digits", [tensor])
    wrong = grpc_client.InferInput("images", [1, 28, 28, 1], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(grpc_client.InferenceServerException):
        triton.infer("digits", [wrong])
    _still_serving(server, mnist)
    after = _scrape(server)

    requests = "edgedigits_requests_total"
    errors = "edgedigits_request_errors_total"
    assert _delta(after, before, requests, model="digits", protocol="rest", status="200") == 4
    assert _delta(after, before, requests, model="digits", protocol="rest", status="400") == 1
    assert _delta(after, before, errors, model="digits", protocol="rest", status="400") == 1
    assert _delta(after, before, errors, model="digits", protocol="rest", status="403") == 1
    assert _delta(after, before, requests, model="other", protocol="rest", status="404") == 1
    assert not any("made-up-name" in str(key) for key in after)  # no label per unknown name
    assert _delta(after, before, requests, model="digit-reader", protocol="rest",
                  status="200") == 1
    assert _delta(after, before, requests, model="digits", protocol="grpc", status="OK") == 2
    assert _delta(after, before, errors, model="digits", protocol="grpc",
                  status="INVALID_ARGUMENT") == 1
    assert _delta(after, before, errors, model="digits", protocol="rest", status="200") == 0
    latency = "edgedigits_request_duration_seconds_count"
    assert _delta(after, before, latency, model="digits", protocol="rest") == 6
    assert _delta(after, before, latency, model="digits", protocol="grpc") == 3
    assert _delta(after, before, "edgedigits_request_duration_seconds_bucket", model="digits",
                  protocol="grpc", le="+Inf") == 3
    # images per request: 4 REST x 1, 2 gRPC x 8 (the refused ones never reached the model)
    assert _delta(after, before, "edgedigits_request_images_sum", model="digits") == 4 + 16
    assert _delta(after, before, "edgedigits_request_images_sum", model="digit-reader") == 3
    # every image the runtime saw went through a batch (concurrent ones share one)
    assert _delta(after, before, "edgedigits_inference_batch_size_sum", model="digits") == 23
    assert after[("edgedigits_inference_queue_images", (("model", "digits"),))] == 0
    loaded = [dict(labels) for name, labels in after if name == "edgedigits_model_loaded"]
    assert {"model": "digits", "version": "none", "backend": "openvino",
            "path": str(server_model(server))} in loaded
    assert any(entry["model"] == "digits" for entry in loaded)
    # the start-up objects are frozen out of full collections (whose pauses stopped every
    # request in flight: the one-image p99 was ~6x the p50), and the pauses are timed
    assert after[("edgedigits_gc_frozen_objects", ())] > 100_000
    assert after[("edgedigits_gc_pause_seconds_count", (("generation", "0"),))] > 0
    # KServe's own metrics are still there
    assert any(name.startswith("request_predict_seconds") for name, _ in after)


def server_model(server):
    return server.process.args[server.process.args.index("--model") + 1]


def test_the_version_a_server_loaded_from_the_repository_is_in_metrics(ir_models_dir):
    version_xml = ir_models_dir / repository.SERVING_DIR / "digits" / "1" / contract.IR_FILE
    running = Server("--model", str(version_xml))
    try:
        after = _scrape(running)
        loaded = [dict(labels) for name, labels in after if name == "edgedigits_model_loaded"]
        assert {"model": "digits", "version": "1", "backend": "openvino",
                "path": str(version_xml)} in loaded
    finally:
        assert running.stop() == 0


# --------------------------------------------------------------------------------------------
# 5. A .keras that inflates to 1 GiB


def _deflated_spaces(mib: int) -> tuple[bytes, int]:
    """Raw deflate of ``mib`` MiB of spaces and its CRC-32, built from one compressed MiB (a full
    flush resets the compressor, so every MiB compresses to the same bytes): ~1 KB per MiB."""
    chunk = b" " * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return one * mib + b"\x03\x00", crc  # then an empty final block


def write_keras_bomb(path, mib: int = 1024) -> None:
    """A ~1 MB zip whose config.json inflates to ``mib`` MiB (a well-formed, honest archive)."""
    name = b"config.json"
    data, crc = _deflated_spaces(mib)
    size = mib << 20
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size,
                        len(name), 0) + name + data
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data),
                          size, len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    path.write_bytes(local + central + end)


def test_a_keras_zip_bomb_is_refused_from_its_directory_before_inflating(tmp_path):
    bomb = tmp_path / "model.keras"
    write_keras_bomb(bomb)
    assert bomb.stat().st_size < 2 << 20
    started = time.perf_counter()
    with pytest.raises(UserError, match="inflates to 1,073,741,824 bytes"):
        check_keras_archive(bomb)
    assert time.perf_counter() - started < 1.0  # nothing inflated (testzip alone: ~5 s)

    started = time.perf_counter()
    result = run_command("convert/to_ir.py", "--model", str(bomb), "--output",
                         str(tmp_path / "ir"), timeout=120)
    elapsed = time.perf_counter() - started
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "zip bomb" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 30, elapsed  # start-up only; before: 18-80 s and 2.8 GB


# --------------------------------------------------------------------------------------------
# 6. Two publishers at once


def test_publishers_at_once_get_distinct_versions(tmp_path):
    publishers = 4
    sources = []
    for index in range(publishers):
        folder = tmp_path / f"ir{index}"
        folder.mkdir()
        (folder / "model.xml").write_text(f"<net name='publisher {index}'/>")
        (folder / "model.bin").write_bytes(bytes([index]) * (8 << 20))  # a copy that takes time
        sources.append(folder / "model.xml")
    serving = tmp_path / "serving"
    serving.mkdir()
    start = threading.Barrier(publishers)
    published: dict[int, object] = {}
    failures = []

    def publish(index: int) -> None:
        start.wait()
        try:
            published[index] = repository.publish_version(sources[index], serving)
        except Exception as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sorted(int(p.name) for p in published.values()) == list(range(1, publishers + 1))
    assert repository.versions(serving / "digits") == list(range(1, publishers + 1))
    for index, folder in published.items():  # each version holds its own publisher's model
        assert (folder / "model.xml").read_text() == f"<net name='publisher {index}'/>"
        assert (folder / "model.bin").read_bytes()[:1] == bytes([index])
    assert sorted(p.name for p in (serving / "digits").iterdir()) == \
        [str(v) for v in range(1, publishers + 1)]  # no staging folder left behind


# --------------------------------------------------------------------------------------------
# SIGHUP like SIGTERM; an honest grace period (a request it cuts is told so)


def test_sighup_stops_the_server_like_sigterm(fp32_ir, mnist):
    idle = Server("--model", str(fp32_ir))
    _still_serving(idle, mnist)
    assert idle.stop(signal.SIGHUP) == 0
    time.sleep(0.2)
    assert "Traceback" not in "".join(idle.stderr), idle.stderr
    assert "stopped: in-flight requests finished" in "".join(idle.stderr)

    busy = Server("--model", str(fp32_ir), "--max-images", "64")
    request, headers = _bytes_request([_png(mnist.x_test[i]) for i in range(64)])
    answers = []

    def keep_asking():
        for _ in range(20):
            try:
                answers.append(busy.request("POST", "/v2/models/digit-reader/infer", request,
                                            headers))
            except OSError:  # the server has stopped listening
                return

    worker = threading.Thread(target=keep_asking)
    worker.start()
    _wait_until_reading(busy)  # requests are flowing: hang up
    assert busy.stop(signal.SIGHUP) == 0
    worker.join(timeout=60)
    assert answers and answers[0][0] == 200
    assert "Traceback" not in "".join(busy.stderr) and "FATAL" not in "".join(busy.stderr)


def test_a_request_cut_by_the_grace_period_gets_a_503_and_the_log_says_so(fp32_ir, mnist):
    import cv2

    # 64 PNGs of 20 MP: ~8 s of decoding on a quiet machine, far past a 1 s grace period
    scene = paper_scene([mnist.x_test[i] for i in range(3)], [(75, 300), (550, 250), (1025, 325)],
                        size=(1000, 1500), digit_px=225, seed=3, grain=0)
    png = cv2.imencode(".png", cv2.resize(scene, (5000, 4000)))[1].tobytes()
    request, headers = _bytes_request([png] * 64)
    server = Server("--model", str(fp32_ir), "--max-images", "64", "--max-body-mb", "256",
                    "--grace-period", "1")
    answers = []
    worker = threading.Thread(target=lambda: answers.append(server.request(
        "POST", "/v2/models/digit-reader/infer", request, headers)))
    worker.start()
    _wait_until_reading(server)
    assert server.stop(signal.SIGTERM) == 0
    worker.join(timeout=60)
    status, body = answers[0]
    assert status == 503, (status, str(body)[:300])  # not uvicorn's bare 500, not a 200
    assert "grace period" in body["error"]
    stderr = "".join(server.stderr)
    assert "1 request(s) in flight were cut after the 1 s grace period" in stderr, stderr
    assert "Traceback" not in stderr, stderr


def _wait_until_reading(server, requests: int = 1, timeout: float = 30) -> None:
    """Until the server has started reading ``requests`` digit-reader requests (it counts
    their images)."""
    deadline = time.monotonic() + timeout
    key = ("edgedigits_request_images_count", (("model", "digit-reader"),))
    while _scrape(server).get(key, 0) < requests:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def digits_scene(mnist) -> bytes:
    """A 24 MP JPEG (~0.5 MB) of three digits on paper: ~0.2 s to decode alone here."""
    import cv2

    scene = paper_scene([mnist.x_test[i] for i in range(3)], [(75, 300), (550, 250), (1025, 325)],
                        size=(1000, 1500), digit_px=225, seed=3, grain=0)
    return cv2.imencode(".jpg", cv2.resize(scene, (6000, 4000)))[1].tobytes()


# --------------------------------------------------------------------------------------------
# Heavy digit-reader requests: cancelled when their client hangs up, never ahead of light ones


def _cpu_seconds(server) -> float:
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(server, timeout: float = 180) -> None:
    """Until the server spends (almost) no CPU for a second: start-up compilation, a request
    still being read."""
    deadline = time.monotonic() + timeout
    before = _cpu_seconds(server)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _cpu_seconds(server)
        if now - before < 0.1:
            return
        before = now
    raise AssertionError("the server never went idle")


@pytest.mark.slow
def test_a_request_whose_client_hangs_up_stops_between_images(fp32_ir, digits_scene, mnist):
    running = Server("--model", str(fp32_ir), "--verbose")
    try:
        request, headers = _bytes_request([digits_scene] * 32)
        _wait_until_idle(running)
        before = _cpu_seconds(running)
        got, answer = running.request("POST", "/v2/models/digit-reader/infer", request, headers)
        assert got == 200, answer
        _wait_until_idle(running)
        whole = _cpu_seconds(running) - before

        before = _cpu_seconds(running)
        with socket.create_connection(("127.0.0.1", running.http_port), timeout=30) as raw:
            raw.sendall(b"POST /v2/models/digit-reader/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
                        + f"Content-Length: {len(request)}\r\n\r\n".encode() + request)
            _wait_until_reading(running, requests=2)
        _wait_until_idle(running)
        hung_up = _cpu_seconds(running) - before
        assert hung_up < whole / 2, (hung_up, whole)
        deadline = time.monotonic() + 10
        while not any("client went away" in line for line in running.stderr):
            assert time.monotonic() < deadline, running.stderr[-20:]
            time.sleep(0.1)
        _still_serving(running, mnist)
    finally:
        assert running.stop() == 0


@pytest.mark.slow
def test_a_grpc_call_whose_deadline_passes_stops_between_images(fp32_ir, digits_scene, mnist):
    import tritonclient.grpc as grpc_client

    running = Server("--model", str(fp32_ir))
    try:
        triton = grpc_client.InferenceServerClient(f"127.0.0.1:{running.grpc_port}")
        images = grpc_client.InferInput("images", [32], "BYTES")
        images.set_data_from_numpy(np.array([digits_scene] * 32, dtype=object))
        _wait_until_idle(running)
        before = _cpu_seconds(running)
        answer = triton.infer("digit-reader", [images])
        assert len(answer.as_numpy("results")) == 32
        _wait_until_idle(running)
        whole = _cpu_seconds(running) - before

        before = _cpu_seconds(running)
        with pytest.raises(grpc_client.InferenceServerException, match=r"(?i)deadline"):
            triton.infer("digit-reader", [images], client_timeout=whole / 8)
        _wait_until_idle(running)
        gone = _cpu_seconds(running) - before
        assert gone < whole / 2, (gone, whole)  # grpc.aio cancels the call: reading stops
        _still_serving(running, mnist)
    finally:
        assert running.stop() == 0


def _timed(server, path: str, body: bytes, headers: dict | None = None) -> float:
    started = time.perf_counter()
    got, answer = server.request("POST", path, body, headers)
    assert got == 200, answer
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def progressive_scene(mnist) -> bytes:
    """The 24 MP scene as a progressive JPEG (10 scans): ~0.3 s to decode alone here, where
    the baseline one decodes reduced in ~0.02 s."""
    import cv2

    scene = paper_scene([mnist.x_test[i] for i in range(3)], [(75, 300), (550, 250), (1025, 325)],
                        size=(1000, 1500), digit_px=225, seed=3, grain=0)
    return cv2.imencode(".jpg", cv2.resize(scene, (6000, 4000)),
                        [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()


@pytest.mark.slow
def test_one_image_requests_are_answered_while_heavy_requests_run(fp32_ir, progressive_scene,
                                                                   mnist):
    running = Server("--model", str(fp32_ir))
    try:
        light, light_headers = _bytes_request([_png(mnist.x_test[0])])
        heavy, heavy_headers = _bytes_request([progressive_scene] * 16)
        reader, digits = "/v2/models/digit-reader/infer", "/v2/models/digits/infer"
        one = _valid_json_request(mnist)

        def one_image_waits() -> tuple[float, float]:
            reader_waits, digits_waits = [], []
            for _ in range(5):
                reader_waits.append(_timed(running, reader, light, light_headers))
                digits_waits.append(_timed(running, digits, one))
            return statistics.median(reader_waits), statistics.median(digits_waits)

        one_image_waits()  # first requests: compile, caches
        alone = one_image_waits()
        assert running.request("POST", reader, heavy, heavy_headers)[0] == 200
        stop = threading.Event()
        answered = []

        def heavy_client():
            while not stop.is_set():
                answered.append(running.request("POST", reader, heavy, heavy_headers)[0])

        clients = [threading.Thread(target=heavy_client) for _ in range(3)]
        for client in clients:
            client.start()
        try:
            _wait_until_reading(running, requests=5 + 5 + 1 + 3)  # and the 3 heavy clients'
            loaded = one_image_waits()
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=300)
        print(f"one image alone: digit-reader {alone[0]:.3f} s, digits {alone[1]:.3f} s; "
              f"beside 3 clients of 16 progressive 24 MP JPEGs: {loaded[0]:.3f} s, "
              f"{loaded[1]:.3f} s")
        # Before, a one-image request queued behind every image of the three heavy requests
        # (seconds); now it waits for none of them, only shares the CPU.
        for model, before, during in zip((reader, digits), alone, loaded, strict=True):
            assert during < 10 * before + 1.0, (model, before, during)
        assert answered and set(answered) == {200}, answered
        _still_serving(running, mnist)
    finally:
        assert running.stop() == 0


# --------------------------------------------------------------------------------------------
# JSON: a size of its own; REST and gRPC read tensors alike


def test_a_json_body_over_the_json_limit_is_413_before_it_is_read(server, mnist):
    from test_serving import _raw_exchange

    five_mib = 5 << 20  # under the 32 MiB body limit, over the 4 MiB JSON one
    for extra in (b"Content-Type: application/json\r\n",
                  b"Inference-Header-Content-Length: %d\r\n" % five_mib):
        answer = _raw_exchange(server.http_port, b"POST /v2/models/digits/infer HTTP/1.1\r\n"
                               b"Host: 127.0.0.1\r\n" + extra
                               + b"Content-Length: %d\r\n\r\n" % (five_mib + 8) + b'{"inputs"')
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 413 " in status_line, answer[:300]
        assert b"--max-json-mb" in rest and b"binary" in rest
        _still_serving(server, mnist)
    # a JSON batch of 64 images (0.3 MiB) is still JSON's to send
    images = mnist.x_test[:64, :, :, None]
    body = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape),
                                   "datatype": "UINT8", "data": images.tolist()}]}).encode()
    got, answer = server.request("POST", "/v2/models/digits/infer", body)
    assert got == 200 and answer["outputs"][0]["shape"] == [64, 10], answer


def _json_request(data, datatype: str = "UINT8", outputs: list | None = None) -> bytes:
    request = {"inputs": [{"name": "images", "shape": [1, 28, 28, 1], "datatype": datatype,
                           "data": data}]}
    if outputs is not None:
        request["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(request).encode()


def test_uint8_json_data_must_be_integers_in_range(server, mnist):
    pixels = mnist.x_test[0].reshape(-1).tolist()
    for bad, said in ((1.5, "must be integers, got 1.5"), ("7", "must be integers, got '7'"),
                      (300, "within 0..255, got 300"), (-1, "within 0..255, got -1")):
        got, answer = server.request("POST", "/v2/models/digits/infer",
                                     _json_request([bad, *pixels[1:]]))
        _one_line_refusal(answer, 400, got, said)
    got, answer = server.request("POST", "/v2/models/digits/infer", _json_request(pixels[:-1]))
    _one_line_refusal(answer, 400, got, "783 values, the shape holds 784")
    _still_serving(server, mnist)


def _grpc_infer(server, datatype: str, contents: list[int] | None = None,
                raw: bytes | None = None, outputs: list[str] = ()):
    """A ModelInfer call built by hand (tritonclient always sends raw bytes, upper case)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb  # the OIP v2 protos (KServe's clash with
    from tritonclient.grpc import service_pb2_grpc as stubs  # these in one process)

    tensor = pb.ModelInferRequest.InferInputTensor(name="images", datatype=datatype,
                                                   shape=[1, 28, 28, 1])
    request = pb.ModelInferRequest(model_name="digits", inputs=[tensor])
    if contents is not None:
        request.inputs[0].contents.uint_contents.extend(contents)
    else:
        request.raw_input_contents.append(raw)
    for name in outputs:
        request.outputs.add(name=name)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        try:
            stubs.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc.RpcError as error:
            return error.code().name, error.details()
    return "OK", ""


def test_rest_and_grpc_agree_on_datatypes_outputs_and_values(server, mnist):
    pixels = mnist.x_test[0].reshape(-1)
    raw = pixels.astype(np.uint8).tobytes()
    # lower-case datatypes: refused by both (OIP v2 names them in upper case)
    got, answer = server.request("POST", "/v2/models/digits/infer",
                                 _json_request(pixels.tolist(), "uint8"))
    _one_line_refusal(answer, 400, got, "upper case")
    code, details = _grpc_infer(server, "uint8", raw=raw)  # KServe's own decoding refuses it
    assert code == "INVALID_ARGUMENT", (code, details)
    # an output the model does not have: refused by both, with the same words
    got, answer = server.request("POST", "/v2/models/digits/infer",
                                 _json_request(pixels.tolist(), outputs=["logits"]))
    _one_line_refusal(answer, 400, got, "has no output 'logits'; its output is 'probabilities'")
    code, details = _grpc_infer(server, "UINT8", raw=raw, outputs=["logits"])
    assert code == "INVALID_ARGUMENT" and "has no output 'logits'" in details, (code, details)
    # asking for the one it has is fine
    got, answer = server.request("POST", "/v2/models/digits/infer",
                                 _json_request(pixels.tolist(), outputs=["probabilities"]))
    assert got == 200, answer
    assert _grpc_infer(server, "UINT8", raw=raw, outputs=["probabilities"]) == ("OK", "")
    # a value out of UINT8's range in gRPC's typed contents: refused as in JSON
    code, details = _grpc_infer(server, "UINT8", contents=[300, *pixels[1:].tolist()])
    assert code == "INVALID_ARGUMENT" and "within 0..255, got 300" in details, (code, details)
    assert _grpc_infer(server, "UINT8", contents=pixels.tolist()) == ("OK", "")
    _still_serving(server, mnist)

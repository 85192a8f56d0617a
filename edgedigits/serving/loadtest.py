"""Load the server as clients will: existing load generators, many requests in flight.

- REST (JSON and the binary tensor extension): ``wrk`` (Debian package ``wrk``), a C load
  generator with a fixed number of open connections, each with one request in flight;
- gRPC: tritonclient's asyncio gRPC client (``tritonclient.grpc.aio``) with the same number of
  concurrent in-flight requests, in a process of its own.

Each run starts ``infer/serve.py`` as a user would (its start-to-ready time and resident memory
are measured too), then every scenario at every concurrency for a fixed time after a warm-up.
This module never imports kserve: tritonclient's gRPC client lives here.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedigits.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "infer" / "serve.py"
# (name, protocol, images per request)
SCENARIOS = (("rest-json-1", "json", 1), ("rest-binary-1", "binary", 1), ("grpc-1", "grpc", 1),
             ("rest-binary-64", "binary", 64), ("grpc-64", "grpc", 64))
CONCURRENCY = (1, 8, 32, 64)


@dataclass
class Measurement:
    server: str  # "openvino" | "tensorflow"
    scenario: str
    images_per_request: int
    concurrency: int
    requests: int
    seconds: float
    requests_per_s: float
    images_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str


@dataclass
class ServerRun:
    name: str
    command: list[str]
    ready_s: float
    rss_mb: float  # resident memory after warm-up, before load
    rss_peak_mb: float  # VmHWM at the end of the run
    describe: str
    measurements: list[Measurement] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RunningServer:
    """``python infer/serve.py ARGS`` on free ports until ``stop``."""

    def __init__(self, args: list[str], timeout: float = 180) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.command = [sys.executable, str(SERVE), "--http-port", str(self.http_port),
                        "--grpc-port", str(self.grpc_port), *args]
        started = time.perf_counter()
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        try:
            self._wait_until_ready(started, timeout)
        except BaseException:  # never leave a server (or its workers) running behind an error
            if self.process.poll() is None:
                self.process.kill()
            raise

    def _wait_until_ready(self, started: float, timeout: float) -> None:
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.startswith("ready in"):
                break
            if time.perf_counter() - started > timeout:
                break
        self.ready_s = time.perf_counter() - started
        if not any(line.startswith("ready in") for line in self.lines):
            self.process.kill()
            raise UserError(f"server did not start: {' '.join(self.command)}\n"
                            + self.process.stderr.read()[-2000:])
        threading.Thread(target=self._keep_lines, daemon=True).start()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()
        # "serving digits, ... | openvino int8 ...", or "serving with 2 workers (pids ...)"
        self.describe = next((line.split("| ", 1)[-1] for line in self.lines
                              if line.startswith("serving")), "")

    def _keep_lines(self) -> None:  # what the server prints after ready (version changes)
        for line in self.process.stdout:
            self.lines.append(line.rstrip())

    def serving_pids(self) -> list[int]:
        """The processes that serve: the server itself, or the workers of ``--workers N``."""
        children = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            children += [int(pid) for pid in task.read_text().split()]
        return children or [self.process.pid]

    def rss_mb(self, key: str = "VmRSS") -> float:
        """Resident memory of one serving process (the largest, with several workers)."""
        return max(_memory_mb(pid, key) for pid in self.serving_pids())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


# --------------------------------------------------------------------------------------------
# Request bodies


def sample_images(count: int) -> np.ndarray:
    """MNIST-like uint8 digits; the content does not change the cost of this model."""
    rng = np.random.default_rng(0)
    images = np.zeros((count, 28, 28, 1), np.uint8)
    images[:, 6:22, 10:18] = rng.integers(120, 256, (count, 16, 8, 1), dtype=np.uint8)
    return images


def json_body(images: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "images", "shape": list(images.shape),
                                   "datatype": "UINT8", "data": images.ravel().tolist()}]}
                      ).encode()


def binary_body(images: np.ndarray) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape),
                                     "datatype": "UINT8",
                                     "parameters": {"binary_data_size": images.nbytes}}],
                         "outputs": [{"name": "probabilities",
                                      "parameters": {"binary_data": True}}]}).encode()
    return header + images.tobytes(), len(header)


# --------------------------------------------------------------------------------------------
# wrk (REST)

_WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
{headers}
"""


def run_wrk(url: str, body: bytes, headers: dict, concurrency: int, seconds: float,
            threads: int = 1) -> dict:
    """wrk -c N: N connections, one request in flight on each; returns counts and latencies."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise UserError("wrk is not installed (apt-get install wrk); it generates the REST load")
    with tempfile.TemporaryDirectory() as folder:
        body_path = Path(folder) / "body"
        body_path.write_bytes(body)
        script = Path(folder) / "post.lua"
        lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
        script.write_text(_WRK_SCRIPT.format(body=body_path, headers=lines))
        result = subprocess.run(
            [wrk, "-t", str(min(threads, concurrency)), "-c", str(concurrency), "-d",
             f"{max(1, round(seconds))}s", "--latency", "-s", str(script), url],
            capture_output=True, text=True, timeout=seconds + 60)
    return parse_wrk(result.stdout)


def _duration_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str) -> dict:
    requests = re.search(r"(\d+) requests in ([\d.]+)(\w+)", output)
    if requests is None:
        raise UserError(f"could not read wrk's output:\n{output}")
    seconds = _duration_ms(requests.group(2) + requests.group(3)) / 1000
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.MULTILINE))
    latency = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    return {"requests": int(requests.group(1)), "seconds": seconds,
            "p50_ms": _duration_ms(percentiles["50"]), "p99_ms": _duration_ms(percentiles["99"]),
            "max_ms": _duration_ms(latency.group(1)) if latency else float("nan"),
            "errors": (int(errors.group(1)) if errors else 0)
            + (sum(map(int, socket_errors.groups())) if socket_errors else 0)}


# --------------------------------------------------------------------------------------------
# tritonclient gRPC, asyncio


def run_grpc(address: str, images: np.ndarray, concurrency: int, seconds: float) -> dict:
    """``concurrency`` coroutines, each keeping one ModelInfer in flight, for ``seconds``."""
    return asyncio.run(_grpc_load(address, images, concurrency, seconds))


async def _grpc_load(address: str, images: np.ndarray, concurrency: int,
                     seconds: float) -> dict:
    import tritonclient.grpc.aio as client

    triton = client.InferenceServerClient(address)
    tensor = client.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            try:
                await triton.infer("digits", [tensor])
            except client.InferenceServerException:
                errors += 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    for _ in range(2):  # warm the channel
        await triton.infer("digits", [tensor])
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await triton.close()
    return {"requests": len(latencies), "seconds": elapsed,
            "p50_ms": float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
            "errors": errors}


def grpc_in_subprocess(address: str, batch: int, concurrency: int, seconds: float) -> dict:
    """The gRPC client in its own process (its own GIL, like wrk is its own process)."""
    code = ("import json,sys; from edgedigits.serving import loadtest as l; "
            f"print(json.dumps(l.run_grpc({address!r}, l.sample_images({batch}), "
            f"{concurrency}, {seconds})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=seconds + 120, env={**os.environ,
                                                        "PYTHONPATH": str(ROOT)})
    if result.returncode != 0:
        raise UserError(f"gRPC load generator failed: {result.stderr[-1000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# One server, every scenario


def measure_server(name: str, server: RunningServer, scenarios, concurrencies, seconds: float,
                   warmup: float, log) -> list[Measurement]:
    results = []
    url = f"http://127.0.0.1:{server.http_port}/v2/models/digits/infer"
    for scenario, protocol, batch in scenarios:
        images = sample_images(batch)
        for concurrency in concurrencies:
            def once(duration: float, protocol=protocol, images=images, concurrency=concurrency,
                     batch=batch) -> tuple[dict, str]:
                if protocol == "grpc":
                    return (grpc_in_subprocess(f"127.0.0.1:{server.grpc_port}", batch,
                                               concurrency, duration),
                            "tritonclient.grpc.aio")
                if protocol == "json":
                    return (run_wrk(url, json_body(images),
                                    {"Content-Type": "application/json"}, concurrency, duration),
                            "wrk")
                body, header_length = binary_body(images)
                return (run_wrk(url, body, {"Inference-Header-Content-Length": header_length,
                                            "Content-Type": "application/octet-stream"},
                                concurrency, duration), "wrk")

            once(warmup)
            outcome, tool = once(seconds)
            rate = outcome["requests"] / outcome["seconds"] if outcome["seconds"] else 0.0
            measurement = Measurement(
                server=name, scenario=scenario, images_per_request=batch,
                concurrency=concurrency, requests=outcome["requests"],
                seconds=round(outcome["seconds"], 3), requests_per_s=round(rate, 1),
                images_per_s=round(rate * batch, 1), p50_ms=round(outcome["p50_ms"], 3),
                p99_ms=round(outcome["p99_ms"], 3), errors=outcome["errors"], tool=tool)
            log(f"{name:10} {scenario:15} c={concurrency:<3} {measurement.requests_per_s:9.1f} "
                f"req/s {measurement.images_per_s:10.1f} img/s  p50 {measurement.p50_ms:7.2f} "
                f"ms  p99 {measurement.p99_ms:7.2f} ms  errors {measurement.errors}")
            results.append(measurement)
    return results


def to_json(runs: list[ServerRun], settings: dict) -> dict:
    return {"settings": settings, "servers": [asdict(run) for run in runs]}


# --------------------------------------------------------------------------------------------
# The speed goals, and the report


def _find(runs: list[ServerRun], server: str, scenario: str, concurrency: int | None = None):
    for run in runs:
        if run.name != server:
            continue
        found = [m for m in run.measurements if m.scenario == scenario
                 and (concurrency is None or m.concurrency == concurrency)]
        if found:
            return found if concurrency is None else found[0]
    return None


def goals(runs: list[ServerRun]) -> list[dict]:
    """Each goal of the serving issue with what was measured and whether it is met."""
    rows = []

    def goal(text: str, measured: str, met: bool | None) -> None:
        rows.append({"goal": text, "measured": measured,
                     "met": "n/a" if met is None else ("met" if met else "NOT met")})

    grpc32 = _find(runs, "openvino", "grpc-1", 32)
    goal("one-image gRPC ≥ 2,000 req/s at 32 clients, p99 ≤ 25 ms",
         f"{grpc32.requests_per_s:,.0f} req/s, p99 {grpc32.p99_ms:.1f} ms" if grpc32 else "-",
         None if grpc32 is None else grpc32.requests_per_s >= 2000 and grpc32.p99_ms <= 25)
    batch = [m for scenario in ("grpc-64", "rest-binary-64")
             for m in (_find(runs, "openvino", scenario) or [])]
    best = max(batch, key=lambda m: m.images_per_s) if batch else None
    goal("64-image requests ≥ 50,000 images/s",
         f"{best.images_per_s:,.0f} images/s ({best.scenario}, c={best.concurrency})"
         if best else "-", None if best is None else best.images_per_s >= 50000)
    ratios = []
    for m in (next((r for r in runs if r.name == "openvino"), None) or ServerRun(
            "", [], 0, 0, 0, "")).measurements:
        other = _find(runs, "tensorflow", m.scenario, m.concurrency)
        if other and other.requests_per_s:
            ratios.append((m.requests_per_s / other.requests_per_s, m.scenario, m.concurrency))
    if ratios:
        low = min(ratios)
        goal("OpenVINO server ≥ 3x the TensorFlow server in req/s at equal concurrency",
             f"{low[0]:.2f}x at the least ({low[1]}, c={low[2]}); "
             f"{max(ratios)[0]:.2f}x at the most", low[0] >= 3)
    else:
        goal("OpenVINO server ≥ 3x the TensorFlow server in req/s at equal concurrency",
             "TensorFlow server not measured", None)
    for run in runs:
        if run.name == "openvino":
            goal("start to ready ≤ 3 s", f"{run.ready_s:.2f} s", run.ready_s <= 3)
            goal("resident memory ≤ 300 MB",
                 f"{run.rss_mb:.0f} MB after start, {run.rss_peak_mb:.0f} MB peak under load",
                 run.rss_peak_mb <= 300)
        elif run.name.startswith("openvino-"):  # --workers N: memory is per worker
            goal(f"resident memory ≤ 300 MB per worker ({run.name})",
                 f"{run.rss_mb:.0f} MB after start, {run.rss_peak_mb:.0f} MB peak under load "
                 f"(the largest worker)", run.rss_peak_mb <= 300)
    return rows


COLUMNS = ("server", "scenario", "concurrency", "requests_per_s", "images_per_s", "p50_ms",
           "p99_ms", "errors", "tool")


def markdown(runs: list[ServerRun], settings: dict) -> str:
    from edgedigits.report import markdown_table

    lines = ["# Serving benchmark", "", f"Command: `{settings['command']}`", "",
             f"{settings['machine']}; {settings['duration_s']} s per point after a "
             f"{settings['warmup_s']} s warm-up; load generators on the same machine.", ""]
    for run in runs:
        lines += [f"- **{run.name}**: {run.describe}; ready {run.ready_s:.2f} s after launch, "
                  f"{run.rss_mb:.0f} MB resident after start, {run.rss_peak_mb:.0f} MB peak"]
    lines += ["", markdown_table([asdict(m) for run in runs for m in run.measurements], COLUMNS),
              "## Goals", "", markdown_table(goals(runs), ("goal", "measured", "met"))]
    return "\n".join(lines)


def plot(runs: list[ServerRun], path: Path) -> Path:
    from edgedigits.report import _pyplot, _save_figure

    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        style = "-" if run.name == "openvino" else "--"
        for scenario in dict.fromkeys(m.scenario for m in run.measurements):
            points = [m for m in run.measurements if m.scenario == scenario]
            axis = right if points[0].images_per_request > 1 else left
            values = [m.images_per_s if axis is right else m.requests_per_s for m in points]
            axis.plot([m.concurrency for m in points], values, style, marker="o",
                      label=f"{run.name} {scenario}")
    left.set(title="one-image requests", xlabel="concurrent clients", ylabel="requests/s",
             xscale="log")
    right.set(title="64-image requests", xlabel="concurrent clients", ylabel="images/s",
              xscale="log")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save_figure(figure, path)

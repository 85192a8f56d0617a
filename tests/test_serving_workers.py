"""``serve.py --workers N`` (edgedigits/serving/workers.py): N real server processes behind the
same REST and gRPC ports; every request answered, both workers doing some of the work, one
SIGTERM stopping them all."""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from pathlib import Path

import pytest
from test_serving import Server


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_two_workers_share_the_ports_and_stop_together(ir_models_dir, mnist):
    fp32 = ir_models_dir / "ir" / "fp32" / "model.xml"
    server = Server("--model", str(fp32), "--workers", "2")
    pids = [int(p) for p in re.search(r"pids ([\d, ]+)\)", "".join(server.stdout)).group(1)
            .split(", ")]
    try:
        assert len(pids) == 2 and server.process.pid not in pids
        time.sleep(5)  # each worker compiles its other batch sizes after ready
        before = [_cpu_seconds(pid) for pid in pids]
        images = mnist.x_test[:1, :, :, None]
        body = json.dumps({"inputs": [{"name": "images", "shape": [1, 28, 28, 1],
                                       "datatype": "UINT8",
                                       "data": images.ravel().tolist()}]}).encode()
        statuses = []
        for _ in range(400):  # a new connection each time: the kernel picks a worker
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
            connection.request("POST", "/v2/models/digits/infer", body=body)
            statuses.append(connection.getresponse().status)
            connection.close()
        assert statuses.count(200) == 400
        spent = [_cpu_seconds(pid) - start for pid, start in zip(pids, before, strict=True)]
        assert min(spent) > 0.03, spent  # both served (~1 ms of CPU per request and connection)

        import tritonclient.grpc as client

        triton = client.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        tensor = client.InferInput("images", [1, 28, 28, 1], "UINT8")
        tensor.set_data_from_numpy(images)
        assert triton.infer("digits", [tensor]).as_numpy("probabilities").shape == (1, 10)
    finally:
        assert server.stop() == 0
    assert "stopped: 2 workers" in "".join(server.stderr)
    for pid in pids:  # the workers are gone (reaped by the supervisor)
        assert not Path(f"/proc/{pid}").exists()

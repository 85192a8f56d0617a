"""``infer/benchmark_serving.py`` end to end: real servers on free loopback ports, real load
(``wrk`` for REST, tritonclient's gRPC client), a report with the issue's goals; bad flags are
one line and exit 2. Short points: these runs check the benchmark works, they measure nothing.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import run_command

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk is not installed (apt-get install wrk)")


@pytest.mark.slow
def test_one_and_two_workers_are_loaded_and_reported(ir_models_dir, tmp_path):
    result = run_command(
        "infer/benchmark_serving.py", "--model", str(ir_models_dir / "ir" / "int8" / "model.xml"),
        "--no-tf", "--workers", "1,2", "--scenarios", "rest-json-1,grpc-1", "--concurrency", "4",
        "--duration", "1", "--warmup", "0.5", "--output", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "serving.json").read_text())
    servers = {server["name"]: server for server in report["servers"]}
    assert set(servers) == {"openvino", "openvino-2w"}
    assert servers["openvino-2w"]["command"][-2:] == ["--workers", "2"]
    for server in servers.values():
        assert [(m["scenario"], m["concurrency"]) for m in server["measurements"]] == [
            ("rest-json-1", 4), ("grpc-1", 4)]
        for measurement in server["measurements"]:
            assert measurement["requests"] > 0 and measurement["errors"] == 0, measurement
        # one worker's memory, not the supervisor's (which loads no model: ~50 MB)
        assert 120 < server["rss_peak_mb"] < 2000
    goals = {goal["goal"] for goal in report["goals"]}
    assert "resident memory ≤ 300 MB per worker (openvino-2w)" in goals
    assert "openvino-2w" in (tmp_path / "serving.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "--workers must be greater than 0"),
    (["--concurrency", "a,b"], "--concurrency: expected numbers"),
    (["--scenarios", "rest-xml-1"], "unknown scenario"),
])
def test_bad_flags_are_one_line_and_exit_2(ir_models_dir, tmp_path, flags, message):
    result = run_command("infer/benchmark_serving.py", "--model",
                         str(ir_models_dir / "ir" / "int8" / "model.xml"), "--no-tf",
                         "--output", str(tmp_path), *flags, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "serving.json").exists()


@pytest.mark.slow
def test_versions_published_under_load_are_loaded_and_no_request_fails(ir_models_dir):
    irs = [str(ir_models_dir / "ir" / variant / "model.xml") for variant in ("int8", "fp32")]
    result = run_command("tools/live_versions_load.py", "--model", irs[0], "--also", irs[1],
                         "--versions", "2", "--seconds", "6", "--concurrency", "4",
                         "--no-baseline", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines()
               if line.startswith("| versions published (2)"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert int(cells[1].replace(",", "")) > 0 and cells[2] == "0", row  # answered, none failed
    assert len(cells[4].split(",")) == 2, row  # both versions loaded (their load times)


def test_live_versions_load_refuses_a_file_that_is_not_an_ir(tmp_path):
    (tmp_path / "model.xml").write_text("<net/>")
    result = run_command("tools/live_versions_load.py", "--model", str(tmp_path / "model.xml"))
    assert result.returncode == 2 and "not an OpenVINO IR" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

"""The benchmark command end to end on real models (``--quick``), its report, and bad input.

No test asserts a speed: timings on a shared CI machine prove nothing. What is checked is that
every row was measured by a real runtime in its own process (accuracy against the real labels,
files sizes on disk, the no-TensorFlow rule of the OpenVINO processes) and that the reports
carry the fields the README and the lead rely on.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_command
from edgedigits import benchmark
from edgedigits.errors import UserError

SCRIPT = "infer/benchmark.py"
OPENVINO_ROWS = ("ov-fp32", "ov-fp32-default", "ov-fp16", "ov-int8")
TENSORFLOW_ROWS = ("tf-predict", "tf-function")
PEER_ROWS = ("ort-fp32", "ort-int8", "litert-fp32", "litert-int8")
REQUIRED_FIELDS = ("backend", "variant", "precision", "accuracy", "latency_us_p50",
                   "latency_us_p99", "throughput_ips", "size_bytes", "peak_rss_mb")


def _peer_installed(variant: str) -> bool:
    return all(importlib.util.find_spec(package) is not None
               for package in benchmark.VARIANTS_BY_NAME[variant].packages)


@pytest.fixture(scope="module")
def quick_run(ir_models_dir, tmp_path_factory):
    """One ``--quick`` run over every variant the models folder has (and peers, if installed)."""
    output = tmp_path_factory.mktemp("benchmark")
    result = run_command(SCRIPT, "--quick", "--models-dir", str(ir_models_dir),
                         "--output", str(output), "--batch-sizes", "1,16", "--threads", "1",
                         timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "benchmark.json").read_text())
    return result, report, output


def _rows(report: dict) -> dict[str, dict]:
    return {row["variant"]: row for row in report["rows"]}


@pytest.mark.slow
def test_every_core_row_is_measured_with_the_required_fields(quick_run, ir_models_dir):
    _, report, _ = quick_run
    rows = _rows(report)
    assert set(rows) == set(benchmark.VARIANTS_BY_NAME)
    for name in (*TENSORFLOW_ROWS, *OPENVINO_ROWS):
        row = rows[name]
        assert row["status"] == "ok", row
        for field in REQUIRED_FIELDS:
            assert row[field] is not None, (name, field)
        # The small fixture model is ~95 % accurate; a broken runtime path would be ~10 %.
        assert 0.85 < row["accuracy"] <= 1.0, row
        assert row["test_images"] == report["settings"]["effort"]["test_images"]
        assert 0 < row["latency_us_p50"] <= row["latency_us_p99"]
        assert row["latency_calls"] >= report["settings"]["effort"]["latency_min_calls"]
        assert set(row["throughput_ips"]) == {"1", "16"}
        assert all(value > 0 for value in row["throughput_ips"].values())
        spread = row["throughput_ips_spread"]["16"]
        assert spread["min"] <= spread["median"] <= spread["max"]
        assert row["peak_rss_mb"] > 20
        assert row["load_seconds"] > 0
    # Sizes are the files on disk: the IR counts its .xml and .bin.
    for name, folder in (("ov-fp32", "fp32"), ("ov-fp16", "fp16"), ("ov-int8", "int8")):
        ir = ir_models_dir / "ir" / folder
        expected = (ir / "model.xml").stat().st_size + (ir / "model.bin").stat().st_size
        assert rows[name]["size_bytes"] == expected
    assert rows["tf-predict"]["size_bytes"] == (ir_models_dir / "model.keras").stat().st_size
    assert rows["ov-int8"]["size_bytes"] < rows["ov-fp32"]["size_bytes"]


@pytest.mark.slow
def test_fp32_rows_agree_with_keras_and_precisions_are_labelled(quick_run):
    _, report, _ = quick_run
    rows = _rows(report)
    assert rows["tf-function"]["agreement_with_keras"] == 1.0
    assert rows["ov-fp32"]["agreement_with_keras"] >= 0.99
    assert rows["ov-fp32"]["executes"] == "f32"  # INFERENCE_PRECISION_HINT=f32 was honoured
    assert rows["ov-fp32"]["details"]["inference_precision"] == "f32"
    assert rows["ov-fp32-default"]["details"]["inference_precision"] == "device default"
    assert "int8" in rows["ov-int8"]["executes"]


@pytest.mark.slow
def test_each_row_ran_in_its_own_process_and_openvino_never_imported_tensorflow(quick_run):
    _, report, _ = quick_run
    rows = _rows(report)
    for name in OPENVINO_ROWS:
        assert rows[name]["tensorflow_imported"] is False, name
    # The same probe sees TensorFlow where it is loaded, so the check above can fail.
    for name in TENSORFLOW_ROWS:
        assert rows[name]["tensorflow_imported"] is True, name
    # Separate processes: the TF processes are much larger than the OpenVINO ones.
    assert rows["tf-predict"]["peak_rss_mb"] > rows["ov-int8"]["peak_rss_mb"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", PEER_ROWS)
def test_peer_rows_are_measured_when_installed_and_skipped_otherwise(quick_run, variant):
    _, report, _ = quick_run
    row = _rows(report)[variant]
    if not _peer_installed(variant):
        assert row["status"] == "skipped"
        assert "requirements-peers.txt" in row["note"]
        return
    assert row["status"] == "ok", row
    assert row["tensorflow_imported"] is False  # exported by another process
    assert 0.85 < row["accuracy"] <= 1.0
    assert row["agreement_with_keras"] >= (0.99 if variant.endswith("fp32") else 0.95)
    assert row["size_bytes"] > 0


@pytest.mark.slow
def test_report_files_table_and_chart(quick_run):
    result, report, output = quick_run
    header = result.stdout.splitlines()[0]
    for column in ("variant", "accuracy", "p50 µs", "p99 µs", "img/s @16", "peak RSS MB"):
        assert column in header
    markdown = (output / "benchmark.md").read_text()
    assert "Quick mode" in markdown
    for row in report["rows"]:
        assert f"| {row['variant']} |" in markdown
    environment = report["environment"]
    assert environment["threads"] == 1
    assert environment["libraries"]["openvino"]
    assert report["goals"], "the goals section is computed from the measured rows"
    chart = output / "benchmark.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(chart).shape
    assert width > 800 and height > 300


@pytest.mark.slow
def test_a_missing_variant_is_skipped_with_a_note(ir_models_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(ir_models_dir, models)
    shutil.rmtree(models / "ir" / "fp16")
    result = run_command(SCRIPT, "--quick", "--models-dir", str(models), "--variants",
                         "ov-fp16,ov-int8", "--batch-sizes", "4", "--output", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    rows = _rows(json.loads((tmp_path / "out" / "benchmark.json").read_text()))
    assert rows["ov-fp16"]["status"] == "skipped"
    assert "convert/to_ir.py --fp16" in rows["ov-fp16"]["note"]
    assert rows["ov-int8"]["status"] == "ok"
    assert "skipped: no" in result.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--variants", "ov-int4"], "unknown variant 'ov-int4'"),
        (["--variants", ","], "--variants is empty"),  # "" is refused by cli as empty
        (["--batch-sizes", "0"], "batch sizes must be greater than 0"),
        (["--batch-sizes", "1,-32"], "batch sizes must be greater than 0"),
        (["--batch-sizes", "one"], "expected whole numbers"),
        (["--batch-sizes", "1,100000"], "batch sizes must be at most 4096"),
        (["--threads", "0"], "must be greater than 0"),
        (["--device", "TPU"], "unknown or unavailable OpenVINO device 'TPU'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(ir_models_dir, tmp_path, arguments, message):
    output = tmp_path / "out"
    result = run_command(SCRIPT, "--models-dir", str(ir_models_dir), "--output", str(output),
                         *arguments)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (output / "benchmark.json").exists()


def test_missing_models_folder_is_one_line_and_exit_2(tmp_path):
    result = run_command(SCRIPT, "--models-dir", str(tmp_path / "nothing"),
                         "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "no models folder" in result.stderr and "Traceback" not in result.stderr


def test_a_folder_without_any_model_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "models").mkdir()
    result = run_command(SCRIPT, "--models-dir", str(tmp_path / "models"),
                         "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "nothing to benchmark" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_goals_compare_the_right_rows():
    def row(variant, backend, p50, ips, accuracy=0.99):
        return {"variant": variant, "backend": backend, "status": "ok", "accuracy": accuracy,
                "latency_us_p50": p50, "throughput_ips": {"1": ips / 10, "256": ips}}

    records = [row("tf-predict", "TensorFlow", 30_000.0, 10_000.0),
               row("tf-function", "TensorFlow", 150.0, 40_000.0),
               row("ov-fp32", "OpenVINO", 50.0, 60_000.0, accuracy=0.9900),
               row("ov-int8", "OpenVINO", 25.0, 160_000.0, accuracy=0.9895),
               row("litert-int8", "LiteRT", 15.0, 100_000.0)]
    goals = {goal["goal"].split(" (")[0].split(":")[0]: goal
             for goal in benchmark.compute_goals(records)}
    assert goals["OpenVINO INT8 batch-1 p50"]["met"] is True
    assert goals["Keras predict p50 / OpenVINO INT8 p50"]["measured"] == 1200.0
    assert goals["fastest native TF p50 / OpenVINO INT8 p50"]["met"] is False
    assert goals["INT8 accuracy drop vs FP32"]["measured"] == pytest.approx(0.05)
    latency = goals["OpenVINO speed-up over the best peer at batch 1"]
    assert latency["measured"] == pytest.approx(15.0 / 25.0) and latency["met"] is False
    throughput = goals["OpenVINO speed-up over the best peer in throughput"]
    assert throughput["measured"] == pytest.approx(1.6) and throughput["met"] is True


def test_variant_names_are_checked():
    assert benchmark.parse_variant_names(" ov-int8, tf-function,ov-int8") == [
        "ov-int8", "tf-function"]
    with pytest.raises(UserError, match="choose from"):
        benchmark.parse_variant_names("openvino")


def test_peak_memory_is_read_for_this_process():
    # A fresh process (this one's peak may be anywhere): touching 100 MB must raise its peak.
    probe = ("import numpy as np; from edgedigits.benchmark import peak_rss_mb; "
             "before = peak_rss_mb(); ballast = np.ones(100 * 2**20, np.uint8); "
             "print(before, peak_rss_mb())")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    before, after = map(float, result.stdout.split())
    assert before > 10 and after >= before + 90


def test_when_every_row_fails_each_row_shows_its_own_error(ir_models_dir, tmp_path):
    """Foreign IRs in every variant folder: no row can run; the table names each row's error."""
    from test_runtime import _foreign_ir

    models = tmp_path / "models"
    for variant in ("fp16", "int8"):
        _foreign_ir(models / "ir" / variant, rt_info=False)
    result = run_command(SCRIPT, "--quick", "--model", str(models), "--variants",
                         "ov-fp16,ov-int8", "--output", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for variant in ("ov-fp16", "ov-int8"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(variant))
        assert "not an edgedigits digit classifier" in line
    assert "no variant could be measured" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_keras_model_that_is_not_a_digit_classifier_is_refused(ir_models_dir, tmp_path):
    from test_convert import small_non_digit_model

    models = tmp_path / "models"
    shutil.copytree(ir_models_dir / "ir", models / "ir")
    small_non_digit_model(models / "model.keras", (28, 28, 1), 5)
    result = run_command(SCRIPT, "--quick", "--model", str(models), "--variants",
                         "tf-function,ov-int8", "--output", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "output must be [N, 10] for a digit classifier" in lines[0], result.stderr


# --------------------------------------------------------------------------------------------
# The number reader (issue 14): the same rows on lines of digits, accuracy = lines read exactly

NUMBER_READER_ROWS = ("tf-predict", "tf-function", "ov-fp32", "ov-fp32-default", "ov-int8")


def _steps(number: str) -> np.ndarray:
    """(48, 11) probabilities a CTC model would give for ``number``: each digit held two
    steps, a blank between digits, blanks after."""
    from edgedigits.tasks import number_reader as sequence

    best = []
    for digit in number:
        best += [int(digit), int(digit), sequence.BLANK]
    best += [sequence.BLANK] * (sequence.STEPS - len(best))
    probabilities = np.full((sequence.STEPS, sequence.NUM_CLASSES), 0.01, np.float32)
    probabilities[np.arange(sequence.STEPS), best] = 0.9
    return probabilities


def test_number_reader_answers_are_decoded_numbers_and_only_its_int8_goal_is_judged():
    from edgedigits import contract
    from edgedigits.tasks import kind_of

    kind = kind_of(contract.NUMBER_READER)
    answers = kind.answers(np.stack([_steps("1123"), _steps(""), _steps("70")]))
    # a repeated digit needs a blank between its two readings; a line of blanks reads nothing
    assert list(answers) == ["1123", "", "70"]
    assert kind_of(None).model_type == contract.MODEL_TYPE  # reports from before: digits

    def row(variant, backend, accuracy):
        return {"variant": variant, "backend": backend, "status": "ok", "accuracy": accuracy,
                "latency_us_p50": 500.0, "throughput_ips": {"1": 1000.0}}

    records = [row("tf-predict", "TensorFlow", 0.90), row("ov-fp32", "OpenVINO", 0.900),
               row("ov-int8", "OpenVINO", 0.894)]
    goals = benchmark.compute_goals(records, kind)
    assert [goal["goal"] for goal in goals] == ["INT8 accuracy drop vs FP32 (lines read exactly)"]
    assert goals[0]["measured"] == pytest.approx(0.6) and goals[0]["target"] == 0.5
    assert goals[0]["met"] is False
    digit_goals = benchmark.compute_goals(records)  # the digit classifier's goals are unchanged
    assert len(digit_goals) > 1 and "INT8 accuracy drop vs FP32" in [
        goal["goal"] for goal in digit_goals]


@pytest.mark.slow
def test_a_number_reader_is_benchmarked_on_lines(number_reader_dir, mnist, tmp_path):
    from edgedigits import contract, runtime
    from edgedigits.tasks import kind_of
    from edgedigits.tasks.number_reader import LINE_SEED, render_lines

    output = tmp_path / "out"
    result = run_command(SCRIPT, "--quick", "--model", str(number_reader_dir), "--batch-sizes",
                         "1,4", "--threads", "1", "--output", str(output), timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "benchmark.json").read_text())
    assert report["model_type"] == contract.NUMBER_READER  # found from the model, no flag
    assert report["kind"]["description"] == "number reader"
    rows = _rows(report)
    lines = benchmark.QUICK.test_images
    for name in NUMBER_READER_ROWS:
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["test_lines"] == lines and "test_images" not in row
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["accuracy"] * lines == pytest.approx(round(row["accuracy"] * lines))
        assert 0 < row["latency_us_p50"] <= row["latency_us_p99"]
        assert set(row["throughput_ips"]) == {"1", "4"}
        assert row["peak_rss_mb"] > 20
    assert rows["tf-function"]["agreement_with_keras"] == 1.0
    assert rows["ov-fp32"]["agreement_with_keras"] >= 0.9
    for name in ("ov-fp32", "ov-fp32-default", "ov-int8"):
        assert rows[name]["tensorflow_imported"] is False, name
    assert rows["ov-fp16"]["status"] == "skipped"  # the fixture converts --int8 only
    for name in PEER_ROWS:
        assert rows[name]["status"] == "skipped"
        assert "digit classifiers only" in rows[name]["note"]

    # The accuracy is the share of lines whose decoded number is the written one: the FP32 IR,
    # run here on the same lines (MNIST test digits, the benchmark's seed), scores the same.
    pixels, texts = render_lines(mnist.x_test, mnist.y_test, lines, seed=LINE_SEED,
                                 log=lambda _: None)
    with runtime.load_classifier(number_reader_dir / "ir" / "fp32" / "model.xml", "openvino",
                                 inference_precision="f32", threads=1,
                                 accept=(contract.NUMBER_READER,)) as classifier:
        read = kind_of(contract.NUMBER_READER).answers(classifier.predict(pixels[..., None]))
    assert rows["ov-fp32"]["accuracy"] == pytest.approx(np.mean(read == np.array(texts)))

    assert [goal["goal"] for goal in report["goals"]] == [
        "INT8 accuracy drop vs FP32 (lines read exactly)"]
    header = result.stdout.splitlines()[0]
    assert "lines exact" in header and "lines/s @4" in header and "img/s" not in header
    markdown = (output / "benchmark.md").read_text()
    assert markdown.startswith("# Benchmark of the number reader")
    assert "lines read exactly" in markdown and f"{lines:,} lines" in markdown
    assert (output / "benchmark.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------
# --baseline: each row beside a saved earlier report's row of the same variant and backend


def _record(variant, backend, p50, accuracy=0.99, status="ok", note=None):
    if status != "ok":
        return {"variant": variant, "backend": backend, "status": status, "note": note}
    return {"variant": variant, "backend": backend, "status": "ok", "accuracy": accuracy,
            "agreement_with_keras": 1.0, "latency_us_p50": p50, "latency_us_p90": p50 * 1.2,
            "latency_us_p99": p50 * 2, "throughput_ips": {"1": 1e6 / p50, "32": 8e6 / p50},
            "size_bytes": 2_000_000, "load_seconds": 0.1, "peak_rss_mb": 150.0}


def _report(rows, batch_sizes=(1, 32), quick=False):
    return {"model_type": "edgedigits-digit-classifier", "quick": quick,
            "kind": {"throughput_unit": "images/s"},
            "settings": {"batch_sizes": list(batch_sizes)}, "rows": rows}


def test_baseline_rows_are_matched_by_variant_and_backend():
    from edgedigits.benchmark import compare

    now = _report([_record("ov-int8", "OpenVINO", 50.0), _record("ov-fp32", "OpenVINO", 80.0),
                   _record("ov-fp16", "OpenVINO", 0, status="skipped", note="no fp16 IR"),
                   _record("litert-int8", "LiteRT", 40.0)])
    then = _report([_record("ov-int8", "OpenVINO", 25.0, accuracy=0.98),
                    _record("ov-fp32", "OpenVINO", 0, status="failed", note="broken"),
                    _record("ov-fp16", "OpenVINO", 60.0),
                    _record("tf-predict", "TensorFlow", 30_000.0)], batch_sizes=(1, 256),
                   quick=True)
    then["rows"][0]["throughput_ips"] = {"1": 1e6 / 25.0, "256": 1e7 / 25.0}
    comparison = compare.compare_benchmarks(now, then)
    rows = {row["variant"]: row for row in comparison["rows"]}
    int8 = {f.name: f for f in rows["ov-int8"]["figures"]}
    assert rows["ov-int8"]["status"] == "ok"
    assert int8["p50 µs"].ratio == 2.0  # now / baseline: twice as slow
    assert int8["images/s @1"].ratio == 0.5
    assert int8["accuracy"].ratio == pytest.approx(0.99 / 0.98)
    assert int8["images/s @32"].baseline is None and int8["images/s @256"].now is None
    assert rows["ov-fp32"]["status"] == "failed in the baseline: broken"
    assert {f.name: f for f in rows["ov-fp32"]["figures"]}["p50 µs"].baseline is None
    assert rows["ov-fp16"]["status"] == "skipped now: no fp16 IR"
    assert rows["ov-fp16"]["figures"] == []
    assert rows["litert-int8"]["status"] == "not in the baseline"
    assert comparison["only_in_baseline"] == ["tf-predict"]
    assert comparison["notes"] == ["the baseline ran --quick: the timings are not a measurement"]
    lines = compare.benchmark_comparison_lines(comparison, "old.json")
    assert lines[0] == "Beside the baseline old.json (ratio = now / baseline):"
    assert "litert-int8 (LiteRT): not in the baseline" in lines
    assert "in the baseline, not measured now: tf-predict" in lines
    p50 = next(line for line in lines if line.strip().startswith("p50 µs"))
    assert p50.split()[-3:] == ["50", "25", "2.000"]
    as_json = compare.benchmark_comparison_json(comparison, "old.json")
    assert json.loads(json.dumps(as_json))["rows"][0]["figures"][2] == {
        "figure": "p50 µs", "now": 50.0, "baseline": 25.0, "ratio": 2.0}


@pytest.mark.slow
def test_baseline_prints_each_row_beside_the_saved_report(quick_run, ir_models_dir, tmp_path):
    _, report, output = quick_run
    result = run_command(SCRIPT, "--quick", "--models-dir", str(ir_models_dir), "--variants",
                         "ov-fp32,ov-int8", "--batch-sizes", "1,16", "--threads", "1",
                         "--output", str(tmp_path / "out"), "--baseline",
                         str(output / "benchmark.json"), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    comparison = printed["baseline_comparison"]
    assert comparison["file"] == str(output / "benchmark.json")
    rows = {row["variant"]: row for row in comparison["rows"]}
    assert set(rows) == {"ov-fp32", "ov-int8"}
    assert comparison["only_in_baseline"] == [
        name for name in benchmark.VARIANTS_BY_NAME if name not in rows]
    figures = {f["figure"]: f for f in rows["ov-fp32"]["figures"]}
    # the same IR on the same test images: the same accuracy, ratio 1
    assert figures["accuracy"]["ratio"] == 1.0
    baseline_p50 = _rows(report)["ov-fp32"]["latency_us_p50"]
    assert figures["p50 µs"]["baseline"] == baseline_p50
    assert figures["p50 µs"]["ratio"] == pytest.approx(
        _rows(printed)["ov-fp32"]["latency_us_p50"] / baseline_p50, abs=1e-4)
    # the report written is the measurement alone; the comparison is printed only
    written = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert "baseline_comparison" not in written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("variant p50\nov-int8 25\n", "not JSON (Expecting value, line 1)"),
        ('{"jsonl": {"frames": 10, "fps_median": 500.0}}',
         "not a benchmark.json of infer/benchmark.py but a report of "
         "infer/benchmark_video.py --output"),
        ('{"rows": "none"}', "not a benchmark.json of infer/benchmark.py"),
    ],
)
def test_a_bad_baseline_is_one_line_and_exit_2_before_measuring(tmp_path, content, message):
    baseline = tmp_path / "baseline.json"
    if content is not None:
        baseline.write_text(content)
    result = run_command(SCRIPT, "--model", str(tmp_path / "models"), "--baseline",
                         str(baseline), "--output", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(baseline) in lines[0], result.stderr
    assert not (tmp_path / "out").exists()

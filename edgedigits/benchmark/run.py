"""Orchestration: plan the rows, run one child process per variant, collect the report.

The parent (``run_benchmark``) finds the variants, writes the test images once, starts one
child per variant (``python -m edgedigits.benchmark.child SPEC.json``), follows its progress
lines and returns the report data. It never imports TensorFlow; the peers (ONNX Runtime,
LiteRT) are exported from the Keras model by a child of their own (``edgedigits.runtime.peers``).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgedigits import contract, system
from edgedigits.benchmark import report
from edgedigits.benchmark.measure import FULL, QUICK, Effort
from edgedigits.benchmark.variants import PEERS_INSTALL_HINT, VARIANTS_BY_NAME, Row, Variant
from edgedigits.errors import UserError
from edgedigits.runtime.tensorflow_backend import check_keras_archive
from edgedigits.tasks import PEERS_NOTE, kind_of, model_types
from edgedigits.tasks import Task as Kind


@dataclass
class Settings:
    models_dir: Path
    keras_model: Path
    output: Path
    variants: list[str] | None = None  # None = all
    batch_sizes: tuple[int, ...] = (1, 32, 256)
    threads: int = 0  # 0 = every core this process may use
    device: str = "CPU"
    quick: bool = False
    data_dir: str | None = None
    progress: bool = True
    command: str = ""

    @property
    def effort(self) -> Effort:
        return QUICK if self.quick else FULL


def usable_cores() -> int:
    return system.usable_cores()


# --------------------------------------------------------------------------------------------
# Environment


_ISA_FLAGS = {
    "AVX2": "avx2",
    "AVX-512F": "avx512f",
    "AVX-512 VNNI": "avx512_vnni",
    "AVX-VNNI": "avx_vnni",
    "AVX-512 BF16": "avx512_bf16",
    "AVX-512 FP16": "avx512_fp16",
    "AMX-TILE": "amx_tile",
    "AMX-INT8": "amx_int8",
    "AMX-BF16": "amx_bf16",
}
_LIBRARIES = ("tensorflow", "keras", "openvino", "nncf", "numpy", "onnxruntime", "onnx",
              "tf2onnx", "ai-edge-litert")


def _cpuinfo() -> tuple[str, dict[str, bool | None], int | None]:
    """CPU model name, the ISA flags that matter (None: unknown) and the physical core count:
    /proc/cpuinfo on Linux, the system's own answers elsewhere (``edgedigits.system``)."""
    model, flags, physical = system.cpu_description()
    return model, {name: system.cpu_flag(flags, flag) for name, flag in _ISA_FLAGS.items()}, \
        physical


def package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def capture_environment(settings: Settings, threads: int) -> dict:
    """Where the numbers come from: CPU, ISA flags that matter, cores, threads, versions."""
    model, isa, physical = _cpuinfo()
    environment = {
        "cpu": model,
        "isa": isa,
        "logical_cores": os.cpu_count(),
        "physical_cores": physical or None,
        "usable_cores": usable_cores(),
        "threads": threads,
        "device": settings.device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": {name: package_version(name) for name in _LIBRARIES},
        "load_average_start": _load_average(),
    }
    try:  # the parent may import OpenVINO (never TensorFlow)
        import openvino as ov

        core = ov.Core()
        environment["openvino_devices"] = {
            device: core.get_property(device, "FULL_DEVICE_NAME")
            for device in core.available_devices
        }
    except Exception as error:  # a broken plugin must not stop the benchmark
        environment["openvino_devices"] = {"error": str(error)}
    return environment


def _load_average() -> list[float] | None:
    return system.load_average()


def check_device(device: str) -> str:
    """Fail early, with one line, on an OpenVINO device this machine does not have."""
    import openvino as ov

    from edgedigits.runtime.openvino_backend import check_device as check_openvino_device

    return check_openvino_device(ov.Core(), device)


# --------------------------------------------------------------------------------------------
# The parent: plan, run children, collect rows


def _model_path(variant: Variant, settings: Settings, peers_dir: Path) -> Path:
    if variant.source == "keras":
        return settings.keras_model
    if variant.source.startswith("ir/"):
        return settings.models_dir / contract.IR_DIR / variant.source[3:] / contract.IR_FILE
    return peers_dir / variant.source


def _size_bytes(path: Path) -> int:
    if path.suffix == ".xml":  # an IR is the .xml and its .bin
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size
    return path.stat().st_size


def model_type_of(settings: Settings) -> str:
    """The kind of model benchmarked (a registered task's model type): what its IRs' metadata
    declares, else the ``model_type`` of the metrics.json beside the Keras model, else a digit
    classifier (older models say nothing). A row whose model is of another kind is refused."""
    for variant in contract.VARIANTS:
        path = settings.models_dir / contract.IR_DIR / variant / contract.IR_FILE
        if not path.is_file():
            continue
        try:
            import openvino as ov

            model_type = contract.ir_model_type(ov.Core().read_model(path))
        except Exception:  # a damaged or foreign IR: its row says so
            continue
        if model_type in model_types():
            return model_type
    metrics = settings.keras_model.parent / contract.METRICS_FILE
    try:
        model_type = json.loads(metrics.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    return model_type if model_type in model_types() else kind_of(None).model_type


def plan_rows(settings: Settings, peers_dir: Path, kind: Kind | None = None) -> list[Row]:
    """The rows to measure, with missing models and packages marked as skipped (and why)."""
    kind = kind or kind_of(None)
    names = settings.variants or list(VARIANTS_BY_NAME)
    rows = []
    for name in names:
        variant = VARIANTS_BY_NAME[name]
        row = Row(variant, _model_path(variant, settings, peers_dir))
        missing = [package for package in variant.packages
                   if importlib.util.find_spec(package) is None]
        if variant.is_peer and not kind.peers:
            row.status, row.note = "skipped", PEERS_NOTE
        elif variant.source == "keras" or variant.is_peer:
            if not settings.keras_model.is_file():
                row.status, row.note = "skipped", (
                    f"no Keras model {settings.keras_model} (run train/train.py)")
        elif not row.model_path.is_file():
            row.status, row.note = "skipped", (
                f"no {row.model_path} (run convert/to_ir.py"
                + {"ir/fp16": " --fp16", "ir/int8": " --int8"}.get(variant.source, "") + ")")
        if row.status == "pending" and missing:
            row.status, row.note = "skipped", f"needs {', '.join(missing)}: {PEERS_INSTALL_HINT}"
        rows.append(row)
    return rows


def _child_env() -> dict:
    # Children must import this package the same way the parent did, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_child(module: str, spec: dict, workdir: Path, on_progress: Callable[[str], None],
              timeout: float) -> dict:
    """Run ``python -m module SPEC`` and return the JSON it wrote (or an ``error``)."""
    name = spec.get("variant", module.rsplit(".", 1)[-1])
    spec_path = workdir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = workdir / f"{name}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(spec_path)], stdout=subprocess.PIPE,
            stderr=log, text=True, env=_child_env(), cwd=os.getcwd())
        started = time.monotonic()
        try:
            for line in process.stdout:
                if line.startswith("progress: "):
                    on_progress(line[len("progress: "):].strip())
                if time.monotonic() - started > timeout:
                    raise subprocess.TimeoutExpired(module, timeout)
            process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return {"error": f"timed out after {timeout:.0f} s"}
        except BaseException:  # Ctrl-C: do not leave a child running
            process.kill()
            process.wait()
            raise
    result_path = Path(spec["result"])
    if process.returncode != 0 or not result_path.is_file():
        return {"error": f"crashed (exit {process.returncode}): {_last_line(log_path)}"}
    return json.loads(result_path.read_text())


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()
             if line.strip()]
    return lines[-1][:300] if lines else "no output"


def _test_set(settings: Settings, kind: Kind) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from edgedigits.data.mnist import load_mnist

    mnist = load_mnist(settings.data_dir)
    inputs, answers = kind.test_set(mnist, settings.effort.test_images)
    calibration = mnist.x_train[: settings.effort.calibration_images]
    return inputs, answers, calibration


def run_benchmark(settings: Settings) -> dict:
    """Measure every planned variant, each in its own process; return the report data."""
    from tqdm import tqdm

    threads = settings.threads or usable_cores()
    effort = settings.effort
    with tempfile.TemporaryDirectory(prefix="edgedigits-benchmark-") as temporary:
        workdir = Path(temporary)
        peers_dir = workdir / "peers"
        kind = kind_of(model_type_of(settings))
        rows = plan_rows(settings, peers_dir, kind)
        runnable = [row for row in rows if row.status == "pending"]
        if not runnable:
            reasons = "; ".join(f"{row.variant.name}: {row.note}" for row in rows)
            raise UserError(f"nothing to benchmark in {settings.models_dir} ({reasons})")
        if any(row.variant.source == "keras" or row.variant.is_peer for row in runnable):
            check_keras_archive(settings.keras_model)  # a damaged file: one line, before any child
        if any(row.variant.backend == "OpenVINO" for row in runnable):
            check_device(settings.device)
        environment = capture_environment(settings, threads)
        images, labels, calibration = _test_set(settings, kind)
        test_set = workdir / "test_set.npz"
        np.savez(test_set, images=images, labels=labels)

        peers = [row for row in runnable if row.variant.is_peer]
        bar = tqdm(total=len(runnable) + (1 if peers else 0), unit="variant",
                   disable=not settings.progress, file=sys.stderr, leave=False)
        timeout = 300 if settings.quick else 1200
        try:
            if peers:
                bar.set_description("exporting peers")
                calibration_path = workdir / "calibration.npy"
                np.save(calibration_path, calibration)
                exported = run_child(
                    "edgedigits.runtime.peers",
                    {"keras_model": str(settings.keras_model), "output": str(peers_dir),
                     "calibration": str(calibration_path), "threads": threads,
                     "formats": [row.variant.source for row in peers],
                     "result": str(workdir / "peers.result.json")},
                    workdir, bar.set_postfix_str, timeout)
                if exported.get("user_error"):
                    raise UserError(exported["error"])
                for row in peers:
                    problem = exported.get("error") or exported.get("errors", {}).get(
                        row.variant.source)
                    if problem or not row.model_path.is_file():
                        row.status = "failed"
                        row.note = f"export failed: {problem or 'no file written'}"
                bar.update(1)
            for row in runnable:
                if row.status != "pending":
                    bar.update(1)
                    continue
                bar.set_description(row.variant.name)
                spec = {
                    "variant": row.variant.name, "model_path": str(row.model_path),
                    "model_type": kind.model_type,
                    "device": settings.device, "threads": threads,
                    "batch_sizes": list(settings.batch_sizes),
                    "effort": dataclasses.asdict(effort), "test_set": str(test_set),
                    "predictions": str(workdir / f"{row.variant.name}.predictions.npy"),
                    "result": str(workdir / f"{row.variant.name}.result.json"),
                }
                result = run_child("edgedigits.benchmark.child", spec, workdir,
                                   bar.set_postfix_str, timeout)
                if result.get("user_error") and row.variant.source == "keras":
                    raise UserError(result["error"])  # the Keras model: refuse it, like classify
                if "error" in result:
                    row.status, row.note = "failed", result["error"]
                    row.user_error = bool(result.get("user_error"))
                else:
                    row.status, row.result = "ok", result
                    row.result["size_bytes"] = _size_bytes(row.model_path)
                    row.result["predictions"] = np.load(spec["predictions"])
                bar.update(1)
        finally:
            bar.close()
        environment["load_average_end"] = _load_average()
        return build_report(rows, environment, settings, threads, kind)


def build_report(rows: list[Row], environment: dict, settings: Settings, threads: int,
                 kind: Kind | None = None) -> dict:
    kind = kind or kind_of(None)
    reference = report.keras_reference(rows)
    records = [report.row_record(row, reference, kind) for row in rows]
    effort = settings.effort
    return {
        "command": settings.command,
        "quick": settings.quick,
        "model_type": kind.model_type,
        "kind": {"description": kind.description, "unit": kind.unit,
                 "test_set": kind.test_set_text, "accuracy": kind.accuracy_header,
                 "throughput_unit": f"{kind.units}/s"},
        "settings": {
            "models_dir": str(settings.models_dir), "keras_model": str(settings.keras_model),
            "batch_sizes": list(settings.batch_sizes), "threads": threads,
            "device": settings.device, "effort": dataclasses.asdict(effort),
        },
        "environment": environment,
        "rows": records,
        "goals": report.compute_goals(records, kind),
    }

"""An output path never destroys what the user has (issue 13, class 1).

Folders, inputs and other outputs named as outputs are refused before any work; empty paths
are errors; a set of outputs is published in one step (failures injected at every rename); a
full disk is one line with earlier outputs intact; one writer per models folder.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import run_command
from edgedigits import contract, files
from edgedigits.errors import UserError


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (following the set links) and a hash of its bytes."""
    found = {}
    for root, _, names in os.walk(folder, followlinks=True):
        for name in names:
            path = Path(root) / name
            if path.exists():
                found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def visible(folder: Path) -> dict[str, str]:
    """What a reader sees: the public names only (not the hidden version folders)."""
    return {name: digest for name, digest in snapshot(folder).items()
            if not any(part.startswith(".") for part in Path(name).parts)}


def write_counting_clip(path: Path, frames: int, size: tuple[int, int], fps: float) -> Path:
    """A video of one big printed digit per frame, 0-9 over and over (``size`` is w, h)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        frame = np.full((height, width, 3), 255, np.uint8)
        cv2.putText(frame, str(index % 10), (width * 2 // 5, height * 3 // 4),
                    cv2.FONT_HERSHEY_SIMPLEX, height / 50, (0, 0, 0), max(2, height // 25))
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_counting_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 20, (160, 120), 10)


def _user_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(os.urandom(100))
    return folder


# --------------------------------------------------------------------------------------------
# A folder, the input or another output named as an output: refused before any work


@pytest.mark.parametrize("flag", ["--jsonl", "--summary-json", "--save"])
def test_webcam_output_naming_a_folder_is_refused_and_the_folder_kept(ir_models_dir, clip,
                                                                      tmp_path, flag):
    folder = _user_folder(tmp_path)
    before = snapshot(folder)
    result = run_command("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                         "--source", str(clip), flag, str(folder))
    assert result.returncode == 2, result.stderr
    assert "existing folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(folder) == before


@pytest.mark.parametrize("flag", ["--jsonl", "--save", "--summary-json"])
def test_webcam_output_naming_the_input_video_is_refused(ir_models_dir, clip, tmp_path, flag):
    source = tmp_path / "input.mp4"
    source.write_bytes(clip.read_bytes())
    before = source.read_bytes()
    result = run_command("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                         "--source", str(source), flag, str(tmp_path / "." / "input.mp4"))
    assert result.returncode == 2 and "is the input" in result.stderr, result.stderr
    assert source.read_bytes() == before


def test_two_outputs_naming_one_file_are_refused(ir_models_dir, clip, tmp_path):
    target = tmp_path / "x"
    result = run_command("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                         "--source", str(clip), "--jsonl", str(target), "--save", str(target))
    assert result.returncode == 2 and "both name" in result.stderr, result.stderr
    assert not target.exists()


def test_a_file_never_replaces_a_folder_at_commit_either(tmp_path):
    folder = _user_folder(tmp_path)
    before = snapshot(folder)
    with pytest.raises(UserError, match="existing folder"):
        files.write_json(folder, {"a": 1})
    assert snapshot(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["results"]  # no staging left


def test_convert_output_that_is_the_input_or_a_file_is_refused(small_model_dir, tmp_path):
    model = tmp_path / "model.keras"
    model.write_bytes((small_model_dir / contract.KERAS_FILE).read_bytes())
    before = model.read_bytes()
    result = run_command("convert/to_ir.py", "--input", str(model), "--output", str(model))
    assert result.returncode == 2 and "existing file" in result.stderr, result.stderr
    assert model.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Empty paths are errors, never "the default"


@pytest.mark.parametrize("command", [
    ["train/train.py", "--output", ""],
    ["convert/to_ir.py", "--output", ""],
    ["convert/to_ir.py", "--input", " "],
    ["infer/classify.py", "--model", "", "x.png"],
    ["infer/classify.py", ""],
    ["infer/webcam.py", "--no-display", "--jsonl", ""],
    ["infer/benchmark.py", "--output", ""],
])
def test_an_empty_path_is_an_error(tmp_path, command):
    result = run_command(*command, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "empty value" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == []  # nothing written into the current folder


def test_an_empty_models_variable_means_the_default_folder(monkeypatch):
    monkeypatch.setenv(contract.MODELS_DIR_ENV, "")
    assert contract.default_models_dir() == Path("models")


# --------------------------------------------------------------------------------------------
# A set of outputs is published in one step


def _write_set(staging: Path, members: tuple[str, ...], tag: str) -> None:
    for member in members:
        if "." in member:
            (staging / member).write_text(f"{tag} {member}")
        else:  # a folder member: saved_model/, an IR variant
            (staging / member).mkdir()
            (staging / member / "inside.bin").write_text(f"{tag} {member}")


def _tags(folder: Path, members: tuple[str, ...]) -> set[str]:
    tags = set()
    for member in members:
        path = folder / member
        path = path / "inside.bin" if "." not in member else path
        tags.add(path.read_text().split()[0] if path.exists() else "missing")
    return tags


def test_a_new_set_without_a_member_removes_the_old_one(tmp_path):
    members = contract.CONVERSION_OUTPUTS
    with files.staged_set(tmp_path, "ir", members) as staging:
        _write_set(staging, members, "old")
    with files.staged_set(tmp_path, "ir", members) as staging:
        _write_set(staging, ("fp32", "report.json", "report.md"), "new")
    assert not (tmp_path / "int8").exists() and not (tmp_path / "int8").is_symlink()
    assert _tags(tmp_path, ("fp32", "report.json", "report.md")) == {"new"}


def test_convert_publishes_variants_and_report_as_one_set(ir_models_dir, tmp_path):
    """The real layout: readers see ir/<variant>/model.xml and report.json as before."""
    ir = ir_models_dir / contract.IR_DIR
    for variant in contract.VARIANTS:
        assert (ir / variant / contract.IR_FILE).is_file()
    assert (ir / "report.json").is_file()
    pointer = ir / ".current-ir"
    assert pointer.is_symlink() and (ir / os.readlink(pointer) / "report.json").is_file()


# --------------------------------------------------------------------------------------------
# Staging left by a killed run is cleaned up


def test_staging_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.jsonl.tmp-{dead_pid}-abcd"
    stale.mkdir()
    (stale / "out.jsonl").write_text("partial")
    alive = tmp_path / f".other.tmp-{os.getppid()}-abcd"
    alive.mkdir()
    files.write_text(tmp_path / "out.jsonl", "whole")
    assert not stale.exists() and alive.exists()


# --------------------------------------------------------------------------------------------
# One writer per models folder


def test_a_second_writer_to_the_same_folder_gets_one_line(small_model_dir, tmp_path):
    folder = tmp_path / "ir"
    with files.output_lock(folder):
        result = run_command("convert/to_ir.py", "--input",
                             str(small_model_dir / contract.KERAS_FILE), "--output", str(folder))
    assert result.returncode == 2, result.stderr
    assert "another run" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert os.listdir(folder) == []


# --------------------------------------------------------------------------------------------
# A full disk: one line, earlier outputs intact


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("flag", ["--save", "--jsonl"])
def test_a_full_disk_is_one_line_and_earlier_outputs_stay(ir_models_dir, tmp_path, small_disk,
                                                          flag):
    source = tmp_path / "long.mp4"  # noisy frames: the annotated video cannot fit in 256 KiB
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(60):
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()
    earlier = small_disk / ("out.mp4" if flag == "--save" else "out.jsonl")
    earlier.write_bytes(b"earlier output " * 100)
    filler = small_disk / "filler"  # leave too little room for the new output
    room = os.statvfs(small_disk)
    filler.write_bytes(b"\0" * max(0, room.f_bavail * room.f_frsize - 4096))
    result = run_command("infer/webcam.py", "--model", str(ir_models_dir), "--no-display",
                         "--source", str(source), flag, str(earlier), "--max-digits", "64")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert earlier.read_bytes() == b"earlier output " * 100
    assert sorted(os.listdir(small_disk)) == sorted([earlier.name, "filler"])


def test_a_file_size_limit_while_writing_json_is_one_line(tmp_path):
    """RLIMIT_FSIZE gives EFBIG, the same class as a full disk."""
    target = tmp_path / "report.json"
    target.write_text('{"earlier": true}\n')
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from edgedigits import cli, files\n"
        f"cli.run(lambda: files.write_json({str(target)!r}, {{'x': 'y' * 100000}}), 'w')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "File too large" in result.stderr and "Traceback" not in result.stderr
    assert target.read_text() == '{"earlier": true}\n'
    assert os.listdir(tmp_path) == ["report.json"]


def test_benchmark_reports_are_published_as_one_set(tmp_path, monkeypatch):
    """json, md and png together: a failure while plotting leaves the previous three."""
    from edgedigits.benchmark import report as benchmark_report

    folder = tmp_path / "benchmark"
    folder.mkdir()
    for name in ("benchmark.json", "benchmark.md", "benchmark.png"):
        (folder / name).write_text(f"previous {name}")
    before = visible(folder)

    def plot_fails(report, path):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(benchmark_report, "plot_report", plot_fails)
    monkeypatch.setattr(benchmark_report, "render_markdown", lambda report: "new table\n")
    rows = [{"status": "ok"}]
    with pytest.raises(OSError):
        benchmark_report.write_report({"rows": rows}, folder)
    assert visible(folder) == before
    assert not [name for name in os.listdir(folder) if ".tmp-" in name]

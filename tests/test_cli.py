"""One command-line vocabulary: every entry point's --help, as a user runs it.

Each shared flag must be offered by every command it belongs to, and where its meaning is the
same everywhere (--data-dir, --device, --precision, --quiet, --verbose) its help text must be
word for word the same: they come from one definition in ``edgedigits.cli``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_command
from edgedigits.cli import EXIT_FAILED

# The shared flags each command offers (beyond its own).
COMMANDS = {
    "train/train.py": {"--data-dir", "--output", "--precision", "--batch-size", "--json",
                       "--quiet", "--verbose"},
    "train/benchmark_training.py": {"--data-dir", "--output", "--json", "--quiet", "--verbose"},
    "convert/to_ir.py": {"--model", "--output", "--data-dir", "--batch-size", "--json",
                         "--quiet", "--verbose"},
    "infer/classify.py": {"--model", "--backend", "--device", "--precision", "--threads",
                          "--output", "--json", "--quiet", "--verbose"},
    "infer/webcam.py": {"--model", "--backend", "--device", "--precision", "--threads",
                        "--source", "--output", "--json", "--quiet", "--verbose"},
    "infer/benchmark.py": {"--model", "--device", "--threads", "--data-dir", "--output",
                           "--json", "--quiet", "--verbose"},
    "infer/benchmark_video.py": {"--model", "--backend", "--device", "--precision", "--threads",
                                 "--data-dir", "--output", "--json", "--quiet", "--verbose"},
    "infer/serve.py": {"--model", "--backend", "--device", "--precision", "--threads",
                       "--quiet", "--verbose"},
}
# Flags whose help is word for word the same wherever they appear. (--threads means inference
# threads everywhere, but its default differs: the benchmark fixes one count for every runtime.)
SAME_MEANING = ("--data-dir", "--device", "--precision", "--quiet", "--verbose", "--backend")
# Old names kept working for one release, but not shown.
HIDDEN_ALIASES = {"convert/to_ir.py": ("--input", "--batch"),
                  "infer/benchmark.py": ("--models-dir", "--no-progress")}


def options(help_text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from argparse's --help output."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in help_text.splitlines():
        if re.match(r"^ {2,4}-", line):
            invocation, _, text = line.strip().partition("  ")
            current = [text.strip()]
            for flag in re.findall(r"--[a-z][a-z0-9-]*", invocation):
                found[flag] = current
        elif current is not None and line.startswith("      ") and line.strip():
            current.append(line.strip())
        else:
            current = None
    return {flag: " ".join(part for part in parts if part) for flag, parts in found.items()}


@pytest.fixture(scope="module")
def helps() -> dict[str, dict[str, str]]:
    result = {}
    for script in COMMANDS:
        run = run_command(script, "--help", env={"COLUMNS": "200"}, timeout=120)
        assert run.returncode == 0, (script, run.stderr)
        assert "Traceback" not in run.stderr
        result[script] = options(run.stdout)
    return result


@pytest.mark.parametrize("script", sorted(COMMANDS))
def test_every_command_offers_its_shared_flags(helps, script):
    missing = COMMANDS[script] - set(helps[script])
    assert not missing, f"{script} lacks {sorted(missing)}"
    for alias in HIDDEN_ALIASES.get(script, ()):
        assert alias not in helps[script], f"{script} shows the old name {alias}"


@pytest.mark.parametrize("flag", SAME_MEANING)
def test_a_shared_flag_means_the_same_in_every_command(helps, flag):
    texts = {script: found[flag] for script, found in helps.items() if flag in found}
    assert len(texts) >= 2, flag
    assert len(set(texts.values())) == 1, texts


def test_the_help_parser_sees_a_difference():
    # The comparison above can fail: two different help texts are two different meanings.
    sample = ("options:\n  --data-dir DATA_DIR  MNIST folder\n"
              "  --device DEVICE      OpenVINO device:\n                       CPU or GPU\n")
    assert options(sample) == {"--data-dir": "MNIST folder",
                               "--device": "OpenVINO device: CPU or GPU"}


@pytest.mark.parametrize(("script", "flag"), [
    ("convert/to_ir.py", "--input"),
    ("infer/benchmark.py", "--models-dir"),
])
def test_old_model_flags_still_work(tmp_path, script, flag):
    # The old name is still read: a missing path gets the same one-line error as --model.
    missing = str(tmp_path / "nothing")
    old = run_command(script, flag, missing, "--output", str(tmp_path / "out"), timeout=120)
    new = run_command(script, "--model", missing, "--output", str(tmp_path / "out"), timeout=120)
    assert old.returncode == new.returncode == 2, (old.stderr, new.stderr)
    assert old.stderr == new.stderr and missing in new.stderr


@pytest.mark.parametrize(("script", "arguments"), [
    ("convert/to_ir.py", ["--batch-size", "100000"]),
    ("convert/to_ir.py", ["--batch", "100000"]),
    ("train/train.py", ["--batch-size", "5000"]),
    ("infer/benchmark.py", ["--batch-sizes", "1,8192"]),
])
def test_batch_sizes_have_an_upper_bound(tmp_path, script, arguments):
    result = run_command(script, *arguments, "--output", str(tmp_path / "out"), timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "at most 4096" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(ir_models_dir, tmp_path):
    """`classify.py ... | head`: the pipe closes before the output is written."""
    image = tmp_path / "paper.png"
    cv2.imwrite(str(image), np.full((64, 64), 255, np.uint8))
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "infer/classify.py"), "--model", str(ir_models_dir),
         "--json", str(image)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert process.returncode == EXIT_FAILED

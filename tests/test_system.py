"""Issue 22: the platform differences behind ``edgedigits.system``, pinned in both modes.

Every test runs twice: as this Linux machine is (``posix``) and in a simulated Windows
(``windows``: no SIGHUP and no signal mask, SIGBREAK, ``os.symlink`` refused, no ``fcntl`` but
``msvcrt``, no ``resource``, no ``/proc``, ``os.kill`` forbidden; ``tests/simulated_windows.py``).
Both must give the same results: a set published whole or not at all, a second writer refused
with one line, Ctrl-C and the stop signals ending a command with one line and exit 130, the
same CPU facts. On real Windows (the CI workflow) the ``windows`` mode runs the real thing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import simulated_windows

from conftest import ROOT
from edgedigits import contract, files, system

MODES = ["posix", "windows"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    if request.param == "posix" and simulated_windows.REAL_WINDOWS:
        pytest.skip("POSIX cannot be run on Windows")
    if request.param == "windows":
        simulated_windows.apply(monkeypatch)
    return request.param


def _child(code: str, mode: str, **kwargs) -> subprocess.Popen:
    """A Python child that runs ``code`` in ``mode`` (the simulation applied first)."""
    prelude = ("import pytest, simulated_windows\n"
               "simulated_windows.apply(pytest.MonkeyPatch())\n") if mode == "windows" else ""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _visible(folder: Path) -> list[str]:
    """What a listing shows, without Windows' lock file."""
    return sorted(name for name in os.listdir(folder) if name != system.LOCK_FILE)


# --------------------------------------------------------------------------------------------
# Signals


def test_the_cli_imports_without_sighup():
    """The issue's reproduction: Windows' signal module has no SIGHUP."""
    done = subprocess.run(
        [sys.executable, "-c", "import signal; del signal.SIGHUP; import edgedigits.cli as c; "
                               "print(sorted(s.name for s in c.STOP_SIGNALS))"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['SIGTERM']"


def test_stop_signals_are_the_ones_that_exist(mode):
    names = {signum.name if hasattr(signum, "name") else signum
             for signum in system.stop_signals()}
    if mode == "windows":
        assert signal.SIGBREAK in system.stop_signals()
        assert not hasattr(signal, "SIGHUP")
    else:
        assert names == {"SIGTERM", "SIGHUP"}
    assert system.interrupt_signals()[0] == signal.SIGINT


def test_signals_wait_for_a_commit_then_interrupt(mode):
    """A stop signal during ``signals_held`` acts after the block, not inside it."""
    from edgedigits import cli

    previous = signal.signal(signal.SIGTERM, cli._stop)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with system.signals_held():
                signal.raise_signal(signal.SIGTERM)
                time.sleep(0.01)
                finished.append(True)
            time.sleep(0.01)  # POSIX: the unblocked signal's handler runs at the next check
    finally:
        signal.signal(signal.SIGTERM, previous)
        cli._stopped_by = None
    assert finished == [True]


# A command run through cli.run that publishes a set, then waits to be stopped mid-way through
# its next one. Run in each mode; the test sends Ctrl-C or a stop signal.
_STOPPABLE = """
    import sys, time
    from pathlib import Path
    from edgedigits import cli, files

    folder = Path(sys.argv[1])
    def main():
        with files.staged_set(folder, "model", ("a.txt", "b")) as staging:
            (staging / "a.txt").write_text("new")
            (staging / "b").mkdir()
            print("ready", flush=True)
            time.sleep(60)
    cli.run(main, prog="stoppable")
"""


def _stop_signals(mode: str) -> list:
    if mode == "windows":
        return [signal.SIGINT, simulated_windows.SIGBREAK, signal.SIGTERM]
    return [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.mark.skipif(simulated_windows.REAL_WINDOWS,
                    reason="sending Ctrl-C/Ctrl-Break needs a console process group on Windows")
@pytest.mark.parametrize("which", [0, 1, 2], ids=["ctrl-c", "stop-1", "stop-2"])
@pytest.mark.parametrize("child_mode", MODES)
def test_a_stopped_command_says_one_line_and_keeps_the_published_set(tmp_path, child_mode,
                                                                   which):
    folder = tmp_path / "models"
    with files.staged_set(folder, "model", ("a.txt", "b")) as staging:
        (staging / "a.txt").write_text("old")
        (staging / "b").mkdir()
    signum = _stop_signals(child_mode)[which]
    script = _STOPPABLE.replace("sys.argv[1]", repr(str(folder)))
    process = _child(script, child_mode, preexec_fn=_default_dispositions)
    assert process.stdout.readline().strip() == "ready", process.communicate()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "stoppable: interrupted" in lines[0], stderr
    assert (files.published_path(folder / "a.txt")).read_text() == "old"
    assert (folder / "a.txt").read_text() == "old"
    assert [name for name in _visible(folder) if ".tmp-" in name] == []


def _default_dispositions() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_DFL)


# --------------------------------------------------------------------------------------------
# Sets published whole or not at all


def _write_set(staging: Path, members: tuple[str, ...], tag: str) -> None:
    for member in members:
        if "." in member:
            (staging / member).write_text(f"{tag} {member}")
        else:
            (staging / member).mkdir()
            (staging / member / "inside.bin").write_text(f"{tag} {member}")


def _tags(folder: Path, members: tuple[str, ...], through_pointer: bool) -> set[str]:
    tags = set()
    for member in members:
        path = folder / member / "inside.bin" if "." not in member else folder / member
        if through_pointer:
            path = files.published_path(path)
        tags.add(path.read_text().split()[0] if path.exists() else "missing")
    return tags


def test_a_set_is_published_and_replaced_in_either_form(tmp_path, mode):
    tmp_path = tmp_path / "my models (2)"  # a path with spaces, as Windows users have them
    members = contract.CONVERSION_OUTPUTS
    with files.staged_set(tmp_path, "ir", members) as staging:
        _write_set(staging, members, "old")
    with files.staged_set(tmp_path, "ir", members) as staging:
        _write_set(staging, ("fp32", "int8", "report.json"), "new")
    assert _tags(tmp_path, ("fp32", "int8", "report.json"), through_pointer=False) == {"new"}
    assert _tags(tmp_path, ("fp32", "int8", "report.json"), through_pointer=True) == {"new"}
    for gone in ("fp16", "report.md"):  # members the new set lacks disappear with the old one
        assert not (tmp_path / gone).exists() and not (tmp_path / gone).is_symlink()
    pointer = tmp_path / ".current-ir"
    hidden = [name for name in _visible(tmp_path) if name.startswith(".")]
    if mode == "windows":
        assert pointer.is_file() and not pointer.is_symlink()
        version = json.loads(pointer.read_text())["version"]
        assert not (tmp_path / "fp32").is_symlink()
        assert files.published_path(tmp_path / "fp32" / "inside.bin") == \
            tmp_path / version / "fp32" / "inside.bin"
    else:
        assert pointer.is_symlink()
        version = os.readlink(pointer)
        assert files.published_path(tmp_path / "fp32" / "inside.bin") == \
            tmp_path / "fp32" / "inside.bin"
    assert sorted(hidden) == sorted([".current-ir", version])


@pytest.mark.parametrize("members", [contract.TRAINING_OUTPUTS, contract.CONVERSION_OUTPUTS])
@pytest.mark.parametrize("legacy", [False, True], ids=["versioned", "plain-files-before"])
@pytest.mark.parametrize("call", ["replace", "symlink", "link", "rmtree"])
def test_a_crash_at_any_step_leaves_the_whole_old_or_new_set(tmp_path, monkeypatch, mode,
                                                             members, legacy, call):
    """A crash at the Nth call of each file operation publishing a set, for every N: the set
    is the whole old one or the whole new one, and the next run publishes normally. In the
    symlink form (posix) the names themselves are the set; in the copy form (windows) the set
    is whole through the pointer (``published_path``) at every crash, and the visible copies
    are whole again after the next run."""
    real = {"replace": os.replace, "symlink": os.symlink, "link": os.link,
            "rmtree": files.shutil.rmtree}
    target = {"replace": (os, "replace"), "symlink": (os, "symlink"), "link": (os, "link"),
              "rmtree": (files.shutil, "rmtree")}[call]
    outcomes = set()
    for crash_at in range(1, 100):
        folder = tmp_path / f"run{crash_at}"
        folder.mkdir()
        if legacy:  # a models folder written before sets were versioned
            _write_set(folder, members, "old")
        else:
            with files.staged_set(folder, "set", members) as staging:
                _write_set(staging, members, "old")
        calls = 0

        def failing(*args, _name=call, crash_at=crash_at, **kwargs):
            nonlocal calls
            calls += 1
            if calls == crash_at:
                raise RuntimeError(f"crash at {_name} #{crash_at}")
            return real[_name](*args, **kwargs)

        monkeypatch.setattr(*target, failing)
        try:
            with files.staged_set(folder, "set", members) as staging:
                _write_set(staging, members, "new")
            crashed = False
        except RuntimeError as error:
            assert "crash at" in str(error)
            crashed = True
        finally:
            monkeypatch.setattr(*target, real[call])
        tags = _tags(folder, members, through_pointer=True)
        assert tags in ({"old"}, {"new"}), (crash_at, tags, os.listdir(folder))
        outcomes.add(tags.pop())
        if mode == "posix":  # the names themselves are the set
            assert _tags(folder, members, through_pointer=False) in ({"old"}, {"new"})
        with files.staged_set(folder, "set", members) as staging:
            _write_set(staging, members, "next")
        assert _tags(folder, members, through_pointer=False) == {"next"}
        assert _tags(folder, members, through_pointer=True) == {"next"}
        hidden = [name for name in _visible(folder) if name.startswith(".")]
        assert len(hidden) == 2, (crash_at, hidden)  # the pointer and the version it names
        if not crashed:
            break
    assert "new" in outcomes
    if mode == "posix" and call in ("replace", "symlink"):  # a crash before the switch
        assert "old" in outcomes


def test_a_folder_can_change_form_both_ways(tmp_path, monkeypatch):
    """Written with symlinks, then where they are refused, then with symlinks again."""
    members = contract.TRAINING_OUTPUTS
    with files.staged_set(tmp_path, "model", members) as staging:
        _write_set(staging, members, "one")
    with monkeypatch.context() as windows:
        simulated_windows.apply(windows)
        assert _tags(tmp_path, members, through_pointer=True) == {"one"}
        with files.staged_set(tmp_path, "model", members) as staging:
            _write_set(staging, members, "two")
        assert not (tmp_path / contract.KERAS_FILE).is_symlink()
        assert _tags(tmp_path, members, through_pointer=False) == {"two"}
    assert _tags(tmp_path, members, through_pointer=False) == {"two"}
    with files.staged_set(tmp_path, "model", members) as staging:
        _write_set(staging, members, "three")
    assert (tmp_path / contract.KERAS_FILE).is_symlink()
    assert _tags(tmp_path, members, through_pointer=False) == {"three"}
    assert len([name for name in _visible(tmp_path) if name.startswith(".")]) == 2


def test_copies_a_killed_run_left_unfinished_are_refreshed(tmp_path, monkeypatch):
    members = ("a.txt", "b.txt")
    simulated_windows.apply(monkeypatch)
    with files.staged_set(tmp_path, "s", members) as staging:
        _write_set(staging, members, "old")
    real_replace = os.replace
    replaced = []

    def crash_after_the_pointer(source, target):
        replaced.append(Path(target).name)
        if Path(target).name == "b.txt":
            raise RuntimeError("killed")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_after_the_pointer)
    with pytest.raises(RuntimeError), files.staged_set(tmp_path, "s", members) as staging:
        _write_set(staging, members, "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (tmp_path / "a.txt").read_text().startswith("new")  # the copies half-way ...
    assert (tmp_path / "b.txt").read_text().startswith("old")
    assert _tags(tmp_path, members, through_pointer=True) == {"new"}  # ... the set is whole
    files._clean_set_leftovers(tmp_path, "s", members)  # what the next writer does first
    assert _tags(tmp_path, members, through_pointer=False) == {"new"}


# --------------------------------------------------------------------------------------------
# One writer at a time


_SECOND_WRITER = """
    import sys
    from edgedigits import cli, files

    def main():
        with files.output_lock(sys.argv[1]):
            print("got the lock")
    cli.run(main, prog="writer")
"""


def test_a_second_writer_gets_one_line(tmp_path, mode):
    folder = tmp_path / "out folder"
    script = _SECOND_WRITER.replace("sys.argv[1]", repr(str(folder)))
    with files.output_lock(folder):
        with files.output_lock(folder):  # the same process may take it again
            pass
        second = _child(script, mode)
        stdout, stderr = second.communicate(timeout=60)
        assert second.returncode == 2, stderr
        assert stderr.strip() == f"writer: error: another run is writing to {folder}; wait " \
                                 "for it to finish or choose another output folder"
    assert _visible(folder) == []
    if mode == "windows":
        assert os.listdir(folder) == [system.LOCK_FILE]  # msvcrt locks a file, kept empty
    after = _child(script, mode)  # released: the next writer gets it
    stdout, stderr = after.communicate(timeout=60)
    assert after.returncode == 0 and stdout.strip() == "got the lock", stderr


# --------------------------------------------------------------------------------------------
# Processes


def test_staging_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path, mode):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert system.pid_alive(os.getpid()) and not system.pid_alive(int(dead.stdout))
    stale = tmp_path / f".out.jsonl.tmp-{int(dead.stdout)}-abcd"
    stale.mkdir()
    alive = tmp_path / f".other.tmp-{os.getppid()}-abcd"
    alive.mkdir()
    files.write_text(tmp_path / "out.jsonl", "whole")
    assert not stale.exists() and alive.exists()


# --------------------------------------------------------------------------------------------
# Measurement without /proc


def test_peak_memory_is_a_number_or_a_clean_unknown(mode):
    from edgedigits.benchmark import peak_rss_mb

    peak = peak_rss_mb()
    if mode == "posix":
        assert peak is not None and peak > 20
    else:  # this Linux has no Windows API to ask, nor psutil's peak_wset: unknown, not a crash
        assert peak is None or peak > 20


def test_peak_memory_without_proc_comes_from_getrusage(monkeypatch):
    with_proc = system.peak_memory_mb()
    monkeypatch.setattr(system, "PROC", Path("/nonexistent-proc"))
    without = system.peak_memory_mb()
    assert without is not None and abs(without - with_proc) < 0.5 * with_proc


def test_another_process_memory_without_proc(monkeypatch):
    """For the serving load test (which still reads /proc/<pid> itself): psutil elsewhere."""
    current, peak = system.process_memory_mb(os.getpid())
    assert current is not None and peak is not None and peak >= current > 20
    monkeypatch.setattr(system, "PROC", Path("/nonexistent-proc"))
    current_psutil, peak_psutil = system.process_memory_mb(os.getpid())
    assert abs(current_psutil - current) < 0.5 * current
    assert peak_psutil is None  # psutil on Linux has no peak; on Windows its peak_wset
    assert system.process_memory_mb(2**22 + 1) == (None, None)  # no such process


def test_the_benchmark_cpu_line_is_the_same_without_proc(monkeypatch):
    from edgedigits.benchmark import run

    model, isa, physical = run._cpuinfo()
    assert model and physical
    simulated_windows.apply(monkeypatch)
    model_w, isa_w, physical_w = run._cpuinfo()
    assert model_w  # the processor's name from the system (Windows: the registry)
    known = {name: present for name, present in isa_w.items() if present is not None}
    assert {"AVX2", "AVX-512F"} <= set(known)  # numpy's CPUID check answers these
    assert known == {name: isa[name] for name in known}  # the same answers as /proc
    assert physical_w in (physical, None)  # psutil's count, or unknown
    assert system.usable_cores() >= 1
    monkeypatch.delattr(os, "getloadavg")  # Windows keeps no load average
    assert run._load_average() is None


# --------------------------------------------------------------------------------------------
# The README's chain in a simulated Windows


def _command(mode: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """``python <script> args`` as a user runs it, in ``mode`` (the simulation applied first)."""
    code = f"""
        import runpy, sys
        sys.argv = {[script, *args]!r}
        runpy.run_path({str(ROOT / script)!r}, run_name="__main__")
    """
    process = _child(code, mode)
    stdout, stderr = process.communicate(timeout=600)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.slow
def test_train_convert_classify_in_a_simulated_windows(tmp_path, mnist):
    """train.py and to_ir.py publish their sets in the copy form (a folder with spaces, symlinks
    refused, msvcrt's lock); classify.py reads the IR the same in both modes."""
    import cv2

    models = tmp_path / "my models"
    trained = _command("windows", "train/train.py", "--output", str(models), "--epochs", "1",
                       "--train-size", "2000", "--quiet")
    assert trained.returncode == 0, trained.stderr
    converted = _command("windows", "convert/to_ir.py", "--model",
                         str(models / contract.KERAS_FILE), "--quiet")
    assert converted.returncode == 0, converted.stderr
    for folder, name in ((models, "model"), (models / contract.IR_DIR, "ir")):
        pointer = folder / f".current-{name}"
        assert pointer.is_file() and not pointer.is_symlink()
        assert json.loads(pointer.read_text())["copies"] == "done"
    assert not (models / contract.IR_DIR / "fp32").is_symlink()
    images = []
    for index in range(3):
        images.append(str(tmp_path / f"digit {index}.png"))
        cv2.imwrite(images[-1], 255 - mnist.x_test[index])
    answers = {mode: _command(mode, "infer/classify.py", "--model", str(models / "ir"),
                              "--json", *images) for mode in MODES}
    assert answers["windows"].returncode == 0, answers["windows"].stderr
    assert answers["windows"].stdout == answers["posix"].stdout
    digits = [row["digit"] for row in json.loads(answers["windows"].stdout)]
    assert len(digits) == 3

"""A simulated Windows on this Linux machine, for the code behind ``edgedigits.system``.

What is taken away or changed, as Windows has it:

- ``signal.SIGHUP`` and ``signal.pthread_sigmask`` do not exist; ``signal.SIGBREAK`` (Ctrl-Break)
  does (here it is SIGUSR1's number, so a test can send it);
- ``os.symlink`` is refused (``OSError`` 1314, "a required privilege is not held": Windows
  without administrator rights or Developer Mode);
- ``fcntl`` and ``resource`` cannot be imported; ``msvcrt`` can (``FakeMsvcrt``: its
  ``locking`` API over a real lock, so two processes exclude each other);
- ``/proc`` is missing (``system.PROC`` names a folder that does not exist);
- ``os.kill`` called by edgedigits fails the test: on Windows ``os.kill(pid, 0)`` would
  terminate the process.

``apply(monkeypatch)`` in a test; ``apply(pytest.MonkeyPatch())`` in a child process (see
``tests/test_system.py``). On real Windows (the CI workflow) it changes nothing: the tests then
run the real thing.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

from edgedigits import system

try:
    import fcntl  # the real one, kept for FakeMsvcrt before the simulation hides it
except ImportError:  # real Windows: nothing to simulate
    fcntl = None

REAL_WINDOWS = sys.platform == "win32"
# Windows' Ctrl-Break; simulated as SIGUSR1's number, which a test on Linux can send
SIGBREAK = signal.SIGBREAK if REAL_WINDOWS else signal.SIGUSR1


class FakeMsvcrt:
    """``msvcrt.locking`` semantics (a non-blocking lock of a byte range, per open file; a
    second holder gets ``OSError``), over ``flock``."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    @staticmethod
    def locking(descriptor: int, mode: int, nbytes: int) -> None:
        if mode == FakeMsvcrt.LK_UNLCK:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(errno.EACCES, "Permission denied") from None


def _symlink_refused(*args, **kwargs):
    raise OSError(1314, "A required privilege is not held by the client")


_real_kill = os.kill


def _kill_forbidden(pid, signum):
    """edgedigits may not call os.kill (libraries' Linux code, e.g. psutil's, still may)."""
    if sys._getframe(1).f_globals.get("__name__", "").startswith("edgedigits"):
        raise AssertionError("os.kill on Windows terminates the process; use system.pid_alive")
    return _real_kill(pid, signum)


def apply(monkeypatch, kill_forbidden: bool = True) -> None:
    """Simulate Windows (on real Windows: nothing to do, the real thing runs)."""
    if REAL_WINDOWS:
        return
    monkeypatch.setattr(system, "WINDOWS", True)
    monkeypatch.setattr(system, "PROC", Path("/nonexistent-proc"))
    monkeypatch.delattr(signal, "SIGHUP", raising=False)
    monkeypatch.delattr(signal, "pthread_sigmask", raising=False)
    monkeypatch.setattr(signal, "SIGBREAK", SIGBREAK, raising=False)
    monkeypatch.setattr(os, "symlink", _symlink_refused)
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl -> ImportError
    monkeypatch.setitem(sys.modules, "resource", None)
    monkeypatch.setitem(sys.modules, "msvcrt", FakeMsvcrt)
    if kill_forbidden:
        monkeypatch.setattr(os, "kill", _kill_forbidden)

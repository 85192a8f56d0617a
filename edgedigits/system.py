"""Every difference between operating systems that edgedigits depends on, in one module.

The rest of the package asks this module instead of checking the platform itself:

- signals: which stop signals exist (``SIGHUP`` is POSIX, ``SIGBREAK`` (Ctrl-Break) Windows),
  and holding them off while a commit's renames run;
- links: whether a folder accepts symlinks (Windows refuses them without administrator rights
  or Developer Mode), hard links or copies otherwise;
- one writer: a folder's exclusive lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows);
- processes: whether a pid is alive (``os.kill(pid, 0)`` would *terminate* it on Windows);
- measurement: peak memory and the CPU's name, ISA flags and cores without ``/proc``.

Optional platform modules (``fcntl``, ``msvcrt``, ``resource``, ``psutil``, ``winreg``) are
imported when used, not at import time, so the tests can run this module in a simulated Windows
mode on Linux (``tests/test_system.py``): ``WINDOWS`` set, ``SIGHUP`` gone, ``os.symlink``
refused, ``fcntl`` missing, ``/proc`` missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import importlib
import os
import platform
import shutil
import signal
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

WINDOWS = sys.platform == "win32"
PROC = Path("/proc")  # Linux's process information; absent elsewhere
# Windows has no lock on a folder itself: the lock is taken on this file inside it (kept).
LOCK_FILE = ".edgedigits-lock"


def _optional(name: str) -> ModuleType | None:
    """The module ``name`` if this platform (or install) has it, else None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --------------------------------------------------------------------------------------------
# Signals


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a command to stop, other than Ctrl-C's SIGINT, that exist here:
    SIGTERM (``kill``, ``timeout``, ``docker stop``), SIGHUP (a closed terminal; POSIX only),
    SIGBREAK (Ctrl-Break; Windows only)."""
    return tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGBREAK")
                 if hasattr(signal, name))


def interrupt_signals() -> tuple[signal.Signals, ...]:
    return (signal.SIGINT, *stop_signals())


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and the stop signals until the block ends; then they act as usual.

    POSIX blocks them (``pthread_sigmask``); where that does not exist (Windows) their Python
    handlers are swapped for a recorder and the first signal that arrived is replayed after the
    block. Only the main thread receives signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = interrupt_signals()
    if hasattr(signal, "pthread_sigmask"):
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        return
    arrived: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in held}
    previous = {signum: handler for signum, handler in previous.items() if handler is not None}
    for signum in previous:
        signal.signal(signum, lambda number, frame: arrived.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if arrived:
            _replay(arrived[0], previous[arrived[0]])


def _replay(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(signum)


# --------------------------------------------------------------------------------------------
# Links and renames


def symlinks_work(folder: str | os.PathLike) -> bool:
    """True if a relative symlink can be made in ``folder`` (tried, then removed).

    False on Windows without administrator rights or Developer Mode, on FAT/exFAT drives, and
    wherever ``os.symlink`` raises ``OSError`` or ``NotImplementedError``.
    """
    probe = Path(folder) / f".symlink-probe.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.symlink(".", probe)
    except (OSError, NotImplementedError):
        return False
    with contextlib.suppress(OSError):
        probe.unlink()
    return True


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """A hard link (no extra space; NTFS allows them without rights), else a copy."""
    try:
        os.link(source, target)
    except (OSError, NotImplementedError, AttributeError):
        shutil.copy2(source, target)


def copy_tree_linked(source: Path, target: Path) -> None:
    """``source`` (a file or a folder) again at ``target``, files hard-linked where possible."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system cannot (other systems, older kernels, some file systems)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


# --------------------------------------------------------------------------------------------
# One writer per folder


class FolderLock:
    """A held lock; ``release`` (or closing the process) frees it."""

    def __init__(self, descriptor: int, kind: str) -> None:
        self.descriptor, self.kind = descriptor, kind

    def release(self) -> None:
        try:
            if self.kind == "msvcrt":
                msvcrt = _optional("msvcrt")
                with contextlib.suppress(OSError):
                    os.lseek(self.descriptor, 0, os.SEEK_SET)
                    msvcrt.locking(self.descriptor, msvcrt.LK_UNLCK, 1)
        finally:
            os.close(self.descriptor)  # closing releases a flock too


def try_lock_folder(folder: Path) -> FolderLock | None:
    """Take ``folder``'s exclusive lock without waiting; None if another process holds it.

    POSIX: ``flock`` on the folder itself (no lock file). Windows: ``msvcrt.locking`` on the
    first byte of ``LOCK_FILE`` inside it (a folder cannot be opened as a file there; the file
    stays, empty, after the lock is released).
    """
    fcntl = _optional("fcntl")
    if fcntl is not None:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        return _locked_or_none(descriptor, "flock", BlockingIOError,
                               lambda: fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB))
    msvcrt = _optional("msvcrt")
    if msvcrt is None:
        raise RuntimeError("no file lock on this system (neither fcntl nor msvcrt)")
    descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0),
                         0o666)
    # EACCES / EDEADLOCK (an OSError): another process holds it
    return _locked_or_none(descriptor, "msvcrt", OSError,
                           lambda: msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1))


def _locked_or_none(descriptor: int, kind: str, held: type[BaseException],
                    lock: Callable[[], object]) -> FolderLock | None:
    """``lock()`` on ``descriptor``: the lock, or None (descriptor closed) when another
    process holds it (``held`` raised); any other failure closes it and propagates."""
    try:
        lock()
    except held:
        os.close(descriptor)
        return None
    except BaseException:
        os.close(descriptor)
        raise
    return FolderLock(descriptor, kind)


# --------------------------------------------------------------------------------------------
# Processes


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (never signals it: on Windows ``os.kill(pid, 0)``
    terminates the process)."""
    if not WINDOWS:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    psutil = _optional("psutil")
    if psutil is not None:
        return psutil.pid_exists(pid)
    return _windows_pid_alive(pid)


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - Windows only
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Measurement


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages; None where the system keeps none (Windows)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB, or None where it cannot be known.

    Linux: ``VmHWM`` (per process, unaffected by how it started); Windows: the peak working set
    (``GetProcessMemoryInfo``, else psutil); other POSIX: ``getrusage``.
    """
    try:
        for line in (PROC / "self" / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if WINDOWS:
        peak = _windows_peak_bytes()
        return None if peak is None else peak / 2**20
    resource = _optional("resource")
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes vs KiB


def process_memory_mb(pid: int) -> tuple[float | None, float | None]:
    """Another process's (current, peak) resident memory in MB, each None where unknown:
    ``/proc/<pid>/status`` (VmRSS, VmHWM) on Linux, else psutil (Windows: rss, peak_wset)."""
    try:
        values = {}
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) / 1024.0
        return values.get("VmRSS"), values.get("VmHWM")
    except OSError:
        pass
    psutil = _optional("psutil")
    if psutil is None:
        return None, None
    try:
        info = psutil.Process(pid).memory_info()
    except psutil.Error:
        return None, None
    peak = getattr(info, "peak_wset", None)
    return info.rss / 2**20, None if peak is None else peak / 2**20


def _windows_peak_bytes() -> int | None:
    try:
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                        ("PeakWorkingSetSize", ctypes.c_size_t),
                        ("WorkingSetSize", ctypes.c_size_t),
                        ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
                        ("QuotaPagedPoolUsage", ctypes.c_size_t),
                        ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
                        ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
                        ("PagefileUsage", ctypes.c_size_t),
                        ("PeakPagefileUsage", ctypes.c_size_t)]

        counters = Counters()
        counters.cb = ctypes.sizeof(counters)
        process = ctypes.windll.kernel32.GetCurrentProcess()  # type: ignore[attr-defined]
        if ctypes.windll.psapi.GetProcessMemoryInfo(  # type: ignore[attr-defined]
                process, ctypes.byref(counters), counters.cb):
            return int(counters.PeakWorkingSetSize)
    except (AttributeError, OSError, ValueError):
        pass
    psutil = _optional("psutil")
    try:
        return int(psutil.Process().memory_info().peak_wset) if psutil else None
    except AttributeError:
        return None


# /proc/cpuinfo's flag name -> numpy's runtime CPU feature name (numpy checks CPUID on every
# system); None: numpy does not report it.
_NUMPY_FEATURES = {"avx2": "AVX2", "avx512f": "AVX512F", "avx512_vnni": "AVX512VNNI",
                   "avx512_bf16": "AVX512BF16", "avx512_fp16": "AVX512FP16"}


def cpu_description() -> tuple[str, set[str] | None, int | None]:
    """The CPU's model name, its /proc/cpuinfo flags (None: no /proc here; ask ``cpu_flag``)
    and its physical core count (None: unknown)."""
    info = _proc_cpuinfo()
    if info is not None:
        return info
    return _cpu_model_name(), None, _physical_cores()


def cpu_flag(flags: set[str] | None, name: str) -> bool | None:
    """Whether the CPU has the /proc/cpuinfo flag ``name``: True, False or None (unknown).

    Without /proc, numpy's own CPUID check answers for the flags it knows."""
    if flags is not None:
        return name in flags
    feature = _NUMPY_FEATURES.get(name)
    if feature is None:
        return None
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        return None
    return __cpu_features__.get(feature)


def _proc_cpuinfo() -> tuple[str, set[str], int | None] | None:
    try:
        text = (PROC / "cpuinfo").read_text()
    except OSError:
        return None
    model, flags, cores = platform.processor() or platform.machine(), set(), set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name":
            model = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    return model, flags, len(cores) or _physical_cores()


def _cpu_model_name() -> str:
    winreg = _optional("winreg") if WINDOWS else None
    if winreg is not None:
        with contextlib.suppress(OSError):
            key = winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                                 r"HARDWARE\DESCRIPTION\System\CentralProcessor\0")
            with key:
                return str(winreg.QueryValueEx(key, "ProcessorNameString")[0]).strip()
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    psutil = _optional("psutil")
    if psutil is None:
        return None
    with contextlib.suppress(Exception):
        return psutil.cpu_count(logical=False)
    return None

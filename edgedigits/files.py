"""Safe outputs: a crash, a signal or a full disk never destroys or half-writes an artifact.

Four rules, one place:

- ``check_outputs``: an output that names an existing folder where a file is expected, an input
  of the same run, or another output of the same run is refused before any work starts.
- ``atomic_path``: one file (or a new folder) is written under a temporary name beside its
  target and appears with one ``os.replace``; an existing folder is never moved away for a file.
- ``staged_set``: a set of outputs that belong together (a model with its metrics, the IR
  variants with their report) lives in a hidden version folder; the names users see are
  symlinks through one pointer (``.current-<set>``), and publishing a new set is one atomic
  rename of that pointer, so a reader sees the whole old set or the whole new one.
- ``output_lock``: one writer per output folder at a time; a second one gets one line.

Staging left behind by a killed run (its process is gone) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from edgedigits.errors import UserError

# Errors a full or limited disk raises; entry points report them in one line (see cli.run).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_TEMP_MARK = ".tmp-"  # .<name>.tmp-<pid>-<random>: the pid says whether its writer still lives


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    check_not_empty(path, "output folder")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"cannot write to output folder {folder}: it is an existing file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or error
        raise UserError(f"cannot write to output folder {folder}: {reason}") from None
    return folder


# --------------------------------------------------------------------------------------------
# Checks before any work


def check_not_empty(path: str | os.PathLike | None, what: str) -> None:
    """An empty path is a mistake (an unset shell variable), never "the default"."""
    if path is not None and not str(os.fspath(path)).strip():
        raise UserError(f"{what} is an empty path; give a path or leave the flag out")


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.absolute().resolve() == b.absolute().resolve()


def check_outputs(files: Mapping[str, str | os.PathLike | None] | None = None,
                  folders: Mapping[str, str | os.PathLike | None] | None = None,
                  inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse outputs that would destroy something, before any work starts (one ``UserError``).

    ``files``/``folders``/``inputs`` map a flag name (for the message) to the path it was given
    (``None`` = not given). Refused: an empty path; a file output that is an existing folder; a
    folder output that is an existing file; an output that is one of the inputs; two outputs
    naming the same path. Overwriting an existing file of the same kind stays allowed.
    """
    files = {flag: path for flag, path in (files or {}).items() if path is not None}
    folders = {flag: path for flag, path in (folders or {}).items() if path is not None}
    inputs = {flag: path for flag, path in (inputs or {}).items() if path is not None}
    for flag, path in {**files, **folders, **inputs}.items():
        check_not_empty(path, flag)
    for flag, path in files.items():
        if Path(path).is_dir():
            raise UserError(f"{flag} {path} is an existing folder; name a file (e.g. "
                            f"{Path(path) / 'out'}{Path(path).suffix or ''}), nothing was changed")
    for flag, path in folders.items():
        if Path(path).exists() and not Path(path).is_dir():
            raise UserError(f"{flag} {path} is an existing file, not a folder; nothing was changed")
    outputs = list({**files, **folders}.items())
    for flag, path in outputs:
        for input_flag, input_path in inputs.items():
            if _same_path(Path(path), Path(input_path)):
                raise UserError(f"{flag} {path} is the input ({input_flag}); writing it would "
                                "destroy the input: choose another name")
    for k, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[k + 1:]:
            if _same_path(Path(path), Path(other)):
                raise UserError(f"{flag} and {other_flag} both name {path}; one output would be "
                                "lost: give them different names")


# --------------------------------------------------------------------------------------------
# Signals held off while a commit's renames run


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends (then they are delivered as usual)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _replace_folder(staged: Path, target: Path, scratch: Path) -> None:
    """Put the folder ``staged`` where the folder ``target`` is; the old one ends in ``scratch``."""
    if _exchange(staged, target):
        os.replace(staged, scratch / "previous")  # the old folder, now at the staged name
        return
    previous = scratch / "previous"
    os.replace(target, previous)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(previous, target)
        raise


# --------------------------------------------------------------------------------------------
# One file (or one new folder)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_STALE = re.compile(r"^\..*" + re.escape(_TEMP_MARK) + r"(\d+)-")


def clean_stale_staging(folder: str | os.PathLike, owned: tuple[str, ...] = ()) -> list[Path]:
    """Remove staging that a killed run left in ``folder`` (its writer's process is gone).

    Names starting with one of ``owned`` are removed whatever their process: the caller holds
    the folder's lock, so nobody else can be writing them.
    """
    removed = []
    with contextlib.suppress(OSError):
        entries = list(Path(folder).iterdir())
        published = {os.readlink(entry) for entry in entries
                     if entry.name.startswith(".current-") and entry.is_symlink()}
        for entry in entries:
            match = _STALE.match(entry.name)
            pid = int(match.group(1)) if match else os.getpid()
            mine = match is not None and entry.name.startswith(owned) if owned else False
            if entry.name not in published and (
                    mine or (pid != os.getpid() and not _pid_alive(pid))):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
                removed.append(entry)
    return removed


def _make_temporary(parent: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}{_TEMP_MARK}{os.getpid()}-"))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    For a file, or a folder (a SavedModel, a version folder). An existing folder is never
    replaced by a file, nor an existing file by a folder (``UserError``, nothing touched). On any
    exception the temporary is removed and ``target`` is left as it was.
    """
    check_not_empty(target, "output")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(target.parent)
    temporary = _make_temporary(target.parent, target.name)
    staged = temporary / (target.name + suffix)
    try:
        yield staged
        with _signals_deferred():
            if staged.is_dir() and not staged.is_symlink():
                if target.is_dir() and not target.is_symlink():
                    _replace_folder(staged, target, temporary)
                elif target.exists() or target.is_symlink():
                    raise UserError(f"{target} is an existing file, not a folder; not replacing "
                                    "it with a folder")
                else:
                    os.replace(staged, target)
            else:
                if target.is_dir():
                    raise UserError(f"{target} is an existing folder; not replacing it with a "
                                    "file (nothing was changed)")
                os.replace(staged, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as staged:
        staged.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------------
# One writer per folder


_held_locks: dict[str, list] = {}  # real path -> [folder's descriptor, depth], for re-entry


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder``'s lock (``flock`` on the folder itself: no lock file is left behind); a
    second writer (another process) gets one line instead of a race."""
    import fcntl

    folder = ensure_writable_dir(folder)
    key = os.path.realpath(folder)
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield folder
        finally:
            _held_locks[key][1] -= 1
        return
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another run is writing to {folder}; wait for it to finish or "
                            "choose another output folder") from None
        _held_locks[key] = [descriptor, 1]
        try:
            yield folder
        finally:
            del _held_locks[key]
    finally:
        os.close(descriptor)  # closing releases the lock


# --------------------------------------------------------------------------------------------
# A set of outputs, published in one step


def _pointer(folder: Path, name: str) -> Path:
    return folder / f".current-{name}"


def _link_target(name: str, entry: str) -> str:
    return f".current-{name}/{entry}"


def _is_our_link(path: Path, name: str) -> bool:
    return path.is_symlink() and os.readlink(path) == _link_target(name, path.name)


def _new_version(folder: Path, name: str) -> Path:
    version = folder / f".{name}-v{uuid.uuid4().hex[:12]}"
    version.mkdir()
    return version


def _point(folder: Path, name: str, version: Path) -> None:
    """Make ``.current-<name>`` point at ``version`` with one rename."""
    pointer = _pointer(folder, name)
    if pointer.is_dir() and not pointer.is_symlink():  # a copy that followed the links
        shutil.rmtree(pointer)
    fresh = folder / f".{name}-pointer{_TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.symlink(version.name, fresh)
    try:
        os.replace(fresh, _pointer(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            fresh.unlink()
        raise


def _adopt_legacy(folder: Path, name: str, members: Iterable[str]) -> None:
    """Turn plain files/folders of the set (from before versioned sets) into the current version.

    The content is hard-linked into a version folder first (nothing moves), the pointer is set,
    then each plain entry is swapped for a link to identical content.
    """
    legacy = [entry for entry in members
              if (folder / entry).exists() and not (folder / entry).is_symlink()]
    if not legacy:
        return
    pointer = _pointer(folder, name)
    version = folder / os.readlink(pointer) if pointer.is_symlink() else None
    if version is None or not version.is_dir():
        version = _new_version(folder, name)
        _point(folder, name, version)
    for entry in legacy:
        source, copy = folder / entry, version / entry
        if copy.is_dir() and not copy.is_symlink():
            shutil.rmtree(copy)
        elif copy.exists() or copy.is_symlink():
            copy.unlink()
        if source.is_dir():
            shutil.copytree(source, copy, copy_function=os.link, symlinks=True)
        else:
            os.link(source, copy)
    for entry in legacy:
        link = folder / f".{entry}.link{_TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.symlink(_link_target(name, entry), link)
        if (folder / entry).is_dir():
            scratch = _make_temporary(folder, entry)
            try:
                _replace_folder(link, folder / entry, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        else:
            os.replace(link, folder / entry)


def _clean_set_leftovers(folder: Path, name: str, members: tuple[str, ...]) -> None:
    """Under the folder's lock: whatever an earlier, killed or failed, run of this set left."""
    pointer = _pointer(folder, name)
    if pointer.exists() and not pointer.is_symlink():  # a copy that followed the links
        shutil.rmtree(pointer, ignore_errors=True)
    clean_stale_staging(folder, owned=(f".{name}{_TEMP_MARK}", f".{name}-pointer",
                                       *(f".{member}" for member in members)))
    published = os.readlink(pointer) if pointer.is_symlink() else None
    for entry in folder.glob(f".{name}-v*"):
        if entry.name != published:
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staged_set(output: str | os.PathLike, name: str, members: Iterable[str]) -> Iterator[Path]:
    """Yield an empty folder for a set of outputs written together; publish it in one step.

    ``members`` are every name the set can hold (an earlier set's members that the new one does
    not have disappear with it, e.g. an IR variant not converted this time). Readers open
    ``output/<member>`` as before; it is a symlink through ``output/.current-<name>``, which one
    ``os.replace`` moves from the old version folder to the new one. Holds ``output_lock``.
    """
    members = tuple(members)
    with output_lock(output) as folder:
        _clean_set_leftovers(folder, name, members)
        version = _make_temporary(folder, name)
        try:
            yield version
            written = sorted(entry.name for entry in version.iterdir())
            unknown = [entry for entry in written if entry not in members]
            if unknown:
                raise ValueError(f"not members of the {name} set: {unknown}")
            with _signals_deferred():
                _adopt_legacy(folder, name, members)
                pointer = _pointer(folder, name)
                old_version = folder / os.readlink(pointer) if pointer.is_symlink() else None
                for entry in written:  # dangling until the pointer moves: invisible before
                    if not _is_our_link(folder / entry, name):
                        if (folder / entry).exists() or (folder / entry).is_symlink():
                            raise UserError(f"{folder / entry} is in the way of the new {name} "
                                            "set; move it away first")
                        os.symlink(_link_target(name, entry), folder / entry)
                final = _new_version(folder, name)
                os.replace(version, final)  # its published name (not staging any more)
                version = None
                _point(folder, name, final)  # the one step that publishes the whole set
                for entry in members:  # links of the old set's members the new one lacks
                    link = folder / entry
                    if _is_our_link(link, name) and not link.exists():
                        link.unlink()
                if old_version is not None:
                    shutil.rmtree(old_version, ignore_errors=True)
        finally:
            if version is not None:
                shutil.rmtree(version, ignore_errors=True)

"""Safe outputs: a crash, a signal or a full disk never destroys or half-writes an artifact.

Four rules, one place:

- ``check_outputs``: an output that names an existing folder where a file is expected, an input
  of the same run, or another output of the same run is refused before any work starts.
- ``atomic_path``: one file (or a new folder) is written under a temporary name beside its
  target and appears with one ``os.replace``; an existing folder is never moved away for a file.
- ``staged_set``: a set of outputs that belong together (a model with its metrics, the IR
  variants with their report) lives in a hidden version folder; the names users see are
  symlinks through one pointer (``.current-<set>``), and publishing a new set is one atomic
  rename of that pointer, so a reader sees the whole old set or the whole new one. Where
  symlinks are refused (Windows without Developer Mode, FAT drives) the pointer is a small file
  naming the version folder, replaced the same way, and the names users see are copies
  (hard links) refreshed from it; ``published_path`` follows either form.
- ``output_lock``: one writer per output folder at a time; a second one gets one line.

What differs between systems (signals, links, locks, processes) is asked of
:mod:`edgedigits.system`.

Staging left behind by a killed run (its process is gone) is removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from edgedigits import system
from edgedigits.errors import UserError
from edgedigits.output_checks import (  # noqa: F401 (the commands import them from here)
    check_not_empty,
    check_outputs,
    ensure_writable_dir,
)

# Errors a full or limited disk raises; entry points report them in one line (see cli.run).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_TEMP_MARK = ".tmp-"  # .<name>.tmp-<pid>-<random>: the pid says whether its writer still lives


# --------------------------------------------------------------------------------------------
# Renames


_signals_deferred = system.signals_held  # Ctrl-C and stop signals wait until the block ends


def _replace_folder(staged: Path, target: Path, scratch: Path) -> None:
    """Put the folder ``staged`` where the folder ``target`` is; the old one ends in ``scratch``."""
    if system.exchange(staged, target):
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


_STALE = re.compile(r"^\..*" + re.escape(_TEMP_MARK) + r"(\d+)-")


def clean_stale_staging(folder: str | os.PathLike, owned: tuple[str, ...] = ()) -> list[Path]:
    """Remove staging that a killed run left in ``folder`` (its writer's process is gone).

    Names starting with one of ``owned`` are removed whatever their process: the caller holds
    the folder's lock, so nobody else can be writing them.
    """
    removed = []
    with contextlib.suppress(OSError):
        entries = list(Path(folder).iterdir())
        published = {_read_pointer(entry)[0] for entry in entries
                     if entry.name.startswith(".current-")}
        for entry in entries:
            match = _STALE.match(entry.name)
            pid = int(match.group(1)) if match else os.getpid()
            mine = match is not None and entry.name.startswith(owned) if owned else False
            if entry.name not in published and (
                    mine or (pid != os.getpid() and not system.pid_alive(pid))):
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
    """Hold ``folder``'s lock (``system.try_lock_folder``: ``flock`` on the folder itself on
    POSIX, no lock file; ``msvcrt.locking`` on Windows); a second writer (another process) gets
    one line instead of a race."""
    folder = ensure_writable_dir(folder)
    key = os.path.normcase(os.path.realpath(folder))
    if key in _held_locks:
        _held_locks[key][1] += 1
        try:
            yield folder
        finally:
            _held_locks[key][1] -= 1
        return
    lock = system.try_lock_folder(folder)
    if lock is None:
        raise UserError(f"another run is writing to {folder}; wait for it to finish or "
                        "choose another output folder")
    try:
        _held_locks[key] = [lock, 1]
        try:
            yield folder
        finally:
            del _held_locks[key]
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# A set of outputs, published in one step


def _pointer(folder: Path, name: str) -> Path:
    return folder / f".current-{name}"


def _read_pointer(pointer: Path) -> tuple[str | None, bool]:
    """(the version folder's name, whether the visible copies are complete) from a pointer in
    either form: a symlink, or a file naming the version (where symlinks are refused)."""
    if pointer.is_symlink():
        return os.readlink(pointer), True
    if pointer.is_file():
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
            return str(data["version"]), data.get("copies") == "done"
        except (OSError, ValueError, KeyError, TypeError):
            return None, True
    return None, True


def _published(folder: Path, name: str) -> Path | None:
    version, _ = _read_pointer(_pointer(folder, name))
    return folder / version if version else None


def published_path(path: str | os.PathLike) -> Path:
    """Where a reader should open ``path``, a name a set publishes (``models/model.keras``,
    ``models/ir/int8/model.xml``): ``path`` itself when it is a symlink (the system follows
    it) or not part of a set; in the copy form, the same entry in the version folder the
    pointer file names, so a reader never mixes two sets while the copies are refreshed."""
    path = Path(path)
    for depth, folder in enumerate(path.parents):
        if depth > 3:
            break
        relative = path.relative_to(folder)
        with contextlib.suppress(OSError):
            for pointer in folder.glob(".current-*"):
                if pointer.is_symlink() or not pointer.is_file():
                    continue
                version, _ = _read_pointer(pointer)
                if version and (folder / version / relative.parts[0]).exists():
                    return folder / version / relative
    return path


def _link_target(name: str, entry: str) -> str:
    return f".current-{name}/{entry}"


def _is_our_link(path: Path, name: str) -> bool:
    return path.is_symlink() and os.readlink(path) == _link_target(name, path.name)


def _version_name(folder: Path, name: str) -> Path:
    return folder / f".{name}-v{uuid.uuid4().hex[:12]}"


def _new_version(folder: Path, name: str) -> Path:
    version = _version_name(folder, name)
    version.mkdir()
    return version


def _remove_pointer_copy(pointer: Path) -> None:
    if pointer.is_dir() and not pointer.is_symlink():  # a copy that followed the links
        shutil.rmtree(pointer)


def _point(folder: Path, name: str, version: Path) -> None:
    """Make ``.current-<name>`` point at ``version`` with one rename (a symlink)."""
    _swap_pointer(folder, name, lambda fresh: os.symlink(version.name, fresh))


def _point_by_file(folder: Path, name: str, version: Path, copies_done: bool) -> None:
    """Make ``.current-<name>`` a file naming ``version``, with one rename (no symlinks)."""
    _swap_pointer(folder, name, lambda fresh: fresh.write_text(json.dumps(
        {"version": version.name, "copies": "done" if copies_done else "pending"}) + "\n",
        encoding="utf-8"))


def _swap_pointer(folder: Path, name: str, make: Callable[[Path], object]) -> None:
    """Make the new pointer beside the old one with ``make(fresh)``, then rename it over."""
    _remove_pointer_copy(_pointer(folder, name))
    fresh = folder / f".{name}-pointer{_TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    make(fresh)
    try:
        os.replace(fresh, _pointer(folder, name))
    except BaseException:
        with contextlib.suppress(OSError):
            fresh.unlink()
        raise


def _put(staged: Path, visible: Path) -> None:
    """Move ``staged`` to ``visible``, replacing what is there (a file, a folder or a link)."""
    if staged.is_dir() and visible.is_dir() and not visible.is_symlink():
        scratch = _make_temporary(visible.parent, visible.name)
        try:
            _replace_folder(staged, visible, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    if visible.is_file() and not visible.is_symlink() and os.path.samefile(staged, visible):
        staged.unlink()  # already this content (hard links of one file: rename would do nothing)
        return
    if visible.is_dir() and not visible.is_symlink():
        shutil.rmtree(visible)
    elif staged.is_dir() and visible.is_symlink():
        visible.unlink()  # a folder cannot be renamed over a link everywhere
    os.replace(staged, visible)


def _refresh_copies(folder: Path, name: str, members: tuple[str, ...], version: Path) -> None:
    """The copy form: make every visible member a copy (hard links where the disk allows) of
    ``version``'s; a member it lacks disappears. Each is replaced in one rename."""
    for entry in members:
        source, visible = version / entry, folder / entry
        if source.exists():
            staged = folder / f".{entry}.copy{_TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                system.copy_tree_linked(source, staged)
                _put(staged, visible)
            except BaseException:
                if staged.is_dir():
                    shutil.rmtree(staged, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        staged.unlink()
                raise
        elif visible.is_dir() and not visible.is_symlink():
            shutil.rmtree(visible)
        elif visible.exists() or visible.is_symlink():
            visible.unlink()


def _adopt_legacy(folder: Path, name: str, members: Iterable[str]) -> None:
    """Turn plain files/folders of the set (from before versioned sets, or copies made where
    symlinks were refused) into the current version, reached through symlinks.

    The content is hard-linked into a version folder first (nothing moves), the pointer is set,
    then each plain entry is swapped for a link to identical content. Copies of a version the
    pointer file names are not linked again: that version already holds them.
    """
    legacy = [entry for entry in members
              if (folder / entry).exists() and not (folder / entry).is_symlink()]
    if not legacy:
        return
    pointer = _pointer(folder, name)
    version = _published(folder, name)
    from_copies = version is not None and version.is_dir() and not pointer.is_symlink()
    if version is None or not version.is_dir():
        version = _new_version(folder, name)
        _point(folder, name, version)
    elif from_copies:
        _point(folder, name, version)  # the same version, now through a symlink
    for entry in legacy:
        source, copy = folder / entry, version / entry
        if from_copies and (copy.exists() or copy.is_symlink()):
            continue
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
    """Under the folder's lock: whatever an earlier, killed or failed, run of this set left;
    copies a killed run did not finish refreshing are refreshed."""
    pointer = _pointer(folder, name)
    if pointer.is_dir() and not pointer.is_symlink():  # a copy that followed the links
        shutil.rmtree(pointer, ignore_errors=True)
    clean_stale_staging(folder, owned=(f".{name}{_TEMP_MARK}", f".{name}-pointer",
                                       *(f".{member}" for member in members)))
    published, copies_done = _read_pointer(pointer)
    for entry in folder.glob(f".{name}-v*"):
        if entry.name != published:
            shutil.rmtree(entry, ignore_errors=True)
    if published and not copies_done and (folder / published).is_dir():
        with _signals_deferred():
            _refresh_copies(folder, name, members, folder / published)
            _point_by_file(folder, name, folder / published, copies_done=True)


@contextlib.contextmanager
def staged_set(output: str | os.PathLike, name: str, members: Iterable[str]) -> Iterator[Path]:
    """Yield an empty folder for a set of outputs written together; publish it in one step.

    ``members`` are every name the set can hold (an earlier set's members that the new one does
    not have disappear with it, e.g. an IR variant not converted this time). Readers open
    ``output/<member>`` as before; it is a symlink through ``output/.current-<name>``, which one
    ``os.replace`` moves from the old version folder to the new one. Where symlinks are refused
    (``system.symlinks_work``), ``.current-<name>`` is a file naming the version, moved by one
    ``os.replace`` too, and ``output/<member>`` are copies refreshed right after it (a reader
    that must never mix two sets opens ``published_path(output/<member>)``). Holds
    ``output_lock``.
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
            if not system.symlinks_work(folder):
                with _signals_deferred():
                    old_version = _published(folder, name)
                    final = _version_name(folder, name)
                    os.replace(version, final)  # its published name (not staging any more)
                    version = None
                    _point_by_file(folder, name, final, copies_done=False)  # publishes the set
                    _refresh_copies(folder, name, members, final)
                    _point_by_file(folder, name, final, copies_done=True)
                    if old_version is not None:
                        shutil.rmtree(old_version, ignore_errors=True)
                return
            with _signals_deferred():
                _adopt_legacy(folder, name, members)
                old_version = _published(folder, name)
                for entry in written:  # dangling until the pointer moves: invisible before
                    if not _is_our_link(folder / entry, name):
                        if (folder / entry).exists() or (folder / entry).is_symlink():
                            raise UserError(f"{folder / entry} is in the way of the new {name} "
                                            "set; move it away first")
                        os.symlink(_link_target(name, entry), folder / entry)
                final = _version_name(folder, name)
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

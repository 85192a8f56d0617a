"""Atomic file and folder writes: a crash or Ctrl-C never leaves a half-written artifact."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgedigits.errors import UserError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or error
        raise UserError(f"cannot write to output folder {folder}: {reason}") from None
    return folder


def _move_into_place(staged: Path, target: Path, scratch: Path) -> None:
    """``os.replace`` that also works for a folder over an existing, non-empty folder."""
    if target.is_dir() and not target.is_symlink():
        os.replace(target, scratch / f"previous-{target.name}")
    os.replace(staged, target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Works for files and folders (a SavedModel, an IR variant). On any exception the temporary
    is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    staged = temporary / (target.name + suffix)
    try:
        yield staged
        _move_into_place(staged, target, temporary)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs(output: str | os.PathLike, last: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder inside ``output`` for a set of files written together.

    Only when the block succeeds is every entry moved into ``output`` (the names in ``last``
    after the others), so an interrupted run never leaves new files beside old ones: a stage
    reading the folder sees the previous complete set, or the new complete set.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output, prefix=".staging-"))
    try:
        yield staging
        entries = sorted(staging.iterdir(), key=lambda entry: (entry.name in last, entry.name))
        scratch = Path(tempfile.mkdtemp(dir=output, prefix=".previous-"))
        try:
            for entry in entries:
                _move_into_place(entry, output / entry.name, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as staged:
        staged.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")

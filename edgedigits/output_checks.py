"""Checks made before any work: an output that would destroy something is refused with one line.

Re-exported by :mod:`edgedigits.files`, where the commands import them from.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from edgedigits.errors import UserError


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


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies under the existing folder ``folder`` (links resolved)."""
    if not folder.is_dir():
        return False
    return folder.absolute().resolve() in path.absolute().resolve().parents


def check_outputs(files: Mapping[str, str | os.PathLike | None] | None = None,
                  folders: Mapping[str, str | os.PathLike | None] | None = None,
                  inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuse outputs that would destroy something, before any work starts (one ``UserError``).

    ``files``/``folders``/``inputs`` map a flag name (for the message) to the path it was given
    (``None`` = not given). Refused: an empty path; a file output that is an existing folder; a
    folder output that is an existing file; an output that is one of the inputs, or inside an
    input folder (a report written into a labelled set is read as data next time); two outputs
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
            if _inside(Path(path), Path(input_path)):
                raise UserError(f"{flag} {path} is inside the input folder {input_path} "
                                f"({input_flag}); what it writes would be read as input next "
                                "time: choose a folder outside it")
    for k, (flag, path) in enumerate(outputs):
        for other_flag, other in outputs[k + 1:]:
            if _same_path(Path(path), Path(other)):
                raise UserError(f"{flag} and {other_flag} both name {path}; one output would be "
                                "lost: give them different names")

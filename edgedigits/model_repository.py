"""The OVMS model repository that conversion lays out beside the IR.

    models/serving/config.json              OVMS configuration (model "digits", relative base_path)
    models/serving/digits/1/model.xml|.bin  the IR of an earlier conversion (kept for rollback)
    models/serving/digits/2/model.xml|.bin  the newest: OVMS serves the highest version

Layout and names are OVMS's own (``<base_path>/<integer version>/<model>.xml``), so
``ovms --config_path models/serving/config.json --rest_port 8000`` serves it unchanged, and a
KServe ``InferenceService`` with the OpenVINO runtime can take ``models/serving/digits`` as its
storage URI. Each version folder appears with one rename and config.json is replaced atomically,
so a server watching the folder never loads a half-copied model; version numbers are allocated
under a lock on the model's folder, so two publishers never get the same one.

This module imports no OpenVINO, KServe or TensorFlow: convert calls it after writing the IR.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edgedigits import contract, system
from edgedigits.errors import UserError
from edgedigits.files import atomic_path, write_json

SERVING_DIR = "serving"  # beside the IR folder: models/ir -> models/serving
MODEL_NAME = "digits"  # the OIP v2 model name, here and in infer/serve.py
CONFIG_FILE = "config.json"
LOCK_TIMEOUT_SECONDS = 120  # waiting for another publisher of the same model


def serving_dir_for(ir_dir: str | Path) -> Path:
    """The repository that belongs to an IR output folder (``models/ir`` -> ``models/serving``)."""
    return Path(ir_dir).parent / SERVING_DIR


def versions(model_dir: str | Path) -> list[int]:
    """The integer version folders under ``model_dir`` that hold a model, oldest first."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    return sorted(int(entry.name) for entry in folder.iterdir()
                  if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0
                  and (entry / contract.IR_FILE).is_file())


@dataclass(frozen=True)
class VersionPolicy:
    """OVMS's model_version_policy: ``latest N``, ``all`` or ``specific 1,3``."""

    kind: str = "latest"
    count: int = 1
    numbers: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        available = sorted(available)
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return [n for n in available if n in self.numbers]
        return available[-self.count:]

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest {self.count}"
        if self.kind == "specific":
            return "specific " + ",".join(map(str, self.numbers))
        return "all"


def parse_policy(text: str) -> VersionPolicy:
    """argparse type for --model-version-policy."""
    words = text.replace(",", " ").split()
    try:
        if words and words[0] == "all" and len(words) == 1:
            return VersionPolicy("all")
        if words and words[0] == "latest" and len(words) <= 2:
            count = int(words[1]) if len(words) == 2 else 1
            if count > 0:
                return VersionPolicy("latest", count)
        if words and words[0] == "specific" and len(words) >= 2:
            numbers = tuple(sorted({int(word) for word in words[1:]}))
            if all(n > 0 for n in numbers):
                return VersionPolicy("specific", numbers=numbers)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r}: expected 'latest N' (N >= 1), 'all' or "
                                     "'specific 1,3' (version numbers)")


def repository_folder(model: str | os.PathLike | None) -> Path | None:
    """The repository folder of model ``digits`` that ``--model`` names, else None.

    ``models/serving/digits`` itself, the repository ``models/serving``, or a models folder
    whose ``serving/digits`` holds a version (None: the default models folder): a server given
    one of these watches it. A model file, or a folder without versions, is served as it is.
    """
    folder = contract.default_models_dir() if model is None else Path(model)
    for candidate in (folder, folder / MODEL_NAME,
                      folder / SERVING_DIR / MODEL_NAME):
        if candidate.is_dir() and versions(candidate):
            return candidate
    return None


def ovms_config(model_name: str = MODEL_NAME) -> dict:
    """OVMS config.json: one model, its base path relative to the config file."""
    return {"model_config_list": [{"config": {
        "name": model_name,
        "base_path": model_name,
        # Serve the newest version; older folders stay on disk for a rollback.
        "model_version_policy": {"latest": {"num_versions": 1}},
    }}]}


def publish_version(xml_path: str | Path, repository: str | Path,
                    model_name: str = MODEL_NAME) -> Path:
    """Copy an IR (``model.xml`` + ``model.bin``) into the repository as a new version.

    Returns the new version folder. Earlier versions are kept; config.json is (re)written.
    """
    xml_path = Path(xml_path)
    weights = xml_path.with_suffix(".bin")
    if not (xml_path.is_file() and weights.is_file()):
        raise UserError(f"cannot publish {xml_path}: an IR needs the .xml and the .bin")
    repository = Path(repository)
    model_dir = repository / model_name
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        # One publisher at a time picks the next number and renames its folder in: two
        # conversions publishing at once get two versions (without the lock both took the
        # same number and the second replaced the first).
        with _version_lock(model_dir):
            existing = [int(entry.name) for entry in model_dir.iterdir() if entry.name.isdigit()]
            target = model_dir / str(max(existing, default=0) + 1)
            with atomic_path(target) as staged:
                staged.mkdir()
                shutil.copyfile(xml_path, staged / contract.IR_FILE)
                shutil.copyfile(weights, staged / contract.IR_FILE.replace(".xml", ".bin"))
            write_json(repository / CONFIG_FILE, ovms_config(model_name))
    except OSError as error:
        raise UserError(f"cannot write the serving repository {repository}: "
                        f"{error.strerror or error}") from None
    return target


@contextlib.contextmanager
def _version_lock(model_dir: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """The model folder's exclusive lock (:func:`system.try_lock_folder`: ``flock`` on POSIX,
    ``msvcrt.locking`` on Windows), waiting up to ``timeout`` seconds for another publisher;
    taken per open file, so threads exclude each other too."""
    deadline = time.monotonic() + timeout
    while (held := system.try_lock_folder(model_dir)) is None:
        if time.monotonic() > deadline:
            raise UserError(f"another conversion has been publishing to {model_dir} for "
                            f"over {timeout:.0f} s; try again when it is done")
        time.sleep(0.05)
    try:
        yield
    finally:
        held.release()


def publish_best(ir_dir: str | Path, written_variants: list[str]) -> list[str]:
    """Publish the fastest variant this conversion wrote (int8 > fp16 > fp32); the files written."""
    for variant in contract.VARIANT_PREFERENCE:
        if variant in written_variants:
            version = publish_version(Path(ir_dir) / variant / contract.IR_FILE,
                                      serving_dir_for(ir_dir))
            return [str(version / contract.IR_FILE), str(version / "model.bin"),
                    str(version.parent.parent / CONFIG_FILE)]
    return []

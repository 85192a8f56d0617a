"""Live model versions, as OpenVINO Model Server serves a model repository folder.

    models/serving/digits/3/model.xml|.bin   loaded, served as version 3
    models/serving/digits/4/model.xml|.bin   appears (convert/to_ir.py, one rename): loaded,
                                             warmed, then served; version 3 is unloaded once
                                             the requests already on it have finished

:class:`VersionedModel` is the served model ``digits`` when the server reads a repository
folder: a watcher thread polls the folder (every ``POLL_SECONDS``), loads each version the
policy selects (``--model-version-policy``, OVMS's ``model_version_policy``: ``latest N``,
``all``, ``specific 1,3``) off the request path, compiles and warms it, then swaps one
dictionary reference: a request picks its version once, when it starts, and keeps it to the
end (a lease); a version no longer selected is closed one poll later, after its last lease.
A version that fails to load is logged in one line and left out of the selection, so the
versions already loaded keep serving (``latest 1`` then means the newest that loads); it is
tried again when its files change. Removing the newest folder brings the previous version
back. The versions loaded are listed in the model's metadata and served at
``/v2/models/digits/versions/<v>/infer`` (gRPC: ``model_version``); the default is the highest.

A version is read when its folder has ``model.xml`` and its files have not changed for one
poll (a folder copied by hand is not read half-written); once loaded, its weights are in
memory (the OpenVINO backend never maps model.bin), so editing a loaded version's files does
nothing: publish a new version instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kserve import InferRequest, InferResponse, Model
from kserve.errors import ModelNotFound
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer

from edgedigits import contract
from edgedigits import model_repository as repository
from edgedigits.errors import UserError, first_line
from edgedigits.model_repository import VersionPolicy

POLL_SECONDS = 1.0
log = logging.getLogger("edgedigits.serving")


def _files_signature(folder: Path) -> tuple:
    """What changes when a version's files are written: their sizes and times."""
    signature = []
    for name in (contract.IR_FILE, contract.IR_FILE.replace(".xml", ".bin")):
        try:
            stat = (folder / name).stat()
            signature.append((stat.st_size, stat.st_mtime_ns))
        except OSError:
            signature.append(None)
    return tuple(signature)


def _folder_identity(folder: Path) -> tuple | None:
    """The version folder itself: a re-published version is a new folder (a new inode)."""
    try:
        stat = folder.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


# --------------------------------------------------------------------------------------------
# One loaded version: a served model with a lease count


class Leases:
    """Requests running on a version; a retired version is closed when none is left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.retired = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            self.count += 1
        try:
            yield
        finally:
            with self._lock:
                self.count -= 1

    def idle(self) -> bool:
        with self._lock:
            return self.count == 0


@dataclass
class LoadedVersion:
    number: int
    model: Model  # a DigitsModel named like the served model
    identity: tuple | None
    retired_at: float = 0.0  # time.monotonic() when it stopped taking new requests


class VersionNotLoaded(ModelNotFound):
    """404 / NOT_FOUND: a version the server has not loaded."""

    def __init__(self, name: str, version: str, loaded: list[str]) -> None:
        super().__init__(name)
        self.reason = (f"model {name!r} has no version {version!r} loaded "
                       f"(loaded: {', '.join(loaded) or 'none'})")


# --------------------------------------------------------------------------------------------
# The served model


class VersionedModel(Model):
    """The model ``name`` served from its repository ``folder``, version by version.

    ``load(path, initial)`` turns a version's model.xml into a served model (a
    :class:`edgedigits.serving.models.DigitsModel` with its runtime loaded and warmed); it
    raises :class:`UserError` when the version cannot be served. ``announce`` gets one line per
    change (the server prints it).
    """

    def __init__(self, name: str, folder: str | os.PathLike, policy: VersionPolicy,
                 load: Callable[[Path, bool], Model], *,
                 announce: Callable[[str], None] | None = None,
                 poll_seconds: float = POLL_SECONDS) -> None:
        super().__init__(name)
        self.folder = Path(folder)
        self.policy = policy
        self._load = load
        self._announce = announce or log.info
        self.poll_seconds = poll_seconds
        # Replaced whole by the watcher, never changed in place: a request reads it once.
        self._loaded: dict[int, LoadedVersion] = {}
        self._retired: list[LoadedVersion] = []
        self._failed: dict[int, tuple] = {}  # version -> the files' signature that failed
        self._seen: dict[int, tuple] = {}  # version -> signature at the previous poll
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.ready = False

    # -- serving ---------------------------------------------------------------------------

    @property
    def versions(self) -> list[str]:
        return [str(n) for n in sorted(self._loaded)]

    def current(self) -> Model:
        """The served model of the default version (the highest loaded)."""
        loaded = self._loaded
        return loaded[max(loaded)].model

    def version(self, version: str | None) -> Model:
        """The served model of ``version`` ('' or None: the default), or 404."""
        if not version:
            return self.current()
        loaded = self._loaded
        entry = loaded.get(int(version)) if version.isdigit() else None
        if entry is None:
            raise VersionNotLoaded(self.name, version, [str(n) for n in sorted(loaded)])
        return entry.model

    @contextlib.contextmanager
    def lease(self, version: str | None = None) -> Iterator[Model]:
        """The version's model, kept loaded until the block ends."""
        model = self.version(version)
        with model.leases.held():
            yield model

    def get_input_types(self) -> list[dict]:
        return self.current().get_input_types()

    def get_output_types(self) -> list[dict]:
        return self.current().get_output_types()

    async def predict(self, payload: InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> InferResponse:
        with self.lease(payload.model_version) as model:
            return await model.predict(payload, headers)

    # -- loading ---------------------------------------------------------------------------

    def load_initial(self) -> None:
        """Load what the policy selects before serving; UserError if nothing loads."""
        self.refresh(wait_for_stable_files=False)
        if not self._loaded:
            found = repository.versions(self.folder)
            if not found:
                raise UserError(f"no version to serve in {self.folder} (expected "
                                f"<number>/{contract.IR_FILE}): run convert/to_ir.py")
            if not self.policy.select(found):
                raise UserError(f"--model-version-policy '{self.policy}' selects none of the "
                                f"versions in {self.folder} ({', '.join(map(str, found))})")
            raise UserError(f"no version of {self.folder} could be loaded under policy "
                            f"'{self.policy}' (versions {', '.join(map(str, found))}; the "
                            "reasons are above)")
        self.ready = True

    def refresh(self, wait_for_stable_files: bool = True) -> None:
        """One look at the folder: load what the policy wants, retire what it no longer does."""
        on_disk = {n: _files_signature(self.folder / str(n))
                   for n in repository.versions(self.folder)}
        stable = {n: sig for n, sig in on_disk.items()
                  if not wait_for_stable_files or self._seen.get(n) == sig}
        self._seen = on_disk
        while True:
            candidates = [n for n, sig in stable.items() if self._failed.get(n) != sig]
            wanted = self.policy.select(candidates)
            missing = [n for n in sorted(wanted, reverse=True) if not self._is_loaded(n)]
            if not missing:
                break
            for number in missing:
                if not self._load_version(number, stable[number], initial=not self._loaded):
                    break  # the selection changes without it: choose again
        if any(n in self._loaded for n in wanted):  # never retire the last version serving
            for number in [n for n in self._loaded if n not in wanted]:
                self._retire(number, "unloaded (no longer selected by policy "
                             f"'{self.policy}'" + ("" if number in on_disk else
                                                   ": its folder is gone") + ")")
        self._close_idle()

    def _is_loaded(self, number: int) -> bool:
        entry = self._loaded.get(number)
        return entry is not None and entry.identity == _folder_identity(self.folder / str(number))

    def _load_version(self, number: int, signature: tuple, initial: bool) -> bool:
        folder = self.folder / str(number)
        started = time.perf_counter()
        try:
            model = self._load(folder / contract.IR_FILE, initial)
            if self._loaded:
                _check_compatible(self.current(), model)
        except UserError as error:
            self._failed[number] = signature
            log.warning("%s version %d not loaded (%s): %s; still serving %s", self.name, number,
                        folder, error, ", ".join(self.versions) or "nothing")
            return False
        except Exception as error:  # a broken version must not stop the watcher
            self._failed[number] = signature
            log.warning("%s version %d not loaded (%s): %s: %s; still serving %s", self.name,
                        number, folder, type(error).__name__, first_line(error),
                        ", ".join(self.versions) or "nothing")
            return False
        model.leases = Leases()
        previous = self._loaded.get(number)
        loaded = dict(self._loaded)
        loaded[number] = LoadedVersion(number, model, _folder_identity(folder))
        self._loaded = loaded  # the switch: one reference, read once per request
        self._failed.pop(number, None)
        if previous is not None:  # the same number re-published: the old one goes
            self._set_aside(previous)
        if not initial:
            self._announce(f"{self.name}: version {number} loaded in "
                           f"{time.perf_counter() - started:.1f} s; serving "
                           f"{', '.join(self.versions)} (default {max(loaded)})")
        return True

    def _retire(self, number: int, why: str) -> None:
        loaded = dict(self._loaded)
        entry = loaded.pop(number)
        self._loaded = loaded
        self._set_aside(entry)
        self._announce(f"{self.name}: version {number} {why}; serving "
                       f"{', '.join(self.versions)} (default {max(loaded)})")

    def _set_aside(self, entry: LoadedVersion) -> None:
        """No new request gets it; closed at a later poll, after its last request (one that
        picked it just before the switch holds its lease by then)."""
        entry.retired_at = time.monotonic()
        entry.model.leases.retired = True
        entry.model.unregister_metrics()
        self._retired.append(entry)

    def _close_idle(self, wait: bool = False) -> None:
        for entry in list(self._retired):
            settled = time.monotonic() - entry.retired_at >= self.poll_seconds
            if wait or (settled and entry.model.leases.idle()):
                self._retired.remove(entry)
                with contextlib.suppress(Exception):
                    entry.model.classifier.close()

    # -- the watcher -----------------------------------------------------------------------

    def start(self) -> None:
        """KServe calls this when the model is registered: start watching the folder."""
        self.ready = bool(self._loaded)
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name=f"watch-{self.name}",
                                             daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as error:  # e.g. the folder unreadable for a moment
                log.warning("%s: cannot read %s: %s", self.name, self.folder, first_line(error))

    def stop(self) -> None:
        """KServe calls this at shutdown: stop watching (after a load in progress)."""
        self._stop.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
        self._close_idle(wait=True)
        for entry in self._loaded.values():
            with contextlib.suppress(Exception):
                entry.model.classifier.wait_all()
        self.ready = False


def _check_compatible(served: Model, new: Model) -> None:
    """A new version must take and give what the served one does (the reader relies on it)."""
    old_io = (served.get_input_types(), served.get_output_types())
    new_io = (new.get_input_types(), new.get_output_types())
    if old_io != new_io or served.classifier.model_type != new.classifier.model_type:
        new.classifier.close()
        raise UserError(f"it is a {new.classifier.model_type} with inputs "
                        f"{new_io[0][0]['shape']} -> {new_io[1][0]['shape']}, the served "
                        f"version a {served.classifier.model_type} with "
                        f"{old_io[0][0]['shape']} -> {old_io[1][0]['shape']}")


# --------------------------------------------------------------------------------------------
# The protocol's version routes (KServe 0.21 refuses every model_version)


class VersionedDataPlane(DataPlane):
    """KServe's data plane, with the versions of a versioned model in its metadata and
    ``model_version`` honoured by metadata and ready."""

    async def model_metadata(self, model_name: str, model_version: str | None = None) -> dict:
        model = self.get_model_from_registry(model_name)
        versions = getattr(model, "versions", None)
        if model_version:
            if versions is None:
                raise VersionNotLoaded(model_name, model_version, [])
            model.version(model_version)  # 404 unless loaded
        metadata = await super().model_metadata(model_name)
        if versions is not None:
            metadata["versions"] = versions
        return metadata

    async def version_ready(self, model_name: str, model_version: str) -> bool:
        await self.model_metadata(model_name, model_version)
        return await self.model_ready(model_name)


def versioned_rest_routes(dataplane: VersionedDataPlane) -> list:
    """GET /v2/models/<m>/versions/<v> and .../ready, before KServe's (which answer 500)."""
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def metadata(request):
        params = request.path_params
        return JSONResponse(await dataplane.model_metadata(params["model_name"],
                                                           params["model_version"]))

    async def ready(request):
        params = request.path_params
        is_ready = await dataplane.version_ready(params["model_name"], params["model_version"])
        return JSONResponse({"name": params["model_name"], "ready": is_ready},
                            status_code=200 if is_ready else 503)

    base = "/v2/models/{model_name}/versions/{model_version}"
    return [Route(base, metadata, methods=["GET"]), Route(base + "/ready", ready, methods=["GET"])]


class VersionedServicer(InferenceServicer):
    """gRPC: ModelMetadata lists the versions; ModelMetadata and ModelReady honour ``version``."""

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        if request.version:
            return pb.ModelReadyResponse(ready=await self._data_plane.version_ready(
                request.name, request.version))
        return await super().ModelReady(request, context)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context) -> pb.ModelMetadataResponse:
        metadata = await self._data_plane.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(name=metadata["name"],
                                        versions=metadata.get("versions") or [],
                                        platform=metadata["platform"],
                                        inputs=metadata["inputs"], outputs=metadata["outputs"])

"""A digit classifier on another machine: any Open Inference Protocol v2 server.

    classifier = RemoteClassifier("http://127.0.0.1:8080")     # REST, binary tensor extension
    classifier = RemoteClassifier("grpc://127.0.0.1:8081")     # gRPC
    probabilities = classifier.predict(images)                 # same interface as the runtime

It speaks to model ``digits`` (input ``images`` UINT8 [N,28,28,1], output ``probabilities`` FP32
[N,10]) through ``tritonclient``, the client OVMS documents, so the same commands work against
``infer/serve.py``, OpenVINO Model Server with the repository convert writes, or Triton.
``classify.py --server URL`` and ``webcam.py --server URL`` use it: preprocessing stays local,
only the 28x28 digits travel.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edgedigits import runtime
from edgedigits.errors import UserError

MODEL_NAME = "digits"  # the name serve.py and the OVMS repository give the model
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
REQUEST_BATCH = 256  # images per request (serve.py's default --max-batch)
TIMEOUT_SECONDS = 30.0


class RemoteClassifier(runtime.DigitClassifier):
    """``DigitClassifier`` over OIP v2: ``http://host:port`` (REST) or ``grpc://host:port``."""

    backend = "remote"

    def __init__(self, url: str, model_name: str = MODEL_NAME,
                 request_batch: int = REQUEST_BATCH) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "grpc") or not parts.hostname:
            raise UserError(f"--server expects http://HOST:PORT (REST) or grpc://HOST:PORT, "
                            f"got {url!r}")
        self.protocol = parts.scheme
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.model_name = model_name
        self.request_batch = request_batch
        self.device = self.url
        self.model_path = Path(model_name)
        self.variant = "remote"
        self.precision = "server's"
        self._address = parts.netloc
        # tritonclient's HTTP client runs on gevent, whose connections belong to the thread that
        # made them: predict_async (webcam, serve.py) calls from a worker thread, so one client
        # per thread.
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        try:
            if self.protocol == "grpc":
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
            self._module = client_module
            self._client()
        except UserError:
            raise
        except Exception as error:  # bad address text: tritonclient's own exception types
            raise UserError(f"cannot use server {url}: {error}") from None
        self._check_model()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self._module.InferenceServerClient(self._address)
            else:
                client = self._module.InferenceServerClient(
                    self._address, connection_timeout=TIMEOUT_SECONDS,
                    network_timeout=TIMEOUT_SECONDS)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _check_model(self) -> None:
        """The server is up and its model has this project's contract; else one clear line."""
        from tritonclient.utils import InferenceServerException

        try:
            ready = self._client().is_model_ready(self.model_name)
            metadata = self._client().get_model_metadata(self.model_name) if ready else None
        except InferenceServerException as error:
            raise UserError(f"cannot reach the OIP v2 server at {self.url}: "
                            f"{error.message() or error}") from None
        except Exception as error:  # connection refused, DNS, timeouts: gevent/gRPC exceptions
            raise UserError(f"cannot reach the OIP v2 server at {self.url}: {error}") from None
        if not ready:
            raise UserError(f"server {self.url} has no ready model {self.model_name!r}")
        if not isinstance(metadata, dict):  # gRPC returns a protobuf message
            from google.protobuf.json_format import MessageToDict

            metadata = MessageToDict(metadata)
        inputs = metadata.get("inputs") or []
        outputs = metadata.get("outputs") or []
        names = ([i.get("name") for i in inputs], [o.get("name") for o in outputs])
        if (len(inputs) != 1 or inputs[0].get("datatype") != "UINT8"
                or names != ([INPUT_NAME], [OUTPUT_NAME])):
            raise UserError(f"model {self.model_name!r} on {self.url} is not a digit classifier "
                            f"(inputs {names[0]}, outputs {names[1]}; expected UINT8 "
                            f"{INPUT_NAME!r} -> {OUTPUT_NAME!r})")
        self.versions = metadata.get("versions") or []

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        # One request per batch_size images (at most request_batch): the runtime's contract.
        size = min(batch_size or self.request_batch, self.request_batch)
        return runtime.in_batches(runtime.as_batch(images), size, self._infer)

    def _infer(self, images: np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        tensor = self._module.InferInput(INPUT_NAME, list(images.shape), "UINT8")
        if self.protocol == "grpc":
            tensor.set_data_from_numpy(images)
            outputs = [self._module.InferRequestedOutput(OUTPUT_NAME)]
        else:
            tensor.set_data_from_numpy(images, binary_data=True)
            outputs = [self._module.InferRequestedOutput(OUTPUT_NAME, binary_data=True)]
        try:
            result = self._client().infer(self.model_name, [tensor], outputs=outputs)
        except InferenceServerException as error:
            raise UserError(f"server {self.url} refused the request: "
                            f"{error.message() or error}") from None
        except Exception as error:  # the connection dropped mid-run
            raise UserError(f"lost the OIP v2 server at {self.url}: {error}") from None
        return np.asarray(result.as_numpy(OUTPUT_NAME), dtype=np.float32).reshape(
            len(images), runtime.NUM_CLASSES)

    def describe(self) -> str:
        return f"remote OIP v2 model {self.model_name!r} at {self.url} ({self.protocol})"

    def close(self) -> None:
        super().close()
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(Exception):  # a gevent client closed off its own thread
                client.close()

"""The REST inference route: OIP v2 JSON and the binary tensor extension, read strictly.

Why not KServe's own route (0.21): it turns every binary BYTES input into UTF-8 text, so an
encoded image (a PNG is not UTF-8) can only fail there; and it takes JSON only with a JSON
Content-Type, while tritonclient and curl send none. This route reads a request the way the
protocol (and OVMS, Triton) define it, checks its layout with one-line reasons, then hands the
request to KServe's data plane: models, their preprocess/predict/postprocess and the response
encoding stay KServe's.

    POST /v2/models/<name>[/versions/<v>]/infer
    body: JSON  |  JSON header + binary tensors, with Inference-Header-Content-Length: <JSON bytes>
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

import numpy as np
import orjson
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import RequestedOutput
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("edgedigits.serving")

HEADER_LENGTH = "inference-header-content-length"
# A JSON part (the whole body, or the binary extension's header) over --max-json-mb is refused
# (413; binary tensors are the way to send more). Below it, JSON is parsed on the event loop: a
# worker thread would not help, orjson and numpy hold the GIL while they parse (1 MiB of numbers,
# a 256-image UINT8 batch: ~0.2 s measured here under load, and ~15x its size in objects).
DEFAULT_MAX_JSON_BYTES = 4 << 20
# Requests of at least this many bytes are watched while they run, and cancelled if their client
# hangs up (two more tasks per request: ~16 % of one-image REST throughput at 32 clients when
# every request was watched). Below it (one image of 28x28 is ~3 KB of JSON, a photo for
# digit-reader tens of KB), the work is shorter than the watch is worth.
WATCH_HANG_UP_BYTES = 64 << 10
DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"}


def parse_request(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """An OIP v2 REST body -> KServe InferRequest, or InvalidInput saying what is wrong."""
    if header_length is None:
        json_length = len(body)
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} must be the JSON header's byte count "
                               f"(at most the body's {len(body)} bytes), got {header_length!r}")
        json_length = int(header_length)
    try:
        header = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError:
        raise InvalidInput("request body is not JSON (an OIP v2 inference request; binary "
                           f"tensors go after a JSON header sized by {HEADER_LENGTH})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput('not an OIP v2 inference request: expected {"inputs": [...]}')
    parameters = header.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')

    inputs = []
    offset = json_length
    for index, item in enumerate(header["inputs"]):
        name, shape, datatype = _describe(item, index)
        tensor_parameters = item.get("parameters") or {}
        tensor = InferInput(name, shape, datatype, parameters=tensor_parameters or None)
        size = tensor_parameters.get("binary_data_size") if isinstance(tensor_parameters,
                                                                       dict) else None
        if "data" in item:
            if not isinstance(item["data"], list):
                raise InvalidInput(f"input {name!r}: \"data\" must be a list")
            if datatype == "BYTES":
                tensor.data = item["data"]
            else:  # checked and made binary here, once
                tensor.set_data_from_numpy(json_tensor(item["data"], name, shape, datatype))
        elif size is not None:
            if header_length is None:
                raise InvalidInput(f"input {name!r} has binary data but the request has no "
                                   f"{HEADER_LENGTH} header")
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(f"input {name!r}: binary_data_size {size!r} runs past the "
                                   f"end of the body")
            tensor._raw_data = body[offset:offset + size]
            offset += size
        else:
            raise InvalidInput(f"input {name!r} has neither \"data\" nor binary data")
        inputs.append(tensor)
    if header_length is not None and offset != len(body):
        raise InvalidInput(f"body has {len(body) - offset} bytes after the binary tensors its "
                           "header declares")

    outputs = header.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(
                o.get("name"), str) for o in outputs):
            raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
        requested = [RequestedOutput(o["name"], o.get("parameters")) for o in outputs]
    request_id = header.get("id")
    return InferRequest(model_name=model_name, infer_inputs=inputs,
                        request_id=str(request_id) if request_id is not None else None,
                        parameters=parameters, request_outputs=requested)


def json_tensor(data: list, name: str, shape: list[int], datatype: str) -> np.ndarray:
    """A JSON ``data`` list as the numpy array ``datatype`` says, refusing what does not fit
    (numpy itself would turn 1.5 into 1 and "7" into 7 for UINT8, 300 into 44)."""
    try:
        values = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input {name!r}: \"data\" is not a regular list of numbers") from None
    dtype = np.dtype(_NUMPY_TYPES[datatype])
    kind = values.dtype.kind
    wanted = "b" if dtype.kind == "b" else "iu" if dtype.kind in "iu" else "iuf"
    if values.size and kind not in wanted:
        example = next((v for v in values.reshape(-1).tolist()
                        if np.asarray(v).dtype.kind not in wanted), None)
        what = {"b": "true or false", "iu": "integers", "iuf": "numbers"}[wanted]
        raise InvalidInput(f"input {name!r}: {datatype} data must be {what}, got {example!r}")
    if values.size and dtype.kind in "iu":
        limits = np.iinfo(dtype)
        low, high = values.min(), values.max()
        if low < limits.min or high > limits.max:
            raise InvalidInput(f"input {name!r}: {datatype} data must be within "
                               f"{limits.min}..{limits.max}, got "
                               f"{int(low) if low < limits.min else int(high)}")
    expected = int(np.prod(shape)) if shape else 1
    if values.size != expected:
        raise InvalidInput(f"input {name!r}: data does not match shape {shape}: "
                           f"{values.size} values, the shape holds {expected}")
    return values.astype(dtype).reshape(shape)


def tensor_array(tensor: InferInput) -> np.ndarray:
    """The tensor's data as numpy, with one line saying why not (count, range, type)."""
    if tensor.datatype != "BYTES" and tensor._raw_data is None and isinstance(tensor.data, list):
        # gRPC's typed contents (REST's JSON is converted as it is parsed)
        return json_tensor(tensor.data, tensor.name, list(tensor.shape), tensor.datatype)
    try:
        return tensor.as_numpy()
    except (ValueError, TypeError, OverflowError, struct.error) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInput(f"input {tensor.name!r} data does not match shape {tensor.shape} "
                           f"and datatype {tensor.datatype}: {first}") from None


_NUMPY_TYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
                "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
                "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}


def _describe(item: object, index: int) -> tuple[str, list[int], str]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{index}] has no \"name\"")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: \"shape\" must be a list of non-negative integers")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        upper = f" (OIP v2 datatypes are upper case: {datatype.upper()})" if isinstance(
            datatype, str) and datatype.upper() in DATATYPES else ""
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}{upper}")
    return name, shape, datatype


def make_infer_endpoint(dataplane, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES):
    """The route handler, bound to KServe's data plane (model registry, infer, encode)."""
    too_big = (f"JSON request over this server's limit of {max_json_bytes} bytes "
               "(--max-json-mb): send tensors as binary data (the binary tensor extension, "
               f"with an {HEADER_LENGTH} header)")

    async def infer(request: Request) -> Response:
        model_name = request.path_params["model_name"]
        if not await dataplane.model_ready(model_name, True):  # ModelNotFound if unknown
            from kserve.errors import ModelNotReady

            raise ModelNotReady(model_name)
        header_length = request.headers.get(HEADER_LENGTH)
        declared = request.headers.get("content-length", "")
        json_part = header_length if header_length is not None else declared
        refused = json_part.strip().isdigit() and int(json_part) > max_json_bytes
        body = b"" if refused else await request.body()
        if refused or (header_length is None and len(body) > max_json_bytes):  # or chunked
            log.info("POST %s -> 413 %s", request.url.path, too_big)
            return JSONResponse({"error": too_big}, status_code=413)
        infer_request = parse_request(body, header_length, model_name)
        infer_request.model_version = request.path_params.get("model_version")
        inferring = dataplane.infer(model_name=model_name, request=infer_request,
                                    headers=dict(request.headers))
        if len(body) < WATCH_HANG_UP_BYTES:  # a small request: cheaper to finish than to watch
            response, _ = await inferring
            return _rest_response(response)
        work = asyncio.ensure_future(inferring)
        hang_up = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait((work, hang_up), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # this handler itself was cancelled: so is the work
            work.cancel()
            raise
        finally:
            hang_up.cancel()
        if not work.done():  # nobody is waiting for the answer: stop working on it
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            log.info("POST %s: client went away: request cancelled", request.url.path)
            return Response(status_code=499)
        return _rest_response(work.result()[0])

    return infer


def _rest_response(response) -> Response:
    content, json_length = response.to_rest()
    if json_length is None:
        return Response(orjson.dumps(content), media_type="application/json")
    return Response(content, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(json_length)})


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the server's next message
    for this request can only be ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

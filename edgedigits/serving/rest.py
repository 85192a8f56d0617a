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

import orjson
from kserve import InferInput, InferRequest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import RequestedOutput
from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger("edgedigits.serving")

HEADER_LENGTH = "inference-header-content-length"
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
            tensor.data = item["data"]
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


def _describe(item: object, index: int) -> tuple[str, list[int], str]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{index}] has no \"name\"")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and d >= 0 for d in shape):
        raise InvalidInput(f"input {name!r}: \"shape\" must be a list of non-negative integers")
    if not isinstance(datatype, str) or datatype.upper() not in DATATYPES:
        raise InvalidInput(f"input {name!r}: unknown datatype {datatype!r}")
    return name, shape, datatype.upper()


def make_infer_endpoint(dataplane):
    """The route handler, bound to KServe's data plane (model registry, infer, encode)."""

    async def infer(request: Request) -> Response:
        model_name = request.path_params["model_name"]
        if not await dataplane.model_ready(model_name, True):  # ModelNotFound if unknown
            from kserve.errors import ModelNotReady

            raise ModelNotReady(model_name)
        body = await request.body()
        infer_request = parse_request(body, request.headers.get(HEADER_LENGTH), model_name)
        work = asyncio.ensure_future(dataplane.infer(model_name=model_name,
                                                     request=infer_request,
                                                     headers=dict(request.headers)))
        hang_up = asyncio.ensure_future(_client_gone(request))
        await asyncio.wait((work, hang_up), return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # nobody is waiting for the answer: stop working on it
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            log.info("POST %s: client went away: request cancelled", request.url.path)
            return Response(status_code=499)
        hang_up.cancel()
        response, _ = work.result()
        content, json_length = response.to_rest()
        if json_length is None:
            return Response(orjson.dumps(content), media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(json_length)})

    return infer


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the server's next message
    for this request can only be ``http.disconnect``)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass

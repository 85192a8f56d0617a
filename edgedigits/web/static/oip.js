// Open Inference Protocol (KServe v2) over REST, the little the page needs.
//
// Encoded images go to the reader model (`digit-reader`) as one BYTES input, sent with the
// binary tensor extension: the JSON inference header, then each element as a 4-byte
// little-endian length followed by its bytes; `Inference-Header-Content-Length` says where the
// JSON ends. Each element of the results output is a JSON object (classify.py --json's row).
// The model and tensor names come from the server (/page-config.json), read once by config().
"use strict";

const OIP = (() => {
  // The server's names (filled by config() before the first request).
  const names = { reader: null, input: null, output: null, tensorflow: null, number_reader: null };

  async function config() {
    const response = await fetch("/page-config.json", { cache: "no-store" });
    if (!response.ok) throw new ServerError("The server did not say its model names.", response.status);
    Object.assign(names, await response.json());
    return names;
  }

  class ServerError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status; // 0 when the server could not be reached
    }
  }

  async function encodeBytesRequest(blobs, parameters) {
    const elements = await Promise.all(blobs.map((blob) => blob.arrayBuffer()));
    const dataSize = elements.reduce((sum, bytes) => sum + 4 + bytes.byteLength, 0);
    const header = {
      inputs: [{
        name: names.input,
        shape: [elements.length],
        datatype: "BYTES",
        parameters: { binary_data_size: dataSize },
      }],
      parameters,
    };
    const headerBytes = new TextEncoder().encode(JSON.stringify(header));
    const body = new Uint8Array(headerBytes.length + dataSize);
    const view = new DataView(body.buffer);
    body.set(headerBytes, 0);
    let offset = headerBytes.length;
    for (const bytes of elements) {
      view.setUint32(offset, bytes.byteLength, true);
      body.set(new Uint8Array(bytes), offset + 4);
      offset += 4 + bytes.byteLength;
    }
    return { body, headerLength: headerBytes.length };
  }

  // A response is JSON, or (if the server chose binary outputs) a JSON header then raw data.
  function decodeResponse(bytes, headerLength) {
    const text = new TextDecoder();
    if (headerLength === null) return JSON.parse(text.decode(bytes));
    const header = JSON.parse(text.decode(bytes.subarray(0, headerLength)));
    let offset = headerLength;
    for (const output of header.outputs || []) {
      const size = output.parameters && output.parameters.binary_data_size;
      if (size === undefined || output.data !== undefined) continue;
      const end = offset + size;
      const view = new DataView(bytes.buffer, bytes.byteOffset);
      output.data = [];
      while (offset < end) {
        const length = view.getUint32(offset, true);
        output.data.push(text.decode(bytes.subarray(offset + 4, offset + 4 + length)));
        offset += 4 + length;
      }
    }
    return header;
  }

  // The server's one-line reason from an error response (OIP: {"error": "..."}).
  async function errorReason(response) {
    const body = await response.text();
    try {
      const parsed = JSON.parse(body);
      if (parsed && typeof parsed.error === "string") return parsed.error;
      if (parsed && typeof parsed.detail === "string") return parsed.detail;
    } catch (_) { /* not JSON: use the text */ }
    return body.trim().split("\n")[0] || response.statusText || `HTTP ${response.status}`;
  }

  async function post(url, body, headers) {
    try {
      return await fetch(url, { method: "POST", headers, body });
    } catch (_) {
      throw new ServerError("Cannot reach the server. Is python infer/serve.py still running?", 0);
    }
  }

  // Read digits in encoded images: one result object per blob.
  async function readImages(blobs, parameters = {}) {
    if (!names.reader) await config();
    const { body, headerLength } = await encodeBytesRequest(blobs, parameters);
    const response = await post(`/v2/models/${names.reader}/infer`, body, {
      "Content-Type": "application/octet-stream",
      "Inference-Header-Content-Length": String(headerLength),
    });
    if (!response.ok) {
      const reason = await errorReason(response);
      throw new ServerError(`The server answered ${response.status}: ${reason}`, response.status);
    }
    const length = response.headers.get("Inference-Header-Content-Length");
    const decoded = decodeResponse(
      new Uint8Array(await response.arrayBuffer()), length === null ? null : Number(length));
    const results = (decoded.outputs || []).find((output) => output.name === names.output);
    if (!results) throw new ServerError(`The server's answer has no '${names.output}' output.`, response.status);
    return results.data.map((element) => (typeof element === "string" ? JSON.parse(element) : element));
  }

  // True when GET url answers 200 (OIP readiness endpoints).
  async function isReady(url) {
    try {
      const response = await fetch(url, { cache: "no-store" });
      return response.ok;
    } catch (_) {
      return false;
    }
  }

  return { readImages, isReady, config, ServerError, encodeBytesRequest };
})();

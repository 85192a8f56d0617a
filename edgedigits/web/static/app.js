// The page: three ways to give the server a digit (draw, photo, camera) and one answer panel.
// Every image goes to the server as an encoded file; all preprocessing happens there, in the
// same module classify.py and webcam.py use. Nothing here resizes, crops or thresholds digits.
"use strict";

(() => {
  const DEBOUNCE_MS = 120;         // quiet time after the last stroke before asking
  const PEN_WIDTH = 20;            // in canvas pixels (the pad is 280 wide: MNIST's 28 x 10)
  const CAMERA_MIN_INTERVAL_MS = 200;  // at most 5 camera frames a second
  const CAMERA_MAX_SIDE = 640;     // frames are sent at most this large
  const MODES = ["draw", "photo", "camera"];

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("server-status"),
    tabs: MODES.map((mode) => $(`tab-${mode}`)),
    panels: MODES.map((mode) => $(`panel-${mode}`)),
    pad: $("pad"), clear: $("clear"), pen: $("pen"), penState: $("pen-state"),
    drop: $("drop"), file: $("file"), photoView: $("photo-view"),
    cameraToggle: $("camera-toggle"), stage: $("stage"), video: $("video"), overlay: $("overlay"),
    fps: $("fps"), cameraMs: $("camera-ms"),
    answer: $("answer"), prediction: $("prediction"), verdict: $("verdict"),
    confidence: $("confidence"), timing: $("timing"), error: $("error"),
    seen: $("seen"), seenFigure: $("seen-figure"), seenCaption: $("seen-caption"),
    bars: $("bars"), detections: $("detections"),
    compare: $("compare"), compareNote: $("compare-note"), compareTable: $("compare-table"),
  };

  // What each mode last showed: {state: idle|busy|done|error, result, error, roundTripMs}.
  const answers = { draw: { state: "idle" }, photo: { state: "idle" }, camera: { state: "idle" } };
  let mode = "draw";

  // ------------------------------------------------------------------------------------------
  // Talking to the server

  function readParameters(multi) {
    const parameters = { preprocessed: true, probabilities: true };
    if (multi) parameters.multi = true;
    if (el.compare.checked) parameters.compare = true;
    return parameters;
  }

  function showServer(ready, text) {
    el.status.textContent = text;
    el.status.dataset.ready = String(ready);
  }

  async function readOne(blob, multi) {
    const started = performance.now();
    try {
      const [result] = await OIP.readImages([blob], readParameters(multi));
      if (el.status.dataset.ready !== "true") showServer(true, "Server ready.");
      return { result, roundTripMs: performance.now() - started };
    } catch (error) {
      if (error instanceof OIP.ServerError && error.status === 0) showServer(false, "The server cannot be reached.");
      throw error;
    }
  }

  async function checkServer() {
    const ready = await OIP.isReady("/v2/health/ready");
    showServer(ready, ready ? "Server ready." : "The server is not ready (see its console).");
    let names = { tensorflow: null, number_reader: null };
    try {
      names = await OIP.config();
    } catch (_) { /* an old or unreachable server: no comparison */ }
    const tensorflow = Boolean(names.tensorflow)
      && await OIP.isReady(`/v2/models/${names.tensorflow}/ready`);
    // With a number reader, photos and camera frames are read line by line, but a comparison
    // is between the two runtimes of the digit model: it reads them digit by digit.
    const numberReader = tensorflow && Boolean(names.number_reader)
      && await OIP.isReady(`/v2/models/${names.number_reader}/ready`);
    el.compare.disabled = !tensorflow;
    el.compareNote.textContent = !tensorflow
      ? "TensorFlow is not loaded: start the server with --compare to compare."
      : "Shows each runtime's digit and inference time for the same preprocessed image."
        + (numberReader ? " Photos and camera frames are then read digit by digit by the digit"
          + " model, not by the number reader." : "");
    el.compareNote.dataset.available = String(tensorflow);
  }

  // ------------------------------------------------------------------------------------------
  // The answer panel

  const percent = (value) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`);
  const milliseconds = (value) => (value === null || value === undefined ? "–" : `${Number(value).toFixed(1)} ms`);

  function isNoDigit(result) {
    return !result.error || /^no digit/i.test(result.error);
  }

  // The single reading the panel details: the result itself, or the chosen detection.
  function focusReading(result) {
    if (!result.detections) return result.digit === null || result.digit === undefined ? null : result;
    return result.detections[0] || null;
  }

  // All ten probabilities of a reading, when the server sent them: one vector for a single
  // reading, a list in the detections' order for a multi reading. A multi reading by a number
  // reader has none (its digits come from whole lines).
  function fullProbabilities(result, reading) {
    if (!result.detections) return result.probabilities ?? null;
    const values = result.probabilities;
    return Array.isArray(values) ? values[result.detections.indexOf(reading)] ?? null : null;
  }

  // Ten probabilities: the server's full vector, else what top3 tells.
  function probabilities(result, reading) {
    const all = fullProbabilities(result, reading);
    if (Array.isArray(all) && all.length === 10) return all;
    const known = new Array(10).fill(0);
    for (const { digit, confidence } of reading.top3 || []) known[digit] = confidence;
    return known;
  }

  function buildBars() {
    for (let digit = 0; digit < 10; digit++) {
      const row = document.createElement("div");
      row.className = "bar";
      row.setAttribute("role", "listitem");
      row.innerHTML = `<span class="bar-digit">${digit}</span><span class="bar-track"><span class="bar-fill"></span></span><span class="bar-value"></span>`;
      el.bars.append(row);
    }
  }

  function showBars(result, reading) {
    const values = reading ? probabilities(result, reading) : new Array(10).fill(null);
    el.bars.querySelectorAll(".bar").forEach((row, digit) => {
      const value = values[digit];
      row.querySelector(".bar-fill").style.width = `${value ? Math.max(0, Math.min(1, value)) * 100 : 0}%`;
      row.querySelector(".bar-value").textContent = value === null ? "" : percent(value);
      row.classList.toggle("top", Boolean(reading) && digit === reading.digit);
      row.setAttribute("aria-label", `${digit}: ${value === null ? "no answer" : percent(value)}`);
    });
  }

  // A PNG data URL's width and height, read from its header (the IHDR chunk, bytes 16 to 23).
  function pngSize(url) {
    try {
      const start = url.indexOf(",") + 1;
      const bytes = atob(url.slice(start, start + 32));
      const word = (at) => ((bytes.charCodeAt(at) << 24) | (bytes.charCodeAt(at + 1) << 16)
        | (bytes.charCodeAt(at + 2) << 8) | bytes.charCodeAt(at + 3)) >>> 0;
      return { width: word(16), height: word(20) };
    } catch (_) {
      return { width: 0, height: 0 };
    }
  }

  // What the model saw (`preprocessed`): the 28x28 digit of a single reading; the 28x28 digits
  // of a multi reading, left to right; or, from a server with a number reader, each line of
  // writing it read (192x32), top to bottom, also when it found no digit in them.
  function showSeen(result) {
    const value = result ? result.preprocessed : null;
    const urls = (Array.isArray(value) ? value : [value]).filter((url) => typeof url === "string");
    el.seenFigure.hidden = urls.length === 0;
    el.seen.replaceChildren();
    if (urls.length === 0) return;
    const { width, height } = pngSize(urls[0]);
    const lines = width !== height;
    const size = width && height ? `${width}×${height}` : "";
    el.seen.className = `seen-images ${lines ? "lines" : "digits"}${urls.length > 1 ? " several" : ""}`;
    urls.forEach((url, i) => {
      const image = document.createElement("img");
      image.src = url;
      image.alt = lines ? `Line ${i + 1} as the number reader saw it` : `Digit ${i + 1} as the model saw it`;
      el.seen.append(image);
    });
    const several = urls.length > 1;
    if (lines) {
      const what = several ? `${urls.length} lines` : "line";
      el.seenCaption.textContent = `The ${what} the number reader read${size ? ` (${size}${several ? " each" : ""})` : ""}`;
    } else {
      const what = several ? `${urls.length} ${size} images` : `${size} image`;
      el.seenCaption.textContent = `The ${what.trim()} the model saw${several ? ", left to right" : ""}`;
    }
  }

  function showDetections(result) {
    el.detections.replaceChildren();
    if (!result || !result.detections) return;
    for (const detection of result.detections) {
      const item = document.createElement("li");
      const [x, y, w, h] = detection.box;
      item.dataset.box = JSON.stringify(detection.box);
      item.textContent = `${detection.digit} (${percent(detection.confidence)}) at x ${x}, y ${y}, ${w}×${h}`;
      el.detections.append(item);
    }
  }

  function showCompare(result) {
    const both = result && result.compare;
    el.compareTable.hidden = !both;
    if (!both) return;
    for (const [prefix, key] of [["ov", "openvino"], ["tf", "tensorflow"]]) {
      const side = both[key] || {};
      const digits = side.digits ? side.digits.join("") : side.digit ?? "";
      el.compareTable.querySelector(`[data-testid=${prefix}-digit]`).textContent = digits === "" ? "none" : digits;
      el.compareTable.querySelector(`[data-testid=${prefix}-confidence]`).textContent = percent(side.confidence);
      el.compareTable.querySelector(`[data-testid=${prefix}-ms]`).textContent = milliseconds(side.inference_ms);
    }
  }

  const PROMPTS = { draw: "Draw a digit", photo: "Choose or drop a photo", camera: "Start the camera" };

  function render() {
    const answer = answers[mode];
    el.answer.dataset.state = answer.state;
    el.answer.dataset.mode = mode;
    el.answer.setAttribute("aria-busy", String(answer.state === "busy"));
    el.error.hidden = !answer.error;
    el.error.textContent = answer.error || "";
    const result = answer.result;
    if (!result) {
      el.prediction.textContent = "";
      el.verdict.textContent = answer.error ? "no answer" : PROMPTS[mode];
      el.confidence.textContent = "–";
      el.timing.textContent = "";
      showSeen(null);
      showBars(null, null);
      showDetections(null);
      showCompare(null);
      return;
    }
    const reading = focusReading(result);
    const text = result.detections ? (result.number || "") : (result.digit ?? "");
    el.prediction.textContent = String(text);
    if (text === "") {
      el.verdict.textContent = isNoDigit(result) ? "no digit" : "could not read";
    } else {
      el.verdict.textContent = result.detections && result.detections.length > 1
        ? `${result.detections.length} digits` : "";
    }
    el.confidence.textContent = percent(result.confidence);
    const serverMs = result.inference_ms;
    el.timing.textContent = serverMs === undefined ? ""
      : `Inference ${milliseconds(serverMs)} on the server; ${milliseconds(answer.roundTripMs)} round trip.`;
    showSeen(result);
    showBars(result, reading);
    showDetections(result);
    showCompare(result);
    if (text === "" && !isNoDigit(result)) {
      el.error.hidden = false;
      el.error.textContent = `The server could not read this image: ${result.error}`;
    }
  }

  function setAnswer(forMode, update) {
    answers[forMode] = { ...answers[forMode], ...update };
    if (forMode === mode) render();
  }

  function failure(error) {
    return error instanceof OIP.ServerError ? error.message : `Something went wrong in the page: ${error.message}`;
  }

  // ------------------------------------------------------------------------------------------
  // Tabs (arrow keys move between them, as in the ARIA tabs pattern)

  function selectMode(next, focus) {
    mode = next;
    MODES.forEach((name, i) => {
      const selected = name === next;
      el.tabs[i].setAttribute("aria-selected", String(selected));
      el.tabs[i].tabIndex = selected ? 0 : -1;
      el.panels[i].hidden = !selected;
      if (selected && focus) el.tabs[i].focus();
    });
    if (next !== "camera") stopCamera();
    render();
  }

  el.tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => selectMode(MODES[i], false));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: MODES.length - 1 - i }[event.key];
      if (step === undefined) return;
      event.preventDefault();
      selectMode(MODES[(i + step + MODES.length) % MODES.length], true);
    });
  });

  // ------------------------------------------------------------------------------------------
  // Draw: pointer events cover mouse, pen and touch

  const pad = el.pad.getContext("2d");
  const drawing = { version: 0, sentVersion: 0, inFlight: false, timer: null, last: null, pointer: null };

  function clearPad() {
    pad.fillStyle = "#fff";
    pad.fillRect(0, 0, el.pad.width, el.pad.height);
  }

  function padPoint(event) {
    const rect = el.pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * el.pad.width) / rect.width,
      y: ((event.clientY - rect.top) * el.pad.height) / rect.height,
    };
  }

  function strokeTo(point) {
    pad.strokeStyle = "#000";
    pad.lineWidth = PEN_WIDTH;
    pad.lineCap = "round";
    pad.lineJoin = "round";
    pad.beginPath();
    pad.moveTo(drawing.last.x, drawing.last.y);
    pad.lineTo(point.x, point.y);
    pad.stroke();
    drawing.last = point;
  }

  // Debounced, one request in flight, and only the latest drawing counts: when a request
  // returns and the drawing has changed meanwhile, the newest drawing is sent next.
  function drawingChanged(delay) {
    drawing.version += 1;
    el.pad.dataset.version = String(drawing.version);
    setAnswer("draw", { state: "busy" });
    clearTimeout(drawing.timer);
    drawing.timer = setTimeout(sendDrawing, delay);
  }

  function padBlob() {
    return new Promise((resolve) => el.pad.toBlob(resolve, "image/png"));
  }

  async function sendDrawing() {
    if (drawing.inFlight || drawing.sentVersion === drawing.version) return;
    drawing.inFlight = true;
    const version = drawing.version;
    drawing.sentVersion = version;
    try {
      const { result, roundTripMs } = await readOne(await padBlob(), false);
      const latest = version === drawing.version;
      setAnswer("draw", { state: latest ? "done" : "busy", result, roundTripMs, error: null });
    } catch (error) {
      const latest = version === drawing.version;
      setAnswer("draw", { state: latest ? "error" : "busy", result: null, error: failure(error) });
    } finally {
      el.answer.dataset.version = String(version);
      drawing.inFlight = false;
      if (drawing.sentVersion !== drawing.version) sendDrawing();
    }
  }

  el.pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || drawing.pointer !== null) return;
    event.preventDefault();
    el.pad.setPointerCapture(event.pointerId);
    drawing.pointer = event.pointerId;
    drawing.last = padPoint(event);
    strokeTo(drawing.last); // a dot for a tap
    drawingChanged(DEBOUNCE_MS);
  });

  el.pad.addEventListener("pointermove", (event) => {
    if (event.pointerId !== drawing.pointer) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const each of events.length ? events : [event]) strokeTo(padPoint(each));
    drawingChanged(DEBOUNCE_MS);
  });

  function endStroke(event) {
    if (event.pointerId !== drawing.pointer) return;
    drawing.pointer = null;
    drawingChanged(0); // the stroke is finished: ask now
  }
  el.pad.addEventListener("pointerup", endStroke);
  el.pad.addEventListener("pointercancel", endStroke);

  // The keyboard draws too: arrows move a pen (shown as a ring), Space puts it down or lifts it.
  const KEY_STEPS = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };
  const keyPen = { x: el.pad.width / 2, y: el.pad.height / 2, down: false };

  function showPen() {
    el.pen.style.left = `${(100 * keyPen.x) / el.pad.width}%`;
    el.pen.style.top = `${(100 * keyPen.y) / el.pad.height}%`;
    el.pen.classList.toggle("down", keyPen.down);
    el.penState.textContent = keyPen.down ? "Pen down: moving draws." : "Pen up.";
  }

  el.pad.addEventListener("keydown", (event) => {
    const step = KEY_STEPS[event.key];
    if (step) {
      const distance = event.shiftKey ? 3 : 10;
      const clamp = (value, limit) => Math.max(0, Math.min(limit, value));
      const next = {
        x: clamp(keyPen.x + step[0] * distance, el.pad.width),
        y: clamp(keyPen.y + step[1] * distance, el.pad.height),
      };
      if (keyPen.down) {
        drawing.last = { x: keyPen.x, y: keyPen.y };
        strokeTo(next);
        drawingChanged(DEBOUNCE_MS);
      }
      Object.assign(keyPen, next);
    } else if (event.key === " " || event.key === "Enter") {
      keyPen.down = !keyPen.down;
      if (keyPen.down) {
        drawing.last = { x: keyPen.x, y: keyPen.y };
        strokeTo(drawing.last);
      }
      drawingChanged(keyPen.down ? DEBOUNCE_MS : 0);
    } else if (event.key === "Delete" || event.key === "Backspace" || event.key === "Escape") {
      clearPad();
      keyPen.down = false;
      drawingChanged(0);
    } else {
      return;
    }
    event.preventDefault(); // no page scrolling or button presses while drawing
    showPen();
  });

  el.clear.addEventListener("click", () => {
    clearPad();
    keyPen.down = false;
    showPen();
    drawingChanged(0);
  });

  // ------------------------------------------------------------------------------------------
  // Photo: choose or drop; every digit found is boxed on the picture

  const photoContext = el.photoView.getContext("2d");

  function drawBoxes(context, detections, scale) {
    const line = Math.max(2, 3 * scale);
    context.lineWidth = line;
    context.font = `bold ${Math.round(28 * scale)}px system-ui, sans-serif`;
    context.textBaseline = "bottom";
    for (const { box: [x, y, w, h], digit } of detections || []) {
      context.strokeStyle = "#00a86b";
      context.strokeRect(x, y, w, h);
      const label = String(digit);
      const width = context.measureText(label).width + 2 * line;
      const height = Math.round(32 * scale);
      const top = y - height >= 0 ? y - height : y + h;
      context.fillStyle = "#00a86b";
      context.fillRect(x - line / 2, top, width, height);
      context.fillStyle = "#fff";
      context.fillText(label, x + line / 2, top + height);
    }
  }

  let lastPhoto = null;

  async function readPhoto(file) {
    if (!file) return;
    lastPhoto = file;
    selectMode("photo", false);
    setAnswer("photo", { state: "busy", error: null });
    let bitmap = null;
    try {
      bitmap = await createImageBitmap(file);
    } catch (_) {
      bitmap = null; // the browser cannot show it; the server still says why it cannot read it
    }
    el.photoView.hidden = !bitmap;
    if (bitmap) {
      el.photoView.width = bitmap.width;
      el.photoView.height = bitmap.height;
      photoContext.drawImage(bitmap, 0, 0);
    }
    try {
      const { result, roundTripMs } = await readOne(file, true);
      if (bitmap) {
        photoContext.drawImage(bitmap, 0, 0);
        drawBoxes(photoContext, result.detections, Math.max(bitmap.width, bitmap.height) / 640);
      }
      setAnswer("photo", { state: "done", result, roundTripMs, error: null });
    } catch (error) {
      setAnswer("photo", { state: "error", result: null, error: failure(error) });
    }
  }

  el.file.addEventListener("change", () => {
    const file = el.file.files[0];
    el.file.value = ""; // choosing the same file again reads it again
    readPhoto(file);
  });
  for (const name of ["dragenter", "dragover"]) {
    el.drop.addEventListener(name, (event) => {
      event.preventDefault();
      el.drop.classList.add("dragging");
    });
  }
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("dragging");
    readPhoto(event.dataTransfer.files[0]);
  });

  // ------------------------------------------------------------------------------------------
  // Camera: a few frames a second, one in flight, boxes drawn over the live video

  const camera = { stream: null, running: false, frame: document.createElement("canvas"), answered: [] };
  const overlayContext = el.overlay.getContext("2d");

  function cameraProblem(error) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return "This browser gives no camera here (cameras need http://127.0.0.1, localhost or https).";
    }
    if (error && error.name === "NotAllowedError") return "Camera permission was refused.";
    if (error && (error.name === "NotFoundError" || error.name === "OverconstrainedError")) return "No camera found.";
    return `The camera could not start: ${error ? error.message || error.name : "unknown reason"}.`;
  }

  async function startCamera() {
    setAnswer("camera", { state: "busy", error: null, result: null });
    try {
      camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 } }, audio: false });
    } catch (error) {
      setAnswer("camera", { state: "error", error: cameraProblem(error) });
      return;
    }
    el.video.srcObject = camera.stream;
    await el.video.play().catch(() => {});
    el.stage.hidden = false;
    camera.running = true;
    camera.answered = [];
    el.cameraToggle.textContent = "Stop camera";
    el.cameraToggle.setAttribute("aria-pressed", "true");
    cameraLoop();
  }

  function stopCamera() {
    if (!camera.stream) return;
    camera.running = false;
    for (const track of camera.stream.getTracks()) track.stop();
    camera.stream = null;
    el.video.srcObject = null;
    el.stage.hidden = true;
    el.cameraToggle.textContent = "Start camera";
    el.cameraToggle.setAttribute("aria-pressed", "false");
    el.fps.textContent = "–";
    if (answers.camera.state === "busy") setAnswer("camera", { state: "idle" });
  }

  function grabFrame() {
    const { videoWidth: width, videoHeight: height } = el.video;
    if (!width || !height) return null;
    const scale = Math.min(1, CAMERA_MAX_SIDE / Math.max(width, height));
    camera.frame.width = Math.round(width * scale);
    camera.frame.height = Math.round(height * scale);
    camera.frame.getContext("2d").drawImage(el.video, 0, 0, camera.frame.width, camera.frame.height);
    return new Promise((resolve) => camera.frame.toBlob(resolve, "image/jpeg", 0.9));
  }

  async function cameraLoop() {
    while (camera.running) {
      const started = performance.now();
      const blob = await grabFrame();
      if (blob) {
        try {
          const { result, roundTripMs } = await readOne(blob, true);
          if (!camera.running) break;
          el.overlay.width = camera.frame.width;
          el.overlay.height = camera.frame.height;
          overlayContext.clearRect(0, 0, el.overlay.width, el.overlay.height);
          drawBoxes(overlayContext, result.detections, Math.max(el.overlay.width, el.overlay.height) / 640);
          const now = performance.now();
          camera.answered = camera.answered.filter((time) => now - time < 2000).concat(now);
          const span = (now - camera.answered[0]) / 1000;
          el.fps.textContent = camera.answered.length > 1 ? ((camera.answered.length - 1) / span).toFixed(1) : "–";
          el.cameraMs.textContent = result.inference_ms === undefined ? "–" : Number(result.inference_ms).toFixed(1);
          setAnswer("camera", { state: "done", result, roundTripMs, error: null });
        } catch (error) {
          if (!camera.running) break;
          setAnswer("camera", { state: "error", result: null, error: failure(error) });
        }
      }
      const wait = CAMERA_MIN_INTERVAL_MS - (performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, Math.max(wait, blob ? 0 : 50)));
    }
  }

  el.cameraToggle.addEventListener("click", () => (camera.stream ? stopCamera() : startCamera()));

  // ------------------------------------------------------------------------------------------
  // Compare: the next answer of the active mode includes both runtimes

  el.compare.addEventListener("change", () => {
    if (mode === "draw" && drawing.version > 0) drawingChanged(0);
    else if (mode === "photo" && lastPhoto) readPhoto(lastPhoto);
  });

  // ------------------------------------------------------------------------------------------

  buildBars();
  clearPad();
  showPen();
  render();
  checkServer();
})();

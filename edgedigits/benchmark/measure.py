"""How every row is measured: the same loops for every backend, through DigitClassifier only.

Accuracy through ``predict``; batch-1 latency through ``bind_single``/``infer_single`` (each
backend's cheapest single-image call); throughput through ``predict(images, batch_size=b)``,
and for OpenVINO also ``predict_async`` on a THROUGHPUT-hint twin, keeping whichever of the two
measures faster at that batch size (and recording which).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgedigits import system
from edgedigits.runtime import DigitClassifier


@dataclass(frozen=True)
class Effort:
    """How long to measure. ``quick`` is for tests and smoke runs; its numbers are not a result."""

    test_images: int | None  # None = the full 10,000-image test set
    latency_warmup_calls: int
    latency_min_calls: int  # at least this many timed single-image calls ...
    latency_seconds: float  # ... and more until this much time has passed (fast runtimes)
    latency_max_calls: int
    throughput_seconds: float  # one timed window per repeat and batch size
    throughput_repeats: int
    calibration_images: int  # peers' own INT8 calibration, drawn from the training set


FULL = Effort(test_images=None, latency_warmup_calls=100, latency_min_calls=1000,
              latency_seconds=2.0, latency_max_calls=50_000, throughput_seconds=1.0,
              throughput_repeats=3, calibration_images=300)
QUICK = Effort(test_images=500, latency_warmup_calls=5, latency_min_calls=30,
               latency_seconds=0.0, latency_max_calls=30, throughput_seconds=0.05,
               throughput_repeats=1, calibration_images=32)
LATENCY_BLOCKS = 5  # latency calls are split into this many blocks to show their spread
TRIAL_SECONDS = 0.15  # how long each calling pattern is tried before a batch size is measured


def predict_all(classifier: DigitClassifier, images: np.ndarray,
                answers: Callable[[np.ndarray], np.ndarray], chunk: int = 500) -> np.ndarray:
    """The answer (``Task.answers``: a digit, a number read) for every input, in chunks
    (accuracy does not need the fast path)."""
    return np.concatenate([answers(classifier.predict(images[start:start + chunk]))
                           for start in range(0, len(images), chunk)])


def _spread(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)),
            "max": float(values.max())}


def measure_latency(classifier: DigitClassifier, images: np.ndarray, effort: Effort) -> dict:
    """Batch-1 latency: warm-up, then timed single-image calls over different test images.

    At least ``latency_min_calls`` calls (model.predict, at tens of ms a call, stops there),
    and more until ``latency_seconds`` have passed, so fast runtimes get stable tails.
    """
    min_calls = effort.latency_min_calls
    singles = [images[i:i + 1] for i in range(min(len(images), 2000))]
    image_in, _ = classifier.bind_single()
    infer = classifier.infer_single
    for index in range(effort.latency_warmup_calls):
        image_in[...] = singles[index % len(singles)]
        infer()
    timings = np.empty(max(min_calls, effort.latency_max_calls), dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(effort.latency_seconds * 1e9)
    calls = 0
    while calls < len(timings) and (calls < min_calls or clock() < deadline):
        image = singles[calls % len(singles)]
        started = clock()
        image_in[...] = image
        infer()
        timings[calls] = clock() - started
        calls += 1
    micros = timings[:calls] / 1000.0
    blocks = np.array_split(micros, min(LATENCY_BLOCKS, calls))
    return {
        "calls": calls,
        "p50": float(np.percentile(micros, 50)),
        "p90": float(np.percentile(micros, 90)),
        "p99": float(np.percentile(micros, 99)),
        "mean": float(micros.mean()),
        "min": float(micros.min()),
        "p50_blocks": _spread([np.percentile(block, 50) for block in blocks]),
    }


def stream_sync(classifier: DigitClassifier, images: np.ndarray, batch_size: int,
                deadline: float) -> int:
    """``predict(images, batch_size)`` until ``deadline``: how a program runs many images."""
    done = 0
    while time.perf_counter() < deadline:
        done += len(classifier.predict(images, batch_size=batch_size))
    return done


def stream_async(classifier: DigitClassifier, batches: Sequence[np.ndarray],
                 deadline: float) -> int:
    """Keep ``predict_async`` fed with ``batches`` until ``deadline``; images finished."""
    done = [0]

    def count(result) -> None:
        done[0] += len(result.probabilities)

    index = 0
    while time.perf_counter() < deadline:
        classifier.predict_async(batches[index % len(batches)], count)
        index += 1
    classifier.wait_all()
    return done[0]


_PATH_NAMES = {"sync": "synchronous predict, LATENCY hint",
               "async": "predict_async, THROUGHPUT hint"}


def measure_throughput(classifier: DigitClassifier, images: np.ndarray, batch_size: int,
                       effort: Effort,
                       throughput_twin: Callable[[], DigitClassifier] | None = None,
                       details: dict | None = None) -> dict:
    """Images/s at one batch size: a short warm-up window, then timed windows (repeats).

    With a ``throughput_twin`` (OpenVINO), its ``predict_async`` is tried too: the async queue
    pays a Python callback per job, so at small batches a plain loop can win. Both are tried
    briefly and the faster is kept, recorded in ``details["throughput_path"]``.
    """
    batches = _make_batches(images, batch_size)
    # What one predict call gets: at least 256 images and 8 batches (Keras' predict pays tens of
    # ms a call). Only the batches it needs are joined: a copy of all 64 would raise peak memory.
    needed = max(256, 8 * batch_size)
    chunk = np.concatenate(batches[: -(-needed // batch_size)])[:needed]
    classifier.warmup((batch_size,))
    paths: dict[str, Callable[[float], int]] = {
        "sync": lambda deadline: stream_sync(classifier, chunk, batch_size, deadline)}
    if throughput_twin is not None:
        paths["async"] = lambda deadline: stream_async(throughput_twin(), batches, deadline)
    chosen = "sync"
    if len(paths) > 1:
        trial = min(TRIAL_SECONDS, effort.throughput_seconds)
        rates = {}
        for name in ("async", "sync"):
            paths[name](time.perf_counter() + trial / 3)  # warm-up
            started = time.perf_counter()
            done = paths[name](started + trial)
            rates[name] = done / (time.perf_counter() - started)
        chosen = max(rates, key=rates.get)
        if details is not None:
            details.setdefault("throughput_path", {})[str(batch_size)] = _PATH_NAMES[chosen]
    stream = paths[chosen]
    stream(time.perf_counter() + min(0.2, effort.throughput_seconds))
    rates = []
    for _ in range(effort.throughput_repeats):
        started = time.perf_counter()
        done = stream(started + effort.throughput_seconds)
        rates.append(done / (time.perf_counter() - started))
    return _spread(rates)


def _make_batches(images: np.ndarray, batch_size: int, limit: int = 64) -> list[np.ndarray]:
    """Contiguous, writeable batches of test images (tiled when the set is smaller)."""
    if len(images) < batch_size:
        images = np.resize(images, (batch_size, *images.shape[1:]))
    count = max(1, min(limit, len(images) // batch_size))
    return [np.array(images[i * batch_size:(i + 1) * batch_size]) for i in range(count)]


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB (Linux: VmHWM, per process, unaffected by how
    it started; Windows: the peak working set; elsewhere getrusage), None where unknown
    (``edgedigits.system.peak_memory_mb``)."""
    return system.peak_memory_mb()

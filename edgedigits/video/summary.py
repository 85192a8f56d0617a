"""The end-of-run summary of a video run: per stream (:class:`Summary`) and, when several
sources run in one process, per stream and in total (:class:`StreamsSummary`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edgedigits.video.display import agrees


@dataclass
class BackendStats:
    name: str
    batches: int = 0
    digits: int = 0
    total_ms: float = 0.0

    def as_json(self) -> dict:
        return {"batches": self.batches, "digits": self.digits,
                "mean_inference_ms": round(self.total_ms / self.batches, 4) if self.batches
                else None}


@dataclass
class Summary:
    source: str
    status: str = "running"  # finished | lost | stopped | failed (could not be opened)
    frames: int = 0
    frames_with_digits: int = 0
    digits: int = 0
    agreements: int = 0
    seconds: float = 0.0
    backends: dict = field(default_factory=dict)
    stream: int | None = None  # its number when several sources run in one process
    error: str | None = None  # why a stream could not be opened
    latencies_ms: list = field(default_factory=list, repr=False)  # capture -> result, per frame

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def count(self, job, found: list[dict], names: list[str]) -> None:
        """Add one delivered frame."""
        self.frames += 1
        start = job.captured if job.captured is not None else job.started
        self.latencies_ms.append((time.perf_counter() - start) * 1000)
        if found:
            self.frames_with_digits += 1
            self.digits += len(found)
            self.agreements += sum(agrees(item, names) for item in found)
        for name, ms in job.inference_ms.items():
            stats = self.backends[name]
            stats.batches += 1
            stats.digits += len(found)
            stats.total_ms += ms

    def as_json(self) -> dict:
        data = {} if self.stream is None else {"stream": self.stream}
        data.update({"source": self.source, "status": self.status, "frames": self.frames,
                "frames_with_digits": self.frames_with_digits, "digits": self.digits,
                "seconds": round(self.seconds, 4), "fps": round(self.fps, 2),
                "backends": {name: stats.as_json() for name, stats in self.backends.items()}})
        if self.latencies_ms:
            data[LATENCY] = latency(self.latencies_ms)
        if self.error is not None:
            data["error"] = self.error
        if len(self.backends) > 1:
            data["agreement"] = round(self.agreements / self.digits, 4) if self.digits else None
        return data

    def text(self) -> str:
        if self.error is not None:
            return f"{self.source}: {self.status}: {self.error}"
        parts = [f"{self.source}: {self.status} after {self.frames} frames in "
                 f"{self.seconds:.2f} s = {self.fps:.1f} frames/s, "
                 f"{self.digits} digits in {self.frames_with_digits} frames"]
        for name, stats in self.backends.items():
            mean = stats.as_json()["mean_inference_ms"]
            parts.append(f"{name}: mean inference {mean:.3f} ms per frame" if mean is not None
                         else f"{name}: no inference")
        if len(self.backends) > 1 and self.digits:
            parts.append(f"agreement {self.agreements / self.digits:.1%}")
        return " | ".join(parts)


# The summary's latency: from the moment the capture thread read the frame (a replayed file's
# frame: when it was due) to its result's delivery, waiting in queues, the task's preparation,
# inference and waiting for the frames before it included.
LATENCY = "capture_to_result_ms"


def latency(values: list[float]) -> dict:
    """p50 and p99 of the frames' capture-to-result times."""
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}


LOST = ("lost", "failed")  # a stream that stopped delivering, or never opened


@dataclass
class StreamsSummary:
    """Several streams read in one process: a row per stream and the total."""

    streams: list[Summary]
    seconds: float = 0.0  # wall time of the whole run, first frame to last
    # peak resident memory of each process preparing frames (edgedigits.video.preparers)
    workers_memory_mb: list = field(default_factory=list)

    @property
    def lost(self) -> list[Summary]:
        return [s for s in self.streams if s.status in LOST]

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict:
        every = [ms for s in self.streams for ms in s.latencies_ms]
        return {"streams": [s.as_json() for s in self.streams],
                "total": {"streams": len(self.streams), "lost": len(self.lost),
                          "frames": self.frames,
                          "frames_with_digits": sum(s.frames_with_digits for s in self.streams),
                          "digits": sum(s.digits for s in self.streams),
                          "seconds": round(self.seconds, 4), "fps": round(self.fps, 2),
                          LATENCY: latency(every) if every else None,
                          "workers": len(self.workers_memory_mb),
                          "workers_peak_memory_mb": [None if mb is None else round(mb, 1)
                                                     for mb in self.workers_memory_mb]}}

    def text(self) -> str:
        lines = [f"stream {s.stream}: {s.text()}" for s in self.streams]
        total = self.as_json()["total"]
        lost = f", {total['lost']} lost" if total["lost"] else ""
        lines.append(f"total: {len(self.streams)} streams{lost}, {self.frames} frames in "
                     f"{self.seconds:.2f} s = {self.fps:.1f} frames/s, {total['digits']} digits "
                     f"in {total['frames_with_digits']} frames")
        return "\n".join(lines)

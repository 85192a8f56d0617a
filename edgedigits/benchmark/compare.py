"""A run's figures beside a saved earlier report's (``--baseline FILE``), with the ratio.

Both benchmarks take ``--baseline``: ``infer/benchmark.py`` its own ``benchmark.json``,
``infer/benchmark_video.py`` the JSON it wrote with ``--output``. Every figure is printed as
*now*, *baseline* and *now / baseline* (so > 1 means more: faster for frames/s and
images/s, slower for µs and ms). Nothing is judged: timings on a shared machine move; the
ratio says by how much. A file that is missing, not JSON, or another kind of report is one
line (:class:`~edgedigits.errors.UserError`, exit status 2), before anything is measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edgedigits.errors import UserError

BENCHMARK = "infer/benchmark.py"
VIDEO = "infer/benchmark_video.py"
_WHAT = {BENCHMARK: "a benchmark.json of infer/benchmark.py",
         VIDEO: "a report of infer/benchmark_video.py --output"}


def report_kind(data) -> str | None:
    """Which command wrote ``data``: BENCHMARK, VIDEO, or None."""
    if isinstance(data, dict) and isinstance(data.get("rows"), list) and all(
            isinstance(row, dict) and "variant" in row and "status" in row
            for row in data["rows"]):
        return BENCHMARK
    if isinstance(data, dict) and data and all(
            isinstance(mode, dict) and "fps_median" in mode for mode in data.values()):
        return VIDEO
    return None


def read_baseline(path: str | Path, kind: str) -> dict:
    """The saved report at ``path``, checked to be of ``kind`` (BENCHMARK or VIDEO)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--baseline {path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"--baseline {path}: is a folder, not a saved report") from None
    except UnicodeDecodeError:
        raise UserError(f"--baseline {path}: not JSON (not even text)") from None
    except json.JSONDecodeError as error:
        raise UserError(f"--baseline {path}: not JSON ({error.msg}, line {error.lineno})"
                        ) from None
    except OSError as error:
        raise UserError(f"--baseline {path}: cannot read it ({error.strerror})") from None
    found = report_kind(data)
    if found != kind:
        instead = f" but {_WHAT[found]}" if found else ""
        raise UserError(f"--baseline {path}: not {_WHAT[kind]}{instead}")
    return data


# --------------------------------------------------------------------------------------------
# Figures side by side


@dataclass(frozen=True)
class Figure:
    """One figure of a run beside the baseline's (None: not measured there)."""

    name: str
    now: float | None
    baseline: float | None
    unit: str = ""  # "%" for a rate 0-1 shown as a percentage

    @property
    def ratio(self) -> float | None:
        if self.now is None or self.baseline is None or self.baseline == 0:
            return None
        return self.now / self.baseline

    def as_json(self) -> dict:
        ratio = self.ratio
        return {"figure": self.name, "now": self.now, "baseline": self.baseline,
                "ratio": None if ratio is None else round(ratio, 4)}


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "%":
        return f"{100 * value:.2f} %"
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def figure_lines(figures: list[Figure], indent: str = "  ") -> list[str]:
    """Aligned lines: figure, now, baseline, now / baseline."""
    cells = [(f.name, _show(f.now, f.unit), _show(f.baseline, f.unit),
              "—" if f.ratio is None else f"{f.ratio:.3f}") for f in figures]
    header = ("figure", "now", "baseline", "now/baseline")
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(4)]
    return [indent + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
            for row in [header, *cells]]


# --------------------------------------------------------------------------------------------
# infer/benchmark.py: rows matched by variant and backend


def _row_figures(now: dict, then: dict, batch_sizes: list[str], per_second: str
                 ) -> list[Figure]:
    def pair(name, key, unit=""):
        return Figure(name, _number(now.get(key)), _number(then.get(key)), unit)

    figures = [pair("accuracy", "accuracy", "%"),
               pair("agreement with Keras", "agreement_with_keras", "%"),
               pair("p50 µs", "latency_us_p50"), pair("p90 µs", "latency_us_p90"),
               pair("p99 µs", "latency_us_p99")]
    for batch in batch_sizes:
        figures.append(Figure(f"{per_second} @{batch}",
                              _number((now.get("throughput_ips") or {}).get(batch)),
                              _number((then.get("throughput_ips") or {}).get(batch))))
    figures += [Figure("size MB", *(None if r.get("size_bytes") is None
                                    else r["size_bytes"] / 1e6 for r in (now, then))),
                pair("load s", "load_seconds"), pair("peak RSS MB", "peak_rss_mb")]
    return [f for f in figures if f.now is not None or f.baseline is not None]


def _row_key(row: dict) -> tuple[str, str]:
    return row.get("variant"), row.get("backend")


def compare_benchmarks(report: dict, baseline: dict) -> dict:
    """Each row of ``report`` beside the baseline's row of the same variant and backend.

    Returns {"notes": [...], "rows": [{"variant", "backend", "status", "figures": [Figure]}],
    "only_in_baseline": [variant, ...]}.
    """
    notes = []
    if report.get("model_type") != baseline.get("model_type"):
        notes.append(f"the baseline measured a {baseline.get('model_type') or 'digit model'}, "
                     f"this run a {report.get('model_type')}: accuracies are not comparable")
    if report.get("quick") or baseline.get("quick"):
        which = [name for name, r in (("this run", report), ("the baseline", baseline))
                 if r.get("quick")]
        notes.append(f"{' and '.join(which)} ran --quick: the timings are not a measurement")
    then_rows = {_row_key(row): row for row in baseline["rows"]}
    batch_sizes = [str(b) for r in (report, baseline)
                   for b in (r.get("settings") or {}).get("batch_sizes", [])]
    batch_sizes = list(dict.fromkeys(batch_sizes))
    per_second = (report.get("kind") or {}).get("throughput_unit", "images/s")
    rows = []
    for row in report["rows"]:
        key = _row_key(row)
        then = then_rows.get(key)
        entry = {"variant": row["variant"], "backend": row["backend"], "figures": []}
        if then is None:
            entry["status"] = "not in the baseline"
        elif row["status"] != "ok":
            entry["status"] = f"{row['status']} now: {row.get('note')}"
        elif then.get("status") != "ok":
            entry["status"] = f"{then.get('status')} in the baseline: {then.get('note')}"
        else:
            entry["status"] = "ok"
        if then is not None and row["status"] == "ok":
            entry["figures"] = _row_figures(row, then if then.get("status") == "ok" else {},
                                            batch_sizes, per_second)
        rows.append(entry)
    measured = {_row_key(row) for row in report["rows"]}
    only = [row.get("variant") for row in baseline["rows"] if _row_key(row) not in measured]
    return {"notes": notes, "rows": rows, "only_in_baseline": only}


def benchmark_comparison_lines(comparison: dict, path: str | Path) -> list[str]:
    lines = [f"Beside the baseline {path} (ratio = now / baseline):"]
    lines += [f"  note: {note}" for note in comparison["notes"]]
    for row in comparison["rows"]:
        title = f"{row['variant']} ({row['backend']})"
        if row["status"] != "ok":
            title += f": {row['status']}"
        lines.append(title)
        if row["figures"]:
            lines += figure_lines(row["figures"])
    if comparison["only_in_baseline"]:
        lines.append("in the baseline, not measured now: "
                     + ", ".join(comparison["only_in_baseline"]))
    return lines


def benchmark_comparison_json(comparison: dict, path: str | Path) -> dict:
    return {"file": str(path), "notes": comparison["notes"],
            "rows": [{**row, "figures": [f.as_json() for f in row["figures"]]}
                     for row in comparison["rows"]],
            "only_in_baseline": comparison["only_in_baseline"]}


# --------------------------------------------------------------------------------------------
# infer/benchmark_video.py: modes (jsonl, jsonl+save) matched by name

VIDEO_FIGURES = (("frames/s min", "fps_min", ""), ("frames/s median", "fps_median", ""),
                 ("frames/s max", "fps_max", ""),
                 ("digits read right", "digits_read_right", "%"),
                 ("detections right", "detections_right", "%"),
                 ("frames read exactly", "frames_read_exactly", "%"),
                 ("detections", "digits", ""),
                 ("inference ms per frame", "mean_inference_ms", ""))


def compare_videos(results: dict, baseline: dict) -> dict:
    """Each mode of ``results`` beside the baseline's mode of the same name.

    Returns {"notes": [...], "modes": {mode: [Figure] or None (not in the baseline)},
    "only_in_baseline": [mode, ...]}.
    """
    notes, modes = [], {}
    for mode, now in results.items():
        then = baseline.get(mode)
        if then is None:
            modes[mode] = None
            continue
        videos = now.get("video"), then.get("video")
        if (all(videos) and videos[0] != videos[1]) or now.get("frames") != then.get("frames"):
            notes.append(f"{mode}: the baseline measured another video "
                         f"({_video_text(then)}; now {_video_text(now)})")
        figures = [Figure(name, _number(now.get(key)), _number(then.get(key)), unit)
                   for name, key, unit in VIDEO_FIGURES]
        modes[mode] = [f for f in figures if f.now is not None or f.baseline is not None]
    return {"notes": notes, "modes": modes,
            "only_in_baseline": [mode for mode in baseline if mode not in results]}


def _video_text(mode: dict) -> str:
    video = mode.get("video")
    frames = f"{mode.get('frames')} frames"
    if not isinstance(video, dict):
        return frames + ", video not recorded"
    return frames + ", " + ", ".join(f"{key} {value}" for key, value in video.items())


def video_comparison_lines(comparison: dict, path: str | Path) -> list[str]:
    lines = [f"Beside the baseline {path} (ratio = now / baseline):"]
    lines += [f"  note: {note}" for note in comparison["notes"]]
    for mode, figures in comparison["modes"].items():
        if figures is None:
            lines.append(f"{mode}: not in the baseline")
            continue
        lines.append(mode)
        lines += figure_lines(figures)
    if comparison["only_in_baseline"]:
        lines.append("in the baseline, not measured now: "
                     + ", ".join(comparison["only_in_baseline"]))
    return lines


def video_comparison_json(comparison: dict, path: str | Path) -> dict[str, dict | None]:
    """Per mode: {"file", "notes", "figures": [{"figure", "now", "baseline", "ratio"}]}, or
    None for a mode the baseline does not have."""
    return {mode: None if figures is None else
            {"file": str(path), "notes": comparison["notes"],
             "figures": [f.as_json() for f in figures]}
            for mode, figures in comparison["modes"].items()}

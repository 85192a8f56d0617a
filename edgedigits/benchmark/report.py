"""The benchmark's report: one record per row, the issue's goals, and the table, Markdown and
chart written from them (benchmark.json / benchmark.md / benchmark.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedigits.benchmark.measure import LATENCY_BLOCKS
from edgedigits.benchmark.variants import Row
from edgedigits.files import atomic_path, ensure_writable_dir, staged_set, write_json, write_text
from edgedigits.tasks import Task as Kind
from edgedigits.tasks import kind_of


def keras_reference(rows: list[Row]) -> np.ndarray | None:
    for name in ("tf-predict", "tf-function"):
        for row in rows:
            if row.variant.name == name and row.status == "ok":
                return row.result["predictions"]
    return None


def row_record(row: Row, reference: np.ndarray | None, kind: Kind | None = None) -> dict:
    """The row for the report; answers (digits, numbers read) are compared with ``==``."""
    kind = kind or kind_of(None)
    variant = row.variant
    record = {
        "variant": variant.name,
        "backend": variant.backend,
        "label": variant.label,
        "precision": variant.precision,
        "status": row.status,
        "note": row.note,
        "user_error": row.user_error,
        "model_path": str(row.model_path) if row.model_path and not variant.is_peer else None,
    }
    if row.status != "ok":
        return record
    result = row.result
    latency = result["latency"]
    agreement = None
    if reference is not None:
        agreement = float(np.mean(result["predictions"] == reference))
    record.update({
        "executes": result["executes"],
        "accuracy": result["accuracy"],
        "agreement_with_keras": agreement,
        f"test_{kind.units}": result["tested"],
        "latency_us_p50": latency["p50"],
        "latency_us_p90": latency["p90"],
        "latency_us_p99": latency["p99"],
        "latency_us_mean": latency["mean"],
        "latency_us_min": latency["min"],
        "latency_calls": latency["calls"],
        "latency_us_p50_spread": latency["p50_blocks"],
        "throughput_ips": {batch: spread["median"]
                           for batch, spread in result["throughput"].items()},
        "throughput_ips_spread": result["throughput"],
        "size_bytes": result["size_bytes"],
        "import_seconds": result["import_seconds"],
        "load_seconds": result["load_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "tensorflow_imported": result["tensorflow_imported"],
        "details": result["details"],
    })
    return record


def _best_throughput(record: dict) -> float | None:
    values = list(record.get("throughput_ips", {}).values())
    return max(values) if values else None


def compute_goals(records: list[dict], kind: Kind | None = None) -> list[dict]:
    """The issues' goals for this machine, each with its measured value and met / not met: for
    the digit classifier speed, throughput and INT8 accuracy; for the number reader (issue 14)
    INT8 accuracy only (its latency is reported beside the digit classifier's, not judged)."""
    kind = kind or kind_of(None)
    ok = {r["variant"]: r for r in records if r["status"] == "ok"}
    goals = []

    def goal(text: str, value: float | None, target: float, unit: str,
             higher_is_better: bool = True) -> None:
        if value is None:
            return
        met = value >= target if higher_is_better else value <= target
        goals.append({"goal": text, "measured": value, "target": target, "unit": unit,
                      "met": bool(met)})

    int8 = ok.get("ov-int8")
    if int8 and kind.speed_goals:
        p50 = int8["latency_us_p50"]
        goal("OpenVINO INT8 batch-1 p50", p50, 30.0, "µs", higher_is_better=False)
        if "tf-predict" in ok:
            goal("Keras predict p50 / OpenVINO INT8 p50", ok["tf-predict"]["latency_us_p50"] / p50,
                 300.0, "x")
        if "tf-function" in ok:
            goal("fastest native TF p50 / OpenVINO INT8 p50",
                 ok["tf-function"]["latency_us_p50"] / p50, 10.0, "x")
        goal("OpenVINO INT8 throughput (best batch size)", _best_throughput(int8), 150_000.0,
             "images/s")
        if "tf-predict" in ok:
            goal("OpenVINO INT8 / Keras predict throughput (best batch sizes)",
                 _best_throughput(int8) / _best_throughput(ok["tf-predict"]), 10.0, "x")
    if int8 and "ov-fp32" in ok:
        goal("INT8 accuracy drop vs FP32" + ("" if kind.speed_goals else f" ({kind.counts})"),
             100 * (ok["ov-fp32"]["accuracy"] - int8["accuracy"]), kind.int8_max_drop_pt, "pt",
             higher_is_better=False)
    if not kind.speed_goals:
        return goals
    openvino = [r for r in ok.values() if r["backend"] == "OpenVINO"]
    peers = [r for r in ok.values() if r["backend"] not in ("OpenVINO", "TensorFlow")]
    if openvino and peers:
        best_ov = min(openvino, key=lambda r: r["latency_us_p50"])
        best_peer = min(peers, key=lambda r: r["latency_us_p50"])
        goal(f"OpenVINO speed-up over the best peer at batch 1: {best_peer['variant']} p50 / "
             f"{best_ov['variant']} p50", best_peer["latency_us_p50"] / best_ov["latency_us_p50"],
             1.3, "x")
        best_ov = max(openvino, key=_best_throughput)
        best_peer = max(peers, key=_best_throughput)
        goal(f"OpenVINO speed-up over the best peer in throughput: {best_ov['variant']} / "
             f"{best_peer['variant']}", _best_throughput(best_ov) / _best_throughput(best_peer),
             1.3, "x")
    return goals


# --------------------------------------------------------------------------------------------
# Writing: table, JSON, Markdown, chart


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _size(value: int | None) -> str:
    return "—" if value is None else f"{value / 1e6:.2f} MB"


def _per_second(kind: Kind) -> str:
    return "img/s" if kind.unit == "image" else f"{kind.units}/s"


def report_kind(report: dict) -> Kind:
    """The kind of model a report measured (reports before the number reader: digits)."""
    return kind_of(report.get("model_type"))


def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table (shared by the terminal and Markdown)."""
    batch_sizes = report["settings"]["batch_sizes"]
    kind = report_kind(report)
    per_second = _per_second(kind)
    header = ["variant", "backend", "executes", kind.accuracy_header, "agree w/ Keras", "p50 µs",
              "p90 µs", "p99 µs", *[f"{per_second} @{b}" for b in batch_sizes], "size",
              "import s", "load s", "peak RSS MB"]
    cells = []
    for record in report["rows"]:
        if record["status"] != "ok":
            cells.append([record["variant"], record["backend"],
                          f"{record['status']}: {record['note']}"])
            continue
        agreement = record["agreement_with_keras"]
        cells.append([
            record["variant"], record["backend"], record["executes"],
            f"{100 * record['accuracy']:.2f} %",
            "—" if agreement is None else f"{100 * agreement:.2f} %",
            _fmt(record["latency_us_p50"], 1), _fmt(record["latency_us_p90"], 1),
            _fmt(record["latency_us_p99"], 1),
            *[_fmt(record["throughput_ips"].get(str(b))) for b in batch_sizes],
            _size(record["size_bytes"]), f"{record['import_seconds']:.2f}",
            f"{record['load_seconds']:.2f}",
            f"{record['peak_rss_mb']:.0f}",
        ])
    return header, cells


def format_table(report: dict) -> str:
    """A plain-text table for the terminal (skipped rows span the measured columns)."""
    header, cells = table_rows(report)
    full = [row for row in cells if len(row) == len(header)]
    widths = [max([len(header[i]), *(len(row[i]) for row in full)]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) if i >= 3 else h.ljust(w)
                       for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        if len(row) != len(header):
            lines.append("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2]]))
            continue
        lines.append("  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(lines)


def format_goals(report: dict, markdown: bool = False) -> list[str]:
    lines = []
    for goal in report["goals"]:
        digits = 1 if goal["unit"] in ("µs", "x") else (2 if goal["unit"] == "pt" else 0)
        comparison = "≤" if goal["unit"] in ("µs", "pt") else "≥"
        verdict = "met" if goal["met"] else "NOT met"
        verdict = f"**{verdict}**" if markdown else verdict.ljust(7)
        lines.append(f"{verdict}  {goal['goal']}: {_fmt(goal['measured'], digits)} "
                     f"{goal['unit']} (goal {comparison} {_fmt(goal['target'], digits)} "
                     f"{goal['unit']})")
    return lines


def spread_table(report: dict) -> list[str]:
    """Markdown rows showing the noise: p50 per block of calls, throughput per repeat."""
    batch_sizes = report["settings"]["batch_sizes"]
    lines = ["| variant | p50 µs per block (min / median / max) | "
             + " | ".join(f"{_per_second(report_kind(report))} @{b} (min – max)"
                          for b in batch_sizes) + " |",
             "|" + "---|" * (2 + len(batch_sizes))]
    for record in report["rows"]:
        if record["status"] != "ok":
            continue
        blocks = record["latency_us_p50_spread"]
        cells = [record["variant"],
                 f"{blocks['min']:,.1f} / {blocks['median']:,.1f} / {blocks['max']:,.1f}"]
        for batch in batch_sizes:
            spread = record["throughput_ips_spread"].get(str(batch))
            cells.append("—" if spread is None
                         else f"{spread['min']:,.0f} – {spread['max']:,.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def environment_lines(report: dict) -> list[str]:
    environment = report["environment"]
    isa = ", ".join(name for name, present in environment["isa"].items() if present) or "none"
    libraries = ", ".join(f"{name} {version}" for name, version in
                          environment["libraries"].items() if version)
    load = environment.get("load_average_start"), environment.get("load_average_end")
    return [
        f"CPU: {environment['cpu']} — {environment['physical_cores'] or '?'} physical / "
        f"{environment['logical_cores']} logical cores ({environment['usable_cores']} usable)",
        f"ISA: {isa}",
        f"Threads: {environment['threads']} for every runtime (OpenVINO INFERENCE_NUM_THREADS, "
        "TensorFlow intra-op, ONNX Runtime intra-op, LiteRT num_threads); "
        f"OpenVINO device {environment['device']}",
        f"Libraries: {libraries}; Python {environment['python']}",
        f"Load average (1/5/15 min) at start {load[0]}, at end {load[1]}",
    ]


def render_markdown(report: dict) -> str:
    header, cells = table_rows(report)
    kind = report_kind(report)
    tested = next((r[f"test_{kind.units}"] for r in report["rows"] if r["status"] == "ok"), None)
    if kind.peers:
        lines = ["# Benchmark: native TensorFlow vs OpenVINO (and peers)", ""]
    else:
        lines = [f"# Benchmark of the {kind.description}: native TensorFlow vs OpenVINO", ""]
    lines += [f"Model: {kind.description} (`{kind.model_type}`); test set: "
              f"{_fmt(tested)} {kind.test_set_text}.", ""]
    if report["quick"]:
        lines += ["> **Quick mode** (`--quick`): few iterations on a small subset. These numbers "
                  "check that the benchmark runs; they are not a measurement.", ""]
    lines += [f"Command: `{report['command']}`", ""]
    lines += [f"- {line}" for line in environment_lines(report)] + [""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in cells:
        if len(row) != len(header):
            row = [*row[:2], row[2], *[""] * (len(header) - 3)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += ["", "Latency: batch-1 calls, one different test "
              f"{kind.unit} each, after a warm-up; "
              "OpenVINO with the LATENCY hint. Throughput: the median of "
              f"{report['settings']['effort']['throughput_repeats']} timed windows per batch "
              "size; OpenVINO with the THROUGHPUT hint and an AsyncInferQueue (or its synchronous "
              "LATENCY path where that measured faster, see `details`). import s: importing "
              "the runtime library; load s: reading + compiling the model + its first answer. "
              "Each row ran in its own process (peak RSS is that process's).", ""]
    if report["goals"]:
        lines += ["## Goals", ""]
        lines += [f"- {line}" for line in format_goals(report, markdown=True)] + [""]
    lines += ["## Spread across repeats", "",
              f"Batch-1 calls are split into {LATENCY_BLOCKS} consecutive blocks; throughput is "
              f"timed {report['settings']['effort']['throughput_repeats']} times per batch size. "
              "A wide spread means the machine was busy.", ""]
    lines += [*spread_table(report), ""]
    lines += ["## Variants", ""]
    lines += [f"- `{r['variant']}` ({r['backend']}): {r['label']}" for r in report["rows"]]
    return "\n".join(lines) + "\n"


_BACKEND_COLOURS = {"TensorFlow": "#e8710a", "OpenVINO": "#1a73e8", "ONNX Runtime": "#7b1fa2",
                    "LiteRT": "#188038"}


def plot_report(report: dict, path: Path) -> Path:
    """Two panels a person can read at a glance: batch-1 latency and best throughput (log)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and edge boxes have no display
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    measured = [r for r in report["rows"] if r["status"] == "ok"]
    kind = report_kind(report)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.5 * len(measured) + 2.2),
                                         sharey=True)
    names = [r["variant"] for r in measured][::-1]
    records = measured[::-1]
    colours = [_BACKEND_COLOURS.get(r["backend"], "grey") for r in records]
    positions = np.arange(len(records))

    p50 = np.array([r["latency_us_p50"] for r in records])
    p99 = np.array([r["latency_us_p99"] for r in records])
    left.barh(positions, p50, color=colours)
    left.errorbar(p50, positions, xerr=[np.zeros_like(p50), p99 - p50], fmt="none",
                  ecolor="black", capsize=3, linewidth=1)
    for y, value, tail in zip(positions, p50, p99, strict=True):
        left.text(max(value, tail) * 1.25, y,
                  f"{value:,.0f} µs" if value >= 100 else f"{value:.1f} µs",
                  va="center", fontsize=8)
    left.set_xscale("log")
    left.set_xlim(right=max(p99.max(), p50.max()) * 12)
    left.set_title("Batch-1 latency, p50 (whisker: p99) — shorter is better")
    left.set_xlabel(f"µs per {kind.unit} (log scale)")
    left.set_yticks(positions, names)

    best = np.array([_best_throughput(r) for r in records])
    best_batch = [max(r["throughput_ips"], key=r["throughput_ips"].get) for r in records]
    right.barh(positions, best, color=colours)
    for y, value, batch in zip(positions, best, best_batch, strict=True):
        right.text(value * 1.08, y, f"{value:,.0f}/s (batch {batch})", va="center", fontsize=8)
    right.set_xscale("log")
    right.set_xlim(right=best.max() * 12)
    right.set_title("Throughput at the best batch size — longer is better")
    right.set_xlabel(f"{kind.units} per second (log scale)")

    backends = dict.fromkeys(r["backend"] for r in measured)
    figure.legend(handles=[Patch(color=_BACKEND_COLOURS.get(b, "grey"), label=b)
                           for b in backends], loc="lower center", ncol=len(backends),
                  frameon=False)
    environment = report["environment"]
    load = environment.get("load_average_start")
    title = "" if kind.peers else f"{kind.description.capitalize()} — "
    title += (f"{environment['cpu']}, {environment['threads']} threads per runtime"
             + (f", load average {load[0]:.1f} at start" if load else "")
             + (" — QUICK MODE, not a measurement" if report["quick"] else ""))
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 0.97))
    with atomic_path(path, suffix=".png") as staged:
        figure.savefig(staged, dpi=120)
    plt.close(figure)
    return path


def write_report(report: dict, output: Path) -> dict[str, Path]:
    """benchmark.json, benchmark.md and benchmark.png in ``output``, published as one set: a
    failure leaves the previous three, never a new json beside an old chart."""
    ensure_writable_dir(output)
    names = {"json": "benchmark.json", "markdown": "benchmark.md", "chart": "benchmark.png"}
    with staged_set(output, "benchmark", tuple(names.values())) as staging:
        write_json(staging / names["json"], report)
        write_text(staging / names["markdown"], render_markdown(report))
        if any(r["status"] == "ok" for r in report["rows"]):
            plot_report(report, staging / names["chart"])
        else:
            del names["chart"]
    return {kind: output / name for kind, name in names.items()}

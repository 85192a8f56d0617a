"""Conversion, step 6: the report of a conversion (``report.json``, ``report.md`` and the
table ``to_ir.py`` prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgedigits.conversion.verify import PARITY_MAX_ABS_DIFF, PARITY_MIN_AGREEMENT


@dataclass
class VariantResult:
    variant: str
    path: str
    size_bytes: int
    test_accuracy: float
    agreement_with_keras: float
    max_abs_diff: float
    seconds: float
    precision: str
    batch: str
    accuracy_drop_pt: float | None = None  # INT8 vs FP32, percentage points
    calibration_size: int | None = None
    quantization: str | None = None


@dataclass
class ConversionReport:
    source: dict
    settings: dict
    parity: dict
    variants: list[VariantResult] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    created: str = ""
    files: list[str] = field(default_factory=list)
    removed_stale: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("files")
        return data


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def summary_rows(report: ConversionReport) -> list[list[str]]:
    rows = [["variant", "size", "test accuracy", "agreement with Keras", "max abs diff", "time"]]
    for result in report.variants:
        accuracy = f"{result.test_accuracy:.2%}"
        if result.accuracy_drop_pt is not None:
            accuracy += f" ({-result.accuracy_drop_pt:+.2f} pt)"
        rows.append([
            result.variant, human_size(result.size_bytes), accuracy,
            f"{result.agreement_with_keras:.2%}", f"{result.max_abs_diff:.1e}",
            f"{result.seconds:.1f} s",
        ])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def report_markdown(report: ConversionReport) -> str:
    rows = summary_rows(report)
    table = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    table += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    parity = report.parity
    source_accuracy = report.source.get("test_accuracy")
    lines = [
        "# OpenVINO IR conversion report",
        "",
        f"Source: `{report.source['path']}` ({report.source['format']}, "
        f"arch `{report.source['arch']}`"
        + (f", Keras test accuracy {source_accuracy:.2%}" if source_accuracy is not None else "")
        + f"). Created {report.created}.",
        "",
        *table,
        "",
        f"Test accuracy on {report.settings['accuracy_images']} MNIST test images, executed with "
        "`INFERENCE_PRECISION_HINT=f32`. Agreement and max |diff| against the source model on "
        f"the first {report.settings['parity_images']} test images.",
        "",
        f"FP32 parity: {parity.get('agreement_with_keras', 0):.2%} top-1 agreement, max |softmax "
        f"difference| {parity.get('max_abs_diff', float('nan')):.2e} "
        f"(required ≥ {PARITY_MIN_AGREEMENT:.1%} and ≤ {PARITY_MAX_ABS_DIFF:.0e}).",
        "",
        f"IR contract: input {report.settings['input']}; output {report.settings['output']}; "
        f"batch {report.settings['batch']}.",
    ]
    int8 = next((result for result in report.variants if result.variant == "int8"), None)
    if int8 is not None:
        lines += [
            "",
            f"INT8: {int8.quantization}; drop against FP32 {int8.accuracy_drop_pt:.2f} pt "
            "(goal ≤ 0.10 pt).",
        ]
    lines += [
        "",
        f"OpenVINO {report.environment['openvino']}, {report.environment['cpu']}.",
    ]
    return "\n".join(lines) + "\n"

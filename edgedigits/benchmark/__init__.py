"""The benchmark: every model variant, measured the same way, each in a process of its own.

What is measured, per variant (one row): accuracy on the MNIST test set and agreement with the
Keras model; batch-1 latency (warm-up, then at least 1,000 single-image calls: p50/p90/p99/mean
in µs); throughput in images/s at each batch size; for the number reader the same on lines
rendered from MNIST test digits, accuracy = lines read exactly
(:mod:`edgedigits.tasks`); model file
size; load + compile time; peak resident memory. Every row runs a backend of the one runtime
interface (:mod:`edgedigits.runtime`), so what is measured is what classify, webcam and serve run.

Modules, each importing only those above it:

- :mod:`edgedigits.tasks` (shared with conversion and every reader) — what differs per kind
  of model;
- :mod:`.measure` — the measurement loops (latency, throughput, accuracy, peak memory);
- :mod:`.variants` — the rows: model file + registered backend + options;
- :mod:`.child` — one variant measured in its own process;
- :mod:`.report` — records, goals, table, Markdown, chart;
- :mod:`.run` — the parent: plan rows, environment, children, report data;
- :mod:`.compare` — a run's figures beside a saved earlier report's (``--baseline``), for this
  benchmark and ``infer/benchmark_video.py`` (imports none of the above).

Every timing is taken on this machine by this code; nothing is estimated or remembered.
"""

from edgedigits.benchmark.measure import FULL, QUICK, Effort, peak_rss_mb
from edgedigits.benchmark.report import (
    compute_goals,
    environment_lines,
    format_goals,
    format_table,
    render_markdown,
    write_report,
)
from edgedigits.benchmark.run import Settings, run_benchmark, usable_cores
from edgedigits.benchmark.variants import VARIANTS, VARIANTS_BY_NAME, Variant, parse_variant_names

__all__ = ["FULL", "QUICK", "VARIANTS", "VARIANTS_BY_NAME", "Effort", "Settings", "Variant",
           "compute_goals", "environment_lines", "format_goals", "format_table",
           "parse_variant_names", "peak_rss_mb", "render_markdown", "run_benchmark",
           "usable_cores", "write_report"]

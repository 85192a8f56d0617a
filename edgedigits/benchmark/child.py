"""The child process: load one variant, measure it, write one JSON result.

``python -m edgedigits.benchmark.child SPEC.json`` (started by :mod:`.run`). A process per
variant because peak memory is a property of a process, one runtime's thread pools must not slow
the next, and it proves the OpenVINO rows run without TensorFlow (``tensorflow_imported``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgedigits.benchmark.measure import (
    Effort,
    measure_latency,
    measure_throughput,
    peak_rss_mb,
    predict_all,
)
from edgedigits.benchmark.variants import VARIANTS_BY_NAME, import_runtime, open_variant
from edgedigits.errors import UserError
from edgedigits.tasks import kind_of


def _progress(message: str) -> None:
    print(f"progress: {message}", flush=True)


def measure_variant(spec: dict) -> dict:
    """Everything about one variant, in this process. ``spec`` comes from the parent."""
    effort = Effort(**spec["effort"])
    with np.load(spec["test_set"]) as test_set:
        images, labels = test_set["images"], test_set["labels"]
    variant = VARIANTS_BY_NAME[spec["variant"]]
    kind = kind_of(spec.get("model_type"))

    _progress("importing")
    started = time.perf_counter()
    import_runtime(variant)
    import_seconds = time.perf_counter() - started
    _progress("loading")
    started = time.perf_counter()
    opened = open_variant(variant, Path(spec["model_path"]), spec["device"], spec["threads"],
                          accept=(kind.model_type,))
    classifier = opened.classifier
    classifier.infer_single()  # loaded = read + compile + the first answer, for every runtime
    load_seconds = time.perf_counter() - started
    details = dict(classifier.details)
    twin = opened.throughput_classifier if opened.has_throughput_twin else None
    try:
        _progress("accuracy")
        predicted = predict_all(classifier, images, kind.answers)
        np.save(spec["predictions"], predicted)
        _progress("batch-1 latency")
        classifier.warmup((1,))
        latency = measure_latency(classifier, images, effort)
        throughput = {}
        for batch_size in spec["batch_sizes"]:
            _progress(f"throughput, batch {batch_size}")
            throughput[str(batch_size)] = measure_throughput(
                classifier, images, batch_size, effort, twin, details)
    finally:
        opened.close()
    details.update(classifier.details)
    return {
        "variant": variant.name,
        "executes": classifier.precision,
        "accuracy": float(np.mean(predicted == labels)),
        "tested": len(labels),
        "latency": latency,
        "throughput": throughput,
        "import_seconds": import_seconds,
        "load_seconds": load_seconds,
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "details": details,
    }


def main(argv: Sequence[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    try:
        result = measure_variant(spec)
    except UserError as error:
        result = {"variant": spec["variant"], "error": str(error), "user_error": True}
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

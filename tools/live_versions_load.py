"""Publish new versions of ``digits`` while clients load the server: what the clients see.

    python tools/live_versions_load.py --model models/ir/int8/model.xml \\
        --also models/ir/fp32/model.xml --versions 3 --seconds 40 --concurrency 32

Starts ``infer/serve.py`` on a new model repository (a temporary folder) holding ``--model`` as
version 1, loads it with ``wrk`` (one-image JSON requests, the serving benchmark's) and, during
the run, publishes ``--versions`` new versions (``--model`` and ``--also`` in turn) as
conversion does (``model_repository.publish_version``), evenly spread; then the same run with
nothing published, for comparison (``--no-baseline`` skips it). Prints requests, failed
(non-2xx and socket errors), p50 / p99 / max latency, and each version's load time from the
server's log. Needs ``wrk`` (apt-get install wrk).
"""

from __future__ import annotations

import re
import tempfile
import threading
import time
from pathlib import Path

from edgedigits import cli, model_repository
from edgedigits.errors import UserError
from edgedigits.serving import loadtest

LOADED = re.compile(r"version (\d+) loaded in ([\d.]+) s")


def one_run(irs: list[Path], versions: int, seconds: float, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="live-versions-") as folder:
        repository = Path(folder)
        model_repository.publish_version(irs[0], repository)
        server = loadtest.RunningServer(["--model", str(repository / model_repository.MODEL_NAME),
                                         "--model-version-policy", "latest 1"])
        try:
            url = f"http://127.0.0.1:{server.http_port}/v2/models/digits/infer"
            body = loadtest.json_body(loadtest.sample_images(1))
            headers = {"Content-Type": "application/json"}
            loadtest.run_wrk(url, body, headers, concurrency, 2)  # warm-up
            published = [0]

            def publish() -> None:
                began = time.monotonic()
                for index in range(versions):
                    time.sleep(max(0.0, began + seconds * (index + 0.5) / versions
                                   - time.monotonic()))
                    model_repository.publish_version(irs[(index + 1) % len(irs)], repository)
                    published[0] += 1

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            outcome = loadtest.run_wrk(url, body, headers, concurrency, seconds)
            publisher.join(timeout=60)
            time.sleep(1.5)  # the last version's lines
            loads = [float(match.group(2)) for line in server.lines
                     if (match := LOADED.search(line)) and match.group(1) != "1"]
            outcome.update(published=published[0], loads_s=loads,
                           peak_rss_mb=round(server.rss_mb("VmHWM")),
                           end_rss_mb=round(server.rss_mb()))
        finally:
            code = server.stop()
        outcome["exit"] = code
        return outcome


def main(argv: list[str] | None = None) -> int:
    parser = cli.ArgumentParser(prog="live_versions_load.py",
                                description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="an IR (model.xml): version 1")
    parser.add_argument("--also", type=Path, action="append", default=[],
                        help="more IRs to publish in turn (repeatable)")
    parser.add_argument("--versions", type=cli.positive_int, default=3,
                        help="versions published during the run (default 3)")
    parser.add_argument("--seconds", type=cli.positive_float, default=40.0,
                        help="length of each run (default 40)")
    parser.add_argument("--concurrency", type=cli.positive_int, default=32,
                        help="wrk connections, one request in flight on each (default 32)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run with nothing published")
    args = parser.parse_args(argv)
    irs = [args.model, *args.also]
    for ir in irs:
        if not (ir.is_file() and ir.with_suffix(".bin").is_file()):
            raise UserError(f"{ir}: not an OpenVINO IR (model.xml beside its model.bin)")
    runs = [("versions published", args.versions)] + ([] if args.no_baseline
                                                      else [("nothing published", 0)])
    print(f"wrk -c {args.concurrency}, {args.seconds:g} s, one-image JSON requests")
    print("| run | requests | failed | p50 / p99 / max ms | loads (s) | RSS end / peak MB |")
    print("|---|---|---|---|---|---|")
    failed = False
    for label, versions in runs:
        result = one_run(irs, versions, args.seconds, args.concurrency)
        loads = ", ".join(f"{value:.1f}" for value in result["loads_s"]) or "-"
        print(f"| {label} ({result['published']}) | {result['requests']:,} | {result['errors']} "
              f"| {result['p50_ms']:.1f} / {result['p99_ms']:.1f} / {result['max_ms']:.0f} "
              f"| {loads} | {result['end_rss_mb']} / {result['peak_rss_mb']} |", flush=True)
        failed |= bool(result["errors"]) or len(result["loads_s"]) != versions \
            or result["exit"] != 0
    return 1 if failed else 0


if __name__ == "__main__":
    cli.run(main, prog="live_versions_load.py")

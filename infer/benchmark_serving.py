"""Benchmark infer/serve.py as users load it: OpenVINO-backed against TensorFlow-backed.

    python infer/benchmark_serving.py                     # models/ best IR vs models/model.keras
    python infer/benchmark_serving.py --duration 10 --concurrency 1,8,32,64 --output /tmp/sb
    python infer/benchmark_serving.py --no-tf --scenarios grpc-1
    python infer/benchmark_serving.py --no-tf --workers 1,2   # serve.py --workers 1 and 2

Each server is started with serve.py on free ports (start-to-ready and resident memory are
measured), then loaded by existing generators: wrk for REST (JSON and binary tensors) and
tritonclient's asyncio gRPC client, at each concurrency, for one-image and 64-image requests.
Writes serving.json, serving.md and serving.png to models/benchmark/ (or --output) and prints
each speed goal of the serving issue as met or not. Needs `wrk` (apt-get install wrk).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

from edgedigits import contract, runtime
from edgedigits.cli import ArgumentParser, positive_float, run
from edgedigits.errors import UserError
from edgedigits.files import ensure_writable_dir, write_json, write_text
from edgedigits.serving import loadtest


def numbers(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"{flag}: expected numbers like 1,8,32,64, got {text!r}") from None
    if not values or min(values) <= 0:
        raise UserError(f"{flag} must be greater than 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="benchmark_serving.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="IR or models folder for the OpenVINO server "
                                        "(default: the best IR under models/)")
    parser.add_argument("--tf-model", help="Keras model for the TensorFlow server "
                                           "(default: model.keras in the models folder)")
    parser.add_argument("--no-tf", action="store_true", help="skip the TensorFlow server")
    parser.add_argument("--workers", default="1",
                        help="OpenVINO server process counts to measure, e.g. 1,2 (serve.py "
                             "--workers N; default: 1)")
    parser.add_argument("--concurrency", default="1,8,32,64", help="default: 1,8,32,64")
    parser.add_argument("--scenarios", default=",".join(s[0] for s in loadtest.SCENARIOS),
                        help="default: every one of " + ", ".join(s[0] for s in
                                                                  loadtest.SCENARIOS))
    parser.add_argument("--duration", type=positive_float, default=5.0,
                        help="seconds per point (default: 5)")
    parser.add_argument("--warmup", type=positive_float, default=1.0,
                        help="seconds of warm-up load before each point (default: 1)")
    parser.add_argument("--output", type=Path, default=None,
                        help="report folder (default: <models>/benchmark)")
    args = parser.parse_args(argv)

    concurrencies = numbers(args.concurrency, "--concurrency")
    wanted = [name.strip() for name in args.scenarios.split(",")]
    known = {s[0]: s for s in loadtest.SCENARIOS}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UserError(f"unknown scenario(s) {', '.join(unknown)}; choose from "
                        f"{', '.join(known)}")
    scenarios = [known[name] for name in wanted]
    ir = runtime.find_model(args.model, "openvino")
    servers = [("openvino" if count == 1 else f"openvino-{count}w",
                ["--model", str(ir), "--workers", str(count)])
               for count in numbers(args.workers, "--workers")]
    if not args.no_tf:
        keras = runtime.find_model(args.tf_model or args.model, "tensorflow")
        servers.append(("tensorflow", ["--backend", "tf", "--model", str(keras)]))
    output = ensure_writable_dir(args.output or contract.default_models_dir() / "benchmark")

    runs = []
    for name, server_args in servers:
        print(f"starting the {name} server ...", flush=True)
        server = loadtest.RunningServer(server_args)
        try:
            record = loadtest.ServerRun(name, server.command, round(server.ready_s, 3),
                                        round(server.rss_mb(), 1), 0.0, server.describe)
            print(f"  ready in {server.ready_s:.2f} s, {record.rss_mb:.0f} MB resident: "
                  f"{server.describe}", flush=True)
            record.measurements = loadtest.measure_server(
                name, server, scenarios, concurrencies, args.duration, args.warmup, print)
            record.rss_peak_mb = round(server.rss_mb("VmHWM"), 1)
        finally:
            server.stop()
        runs.append(record)

    settings = {"command": "python infer/benchmark_serving.py " + shlex.join(sys.argv[1:]),
                "machine": f"{platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} CPUs (shared)",
                "duration_s": args.duration, "warmup_s": args.warmup,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(output / "serving.json", {**loadtest.to_json(runs, settings),
                                         "goals": loadtest.goals(runs)})
    write_text(output / "serving.md", loadtest.markdown(runs, settings))
    loadtest.plot(runs, output / "serving.png")
    print()
    for goal in loadtest.goals(runs):
        print(f"{goal['met']:8} {goal['goal']}: {goal['measured']}")
    print(f"\nwrote {output / 'serving.json'}, serving.md, serving.png")
    return 0


if __name__ == "__main__":
    run(main)

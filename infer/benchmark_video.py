"""Measure the headless video pipeline: frames per second of webcam.py on a 640x480 video.

    python infer/benchmark_video.py                      # 1,000 generated frames, 3 repeats
    python infer/benchmark_video.py --output now.json    # ... and keep the figures
    python infer/benchmark_video.py --baseline now.json  # later: each figure beside them
    python infer/benchmark_video.py --video mine.mp4     # your own video instead
    python infer/benchmark_video.py --number 5743        # a written number: % of frames read
    python infer/benchmark_video.py --streams 1,2,4      # N streams in one process vs N processes

The generated video holds 1-4 MNIST test digits per frame, drawn dark onto paper with a
lighting gradient and grain and drifting across the page (needs MNIST: $MNIST_DIR). Each
repeat runs exactly what ``webcam.py --source VIDEO --no-display --jsonl out.jsonl`` runs
(edgedigits.video.pipeline: capture thread, segmentation, AsyncInferQueue), in this process, and
reports the rate the summary reports: frames delivered / seconds from the first frame to the
last. Model loading is outside the timing; video decoding is inside it.

On the generated video the digits are known (:mod:`edgedigits.video.synthetic`), so the last
run's ``--jsonl`` is also scored: *digits read right* (the video's digits found and read
right) and *detections right* (the detections that are a digit of the video read right; a
digit split in two lowers it). ``--baseline FILE`` (a report written earlier with
``--output``) prints every figure beside the baseline's with the ratio now / baseline.

``--number DIGITS`` generates instead a video of that number written with touching digits
(MNIST test digits 120 px tall, each overlapping the previous by 45 %) drifting across the
page, and also reports the share of frames whose digits, left to right, are that number.

``--streams 1,2,4`` measures several streams instead: for each N, ``webcam.py`` with the
generated video given N times as ``--source`` (one process, one model for all N streams), then
N separate single-stream ``webcam.py`` processes started together; every run is a real
subprocess, headless, with ``--summary-json``. Reported per N and per way: the aggregate
frames/s (all frames / the span from the first stream's first frame to the last one's last,
each process's start taken as its exit time minus its summary's seconds), the mean per-stream
frames/s, capture-to-result latency (from the capture thread reading the frame to its result's
delivery: the median of the streams' p50 and the worst stream's p99), CPU used (user + system
of the processes and their preparing processes, in cores: CPU seconds over the wall time from
their start to the last one's exit) and memory (the sum of the peak resident sets of every
process, preparing ones included). Model loading is outside the frames/s, inside CPU and
memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgedigits import cli
from edgedigits.benchmark import compare
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.errors import CommandFailed, UserError
from edgedigits.files import write_json
from edgedigits.tasks import kinds_for
from edgedigits.video import pipeline as video
from edgedigits.video import synthetic
from edgedigits.video.summary import LATENCY


def run_headless(args, source: Path, outputs: video.Outputs) -> video.Summary:
    """What webcam.py runs for ``--source SOURCE --no-display`` with these outputs."""
    if not args.verbose:
        video.quiet_opencv()
    outputs.check()
    classifier = cli.load_from_args(args, accept=kinds_for(video.reading_mode(None)))
    return video.run_source([classifier], str(source), outputs, verbose=args.verbose)


def webcam_command(args, source: Path, outputs: video.Outputs) -> str:
    """The webcam.py command line that runs what :func:`run_headless` runs."""
    words = ["--source", str(source), "--no-display", "--jsonl", outputs.jsonl]
    for flag, value in (("--model", args.model), ("--device", args.device),
                        ("--precision", args.precision), ("--threads", args.threads)):
        if value is not None:
            words += [flag, str(value)]
    words += ["--backend", args.backend] + (["--verbose"] if args.verbose else [])
    if outputs.save:
        words += ["--save", outputs.save]
    return "python infer/webcam.py " + " ".join(words)


def _digits(text: str) -> str:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected digits, got {text!r}")
    return text


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected stream counts like 1,2,4, got {text!r}")
    return counts


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="benchmark_video.py",
                            description="Frames per second and accuracy of the headless webcam "
                                        "pipeline.")
    parser.add_argument("--video", metavar="PATH", help="measure this video instead")
    parser.add_argument("--number", metavar="DIGITS", type=_digits,
                        help="generate a video of this number written with touching digits "
                             "and report the share of frames read exactly")
    parser.add_argument("--frames", type=positive_int, default=1000,
                        help="frames in the generated video (1000)")
    parser.add_argument("--scene-frames", type=positive_int, default=synthetic.FPS, metavar="N",
                        help="frames before the generated video shows new digits (%(default)s: "
                             "every second; 1: every frame, the most digits to read)")
    parser.add_argument("--streams", type=_counts, metavar="N,N,...",
                        help="measure N streams in one process against N single-stream "
                             "processes, for each N (e.g. 1,2,4)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per mode (3)")
    parser.add_argument("--save-video", action="store_true",
                        help="also measure with --save (encoding the annotated mp4)")
    parser.add_argument("--baseline", metavar="FILE",
                        help="a report this command wrote earlier with --output: print each "
                             "figure beside it with the ratio now / baseline")
    cli.add_data_dir_argument(parser)
    cli.add_output_argument(parser, "also write the results as JSON to this file")
    cli.add_json_argument(parser, "print the results as JSON instead of the table")
    cli.add_runtime_arguments(parser)
    return parser


def measure(args, video_path: Path, scratch: Path, described: dict,
            truth: list[list[dict]] | None) -> dict:
    """Each mode run ``--repeats`` times: its figures (accuracy from the last run's JSONL)."""
    jsonl, saved = scratch / "out.jsonl", str(scratch / "out.mp4")
    modes = {"jsonl": video.Outputs(jsonl=str(jsonl))}
    if args.save_video:
        modes["jsonl+save"] = video.Outputs(jsonl=str(jsonl), save=saved)
    results = {}
    for mode, outputs in modes.items():
        runs = [run_headless(args, video_path, outputs) for _ in range(args.repeats)]
        rates = [summary.fps for summary in runs]
        last = runs[-1]
        backend = next(iter(last.backends))
        result = results[mode] = {
            "command": webcam_command(args, video_path, outputs),
            "video": described,
            "frames": last.frames, "digits": last.digits,
            "fps_min": round(min(rates), 1), "fps_median": round(statistics.median(rates), 1),
            "fps_max": round(max(rates), 1),
            "mean_inference_ms": last.backends[backend].as_json()["mean_inference_ms"],
        }
        if args.number:
            result["frames_read_exactly"] = round(synthetic.frames_reading(jsonl, args.number), 4)
        if truth is not None:
            score = synthetic.score_jsonl(truth, jsonl)
            result.update({"video_digits": score.digits,
                           "digits_read_right": round(score.digits_read_right, 4),
                           "detections_right": round(score.detections_right, 4),
                           "right": score.right})
    return results


def _runtime_words(args) -> list[str]:
    words = []
    for flag, value in (("--model", args.model), ("--device", args.device),
                        ("--precision", args.precision), ("--threads", args.threads)):
        if value is not None:
            words += [flag, str(value)]
    return [*words, "--backend", args.backend]


def _run_processes(args, source_lists: list[list[str]], scratch: Path) -> dict:
    """One webcam.py per list of sources, all started together; their combined figures."""
    webcam = Path(__file__).resolve().parent / "webcam.py"
    running = []
    launched = time.perf_counter()
    for number, sources in enumerate(source_lists):
        summary = scratch / f"summary{number}.json"
        command = [sys.executable, str(webcam), "--no-display", "--summary-json", str(summary),
                   *[w for source in sources for w in ("--source", source)],
                   *_runtime_words(args)]
        errors = scratch / f"stderr{number}.txt"
        with open(errors, "wb") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        running.append((process, summary, errors))
    by_pid = {item[0].pid: item for item in running}
    cpu, rss_kb, spans, per_stream, frames, p50s, p99s = 0.0, 0, [], [], 0, [], []
    while by_pid:  # in the order they end, each one's end time as it happens
        pid, status, usage = os.wait4(-1, 0)  # this command starts no other child
        end = time.perf_counter()
        if pid not in by_pid:
            continue
        process, summary, errors = by_pid.pop(pid)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            error = errors.read_text(errors="replace").strip()
            raise CommandFailed(f"webcam.py exited {process.returncode}: "
                                f"{error.splitlines()[-1] if error else 'no message'}")
        report = json.loads(summary.read_text())
        rows = report.get("streams", [report])
        seconds = report["total"]["seconds"] if "streams" in report else report["seconds"]
        spans.append((end - seconds, end))
        per_stream += [row["fps"] for row in rows]
        p50s += [row[LATENCY]["p50"] for row in rows]
        p99s += [row[LATENCY]["p99"] for row in rows]
        frames += sum(row["frames"] for row in rows)
        cpu += usage.ru_utime + usage.ru_stime  # its preparing processes' included (waited)
        # ru_maxrss is the largest of the process and its children, not their sum: the
        # preparing processes' peaks, as the run measured them, are added
        rss_kb += usage.ru_maxrss + 1024 * sum(
            mb or 0 for mb in report.get("total", {}).get("workers_peak_memory_mb", []))
    last = max(e for _, e in spans)
    span = last - min(s for s, _ in spans)
    return {"processes": len(source_lists), "frames": frames,
            "fps_total": round(frames / span, 1),
            "fps_per_stream": round(statistics.mean(per_stream), 1),
            "fps_per_stream_min": round(min(per_stream), 1),
            "capture_to_result_p50_ms": round(statistics.median(p50s), 2),
            "capture_to_result_p99_ms": round(max(p99s), 2),
            "seconds": round(span, 3), "wall_seconds": round(last - launched, 3),
            "cpu_cores": round(cpu / (last - launched), 2),
            "memory_mb": round(rss_kb / 1024, 1)}


def measure_streams(args, video_path: Path, scratch: Path, described: dict) -> dict:
    """For each N of ``--streams``: N streams in one process, then N separate processes."""
    rows = {}
    for count in args.streams:
        one = _run_processes(args, [[str(video_path)] * count], scratch)
        separate = _run_processes(args, [[str(video_path)]] * count, scratch)
        rows[str(count)] = {
            "video": described, "streams": count, "one_process": one, "separate": separate,
            "command": "python infer/webcam.py " + " ".join(
                [w for _ in range(count) for w in ("--source", str(video_path))]
                + ["--no-display", *_runtime_words(args)]),
            "ratio_fps": round(one["fps_total"] / separate["fps_total"], 2),
            "ratio_memory": round(one["memory_mb"] / separate["memory_mb"], 2)}
    return rows


def print_streams_table(rows: dict) -> None:
    columns = f"{'fps':>6} {'/stream':>7} {'p50 ms':>6} {'p99 ms':>6} {'CPU':>4} {'MB':>5}"
    print(f"{'':>7} | {'one process':<40} | {'N processes':<40} |")
    print(f"{'':>7} | {'':>14} capture to result {'':>7} | {'':>14} capture to result "
          f"{'':>7} |")
    print(f"{'streams':>7} | {columns} | {columns} | {'fps x':>5} {'mem x':>5}")
    for row in rows.values():
        cells = [f"{way['fps_total']:>6} {way['fps_per_stream']:>7} "
                 f"{way['capture_to_result_p50_ms']:>6} {way['capture_to_result_p99_ms']:>6} "
                 f"{way['cpu_cores']:>4} {way['memory_mb']:>5}"
                 for way in (row["one_process"], row["separate"])]
        print(f"{row['streams']:>7} | {cells[0]} | {cells[1]} | {row['ratio_fps']:>5} "
              f"{row['ratio_memory']:>5}")


def print_table(results: dict, number: str | None) -> None:
    print(f"{'mode':<11} {'frames':>6} {'digits':>6} {'fps min':>8} {'median':>8} {'max':>8} "
          f"{'infer ms':>8}")
    for mode, r in results.items():
        # No digit in the video means no inference ran: None, shown as "-".
        infer_ms = "-" if r["mean_inference_ms"] is None else r["mean_inference_ms"]
        print(f"{mode:<11} {r['frames']:>6} {r['digits']:>6} {r['fps_min']:>8} "
              f"{r['fps_median']:>8} {r['fps_max']:>8} {infer_ms:>8}")
        if "frames_read_exactly" in r:
            print(f"{'':<11} {number} read exactly in {r['frames_read_exactly']:.1%} "
                  f"of the frames")
        if "digits_read_right" in r:
            print(f"{'':<11} digits read right {r['digits_read_right']:.1%} "
                  f"({r['right']} of the video's {r['video_digits']}), detections right "
                  f"{r['detections_right']:.1%} ({r['right']} of {r['digits']})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.streams and (args.baseline or args.number or args.save_video):
        raise UserError("--streams measures the generated or --video video alone: not with "
                        "--baseline, --number or --save-video")
    baseline = compare.read_baseline(args.baseline, compare.VIDEO) if args.baseline else None
    with tempfile.TemporaryDirectory(prefix="edgedigits-video-") as scratch:
        scratch = Path(scratch)
        truth = None
        if args.video:
            video_path = Path(args.video)
            described = {"file": str(video_path)}
        elif args.number:
            video_path = synthetic.make_number_video(scratch / "number.mp4", args.frames,
                                                     args.number, data_dir=args.data_dir)
            described = {"generated": f"number {args.number}"}
        else:
            video_path = scratch / "digits.mp4"
            truth = synthetic.make_video(video_path, args.frames, data_dir=args.data_dir,
                                         scene_frames=args.scene_frames)
            described = {"generated": "digits apart", "seed": 0,
                         "scene_frames": args.scene_frames}
        if args.streams:
            results = measure_streams(args, video_path, scratch, described)
        else:
            results = measure(args, video_path, scratch, described, truth)
    if args.output:
        write_json(args.output, results)
    if args.streams:
        if args.json:
            print(cli.to_json(results))
        else:
            print_streams_table(results)
        return 0
    comparison = compare.compare_videos(results, baseline) if baseline is not None else None
    if args.json:
        if comparison is not None:
            beside = compare.video_comparison_json(comparison, args.baseline)
            results = {mode: {**figures, "baseline": beside[mode]}
                       for mode, figures in results.items()}
        print(cli.to_json(results))
        return 0
    print_table(results, args.number)
    if comparison is not None:
        print()
        for line in compare.video_comparison_lines(comparison, args.baseline):
            print(line)
    return 0


if __name__ == "__main__":
    run(main)

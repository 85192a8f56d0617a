"""Measure the headless video pipeline: frames per second of webcam.py on a 640x480 video.

    python infer/benchmark_video.py                      # 1,000 generated frames, 3 repeats
    python infer/benchmark_video.py --video mine.mp4     # your own video instead

The generated video holds 1-4 MNIST test digits per frame, drawn dark onto paper with a
lighting gradient and grain and drifting across the page (needs MNIST: $MNIST_DIR). Each
repeat runs exactly what ``webcam.py --source VIDEO --no-display --jsonl out.jsonl`` runs
(edgedigits.video: capture thread, segmentation, AsyncInferQueue), in this process, and
reports the rate the summary reports: frames delivered / seconds from the first frame to the
last. Model loading is outside the timing; video decoding is inside it.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgedigits import cli, runtime, video
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.data import load_mnist
from edgedigits.errors import UserError
from edgedigits.files import write_json

WIDTH, HEIGHT, FPS = 640, 480, 30
DIGIT_SIDE = 110


def make_video(path: Path, frames: int, seed: int = 0, data_dir: str | None = None) -> Path:
    """A 640x480 mp4 of 1-4 handwritten digits per frame on paper-like backgrounds."""
    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    paper = (195 + 40 * cols / WIDTH - 25 * rows / HEIGHT)[..., None]
    paper = paper * np.array([0.93, 0.98, 1.0], np.float32)
    grain = [rng.normal(0, 5, paper.shape).astype(np.float32) for _ in range(8)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise UserError(f"cannot write {path}")
    for index in range(frames):
        scene_number = index // FPS  # a new set of digits every second
        count = 1 + scene_number % 4
        canvas = paper.copy()
        for k in range(count):
            digit = mnist.x_test[(scene_number * 4 + k) % len(mnist.x_test)]
            ink = cv2.resize(digit, (DIGIT_SIDE, DIGIT_SIDE), interpolation=cv2.INTER_CUBIC)
            ink = ink.astype(np.float32)[..., None] / 255.0
            x = 25 + 150 * k + index % FPS
            y = 150 + int(20 * np.sin(index / 9 + k))
            region = canvas[y : y + DIGIT_SIDE, x : x + DIGIT_SIDE]
            canvas[y : y + DIGIT_SIDE, x : x + DIGIT_SIDE] = region * (1 - ink) + 35 * ink
        canvas += grain[index % len(grain)]
        writer.write(cv2.GaussianBlur(np.clip(canvas, 0, 255).astype(np.uint8), (3, 3), 0))
    writer.release()
    return path


def run_headless(args, source: Path, outputs: video.Outputs) -> video.Summary:
    """What webcam.py runs for ``--source SOURCE --no-display`` with these outputs."""
    if not args.verbose:
        video.quiet_opencv()
    outputs.check()
    classifier = runtime.load_from_args(args)
    video.warm_up([classifier], roi=False, max_digits=video.DEFAULT_MAX_DIGITS,
                  verbose=args.verbose)
    return video.run_pipeline(video.Capture(str(source)), [classifier], outputs)


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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="benchmark_video.py",
                            description="Frames per second of the headless webcam pipeline.")
    parser.add_argument("--video", metavar="PATH", help="measure this video instead")
    parser.add_argument("--frames", type=positive_int, default=1000,
                        help="frames in the generated video (1000)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs per mode (3)")
    parser.add_argument("--save-video", action="store_true",
                        help="also measure with --save (encoding the annotated mp4)")
    cli.add_data_dir_argument(parser)
    cli.add_output_argument(parser, "also write the results as JSON to this file")
    cli.add_json_argument(parser, "print the results as JSON instead of the table")
    runtime.add_runtime_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="edgedigits-video-") as scratch:
        scratch = Path(scratch)
        video_path = Path(args.video) if args.video else make_video(
            scratch / "digits.mp4", args.frames, data_dir=args.data_dir)
        jsonl, saved = str(scratch / "out.jsonl"), str(scratch / "out.mp4")
        modes = {"jsonl": video.Outputs(jsonl=jsonl)}
        if args.save_video:
            modes["jsonl+save"] = video.Outputs(jsonl=jsonl, save=saved)
        results = {}
        for mode, outputs in modes.items():
            runs = [run_headless(args, video_path, outputs) for _ in range(args.repeats)]
            rates = [summary.fps for summary in runs]
            last = runs[-1]
            backend = next(iter(last.backends))
            results[mode] = {
                "command": webcam_command(args, video_path, outputs),
                "frames": last.frames, "digits": last.digits,
                "fps_min": round(min(rates), 1), "fps_median": round(statistics.median(rates), 1),
                "fps_max": round(max(rates), 1),
                "mean_inference_ms": last.backends[backend].as_json()["mean_inference_ms"],
            }
    if args.output:
        write_json(args.output, results)
    if args.json:
        print(cli.to_json(results))
        return 0
    print(f"{'mode':<11} {'frames':>6} {'digits':>6} {'fps min':>8} {'median':>8} {'max':>8} "
          f"{'infer ms':>8}")
    for mode, r in results.items():
        # No digit in the video means no inference ran: None, shown as "-".
        infer_ms = "-" if r["mean_inference_ms"] is None else r["mean_inference_ms"]
        print(f"{mode:<11} {r['frames']:>6} {r['digits']:>6} {r['fps_min']:>8} "
              f"{r['fps_median']:>8} {r['fps_max']:>8} {infer_ms:>8}")
    return 0


if __name__ == "__main__":
    run(main)

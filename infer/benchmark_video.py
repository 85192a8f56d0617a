"""Measure the headless video pipeline: frames per second of webcam.py on a 640x480 video.

    python infer/benchmark_video.py                      # 1,000 generated frames, 3 repeats
    python infer/benchmark_video.py --video mine.mp4     # your own video instead
    python infer/benchmark_video.py --number 5743        # a written number: % of frames read

The generated video holds 1-4 MNIST test digits per frame, drawn dark onto paper with a
lighting gradient and grain and drifting across the page (needs MNIST: $MNIST_DIR). Each
repeat runs exactly what ``webcam.py --source VIDEO --no-display --jsonl out.jsonl`` runs
(edgedigits.video.pipeline: capture thread, segmentation, AsyncInferQueue), in this process, and
reports the rate the summary reports: frames delivered / seconds from the first frame to the
last. Model loading is outside the timing; video decoding is inside it.

``--number DIGITS`` generates instead a video of that number written with touching digits
(MNIST test digits 120 px tall, each overlapping the previous by 45 %) drifting across the
page, and also reports the share of frames whose digits, left to right, are that number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np

from edgedigits import cli, runtime
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.data import render
from edgedigits.data.mnist import load_mnist
from edgedigits.errors import UserError
from edgedigits.files import write_json
from edgedigits.video import pipeline as video

WIDTH, HEIGHT, FPS = 640, 480, 30
DIGIT_SIDE = 110


def make_video(path: Path, frames: int, seed: int = 0, data_dir: str | None = None) -> Path:
    """A 640x480 mp4 of 1-4 handwritten digits per frame on paper (edgedigits.data.render)."""
    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise UserError(f"cannot write {path}")
    for index in range(frames):
        scene_number = index // FPS  # a new set of digits every second
        count = 1 + scene_number % 4
        digits = [mnist.x_test[(scene_number * 4 + k) % len(mnist.x_test)] for k in range(count)]
        positions = [(25 + 150 * k + index % FPS, 150 + int(20 * np.sin(index / 9 + k)))
                     for k in range(count)]
        writer.write(render.paper_scene(digits, positions, (HEIGHT, WIDTH), DIGIT_SIDE, rng))
    writer.release()
    return path


NUMBER_DIGIT_SIDE = 120
NUMBER_STEP = 0.55  # of the digit's side: neighbours' ink touches or overlaps


def make_number_video(path: Path, frames: int, number: str,
                      data_dir: str | None = None) -> Path:
    """A 640x480 mp4 of ``number`` written with touching MNIST test digits, drifting."""
    mnist = load_mnist(data_dir)
    rng = np.random.default_rng(0)
    digits = [mnist.x_test[np.flatnonzero(mnist.y_test == int(c))[k]] for k, c in enumerate(number)]
    step = int(NUMBER_STEP * NUMBER_DIGIT_SIDE)
    if 100 + step * (len(number) - 1) + NUMBER_DIGIT_SIDE > WIDTH:
        raise UserError(f"--number {number}: at most {(WIDTH - 220) // step + 1} digits fit")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise UserError(f"cannot write {path}")
    for index in range(frames):
        left, top = 60 + int(40 * np.sin(index / 15)), 170 + int(15 * np.sin(index / 11))
        positions = [(left + step * k, top + 5 * (k % 2)) for k in range(len(digits))]
        writer.write(render.paper_scene(digits, positions, (HEIGHT, WIDTH), NUMBER_DIGIT_SIDE,
                                        rng))
    writer.release()
    return path


def frames_reading(jsonl: Path, number: str) -> float:
    """Share of the frames in a ``--jsonl`` file whose digits, left to right, are ``number``."""
    lines = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    read = ["".join(str(d["digit"]) for d in sorted(line["detections"], key=lambda d: d["box"][0]))
            for line in lines]
    return sum(text == number for text in read) / max(len(read), 1)


def run_headless(args, source: Path, outputs: video.Outputs) -> video.Summary:
    """What webcam.py runs for ``--source SOURCE --no-display`` with these outputs."""
    if not args.verbose:
        video.quiet_opencv()
    outputs.check()
    return video.run_source(args, str(source), outputs)


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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="benchmark_video.py",
                            description="Frames per second of the headless webcam pipeline.")
    parser.add_argument("--video", metavar="PATH", help="measure this video instead")
    parser.add_argument("--number", metavar="DIGITS", type=_digits,
                        help="generate a video of this number written with touching digits "
                             "and report the share of frames read exactly")
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
        if args.video:
            video_path = Path(args.video)
        elif args.number:
            video_path = make_number_video(scratch / "number.mp4", args.frames, args.number,
                                           data_dir=args.data_dir)
        else:
            video_path = make_video(scratch / "digits.mp4", args.frames, data_dir=args.data_dir)
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
            if args.number:
                results[mode]["frames_read_exactly"] = round(frames_reading(Path(jsonl),
                                                                            args.number), 4)
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
        if "frames_read_exactly" in r:
            print(f"{'':<11} {args.number} read exactly in {r['frames_read_exactly']:.1%} "
                  f"of the frames")
    return 0


if __name__ == "__main__":
    run(main)

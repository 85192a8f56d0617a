"""Measure the headless video pipeline: frames per second of webcam.py on a 640x480 video.

    python infer/benchmark_video.py                      # 1,000 generated frames, 3 repeats
    python infer/benchmark_video.py --output now.json    # ... and keep the figures
    python infer/benchmark_video.py --baseline now.json  # later: each figure beside them
    python infer/benchmark_video.py --video mine.mp4     # your own video instead
    python infer/benchmark_video.py --number 5743        # a written number: % of frames read

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
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from edgedigits import cli
from edgedigits.benchmark import compare
from edgedigits.cli import ArgumentParser, positive_int, run
from edgedigits.files import write_json
from edgedigits.tasks import kinds_for
from edgedigits.video import pipeline as video
from edgedigits.video import synthetic


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
        results = measure(args, video_path, scratch, described, truth)
    if args.output:
        write_json(args.output, results)
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

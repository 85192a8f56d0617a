"""Read handwritten digits live from a webcam, a video file or a stream (OpenVINO by default).

    python infer/webcam.py                                   # camera 0, window, q/Esc to quit
    python infer/webcam.py --source video.mp4 --no-display --jsonl out.jsonl --save out.mp4
    python infer/webcam.py --roi                             # classify a fixed centre box only
    python infer/webcam.py --compare                         # TensorFlow beside OpenVINO
    python infer/webcam.py --source 0 --source 1 --source a.mp4   # several streams, one model
    python infer/webcam.py --sources cameras.txt --no-display --jsonl all.jsonl --save out.mp4

Steps: check flags and outputs -> load the classifier(s) -> open the source -> run the frame
pipeline (edgedigits.video.pipeline.run_source: capture thread, the model's task finding and
preparing the digits, AsyncInferQueue, in-order delivery) -> print the summary.
Keys in the window: q/Esc quit, s save a snapshot, space pause.
Exit status: 0 when a file finished (also with --realtime) or you quit, 1 when a live
camera/stream was lost (stopped delivering frames),
2 when the source cannot be opened or a flag/model/device is wrong (one line on stderr).

Several sources (``--source`` more than once, or ``--sources FILE``) run in this one process
through one loaded model (edgedigits.video.streams.run_sources), their frames decoded and
prepared in a few worker processes (``--workers``) and inferred in batches shared across the
streams (``--no-shared-batches``: each frame alone): the JSON lines carry "stream"
(1, 2, ... in the order given) and "source", ``--save OUT.mp4`` writes OUT_1.mp4, OUT_2.mp4, ...,
the summary has a row per stream and the total, the window shows a mosaic. A stream that
cannot be opened, ends or is lost is said in one line on stderr and the others go on. Exit
status: 0 when every stream finished (or stopped: quit, --max-frames), 1 when any stream was
lost or could not be opened, 2 when none could be opened or a flag/model/device is wrong.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgedigits import cli, contract, runtime
from edgedigits.cli import ArgumentParser, positive_float, positive_int, run
from edgedigits.errors import CommandFailed, UserError
from edgedigits.files import ensure_writable_dir, write_json
from edgedigits.tasks import kinds_for
from edgedigits.video import pipeline as video
from edgedigits.video import streams


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="webcam.py",
        description="Read handwritten digits live from a camera, a video file or a stream.",
        epilog="Keys: q/Esc quit, s snapshot, space pause. Exit status: 0 file finished or quit, "
               "1 camera/stream lost, 2 cannot open the source or a bad flag/model/device. "
               "Several sources: 1 when any stream was lost or not opened, 2 when none "
               "opened.",
    )
    parser.add_argument("--source", action="append",
                        help="camera index (default 0), video file, or stream URL (rtsp://, "
                             "http://...); give it again for more streams in this process")
    parser.add_argument("--sources", metavar="FILE",
                        help="a file of sources, one per line (blank lines and # comments "
                             "skipped), run together with any --source")
    parser.add_argument("--roi", action="store_true",
                        help="simple mode: classify only what is inside a fixed centre box")
    parser.add_argument("--roi-size", type=_fraction, default=0.5, metavar="FRACTION",
                        help="--roi box side as a fraction of the frame's shorter side (0.5)")
    parser.add_argument("--compare", action="store_true",
                        help="run the TensorFlow model beside OpenVINO on the same crops")
    parser.add_argument("--tf-model", metavar="PATH",
                        help="the .keras model for --compare (default: beside --model, or "
                             f"{contract.default_models_dir()}/{contract.KERAS_FILE})")
    parser.add_argument("--no-display", action="store_true", help="headless: no window")
    parser.add_argument("--save", metavar="OUT.mp4", help="write the annotated video")
    parser.add_argument("--jsonl", metavar="OUT.jsonl",
                        help="write one JSON line per frame: frame, time_ms, detections")
    parser.add_argument("--output", metavar="DIR", help="where snapshots go (default: .)")
    parser.add_argument("--max-frames", type=positive_int, metavar="N",
                        help="stop after N frames (of each stream)")
    parser.add_argument("--max-digits", type=positive_int, default=video.DEFAULT_MAX_DIGITS,
                        help="largest digit candidates kept per frame (%(default)s)")
    parser.add_argument("--realtime", action="store_true",
                        help="treat a video file like a camera: play it at its frame rate, "
                             "process only the newest frame, drop frames processing cannot "
                             "keep up with (the file's end is still a finished run, exit 0)")
    parser.add_argument("--workers", type=_workers, metavar="N",
                        help="several sources: processes decoding and preparing their frames "
                             "(default: one per core, at most one per source; 0: this process "
                             "alone)")
    parser.add_argument("--no-shared-batches", action="store_true",
                        help="several sources: infer each frame on its own, not in batches "
                             "shared with other streams' frames (at f32 a shared batch can "
                             "change confidences in their last digits)")
    parser.add_argument("--summary-json", metavar="FILE",
                        help="also write the end-of-run summary as JSON")
    cli.add_json_argument(parser, "print the end-of-run summary as JSON instead of the text")
    cli.add_runtime_arguments(parser)
    return parser


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, got {text}")
    return value


MAX_WORKERS = 64


def _workers(text: str) -> int:
    value = int(text) if text.strip().isdigit() else -1
    if not 0 <= value <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_WORKERS}, "
                                         f"got {text!r}")
    return value


def read_sources(args) -> list[str]:
    """Every --source, then the lines of --sources FILE; camera 0 when neither is given."""
    sources = list(args.source or [])
    if args.sources:
        try:
            text = Path(args.sources).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"no such --sources file: {args.sources}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"cannot read --sources file {args.sources}: {error}") from None
        listed = [line.strip() for line in text.splitlines()]
        listed = [line for line in listed if line and not line.startswith("#")]
        if not listed:
            raise UserError(f"--sources file {args.sources} lists no source")
        sources += listed
    return sources or ["0"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sources = read_sources(args)

    # 1. Check flags, display and output folders before anything slow
    if not args.verbose:
        video.quiet_opencv()
    if args.compare and args.backend != "openvino":
        raise UserError("--compare runs TensorFlow beside OpenVINO: use it with --backend openvino")
    if not args.no_display:
        video.check_display()
    outputs = video.Outputs(jsonl=args.jsonl, save=args.save, display=not args.no_display,
                            summary_json=args.summary_json)
    if len(sources) == 1:
        outputs.check(sources[0])
    else:
        streams.check_outputs(outputs, sources)
    outputs.snapshots = ensure_writable_dir(args.output) if args.output else Path(".")
    roi = args.roi_size if args.roi else None
    accept = kinds_for(video.reading_mode(roi))
    tf_model = (video.compare_model(args.model, args.tf_model, accept=accept)
                if args.compare else None)

    # 2. Load the model (and TensorFlow's twin of it, for --compare)
    classifiers = [cli.load_from_args(args, accept=accept)]
    if tf_model is not None:
        classifiers.append(runtime.load_classifier(
            tf_model, "tensorflow", threads=args.threads, verbose=args.verbose,
            accept=(classifiers[0].model_type,)))

    # 3-4. Warm up for every batch a frame can produce, open the source(s), run the pipeline
    # until the source ends or is lost, the user quits or --max-frames
    if len(sources) > 1:
        return _several(args, classifiers, sources, outputs, roi)
    summary = video.run_source(classifiers, sources[0], outputs, roi=roi,
                               max_digits=args.max_digits, realtime=args.realtime,
                               max_frames=args.max_frames, verbose=args.verbose)

    # 5. Summary
    if args.summary_json:
        write_json(args.summary_json, summary.as_json())
    print(cli.to_json(summary.as_json()) if args.json else summary.text())
    if summary.status == "lost":
        raise CommandFailed(f"lost {summary.source} after {summary.frames} frames")
    return 0


def _several(args, classifiers, sources, outputs, roi) -> int:
    summary = streams.run_sources(classifiers, sources, outputs, roi=roi,
                                  max_digits=args.max_digits, realtime=args.realtime,
                                  max_frames=args.max_frames, verbose=args.verbose,
                                  workers=args.workers, batch=not args.no_shared_batches)
    if args.summary_json:
        write_json(args.summary_json, summary.as_json())
    print(cli.to_json(summary.as_json()) if args.json else summary.text())
    # each lost stream was said once, in one line, when it happened: no further message
    return 1 if summary.lost else 0


if __name__ == "__main__":
    run(main)

"""Serve the digit model over the Open Inference Protocol v2 (KServe), with the web page at /.

    python infer/serve.py                      # 127.0.0.1: REST :8080 (+ page), gRPC :8081
    python infer/serve.py --compare            # also native TensorFlow as model digits-tf
    python infer/serve.py --model models/ir/fp32/model.xml --precision f32 --http-port 9000
    python infer/serve.py --server http://ovms:8000   # digit-reader here, predictor on OVMS

Models (OIP v2, as OVMS and Triton name things):
  digits        images UINT8 [-1,28,28,1] -> probabilities FP32 [-1,10]  (the runtime: OpenVINO)
  digit-reader  images BYTES [N] (PNG/JPEG files) -> results BYTES [N] (classify --json rows);
                parameters multi, preprocessed, compare
  digits-tf     like digits, native TensorFlow (only with --compare)

Steps: load the classifier(s) -> build the KServe models (edgedigits.serving.models) -> run the
REST + gRPC server (edgedigits.serving.server) until Ctrl-C / SIGTERM / SIGHUP, which lets
in-flight requests finish (up to --grace-period seconds; it says if any were cut) and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

STARTED = time.perf_counter()
# Inference requests OpenVINO keeps in flight (2 streams under the THROUGHPUT hint on this
# 2-core CPU, two requests each: one computes while the next is filled).
ASYNC_JOBS = 4

from edgedigits import cli, contract, runtime  # noqa: E402
from edgedigits import model_repository as repository  # noqa: E402
from edgedigits.cli import ArgumentParser, positive_float, positive_int, run  # noqa: E402
from edgedigits.errors import UserError  # noqa: E402
from edgedigits.serving import connections, server, workers  # noqa: E402
from edgedigits.tasks import MULTI, SINGLE, kinds_for  # noqa: E402


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="serve.py",
        description="Serve the digit model over the Open Inference Protocol v2 (REST + gRPC) "
                    "and the web page.",
    )
    parser.add_argument("--host", default=server.DEFAULT_HOST,
                        help=f"address to listen on (default: {server.DEFAULT_HOST})")
    parser.add_argument("--http-port", type=positive_int, default=server.DEFAULT_HTTP_PORT,
                        help="REST port, also serves the page (default: "
                             f"{server.DEFAULT_HTTP_PORT})")
    parser.add_argument("--grpc-port", type=positive_int, default=server.DEFAULT_GRPC_PORT,
                        help=f"gRPC port (default: {server.DEFAULT_GRPC_PORT})")
    parser.add_argument("--compare", action="store_true",
                        help="also load native TensorFlow (models/model.keras, or --tf-model) "
                             "as model digits-tf, for the page's compare switch")
    parser.add_argument("--tf-model", metavar="PATH",
                        help="the Keras model for --compare (default: model.keras in the models "
                             "folder)")
    parser.add_argument("--allow-model-control", action="store_true",
                        help="enable KServe's /v2/repository/models/<model>/load|unload routes "
                             "(REST and gRPC; off by default: anyone who can reach the port "
                             "could unload every model)")
    parser.add_argument("--grace-period", type=positive_int, default=server.GRACE_SECONDS,
                        metavar="SECONDS",
                        help="on Ctrl-C, SIGTERM or SIGHUP, how long requests in flight may "
                             f"take to finish (default: {server.GRACE_SECONDS})")
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="server processes behind the same ports (SO_REUSEPORT), each "
                             "loading the models (default: 1)")
    parser.add_argument(workers.WORKER_FLAG, type=positive_int, help=argparse.SUPPRESS)
    limits = parser.add_argument_group("limits (each refused with a 4xx and a one-line reason)")
    limits.add_argument("--max-batch", type=positive_int, default=256,
                        help="images per request to digits (default: 256)")
    limits.add_argument("--max-images", type=positive_int, default=64,
                        help="encoded images per request to digit-reader (default: 64)")
    limits.add_argument("--max-body-mb", type=positive_int, default=32,
                        help="request body size in MiB, REST and gRPC (default: 32)")
    limits.add_argument("--max-image-pixels", type=positive_int, default=25_000_000,
                        help="pixels of one uploaded image, checked before decoding "
                             "(default: 25,000,000)")
    limits.add_argument("--max-json-mb", type=positive_int, default=4,
                        help="JSON part of a REST request in MiB (a whole JSON body, or the "
                             "binary extension's header; it is parsed on the event loop): 413 "
                             "over it (default: 4)")
    limits.add_argument("--max-connections", type=positive_int,
                        default=connections.DEFAULT_MAX_CONNECTIONS,
                        help="open connections, REST and gRPC each; a new one over it gets 503 "
                             f"(default: {connections.DEFAULT_MAX_CONNECTIONS})")
    limits.add_argument("--max-header-kb", type=positive_int,
                        default=connections.DEFAULT_MAX_HEADER_BYTES >> 10,
                        help="REST request line and headers, in KiB: 431 over it (default: "
                             f"{connections.DEFAULT_MAX_HEADER_BYTES >> 10})")
    limits.add_argument("--header-timeout", type=positive_float,
                        default=connections.DEFAULT_HEADER_TIMEOUT, metavar="SECONDS",
                        help="for a whole request head, or between body bytes: 408 or closed "
                             f"after it (default: {connections.DEFAULT_HEADER_TIMEOUT:g})")
    limits.add_argument("--min-body-rate", type=positive_int,
                        default=connections.DEFAULT_MIN_BODY_RATE, metavar="BYTES",
                        help="a request body slower than this many bytes/s on average, after "
                             "the first --header-timeout seconds, is closed "
                             f"(default: {connections.DEFAULT_MIN_BODY_RATE})")
    limits.add_argument("--idle-timeout", type=positive_float,
                        default=connections.DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                        help="a kept-alive connection waiting for its next request is closed "
                             f"after it (default: {connections.DEFAULT_IDLE_TIMEOUT:g})")
    cli.add_runtime_arguments(parser)
    parser.add_argument("--model-version-policy", type=repository.parse_policy,
                        default=repository.VersionPolicy(), metavar="POLICY",
                        help="which versions of a model repository folder (models/serving/"
                             "digits, the default when convert/to_ir.py wrote one) to serve, as "
                             "OVMS's model_version_policy: 'latest N', 'all' or 'specific 1,3' "
                             "(default: latest 1); the folder is watched and new versions are "
                             "served live")
    parser.add_argument("--number-model", metavar="PATH",
                        help="the number reader that digit-reader's multi reading uses, also "
                             "served as the number-reader model (default: the one under "
                             f"{contract.default_models_dir() / contract.NUMBER_READER_DIR}/ "
                             "if trained; 'none': split touching digits with the digit model)")
    # The flags KServe's controller passes to a transformer/predictor container, so that the
    # image runs unchanged in an InferenceService (infer/deploy/kserve/).
    kserve_flags = parser.add_argument_group("KServe's container flags (set by KServe)")
    kserve_flags.add_argument("--http_port", dest="http_port", type=positive_int,
                              help=argparse.SUPPRESS)
    kserve_flags.add_argument("--grpc_port", dest="grpc_port", type=positive_int,
                              help=argparse.SUPPRESS)
    kserve_flags.add_argument("--model_name", help=argparse.SUPPRESS)
    kserve_flags.add_argument("--predictor_host", metavar="HOST[:PORT]",
                              help="the predictor of a KServe transformer: same as "
                                   "--server http://HOST[:PORT]")
    kserve_flags.add_argument("--predictor_protocol", choices=("v2",), default="v2",
                              help=argparse.SUPPRESS)
    return parser


def ready_lines(args, rest_path: str, seconds: float) -> str:
    """Where to reach the server, and the ready line the tests and the supervisor wait for."""
    base = f"http://{args.host}:{args.http_port}"
    return (f"  page  {base}/\n  REST  {base}{rest_path}\n  gRPC  {args.host}:{args.grpc_port}\n"
            f"ready in {seconds:.1f} s (Ctrl-C to stop)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.predictor_host and not args.server:
        args.server = f"http://{args.predictor_host}"
    options = server.ServerOptions(host=args.host, http_port=args.http_port,
                                   grpc_port=args.grpc_port,
                                   max_body_bytes=args.max_body_mb << 20,
                                   max_json_bytes=args.max_json_mb << 20, verbose=args.verbose,
                                   allow_model_control=args.allow_model_control,
                                   grace_seconds=args.grace_period,
                                   reuse_port=args.worker is not None,
                                   limits=connections.ConnectionLimits(
                                       max_header_bytes=args.max_header_kb << 10,
                                       header_timeout=args.header_timeout,
                                       idle_timeout=args.idle_timeout,
                                       max_connections=args.max_connections,
                                       min_body_rate=args.min_body_rate))
    if args.server and not args.server.startswith(("http://", "https://")) and "://" in args.server:
        raise UserError("serve.py --server takes an http:// URL (tritonclient's gRPC client "
                        "and kserve cannot share one process)")
    if args.worker is None:
        server.check_ports_free(options.host, [options.http_port, options.grpc_port])
    if args.workers > 1 and args.worker is None:  # this process supervises, the workers serve

        def workers_ready(seconds: float, pids: list[int]) -> None:
            print(f"serving with {args.workers} workers (pids {', '.join(map(str, pids))})\n"
                  + ready_lines(args, "/v2/models/", seconds), flush=True)

        return workers.supervise(argv, args.workers, __file__, workers_ready)

    # kserve parses sys.argv when imported (its own --model_name, ...): ours are parsed already.
    sys.argv = sys.argv[:1]

    # 1. The classifier(s): OpenVINO with the THROUGHPUT hint (parallel streams, AsyncInferQueue)
    from edgedigits.model_repository import MODEL_NAME
    from edgedigits.serving import versions
    from edgedigits.serving.models import NUMBER_READER_NAME, TENSORFLOW_NAME, DigitsModel
    from edgedigits.serving.transformer import DigitReaderModel

    single = kinds_for(SINGLE)
    watched = (repository.repository_folder(args.model)
               if args.backend == "openvino" and not args.server else None)
    if watched is not None:
        # A model repository folder: every version the policy selects, watched for new ones;
        # a version loaded live is warmed at every batch size before it takes requests.
        every_size = (*(1 << k for k in range(9) if 1 << k <= args.max_batch), 64)

        def load_version(path, initial: bool) -> DigitsModel:
            loaded = cli.load_from_args(args, model=path, hint="throughput",
                                        async_jobs=ASYNC_JOBS, accept=single)
            loaded.warmup((1, 64) if initial else every_size, use_async=True)
            return DigitsModel(MODEL_NAME, loaded, max_batch=args.max_batch,
                               in_flight=ASYNC_JOBS)

        predictor = versions.VersionedModel(MODEL_NAME, watched, args.model_version_policy,
                                            load_version,
                                            announce=lambda line: print(line, flush=True))
        predictor.load_initial()
        classifier = predictor.current().classifier
    else:
        classifier = cli.load_from_args(args, hint="throughput", async_jobs=ASYNC_JOBS,
                                        accept=single) \
            if args.backend == "openvino" else cli.load_from_args(args, accept=single)
        classifier.warmup((1, 64), use_async=True)
        predictor = DigitsModel(MODEL_NAME, classifier, max_batch=args.max_batch,
                                in_flight=ASYNC_JOBS)
    models = [predictor]
    tensorflow = None
    if args.compare:
        tf_classifier = runtime.load_classifier(args.tf_model or args.model, backend="tensorflow",
                                                threads=args.threads, verbose=args.verbose,
                                                accept=(classifier.model_type,))
        tf_classifier.warmup((1, 64), use_async=True)
        tensorflow = DigitsModel(TENSORFLOW_NAME, tf_classifier, max_batch=args.max_batch)
        models.append(tensorflow)

    # 2. The number reader, when there is one: whole lines for multi reading
    number_reader = None
    reads_numbers = tuple(kind for kind in kinds_for(MULTI) if kind not in single)
    number_model = (None if args.number_model == "none" or args.server
                    else args.number_model or runtime.default_model_for(reads_numbers))
    if number_model is not None:
        reader_classifier = runtime.load_classifier(
            number_model, device=args.device, inference_precision=args.precision,
            threads=args.threads, verbose=args.verbose, accept=reads_numbers)
        reader_classifier.warmup((1,), use_async=True)
        number_reader = DigitsModel(NUMBER_READER_NAME, reader_classifier,
                                    max_batch=args.max_batch)
        models.append(number_reader)

    # 3. The transformer in front of them (decode, MNIST format, segment, rows)
    models.append(DigitReaderModel(predictor, tensorflow, number_reader=number_reader,
                                   max_images=args.max_images,
                                   max_pixels=args.max_image_pixels))

    # 4. Serve until Ctrl-C / SIGTERM
    def ready(seconds: float) -> None:
        names = ", ".join(model.name for model in models)
        print(f"serving {names} | {classifier.describe()}\n"
              + ready_lines(args, f"/v2/models/{MODEL_NAME}/infer", seconds), flush=True)
        if classifier.backend == "openvino":
            # Batches of other sizes (concurrent requests are inferred together) run on
            # static shapes compiled on first use: compile them now, off the request path.
            sizes = [1 << k for k in range(1, 9) if 1 << k <= args.max_batch and 1 << k != 64]
            warming.append(threading.Thread(target=classifier.warmup, args=(tuple(sizes),),
                                            kwargs={"use_async": True}, daemon=True))
            warming[0].start()

    warming: list[threading.Thread] = []
    code = server.serve(models, options, on_ready=ready, started=STARTED)
    for thread in warming:  # never leave OpenVINO compiling while the interpreter exits
        thread.join()
    return code


if __name__ == "__main__":
    run(main, prog="serve.py")

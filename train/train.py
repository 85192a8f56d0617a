"""Train a digit classifier on MNIST and write the model and a report under models/.

    python train/train.py                       # the tutorial's network, 5 epochs
    python train/train.py --arch robust         # the recommended model for real handwriting
    python train/train.py --arch number-reader  # whole written numbers -> models/number-reader/
    python train/train.py --data-dir ../shared/data/mnist --output models/run2
    python train/train.py --arch number-reader --finetune DIR --output models/number-reader-mine

Writes model.keras, saved_model/, metrics.json, history.csv, training_curves.png and
confusion_matrix.png, each atomically. `python convert/to_ir.py` reads them next.
"""

from __future__ import annotations

import contextlib
import os
import platform

from edgedigits import cli, contract
from edgedigits.data.augment import AUGMENT_MODES
from edgedigits.data.mnist import load_mnist
from edgedigits.errors import UserError
from edgedigits.files import output_lock, staged_set, write_json
from edgedigits.report import (
    classification_metrics,
    plot_confusion_matrix,
    plot_training_curves,
    write_history_csv,
)
from edgedigits.training.architectures import ARCHITECTURES, get_architecture
from edgedigits.training.finetune import FinetuneConfig
from edgedigits.training.finetune_run import DEFAULT_OUTPUT as DEFAULT_FINETUNED
from edgedigits.training.number_reader import ARCH as NUMBER_READER
from edgedigits.training.number_reader import NumberReaderConfig


def parse_args(argv):
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="tutorial",
                        help=f"architecture: {', '.join(ARCHITECTURES)}, or {NUMBER_READER} "
                             "(reads whole numbers; trained on lines written with MNIST "
                             "training digits) (default: tutorial)")
    parser.add_argument("--lines", type=cli.positive_int,
                        help=f"{NUMBER_READER}: training lines to render (default: "
                             f"{NumberReaderConfig.lines:,})")
    parser.add_argument("--finetune", metavar="DIR",
                        help=f"{NUMBER_READER}: fine-tune a trained reader on your own numbers, "
                             "DIR as --eval reads it (images + labels.csv 'file,number'), mixed "
                             "with --lines lines of MNIST training digits (default "
                             f"{FinetuneConfig.synthetic_lines:,}); output default "
                             f"models/{DEFAULT_FINETUNED}")
    parser.add_argument("--model", metavar="PATH",
                        help="--finetune: the reader to start from (default "
                             "models/number-reader/model.keras)")
    parser.add_argument("--validation-share", type=float,
                        default=FinetuneConfig.validation_share,
                        help="--finetune: share of DIR's numbers held out for validation, never "
                             "trained on (seeded by --seed; default %(default)s)")
    parser.add_argument("--epochs", type=cli.positive_int, help="default: the recipe's")
    cli.add_batch_size_argument(parser, "images per training step (default: the recipe's, 128)")
    parser.add_argument("--learning-rate", type=cli.positive_float,
                        help="peak learning rate (default: the recipe's)")
    parser.add_argument("--augment", choices=AUGMENT_MODES,
                        help="none | basic (shift/rotate/zoom) | photo (basic + stroke width, "
                             "blur, threshold, breaks, noise); default: the recipe's")
    parser.add_argument("--seed", type=cli.seed, default=42,
                        help="same seed + same data = same weights on the same machine")
    parser.add_argument("--validation-size", type=int, default=5000,
                        help="images held out of the training set for validation (default 5000)")
    parser.add_argument("--validate-on-test", action="store_true",
                        help="validate on the test set each epoch, as the tutorial does")
    parser.add_argument("--train-size", type=cli.positive_int,
                        help="train on the first N training images only (quick runs)")
    cli.add_precision_argument(parser)  # training: bf16 = mixed bfloat16; the file stays f32
    cli.add_data_dir_argument(parser)
    cli.add_output_argument(parser, f"output folder (default: {contract.default_models_dir()})")
    cli.add_json_argument(parser, "print metrics.json's summary as JSON instead of the text")
    cli.add_verbosity_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:  # holds the output folder's lock for the whole run
        return _main(args, stack)


def _main(args, stack: contextlib.ExitStack) -> int:
    if args.finetune is not None or args.model is not None:
        return _finetune(args)
    if args.arch == NUMBER_READER:
        return _train_number_reader(args, stack)
    if args.lines:
        raise UserError(f"--lines is for --arch {NUMBER_READER}")
    architecture = get_architecture(args.arch)
    precision = {None: "auto", "f32": "float32", "bf16": "bfloat16"}.get(args.precision)
    if precision is None:
        raise UserError(f"training computes in f32 or bf16 (mixed bfloat16), not {args.precision}")
    output = stack.enter_context(output_lock(args.output or contract.default_models_dir()))
    tf = cli.import_tensorflow(args.verbose)
    import keras

    from edgedigits.training.loop import TrainConfig, config_summary, evaluate, save_model, train

    say = print if not (args.quiet or args.json) else (lambda *parts, **options: None)

    # Prepare the data
    mnist = load_mnist(args.data_dir)
    say(f"MNIST: {len(mnist.x_train):,} training / {len(mnist.x_test):,} test images "
          f"from {mnist.source}")

    # Train
    config = TrainConfig(
        arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, augment=args.augment, seed=args.seed,
        validation_size=args.validation_size, validate_on_test=args.validate_on_test,
        train_size=args.train_size, precision=precision,
        verbose=0 if args.quiet or args.json else 2,
    ).resolve()
    say(f"Training {architecture.name} ({architecture.summary}): {config.epochs} epochs, "
          f"batch {config.batch_size}, peak learning rate {config.learning_rate}, "
          f"augment {config.augment}, {config.resolved['precision']} arithmetic")
    result = train(mnist, config)

    # Evaluate, once, on the test set
    scores = evaluate(result.model, mnist.x_test, mnist.y_test)
    metrics = classification_metrics(mnist.y_test, scores["predictions"])

    # Save the model and the report, published together (metrics.json last) when all is written
    report = {
        "arch": architecture.name,
        "test_accuracy": scores["test_accuracy"],
        "test_loss": scores["test_loss"],
        "train_seconds": round(result.train_seconds, 2),
        "epochs": config.epochs,
        "params": int(result.model.count_params()),
        "config": config_summary(config),
        "data_source": mnist.source,
        "train_images": len(mnist.x_train) if not config.train_size else config.train_size,
        "per_class": metrics["per_class"],
        "confusion_matrix": metrics["confusion_matrix"],
        "versions": {
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
    }
    # One step publishes the whole set: a reader sees the old model with its metrics, or the new.
    with staged_set(output, "model", contract.TRAINING_OUTPUTS) as staging:
        save_model(result.model, staging)
        write_history_csv(result.history, staging / "history.csv")
        plot_training_curves(result.history, staging / "training_curves.png",
                             title=f"{architecture.name} on MNIST")
        plot_confusion_matrix(metrics["confusion_matrix"], staging / "confusion_matrix.png",
                              title=f"{architecture.name}, MNIST test set")
        write_json(staging / contract.METRICS_FILE, report)

    if args.json:
        summary = {key: value for key, value in report.items()
                   if key not in ("per_class", "confusion_matrix")}
        print(cli.to_json({**summary, "output": str(output)}))
        return 0
    print(f"\nTest accuracy {scores['test_accuracy']:.2%} (loss {scores['test_loss']:.4f}) "
          f"after {result.train_seconds:.1f} s of training, {report['params']:,} parameters")
    for label, name in [("model", contract.KERAS_FILE), ("SavedModel", contract.SAVED_MODEL_DIR),
                        ("metrics", contract.METRICS_FILE), ("history", "history.csv"),
                        ("curves", "training_curves.png"),
                        ("confusion matrix", "confusion_matrix.png")]:
        print(f"  {label:<17} {output / name}")
    keras_path = output / contract.KERAS_FILE
    print("Next: python convert/to_ir.py" + (f" --model {keras_path}" if args.output else ""))
    return 0


def _train_number_reader(args, stack: contextlib.ExitStack) -> int:
    """The number reader: lines of MNIST training digits, CTC, its own folder."""
    for flag in ("augment", "train_size", "validate_on_test"):
        if getattr(args, flag):
            raise UserError(f"--{flag.replace('_', '-')} is for the digit classifiers, not "
                            f"--arch {NUMBER_READER}")
    if args.precision not in (None, "f32"):
        raise UserError(f"--arch {NUMBER_READER} trains in f32 (mixed bf16 measured 3-6x "
                        "slower for it on this CPU)")
    output = stack.enter_context(output_lock(
        args.output or contract.default_models_dir() / contract.NUMBER_READER_DIR))
    tf = cli.import_tensorflow(args.verbose)
    import keras

    from edgedigits.tasks.number_reader import render_lines
    from edgedigits.training.number_reader import read_lines, string_accuracy, train_number_reader

    say = print if not (args.quiet or args.json) else (lambda *parts, **options: None)
    mnist = load_mnist(args.data_dir)
    x_train, y_train, x_valid, y_valid = mnist.split_validation(args.validation_size)
    defaults = NumberReaderConfig()
    config = NumberReaderConfig(
        lines=args.lines or defaults.lines, epochs=args.epochs or defaults.epochs,
        batch_size=args.batch_size or defaults.batch_size,
        learning_rate=args.learning_rate or defaults.learning_rate, seed=args.seed,
        validation_lines=min(defaults.validation_lines,
                             max(100, (args.lines or defaults.lines) // 10)))
    say(f"Training {NUMBER_READER} (CNN + CTC over lines of {contract.LINE_SHAPE[1]}x"
        f"{contract.LINE_SHAPE[0]}): {config.lines:,} lines, {config.epochs} epochs, batch "
        f"{config.batch_size}, peak learning rate {config.learning_rate}")
    result = train_number_reader(x_train, y_train, x_valid, y_valid, config, log=say)

    # Evaluate, once, on lines written with MNIST *test* digits
    test_count = max(200, config.validation_lines)
    test_pixels, test_texts = render_lines(mnist.x_test, mnist.y_test, test_count,
                                           seed=config.seed + 2, log=lambda _: None)
    test_accuracy = string_accuracy(read_lines(result.model, test_pixels), test_texts)
    report = {
        "arch": NUMBER_READER,
        "model_type": contract.NUMBER_READER,
        "test_line_accuracy": round(test_accuracy, 4),
        "test_lines": test_count,
        "validation_line_accuracy": round(result.validation_accuracy, 4),
        "train_seconds": round(result.seconds, 2),
        "epochs": config.epochs,
        "lines": config.lines,
        "params": int(result.model.count_params()),
        "config": {key: value for key, value in vars(config).items()},
        "data_source": mnist.source,
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "python": platform.python_version()},
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
    }
    with staged_set(output, "model", contract.TRAINING_OUTPUTS) as staging:
        result.model.save(staging / contract.KERAS_FILE)
        write_history_csv(result.history, staging / "history.csv")
        write_json(staging / contract.METRICS_FILE, report)
    if args.json:
        print(cli.to_json({**report, "output": str(output)}))
        return 0
    say(f"\nLines read exactly: {test_accuracy:.2%} of {test_count:,} written with MNIST test "
        f"digits, after {result.seconds:.0f} s (rendering included), {report['params']:,} "
        "parameters")
    for label, name in [("model", contract.KERAS_FILE), ("metrics", contract.METRICS_FILE),
                        ("history", "history.csv")]:
        print(f"  {label:<17} {output / name}")
    print(f"Next: python convert/to_ir.py --model {output / contract.KERAS_FILE} --int8")
    return 0


def _finetune(args) -> int:
    """--finetune DIR: the number reader fine-tuned on the user's numbers (its own module)."""
    from edgedigits.training.finetune_run import run_finetune

    if args.finetune is None:
        raise UserError("--model is for --finetune (the reader fine-tuning starts from)")
    if args.arch != NUMBER_READER:
        raise UserError(f"--finetune fine-tunes the number reader: give --arch {NUMBER_READER}")
    for flag in ("augment", "train_size", "validate_on_test"):
        if getattr(args, flag):
            raise UserError(f"--{flag.replace('_', '-')} is not for --finetune")
    if args.precision not in (None, "f32"):
        raise UserError("--finetune trains in f32")
    defaults = FinetuneConfig()
    config = FinetuneConfig(
        epochs=args.epochs or defaults.epochs,
        synthetic_lines=args.lines or defaults.synthetic_lines,
        batch_size=args.batch_size or defaults.batch_size,
        learning_rate=args.learning_rate or defaults.learning_rate,
        validation_share=args.validation_share, seed=args.seed)
    say = print if not (args.quiet or args.json) else (lambda *parts, **options: None)
    report = run_finetune(args.finetune, args.model, args.output, config, args.data_dir, say,
                          args.verbose)
    if args.json:
        print(cli.to_json(report))
        return 0
    for label, name in [("model", contract.KERAS_FILE), ("metrics", contract.METRICS_FILE),
                        ("history", "history.csv")]:
        print(f"  {label:<17} {report['output']}/{name}")
    print(f"Next: python convert/to_ir.py --model {report['output']}/{contract.KERAS_FILE}")
    return 0


if __name__ == "__main__":
    cli.run(main, prog="train.py")

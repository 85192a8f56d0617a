"""``train.py --arch number-reader --finetune DIR``: the command around
:mod:`edgedigits.training.finetune`. Every input is checked before anything is written or
TensorFlow is loaded (bad input: one line, exit status 2, no output folder made); the new model,
its metrics.json and history.csv are published together, as training publishes its set."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from edgedigits import contract
from edgedigits.data.evalsets import NUMBER_HEADER, NUMBER_LABELS, load_number_folder
from edgedigits.errors import UserError
from edgedigits.files import check_not_empty, output_lock, staged_set, write_json
from edgedigits.training.finetune import FinetuneConfig, cut_lines, finetune, mix, split_samples

DEFAULT_OUTPUT = "number-reader-finetuned"  # under the models folder


def default_model() -> Path:
    return contract.default_models_dir() / contract.NUMBER_READER_DIR / contract.KERAS_FILE


def check_inputs(folder: str, model: str | None, output: str | None
                 ) -> tuple[Path, Path, Path]:
    """(the numbers folder, the starting model, the output folder), or one UserError."""
    check_not_empty(folder, "--finetune")
    root = Path(folder)
    if not root.is_dir():
        what = "no such folder" if not root.exists() else "not a folder"
        raise UserError(f"--finetune {root}: {what}; expected a folder of images with "
                        f"{NUMBER_LABELS} "
                        f"({','.join(NUMBER_HEADER)})")
    if not (root / NUMBER_LABELS).is_file():
        raise UserError(f"--finetune {root}: no {NUMBER_LABELS} (a header "
                        f"'{','.join(NUMBER_HEADER)}', then one image and its number a line)")
    check_not_empty(model, "--model")
    start = Path(model) if model else default_model()
    if start.is_dir():
        start = start / contract.KERAS_FILE
    if not start.is_file():
        hint = ("train one first: python train/train.py --arch number-reader, or give --model "
                "PATH/model.keras") if model is None else "give a trained number reader's .keras"
        raise UserError(f"no trained number reader to start from at {start}; {hint}")
    if start.suffix != ".keras":
        raise UserError(f"--model {start}: fine-tuning starts from a Keras model (.keras), "
                        "not an IR")
    check_not_empty(output, "--output")
    target = Path(output) if output else contract.default_models_dir() / DEFAULT_OUTPUT
    resolved, inside = target.absolute().resolve(), root.absolute().resolve()
    if resolved == inside or inside in resolved.parents:
        raise UserError(f"--output {target} is inside the numbers folder {root}; write the "
                        "model elsewhere")
    if resolved == start.absolute().resolve().parent:
        raise UserError(f"--output {target} holds the model fine-tuning starts from; choose a "
                        "new folder (e.g. models/number-reader-mine)")
    if target.exists() and not target.is_dir():
        raise UserError(f"--output {target} is an existing file, not a folder")
    return root, start, target


def run_finetune(folder: str, model: str | None, output: str | None, config: FinetuneConfig,
                 data_dir: str | None, say: Callable[[str], None], verbose: int = 0) -> dict:
    """Fine-tune and write the output folder; returns the report (metrics.json)."""
    from edgedigits.data.mnist import load_mnist
    from edgedigits.tensorflow_import import import_tensorflow

    root, start, target = check_inputs(folder, model, output)
    numbers = load_number_folder(root)  # a bad header or a missing image: one line, here
    if not 0 < config.validation_share < 1:
        raise UserError("--validation-share must be between 0 and 1 (exclusive)")
    train_index, valid_index = split_samples(len(numbers.samples), config.validation_share,
                                             config.seed)
    say(f"Fine-tuning {start} on {numbers.root}: {len(numbers.samples)} numbers, "
        f"{len(valid_index)} held out for validation (share {config.validation_share}, seed "
        f"{config.seed}), never trained on")
    train = cut_lines([numbers.samples[i] for i in train_index], say)
    valid = cut_lines([numbers.samples[i] for i in valid_index], lambda _: None)
    for part, lines in (("training", train), ("validation", valid)):
        if lines.skipped:
            why = ", ".join(f"{n} {reason}" for reason, n in lines.skipped.items())
            say(f"  {part}: {len(lines.texts)} of {lines.images} images give one line; "
                f"skipped {lines.skipped_count} ({why})")
    if not train.texts:
        raise UserError(f"{numbers.root}: no training image gives exactly one line of digits; "
                        "nothing to fine-tune on")
    mnist = load_mnist(data_dir)  # a bad MNIST folder is refused before anything is written
    tf = import_tensorflow(bool(verbose))
    import keras

    reader = keras.models.load_model(start, compile=False)
    shape_in, shape_out = tuple(reader.input_shape[1:]), tuple(reader.output_shape[1:])
    if shape_in != tuple(contract.LINE_SHAPE) or shape_out != (contract.LINE_STEPS,
                                                               contract.LINE_CLASSES):
        raise UserError(f"{start} is not a number reader (input {shape_in}, output {shape_out})")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(output_lock(target))
        return _finetune(numbers, train, valid, reader, start, out, mnist,
                         config, say, tf.__version__, keras)


def _finetune(numbers, train, valid, reader, start, out, mnist, config, say,
              tf_version, keras) -> dict:
    from edgedigits.report import write_history_csv
    from edgedigits.tasks.number_reader import render_lines
    from edgedigits.training.number_reader import read_lines, string_accuracy

    started = time.perf_counter()
    valid_count = valid.images  # skipped ones included: they count as misread
    say(f"Rendering {config.synthetic_lines:,} lines from MNIST training digits (so it does "
        "not forget)")
    synthetic = render_lines(mnist.x_train, mnist.y_train, config.synthetic_lines,
                             seed=config.seed + 10, workers=config.workers, log=say)
    check_pixels, check_texts = render_lines(mnist.x_test, mnist.y_test, 500,
                                             seed=config.seed + 2, log=lambda _: None)
    pixels, texts = mix(train.pixels, train.texts, *synthetic, config.copies, config.seed)

    def scores(model) -> dict:
        read = read_lines(model, valid.pixels) if valid.texts else []
        right = sum(p == e for p, e in zip(read, valid.texts, strict=True))
        return {"validation_accuracy": round(right / valid_count, 4),
                "validation_line_accuracy": round(string_accuracy(read, valid.texts), 4),
                "synthetic_test_line_accuracy": round(
                    string_accuracy(read_lines(model, check_pixels), check_texts), 4)}

    before = scores(reader)
    say(f"Before: {before['validation_accuracy']:.2%} of the {valid_count} validation "
        f"numbers read exactly; {before['synthetic_test_line_accuracy']:.2%} of 500 lines of "
        "MNIST test digits")
    say(f"Training on {len(texts):,} lines a epoch ({len(train.texts)} of yours x "
        f"{config.copies}, {len(synthetic[1]):,} synthetic), {config.epochs} epochs, batch "
        f"{config.batch_size}, peak learning rate {config.learning_rate}")
    result = finetune(reader, pixels, texts, valid.pixels, valid.texts, config, say,
                      valid_total=valid_count)
    after = scores(result.model)
    seconds = time.perf_counter() - started
    report = {
        "arch": contract.NUMBER_READER,
        "model_type": contract.NUMBER_READER,
        "finetuned_from": str(start),
        "finetune_data": str(numbers.root),
        "numbers": len(numbers.samples),
        "training_numbers": train.images, "training_lines": len(train.texts),
        "training_skipped": train.skipped,
        "validation_numbers": valid_count, "validation_lines": len(valid.texts),
        "validation_skipped": valid.skipped,
        "training_files": [os.path.relpath(path, numbers.root) for path in train.sources],
        "validation_files": [os.path.relpath(path, numbers.root) for path in valid.sources],
        "before": before, "after": after,
        # of the validation numbers, read exactly; skipped images count as misread
        "validation_accuracy_before": before["validation_accuracy"],
        "validation_accuracy": after["validation_accuracy"],
        "synthetic_lines": len(synthetic[1]),
        "train_seconds": round(result.seconds, 2), "seconds": round(seconds, 2),
        "epochs": config.epochs, "best_epoch": result.best_epoch,
        "params": int(result.model.count_params()),
        "config": dict(vars(config)),
        "data_source": mnist.source,
        "versions": {"tensorflow": tf_version, "keras": keras.__version__,
                     "python": platform.python_version()},
        "machine": {"processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "load_average": [round(x, 2)
                                                             for x in os.getloadavg()]},
    }
    with staged_set(out, "model", contract.TRAINING_OUTPUTS) as staging:
        result.model.save(staging / contract.KERAS_FILE)
        write_history_csv(result.history, staging / "history.csv")
        write_json(staging / contract.METRICS_FILE, report)
    say(f"\nValidation numbers read exactly: {before['validation_accuracy']:.2%} before, "
        f"{after['validation_accuracy']:.2%} after ({valid_count} numbers; "
        f"{valid_count - len(valid.texts)} of them skipped, counted as misread); MNIST "
        f"test lines {before['synthetic_test_line_accuracy']:.2%} -> "
        f"{after['synthetic_test_line_accuracy']:.2%}; {seconds:.0f} s in all")
    report["output"] = str(out)
    return report

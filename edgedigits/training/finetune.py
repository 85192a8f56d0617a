"""Fine-tuning the number reader on a user's own numbers (``train.py --arch number-reader
--finetune DIR``): the data and the training; :mod:`edgedigits.training.finetune_run` is the
command around it (checks, the report, the output folder).

The user's numbers are a numbers set (images + ``labels.csv`` ``file,number``, the layout
``classify.py --eval`` reads). Each image is cut and normalised by the code inference uses
(:func:`find_lines`, :func:`line_input`); an image in which no line, or more than one, is found
cannot be paired with its label and is skipped (counted). A seeded share of the images is held
out for validation before anything is cut, so it is never trained on. Training starts from a
trained reader and mixes the user's lines (each also in a few slightly shifted, scaled and
sheared copies) with lines rendered from MNIST *training* digits, so the reader keeps what it
knew; the epoch that reads the most validation numbers is the one kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgedigits.errors import UserError
from edgedigits.image.image import Image
from edgedigits.tasks import number_reader as sequence
from edgedigits.training.number_reader import ctc_loss, encode_labels, read_lines, string_accuracy


@dataclass
class FinetuneConfig:
    epochs: int = 12
    synthetic_lines: int = 2_000  # lines rendered from MNIST training digits, mixed in
    copies: int = 5  # each user line is trained on as itself and copies - 1 varied copies
    batch_size: int = 64
    learning_rate: float = 5e-4  # peak; a quarter of training's: start from what it knows
    validation_share: float = 0.2
    seed: int = 42
    workers: int = 0  # processes rendering synthetic lines (0: one per core)


@dataclass
class UserLines:
    """The lines cut from some of a numbers set's images, and what was skipped."""

    pixels: np.ndarray  # (N, LINE_HEIGHT, LINE_WIDTH) uint8
    texts: list[str]
    files: list[str]
    sources: list[str]  # every image looked at
    skipped: dict[str, int] = field(default_factory=dict)  # why -> count

    @property
    def images(self) -> int:
        return len(self.sources)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())


def split_samples(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices: ``share`` of ``count`` (at least one) held out, seeded."""
    held = max(1, round(count * share))
    if held >= count:
        raise UserError(f"--validation-share {share} leaves no number to train on "
                        f"({count} in the folder)")
    order = np.random.default_rng(seed).permutation(count)
    return sorted(int(i) for i in order[held:]), sorted(int(i) for i in order[:held])


def cut_lines(samples: list[tuple[Path, str]], log: Callable[[str], None] = print) -> UserLines:
    """Each image's one line, normalised as inference does; skipped (counted): images that do
    not decode, with no line found, with more than one line, or numbers longer than MAX_DIGITS."""
    pixels, texts, files = [], [], []
    skipped = {"not a readable image": 0, "no line found": 0, "more than one line": 0,
               f"more than {sequence.MAX_DIGITS} digits": 0}
    started = time.perf_counter()
    for index, (path, number) in enumerate(samples, 1):
        try:
            image = Image.read(path)
        except UserError:
            skipped["not a readable image"] += 1
            continue
        lines = sequence.find_lines(image)
        if len(number) > sequence.MAX_DIGITS:
            skipped[f"more than {sequence.MAX_DIGITS} digits"] += 1
        elif not lines:
            skipped["no line found"] += 1
        elif len(lines) > 1:
            skipped["more than one line"] += 1
        else:
            pixels.append(lines[0].pixels)
            texts.append(number)
            files.append(str(path))
        if index % 100 == 0 or index == len(samples):
            log(f"  images cut into lines: {index:,}/{len(samples):,} "
                f"({time.perf_counter() - started:.0f} s)")
    empty = np.zeros((0, sequence.LINE_HEIGHT, sequence.LINE_WIDTH), np.uint8)
    return UserLines(np.stack(pixels) if pixels else empty, texts, files,
                     [str(path) for path, _ in samples],
                     {why: n for why, n in skipped.items() if n})


def varied(pixels: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """``pixels`` followed by ``copies - 1`` copies of it each moved a little (scaled 0.85-1.1,
    sheared, shifted a few columns and rows): the same number as a hand might write it again."""
    rng = np.random.default_rng(seed)
    height, width = pixels.shape[1:]
    out = [pixels]
    for _ in range(copies - 1):
        batch = np.empty_like(pixels)
        for k, line in enumerate(pixels):
            scale = rng.uniform(0.85, 1.1)
            shear = rng.uniform(-0.15, 0.15)
            dx, dy = rng.uniform(-1, 6), rng.uniform(-2, 2)
            centre = height / 2
            matrix = np.array([[scale, shear * scale, dx - shear * scale * centre],
                               [0, scale, centre * (1 - scale) + dy]], np.float32)
            batch[k] = cv2.warpAffine(line, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out.append(batch)
    return np.concatenate(out)


@dataclass
class FinetuneResult:
    model: object
    history: dict
    seconds: float
    best_epoch: int  # 1-based: the epoch whose weights were kept


def finetune(model, train_pixels: np.ndarray, train_texts: list[str], valid_pixels: np.ndarray,
             valid_texts: list[str], config: FinetuneConfig, log: Callable[[str], None] = print,
             valid_total: int | None = None, extra_callbacks=()) -> FinetuneResult:
    """Fit ``model`` (an inference number reader, changed in place) on the training lines
    (user's and synthetic, already mixed) with CTC; after each epoch the validation lines are
    read (``valid_total``: the validation images, the skipped ones counted as misread) and the
    weights of the epoch that read the most are kept (the later of equals): a few hundred
    numbers are learnt by heart after a while, and the last epoch is not always the best."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    training_model = keras.Model(model.inputs, model.get_layer("logits").output)
    steps_per_epoch = math.ceil(len(train_texts) / config.batch_size)
    total = steps_per_epoch * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * 0.1, max(1, total - steps_per_epoch // 2), alpha=0.05,
        warmup_target=config.learning_rate, warmup_steps=steps_per_epoch // 2)
    training_model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0),
                           loss=ctc_loss(keras))
    data = tf.data.Dataset.from_tensor_slices((train_pixels[..., None],
                                               encode_labels(train_texts)))
    data = data.shuffle(len(train_texts), seed=config.seed, reshuffle_each_iteration=True)
    data = data.batch(config.batch_size).map(
        lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)
    total_valid = valid_total or len(valid_texts)
    best = {"right": -1, "epoch": 0, "weights": None}

    class Progress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if (batch + 1) % 20 == 0:
                log(f"    step {batch + 1}/{steps_per_epoch}: loss {logs.get('loss', 0):.3f}")

        def on_epoch_end(self, epoch, logs=None):
            read = read_lines(model, valid_pixels) if len(valid_texts) else []
            right = sum(p == e for p, e in zip(read, valid_texts, strict=True))
            if logs is not None:
                logs["val_line_accuracy"] = string_accuracy(read, valid_texts)
                logs["val_accuracy"] = right / max(1, total_valid)
            if right >= best["right"]:
                best.update(right=right, epoch=epoch + 1, weights=model.get_weights())
            log(f"  epoch {epoch + 1}/{config.epochs}: loss {logs.get('loss', 0):.3f}, "
                f"validation numbers read exactly {right}/{total_valid} "
                f"({right / max(1, total_valid):.2%}), "
                f"{time.perf_counter() - self.began:.0f} s")

    history = training_model.fit(data, epochs=config.epochs,
                                 callbacks=[Progress(), *extra_callbacks], verbose=0)
    if best["epoch"] != config.epochs:
        model.set_weights(best["weights"])
        log(f"  kept epoch {best['epoch']}'s weights: it read the most validation numbers "
            f"({best['right']}/{total_valid})")
    return FinetuneResult(model, history.history, time.perf_counter() - started,
                          best["epoch"])


def mix(user_pixels: np.ndarray, user_texts: list[str], synthetic_pixels: np.ndarray,
        synthetic_texts: list[str], copies: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """The training lines: the user's (with their varied copies) and the synthetic ones."""
    pixels = varied(user_pixels, copies, seed) if len(user_texts) else user_pixels
    return (np.concatenate([pixels, synthetic_pixels]),
            user_texts * copies + list(synthetic_texts))

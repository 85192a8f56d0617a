"""Training the number reader (:mod:`edgedigits.tasks.number_reader`): a CNN read with CTC.

``train/train.py --arch number-reader`` calls :func:`train_number_reader`. Lines are made from
MNIST *training* digits by :func:`sequence.render_lines` (in worker processes: rendering
and segmenting costs ~6 ms a line, so both cores make lines before training starts); the
validation lines come from the held-out training digits, so the MNIST test digits (the
``numbers`` evaluation set's) are never seen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgedigits.tasks import number_reader as sequence

ARCH = "number-reader"


@dataclass
class NumberReaderConfig:
    lines: int = 30_000  # training lines rendered
    validation_lines: int = 2_000
    epochs: int = 7
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 42
    workers: int = 0  # processes rendering lines (0: one per core)


def build_number_reader(keras, seed: int | None = None):
    """(training model: float lines [0, 1] -> logits (N, STEPS, 11),
    inference model: -> probabilities). Both share their layers."""
    if seed is not None:
        keras.utils.set_random_seed(seed)
    layers = keras.layers

    def block(x, filters):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((sequence.LINE_HEIGHT, sequence.LINE_WIDTH, 1), name="line")
    x = block(inputs, 16)
    x = layers.MaxPooling2D(2)(x)  # 16 x 96
    x = block(x, 32)
    x = layers.MaxPooling2D(2)(x)  # 8 x 48
    x = block(x, 64)
    x = layers.MaxPooling2D((2, 1))(x)  # 4 x 48
    x = block(x, 96)
    x = layers.MaxPooling2D((2, 1))(x)  # 2 x 48
    # columns become time steps: (N, 2, 48, 96) -> (N, 48, 192)
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((sequence.STEPS, -1))(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    # Context along the line: two 1-D convolutions over the steps (each step then sees ~60
    # input columns, two or three digits). A BiGRU here converts to an OpenVINO Loop that
    # cost 8-16 ms per line at batch 1 against ~2 ms for the whole network as it is.
    x = layers.Conv1D(128, 5, padding="same", activation="relu")(x)
    x = layers.Conv1D(128, 5, padding="same", activation="relu")(x)
    logits = layers.Dense(sequence.NUM_CLASSES, name="logits")(x)
    probabilities = layers.Softmax(name="probabilities", dtype="float32")(logits)
    training_model = keras.Model(inputs, logits, name="number_reader_train")
    model = keras.Model(inputs, probabilities, name="number_reader")
    return training_model, model


def encode_labels(texts: list[str]) -> np.ndarray:
    """(N, 1 + MAX_DIGITS) int32: each label's length, then its digits (zero padded)."""
    encoded = np.zeros((len(texts), 1 + sequence.MAX_DIGITS), np.int32)
    for row, text in enumerate(texts):
        encoded[row, 0] = len(text)
        encoded[row, 1 : 1 + len(text)] = [int(c) for c in text]
    return encoded


def ctc_loss(keras):
    ops = keras.ops

    def loss(y_true, logits):
        lengths = ops.cast(y_true[:, 0], "int32")
        targets = ops.cast(y_true[:, 1:], "int32")
        steps = ops.full((ops.shape(logits)[0],), sequence.STEPS, dtype="int32")
        return ops.ctc_loss(targets, ops.cast(logits, "float32"), lengths, steps,
                            mask_index=sequence.BLANK)

    return loss


def read_lines(model, pixels: np.ndarray, batch_size: int = 256) -> list[str]:
    """The numbers an inference model reads in lines (N, 32, 192) uint8."""
    probabilities = model.predict(pixels[..., None].astype(np.float32) / 255.0,
                                  batch_size=batch_size, verbose=0)
    return [sequence.ctc_decode(p).number for p in probabilities]


def string_accuracy(predicted: list[str], expected: list[str]) -> float:
    return sum(p == e for p, e in zip(predicted, expected, strict=True)) / max(1, len(expected))


@dataclass
class NumberReaderResult:
    model: object
    history: dict
    validation_accuracy: float
    seconds: float


def train_number_reader(x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray,
                        y_valid: np.ndarray, config: NumberReaderConfig,
                        log: Callable[[str], None] = print, extra_callbacks=()
                        ) -> NumberReaderResult:
    """Render lines from the training digits and fit the number reader on them; validation
    lines come from ``x_valid`` (held-out training digits)."""
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    log(f"Rendering {config.lines:,} training lines from {len(x_train):,} MNIST training "
        "digits")
    train_pixels, train_texts = sequence.render_lines(x_train, y_train, config.lines, config.seed,
                                             config.workers, log)
    valid_pixels, valid_texts = sequence.render_lines(x_valid, y_valid, config.validation_lines,
                                             config.seed + 1, config.workers, lambda _: None)
    training_model, model = build_number_reader(keras, config.seed)
    steps_per_epoch = math.ceil(len(train_texts) / config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate * 0.1, steps_per_epoch * config.epochs, alpha=0.02,
        warmup_target=config.learning_rate, warmup_steps=steps_per_epoch // 2)
    training_model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0),
                           loss=ctc_loss(keras))

    def dataset(pixels, texts, shuffle):
        data = tf.data.Dataset.from_tensor_slices((pixels[..., None], encode_labels(texts)))
        if shuffle:
            data = data.shuffle(len(texts), seed=config.seed, reshuffle_each_iteration=True)
        data = data.batch(config.batch_size)
        return data.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(2)

    class LineAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            accuracy = string_accuracy(read_lines(model, valid_pixels), valid_texts)
            if logs is not None:
                logs["val_line_accuracy"] = accuracy
            log(f"  epoch {epoch + 1}/{config.epochs}: loss {logs.get('loss', 0):.3f}, "
                f"validation lines read exactly {accuracy:.2%}")

    history = training_model.fit(
        dataset(train_pixels, train_texts, True), epochs=config.epochs,
        validation_data=dataset(valid_pixels, valid_texts, False),
        callbacks=[LineAccuracy(), *extra_callbacks], verbose=0)
    accuracy = history.history["val_line_accuracy"][-1]  # the last epoch's, read above
    return NumberReaderResult(model, history.history, accuracy, time.perf_counter() - started)

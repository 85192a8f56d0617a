"""Training: a fast tf.data pipeline, the recipe's schedule, evaluation and the artifacts.

Why it is faster than the tutorial's ``model.fit(numpy arrays)``: the data stays uint8 in one
in-memory tensor and is scaled per batch on the fly in tf.data, and several steps run per call
into the graph (``steps_per_execution``), so Python and the input pipeline stop being the
bottleneck on a 2-core CPU. XLA (``jit_compile``) was measured too and is *not* used: on this
CPU an epoch of the tutorial network took 12.6 s with XLA and 6.1 s without, and Keras turns it
off anyway once TensorFlow's op determinism is on (which ``--seed`` reproducibility needs).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgedigits import contract
from edgedigits.data.augment import augment_batch
from edgedigits.data.mnist import Mnist
from edgedigits.errors import UserError
from edgedigits.training.architectures import build_model, get_architecture

# The cross-entropy of a uniform guess over the ten digits, and the final training loss above
# which a run has diverged (a fresh network starts near the guess and any training goes below).
GUESSING_LOSS = math.log(10)
DIVERGED_LOSS = 1.5 * GUESSING_LOSS

STEPS_PER_EXECUTION = 32
PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX), per /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    if precision == "auto":
        return "bfloat16" if cpu_has_bf16() else "float32"
    return precision


@dataclass
class TrainConfig:
    arch: str = "tutorial"
    epochs: int | None = None  # None: the architecture's recipe
    batch_size: int | None = None
    learning_rate: float | None = None
    augment: str | None = None
    label_smoothing: float | None = None
    seed: int = 42
    validation_size: int = 5000
    # "auto": mixed bfloat16 where the CPU has native bf16 (1.6x faster here), else float32.
    # The weights stay float32 either way and the saved model is a plain float32 model.
    precision: str = "auto"
    validate_on_test: bool = False  # the tutorial's (optimistic) habit, for exact parity only
    train_size: int | None = None  # use only the first N training images (quick runs, tests)
    verbose: int = 2  # Keras fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch
    resolved: dict = field(default_factory=dict)

    def resolve(self) -> TrainConfig:
        """Fill unset options from the architecture's recipe."""
        recipe = get_architecture(self.arch).recipe
        for name in ("epochs", "batch_size", "learning_rate", "augment", "label_smoothing"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))
        self.resolved = {
            "schedule": recipe.schedule,
            "precision": resolve_precision(self.precision),
        }
        return self


def make_dataset(images, labels, batch_size, *, shuffle, seed, augment="none"):
    """uint8 (N, 28, 28) images -> batched float (B, 28, 28, 1) in [0, 1] with one-hot labels.

    Shuffling works on indices and each batch is one gather from the in-memory uint8 tensor:
    a per-image pipeline costs more on 2 cores than the network's own work.
    """
    import tensorflow as tf

    images = tf.constant(images)
    labels = tf.one_hot(tf.constant(labels, tf.int32), 10)
    indices = tf.data.Dataset.range(len(images))
    if shuffle:
        indices = indices.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = indices.batch(batch_size).map(
        lambda batch: (
            tf.cast(tf.gather(images, batch)[..., None], tf.float32) / 255.0,
            tf.gather(labels, batch),
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if augment != "none":
        # One independent stateless seed per batch, different every epoch, same every run.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(
            lambda batch, batch_seed: (augment_batch(batch[0], batch_seed, augment), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    # tf.data's autotuner samples and re-plans in background threads; on 2 cores that steals
    # more than it gives: the tutorial's 5 epochs took 9.4-10.0 s with it off, 11.6-13.1 s on.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _learning_rate(schedule: str, peak: float, total_steps: int):
    import keras

    if schedule == "constant":
        return peak
    # One-cycle: linear warm-up over the first 15 % of steps, then cosine decay to zero.
    warmup = max(1, int(0.15 * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10.0,
        warmup_target=peak,
        warmup_steps=warmup,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.0,
    )


@dataclass
class TrainResult:
    model: object
    history: dict
    train_seconds: float
    config: TrainConfig


def train(mnist: Mnist, config: TrainConfig, extra_callbacks=()) -> TrainResult:
    """Build and train ``config.arch`` on MNIST; the test set is not used unless asked."""
    import keras
    import tensorflow as tf

    config.resolve()
    if config.epochs <= 0 or config.batch_size <= 0:
        raise UserError("epochs and batch size must be greater than 0")
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()

    x_train, y_train = mnist.x_train, mnist.y_train
    if config.train_size and config.train_size > len(x_train):
        raise UserError(f"--train-size {config.train_size} is more than the {len(x_train):,} "
                        "training images there are")
    if config.train_size:
        x_train, y_train = x_train[: config.train_size], y_train[: config.train_size]
    if config.validate_on_test:
        x_val, y_val = mnist.x_test, mnist.y_test
    else:
        if config.train_size:
            # A quick run on a subset keeps at most a tenth of it for validation; the size
            # actually used is what the config (and so metrics.json) records.
            config.validation_size = min(config.validation_size, len(x_train) // 10)
        held_out = Mnist(x_train, y_train, mnist.x_test, mnist.y_test, mnist.source)
        x_train, y_train, x_val, y_val = held_out.split_validation(config.validation_size)

    train_data = make_dataset(
        x_train, y_train, config.batch_size, shuffle=True, seed=config.seed, augment=config.augment
    )
    val_data = make_dataset(x_val, y_val, 1024, shuffle=False, seed=config.seed)
    steps_per_epoch = -(-len(x_train) // config.batch_size)

    mixed = config.resolved["precision"] == "bfloat16"
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    try:
        model = build_model(config.arch, seed=config.seed)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    model.compile(
        optimizer=keras.optimizers.Adam(
            _learning_rate(
                config.resolved["schedule"], config.learning_rate, steps_per_epoch * config.epochs
            )
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=min(STEPS_PER_EXECUTION, steps_per_epoch),
    )
    started = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=val_data,
        epochs=config.epochs,
        verbose=config.verbose,
        callbacks=[keras.callbacks.TerminateOnNaN(), *extra_callbacks],
    )
    seconds = time.perf_counter() - started
    losses = history.history.get("loss", [])
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise UserError(f"training diverged (the loss became {losses[-1] if losses else 'NaN'} "
                        f"at peak learning rate {config.learning_rate}); nothing was saved, the "
                        "previous model is kept: try a lower --learning-rate")
    if losses[-1] > DIVERGED_LOSS:  # finite but worse than guessing (bf16 and the loss's clip
        # keep a blown-up model's loss finite: ~14 at 1e30 where float32 gave NaN)
        raise UserError(f"training diverged (the loss ended at {losses[-1]:.2f}, worse than "
                        f"guessing: {GUESSING_LOSS:.2f}, at peak learning rate "
                        f"{config.learning_rate}); nothing was saved, the previous model is "
                        "kept: try a lower --learning-rate")
    if mixed:
        # Same weights in a float32 copy: exports, conversion and parity checks see plain fp32.
        trained = model
        model = build_model(config.arch)
        model.set_weights(trained.get_weights())
    return TrainResult(model, history.history, seconds, config)


def predict_probabilities(model, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Softmax outputs for uint8 (N, 28, 28) images, via a compiled direct call (no predict())."""
    import tensorflow as tf

    call = tf.function(lambda batch: model(batch, training=False))
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size, :, :, None].astype(np.float32) / 255.0
        outputs.append(call(tf.constant(batch)).numpy())
    return np.concatenate(outputs)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict:
    """Test loss and accuracy, computed once on the held-out test set."""
    probabilities = predict_probabilities(model, images)
    if not np.isfinite(probabilities).all():
        raise UserError("the trained model's outputs are not numbers (NaN or infinite): training "
                        "diverged; nothing was saved, the previous model is kept: try a lower "
                        "--learning-rate")
    picked = probabilities[np.arange(len(labels)), labels.astype(np.int64)]
    loss = float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))
    predictions = probabilities.argmax(axis=1)
    return {
        "test_loss": loss,
        "test_accuracy": float(np.mean(predictions == labels)),
        "predictions": predictions,
    }


def config_summary(config: TrainConfig) -> dict:
    summary = asdict(config)
    summary.update(summary.pop("resolved"))
    summary.pop("verbose")
    return summary


def save_model(model, output: Path) -> dict[str, Path]:
    """Write model.keras and the SavedModel export, each atomically."""
    from edgedigits.files import atomic_path

    keras_path = output / contract.KERAS_FILE
    saved_model_path = output / contract.SAVED_MODEL_DIR
    with atomic_path(keras_path) as staged:
        model.save(staged)
    with atomic_path(saved_model_path) as staged:
        model.export(str(staged), format="tf_saved_model", verbose=False)
    return {"keras": keras_path, "saved_model": saved_model_path}

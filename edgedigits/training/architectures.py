"""The model registry: named architectures and their default training recipes.

Every model takes float32 images shaped (N, 28, 28, 1) scaled to [0, 1] and returns softmax
probabilities over the ten digits. Scaling from uint8 happens outside the model (tf.data in
training, the IR's pre-processing in OpenVINO), so the exported graph is the network alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgedigits.errors import UserError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@dataclass(frozen=True)
class Recipe:
    """Default training settings of one architecture (each can be overridden on the CLI)."""

    epochs: int
    batch_size: int
    learning_rate: float
    schedule: str  # "constant" (the tutorial's Adam) or "onecycle"
    augment: str  # "none", "basic" (shifts/rotations/zoom) or "photo" (basic + photo effects)
    label_smoothing: float = 0.0
    description: str = ""


def _tutorial(keras):
    # Exactly the seed's network (smart-video-workshop Deep_Learning_Tutorial.py).
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name="image"),
            keras.layers.Conv2D(32, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="tutorial",
    )


def _lenet5(keras):
    # LeCun et al. 1998: C1 6@5x5 (padded, 28x28) -> S2 -> C3 16@5x5 -> S4 -> 120 -> 84 -> 10.
    # ReLU in place of the scaled tanh; average pooling as in the original subsampling layers.
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name="image"),
            layers.Conv2D(6, 5, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(16, 5, activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dense(120, activation="relu"),
            layers.Dense(84, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="lenet5",
    )


def _robust(keras):
    # Compact VGG-style CNN: three conv blocks with batch norm, global pooling and dropout.
    # Sized for a 2-core CPU: most work is at 14x14 and 7x7, not at full resolution.
    layers = keras.layers

    def conv_block(filters):
        return [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
        ]

    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name="image"),
            *conv_block(32),
            *conv_block(32),
            layers.MaxPooling2D(2),
            *conv_block(64),
            *conv_block(64),
            layers.MaxPooling2D(2),
            *conv_block(128),
            layers.GlobalAveragePooling2D(),
            layers.Dropout(0.3),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="robust",
    )


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable
    recipe: Recipe
    summary: str


ARCHITECTURES: dict[str, Architecture] = {
    "tutorial": Architecture(
        "tutorial",
        _tutorial,
        Recipe(
            epochs=5,
            batch_size=128,
            learning_rate=3e-3,
            schedule="onecycle",
            augment="none",
            label_smoothing=0.1,
        ),
        "the workshop's simplified LeNet: Conv 32@3x3, MaxPool, Dense 128, Dense 10",
    ),
    "lenet5": Architecture(
        "lenet5",
        _lenet5,
        Recipe(epochs=8, batch_size=128, learning_rate=3e-3, schedule="onecycle", augment="none"),
        "classic LeNet-5: two conv+pool blocks, Dense 120/84/10",
    ),
    "robust": Architecture(
        "robust",
        _robust,
        Recipe(
            epochs=12,
            batch_size=128,
            learning_rate=4e-3,
            schedule="onecycle",
            augment="photo",
            label_smoothing=0.05,
        ),
        "compact CNN with batch norm and photo-like augmentation, for real handwriting",
    ),
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise UserError(f"unknown architecture {name!r}; choose one of: {known}") from None


def build_model(name: str, seed: int | None = None):
    """Build the named architecture (uncompiled). ``seed`` makes initial weights repeatable."""
    import keras

    architecture = get_architecture(name)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    return architecture.build(keras)

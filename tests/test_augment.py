"""The augmentation pipeline: shapes, value ranges, determinism with a seed, real effect."""

from __future__ import annotations

import numpy as np
import pytest

from edgedigits.data.augment import augment_batch
from edgedigits.training.loop import make_dataset


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.x_test[:64, :, :, None].astype(np.float32) / 255.0


@pytest.mark.parametrize("mode", ["basic", "photo"])
def test_shapes_ranges_and_seeded_determinism(digits, mode):
    import tensorflow as tf

    first = augment_batch(tf.constant(digits), tf.constant([1, 2], tf.int64), mode).numpy()
    again = augment_batch(tf.constant(digits), tf.constant([1, 2], tf.int64), mode).numpy()
    other = augment_batch(tf.constant(digits), tf.constant([3, 4], tf.int64), mode).numpy()
    assert first.shape == digits.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 0.01
    # Augmented, but still a digit: most of the ink stays, and it changed.
    assert 0.02 < np.abs(first - digits).mean() < 0.3
    assert first.sum() > 0.4 * digits.sum()


def test_none_is_identity(digits):
    import tensorflow as tf

    out = augment_batch(tf.constant(digits), tf.constant([0, 0], tf.int64), "none")
    np.testing.assert_array_equal(np.asarray(out), digits)


def test_dataset_is_reproducible_and_differs_between_epochs(mnist):
    def epochs(seed):
        data = make_dataset(mnist.x_train[:256], mnist.y_train[:256], 64, shuffle=True,
                            seed=seed, augment="photo")
        return [np.concatenate([x.numpy() for x, _ in data]) for _ in range(2)]

    run_a, run_b = epochs(5), epochs(5)
    np.testing.assert_array_equal(run_a[0], run_b[0])
    np.testing.assert_array_equal(run_a[1], run_b[1])
    assert not np.array_equal(run_a[0], run_a[1])


def test_dataset_scales_and_one_hot_encodes(mnist):
    data = make_dataset(mnist.x_test[:10], mnist.y_test[:10], 10, shuffle=False, seed=0)
    images, labels = next(iter(data))
    np.testing.assert_allclose(images.numpy()[..., 0], mnist.x_test[:10] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(labels.numpy().argmax(1), mnist.y_test[:10])

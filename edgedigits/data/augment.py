"""Data augmentation for training, in TensorFlow ops that run inside the tf.data pipeline.

Two recipes:
- ``basic``: random rotation, shear, zoom and shift (one affine warp per image);
- ``photo``: ``basic`` plus what photographed and scanned handwriting does to a digit after it
  has been cropped and normalised to MNIST's format: thicker or thinner strokes, blur,
  hard thresholding, broken strokes, sensor noise and weaker contrast.

Every random draw is *stateless*, keyed on (seed, batch number), so the same seed gives the same
augmented batches on every run whatever the number of tf.data threads.
"""

from __future__ import annotations

import math

AUGMENT_MODES = ("none", "basic", "photo")


def _uniform(shape, seed, low, high):
    import tensorflow as tf

    return tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)


def _chance(batch, seed, probability):
    """A (batch, 1, 1, 1) boolean mask that is True with ``probability`` per image."""
    return _uniform([batch, 1, 1, 1], seed, 0.0, 1.0) < probability


def _affine(images, seeds, *, degrees, shear, zoom, shift):
    """Rotate/shear/zoom/shift each image about its centre with one projective warp."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    size = tf.cast(tf.shape(images)[1], tf.float32)
    angle = _uniform([batch], seeds[0], -degrees, degrees) * (math.pi / 180.0)
    shear_x = _uniform([batch], seeds[1], -shear, shear)
    # Independent x/y zoom also varies the aspect ratio, as different writers do.
    scale_x = _uniform([batch], seeds[2], 1.0 - zoom, 1.0 + zoom)
    scale_y = scale_x * _uniform([batch], seeds[3], 0.9, 1.1)
    shift_xy = _uniform([batch, 2], seeds[4], -shift, shift)

    # Output->input mapping: inverse of (scale, shear, rotate) about the centre, then shift.
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0 = cos / scale_x
    a1 = (sin + shear_x * cos) / scale_x
    b0 = -sin / scale_y
    b1 = (cos - shear_x * sin) / scale_y
    centre = (size - 1.0) / 2.0
    a2 = centre - a0 * centre - a1 * centre - shift_xy[:, 0]
    b2 = centre - b0 * centre - b1 * centre - shift_xy[:, 1]
    zeros = tf.zeros_like(a0)
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def _photo_effects(images, seeds):
    import tensorflow as tf

    batch = tf.shape(images)[0]
    # Stroke width: pens and scans differ far more than MNIST's own writers.
    dilated = tf.nn.max_pool2d(images, 2, 1, "SAME")
    eroded = -tf.nn.max_pool2d(-images, 2, 1, "SAME")
    width = _uniform([batch, 1, 1, 1], seeds[0], 0.0, 1.0)
    images = tf.where(width < 0.25, dilated, tf.where(width > 0.85, eroded, images))
    # Hard thresholding, as binary scans (semeion, NIST forms) and Otsu-cleaned photos look.
    threshold = _uniform([batch, 1, 1, 1], seeds[1], 0.25, 0.6)
    binary = tf.cast(images > threshold, images.dtype)
    images = tf.where(_chance(batch, seeds[2], 0.3), binary, images)
    # Broken strokes: a few small holes punched into the ink.
    holes = tf.cast(_uniform(tf.shape(images), seeds[3], 0.0, 1.0) < 0.03, images.dtype)
    holes = tf.nn.max_pool2d(holes, 2, 1, "SAME")
    images = tf.where(_chance(batch, seeds[4], 0.2), images * (1.0 - holes), images)
    # Blur (defocus, motion) as a blend with a 3x3 box blur.
    kernel = tf.ones([3, 3, 1, 1], images.dtype) / 9.0
    blurred = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")
    amount = _uniform([batch, 1, 1, 1], seeds[5], 0.0, 1.0) * tf.cast(
        _chance(batch, seeds[6], 0.4), images.dtype
    )
    images = images * (1.0 - amount) + blurred * amount
    # Weaker contrast and a grey background, then sensor noise.
    gain = _uniform([batch, 1, 1, 1], seeds[7], 0.6, 1.0)
    floor = _uniform([batch, 1, 1, 1], seeds[8], 0.0, 0.15)
    images = floor + images * (gain - floor)
    sigma = _uniform([batch, 1, 1, 1], seeds[9], 0.0, 0.08)
    images = images + sigma * tf.random.stateless_normal(tf.shape(images), seed=seeds[10])
    return tf.clip_by_value(images, 0.0, 1.0)


def augment_batch(images, seed, mode: str):
    """Augment a float batch (N, 28, 28, 1) in [0, 1]; ``seed`` is a shape-[2] int tensor."""
    import tensorflow as tf

    if mode == "none":
        return images
    if mode not in AUGMENT_MODES:
        raise ValueError(f"unknown augmentation {mode!r}")
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, num=16))
    if mode == "basic":
        return _affine(images, seeds[:5], degrees=10.0, shear=0.0, zoom=0.1, shift=2.0)
    images = _affine(images, seeds[:5], degrees=12.0, shear=0.25, zoom=0.15, shift=2.0)
    return _photo_effects(images, seeds[5:16])

"""The digits-on-paper renderer: reproducible, readable, numbers labelled as drawn."""

from __future__ import annotations

import numpy as np

from edgedigits.data import render
from edgedigits.image import preprocess


def test_camera_like_renders_are_reproducible_and_still_readable(mnist):
    first = render.render_mnist_on_paper(mnist.x_test[:20], seed=1)
    again = render.render_mnist_on_paper(mnist.x_test[:20], seed=1)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (20, 160, 160) and first.dtype == np.uint8
    # Dark ink on lighter paper, and the preprocessing recovers digits like the originals.
    recovered = 0
    for photo, original in zip(first, mnist.x_test[:20], strict=True):
        assert np.median(photo) > photo.min() + 60
        digit = preprocess.to_mnist_format(photo)
        if digit is not None and np.corrcoef(digit.ravel(), original.ravel())[0, 1] > 0.5:
            recovered += 1
    assert recovered >= 17


def test_hard_variants_crop_to_the_ink_and_fade_it(mnist):
    photo = render.render_mnist_on_paper(mnist.x_test[:1], seed=4)[0]
    tight = render.cropped_to_ink(photo)
    assert tight.shape[0] < photo.shape[0] and tight.shape[1] < photo.shape[1]
    # the ink reaches the crop's edges
    dark = tight < (np.median(photo) + np.percentile(photo, 1)) / 2
    assert dark[0].any() and dark[-1].any() and dark[:, 0].any() and dark[:, -1].any()
    faint = render.faded(photo, 40)
    assert abs(np.median(faint) - np.median(photo)) <= 1
    assert 35 <= np.median(faint) - np.percentile(faint, 1) <= 45
    small = render.hard_variant(photo, "faint-small", np.random.default_rng(0))
    assert small.shape == (28, 28)

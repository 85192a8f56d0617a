"""Every registered architecture builds with the contract's input and output shapes."""

from __future__ import annotations

import numpy as np
import pytest

from edgedigits.errors import UserError
from edgedigits.training.architectures import ARCHITECTURES, build_model, get_architecture


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_shapes_and_softmax(name):
    model = build_model(name, seed=1)
    assert model.input_shape == (None, 28, 28, 1)
    assert model.output_shape == (None, 10)
    probabilities = np.asarray(model(np.random.default_rng(0).random((3, 28, 28, 1), np.float32)))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_tutorial_is_exactly_the_workshop_network():
    model = build_model("tutorial")
    layers = [type(layer).__name__ for layer in model.layers]
    assert layers == ["Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    conv, _, _, hidden, output = model.layers
    assert conv.filters == 32 and conv.kernel_size == (3, 3)
    assert hidden.units == 128 and output.units == 10
    assert model.count_params() == 693_962  # 320 + 5408*128+128 + 1290
    assert get_architecture("tutorial").recipe.batch_size == 128
    assert get_architecture("tutorial").recipe.epochs == 5
    assert get_architecture("tutorial").recipe.augment == "none"


def test_lenet5_is_the_classic_topology():
    dense = [layer.units for layer in build_model("lenet5").layers if hasattr(layer, "units")]
    assert dense == [120, 84, 10]


def test_same_seed_same_initial_weights():
    first, second = build_model("robust", seed=7), build_model("robust", seed=7)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(UserError, match="tutorial, lenet5, robust"):
        get_architecture("resnet")

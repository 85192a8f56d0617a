"""The Python API of README "Python API": a reader loaded once, fed paths and arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_classify import ink_box, overlap, paper_scene, reliable_digits

from edgedigits.errors import UserError


@pytest.fixture(scope="module")
def digits(ir_models_dir, mnist):
    return reliable_digits(ir_models_dir, mnist, per_class=1)


def test_readme_example_reads_a_number_from_a_path_and_an_array(ir_models_dir, digits,
                                                                 tmp_path):
    from edgedigits import DigitReader  # the import README shows

    labels, positions = [4, 0, 9], [(40, 120), (220, 140), (400, 110)]
    images = [digits[label][0] for label in labels]
    scene = paper_scene(images, positions)
    path = tmp_path / "number.png"
    cv2.imwrite(str(path), scene)
    with DigitReader(ir_models_dir) as reader:
        from_path = reader.read(str(path))
        from_array = reader.read(scene)
        blank = reader.read(np.full((200, 300), 230, np.uint8))
        one = reader.read_digit(paper_scene([digits[7][0]], [(40, 40)], size=(220, 220)))
    for reading in (from_path, from_array):
        assert reading.number == "409"
        for digit, image, position in zip(reading.digits, images, positions, strict=True):
            assert overlap(digit.box, ink_box(image, position)) > 0.5
            assert 0 < digit.confidence <= 1 and digit.top3[0]["digit"] == digit.digit
    assert blank.digits == [] and blank.number == ""
    assert one.digit == 7 and one.box is None


def test_bad_inputs_are_user_errors(ir_models_dir, tmp_path):
    from edgedigits import DigitReader

    reader = DigitReader(ir_models_dir)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UserError, match=r"text\.png"):
        reader.read(tmp_path / "text.png")
    with pytest.raises(UserError, match="image array"):
        reader.read(np.zeros(5, np.uint8))
    with pytest.raises(UserError, match="model not found"):
        DigitReader(tmp_path / "missing.xml")

"""Atomic writes: a failure leaves the previous file or folder exactly as it was."""

from __future__ import annotations

import os

import pytest

from edgedigits.errors import UserError
from edgedigits.files import atomic_path, ensure_writable_dir, write_json


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as staged:
        staged.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{")
    assert os.listdir(tmp_path) == ["report.json"]


def test_atomic_folder_swaps_whole_folder(tmp_path):
    target = tmp_path / "ir"
    for version in ("old", "new"):
        with atomic_path(target) as staged:
            staged.mkdir()
            (staged / "model.xml").write_text(version)
    assert (target / "model.xml").read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as staged:
        staged.mkdir()
        raise KeyboardInterrupt
    assert (target / "model.xml").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["ir"]


def test_unwritable_output_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        ensure_writable_dir(blocker / "sub")


def test_staged_set_publishes_all_together_or_nothing(tmp_path):
    from edgedigits.files import staged_set

    output = tmp_path / "models"
    members = ("model.keras", "saved_model", "metrics.json")
    with staged_set(output, "model", members) as staging:
        (staging / "model.keras").write_text("old model")
        (staging / "saved_model").mkdir()
        (staging / "saved_model" / "saved_model.pb").write_text("old graph")
        (staging / "metrics.json").write_text("old metrics")
    with pytest.raises(KeyboardInterrupt), staged_set(output, "model", members) as staging:
        (staging / "model.keras").write_text("new model")
        raise KeyboardInterrupt  # e.g. Ctrl-C during the SavedModel export
    assert (output / "model.keras").read_text() == "old model"
    with staged_set(output, "model", members) as staging:
        (staging / "saved_model").mkdir()
        (staging / "saved_model" / "saved_model.pb").write_text("new graph")
    # The new set replaces the old one as a whole: no old model beside the new graph.
    assert (output / "saved_model" / "saved_model.pb").read_text() == "new graph"
    assert not (output / "model.keras").exists() and not (output / "metrics.json").exists()
    assert sorted(p for p in os.listdir(output) if not p.startswith(".")) == ["saved_model"]

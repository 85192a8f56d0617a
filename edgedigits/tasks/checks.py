"""The check every runtime applies when it reads a model: is it a kind of model (a registered
task) the caller can use, with that kind's shapes? One line saying what is wrong, else.

``accept`` is a tuple of model types (``tasks.kinds_for(mode)``), or None for any registered
kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgedigits import contract
from edgedigits.errors import UserError
from edgedigits.tasks.base import Task, all_tasks, describe_kinds, find_task, task_for_shapes

if TYPE_CHECKING:
    import openvino as ov


def _shape_text(shape) -> str:
    return "[" + ", ".join("N" if dim is None else str(dim) for dim in shape) + "]"


def _accepted(accept: tuple[str, ...] | None) -> tuple[str, ...]:
    return tuple(accept) if accept is not None else tuple(t.model_type for t in all_tasks())


def _refuse_kind(task: Task, where: str, accept: tuple[str, ...]) -> UserError:
    return UserError(f"{where} is a {task.description}, not a {describe_kinds(accept)}"
                     f"{task.where_to_use}")


def check_signature(input_shape, output_shape, where: str,
                    accept: tuple[str, ...] | None = None) -> Task:
    """The task of a model with these shapes (batch first), one of ``accept``, else UserError."""
    accept = _accepted(accept)
    input_shape, output_shape = tuple(input_shape), tuple(output_shape)
    task = task_for_shapes(input_shape, output_shape)
    if task is not None and task.model_type in accept:
        return task
    if task is not None:
        raise _refuse_kind(task, where, accept)
    # one accepted kind shares a half of the shapes: say which half is wrong, in its own terms
    near = [find_task(kind) for kind in accept]
    near = [t for t in near if t is not None and (input_shape[1:] == t.input_shape
                                                   or output_shape[1:] == t.output_shape)]
    if len(accept) == 1 or len(near) == 1:
        expected = near[0] if len(near) == 1 else find_task(accept[0])
        if expected is not None:
            if len(input_shape) != 1 + len(expected.input_shape) or \
                    input_shape[1:] != expected.input_shape:
                wanted = _shape_text((None, *expected.input_shape))
                raise UserError(f"{where}: input must be {wanted} for a "
                                f"{expected.description}, got {_shape_text(input_shape)}")
            raise UserError(f"{where}: output must be "
                            f"{_shape_text((None, *expected.output_shape))} for a "
                            f"{expected.description}, got {_shape_text(output_shape)}")
    raise UserError(f"{where}: shapes {_shape_text(input_shape)} -> {_shape_text(output_shape)} "
                    "are no edgedigits model's")


def check_ir(model: ov.Model, path: Path, accept: tuple[str, ...] | None = None) -> Task:
    """Refuse any IR that is not an edgedigits model of a kind in ``accept``; its task."""
    import openvino as ov

    accept = _accepted(accept)
    metadata = contract.read_metadata(model)
    model_type = metadata.get("model_type")
    task = find_task(model_type)
    if task is None:
        found = "no edgedigits metadata" if model_type is None else f"model_type {model_type!r}"
        raise UserError(f"{path} is not an edgedigits {describe_kinds(accept)} ({found}); "
                        "convert a trained model with convert/to_ir.py")
    if task.model_type not in accept:
        raise _refuse_kind(task, str(path), accept)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{path}: expected one input and one output, got "
                        f"{len(model.inputs)} and {len(model.outputs)}")
    input_shape = model.input(0).get_partial_shape()
    output_shape = model.output(0).get_partial_shape()
    expected_input = ov.PartialShape([-1, *task.input_shape])
    expected_output = ov.PartialShape([-1, *task.output_shape])
    if not (input_shape.compatible(expected_input) and output_shape.compatible(expected_output)):
        size = "x".join(map(str, task.input_shape[:2]))
        raise UserError(f"{path} is not a {size} {task.description}: input {input_shape}, "
                        f"output {output_shape} (expected {expected_input} -> "
                        f"{expected_output})")
    if model.input(0).get_element_type() != ov.Type.u8:
        raise UserError(f"{path}: input must be uint8 raw pixels, got "
                        f"{model.input(0).get_element_type()}")
    return task


def ir_labels(model: ov.Model, task: Task) -> tuple[str, ...]:
    """The class labels an IR declares (the task's own when it declares none)."""
    parts = contract.read_metadata(model).get("labels", "").replace(",", " ").split()
    return tuple(parts) if len(parts) == len(task.labels) else task.labels

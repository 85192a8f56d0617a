"""The task layer: one wrapper per kind of model, chosen by the ``model_type`` it carries.

    from edgedigits.image.image import Image
    from edgedigits.tasks import get_task

    task = get_task(classifier.model_type)          # digit classifier, number reader, ...
    prepared = task.prepare(Image.read("photo.jpg"), "multi")
    reading = task.read(prepared, classifier.predict(prepared.inputs))
    print(reading.number, [d.box for d in reading.digits])   # boxes in the photo's pixels

``base`` holds the interface and the registry, ``result`` the one Reading, ``checks`` the model
checks every runtime applies; one module per kind (``digit_classifier``, ``number_reader``),
registered here. Adding a kind is one module and one :func:`register_task` line.
"""

from edgedigits.tasks.base import (
    MODES,
    MULTI,
    PEERS_NOTE,
    SINGLE,
    Prepared,
    Task,
    all_tasks,
    find_task,
    get_task,
    kind_of,
    kinds_for,
    model_types,
    register_task,
    task_for_shapes,
)
from edgedigits.tasks.digit_classifier import DigitClassifierTask
from edgedigits.tasks.number_reader import NumberReaderTask
from edgedigits.tasks.result import Digit, Reading

register_task(DigitClassifierTask())
register_task(NumberReaderTask())

__all__ = ["MODES", "MULTI", "PEERS_NOTE", "SINGLE", "Digit", "Prepared", "Reading", "Task",
           "all_tasks", "find_task", "get_task", "kind_of", "kinds_for", "model_types",
           "register_task", "task_for_shapes"]

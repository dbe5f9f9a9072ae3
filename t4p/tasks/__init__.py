"""One module per training task (``train.task``); each exports ``TASK``, an object with the ``Task`` interface.

``get_task(name)`` picks it by an explicit ``match`` (no registry): a new task is a module here, one
``case`` line below and its recipe (docs/architecture.md). Not to be confused with a sweep's benchmark
(``t4p.sweep.benchmarks``: a task on one dataset with the paper's numbers for it).
"""

from __future__ import annotations

from t4p.config import ConfigError
from t4p.tasks import det, insseg, pretrain, semseg
from t4p.tasks.base import Metric, Task

__all__ = ["Metric", "Task", "get_task"]


def get_task(name: str) -> Task:
    match name:
        case "pretrain":
            return pretrain.TASK
        case "semseg":
            return semseg.TASK
        case "insseg":
            return insseg.TASK
        case "det":
            return det.TASK
    raise ConfigError(f"train.task={name!r}: expected one of pretrain, semseg, insseg, det")

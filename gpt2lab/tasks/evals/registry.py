"""Finding evaluation tasks: every module of `gpt2lab.tasks.evals` that declares `TASK`
(one EvalTask) or `TASKS` (several) adds them, under their names. Nothing else to
register: drop a file in the folder and `gpt2lab evals list` shows it."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from gpt2lab.model.errors import Gpt2labError
from gpt2lab.tasks.evals.task import EvalTask


class UnknownTaskError(Gpt2labError):
    """A task name nobody declared; the message lists those that exist."""


@cache
def all_tasks() -> dict[str, EvalTask]:
    """Every declared task, by name (each module imported once per process)."""
    import gpt2lab.tasks.evals as package

    found: dict[str, EvalTask] = {}
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        declared = getattr(module, "TASKS", None) or [getattr(module, "TASK", None)]
        for task in declared:
            if not isinstance(task, EvalTask):
                continue
            if task.name in found:
                raise Gpt2labError(f"two eval tasks are named {task.name!r} ({module.__name__})")
            found[task.name] = task
    return dict(sorted(found.items()))


def get_tasks(names: list[str]) -> list[EvalTask]:
    """The tasks called `names`, in that order; UnknownTaskError names the others."""
    tasks = all_tasks()
    unknown = [name for name in names if name not in tasks]
    if unknown:
        raise UnknownTaskError(
            f"unknown eval task {unknown[0]!r}; available: {', '.join(tasks) or 'none'}"
        )
    return [tasks[name] for name in names]

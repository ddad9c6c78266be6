"""Finding evaluation tasks: every module of `tasks.evals.builtin` that declares `TASK`
(one EvalTask) or `TASKS` (several) adds them, under their names. Nothing else to
register: drop a file in that folder and `gpt2lab evals list` shows it.

Your own tasks need not live inside the installed package: the `.py` files of every
folder listed in GPT2LAB_EVAL_TASKS (separated like PATH) are read the same way."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from functools import cache
from pathlib import Path
from types import ModuleType

from model.errors import Gpt2labError
from tasks.evals import builtin
from tasks.evals.task import EvalTask

TASKS_PATH_VARIABLE = "GPT2LAB_EVAL_TASKS"


class UnknownTaskError(Gpt2labError):
    """A task name nobody declared; the message lists those that exist."""


@cache
def all_tasks() -> dict[str, EvalTask]:
    """Every declared task, built-in or from the user's folders, by name (each module
    imported once per process)."""
    found: dict[str, EvalTask] = {}
    modules = [
        importlib.import_module(f"{builtin.__name__}.{info.name}")
        for info in pkgutil.iter_modules(builtin.__path__)
    ]
    for folder in filter(None, os.environ.get(TASKS_PATH_VARIABLE, "").split(os.pathsep)):
        modules += [_load_file(path) for path in sorted(Path(folder).glob("*.py"))]
    for module in modules:
        declared = getattr(module, "TASKS", None) or [getattr(module, "TASK", None)]
        for task in declared:
            if not isinstance(task, EvalTask):
                continue
            if task.name in found:
                raise Gpt2labError(f"two eval tasks are named {task.name!r} ({module.__name__})")
            found[task.name] = task
    return dict(sorted(found.items()))


def _load_file(path: Path) -> ModuleType:
    """Import a task file from outside the package, under a name of its own."""
    name = f"gpt2lab_user_eval_tasks.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise Gpt2labError(f"{path}: cannot be imported as an eval task file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_tasks(names: list[str]) -> list[EvalTask]:
    """The tasks called `names`, in that order; UnknownTaskError names the others."""
    tasks = all_tasks()
    unknown = [name for name in names if name not in tasks]
    if unknown:
        raise UnknownTaskError(
            f"unknown eval task {unknown[0]!r}; available: {', '.join(tasks) or 'none'}"
        )
    return [tasks[name] for name in names]

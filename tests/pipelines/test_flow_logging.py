"""No flow turns `print` into log records (Prefect's `log_prints`).

dill, which `datasets` uses to fingerprint the functions it maps, finds a function's
globals by capturing what `dis.dis` prints to stdout. Under `log_prints`, Prefect replaces
`print` itself, so the capture gets nothing: every line of bytecode ("159 0 RESUME ...")
became a log record in the run's output, and dill saw no globals at all. Nothing in
gpt2lab's tasks prints; they log through Prefect's logger or MLflow.
"""

from __future__ import annotations

import importlib
import pkgutil

from prefect import Flow, Task

import pipelines


def _flows_and_tasks():
    for module_info in pkgutil.iter_modules(pipelines.__path__, "pipelines."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if isinstance(value, Flow | Task):
                yield f"{module_info.name}.{name}", value


def test_no_flow_or_task_logs_prints():
    found = dict(_flows_and_tasks())
    assert len(found) > 20  # the flows and tasks were found
    assert [name for name, each in found.items() if each.log_prints] == []

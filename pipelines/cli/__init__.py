"""The `gpt2lab` command: one verb per stage, each a thin layer over the code it runs.

Heavy libraries (torch, Prefect, MLflow) are imported inside the commands, so that
`gpt2lab --help` answers at once and the environment (workspace, telemetry off) is set
before Prefect or MLflow read it.

The verbs live with their kin: `teaching.py` (tokenize, generate, tour), `chat.py`
(chat), `stages.py`
(corpus, encode, train, finetune, evals, evaluate), `preferences.py` (compare,
serve-comparisons, preferences, tune), `runs.py` (demo, run, report, schedule, ui) and
`experiments.py` (experiment stylistic).
Importing them registers them on `app`.
"""

from __future__ import annotations

# Importing a verb module registers its commands on `app`, and `gpt2lab --help` lists
# them in the order they were registered: keep these imports in this order.
# isort: off
from pipelines.cli.common import app
from pipelines.cli import teaching  # noqa: F401
from pipelines.cli import chat  # noqa: F401
from pipelines.cli import stages  # noqa: F401
from pipelines.cli import preferences  # noqa: F401
from pipelines.cli import runs  # noqa: F401
from pipelines.cli import experiments  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console-script entry point
    app()

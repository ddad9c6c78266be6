"""Two models on the same task and the same rows: is the difference real?

The evaluate flow scores a baseline model and the candidate on identical rows, then asks
this module for each metric's paired difference (candidate - baseline), its 95% interval
and p-value (tasks/evals/uncertainty.py explains the method). A task can bring its own
test (`EvalTask.paired`: sacrebleu's for BLEU)."""

from __future__ import annotations

from tasks.evals.runner import TaskResult, bootstrap_seed, score_at, scoring_inputs
from tasks.evals.task import EvalTask, Row
from tasks.evals.uncertainty import PairedDifference, paired_bootstrap


def paired_differences(
    task: EvalTask, baseline: TaskResult, candidate: TaskResult, rows: list[Row]
) -> dict[str, PairedDifference]:
    """candidate - baseline for every metric, on `rows` (the rows both results scored)."""
    if len(baseline.examples) != len(rows) or len(candidate.examples) != len(rows):
        raise ValueError(
            f"task {task.name}: paired comparison needs both models scored on the same "
            f"{len(rows)} rows (got {len(baseline.examples)} and {len(candidate.examples)})"
        )
    references = [example["reference"] for example in candidate.examples]
    _, base_inputs = scoring_inputs(task, [e["raw_output"] for e in baseline.examples])
    _, cand_inputs = scoring_inputs(task, [e["raw_output"] for e in candidate.examples])
    if task.paired is not None:
        return dict(task.paired(base_inputs, cand_inputs, references, rows))
    return paired_bootstrap(
        score_at(task, base_inputs, references, rows),
        score_at(task, cand_inputs, references, rows),
        len(rows),
        resamples=task.bootstrap_resamples,
        seed=bootstrap_seed(task),
    )

"""Evaluation tasks, one declaration per file (see docs/adding-an-eval-task.md).

The framework: `task.py` (what a task declares), `data.py` (reading its rows),
`metrics.py` (BLEU, ROUGE and the paper's baselines), `registry.py` (finding tasks).
Every other module here declares tasks, as `TASK = EvalTask(...)` or `TASKS = [...]`.
"""

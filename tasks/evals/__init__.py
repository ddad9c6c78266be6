"""Evaluation: the framework here, the task declarations in `builtin/` (see
docs/adding-an-eval-task.md).

The framework: `task.py` (what a task declares, and the typed measurements a likelihood
task scores), `data.py` (reading its rows), `metrics.py` (BLEU, ROUGE and the paper's
baselines), `likelihood.py` (perplexity and continuation likelihood), `registry.py`
(finding tasks), `runner.py` (running one), `output_cache.py` (remembering outputs),
`paper.py` (the GPT-2 paper's figures per model size) and `beside_paper.py` (which one to
show beside a model), `uncertainty.py` and `paired.py` (intervals and paired
comparisons), and `contamination.py` (8-gram overlap of a task's rows with a corpus).
The tasks that ship live in `builtin/`, one file each; yours can live in any folder
listed in GPT2LAB_EVAL_TASKS.
"""

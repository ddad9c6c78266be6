"""The evaluation tasks that ship with gpt2lab, one declaration per file, with their
sample data in `local_data/` (so every task also runs offline).

Each module here declares `TASK = EvalTask(...)` or `TASKS = [...]` and nothing else:
the registry imports every module of this folder, so a new file is a new task. The
framework they use lives one level up, in `tasks.evals`.
"""

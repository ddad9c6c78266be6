"""The worked example of docs/adding-an-eval-task.md is discovered and runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from model import GPT, GPTConfig, load_tokenizer
from tasks.evals import registry
from tasks.evals.runner import evaluate_task

DOC = Path(__file__).resolve().parents[3] / "docs" / "adding-an-eval-task.md"


def test_the_documented_task_is_found_and_runs(tmp_path, monkeypatch, gpt2_vocab_dir):
    blocks = dict(re.findall(r"```(python|json)\n(.*?)```", DOC.read_text(), re.DOTALL))
    (tmp_path / "dialogue_next_turn.py").write_text(blocks["python"])
    (tmp_path / "dialogue.jsonl").write_text(blocks["json"])
    monkeypatch.setenv(registry.TASKS_PATH_VARIABLE, str(tmp_path))
    registry.all_tasks.cache_clear()
    try:
        (task,) = registry.get_tasks(["dialogue-next-turn"])
        assert "wmt14-en-fr" in registry.all_tasks()  # the built-in ones are still there
        torch.manual_seed(0)
        model = GPT(GPTConfig.preset("tiny")).eval()
        result = evaluate_task(task, model, load_tokenizer(gpt2_vocab_dir), "test-model")
    finally:
        registry.all_tasks.cache_clear()
    assert result.generated == 2 and set(result.scores) == {"rouge1", "exact"}
    assert result.examples[0]["prompt"].endswith("\nAna:")
    assert result.examples[0]["reference"] == "Good, we will need it at the crossing."

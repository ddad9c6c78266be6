"""The worked examples of docs/adding-an-eval-task.md are discovered and run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from model import GPT, GPTConfig, load_tokenizer
from tasks.evals import registry
from tasks.evals.runner import evaluate_task

DOC = Path(__file__).resolve().parents[3] / "docs" / "adding-an-eval-task.md"
# A file name in backticks, then (with no other backticks between) a python or json block.
NAMED_BLOCK = re.compile(r"`([\w.]+\.(?:py|jsonl))`[^`]*?\n```(?:python|json)\n(.*?)```", re.DOTALL)


def test_the_documented_tasks_are_found_and_run(tmp_path, monkeypatch, gpt2_vocab_dir):
    files = dict(NAMED_BLOCK.findall(DOC.read_text()))
    assert set(files) == {"dialogue_next_turn.py", "dialogue_reply_likelihood.py", "dialogue.jsonl"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # Lint-clean under the project's own rules, as a contributor's task file must be.
    ruff = Path(sys.executable).with_name("ruff")
    checked = subprocess.run(
        [str(ruff), "check", "--config", str(DOC.parents[1] / "pyproject.toml"), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    monkeypatch.setenv(registry.TASKS_PATH_VARIABLE, str(tmp_path))
    registry.all_tasks.cache_clear()
    try:
        generated, measured = registry.get_tasks(
            ["dialogue-next-turn", "dialogue-reply-likelihood"]
        )
        assert "wmt14-en-fr" in registry.all_tasks()  # the built-in ones are still there
        torch.manual_seed(0)
        model = GPT(GPTConfig.preset("tiny")).eval()
        tokenizer = load_tokenizer(gpt2_vocab_dir)
        result = evaluate_task(generated, model, tokenizer, "test-model")
        likelihood = evaluate_task(measured, model, tokenizer, "test-model")
    finally:
        registry.all_tasks.cache_clear()
    assert result.generated == 2 and set(result.scores) == {"rouge1", "exact"}
    assert result.examples[0]["prompt"].endswith("\nAna:")
    assert result.examples[0]["reference"] == "Good, we will need it at the crossing."
    # An untrained model: about log2(50257) / ~4.5 bytes per token, well above 1 bit.
    assert likelihood.generated == 2 and likelihood.scores["bits_per_byte"] > 1.0
    assert likelihood.scores["greedy"] == 0.0
    assert likelihood.examples[0]["prompt"] == result.examples[0]["prompt"]


def test_the_documented_evaluate_command_names_the_model_the_demo_makes(tmp_path, monkeypatch):
    from pipelines.end_to_end import EndToEndConfig

    monkeypatch.setenv("GPT2LAB_HOME", str(tmp_path / "workspace"))
    command = re.search(r"gpt2lab evaluate --model (\S+)", DOC.read_text()).group(1)
    demo = EndToEndConfig(name="demo").run_dir() / "finetune" / "checkpoints" / "best"
    assert Path(command) == demo.relative_to(tmp_path)

"""A sampled eval output depends only on its row, the task and the task's seed: not on the
batch size, the order of the rows, or which rows the output cache already held."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, SamplingConfig, generate, load_tokenizer
from tasks.evals.output_cache import OutputCache, row_seed
from tasks.evals.runner import TaskResult, evaluate_task
from tasks.evals.task import DataSource, EvalTask, Generation

# Eight prompts of different lengths, so every batch is padded differently.
TEXTS = [
    "The river",
    "A short story about a lighthouse keeper who",
    "Once",
    "In the morning the market opened and the traders",
    "Numbers: one, two, three,",
    "She said",
    "The recipe needs flour, water, salt and a",
    "Why",
]


def sampled_task(folder: Path, texts: list[str]) -> EvalTask:
    """Top-k 2 sampling, as in the TL;DR task, on `texts` in the order given."""
    data = folder / f"rows-{abs(hash(tuple(texts)))}.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return EvalTask(
        name="sampled-continuation",
        version=1,
        description="continue a text with top-k 2 sampling",
        data=DataSource(local=data),
        fields=("text",),
        prompt=lambda row, examples: row["text"],
        reference=lambda row: row["text"],
        score=lambda outputs, references, rows: {"rows": float(len(outputs))},
        generation=Generation(max_new_tokens=8, top_k=2, seed=0),
    )


@pytest.fixture(scope="module")
def model_and_tokenizer(gpt2_vocab_dir):
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("tiny", block_size=64)).eval(), load_tokenizer(gpt2_vocab_dir)


def by_prompt(result: TaskResult) -> dict[str, str]:
    return {example["prompt"]: example["raw_output"] for example in result.examples}


def test_outputs_do_not_depend_on_batch_order_or_cached_rows(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    task = sampled_task(tmp_path, TEXTS)
    reference = by_prompt(evaluate_task(task, model, tokenizer, "m", batch_size=1))
    assert len(set(reference.values())) == len(TEXTS)  # sampled text, not one fixed answer

    for batch_size in (3, 8):
        result = evaluate_task(task, model, tokenizer, "m", batch_size=batch_size)
        assert by_prompt(result) == reference, f"batch size {batch_size}"

    shuffled = sampled_task(tmp_path, TEXTS[3:] + TEXTS[:3][::-1])
    assert by_prompt(evaluate_task(shuffled, model, tokenizer, "m", batch_size=3)) == reference

    with OutputCache(tmp_path / "cache.db") as cache:
        # Three rows cached first (from the shuffled order), the other five generated later
        # in batches of rows that were never together before.
        evaluate_task(shuffled, model, tokenizer, "m", cache, limit=3, batch_size=2)
        result = evaluate_task(task, model, tokenizer, "m", cache, batch_size=3)
    assert (result.generated, result.from_cache) == (5, 3)
    assert by_prompt(result) == reference


def test_two_rows_sample_from_different_streams(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    seeds = [row_seed(0, "sampled-continuation", 1, text) for text in TEXTS]
    assert len(set(seeds)) == len(TEXTS) and all(0 <= seed < 2**63 for seed in seeds)
    # The same prompt continued with two rows' seeds: the draws themselves differ.
    prompt = tokenizer.encode("The same words")
    sampling = SamplingConfig(max_new_tokens=12, top_k=2)
    first, second = generate(model, [prompt, prompt], sampling, seeds=seeds[:2])
    assert first.tokens != second.tokens


def test_a_rows_seed_is_the_same_in_every_process():
    # A hash of the content (Python's own `hash` of a string changes per process).
    assert row_seed(0, "sampled-continuation", 1, "Why") == 4047758253249140190
    assert row_seed(1, "sampled-continuation", 1, "Why") != 4047758253249140190


def _key_before_row_seeds(prompt: str, task: EvalTask) -> str:
    """An output's key as it was computed before rows had seeds of their own."""
    settings = dataclasses.asdict(task.generation)
    record = json.dumps(["m", task.name, task.version, prompt, settings], sort_keys=True)
    return hashlib.sha256(record.encode("utf-8")).hexdigest()


def test_sampled_outputs_cached_before_row_seeds_are_not_reused(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    sampled = sampled_task(tmp_path, TEXTS[:2])
    greedy = dataclasses.replace(sampled, name="greedy", generation=Generation(max_new_tokens=8))
    with OutputCache(tmp_path / "cache.db") as cache:
        for task in (sampled, greedy):
            cache.put_many((_key_before_row_seeds(t, task), "old output") for t in TEXTS[:2])
        fresh = evaluate_task(sampled, model, tokenizer, "m", cache)
        kept = evaluate_task(greedy, model, tokenizer, "m", cache)
    # They drew from a generator shared with the rest of their batch: generated again.
    assert (fresh.generated, fresh.from_cache) == (2, 0)
    # Greedy outputs never depended on the batch: still answered from the cache.
    assert (kept.generated, kept.from_cache) == (0, 2)
    assert {e["raw_output"] for e in kept.examples} == {"old output"}

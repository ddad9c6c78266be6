"""The `personachat` task: a model fine-tuned on persona-format dialogues ranks the reply
that was written above its distractors more often than before, on dialogues it never saw;
and the metrics mean what the task says (ConvAI2's word F1, a strict Hits@1)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, load_model, save_checkpoint, train_bpe
from tasks.dialogue.data import training_texts
from tasks.evals.builtin import personachat
from tasks.evals.data import EvalDataError, read_rows, task_rows
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task
from tasks.evals.task import ChoiceLikelihoods
from tasks.train.loop import train
from tasks.train.settings import TrainSettings
from tasks.train.text_data import tokens_from_text_file

LOCAL = Path(personachat.__file__).with_name("local_data")
TRAIN_SPLIT = LOCAL / "personachat.train.jsonl"


def test_word_f1_is_convai2s_normalised_word_overlap():
    f1 = personachat.word_f1
    assert f1("The cat sleeps!", "a cat, sleeps") == 1.0  # case, punctuation, articles
    assert f1("I have two dogs", "I have a cat") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert f1("dog dog dog", "dog") == pytest.approx(0.5)  # repeats count once per match
    assert f1("", "anything") == 0.0 and f1("the", "a") == 0.0


def test_hits_at_1_needs_the_gold_reply_strictly_likeliest():
    scored = personachat.score(
        [
            ChoiceLikelihoods(nll=[5.0, 4.0, 1.0], tokens=[3, 3, 2], written="yes a cat"),
            ChoiceLikelihoods(nll=[1.0, 4.0, 1.0], tokens=[3, 3, 2], written="no"),  # a tie
        ],
        ["Yes, a cat.", "A dog."],
        [{}, {}],
    )
    assert scored["hits_at_1"] == 0.5
    assert scored["perplexity"] == pytest.approx(math.exp(2.0 / 4))  # the gold reply's tokens
    # Word F1 1.0 and 0.0, reported on 0-100 as ConvAI2 prints it (not 0.5).
    assert scored["f1"] == pytest.approx(50.0)


def test_the_shipped_sample_is_in_the_hubs_layout_and_apart_from_the_training_split():
    (task,) = get_tasks(["personachat"])
    rows = task_rows(task)
    assert len(rows) >= 100 and task.kind == "choice"
    assert all(len(row["candidates"]) == 8 and len(row["history"]) % 2 == 1 for row in rows)
    context, candidates = task.choices(rows[0])
    assert context.endswith("\nYou:") and context.startswith("Persona: ")
    assert candidates[-1] == " " + rows[0]["candidates"][-1] + "\n"
    # Held out: no dialogue of the sample (its persona and opening) is a training dialogue.
    held_out = {(tuple(r["personality"]), r["history"][0]) for r in rows}
    lines = TRAIN_SPLIT.read_text().splitlines()
    trained = [json.loads(line) for line in lines]
    assert not held_out & {
        (tuple(d["personality"]), d["utterances"][0]["history"][0]) for d in trained
    }


def test_a_row_whose_turns_are_not_lists_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"personality": "I am a cat.", "candidates": ["x"], "history": []}))
    with pytest.raises(EvalDataError, match=r"bad.jsonl:1: row 1: field 'personality' .*list"):
        read_rows(bad, (), list_fields=personachat.TASK.list_fields)


@pytest.fixture
def one_thread():
    """Two threads on a 2-core machine shared with other test processes contend, and the
    training below runs several times slower: one thread is faster there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_fine_tuning_on_persona_dialogues_raises_hits_at_1_on_held_out_dialogues(
    tmp_path, one_thread
):
    # A tiny model with a BPE learnt from the training split: the model before fine-tuning.
    tokenizer = train_bpe(training_texts(TRAIN_SPLIT), 512, tmp_path / "bpe")
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=512, block_size=128, n_layer=2, n_head=2, n_embd=64)
    base = tmp_path / "base"
    save_checkpoint(GPT(config), base)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copy(tmp_path / "bpe" / name, base / name)

    # Fine-tune on the training split, read as persona-chat dialogues.
    tokens = tokens_from_text_file(TRAIN_SPLIT, str(base), tmp_path / "data", format="persona-chat")
    settings = TrainSettings(
        tokens=tokens,
        init_from=str(base),
        context=128,
        micro_batch=8,
        batch_tokens=1024,
        max_steps=500,
        warmup_steps=10,
        learning_rate=1e-2,
        eval_interval=500,
        checkpoint_interval=500,
        device="cpu",
    )
    tuned = train(settings, tmp_path / "run").last_checkpoint

    (task,) = get_tasks(["personachat"])
    before = evaluate_task(task, load_model(base), tokenizer, "before")
    after = evaluate_task(task, load_model(tuned), tokenizer, "after")
    assert before.rows == after.rows == 120
    chance = 1 / 8
    assert before.scores["hits_at_1"] < chance + 0.1  # a model that knows nothing: chance
    assert after.scores["hits_at_1"] > before.scores["hits_at_1"] + 0.15
    # ...and beyond the interval of the model before (n = 120 rows).
    assert after.scores["hits_at_1"] > before.intervals["hits_at_1"][1]
    assert after.scores["perplexity"] < before.scores["perplexity"] / 10
    assert after.scores["f1"] > before.scores["f1"]


def test_a_choice_task_measures_every_candidate_and_its_cached_outputs_score_the_same(tmp_path):
    from tasks.evals.likelihood import continuation_nll, encode_pair
    from tasks.evals.output_cache import OutputCache

    tokenizer = train_bpe(training_texts(TRAIN_SPLIT), 300, tmp_path / "bpe")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, block_size=256, n_layer=1, n_head=2, n_embd=32))
    (task,) = get_tasks(["personachat"])
    cache = OutputCache(tmp_path / "cache.db")
    first = evaluate_task(task, model, tokenizer, "random", cache, limit=3, batch_size=2)
    again = evaluate_task(task, model, tokenizer, "random", cache, limit=3, batch_size=2)
    assert (first.generated, again.from_cache) == (3, 3) and again.scores == first.scores
    assert first.rows == 3 and set(first.intervals) == {"hits_at_1", "perplexity", "f1"}

    # One row's measurement: each candidate's -log p after the context, as read alone.
    row = task_rows(task, limit=1)[0]
    measured = ChoiceLikelihoods(**json.loads(first.examples[0]["raw_output"]))
    context, candidates = task.choices(row)
    assert len(measured.nll) == len(candidates) == 8
    for nll, tokens, candidate in zip(measured.nll, measured.tokens, candidates, strict=True):
        pair = encode_pair(tokenizer, context, candidate)
        assert tokens == len(pair[1])
        assert nll == pytest.approx(continuation_nll(model, *pair).nll, rel=1e-4)
    assert isinstance(measured.written, str)  # the greedy reply, kept raw in the cache

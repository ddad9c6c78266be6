"""gpt2lab's LAMBADA and WikiText figures equal lm-evaluation-harness's, computed by the
harness's own code (its task YAMLs, prompts, windowing and metrics, and its Hugging Face
model class) on the same rows and the same model.

The model is a tiny random GPT-2, exported as a Hugging Face folder for the harness. A
random model gets no real last word right, and 0 = 0 would prove little; so half of the
passages end instead with the word this model itself writes greedily after their
context (a random GPT-2 mostly repeats the last token: "... played the the"). Those rows
are right by construction, the others wrong: the per-row verdicts must agree. The
harness's tasks are built from its installed `lambada_openai.yaml` and `wikitext.yaml`,
with only the data source changed to the JSON-lines files this test writes. Nothing is
downloaded (tests/conftest.py sets the hubs offline).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from model import GPT, GPTConfig, export_hf_folder, load_tokenizer
from tasks.evals.builtin.lambada import last_word
from tasks.evals.data import read_rows
from tasks.evals.likelihood import continuation_nll, encode_pair
from tasks.evals.registry import get_tasks
from tasks.evals.runner import evaluate_task, measurement_from_text
from tasks.evals.task import DataSource

pytestmark = pytest.mark.slow

CONTEXT = 64  # short, so that every WikiText page is read in several windows
RELATIVE = 1e-4
# One page shorter than a window, beside the shipped ones (several windows each).
SHORT_PAGE = " = Note = \n \n A short page , read in one window . \n"
# Extra passages, so that accuracy is measured on a dozen rows.
MORE_PASSAGES = [
    "The bakery opened at six every morning, and by seven the queue reached the corner. "
    "People came for the rye loaves, which sold out first, and then for the bread",
    "She tied the boat to the post, climbed onto the jetty and walked up to the house. "
    "The key was under the mat, where her uncle always left the key",
    "Every winter the pond froze solid, and the village children skated on it after "
    "school until their parents called them home from the pond",
    "He checked the map again. The trail went north along the river, crossed a wooden "
    "bridge and climbed to the hut, so they followed the river",
    "The museum's new wing holds the collection of clocks. The oldest one still keeps "
    "good time, and visitors gather at noon to hear the clock",
    "At the end of the concert the audience stood and clapped for a long time, until the "
    "conductor turned and bowed to the audience",
]


@pytest.fixture(scope="module")
def setting(tmp_path_factory, gpt2_vocab_dir):
    """(model, tokenizer, HF folder, LAMBADA rows file, WikiText rows file)."""
    folder = tmp_path_factory.mktemp("harness")
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", block_size=CONTEXT)).eval()
    export_hf_folder(model, folder / "model", tokenizer=tokenizer)

    lambada, wikitext = get_tasks(["lambada", "wikitext2-perplexity"])
    real = [row["text"] for row in read_rows(lambada.data.local, ("text",))] + MORE_PASSAGES
    passages = [
        _ending_as_the_model_writes(model, tokenizer, text) if i % 2 == 0 else text
        for i, text in enumerate(real)
    ]
    assert sum(a != b for a, b in zip(passages, real, strict=True)) >= 3, "too few rows made"
    pages = [row["page"] for row in read_rows(wikitext.data.local, ("page",))] + [SHORT_PAGE]
    lambada_file = folder / "lambada.jsonl"
    lambada_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in passages))
    wikitext_file = folder / "wikitext.jsonl"
    wikitext_file.write_text("".join(json.dumps({"page": p}) + "\n" for p in pages))
    return model, tokenizer, folder / "model", lambada_file, wikitext_file


def _ending_as_the_model_writes(model: GPT, tokenizer, passage: str) -> str:
    """`passage` with its last word replaced by the model's greedy next word, when that
    is a word (a space, then letters or digits); else the passage unchanged."""
    context, target = last_word({"text": passage})
    # The model's most likely token after the context: continuation_nll's `next_token`
    # after the context's last word (itself read as the target).
    words = context.rsplit(" ", 1)
    head, tail = encode_pair(tokenizer, words[0], " " + words[1])
    piece = tokenizer.decode([continuation_nll(model, head, tail).next_token])
    return context + piece if re.fullmatch(r" [A-Za-z0-9]+", piece) else passage


def _harness(folder: Path, yaml: str, data: Path) -> dict:
    """The harness's own evaluation of the HF model in `folder` on its task `yaml`
    (relative to lm_eval/tasks), reading `data` instead of the hub."""
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(lm_eval.__file__).parent / "tasks" / yaml)
    config.update(
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={"data_files": {"test": str(data)}},
        training_split=None,
        validation_split=None,
    )
    model = HFLM(pretrained=str(folder), device="cpu", batch_size=1)
    assert model.max_length == CONTEXT and model.prefix_token_id == 50256
    return lm_eval.simple_evaluate(
        model=model, tasks=[ConfigurableTask(config=config)], bootstrap_iters=0, log_samples=True
    )


def _ours(task, model, tokenizer, data: Path):
    task = dataclasses.replace(task, data=DataSource(local=data))
    return evaluate_task(task, model, tokenizer, "harness-test")


def test_lambada_equals_lambada_openai(setting):
    model, tokenizer, folder, lambada_file, _ = setting
    (task,) = get_tasks(["lambada"])
    ours = _ours(task, model, tokenizer, lambada_file)
    theirs = _harness(folder, "lambada/lambada_openai.yaml", lambada_file)

    samples = sorted(theirs["samples"]["lambada_openai"], key=lambda s: s["doc_id"])
    measured = [measurement_from_text("loglikelihood", e["raw_output"]) for e in ours.examples]
    # Row by row: the same greedy verdict, the same log-likelihood of the last word.
    assert [m.greedy for m in measured] == [bool(s["acc"]) for s in samples]
    for ours_row, their_row in zip(measured, samples, strict=True):
        assert -ours_row.nll == pytest.approx(their_row["perplexity"], rel=RELATIVE)
    right = sum(m.greedy for m in measured)
    assert 0 < right < len(measured), "the comparison needs some rows right and some wrong"

    result = theirs["results"]["lambada_openai"]
    assert ours.scores["accuracy"] == result["acc,none"]
    assert ours.scores["perplexity"] == pytest.approx(result["perplexity,none"], rel=RELATIVE)
    # Whole-word accuracy asks for more than the harness's: never above it.
    assert ours.scores["accuracy_whole_word"] <= ours.scores["accuracy"]


def test_wikitext_equals_the_harness_wikitext(setting):
    model, tokenizer, folder, _, wikitext_file = setting
    (task,) = get_tasks(["wikitext2-perplexity"])
    assert (task.stride, task.score_first_token) == (None, True)  # the harness's default
    ours = _ours(task, model, tokenizer, wikitext_file)
    theirs = _harness(folder, "wikitext/wikitext.yaml", wikitext_file)["results"]["wikitext"]

    for metric in ("word_perplexity", "bits_per_byte", "byte_perplexity"):
        assert ours.scores[metric] == pytest.approx(theirs[f"{metric},none"], rel=RELATIVE)
    # Several windows per page were needed: the comparison covers the windowing.
    pages = [json.loads(line)["page"] for line in wikitext_file.read_text().splitlines()]
    longest = max(len(tokenizer.encode(task.prompt({"page": p}, []))) for p in pages)
    assert longest > 2 * CONTEXT

"""The built-in tasks: discovered by name, prompts built as the GPT-2 paper describes,
data checked row by row."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from model import load_tokenizer
from tasks.evals import builtin
from tasks.evals.data import EvalDataError, read_rows
from tasks.evals.registry import UnknownTaskError, all_tasks, get_tasks


def test_the_built_in_tasks_are_discovered():
    assert {"wmt14-en-fr", "wmt14-fr-en", "cnn-dailymail-tldr", "cnn-dailymail-no-hint"} <= set(
        all_tasks()
    )
    with pytest.raises(
        UnknownTaskError, match=r"unknown eval task 'wmt15'; available: .*wmt14-en-fr"
    ):
        get_tasks(["wmt14-en-fr", "wmt15"])


def test_translation_prompt_is_example_pairs_then_the_sentence():
    (task,) = get_tasks(["wmt14-en-fr"])
    examples = [{"en": "Good morning.", "fr": "Bonjour."}, {"en": "Thank you.", "fr": "Merci."}]
    row = {"en": "The cat sleeps.", "fr": "Le chat dort."}
    assert (
        task.prompt(row, examples)
        == "Good morning. = Bonjour.\nThank you. = Merci.\nThe cat sleeps. ="
    )
    (back,) = get_tasks(["wmt14-fr-en"])
    assert back.prompt(row, examples[:1]) == "Bonjour. = Good morning.\nLe chat dort. ="
    assert task.generation.greedy and task.reference(row) == "Le chat dort."
    # The translation is the first sentence of the first line written.
    assert task.postprocess(" Le chien dort. Il rêve.\nThe bird = L'oiseau") == "Le chien dort."
    assert task.postprocess("") == ""


def test_few_shot_examples_come_from_their_own_pool_with_a_fixed_seed():
    (task,) = get_tasks(["wmt14-en-fr"])
    pool = read_rows(task.data.few_shot_local, task.fields)
    first = task.few_shot_examples(pool, row_index=0)
    assert len(first) == 5 and first == task.few_shot_examples(pool, row_index=0)
    assert task.few_shot_examples(pool, row_index=1) != first  # each row its own draw
    rows = read_rows(task.data.local, task.fields)
    assert not {r["en"] for r in rows} & {r["en"] for r in pool}  # never the rows scored


def test_tldr_prompt_is_the_article_then_the_hint():
    tldr, no_hint = get_tasks(["cnn-dailymail-tldr", "cnn-dailymail-no-hint"])
    row = {"article": "Rain fell. Roads closed.", "highlights": "Rain closed roads."}
    assert tldr.prompt(row, []) == "Rain fell. Roads closed.\nTL;DR:"
    assert no_hint.prompt(row, []) == "Rain fell. Roads closed."
    assert (tldr.generation.top_k, tldr.generation.max_new_tokens) == (2, 100)
    assert tldr.postprocess(" One. Two! Three? Four.") == "One. Two! Three?"
    # Table 4 is the 1542M model's; its R-L is summary-level, rouge-score's rougeLsum.
    assert tldr.paper["rouge1"].by_size == {"1542M": pytest.approx(29.34)}
    assert tldr.paper["rougeLsum"].by_size == {"1542M": pytest.approx(26.58)}
    assert tldr.paper["r_avg"].by_size == {"1542M": pytest.approx(21.40)}
    assert "rougeL" not in tldr.paper
    assert no_hint.paper["r_avg"].by_size == {"1542M": pytest.approx(15.03)}


def test_an_article_too_long_for_the_context_keeps_its_opening_and_the_hint(gpt2_vocab_dir):
    from model import load_tokenizer
    from tasks.evals.runner import fit_prompt

    tokenizer = load_tokenizer(gpt2_vocab_dir)
    (tldr,) = get_tasks(["cnn-dailymail-tldr"])
    (wmt,) = get_tasks(["wmt14-en-fr"])
    article = "The opening sentence matters most. " + "Filler words go on and on. " * 50
    ids = fit_prompt(tldr, tokenizer, tldr.prompt({"article": article}, []), room=40)
    text = tokenizer.decode(ids)
    assert len(ids) <= 40
    assert text.startswith("The opening sentence matters most.") and text.endswith("\nTL;DR:")
    # Few-shot translation keeps its end instead: the sentence to translate.
    prompt = "a = b\n" * 40 + "The last sentence ="
    kept = tokenizer.decode(fit_prompt(wmt, tokenizer, prompt, room=20))
    assert kept.endswith("The last sentence =") and len(kept) < len(prompt)


def test_tldr_scores_include_the_baselines_on_the_same_articles():
    (task,) = get_tasks(["cnn-dailymail-tldr"])
    rows = read_rows(task.data.local, task.fields)
    references = [task.reference(row) for row in rows]
    scores = task.score(references, references, rows)  # an oracle
    assert scores["rouge1"] == pytest.approx(100.0)  # 0-100, as the paper prints ROUGE
    assert 0 < scores["random3/rouge1"] < scores["lede3/rouge1"] < 100.0


def test_a_row_missing_a_field_is_named(tmp_path: Path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"en": "a", "fr": "b"}) + "\n\n" + json.dumps({"en": "c"}) + "\n")
    with pytest.raises(EvalDataError, match=r"rows.jsonl:3: row 2: field 'fr' is missing"):
        read_rows(data, ("en", "fr"))
    csv = tmp_path / "rows.csv"
    csv.write_text("en,fr\nhello,bonjour\n")
    assert read_rows(csv, ("en", "fr")) == [{"en": "hello", "fr": "bonjour"}]
    with pytest.raises(EvalDataError, match=r"rows.csv:2: row 1: field 'de' is missing"):
        read_rows(csv, ("en", "de"))
    data.write_text('{"en": 3, "fr": "x"}\n')
    with pytest.raises(EvalDataError, match=r"field 'en' is int, not text"):
        read_rows(data, ("en", "fr"))


def test_hub_rows_are_reshaped_into_the_task_fields(monkeypatch):
    import datasets

    from tasks.evals.data import few_shot_pool, task_rows

    asked = []

    def fake_load_dataset(hub_id, config, split):
        asked.append((hub_id, config, split))
        pair = {"translation": {"en": f"Hello {split}.", "fr": f"Bonjour {split}."}}
        return datasets.Dataset.from_list([pair] * 6)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (task,) = get_tasks(["wmt14-en-fr"])
    assert task_rows(task, "hub", limit=2) == [{"en": "Hello test.", "fr": "Bonjour test."}] * 2
    assert few_shot_pool(task, "hub")[0]["en"] == "Hello validation."
    assert asked == [("wmt14", "fr-en", "test"), ("wmt14", "fr-en", "validation")]


def test_a_hub_dataset_that_cannot_load_offline_says_so_in_one_line():
    from tasks.evals.data import task_rows

    (task,) = get_tasks(["lambada"])  # tests run offline: nothing is cached either
    with pytest.raises(
        EvalDataError,
        match=r"hub dataset EleutherAI/lambada_openai/default:test cannot be loaded .*--source",
    ) as error:
        task_rows(task, "hub")
    assert "\n" not in str(error.value)


def test_a_file_dropped_in_the_builtin_folder_is_a_task(tmp_path: Path, monkeypatch):
    """Nothing to register: the registry imports every module of `tasks.evals.builtin`
    (here the folder is extended with a temporary one, to leave the source tree alone)."""
    (tmp_path / "echo_task.py").write_text(
        "from pathlib import Path\n"
        "from tasks.evals.task import DataSource, EvalTask\n"
        "TASK = EvalTask(name='echo', version=1, description='d',\n"
        "    data=DataSource(local=Path('rows.jsonl')), fields=('text',),\n"
        "    prompt=lambda row, examples: row['text'], reference=lambda row: row['text'],\n"
        "    score=lambda outputs, references, rows: {})\n"
    )
    monkeypatch.setattr(builtin, "__path__", [*builtin.__path__, str(tmp_path)])
    all_tasks.cache_clear()
    try:
        assert "echo" in all_tasks() and "lambada" in all_tasks()
    finally:
        all_tasks.cache_clear()
        sys.modules.pop("tasks.evals.builtin.echo_task", None)


def test_the_wheel_carries_every_builtin_task_data_file():
    """pyproject's package-data for `tasks.evals.builtin` covers each file a built-in
    task reads, so an installed gpt2lab runs its tasks offline too."""
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"][
        "tasks.evals.builtin"
    ]
    folder = Path(builtin.__file__).parent
    for task in all_tasks().values():
        for path in filter(None, [task.data.local, task.data.few_shot_local]):
            relative = path.relative_to(folder)
            assert any(relative.match(glob) for glob in globs), f"{task.name}: {relative}"


def test_lambada_splits_a_passage_as_the_harness_templates_do():
    """The harness's lambada_openai.yaml `doc_to_text` / `doc_to_target`, rendered with
    jinja2 as it renders them, give our context and target."""
    import jinja2
    import lm_eval

    yaml = Path(lm_eval.__file__).parent / "tasks" / "lambada" / "lambada_openai.yaml"
    templates = dict(
        line.split(": ", 1) for line in yaml.read_text().splitlines() if line.startswith("doc_to_")
    )
    (task,) = get_tasks(["lambada"])
    for text in ["He sat at the piano", "Two  spaces  here", "A line\nbreak then word", "one"]:
        theirs = [
            jinja2.Template(json.loads(templates[key])).render(text=text)
            for key in ("doc_to_text", "doc_to_target")
        ]
        assert list(task.continuation({"text": text})) == theirs
    assert task.data.hub_id == "EleutherAI/lambada_openai" and task.data.hub_config == "default"


def test_a_hint_the_prompt_does_not_end_with_is_named(gpt2_vocab_dir):
    import dataclasses

    from tasks.evals.runner import fit_prompt

    (task,) = get_tasks(["cnn-dailymail-tldr"])
    broken = dataclasses.replace(task, hint="\nSummary:")
    prompt = task.prompt({"article": "Words. " * 50}, [])
    with pytest.raises(ValueError, match=r"cnn-dailymail-tldr: .* its hint '\\nSummary:'"):
        fit_prompt(broken, load_tokenizer(gpt2_vocab_dir), prompt, room=20)


def test_the_model_receives_the_fitted_summary_prompt(monkeypatch, gpt2_vocab_dir):
    """Through the runner: with a context of 128 and 100 new tokens, the model reads
    the article's first 20 tokens and the hint."""
    from types import SimpleNamespace

    from model import GPT, GPTConfig
    from tasks.evals import runner

    received = []

    def fake_generate(model, prompts, config, **kwargs):  # records what the model would read
        received.extend(prompts)
        return [SimpleNamespace(tokens=[]) for _ in prompts]

    monkeypatch.setattr(runner, "generate", fake_generate)
    (task,) = get_tasks(["cnn-dailymail-tldr"])
    tokenizer = load_tokenizer(gpt2_vocab_dir)
    model = GPT(GPTConfig.preset("tiny", block_size=128)).eval()
    runner.evaluate_task(task, model, tokenizer, "tiny", limit=2)
    rows = read_rows(task.data.local, task.fields)[:2]
    for ids, row in zip(received, rows, strict=True):
        hint = tokenizer.encode("\nTL;DR:")
        assert len(ids) == 128 - 100 and ids[-len(hint) :] == hint
        assert ids[: -len(hint)] == tokenizer.encode(row["article"])[: 28 - len(hint)]

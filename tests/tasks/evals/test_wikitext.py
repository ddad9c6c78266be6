"""WikiText-2 as lm-evaluation-harness reads it: the same detokenised text, words counted
on the original page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tasks.evals.builtin.wikitext2_perplexity import detokenize, words
from tasks.evals.data import task_rows
from tasks.evals.registry import get_tasks

TRICKY = [
    " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre "
    "actor . He had a guest @-@ starring role on the television series The Bill in 2000 . \n",
    " = = Career = = \n \n = = = 2000 – 2005 = = = \n \n = = = = Notes = = = = \n",
    " The team 's players ' wages rose by 1 @,@ 000 pounds ; the 3 @.@ 5 % rise was \" not "
    'enough " , he said ( in 2010 ) . \n',
    " It was N metres long [ citation needed ] { sic } : about 12 ° C ! Really ? Yes . \n",
    " The Smiths ' house and ' Tis the season ' are quoted ; 'single' stays . \n",
    " odd /' 5/ text and an unbalanced ( bracket , \" quote \n and ' apostrophe s ' \n",
    "",
    "no tokenisation at all, already plain text.",
]


@pytest.fixture(scope="module")
def harness_detokenizer():
    """lm-evaluation-harness's own `wikitext_detokenizer`, loaded from its file (importing
    the `lm_eval.tasks` package would index every task it ships)."""
    spec = importlib.util.find_spec("lm_eval")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "tasks" / "wikitext" / "preprocess_wikitext.py"
    module_spec = importlib.util.spec_from_file_location("harness_wikitext", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", TRICKY)
def test_the_detokeniser_gives_the_harness_text(harness_detokenizer, page):
    assert detokenize(page) == harness_detokenizer.wikitext_detokenizer({"page": page})


def test_the_shipped_sample_detokenises_as_the_harness_does(harness_detokenizer):
    (task,) = get_tasks(["wikitext2-perplexity"])
    for row in task_rows(task):
        text = task.prompt(row, [])
        assert text == harness_detokenizer.wikitext_detokenizer(row)
        assert " @-@ " not in text and " , " not in text  # the sample exercises the rules


def test_words_and_bytes_are_counted_on_the_original_page(harness_detokenizer):
    (task,) = get_tasks(["wikitext2-perplexity"])
    page = TRICKY[2]
    counted = harness_detokenizer.process_results({"page": page}, [-1.0])
    assert counted["word_perplexity"] == (-1.0, words(page))
    assert words(page) == len(re.split(r"\s+", page)) > len(detokenize(page).split())
    assert counted["bits_per_byte"] == (-1.0, len(page.encode("utf-8")))


def test_detokenised_text_is_what_the_model_reads():
    (task,) = get_tasks(["wikitext2-perplexity"])
    assert task.fields == ("page",) and task.kind == "perplexity"
    assert task.data.hub_id == "EleutherAI/wikitext_document_level"
    assert (task.data.hub_config, task.data.hub_split) == ("wikitext-2-raw-v1", "test")
    row = {"page": " = A = \n \n It 's 1 @,@ 000 km . \n"}
    assert task.prompt(row, []) == " = A =\n\nIt's 1,000 km.\n"

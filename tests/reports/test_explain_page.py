"""The `gpt2lab explain` page: self-contained, hostile text shown as text, every view there,
and clean in a real browser (Chromium through Playwright: the `browser` fixture in
tests/conftest.py, which keeps it off the network)."""

from __future__ import annotations

import re

import pytest
import torch

from model.config import GPTConfig
from model.explain import explain_prompt
from model.gpt import GPT
from model.sampling import SamplingConfig
from model.tokenizer import ReferenceBPE, load_tokenizer
from reports.explain_page import write_explain_page

HOSTILE = 'Read <script>document.title="pwned"</script> & <b>this</b> tokenization.'


@pytest.fixture(scope="module")
def explanation(gpt2_vocab_dir):
    torch.manual_seed(0)
    net = GPT(GPTConfig(vocab_size=50257, block_size=64, n_layer=2, n_head=2, n_embd=32))
    sampling = SamplingConfig(max_new_tokens=4, temperature=0.9, top_k=30, top_p=0.95, seed=1)
    tok = load_tokenizer(gpt2_vocab_dir)
    return explain_prompt(net, tok, ReferenceBPE(gpt2_vocab_dir), HOSTILE, sampling)


@pytest.fixture(scope="module")
def page_file(explanation, tmp_path_factory):
    """The page written once for the whole module (drawing it takes a second or two)."""
    folder = tmp_path_factory.mktemp("explain") / "not-there-yet"
    return write_explain_page(explanation, folder / "explain.html", model_name="tiny <i>x</i>")


@pytest.fixture(scope="module")
def page(page_file) -> str:
    return page_file.read_text(encoding="utf-8")


def test_the_page_loads_nothing_and_runs_nothing(page):
    assert "<script" not in page.lower()
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert links, "the page has pictures and a table of contents"
    for link in links:
        assert link.startswith(("data:image/png;base64,", "#")), link[:80]
    assert not re.search(r"url\(|@import|https?://", page)


def test_hostile_model_text_is_shown_as_text(page):
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in page
    assert "<b>this</b>" not in page and "<i>x</i>" not in page
    assert "tiny &lt;i&gt;x&lt;/i&gt;" in page


def test_every_view_is_there_with_a_caption(page, explanation):
    for anchor in ("tokens", "mask", "attention", "next", "generation"):
        assert f'<section id="{anchor}">' in page
    # tokens, merges, mask, attention grid, last token's attention, next tokens, generation
    assert page.count('<p class="caption">') == 7
    n_layer, n_head = explanation.attention.shape[:2]
    assert page.count('alt="attention of layer') == n_layer * n_head
    assert explanation.word is not None
    assert explanation.word.word == " tokenization"  # the word of most merges
    assert "How BPE built “␣tokenization”" in page
    assert explanation.trace.stop_reason in page


def test_the_page_is_written_whole(page_file, explanation):
    written = page_file.read_text(encoding="utf-8")
    assert written.startswith("<!DOCTYPE html>") and written.rstrip().endswith("</html>")
    assert [p.name for p in page_file.parent.iterdir()] == ["explain.html"]  # no leftovers


def test_the_page_in_a_real_browser(browser, page_file, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")

    assert problems == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    assert page.title() == "Inside GPT-2: tiny <i>x</i>"  # the prompt's script did not run
    assert '<script>document.title="pwned"</script>' in page.inner_text("pre")
    broken = page.evaluate(
        "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length"
    )
    assert broken == 0  # every inline picture decodes
    shot = tmp_path / "explain.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.close()


def test_a_run_report_links_to_its_explain_page():
    from reports.run_data import RunReport
    from reports.run_report import render_html, render_markdown

    report = RunReport(
        run_id="0" * 32,
        name="e2e",
        kind="end-to-end",
        status="FINISHED",
        started="2026-01-01 00:00 UTC",
        git_commit="",
        tags={},
        params={},
        stages={},
    )
    links = [("Inside the <fine-tuned> model", "../explain/explain.html")]
    html = render_html(report, links)
    assert '<a href="../explain/explain.html">Inside the &lt;fine-tuned&gt; model</a>' in html
    assert "[Inside the &lt;fine-tuned&gt; model](../explain/explain.html)" in render_markdown(
        report, links
    )
    assert "explain.html" not in render_html(report)  # no page, no link

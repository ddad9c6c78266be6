"""The report of one end-to-end run, and a comparison of several, from what MLflow recorded.

    report = collect(parent_run_id)         # read MLflow once (run_data.py)
    html, markdown = render_html(report), render_markdown(report)
    write_report(parent_run_id, "reports/run-42")   # report.html + report.md
    html, markdown = compare([run_a, run_b])         # one column per run

The HTML page is self-contained: inline CSS, charts as base64 PNG, no scripts and no
external URLs, so it can be mailed, archived or opened offline. The only links it may hold
are the `links` a caller passes: relative paths to pages written beside it (the end-to-end
run's explain page). Everything MLflow holds is
untrusted text (a run name or a model's sample may contain `<script>`): Jinja2 escapes it
in HTML, and `_md` in Markdown.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from mlflow.tracking import MlflowClient

from model.atomic_files import write_file_atomically
from reports.html_page import page_template
from reports.run_data import RunReport, collect
from reports.run_sections import (
    MISSING,
    Chart,
    Section,
    Table,
    interval,
    num,
    paper_label,
    score_with_interval,
    sections,
)

__all__ = ["collect", "compare", "render_html", "render_markdown", "write_report"]

logger = logging.getLogger(__name__)

_PAGE = """{% extends "page.html" %}
{% block style %}
td { overflow-wrap: break-word; }  /* a long path or URL wraps when it cannot fit */
caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
img { max-width: 100%; display: block; margin: 0.8rem 0; }
.warning { background: #fff4e5; border-left: 4px solid #e8a33d; padding: 0.5rem 0.8rem; }
.badge { padding: 0.05rem 0.4rem; border-radius: 0.3rem; background: #eee; }
.badge.finished { background: #dff3e0; } .badge.cached { background: #e3ecfa; }
.badge.failed, .badge.killed { background: #fadcdc; } .badge.not-run { background: #eee; }
{% endblock %}
{% block body %}
<h1>{{ title }}</h1>
{% if sections | length > 1 %}<nav>{% for s in sections %}
<a href="#{{ s.anchor }}">{{ s.title }}</a>{% endfor %}
</nav>{% endif %}
{% for text, href in links %}<p class="link"><a href="{{ href }}">{{ text }}</a></p>
{% endfor %}
{% macro table(t) %}
<table>{% if t.caption %}<caption>{{ t.caption }}</caption>{% endif %}
{% if t.headers | select | list %}
<thead><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>{% endif %}
<tbody>{% for row in t.rows %}
<tr>{% for cell in row %}{% if loop.index0 == t.status_column %}
<td><span class="badge {{ cell.split(':')[0].replace(' ', '-') }}">{{ cell }}</span></td>
{%- else %}<td>{{ cell }}</td>{% endif %}{% endfor %}</tr>{% endfor %}
</tbody></table>
{% endmacro %}
{% for s in sections %}
<section id="{{ s.anchor }}">
<h2>{{ s.title }}</h2>
{% if s.warning %}<p class="warning">{{ s.warning }}</p>{% endif %}
{% for note in s.notes %}<p>{{ note }}</p>
{% endfor %}
{% if charts.get(s.anchor) %}<img src="{{ charts[s.anchor] }}" alt="{{ s.chart_alt }}">{% endif %}
{% for t in s.tables %}{{ table(t) }}
{% endfor %}
{% if s.text %}<p>{{ s.text_caption }}</p>
<pre>{{ s.text }}</pre>{% endif %}
{% if s.settings %}<details><summary>{{ s.settings.caption }}</summary>
{{ table(s.settings) }}</details>{% endif %}
</section>
{% endfor %}
{% endblock %}
{% block footer %}Made by gpt2lab from what MLflow recorded.{% endblock %}
"""
_TEMPLATE = page_template(_PAGE)


Links = Sequence[tuple[str, str]]  # (text, relative path) of pages beside the report


def render_html(report: RunReport, links: Links = ()) -> str:
    """One self-contained HTML page: the summary, lineage, corpus funnel, loss curves,
    evaluation beside the GPT-2 paper, and preference win rates; `links` under the title."""
    return _page(f"gpt2lab run: {report.name}", sections(report), links)


def render_markdown(report: RunReport, links: Links = ()) -> str:
    """The same report as Markdown tables (no charts)."""
    return _markdown(f"gpt2lab run: {report.name}", sections(report), links)


def compare(parent_run_ids: Sequence[str], client: MlflowClient | None = None) -> tuple[str, str]:
    """Several end-to-end runs side by side, one column per run: (HTML, Markdown)."""
    client = client or MlflowClient()
    reports = [collect(run_id, client) for run_id in parent_run_ids]
    section = Section("Runs side by side", "comparison", tables=[comparison_table(reports)])
    section.notes.append(
        "Scores and win rates show their 95% interval in brackets. The GPT-2 paper's figure "
        "is the one for the first run's model size; “only” marks a figure the paper "
        "reports for another size alone. Two models on the same rows are compared properly "
        "with `gpt2lab evaluate --baseline`, which pairs the rows."
    )
    title = f"gpt2lab: {len(reports)} runs compared"
    return _page(title, [section]), _markdown(title, [section])


def comparison_table(reports: Sequence[RunReport]) -> Table:
    """Rows of figures, one column per run (and one for the paper's figure)."""
    headers = ["", "GPT-2 paper", *(f"{r.name} ({r.run_id[:8]})" for r in reports)]
    rows: list[list[str]] = []

    def add(label: str, cells: Iterable[str], paper: str = "") -> None:
        rows.append([label, paper, *cells])

    add("started", (r.started for r in reports))
    add("status", (r.status for r in reports))
    add(
        "stages run",
        (f"{sum(s.ran for s in r.stages.values())} of {len(r.stages)}" for r in reports),
    )
    add("documents kept", (num(r.documents_kept()) for r in reports))
    add("tokens (train)", (num(r.train_tokens()) for r in reports))
    for stage in ("pretrain", "finetune"):
        add(f"final validation loss ({stage})", (num(r.final_val_loss(stage)) for r in reports))

    # Each evaluation score (with its interval), in the order the runs first show it. The
    # paper column holds the first run's figure, labelled with its size.
    scores = [{(row.task, row.metric): row for row in r.eval_rows()} for r in reports]
    for key in _ordered_union(scores):
        papers = [paper_label(s[key]) for s in scores if key in s and s[key].paper is not None]
        cells = (
            score_with_interval(s[key].value, s[key].low, s[key].high) if key in s else MISSING
            for s in scores
        )
        add(f"{key[0]}: {key[1]}", cells, papers[0] if papers else "")
    add("eval rows scored", (_eval_rows_scored(r) for r in reports))

    # Win rates under their metric names: short labels that line up across runs.
    rates = [{w.label: w for w in r.win_rate_metrics()} for r in reports]
    for label in _ordered_union(rates):
        cells = (
            interval(w.rate, w.low, w.high) if (w := found.get(label)) else MISSING
            for found in rates
        )
        add(f"win rate: {label}", cells)
    add("preference judge", (r.judge() or MISSING for r in reports))
    add("git commit", (r.git_commit or MISSING for r in reports))
    return Table(headers, rows)


def _eval_rows_scored(report: RunReport) -> str:
    counts = sorted({t.rows for t in report.stage("evaluate").tasks if t.rows is not None})
    return ", ".join(num(n) for n in counts) if counts else MISSING


def write_report(
    parent_run_id: str,
    folder: str | Path,
    client: MlflowClient | None = None,
    *,
    links: Links = (),
) -> tuple[Path, Path]:
    """Write `report.html` and `report.md` for one run into `folder`; return their paths.
    `links`: (text, path relative to `folder`) of pages to link to from the top.

    Each file is written under a temporary name and renamed into place, so a reader never
    sees half a report."""
    report = collect(parent_run_id, client)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    html_path, md_path = folder / "report.html", folder / "report.md"
    write_file_atomically(html_path, render_html(report, links))
    write_file_atomically(md_path, render_markdown(report, links))
    return html_path, md_path


# -- HTML -------------------------------------------------------------------------------


def _page(title: str, parts: list[Section], links: Links = ()) -> str:
    charts = {s.anchor: uri for s in parts if s.chart and (uri := _data_uri(s.chart))}
    return _TEMPLATE.render(title=title, sections=parts, charts=charts, links=links)


def _data_uri(chart: Chart) -> str:
    """Draw a chart into a temporary PNG and return it as a `data:` URI for <img src>.

    A chart that cannot be drawn is left out (and logged): the figures are in the tables."""
    with tempfile.TemporaryDirectory(prefix="gpt2lab-chart-") as tmp:
        try:
            png = chart(Path(tmp) / "chart.png").read_bytes()
        except Exception:  # matplotlib's errors are many; a report without a chart is fine
            logger.warning("could not draw a chart for the report", exc_info=True)
            return ""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# -- Markdown ---------------------------------------------------------------------------


def _markdown(title: str, parts: list[Section], links: Links = ()) -> str:
    lines = [f"# {_md(title)}", ""]
    lines += [line for text, href in links for line in (f"[{_md(text)}]({href})", "")]
    for section in parts:
        lines += [f"## {_md(section.title)}", ""]
        if section.warning:
            lines += [f"> **Warning:** {_md(section.warning)}", ""]
        for note in section.notes:
            lines += [_md(note), ""]
        for table in section.tables:
            lines += _md_table(table)
        if section.text:
            lines += [_md(section.text_caption), "", *_md_code(section.text), ""]
        if section.settings:
            lines += _md_table(section.settings)
    return "\n".join(lines).rstrip() + "\n"


def _md_table(table: Table) -> list[str]:
    lines = [f"**{_md(table.caption)}**", ""] if table.caption else []
    lines.append("| " + " | ".join(_md(h) for h in table.headers) + " |")
    lines.append("|" + "---|" * len(table.headers))
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in table.rows]
    return [*lines, ""]


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell: no raw HTML, no `|`, on one line."""
    return " ".join(html.escape(str(text), quote=False).replace("|", "\\|").split())


def _md_code(text: str) -> list[str]:
    # A fence longer than any run of backticks in the text, so the text cannot close it.
    fence = "`" * max(3, _longest_backtick_run(text) + 1)
    return [fence + "text", text, fence]


def _longest_backtick_run(text: str) -> int:
    best = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        best = max(best, current)
    return best


def _ordered_union(mappings: Iterable[dict]) -> list:
    """Every key of the mappings, in the order first seen."""
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))

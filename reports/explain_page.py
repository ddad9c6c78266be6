"""The teaching page of `gpt2lab explain`: what GPT-2 does with one prompt, in pictures.

    explanation = model.explain.explain_prompt(model, tokenizer, bpe, prompt, sampling)
    html = render_explain_page(explanation, model_name="tiny")
    write_explain_page(explanation, "explain.html", model_name="tiny")

Five sections, each picture with a caption in plain words: the BPE tokens (and the
merges that built one word), the causal mask on one head, the attention of every layer
and head, the next-token probabilities at each position, and generation step by step.

The page is one self-contained file: inline CSS, pictures as inline PNG (`data:` URIs),
no scripts and nothing fetched from the network, so it can be mailed or opened offline.
The prompt and everything the model wrote are untrusted text: Jinja2 escapes them.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display needed, safe in worker threads
import matplotlib.pyplot as plt  # noqa: E402

from model.atomic_files import write_file_atomically  # noqa: E402
from model.explain import Explanation  # noqa: E402
from model.tokenizer.byte_map import token_text_to_bytes, visible  # noqa: E402
from reports.html_page import page_template  # noqa: E402

# The file name the page gets beside a report, and where `gpt2lab explain --log` puts it:
# the `explain/` artifact folder of the model's run, or a new run in the `explain` experiment.
EXPLAIN_PAGE = "explain.html"
EXPLAIN_ARTIFACT_DIR = "explain"
EXPLAIN_EXPERIMENT = "explain"
# The causal-mask view shows the first tokens only: its numbers are written in the cells.
# Causality makes this a faithful corner of the full matrix: the first n positions never
# see the later ones, so their rows are the same whatever follows.
MASK_TOKENS = 12
# The shown size of each small heatmap (the PNG has one pixel per cell): 96 px, smaller
# when there are many heads, so that a row of them fits the page (12 heads: 72 px).
HEATMAP_PX, GRID_PX = 96, 880
COLORMAP = "viridis"

_PAGE = """{% extends "page.html" %}
{% block style %}
.caption { color: #444; max-width: 60rem; }
.tok { font-family: ui-monospace, monospace; white-space: pre; padding: 0 0.15rem;
       border-radius: 0.2rem; }
.tokens .tok:nth-child(odd) { background: #fde9a6; }
.tokens .tok:nth-child(even) { background: #bfe6f2; }
.tokens .tok { display: inline-block; margin: 0.1rem 0; }
.merges li { margin: 0.2rem 0; } .merges .tok { background: #eee; margin-right: 0.2rem; }
.merges .new { background: #c6ecc6; }
.grid td { padding: 2px; border: none; text-align: center; font-size: 0.75rem; }
.grid img { width: {{ heatmap_px }}px; height: {{ heatmap_px }}px; image-rendering: pixelated;
            display: block; }
img.figure { max-width: 100%; display: block; margin: 0.8rem 0; }
.row { margin: 0.15rem 0; } .row .who { display: inline-block; width: 5.5rem; color: #555; }
.row .tok { border: 1px solid #ddd; }
.bars td { white-space: nowrap; }
.bar { display: inline-block; height: 0.7rem; background: #4c72b0; vertical-align: middle;
       margin-right: 0.3rem; }
.bar.after { background: #dd8452; }
.cand { display: inline-block; min-width: 9rem; }
.drawn { background: #c6ecc6; }
.rank1 { background: #c6ecc6; } .rank-top { background: #f0f7d8; }
.rank-low { background: #fadcdc; }
{% endblock %}
{% block body %}
{% macro bar(c, kind) %}<span class="cand">
<span class="bar{{ kind }}" style="width: {{ c.width }}px"></span>
<span class="tok{% if c.drawn %} drawn{% endif %}">{{ c.text }}</span> {{ c.prob }}</span>
{%- endmacro %}
<h1>{{ title }}</h1>
<p>Prompt:</p>
<pre>{{ ex.prompt }}</pre>
<nav><a href="#tokens">Tokens</a><a href="#mask">The causal mask</a>
<a href="#attention">Attention</a><a href="#next">Next-token probabilities</a>
<a href="#generation">Generation</a></nav>

<section id="tokens">
<h2>Tokens</h2>
<p class="tokens">{% for t in tokens -%}
<span class="tok" title="id {{ t.id }}">{{ t.text }}</span>
{%- endfor %}</p>
<p class="caption">GPT-2 does not read letters or words but tokens: pieces of text from a
vocabulary of {{ "{:,}".format(n_vocab) }} entries. The prompt above became {{ tokens | length }}
tokens (coloured in turn). Common words are one token; rarer ones are split into
pieces. A space belongs to the word after it, shown as ␣. The table gives each token's id,
the number the model actually sees.</p>
<details><summary>Token ids</summary>
<table><thead><tr><th>#</th><th>token</th><th>id</th></tr></thead><tbody>
{% for t in tokens %}<tr><td>{{ loop.index0 }}</td>
<td><span class="tok">{{ t.text }}</span></td><td>{{ t.id }}</td></tr>
{% endfor %}</tbody></table></details>
{% if word %}
<h3>How BPE built “{{ word.text }}”</h3>
<ol class="merges">
<li>Start: one piece per byte:
{% for p in word.start %}<span class="tok">{{ p }}</span>{% endfor %}</li>
{% for step in word.steps %}<li>Merge rule {{ "{:,}".format(step.rank) }}: join
<span class="tok">{{ step.left }}</span> + <span class="tok">{{ step.right }}</span> →
{% for p in step.pieces %}
<span class="tok{% if p == step.joined %} new{% endif %}">{{ p }}</span>
{% endfor %}</li>
{% endfor %}</ol>
<p class="caption">Byte-pair encoding (BPE) builds tokens by merging. The word starts as
single bytes. The merges file lists pairs in the order training found them most frequent;
at each step the pair of neighbours that comes first in that list is joined (in green),
until no neighbouring pair is in the list. What is left are the word's tokens. Merges
never cross word boundaries, so every word is built on its own.{% if not word.steps %}
This word is a single byte: there was nothing to merge.{% endif %}</p>
{% endif %}
</section>

<section id="mask">
<h2>The causal mask</h2>
<img class="figure" src="{{ mask_png }}" alt="Scores of layer {{ ex.mask.layer }}, head
{{ ex.mask.head }} before masking, with the future at minus infinity, and after softmax">
<p class="caption">How one attention head (layer {{ ex.mask.layer }}, head {{ ex.mask.head }})
decides where to look, for the first {{ mask_n }} tokens
{%- if mask_n < tokens | length %} (the rows are the same in the whole prompt: these
positions never see later ones){% endif %}.
Row = the token that is looking, column = the token it looks at. Left: the raw scores, how
well each query matches each key. Middle: the causal mask sets every score in the future
(above the diagonal) to minus infinity, because when the model predicts the next token it
must not peek at it. Right: a softmax turns each row into weights that add up to 1;
e to the minus infinity is exactly 0, so the future gets no weight at all.</p>
</section>

<section id="attention">
<h2>Attention</h2>
<table class="grid"><thead><tr><th></th>
{% for h in range(n_head) %}<th>head {{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for layer in heatmaps %}{% set li = loop.index0 %}<tr><th>layer {{ li }}</th>
{% for png in layer %}
<td><img src="{{ png }}" alt="attention of layer {{ li }}, head {{ loop.index0 }}"></td>
{% endfor %}</tr>
{% endfor %}</tbody></table>
<p class="caption">Every head of every layer, as small pictures of {{ tokens | length }}
× {{ tokens | length }} weights: row = the token looking, column = the token looked at,
bright = much weight, dark = none (colour scale 0 to 1, the same for all). Each head
learns its own pattern: some look at the previous token, some at the first one, some
spread out. The upper right triangle is always dark: that is the causal mask.</p>
<h3>Where the last token looks</h3>
{% for row in last_rows %}<div class="row"><span class="who">layer {{ loop.index0 }}</span>
{% for cell in row %}
<span class="tok" style="background: rgba(76, 114, 176, {{ cell.alpha }})"
 title="{{ cell.weight }}">{{ cell.text }}</span>
{% endfor %}</div>
{% endfor %}
<p class="caption">The attention of the last token, “{{ last_token }}”, in each layer,
averaged over the layer's {{ n_head }} heads: the darker a token, the more of it flows
into the last position, which is the one that predicts what comes next. Hover a token to
see its weight. Each row adds up to 1.</p>
</section>

<section id="next">
<h2>Next-token probabilities</h2>
<table class="bars"><thead><tr><th>#</th><th>after</th>
<th>the model's top {{ top }} guesses for the next token</th><th>what came</th>
<th>its probability</th><th>its rank</th></tr></thead>
<tbody>{% for r in next_rows %}<tr><td>{{ r.position }}</td>
<td><span class="tok">{{ r.text }}</span></td>
<td>{% for c in r.candidates %}{{ bar(c, "") }}{% endfor %}</td>
<td>{% if r.actual %}<span class="tok">{{ r.actual }}</span>{% else %}—{% endif %}</td>
<td>{{ r.actual_prob }}</td><td class="{{ r.rank_class }}">{{ r.rank }}</td></tr>
{% endfor %}</tbody></table>
<p class="caption">At every position the model outputs one number per vocabulary entry; a
softmax turns them into probabilities over all {{ "{:,}".format(n_vocab) }} tokens that
add up to 1. Each row shows the {{ top }} most likely next tokens after the token on the
left (bar length = probability), then the token that actually came next in the prompt,
the probability the model gave it and its rank (1 = the model's first guess). Training
makes these probabilities higher: the loss is minus the log of “its probability”.</p>
</section>

<section id="generation">
<h2>Generation, step by step</h2>
<p>Settings: {{ settings }}.</p>
<table class="bars"><thead><tr><th>step</th>
<th>the model's distribution (top {{ top }})</th><th>after the filter (top {{ top }})</th>
<th>tokens left</th><th>drawn</th></tr></thead>
<tbody>{% for s in step_rows %}<tr><td>{{ loop.index }}</td>
<td>{% for c in s.before %}{{ bar(c, "") }}<br>{% endfor %}</td>
<td>{% for c in s.after %}{{ bar(c, " after") }}<br>{% endfor %}</td>
<td>{{ s.kept }}</td><td><span class="tok drawn">{{ s.token }}</span></td></tr>
{% endfor %}</tbody></table>
<p>The loop stopped after {{ step_rows | length }}
step{{ "" if step_rows | length == 1 else "s" }}: {{ ex.trace.stop_reason }}.</p>
<pre>{{ ex.prompt }}<strong>{{ ex.continuation }}</strong></pre>
<p class="caption">Text is generated one token at a time. At each step the model gives a
distribution over the next token (blue). The sampling settings then reshape it (orange):
the temperature sharpens it (below 1) or flattens it (above 1); top-k keeps only the k
most likely tokens; top-p keeps the fewest tokens whose probabilities add up to p; what
is left is scaled to add up to 1 again. One token is drawn at random from it (green),
appended to the text, and the loop runs again on the longer text, until the model draws
the end-of-text token, a stop text appears, or the allowed number of tokens is reached.
The continuation is in bold.</p>
</section>
{% endblock %}
{% block footer %}
Made by gpt2lab explain{% if model_name %} for {{ model_name }}{% endif %}.
{%- endblock %}
"""
_TEMPLATE = page_template(_PAGE)


def render_explain_page(ex: Explanation, *, model_name: str = "") -> str:
    """The whole page as one HTML string."""
    label = ex.labels.get
    tokens = [{"id": i, "text": label(i, str(i))} for i in ex.ids]
    mask_n = min(MASK_TOKENS, len(ex.ids))
    return _TEMPLATE.render(
        title=f"Inside GPT-2{f': {model_name}' if model_name else ''}",
        ex=ex,
        model_name=model_name,
        n_vocab=ex.n_vocab,
        tokens=tokens,
        word=_word(ex),
        mask_n=mask_n,
        mask_png=_png_uri(mask_figure(ex, mask_n)),
        heatmaps=[[heatmap_png(head) for head in layer] for layer in ex.attention],
        heatmap_px=max(32, min(HEATMAP_PX, GRID_PX // ex.attention.shape[1])),
        n_head=ex.attention.shape[1],
        last_rows=_last_token_rows(ex, tokens),
        last_token=tokens[-1]["text"],
        top=ex.next_tokens.top_ids.shape[1],
        next_rows=_next_rows(ex),
        settings=_settings(ex),
        step_rows=_step_rows(ex),
    )


def write_explain_page(ex: Explanation, path: str | Path, *, model_name: str = "") -> Path:
    """Write the page to `path` (atomically: a reader never sees half a page)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, render_explain_page(ex, model_name=model_name))
    return path


# -- Pictures -----------------------------------------------------------------------------


def heatmap_png(weights: np.ndarray) -> str:
    """A (T, T) matrix of weights in [0, 1] as a PNG `data:` URI, one pixel per cell.

    The browser scales it up without smoothing (CSS `image-rendering: pixelated`): 144
    heads of 64 x 64 stay small this way, where a matplotlib figure per head would take
    seconds and a picture with axes would not fit in a grid."""
    buffer = io.BytesIO()
    plt.imsave(buffer, weights, cmap=COLORMAP, vmin=0.0, vmax=1.0, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_figure(ex: Explanation, n: int) -> bytes:
    """The three matrices of the causal-mask view side by side, as PNG bytes."""
    view = ex.mask
    labels = [_plain(ex.labels.get(i, str(i))) for i in ex.ids[:n]]
    panels = [
        ("scores q·k/√d", view.scores[:n, :n]),
        ("future set to −∞", view.masked[:n, :n]),
        ("softmax: attention weights", view.weights[:n, :n]),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for ax, (title, matrix) in zip(axes, panels, strict=True):
        finite = np.where(np.isfinite(matrix), matrix, np.nan)
        cmap = plt.get_cmap(COLORMAP).with_extremes(bad="#d9d9d9")  # -inf cells: grey, "−∞"
        image = ax.imshow(finite, cmap=cmap)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        for (row, col), value in np.ndenumerate(matrix):
            dark = np.isfinite(value) and image.norm(value) < 0.5  # viridis is dark below
            text = "−∞" if np.isneginf(value) else f"{value:.2f}"
            color = "white" if dark else "#222"
            ax.text(col, row, text, ha="center", va="center", fontsize=6, color=color)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("key: the token looked at")
        ax.set_title(title)
    axes[0].set_ylabel("query: the token looking")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plain(text: str) -> str:
    """Text for a matplotlib label: "$" would start a formula (and fail when unbalanced)."""
    return text.replace("$", r"\$")


# -- Rows for the template ----------------------------------------------------------------


def _word(ex: Explanation) -> dict | None:
    if ex.word is None:
        return None

    def show(piece: str) -> str:
        return visible(token_text_to_bytes(piece))

    steps = [
        {
            "rank": s.rank,
            "left": show(s.left),
            "right": show(s.right),
            "pieces": [show(p) for p in s.pieces],
            "joined": show(s.left + s.right),
        }
        for s in ex.word.steps
    ]
    return {
        "text": visible(ex.word.word.encode("utf-8")),
        "start": [show(c) for c in ex.word.start],
        "steps": steps,
    }


def _last_token_rows(ex: Explanation, tokens: list[dict]) -> list[list[dict]]:
    """Per layer, each token with the weight the last position gives it (head mean)."""
    last = ex.attention[:, :, -1, :].mean(axis=1)  # (n_layer, T)
    return [
        [
            {"text": t["text"], "weight": f"{w:.3f}", "alpha": f"{min(1.0, float(w)):.3f}"}
            for t, w in zip(tokens, row, strict=True)
        ]
        for row in last
    ]


def _prob(p: float) -> str:
    """Probabilities span many orders of magnitude: 0.412, 0.003, 2.1e-05."""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _bars(ex: Explanation, ids: np.ndarray, probs: np.ndarray, drawn: int | None = None):
    return [
        {
            "text": ex.labels.get(int(i), str(i)),
            "prob": _prob(float(p)),
            "width": f"{max(1.0, 60 * float(p)):.0f}",  # 60 px = probability 1
            "drawn": int(i) == drawn,
        }
        for i, p in zip(ids, probs, strict=True)
    ]


def _next_rows(ex: Explanation) -> list[dict]:
    table = ex.next_tokens
    top = table.top_ids.shape[1]
    rows = []
    for t, token in enumerate(ex.ids):
        row = {
            "position": t,
            "text": ex.labels.get(token, str(token)),
            "candidates": _bars(ex, table.top_ids[t], table.top_probs[t]),
            "actual": "",
            "actual_prob": "",
            "rank": "",
            "rank_class": "",
        }
        if t < len(table.actual_ids):
            actual, rank = int(table.actual_ids[t]), int(table.actual_ranks[t])
            row["actual"] = ex.labels.get(actual, str(actual))
            row["actual_prob"] = _prob(float(table.actual_probs[t]))
            row["rank"] = f"{rank:,}"
            row["rank_class"] = "rank1" if rank == 1 else "rank-top" if rank <= top else "rank-low"
        rows.append(row)
    return rows


def _settings(ex: Explanation) -> str:
    s = ex.sampling
    parts = ["greedy (temperature 0)" if s.greedy else f"temperature {s.temperature:g}"]
    parts.append(f"top-k {s.top_k}" if s.top_k else "no top-k")
    parts.append(f"top-p {s.top_p:g}" if s.top_p else "no top-p")
    parts.append(f"at most {s.max_new_tokens} new tokens")
    parts.append(f"seed {s.seed}" if s.seed is not None else "no seed")
    return ", ".join(parts)


def _step_rows(ex: Explanation) -> list[dict]:
    return [
        {
            "before": _bars(ex, s.before_ids, s.before_probs, s.token),
            "after": _bars(ex, s.after_ids, s.after_probs, s.token),
            "kept": f"{s.kept:,}",
            "token": ex.labels.get(s.token, str(s.token)),
        }
        for s in ex.trace.steps
    ]

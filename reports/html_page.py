"""The frame every HTML page gpt2lab writes shares (the run report, the explain page).

One look (fonts, headings, tables, the footer) and one set of safety rules, in one place:
a page is a Jinja template that extends `page.html` and fills its blocks,

    {% extends "page.html" %}
    {% block style %}.tok { font-family: monospace; }{% endblock %}
    {% block body %}<h1>{{ title }}</h1> ...{% endblock %}

and `page_template` compiles it. Every `{{ value }}` is HTML-escaped (autoescape), because
what the pages show (run names, samples, prompts, model text) is untrusted; the pages have
no scripts and load nothing from the network.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined, Template

_FRAME = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; color: #222; max-width: 76rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.8rem 0; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
pre { background: #f7f7f7; padding: 0.8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
footer { margin-top: 3rem; color: #777; font-size: 0.85rem; }
{% block style %}{% endblock %}
</style>
</head>
<body>
{% block body %}{% endblock %}
<footer>{% block footer %}{% endblock %} This page has no scripts and loads nothing from
the network.</footer>
</body>
</html>
"""

_ENV = Environment(
    loader=DictLoader({"page.html": _FRAME}),
    autoescape=True,  # every {{ value }} is HTML-escaped, whatever a run or a model wrote
    undefined=StrictUndefined,  # a misspelt name is an error, not an empty string
    trim_blocks=True,
)


def page_template(source: str) -> Template:
    """Compile a page's template (one that extends "page.html")."""
    return _ENV.from_string(source)

"""The mini-web's article text: prose from material that ships with Python.

The pydoc topic help texts (`pydoc_data.topics`) and standard-library docstrings are long
English prose that every Python install carries, so nothing is downloaded and the
articles are the same on every machine with the same Python and seed. A few hand-written
paragraphs in German, French and accented English serve the language and encoding cases.
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

# Standard-library modules whose docstrings are long English prose. Fixed and sorted, so
# that the pages depend only on the Python version and the seed. (Packed by hand: one name
# a line would make this 62 lines of data nobody reads one by one.)
DOCSTRING_MODULES = (
    "argparse", "ast", "bisect", "calendar", "codecs", "collections", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "decimal", "difflib", "doctest",
    "email.message", "enum", "fractions", "ftplib", "functools", "gettext", "gzip", "heapq",
    "http.client", "http.server", "imaplib", "inspect", "io", "json", "locale", "logging",
    "mailbox", "numbers", "operator", "optparse", "pathlib", "pickle", "pprint", "queue",
    "random", "sched", "selectors", "shelve", "shutil", "smtplib", "socketserver",
    "statistics", "string", "symtable", "tarfile", "tempfile", "textwrap", "threading",
    "timeit", "tokenize", "trace", "traceback", "urllib.parse", "urllib.request", "uuid",
    "weakref", "xml.dom.minidom", "zipfile",
)  # fmt: skip
# Paragraphs kept out of the articles, for the special pages (landing pages, encodings),
# so that those pages are not near-duplicates of an article.
RESERVED_PARAGRAPHS = 24

AUTHORS = (
    "Ada Whitfield",
    "Ben Okafor",
    "Carmen Ruiz",
    "Dmitri Volkov",
    "Emma Lindqvist",
    "Farah Haddad",
    "Gustavo Pereira",
    "Hana Sato",
    "Ian McAllister",
    "Julia Novak",
)
TITLE_TEMPLATES = (
    "A closer look at {}",
    "Understanding {}",
    "{}, explained",
    "Notes on {}",
    "What every programmer should know about {}",
    "{}: a practical guide",
    "Getting {} right",
    "The surprising details of {}",
)


GERMAN = (
    "Der kleine Ort am Rand des Schwarzwalds hat in den letzten Jahren eine erstaunliche "
    "Entwicklung erlebt. Wo früher nur wenige Höfe standen, gibt es heute eine Bäckerei, "
    "einen Wochenmarkt und eine Bibliothek, die jeden Samstag bis spät am Abend geöffnet ist. "
    "Die Bewohner erzählen gern, wie sehr sich das Leben im Dorf verändert hat, seit die neue "
    "Bahnlinie eröffnet wurde.",
    "Besonders beliebt ist der Markt auf dem Kirchplatz. Dort verkaufen Bauern aus der "
    "Umgebung Käse, Honig, frisches Gemüse und Brot aus dem Holzofen. Viele Familien kommen "
    "schon früh am Morgen, um die besten Äpfel zu bekommen, und bleiben danach noch auf einen "
    "Kaffee im kleinen Café gegenüber dem Rathaus.",
    "Die Gemeinde plant nun, im nächsten Frühjahr einen Radweg entlang des Flusses zu bauen. "
    "Der Bürgermeister hofft, dass dadurch mehr Gäste in die Region kommen, ohne dass der "
    "Verkehr auf den schmalen Straßen weiter zunimmt. Kritiker befürchten allerdings, dass die "
    "Kosten höher ausfallen werden als geplant und dass die Arbeiten die Ruhe der Natur stören.",
    "Trotz aller Diskussionen sind sich die meisten Bewohner in einem Punkt einig: Das Dorf "
    "soll ein Ort bleiben, an dem man sich kennt und gegenseitig hilft. Gerade im Winter, wenn "
    "der Schnee die Wege bedeckt, zeigt sich dieser Zusammenhalt besonders deutlich.",
)
FRENCH = (
    "La petite ville située au bord de la Loire attire chaque été des milliers de visiteurs. "
    "Ils viennent pour ses châteaux, ses vignobles et ses marchés colorés, mais aussi pour la "
    "tranquillité de ses rues pavées. Les habitants aiment raconter l'histoire de leur ville, "
    "qui remonte au Moyen Âge.",
    "Le marché du samedi matin est sans doute le moment le plus animé de la semaine. Les "
    "producteurs de la région y vendent des fromages, du miel, des légumes de saison et du "
    "pain cuit au feu de bois. Beaucoup de familles s'y retrouvent avant de prendre un café "
    "sur la place de l'église.",
    "La municipalité envisage de créer une piste cyclable le long du fleuve au printemps "
    "prochain. Le maire espère ainsi attirer davantage de touristes sans augmenter la "
    "circulation dans les rues étroites du centre. Certains habitants craignent toutefois que "
    "les travaux coûtent plus cher que prévu et troublent le calme de la nature.",
    "Malgré ces débats, la plupart des habitants partagent la même conviction : la ville doit "
    "rester un lieu où l'on se connaît et où l'on s'entraide. En hiver surtout, lorsque le "
    "brouillard recouvre les quais, cette solidarité se remarque plus que jamais.",
)
# English with accented words, for the latin-1 pages (every character fits in latin-1).
ACCENTED = (
    "The café on the corner of Rue Saint-Honoré has served the same crème brûlée since 1962. "
    "Its owner, Zoë Müller, calls the recipe naïve: eggs, cream, sugar and patience. Regulars "
    "from the façade workshops nearby drop in after work, order a café au lait and argue "
    "about football, politics and whether the piñata at last year's fête was a good idea.",
    "Down the street, the smörgåsbord at Björn's attracts a different crowd. Señor García, a "
    "retired maître d', insists that the pâté is the best in town, and nobody has yet dared "
    "to contradict him. The décor is plain, the coöperative that runs the place is proud of "
    "it, and the rösti is served until midnight.",
)


@dataclass(frozen=True)
class Article:
    """One generated article: where it is served and what its main text is."""

    path: str
    title: str
    author: str
    published: str  # ISO date
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        """The main text, one paragraph per line: what a good extractor should return."""
        return "\n".join(self.paragraphs)


# ---------------------------------------------------------------------------------------
# Text: prose paragraphs from material that ships with Python


def _prose(text: str) -> list[str]:
    """The paragraphs of a help text or docstring that read as prose, one line each."""
    kept = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = block.split("\n")
        # Indented lines are code or tables, bullets are lists: not article prose.
        if any(line.startswith((" ", "\t", ">>>", "-", "*", "+", "|")) for line in lines):
            continue
        # One space between words, as a browser (and an extractor) shows it.
        paragraph = " ".join(block.split())
        letters = sum(c.isalpha() or c.isspace() for c in paragraph)
        if (
            200 <= len(paragraph) <= 1500
            and paragraph[0].isupper()
            and paragraph.endswith(".")
            and letters / len(paragraph) > 0.85
        ):
            kept.append(paragraph)
    return kept


def _docstrings(module_name: str) -> list[str]:
    """The docstrings of a module, its public classes and functions and their methods."""
    module = importlib.import_module(module_name)
    docs = [module.__doc__ or ""]
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(obj.__doc__ or "")
        if inspect.isclass(obj):
            for member_name, member in sorted(vars(obj).items()):
                if not member_name.startswith("_") and inspect.isfunction(member):
                    docs.append(member.__doc__ or "")
    return docs


@lru_cache(maxsize=1)
def paragraph_pool() -> tuple[tuple[str, str], ...]:
    """(topic, paragraph) pairs: pydoc topics first, then docstrings; no repeats."""
    from pydoc_data.topics import topics

    pool: dict[str, str] = {}
    for key in sorted(topics):
        for paragraph in _prose(topics[key]):
            pool.setdefault(paragraph, key.replace("-", " "))
    for module_name in DOCSTRING_MODULES:
        for doc in _docstrings(module_name):
            for paragraph in _prose(doc):
                pool.setdefault(paragraph, f"the {module_name} module")
    return tuple((topic, paragraph) for paragraph, topic in pool.items())


def slug(text: str) -> str:
    """A URL-safe piece of a title: "Notes on X" -> "notes-on-x"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def build_articles(count: int, seed: int) -> list[Article]:
    """`count` articles of 4 to 7 paragraphs each, the same for the same seed.

    The first articles take consecutive paragraphs (same topic, so they read coherently);
    when the pool runs out, later ones draw a fresh shuffle. No paragraph repeats within a
    pass, so two articles share at most a paragraph or two: never near-duplicates.
    """
    rng = random.Random(seed)
    pool = paragraph_pool()[:-RESERVED_PARAGRAPHS]
    start = rng.randrange(len(pool))
    order = list(range(start, len(pool))) + list(range(start))
    cursor = 0
    first_day = datetime(2017, 1, 1, tzinfo=UTC)
    articles = []
    for index in range(count):
        size = rng.randint(4, 7)
        if cursor + size > len(order):
            order, cursor = rng.sample(range(len(pool)), len(pool)), 0
        chosen = [pool[i] for i in order[cursor : cursor + size]]
        cursor += size
        topic = chosen[0][0]
        title = rng.choice(TITLE_TEMPLATES).format(topic)
        title = title[0].upper() + title[1:]
        day = first_day + timedelta(days=rng.randrange(365))
        articles.append(
            Article(
                path=f"/articles/{index:04d}-{slug(title)}.html",
                title=title,
                author=rng.choice(AUTHORS),
                published=day.date().isoformat(),
                paragraphs=tuple(paragraph for _, paragraph in chosen),
            )
        )
    return articles


def change_a_few_words(article: Article, rng: random.Random, count: int = 6) -> Article:
    """A near-duplicate: the same article with `count` words replaced."""
    paragraphs = [p.split(" ") for p in article.paragraphs]
    spots = [(i, j) for i, words in enumerate(paragraphs) for j in range(len(words))]
    for i, j in rng.sample(spots, count):
        paragraphs[i][j] = rng.choice(("indeed", "often", "really", "notably", "usually"))
    return replace(article, paragraphs=tuple(" ".join(words) for words in paragraphs))

"""Contamination: the GPT-2 paper's 8-gram overlap between eval rows and a real exported corpus."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tasks.corpus.export import export_corpus
from tasks.corpus.links import iter_link_decisions
from tasks.corpus.records import Document, Page
from tasks.corpus.store import CorpusStore
from tasks.evals import contamination
from tasks.evals.contamination import (
    Contamination,
    ContaminationCache,
    RowOverlap,
    measure_overlap,
    ngrams,
    normalize,
    tasks_contamination,
)
from tasks.evals.task import DataSource, EvalTask

NOW = "2024-05-01T12:00:00+00:00"


def write_corpus(out: Path, texts: Sequence[str]) -> Path:
    """A corpus folder as the corpus flow leaves it (corpus.json, dataset/, manifest), one
    kept document per text, written by the corpus store and export themselves."""
    out.mkdir(parents=True, exist_ok=True)
    links = out.parent / f"{out.name}-links.jsonl"
    with links.open("w") as handle:
        for i in range(len(texts)):
            handle.write(json.dumps({"url": f"https://site{i}.example/", "score": 10}) + "\n")
    with CorpusStore(out) as store:
        store.add_links(iter_link_decisions([links]))
        for _, link in store.pending_links(limit=len(texts) + 1):
            store.record_pages([Page(link.url, link.url, 200, "text/html", b"<p>x</p>", NOW)])
        pages = store.fetched_pages(limit=len(texts) + 1)
        store.record_results((idx, Document(link.url, "T", texts[idx])) for idx, link, _ in pages)
        assert export_corpus(store).n_documents == len(texts)
    return out


def eval_task(folder: Path, rows: list[dict], fields=("question", "answer")) -> EvalTask:
    """A task declaration over rows written to a local file (only its data and fields
    matter for contamination)."""
    data = folder / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return EvalTask(
        name="quiz",
        version=1,
        description="a quiz",
        data=DataSource(local=data),
        fields=fields,
        prompt=lambda row, examples: row["question"],
        reference=lambda row: row["answer"],
        score=lambda outputs, references, rows: {},
    )


WORDS20 = " ".join(f"w{i}" for i in range(20))  # 20 distinct words: 13 8-grams

QUIZ = [
    # 0: in the corpus verbatim, but for case, punctuation and spacing: 5 + 2 8-grams, all found.
    {
        "question": "Which river flows through the old town of Heidelberg, in Germany today?",
        "answer": "The river Neckar flows right through the old town.",
    },
    # 1: a paraphrase of row 0: the same facts, no 8-gram in common.
    {
        "question": "Through Heidelberg's historic centre, what river runs nowadays?",
        "answer": "It is the Neckar.",
    },
    # 2: its first 10 words are in a document: the 3 8-grams within them are found.
    {"question": WORDS20, "answer": "yes"},
    # 3: too short for any 8-gram.
    {"question": "Is it short?", "answer": "Yes."},
    # 4: each field's words in the corpus, but only across a document boundary.
    {"question": "one two three four five six seven eight", "answer": "alpha beta"},
]

CORPUS = [
    "Guide. WHICH river flows through the old   town of HEIDELBERG in germany, today? "
    "Answer: the river NECKAR flows right through the old town! More text follows.",
    "Unrelated: " + " ".join(f"w{i}" for i in range(10)) + ". The end.",
    "count: one two three four",
    "five six seven eight",
]


def test_shares_are_exact_per_row(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    task = eval_task(tmp_path, QUIZ)
    found = tasks_contamination([task], corpus)["quiz"]
    assert found.rows == (
        RowOverlap(ngrams=5 + 2, found=7),  # question 12 words, answer 9: per field
        RowOverlap(ngrams=2 + 0, found=0),  # 9 words and 4
        RowOverlap(ngrams=13, found=3),
        RowOverlap(ngrams=0, found=0),
        RowOverlap(ngrams=1, found=0),
    )
    assert [row.share for row in found.rows] == [1.0, 0.0, 3 / 13, 0.0, 0.0]
    assert found.n_rows == 5
    assert found.ngram_overlap == pytest.approx((7 + 3) / (7 + 2 + 13 + 1))
    assert found.rows_overlapping == pytest.approx(2 / 5)
    summary = json.loads((corpus / "corpus.json").read_text())
    assert found.corpus == summary["fingerprint"] and found.n == 8


def test_normalisation_as_in_the_paper() -> None:
    assert normalize("The  QUICK,\tbrown\n\nfox!!") == "the quick brown fox"
    assert normalize("Don't stop: 3.14 - snake_case") == "don t stop 3 14 snake case"
    assert normalize("  Élan, CAFÉ   über ") == "élan café über"
    assert normalize("... --- !!!") == ""
    assert ngrams("A b, C d e f g h i", n=8) == ["a b c d e f g h", "b c d e f g h i"]
    assert ngrams("one two", n=8) == []


def test_text_that_differs_only_in_case_punctuation_and_spacing_is_found() -> None:
    row = "It was the best of times, it was the worst of times."
    variants = [
        "IT WAS THE BEST OF TIMES IT WAS THE WORST OF TIMES",
        "it was -- the best of times; it was the worst of times...",
        "It\nwas\tthe  best of\u00a0times, it was the worst of times",
    ]
    for variant in variants:
        found = measure_overlap({"set": [[row]]}, [variant], "corpus")["set"]
        assert found.rows == (RowOverlap(5, 5),), variant
    # One word changed: the 8-grams through it are gone, the others stay.
    changed = "it was the best of times it was the WORST of days"
    assert measure_overlap({"set": [[row]]}, [changed], "c")["set"].rows == (RowOverlap(5, 4),)


def test_long_documents_and_buffer_flushes_give_the_same_answer(monkeypatch) -> None:
    rng = random.Random(0)
    vocabulary = [f"word{i}" for i in range(40)]
    documents = [" ".join(rng.choices(vocabulary, k=rng.randint(5, 400))) for _ in range(30)]
    rows = [[" ".join(doc.split()[i : i + 12])] for doc in documents[:10] for i in (0, 3)]
    rows += [[" ".join(rng.choices(vocabulary, k=12))] for _ in range(20)]
    expected = measure_overlap({"s": rows}, documents, "c")["s"]
    # Pieces of ~16 characters and flushes every 5 words: every 8-gram straddles one.
    monkeypatch.setattr(contamination, "_PIECE_CHARS", 16)
    monkeypatch.setattr(contamination, "_FLUSH_WORDS", 5)
    assert measure_overlap({"s": rows}, documents, "c")["s"] == expected
    # And by brute force, with the 8-grams as strings.
    corpus_grams = {gram for doc in documents for gram in ngrams(doc)}
    brute = tuple(
        RowOverlap(len(ngrams(text)), sum(gram in corpus_grams for gram in ngrams(text)))
        for (text,) in rows
    )
    assert expected.rows == brute
    assert 0 < expected.ngram_overlap < 1


def test_pieces_never_split_a_word() -> None:
    text = "alpha beta,gamma   delta-epsilon zeta " * 50 + "x" * 100
    pieces = list(contamination._pieces(text, 16))
    assert len(pieces) > 10 and "".join(pieces) == text
    assert [w for piece in pieces for w in contamination.words(piece)] == contamination.words(text)


def test_hash_collisions_are_never_counted(monkeypatch) -> None:
    """With a hash that sends every 8-gram to the same value, only 8-grams that really
    occur are found: the ids are compared on every match."""
    monkeypatch.setattr(
        contamination, "_hash_rows", lambda grams: np.zeros(len(grams), dtype=np.uint64)
    )
    rows = [["a b c d e f g h i"], ["z y x w v u t s"]]
    found = measure_overlap({"s": rows}, ["a b c d e f g h", "u t s a b c d e"], "c")["s"]
    assert found.rows == (RowOverlap(2, 1), RowOverlap(1, 0))


def test_the_hash_set_answers_like_isin() -> None:
    rng = np.random.default_rng(1)
    stored = rng.integers(0, 2**64 - 1, 5_000, dtype=np.uint64, endpoint=True)
    stored = np.concatenate([stored, stored[:100], np.array([0, 2**64 - 1], dtype=np.uint64)])
    values = np.concatenate([stored[::7], rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64)])
    hash_set = contamination._HashSet(stored)
    assert (hash_set.contains(values) == np.isin(values, stored)).all()
    assert not contamination._HashSet(stored[:0]).contains(values).any()


def test_cached_results_are_reused_and_any_change_scans_again(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    task = eval_task(tmp_path, QUIZ)
    cache = ContaminationCache(tmp_path / "cache")
    scans: list[int] = []

    def run(**options) -> Contamination:
        seen: list[object] = []
        result = tasks_contamination([task], corpus, cache, progress=seen.append, **options)
        scans.append(len(seen) > 0)
        return result["quiz"]

    first = run()
    assert run() == first  # from the cache: the corpus was not read
    assert run(limit=2).rows == first.rows[:2]  # other rows: another key, another scan
    assert scans == [True, False, True]
    assert len(list((tmp_path / "cache").glob("quiz-v1-*.json"))) == 2

    other = write_corpus(tmp_path / "other", CORPUS[1:])  # another corpus: scanned
    assert tasks_contamination([task], other, cache)["quiz"].rows[0] == RowOverlap(7, 0)

    for path in (tmp_path / "cache").glob("*.json"):
        path.write_text("{not json")
    with pytest.raises(contamination.ContaminationError, match="unreadable; delete it"):
        tasks_contamination([task], corpus, cache)


def test_a_folder_that_is_not_a_corpus_is_named(tmp_path: Path) -> None:
    task = eval_task(tmp_path, QUIZ)
    with pytest.raises(ValueError, match=f"corpus {tmp_path / 'nowhere'}: no such folder"):
        tasks_contamination([task], tmp_path / "nowhere")


def test_memory_stays_far_below_the_corpus_size(tmp_path: Path) -> None:
    """About 28 MB of text streamed: the traced peak (about 2 MB) depends on the eval set
    and the read sizes, not on how large the corpus is."""
    rng = np.random.default_rng(0)
    vocabulary = np.array([f"term{i}" for i in range(5_000)])
    texts = [" ".join(vocabulary[rng.integers(0, 5_000, 800)]) for _ in range(4_000)]
    corpus = write_corpus(tmp_path / "corpus", texts)
    corpus_bytes = sum(len(text) for text in texts)
    assert corpus_bytes > 20e6
    task = eval_task(tmp_path, [{"question": texts[i][:400], "answer": "x"} for i in range(50)])

    tracemalloc.start()
    try:
        found = tasks_contamination([task], corpus)["quiz"]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found.rows_overlapping == 1.0  # every row's text is in the corpus
    assert peak < corpus_bytes / 8, f"peak {peak / 1e6:.1f} MB for {corpus_bytes / 1e6:.0f} MB"

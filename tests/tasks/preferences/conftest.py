"""A small comparison batch in a SQLite file, shared by the store, page and load tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.orm import Session

from gpt2lab.tasks.preferences.batches import BatchSpec, create_batch
from gpt2lab.tasks.preferences.store import invite, open_database

ADMIN_TOKEN = "admin-token-for-tests-0123456789"
HOSTILE = '<script>document.title="pwned"</script><b onmouseover="x()">bold</b>'


def sample_texts(model: str, prompts: list[str], seed: int) -> list[str]:
    """Stands in for a model: 'tuned' writes a real sentence, 'base' writes HTML."""
    if model == "tuned":
        return [f"a fine and complete answer number {n}" for n, _ in enumerate(prompts)]
    return [f"{HOSTILE} and some more words {n}" for n, _ in enumerate(prompts)]


@dataclass
class Comparisons:
    url: str
    batch: str
    tokens: dict[str, str]  # annotator name -> invite token


def make_comparisons(url: str, *, prompts: int = 6, annotators: tuple[str, ...] = ("ana", "bo"),
                     name: str = "base-vs-tuned", **spec) -> Comparisons:  # fmt: skip
    engine = open_database(url)
    with Session(engine) as session, session.begin():
        spec = BatchSpec(name, ["base", "tuned"], [f"Prompt {i}:" for i in range(prompts)],
                         seed=3, **spec)  # fmt: skip
        batch = create_batch(session, spec, sample_texts)
        tokens = {person: invite(session, batch, person) for person in annotators}
    engine.dispose()
    return Comparisons(url, name, tokens)


@pytest.fixture
def comparisons(tmp_path) -> Comparisons:
    return make_comparisons(f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}")

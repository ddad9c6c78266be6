"""The databases the storage tests run on, and a small comparison batch shared by the
store, page and load tests.

Every test that takes `database_url` (or `comparisons`) runs twice: on a new SQLite file
and on a real PostgreSQL server, the two databases the store is meant for. The server is
named by `GPT2LAB_TEST_POSTGRES_URL` (`.ci/run` starts one on 127.0.0.1); each test
session works in a schema of its own there, and each test starts with no tables. Where no
server answers, the PostgreSQL runs skip with the reason; on CI (`CI` set) they fail
instead, so a broken CI setup cannot pass by skipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from tasks.preferences import store
from tasks.preferences.batches import BatchSpec, create_batch
from tasks.preferences.store import Base, invite, open_database

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


def make_comparisons(
    url: str,
    *,
    prompts: int = 6,
    annotators: tuple[str, ...] = ("ana", "bo"),
    name: str = "base-vs-tuned",
    **spec,
) -> Comparisons:
    engine = open_database(url)
    with Session(engine) as session, session.begin():
        spec = BatchSpec(
            name, ["base", "tuned"], [f"Prompt {i}:" for i in range(prompts)], seed=3, **spec
        )
        batch = create_batch(session, spec, sample_texts)
        tokens = {person: invite(session, batch, person) for person in annotators}
    engine.dispose()
    return Comparisons(url, name, tokens)


@pytest.fixture
def comparisons(database_url: str) -> Comparisons:
    return make_comparisons(database_url)


# ---------------------------------------------------------------------------------------
# The databases


def _drop_store_tables(url: str) -> None:
    """Empty the PostgreSQL schema: each test starts from no tables at all."""
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        # A connection some test left inside a transaction would make DROP TABLE wait for
        # ever; the lock timeout turns that into an error that names the statement.
        connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        Base.metadata.drop_all(connection)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path, monkeypatch) -> Iterator[str]:
    """An empty database for one test: a new SQLite file, or the PostgreSQL test server
    with the store's tables dropped. Engines the store opened meanwhile are closed after
    the test, so no connection outlives it (PostgreSQL would count them, and their locks
    would hold up the next test's DROP TABLE)."""
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'preferences.db').as_posix()}"
    else:
        url = request.getfixturevalue("postgres_url")
        _drop_store_tables(url)
    engines: list[Engine] = []

    def tracked_create_engine(*args, **kwargs) -> Engine:
        engines.append(engine := create_engine(*args, **kwargs))
        return engine

    # `open_database` makes every engine the store, the page and the tests use.
    monkeypatch.setattr(store, "create_engine", tracked_create_engine)
    yield url
    for engine in engines:
        engine.dispose()

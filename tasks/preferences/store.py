"""Where comparisons live: batches, items, samples, annotators and votes, in a SQL database.

SQLAlchemy maps these tables onto any database it speaks to: a SQLite file in the
workspace by default, or a PostgreSQL server when many annotators vote at once (give a
`postgresql+psycopg://...` URL). The same code runs on both.

    Batch      one comparison job: which models, which settings
    Sample     one model's continuation of one prompt, with its seed and settings
    Item       one screen: a prompt and two samples, the side each is shown on fixed
               once (randomised when the batch is made, then recorded)
    Annotator  a person (or a simulated judge) invited to a batch, known by a token
    Vote       an annotator's choice on an item: left, right, tie or both bad; one per
               annotator and item, so submitting twice stores it once
    WebSecret  one half of the key that signs the web page's session cookies; the other
               half lives outside the database (see web.py), so reading the database
               alone is not enough to forge a session
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from model.errors import Gpt2labError
from tasks.private_files import make_private_file, sqlite_file

CHOICES = ("left", "right", "tie", "both_bad")


class PreferenceError(Gpt2labError):
    """A request the store refuses; the message says which and why."""


def _now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A moment in time, stored in UTC and read back as an aware UTC `datetime`, on every
    database. Plain `DateTime(timezone=True)` differs between the two: SQLite drops the
    offset (12:00+02:00 comes back as a naive 12:00, two hours off) and PostgreSQL answers
    in the session's time zone; the admin page prints these moments as UTC. A naive value
    is taken to be UTC already. (Same column type as before: no migration needed.)"""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # Naive: say UTC, else PostgreSQL would read it in the session's time zone.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite: stored in UTC by process_bind_param
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Batch(Base):
    __tablename__ = "batches"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    models: Mapped[list] = mapped_column(JSON)  # model names (paths or ids) compared
    settings: Mapped[dict] = mapped_column(JSON)  # sampling settings, seeds
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)
    # When collection is over: this many human comparisons, or this moment. Stored with the
    # batch (not in a running process) so that a restarted flow waits for the same end.
    target_votes: Mapped[int | None]
    deadline: Mapped[datetime | None] = mapped_column(UtcDateTime)
    items: Mapped[list[Item]] = relationship(back_populates="batch")


class Sample(Base):
    __tablename__ = "samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    prompt: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)  # untrusted: always escaped when shown
    seed: Mapped[int]


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    prompt: Mapped[str] = mapped_column(Text)
    left_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    right_id: Mapped[int] = mapped_column(ForeignKey("samples.id"))
    gold_choice: Mapped[str | None] = mapped_column(String(10))  # known answer, if gold
    repeat_of: Mapped[int | None] = mapped_column(ForeignKey("items.id"))  # self-agreement
    batch: Mapped[Batch] = relationship(back_populates="items")
    left: Mapped[Sample] = relationship(foreign_keys=[left_id])
    right: Mapped[Sample] = relationship(foreign_keys=[right_id])


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("batches.id"))
    name: Mapped[str] = mapped_column(String(200))
    # Only a hash of the invite token is stored: a leaked database does not leak access.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)


class Vote(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("item_id", "annotator_id", name="one_vote_per_item"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    choice: Mapped[str] = mapped_column(String(10))
    comment: Mapped[str] = mapped_column(Text, default="")
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=_now)


class WebSecret(Base):
    __tablename__ = "web_secrets"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


# ---------------------------------------------------------------------------------------


# INSERT ... ON CONFLICT DO NOTHING is spelled the same on both databases we support.
_INSERT_FOR = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def open_database(url: str) -> Engine:
    """An engine for `url` with every table created (creating is a no-op when they exist).
    SQLite and PostgreSQL are supported; other databases are refused here."""
    dialect = make_url(url).get_backend_name()
    if dialect not in _INSERT_FOR:
        raise PreferenceError(f"database {dialect!r} is not supported: use sqlite or postgresql")
    if dialect == "sqlite":
        path = sqlite_file(url)
        if path is not None:  # votes and invite hashes: readable by their owner only
            make_private_file(path)
        engine = create_engine(url, connect_args={"timeout": 30})
        _serialise_sqlite_writes(engine)
    else:
        engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    Base.metadata.create_all(engine)
    return engine


def _serialise_sqlite_writes(engine: Engine) -> None:
    """Let many web requests write to one SQLite file without "database is locked".

    SQLite allows one writer at a time. A transaction that starts as a reader and later
    writes can fail at once when another writer got in first, so every transaction here
    takes the write lock when it begins (`BEGIN IMMEDIATE`) and waits up to 30 s for it;
    write-ahead logging lets readers go on meanwhile. (PostgreSQL needs none of this.)
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def web_secret(session: Session, name: str = "session-cookies") -> str:
    """A random secret kept in the database, made the first time it is asked for."""
    secret = session.get(WebSecret, name)
    if secret is None:
        try:
            with session.begin_nested():
                secret = WebSecret(name=name, value=secrets.token_urlsafe(32))
                session.add(secret)
        except IntegrityError:  # another server process made it first
            secret = session.get(WebSecret, name)
    return secret.value


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def invite(session: Session, batch: Batch, name: str, *, simulated: bool = False) -> str:
    """Add an annotator to `batch`; returns their invite token (shown once, stored hashed)."""
    token = secrets.token_urlsafe(24)
    session.add(
        Annotator(batch_id=batch.id, name=name, token_hash=hash_token(token), simulated=simulated)
    )
    session.flush()
    return token


def annotator_for(session: Session, token: str) -> Annotator | None:
    return session.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))


def record_vote(
    session: Session, annotator: Annotator, item_id: int, choice: str, comment: str = ""
) -> tuple[Vote, bool]:
    """Store `annotator`'s vote on item `item_id`; returns (the vote, whether it is new).

    A second submission of the same vote is harmless: the first one stands, whatever
    the second says, so a double click or a retried request never counts twice.
    """
    if choice not in CHOICES:
        raise PreferenceError(f"choice {choice!r} is not one of {', '.join(CHOICES)}")
    item = session.get(Item, item_id)
    if item is None or item.batch_id != annotator.batch_id:
        raise PreferenceError(f"item {item_id} is not part of this annotator's batch")
    # One statement: insert unless this annotator already voted on this item. The unique
    # constraint decides, so two requests racing each other still store one vote.
    insert = _INSERT_FOR[session.get_bind().dialect.name]
    vote = session.scalar(
        insert(Vote)
        .values(
            item_id=item_id,
            annotator_id=annotator.id,
            choice=choice,
            comment=comment[:2000],
            simulated=annotator.simulated,
            created_at=_now(),
        )
        .on_conflict_do_nothing(index_elements=["item_id", "annotator_id"])
        .returning(Vote)
    )
    if vote is not None:
        return vote, True
    existing = session.scalar(
        select(Vote).where(Vote.item_id == item_id, Vote.annotator_id == annotator.id)
    )
    assert existing is not None  # the conflicting vote is committed (or ours) by now
    return existing, False

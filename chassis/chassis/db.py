"""Database engine, the chassis tables (outbox, processed messages) and the unit of work."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from chassis import events


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: use chassis.db.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def add_chassis_tables(metadata: MetaData) -> None:
    """Every service database holds its own outbox and its consumers' dedup keys."""
    Table(
        "outbox",
        metadata,
        # Integer primary key gives publication order (autoincrement on SQLite and PostgreSQL).
        Column(
            "position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("message_id", String(36), nullable=False, unique=True),
        Column("routing_key", String(200), nullable=False),
        Column("envelope", JSON, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("published_at", UtcDateTime(), nullable=True, index=True),
        Column("attempts", Integer, nullable=False, default=0),
    )
    Table(
        "processed_messages",
        metadata,
        Column("consumer_id", String(200), primary_key=True),
        Column("message_id", String(36), primary_key=True),
        Column("processed_at", UtcDateTime(), nullable=False),
    )


# PostgreSQL channel on which committed events wake the outbox relay (one database per
# service, so one channel name suffices).
OUTBOX_CHANNEL = "coordo_outbox"


def normalise_url(url: str) -> str:
    # One driver for PostgreSQL everywhere: psycopg 3.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, pre_ping: bool = True) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # Take transactions in our own hands so we can BEGIN IMMEDIATE below.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # IMMEDIATE takes the write lock up front: two threads of the embedded
            # process can no longer deadlock upgrading a read lock to a write lock.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=pre_ping)


def outbox_insert(outbox: Table, *, notify: bool) -> Insert:
    """The INSERT of an outbox row. On PostgreSQL it also sends NOTIFY on `OUTBOX_CHANNEL`,
    in the same round trip: the notification is delivered at commit (never for a rolled
    back transaction) to the relay LISTENing in the service's worker, so a committed event
    is published at once rather than at the next poll. Several in one transaction are
    delivered as one."""
    if not notify:
        return outbox.insert()
    columns = ["message_id", "routing_key", "envelope", "created_at", "attempts"]
    wake = select(func.pg_notify(OUTBOX_CHANNEL, "")).subquery("wake")
    values = select(*(bindparam(name, type_=outbox.c[name].type) for name in columns)).select_from(wake)
    return outbox.insert().from_select(columns, values)


# `INSERT … ON CONFLICT DO NOTHING` that SQLAlchemy 2.0 may cache. Its dialect INSERTs and
# ON CONFLICT clauses declare no cache key (`inherit_cache = False`), so each execution
# compiled the statement again, which cost more than PostgreSQL's own work for a consumed
# event (py-spy on the workers). A DO NOTHING without target or condition holds no state
# that changes its SQL: its class alone is a correct cache key. Any other ON CONFLICT set on
# these statements is the dialect's own, uncacheable clause, compiled each time as before.


class _PostgresqlDoNothing(postgresql.dml.OnConflictDoNothing):
    inherit_cache = True
    _traverse_internals = []  # noqa: RUF012 - SQLAlchemy's class-level declaration


class _SqliteDoNothing(sqlite.dml.OnConflictDoNothing):
    inherit_cache = True
    _traverse_internals = []  # noqa: RUF012 - SQLAlchemy's class-level declaration


class _PostgresqlInsert(postgresql.Insert):
    inherit_cache = True


class _SqliteInsert(sqlite.Insert):
    inherit_cache = True


def insert_ignoring_conflicts(table: Table, dialect: str) -> Insert:
    """`INSERT INTO table … ON CONFLICT DO NOTHING` (PostgreSQL and SQLite), compiled once
    and then taken from SQLAlchemy's cache. Add `.returning(…)` to learn which rows were new."""
    statement: Insert
    if dialect == "sqlite":
        statement = _SqliteInsert(table)
        statement._post_values_clause = _SqliteDoNothing()
    else:
        statement = _PostgresqlInsert(table)
        statement._post_values_clause = _PostgresqlDoNothing()
    return statement


_INSERTS_IF_ABSENT: dict[tuple[str, Table], Insert] = {}


def insert_if_absent(session: Session, table: Table, values: dict[str, Any]) -> None:
    """Insert a row unless one with the same key exists (`INSERT … ON CONFLICT DO NOTHING`
    on PostgreSQL and SQLite): one statement where reading first, then inserting, took two.
    For read-model rows that the first event creates and later ones find there."""
    dialect = session.get_bind().dialect.name
    statement = _INSERTS_IF_ABSENT.get((dialect, table))
    if statement is None:
        statement = insert_ignoring_conflicts(table, dialect)
        _INSERTS_IF_ABSENT[(dialect, table)] = statement
    session.execute(statement, values)


def insert_new(session: Session, obj: Any) -> None:
    """INSERT a new ORM object's row as a plain statement, on the session's connection:
    the columns set on it, the columns' defaults for the rest (as the ORM would).

    For rows that are new by construction and not changed again in the transaction: the
    ORM's unit of work (flush, identity map) cost more than the INSERT itself on the
    creation path (tests/bench/README.md). The object stays outside the session: a later
    query in the transaction reads the row from the database."""
    table = obj.__table__
    state = obj.__dict__
    values = {column.key: state[column.key] for column in table.columns if column.key in state}
    statement = _PLAIN_INSERTS.get(table)
    if statement is None:
        statement = _PLAIN_INSERTS[table] = insert(table)
    session.connection().execute(statement, values)


_PLAIN_INSERTS: dict[Table, Insert] = {}


class Database:
    """One service's database: engine, sessions, and its outbox wake-up signal."""

    def __init__(self, url: str, metadata: MetaData, service: str, *, pre_ping: bool = True) -> None:
        """`pre_ping=False` for a worker: its relay, consumers and jobs retry a transaction
        that failed (nothing is acked or marked sent before the commit), so a pooled
        connection gone stale costs one retry, while the ping costs a round trip on every
        transaction (tests/bench/README.md, event latency)."""
        self.url = normalise_url(url)
        self.service = service
        self.metadata = metadata
        self.engine = make_engine(self.url, pre_ping)
        self.session_factory = sessionmaker(self.engine, expire_on_commit=False)
        self.outbox = metadata.tables["outbox"]
        # Built once: every use case that emits runs it, and a statement built per call
        # costs its cache key each time.
        self.outbox_insert = outbox_insert(self.outbox, notify=not self.is_sqlite)
        self.processed_messages = metadata.tables["processed_messages"]
        # Set after a commit that wrote events, so an in-process relay wakes at once.
        self.outbox_signal = threading.Event()

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    @contextmanager
    def unit_of_work(self, actor: str | None = None) -> Iterator[UnitOfWork]:
        uow = UnitOfWork(self, actor)
        try:
            yield uow
        finally:
            uow.close()

    def dispose(self) -> None:
        self.engine.dispose()


class UnitOfWork:
    """A business transaction: the use case's rows and its events commit together or not at all."""

    def __init__(self, db: Database, actor: str | None) -> None:
        self.db = db
        self.actor = actor
        self.session: Session = db.session_factory()
        self._emitted = 0

    def emit(self, event_type: str, subject: str, data: dict[str, Any], version: int = 1) -> dict[str, Any]:
        """Write an integration event into the outbox, inside this transaction."""
        envelope = events.make_envelope(
            event_type=event_type,
            producer=self.db.service,
            subject=subject,
            actor=self.actor,
            data=data,
            version=version,
        )
        # On the session's connection: a table INSERT gains nothing from the ORM's execute.
        self.session.connection().execute(
            self.db.outbox_insert,
            {
                "message_id": envelope["id"],
                "routing_key": f"{self.db.service}.{event_type}",
                "envelope": envelope,
                "created_at": utcnow(),
                "attempts": 0,
            },
        )
        self._emitted += 1
        return envelope

    def commit(self) -> None:
        self.session.commit()
        if self._emitted:
            self._emitted = 0
            self.db.outbox_signal.set()

    def rollback(self) -> None:
        self.session.rollback()
        self._emitted = 0

    def close(self) -> None:
        # Anything not committed explicitly is rolled back: no half-done change, no event.
        self.session.rollback()
        self.session.close()

"""The access log: who reached which patient, why, and what came of it.

Rows are written off the request path: the event loop only puts a small tuple in a
bounded in-memory queue; a background thread inserts them in batches (every 200 ms or
500 rows) and flushes what is left on shutdown. Ids and codes only — never a body,
never clinical content.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

from chassis import migrate
from chassis.db import UtcDateTime, make_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

metadata = MetaData()

access_log = Table(
    "access_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("person_id", String(64), nullable=False),
    Column("structure_id", String(64), nullable=True),
    # The grantor of a delegation the person acted under (ID-6), checked by cercle.
    Column("acting_for", String(64), nullable=True),
    Column("patient_id", String(64), nullable=False),
    Column("service", String(32), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path_template", String(300), nullable=False),
    Column("basis", String(64), nullable=True),
    Column("allowed", Boolean, nullable=False),
    # What the gateway answered, and what the upstream answered (null when not forwarded).
    Column("status", Integer, nullable=False),
    Column("upstream_status", Integer, nullable=True),
    Column("request_id", String(200), nullable=False),
    # The access journal pages a patient's rows newest first, by id.
    Index("ix_access_log_patient_id", "patient_id", "id"),
    Index("ix_access_log_person_at", "person_id", "at"),
)


def clip(value: str | None, size: int) -> str | None:
    """Fit a value from the request (path, header, token) into its column."""
    return value if value is None or len(value) <= size else value[:size]


@dataclass(frozen=True)
class AccessRecord:
    at: datetime
    person_id: str
    structure_id: str | None
    acting_for: str | None
    patient_id: str
    service: str
    method: str
    path_template: str
    basis: str | None
    allowed: bool
    status: int
    upstream_status: int | None
    request_id: str


def upgrade(database_url: str) -> None:
    """Create or upgrade the gateway's database (Alembic, like every service)."""
    migrate.upgrade(database_url, MIGRATIONS_DIR)


class AuditWriter:
    """Bounded queue + one writer thread. `record` never blocks and never does I/O."""

    def __init__(
        self,
        database_url: str,
        *,
        max_queue: int = 50_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        run_migrations: bool = True,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.database_url = database_url
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.run_migrations = run_migrations
        self._on_drop = on_drop
        self._queue: queue.Queue[AccessRecord] = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._engine: Engine | None = None
        self.ready = threading.Event()  # the table exists and the writer runs
        self.written = 0
        self.dropped = 0

    # -- request side -------------------------------------------------------------
    def has_room(self) -> bool:
        """False when the writer is this far behind: the gateway then refuses patient access."""
        return self._queue.qsize() < self._queue.maxsize - 100

    def record(self, entry: AccessRecord) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            # Blocking the event loop would stop every request; count it loudly instead.
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            log.error(
                "access log queue full: one access record dropped", extra={"request_id": entry.request_id}
            )

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gateway-audit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    # -- writer thread -----------------------------------------------------------
    def _prepare(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.run_migrations:
                    upgrade(self.database_url)
                self.engine  # noqa: B018 - create the pool now, not on the first batch
                self.ready.set()
                return
            except Exception as exc:  # noqa: BLE001 - database down at start: keep trying
                failures += 1
                delay = min(5.0, 0.2 * 2 ** min(failures, 5))
                log.warning("access log database unavailable (%s), retrying in %.1fs", exc, delay)
                self._stop.wait(delay)

    def _run(self) -> None:
        self._prepare()
        pending: list[AccessRecord] = []
        while True:
            stopping = self._stop.is_set()
            deadline = time.monotonic() + self.flush_interval_s
            while len(pending) < self.batch_size:
                remaining = deadline - time.monotonic()
                try:
                    if stopping or remaining <= 0:
                        pending.append(self._queue.get_nowait())
                    else:
                        pending.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            if pending:
                if self._write(pending):
                    for _ in pending:
                        self._queue.task_done()
                    pending = []
                elif stopping:
                    log.error("access log: %d records not written at shutdown", len(pending))
                    for _ in pending:
                        self._queue.task_done()
                    return
                else:
                    self._stop.wait(0.5)  # database hiccup: keep the batch, retry
            elif stopping:
                return

    def _write(self, batch: list[AccessRecord]) -> bool:
        try:
            with self.engine.begin() as conn:
                conn.execute(access_log.insert(), [asdict(r) for r in batch])
            self.written += len(batch)
            return True
        except Exception as exc:  # noqa: BLE001 - never lose the batch on a transient failure
            log.warning(
                "access log write failed (%s): %d records kept for retry", exc.__class__.__name__, len(batch)
            )
        if len(batch) > 1:
            # One bad row must not block the others forever: write them one by one.
            return self._write_one_by_one(batch)
        return False

    def _write_one_by_one(self, batch: list[AccessRecord]) -> bool:
        failed: list[AccessRecord] = []
        for record in batch:
            try:
                with self.engine.begin() as conn:
                    conn.execute(access_log.insert(), [asdict(record)])
                self.written += 1
            except Exception:  # noqa: BLE001 - judged below
                failed.append(record)
        if len(failed) == len(batch):
            return False  # nothing goes in: the database is down, keep the batch
        for record in failed:
            log.error(
                "access record refused by the database, dropped", extra={"request_id": record.request_id}
            )
        return True

"""The outbox relay: publishes committed events, in order, and marks them sent.

Runs in a service's worker, never in a web process. On PostgreSQL several relays may
run (rows are claimed with FOR UPDATE SKIP LOCKED); on SQLite exactly one relay per file.
A row is marked sent only after the broker confirmed it; when the broker is down the
relay backs off and tries again — rows are never dropped.

The relay wakes as soon as events are committed: in the same process through the
database's `outbox_signal`, from another process (the web workers, in distributed mode)
through PostgreSQL's NOTIFY on `coordo_outbox`, sent in the committing transaction. The
poll every `idle_wait_s` is only the safety net for a notification that was missed.
"""

from __future__ import annotations

import logging
import select as os_select  # sqlalchemy.select is the other select here
import threading
import time
from datetime import UTC, datetime

import psycopg
from opentelemetry import trace
from sqlalchemy import bindparam, select, update

from chassis import tracing
from chassis.bus import OutgoingMessage, Publisher, PublishError
from chassis.db import OUTBOX_CHANNEL, Database

log = logging.getLogger(__name__)


class CommitNotifications:
    """A LISTEN connection on the outbox channel (PostgreSQL only). Any failure falls back
    to plain waiting: the relay's poll still finds every row, only later."""

    def __init__(self, db: Database) -> None:
        url = db.engine.url
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.connection: psycopg.Connection[tuple[object, ...]] | None = None

    def wait(self, timeout: float, local: threading.Event) -> None:
        if local.is_set():
            return
        try:
            if self.connection is None or self.connection.closed:
                self.connection = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                self.connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
            # In slices, so that a stop (which sets `local`) is seen within 0.1 s. Waiting is
            # select() on the connection, then one look for notifications: psycopg's own
            # `notifies(timeout=…)` ends each wait spinning on zero-timeout polls until its
            # deadline (its poll rounds the timeout down), a few hundred a second when idle.
            deadline = time.monotonic() + timeout
            while not local.is_set() and (left := deadline - time.monotonic()) > 0:
                readable, _, _ = os_select.select([self.connection.fileno()], [], [], min(left, 0.1))
                # timeout=0 reads what arrived, once; several commits make one wake-up.
                if readable and any([True for _ in self.connection.notifies(timeout=0)]):
                    break
        except psycopg.Error as exc:
            log.warning("outbox relay cannot listen for commits, polling instead: %s", exc)
            self.close()
            local.wait(timeout)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        broker_url: str,
        *,
        batch_size: int = 500,
        idle_wait_s: float | None = None,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.db = db
        self.publisher = Publisher(broker_url)
        self.batch_size = batch_size
        # With commit notifications the poll is a safety net; without (SQLite: the relay
        # lives in the writers' process and gets `outbox_signal`) it is the same net.
        self.idle_wait_s = idle_wait_s if idle_wait_s is not None else 1.0
        self.notifications = None if db.is_sqlite else CommitNotifications(db)
        self.max_backoff_s = max_backoff_s
        self.tracer = tracing.tracer(db.service)
        self.failures = 0
        # Claim and mark in one statement (one round trip, not three); the mark commits only
        # after the broker confirmed: a failed publish rolls it back. Built once: the relay
        # runs it hundreds of times a second, and building it again costs its cache key.
        outbox = db.outbox
        oldest_pending = (
            select(outbox.c.position)
            .where(outbox.c.published_at.is_(None))
            .order_by(outbox.c.position)
            .limit(batch_size)
        )
        if not db.is_sqlite:
            oldest_pending = oldest_pending.with_for_update(skip_locked=True)
        self._claim = (
            update(outbox)
            .where(outbox.c.position.in_(oldest_pending.scalar_subquery()))
            .values(published_at=bindparam("now"))
            .returning(outbox.c.position, outbox.c.routing_key, outbox.c.envelope)
        )

    def publish_pending(self) -> int:
        """Publish one batch; return how many rows were sent. Raises PublishError."""
        # A plain connection: the relay runs Core statements only, and an ORM session's
        # bookkeeping cost as much again as the statement on this hot path.
        with self.db.engine.begin() as connection:
            claimed = connection.execute(self._claim, {"now": datetime.now(UTC)}).all()
            if not claimed:
                return 0
            rows = sorted(claimed, key=lambda row: row.position)  # RETURNING keeps no order
            messages = []
            spans: list[trace.Span] = []
            for row in rows:
                envelope = row.envelope
                # A producer span per message, child of the request that wrote the event,
                # without making it current (cheaper: the relay is a hot loop).
                parent = tracing.extracted_context({"traceparent": envelope.get("traceparent") or ""})
                span = self.tracer.start_span(
                    f"{row.routing_key} publish",
                    context=parent,
                    kind=trace.SpanKind.PRODUCER,
                    attributes={"messaging.system": "rabbitmq", "messaging.message.id": envelope["id"]},
                )
                headers = tracing.inject_headers({"x-attempts": 0}, context=trace.set_span_in_context(span))
                spans.append(span)
                messages.append(OutgoingMessage(row.routing_key, envelope, headers))
            # Raises PublishError: the transaction rolls back and the rows stay pending.
            try:
                self.publisher.publish(messages)
            finally:
                for span in spans:
                    span.end()
            return len(rows)

    def run(self, stop: threading.Event) -> None:
        log.info("outbox relay started", extra={"service": self.db.service})
        while not stop.is_set():
            try:
                sent = self.publish_pending()
                self.failures = 0
            except PublishError as exc:
                self.failures += 1
                delay = min(self.max_backoff_s, 0.1 * 2 ** min(self.failures, 10))
                log.warning("outbox relay cannot publish, retrying in %.1fs: %s", delay, exc)
                stop.wait(delay)
                continue
            except Exception:  # database hiccup: keep the relay alive
                self.failures += 1
                log.exception("outbox relay error")
                stop.wait(min(self.max_backoff_s, 0.1 * 2 ** min(self.failures, 10)))
                continue
            if sent < self.batch_size:
                if self.notifications is not None:
                    self.notifications.wait(self.idle_wait_s, self.db.outbox_signal)
                else:
                    self.db.outbox_signal.wait(self.idle_wait_s)
                self.db.outbox_signal.clear()
        self.publisher.close()
        if self.notifications is not None:
            self.notifications.close()
        log.info("outbox relay stopped", extra={"service": self.db.service})

"""The outbox relay: publishes committed events, in order, and marks them sent.

Runs in a service's worker, never in a web process. On PostgreSQL several relays may
run (rows are claimed with FOR UPDATE SKIP LOCKED); on SQLite exactly one relay per file.
A row is marked sent only after the broker confirmed it; when the broker is down the
relay backs off and tries again — rows are never dropped.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from opentelemetry import trace
from sqlalchemy import select, update

from chassis import tracing
from chassis.bus import OutgoingMessage, Publisher, PublishError
from chassis.db import Database

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        broker_url: str,
        *,
        batch_size: int = 500,
        idle_wait_s: float = 0.05,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.db = db
        self.publisher = Publisher(broker_url)
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.max_backoff_s = max_backoff_s
        self.tracer = tracing.tracer(db.service)
        self.failures = 0

    def publish_pending(self) -> int:
        """Publish one batch; return how many rows were sent. Raises PublishError."""
        outbox = self.db.outbox
        with self.db.session_factory() as session, session.begin():
            query = (
                select(outbox.c.position, outbox.c.routing_key, outbox.c.envelope)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.position)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = session.execute(query).all()
            if not rows:
                return 0
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
            session.execute(
                update(outbox)
                .where(outbox.c.position.in_([r.position for r in rows]))
                .values(published_at=datetime.now(UTC))
            )
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
                # Wake at once when this process committed events, else poll.
                self.db.outbox_signal.wait(self.idle_wait_s)
                self.db.outbox_signal.clear()
        self.publisher.close()
        log.info("outbox relay stopped", extra={"service": self.db.service})

"""Idempotent event consumers.

Each message is handled in one database transaction that also writes its
`processed_messages(consumer_id, message_id)` key: a duplicate delivery hits the
primary key and is acknowledged without effect. The message is acknowledged only
after the commit. A handler that keeps failing is retried a bounded number of
times (with backoff), then dead-lettered to `<queue>.dlq` and the consumer goes on.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Consumer, Message, Producer, Queue
from opentelemetry import trace
from sqlalchemy.exc import IntegrityError

from chassis import bus, tracing
from chassis.db import Database, UnitOfWork, insert_ignoring_conflicts

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, dict[str, Any]], None]


ENVELOPE_KEYS = ("id", "type", "version", "producer", "subject", "data")


@dataclass
class _Delivery:
    message: Message
    queue_name: str
    headers: dict[str, Any]
    envelope: dict[str, Any]


@dataclass(frozen=True)
class Subscription:
    """`handlers` maps a routing key `<producer>.<EventType>` to its handler."""

    consumer: str
    handlers: dict[str, Handler]


def queues_for(subscription: Subscription) -> list[Queue]:
    """One durable queue per producer: `<consumer>.<producer>.events` (+ its .dlq)."""
    by_producer: dict[str, list[str]] = {}
    for key in subscription.handlers:
        by_producer.setdefault(key.split(".", 1)[0], []).append(key)
    queues: list[Queue] = []
    for producer, keys in sorted(by_producer.items()):
        queues.extend(bus.consumer_queue(f"{subscription.consumer}.{producer}.events", keys))
    return queues


class EventConsumer:
    def __init__(
        self,
        db: Database,
        broker_url: str,
        subscription: Subscription,
        *,
        max_attempts: int = 5,
        base_backoff_s: float = 0.05,
        max_batch: int = 100,
    ) -> None:
        self.db = db
        self.broker_url = broker_url
        self.subscription = subscription
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.tracer = tracing.tracer(db.service)
        self.ready = threading.Event()
        self.handled = 0
        self.max_batch = max_batch
        self._pending: list[_Delivery] = []
        # One statement for any batch size, compiled once: executed with a list of keys,
        # SQLAlchemy sends it as one multi-row INSERT (insertmanyvalues) and returns the
        # keys that were new. (`.values([...])` would be a new, uncached statement per size.)
        table = db.processed_messages
        self._insert_keys = insert_ignoring_conflicts(table, db.engine.dialect.name).returning(
            table.c.consumer_id, table.c.message_id
        )
        self._retry_publisher = bus.Publisher(broker_url)
        # kombu's in-memory transport ignores `multiple` on an ack: ack one by one there.
        self._acks_many = not bus.is_memory(broker_url)

    def queues(self) -> list[Queue]:
        return queues_for(self.subscription)

    def main_queues(self) -> list[Queue]:
        return [q for q in self.queues() if not q.name.endswith(".dlq")]

    def declare(self, connection: Connection) -> None:
        bus.declare(connection, self.queues())

    # -- handling -------------------------------------------------------------------
    def handle(self, envelope: dict[str, Any], queue_name: str) -> bool:
        """Apply one event exactly once. Returns False when it was a duplicate."""
        (outcome,) = self.handle_batch([(envelope, queue_name, None)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def handle_batch(
        self, items: list[tuple[dict[str, Any], str, dict[str, Any] | None]]
    ) -> list[bool | Exception]:
        """Apply events in ONE transaction: one commit (one fsync) for what the broker had
        ready, instead of one per message.

        Fast path: skip what was processed already (one query), apply the rest, write their
        processed keys, commit. If anything fails, roll back and redo the batch with a
        savepoint per message, so that a failing handler costs only its own message.
        Outcome per item: True applied, False duplicate, or the handler's exception.
        """
        try:
            return self._handle_fast(items)
        except Exception:  # noqa: BLE001 - retried message by message just below
            log.info("batch of %d failed as a whole; applying message by message", len(items))
        return self._handle_one_by_one(items)

    def _span(self, envelope: dict[str, Any], headers: dict[str, Any] | None) -> Any:
        return self.tracer.start_as_current_span(
            f"{envelope.get('producer')}.{envelope.get('type')} process",
            context=tracing.extracted_context(headers) if headers is not None else None,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "rabbitmq", "messaging.message.id": str(envelope.get("id"))},
        )

    def _handle_fast(
        self, items: list[tuple[dict[str, Any], str, dict[str, Any] | None]]
    ) -> list[bool | Exception]:
        outcomes: list[bool | Exception] = []
        with self.db.unit_of_work() as uow:
            # Record every key first, in one statement that also says which were new: what
            # was processed already (a redelivery) is skipped. Rolled back with the batch
            # if a handler fails.
            now = datetime.now(UTC)
            keys = {(queue_name, envelope["id"]) for envelope, queue_name, _ in items}
            new = {
                (row.consumer_id, row.message_id)
                for row in uow.session.execute(
                    self._insert_keys,
                    [{"consumer_id": q, "message_id": m, "processed_at": now} for q, m in sorted(keys)],
                )
            }
            for envelope, queue_name, headers in items:
                key = (queue_name, envelope["id"])
                if key not in new:
                    outcomes.append(False)
                    continue
                new.discard(key)  # the same message twice in one batch: applied once
                uow.actor = envelope.get("actor")
                with self._span(envelope, headers):
                    handler = self.subscription.handlers.get(f"{envelope['producer']}.{envelope['type']}")
                    if handler is not None:
                        handler(uow, envelope)
                outcomes.append(True)
            uow.commit()
        return outcomes

    def _handle_one_by_one(
        self, items: list[tuple[dict[str, Any], str, dict[str, Any] | None]]
    ) -> list[bool | Exception]:
        outcomes: list[bool | Exception] = []
        with self.db.unit_of_work() as uow:
            for envelope, queue_name, headers in items:
                uow.actor = envelope.get("actor")
                with self._span(envelope, headers) as span:
                    outcome = self._apply(uow, envelope, queue_name)
                    if isinstance(outcome, Exception):
                        span.record_exception(outcome)
                    else:
                        span.set_attribute("coordo.duplicate", not outcome)
                outcomes.append(outcome)
            uow.commit()
        return outcomes

    def _apply(self, uow: UnitOfWork, envelope: dict[str, Any], queue_name: str) -> bool | Exception:
        savepoint = uow.session.begin_nested()
        try:
            uow.session.execute(
                self.db.processed_messages.insert().values(
                    consumer_id=queue_name, message_id=envelope["id"], processed_at=datetime.now(UTC)
                )
            )
            uow.session.flush()
        except IntegrityError:
            savepoint.rollback()
            return False
        try:
            handler = self.subscription.handlers.get(f"{envelope['producer']}.{envelope['type']}")
            if handler is not None:
                handler(uow, envelope)
            uow.session.flush()
            savepoint.commit()
            return True
        except Exception as exc:  # the handler's failure is this message's, not the batch's
            savepoint.rollback()
            return exc

    def _on_message(self, body: Any, message: Message, connection: Connection) -> None:
        headers = dict(message.headers or {})
        queue_name = self._queue_of(message)
        try:
            envelope = body if isinstance(body, dict) else json.loads(body)
            if not isinstance(envelope, dict) or not all(k in envelope for k in ENVELOPE_KEYS):
                raise ValueError("not an event envelope")
        except (TypeError, ValueError) as exc:
            log.error("unreadable message on %s, dead-lettered: %s", queue_name, exc)
            self._dead_letter(message, connection, queue_name, headers)
            return
        self._pending.append(_Delivery(message, queue_name, headers, envelope))

    def _process_pending(self, connection: Connection) -> None:
        batch, self._pending = self._pending, []
        # If the transaction itself fails (database down), nothing is acked: the broker
        # redelivers after the reconnect, and the processed_messages keys dedupe.
        outcomes = self.handle_batch([(d.envelope, d.queue_name, d.headers) for d in batch])
        if self._acks_many and not any(isinstance(outcome, Exception) for outcome in outcomes):
            # One frame settles the batch: every earlier delivery on this channel is settled.
            batch[-1].message.ack(multiple=True)
            self.handled += len(batch)
            return
        for delivery, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._retry_or_dead_letter(
                    delivery.message,
                    connection,
                    delivery.queue_name,
                    delivery.headers,
                    delivery.envelope,
                    outcome,
                )
            else:
                delivery.message.ack()
                self.handled += 1

    def _queue_of(self, message: Message) -> str:
        # One queue per producer: the routing key `<producer>.<Type>` names it; a retried
        # copy was sent straight to the queue, so its routing key is the queue name.
        routing_key = str(message.delivery_info.get("routing_key") or "")
        if routing_key.endswith(".events"):
            return routing_key
        return f"{self.subscription.consumer}.{routing_key.split('.', 1)[0]}.events"

    def _retry_or_dead_letter(
        self,
        message: Message,
        connection: Connection,
        queue_name: str,
        headers: dict[str, Any],
        envelope: dict[str, Any],
        exc: Exception,
    ) -> None:
        attempts = int(headers.get("x-attempts", 0)) + 1
        if attempts >= self.max_attempts:
            log.error(
                "event %s %s failed %d times, dead-lettered: %s",
                envelope.get("type"),
                envelope.get("id"),
                attempts,
                exc.__class__.__name__,
            )
            self._dead_letter(message, connection, queue_name, headers)
            return
        log.warning(
            "event %s %s failed (attempt %d), retrying", envelope.get("type"), envelope.get("id"), attempts
        )
        threading.Event().wait(min(2.0, self.base_backoff_s * 2 ** (attempts - 1)))
        # Re-queue a copy at the tail with its attempt count — confirmed by the broker — and
        # only then ack the original: a crash in between means a duplicate, never a loss.
        self._retry_publisher.publish(
            [
                bus.OutgoingMessage(
                    routing_key=queue_name,
                    envelope=envelope,
                    headers={**headers, "x-attempts": attempts},
                    exchange="",
                )
            ]
        )
        message.ack()

    def _dead_letter(
        self, message: Message, connection: Connection, queue_name: str, headers: dict[str, Any]
    ) -> None:
        if bus.is_memory(self.broker_url):
            # The memory transport has no dead-letter exchange: put it there ourselves.
            Producer(connection.default_channel).publish(
                message.body,
                exchange=bus.DEAD_LETTER_EXCHANGE,
                routing_key=f"{queue_name}.dlq",
                headers=headers,
                content_type=message.content_type,
                content_encoding=message.content_encoding,
                retry=False,
            )
            message.ack()
        else:
            message.reject(requeue=False)  # RabbitMQ routes it through coordo.dlx

    # -- loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                with bus.connect(self.broker_url) as connection:
                    connection.ensure_connection(max_retries=1)
                    self.declare(connection)
                    consumer = Consumer(
                        connection.default_channel,
                        queues=self.main_queues(),
                        callbacks=[lambda body, message: self._on_message(body, message, connection)],
                        accept=["json", "application/json"],
                        prefetch_count=100,
                    )
                    with consumer:
                        self.ready.set()
                        failures = 0
                        while not stop.is_set():
                            try:
                                connection.drain_events(timeout=0.5)
                            except TimeoutError:
                                continue
                            # Take what else is already here, then apply it all in one transaction.
                            while len(self._pending) < self.max_batch:
                                try:
                                    connection.drain_events(timeout=0.001)
                                except TimeoutError:
                                    break
                            if self._pending:
                                self._process_pending(connection)
            except Exception as exc:  # broker or database unreachable, connection lost: reconnect
                self._pending = []  # unacked: the broker delivers them again
                failures += 1
                self.ready.clear()
                delay = min(5.0, 0.2 * 2 ** min(failures, 5))
                log.warning(
                    "consumer %s disconnected (%s), reconnecting in %.1fs",
                    self.subscription.consumer,
                    exc,
                    delay,
                )
                stop.wait(delay)
        self.ready.clear()
        self._retry_publisher.close()

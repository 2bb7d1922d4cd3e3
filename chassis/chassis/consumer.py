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

from chassis import bus, events, tracing
from chassis.db import Database, UnitOfWork

log = logging.getLogger(__name__)

Handler = Callable[[UnitOfWork, dict[str, Any]], None]


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
    ) -> None:
        self.db = db
        self.broker_url = broker_url
        self.subscription = subscription
        self.max_attempts = max_attempts
        self.base_backoff_s = base_backoff_s
        self.tracer = tracing.tracer(db.service)
        self.ready = threading.Event()
        self.handled = 0

    def queues(self) -> list[Queue]:
        return queues_for(self.subscription)

    def main_queues(self) -> list[Queue]:
        return [q for q in self.queues() if not q.name.endswith(".dlq")]

    def declare(self, connection: Connection) -> None:
        bus.declare(connection, self.queues())

    # -- handling -------------------------------------------------------------------
    def handle(self, envelope: dict[str, Any], queue_name: str) -> bool:
        """Apply one event exactly once. Returns False when it was a duplicate."""
        routing_key = f"{envelope['producer']}.{envelope['type']}"
        handler = self.subscription.handlers.get(routing_key)
        with self.db.unit_of_work(actor=envelope.get("actor")) as uow:
            try:
                uow.session.execute(
                    self.db.processed_messages.insert().values(
                        consumer_id=queue_name, message_id=envelope["id"], processed_at=datetime.now(UTC)
                    )
                )
                uow.session.flush()
            except IntegrityError:
                return False
            if handler is not None:
                handler(uow, envelope)
            uow.commit()
        return True

    def _on_message(self, body: Any, message: Message, connection: Connection) -> None:
        headers = dict(message.headers or {})
        queue_name = self._queue_of(message)
        try:
            envelope = body if isinstance(body, dict) else json.loads(body)
            # The contract is checked on arrival too: a message that breaks it is poison.
            events.validate(envelope)
        except (TypeError, ValueError, KeyError) as exc:
            log.error("unreadable or invalid message on %s, dead-lettered: %s", queue_name, exc)
            self._dead_letter(message, connection, queue_name, headers)
            return
        parent = tracing.extracted_context(headers)
        with self.tracer.start_as_current_span(
            f"{envelope.get('producer')}.{envelope.get('type')} process",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={"messaging.system": "rabbitmq", "messaging.message.id": str(envelope.get("id"))},
        ) as span:
            try:
                duplicate = not self.handle(envelope, queue_name)
                span.set_attribute("coordo.duplicate", duplicate)
                message.ack()
                self.handled += 1
            except Exception as exc:
                span.record_exception(exc)
                self._retry_or_dead_letter(message, connection, queue_name, headers, envelope, exc)

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
        # Re-queue a copy at the tail with its attempt count, then ack the original.
        producer = Producer(connection.default_channel)
        producer.publish(
            message.body,
            exchange="",
            routing_key=queue_name,
            headers={**headers, "x-attempts": attempts},
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            delivery_mode=2,
            message_id=envelope.get("id"),
            retry=False,
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
            except Exception as exc:  # broker unreachable or connection lost: reconnect
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

"""The event bus on kombu: one topic exchange, a durable queue per consumer, dead-lettering.

`memory://` (embedded mode) and `amqp://` (RabbitMQ) run the same code. On AMQP the
publisher uses confirms in batches: publish a window of messages, then wait until the
broker has acknowledged every one of them (a nack or a timeout fails the whole batch,
which the outbox relay will send again — consumers are idempotent).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import amqp
from kombu import Connection, Exchange, Producer, Queue, binding

log = logging.getLogger(__name__)

EVENTS_EXCHANGE = Exchange("coordo.events", type="topic", durable=True)
DEAD_LETTER_EXCHANGE = Exchange("coordo.dlx", type="direct", durable=True)
CONFIRM_TIMEOUT_S = 10.0


class PublishError(Exception):
    pass


@dataclass
class OutgoingMessage:
    routing_key: str
    envelope: dict[str, Any]
    headers: dict[str, Any] = field(default_factory=dict)
    # "" is the default exchange: the routing key then names a queue (retries go there).
    exchange: str = EVENTS_EXCHANGE.name


def is_memory(url: str) -> bool:
    return url.startswith("memory")


def connect(url: str) -> Connection:
    options: dict[str, Any] = {}
    if is_memory(url):
        # The virtual transport polls; 5 ms keeps in-process latency low at little cost.
        options["polling_interval"] = 0.005
    return Connection(url, transport_options=options, heartbeat=0, connect_timeout=5)


def consumer_queue(name: str, routing_keys: Iterable[str]) -> list[Queue]:
    """A durable queue bound to `routing_keys`, dead-lettering into `<name>.dlq`."""
    main = Queue(
        name,
        bindings=[binding(EVENTS_EXCHANGE, routing_key=key) for key in routing_keys],
        durable=True,
        queue_arguments={
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
            "x-dead-letter-routing-key": f"{name}.dlq",
        },
    )
    dlq = Queue(f"{name}.dlq", exchange=DEAD_LETTER_EXCHANGE, routing_key=f"{name}.dlq", durable=True)
    return [main, dlq]


def instance_queue(name: str, routing_keys: Iterable[str]) -> Queue:
    """A queue owned by one process (e.g. one gateway instance): gone when it disconnects."""
    return Queue(
        name,
        bindings=[binding(EVENTS_EXCHANGE, routing_key=key) for key in routing_keys],
        exclusive=True,
        auto_delete=True,
        durable=False,
    )


def declare(connection: Connection, queues: Iterable[Queue]) -> None:
    channel = connection.default_channel
    EVENTS_EXCHANGE(channel).declare()
    DEAD_LETTER_EXCHANGE(channel).declare()
    for queue in queues:
        queue(channel).declare()


class Publisher:
    """Publishes batches with confirms; owns one connection, used by one thread at a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._next_tag = 1
        self._outstanding: set[int] = set()
        self._nacked = False
        self._lock = threading.Lock()

    def _ensure(self) -> Producer:
        if self._producer is None:
            connection = connect(self.url)
            connection.ensure_connection(max_retries=1)
            channel = connection.channel()
            EVENTS_EXCHANGE(channel).declare()
            if not is_memory(self.url):
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
            self._connection = connection
            self._producer = Producer(channel, exchange=EVENTS_EXCHANGE)
            self._next_tag = 1  # delivery tags restart on every new channel
        return self._producer

    def _settle(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._outstanding = {tag for tag in self._outstanding if tag > delivery_tag}
        else:
            self._outstanding.discard(delivery_tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        self._settle(delivery_tag, multiple)

    def publish(self, messages: list[OutgoingMessage]) -> None:
        """Return once the broker holds every message; raise PublishError otherwise."""
        if not messages:
            return
        with self._lock:
            try:
                producer = self._ensure()
                self._nacked = False
                if is_memory(self.url):
                    for message in messages:
                        producer.publish(
                            json.dumps(message.envelope, separators=(",", ":")),
                            routing_key=message.routing_key,
                            # An Exchange object: kombu would take the string "" for "unset".
                            exchange=Exchange(message.exchange),
                            content_type="application/json",
                            content_encoding="utf-8",
                            delivery_mode=2,
                            message_id=message.envelope["id"],
                            type=message.envelope["type"],
                            headers=message.headers,
                            retry=False,
                        )
                else:
                    # py-amqp directly: kombu's Producer layer costs more than the broker here.
                    channel = producer.channel
                    for message in messages:
                        channel.basic_publish(
                            amqp.Message(
                                json.dumps(message.envelope, separators=(",", ":")),
                                content_type="application/json",
                                content_encoding="utf-8",
                                delivery_mode=2,
                                message_id=message.envelope["id"],
                                type=message.envelope["type"],
                                application_headers=message.headers,
                            ),
                            exchange=message.exchange,
                            routing_key=message.routing_key,
                        )
                        self._outstanding.add(self._next_tag)
                        self._next_tag += 1
                if not is_memory(self.url):
                    self._wait_confirms()
            except PublishError:
                self.close()
                raise
            except Exception as exc:  # broker down, connection reset, channel closed
                self.close()
                raise PublishError(f"publish failed: {exc.__class__.__name__}: {exc}") from exc

    def _wait_confirms(self) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self._outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError("timed out waiting for publisher confirms")
            self._connection.drain_events(timeout=min(remaining, 1.0))
        if self._nacked:
            raise PublishError("broker refused (nack) a message of the batch")

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail again
                pass
        self._connection = None
        self._producer = None
        self._outstanding = set()

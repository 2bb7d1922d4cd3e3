"""Every gateway instance listens for revocations on its own queue and evicts at once.

The queue `gateway.<hostname>.<pid>.<uuid8>` is exclusive and auto-deleted: it lives
exactly as long as this process's connection. While the consumer is not connected a
revocation could be missed, so the decision cache is switched off (and emptied) until
it consumes again: a revocation always bites within a second.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from kombu import Connection, Consumer, Message
from opentelemetry import trace

from chassis import bus, tracing
from gateway.decisions import DecisionCache

log = logging.getLogger(__name__)

# Every event after which a cached "allowed" may have become wrong. A member added to a
# circle can close access too: one the patient refused sharing with shuts every path that
# names it (through its structure, a delegation, break-the-glass).
ROUTING_KEYS = (
    "cercle.HabilitationRevoked",
    "cercle.CareCircleMemberRemoved",
    "cercle.CareCircleMemberAdded",
    "cercle.BreakGlassAccessEnded",
    "cercle.InformationSharingRefused",
    "identity.DelegationRevoked",
)
DELEGATION_REVOKED = "DelegationRevoked"


def instance_queue_name() -> str:
    return f"gateway.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


def patient_of(envelope: Any) -> str | None:
    """The patient an event is about: `data.patient_id`, else the envelope's subject."""
    if not isinstance(envelope, dict):
        return None
    data = envelope.get("data")
    if isinstance(data, dict) and isinstance(data.get("patient_id"), str):
        return str(data["patient_id"])
    subject = envelope.get("subject")
    return subject if isinstance(subject, str) and subject else None


def delegation_of(envelope: Any) -> tuple[str, str] | None:
    """(delegate_id, grantor_id) of a DelegationRevoked event, else None."""
    if not isinstance(envelope, dict) or envelope.get("type") != DELEGATION_REVOKED:
        return None
    data = envelope.get("data")
    if not isinstance(data, dict):
        return None
    delegate, grantor = data.get("delegate_id"), data.get("grantor_id")
    if isinstance(delegate, str) and isinstance(grantor, str):
        return delegate, grantor
    return None


class RevocationConsumer:
    def __init__(
        self,
        broker_url: str,
        cache: DecisionCache,
        *,
        routing_keys: tuple[str, ...] = ROUTING_KEYS,
        queue_name: str | None = None,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self._on_event = on_event
        self.broker_url = broker_url
        self.cache = cache
        self.routing_keys = routing_keys
        self.queue_name = queue_name or instance_queue_name()
        self.tracer = tracing.tracer("gateway")
        self.ready = threading.Event()  # set while consuming
        self.evicted = 0
        self.handled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="gateway-revocations", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def handle(self, envelope: Any, routing_key: str, headers: dict[str, Any] | None) -> int:
        """Evict the patient's cached decisions inside a CONSUMER span joined to the producer's trace."""
        if isinstance(envelope, dict) and envelope.get("type"):
            name = f"{envelope.get('producer') or routing_key.split('.', 1)[0]}.{envelope['type']}"
        else:
            name = routing_key
        carrier = dict(headers or {})
        if "traceparent" not in carrier and isinstance(envelope, dict) and envelope.get("traceparent"):
            carrier["traceparent"] = envelope["traceparent"]
        attributes: dict[str, str] = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.queue_name,
        }
        if isinstance(envelope, dict) and envelope.get("id"):
            attributes["messaging.message.id"] = str(envelope["id"])
        with self.tracer.start_as_current_span(
            f"{name} process",
            context=tracing.extracted_context(carrier),
            kind=trace.SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            delegation = delegation_of(envelope)
            if delegation is not None:
                count = self.cache.evict_delegation(*delegation)
            else:
                patient_id = patient_of(envelope)
                if patient_id is None:
                    log.warning(
                        "revocation event without a patient: ignored", extra={"routing_key": routing_key}
                    )
                    return 0
                count = self.cache.evict_patient(patient_id)
            span.set_attribute("coordo.evicted", count)
            self.evicted += count
            self.handled += 1
            if self._on_event is not None:
                self._on_event()
            return count

    def _on_message(self, body: Any, message: Message) -> None:
        try:
            envelope = body if isinstance(body, dict) else json.loads(body)
        except (TypeError, ValueError):
            envelope = None
        routing_key = str(message.delivery_info.get("routing_key") or "")
        try:
            self.handle(envelope, routing_key, dict(message.headers or {}))
        finally:
            # Eviction is idempotent and in memory: nothing to retry.
            message.ack()

    def run(self) -> None:
        failures = 0
        queue = bus.instance_queue(self.queue_name, self.routing_keys)
        while not self._stop.is_set():
            try:
                with bus.connect(self.broker_url) as connection:
                    connection.ensure_connection(max_retries=1)
                    self._consume(connection, queue)
                    failures = 0
            except Exception as exc:  # broker unreachable or connection lost: reconnect
                failures += 1
                delay = min(5.0, 0.2 * 2 ** min(failures, 5))
                log.warning("revocation consumer disconnected (%s), reconnecting in %.1fs", exc, delay)
                self._stop.wait(delay)
            finally:
                self._offline()
        self._offline()

    def _consume(self, connection: Connection, queue: Any) -> None:
        channel = connection.default_channel
        bus.EVENTS_EXCHANGE(channel).declare()
        consumer = Consumer(
            channel,
            queues=[queue],
            callbacks=[self._on_message],
            accept=["json", "application/json"],
            prefetch_count=100,
        )
        with consumer:
            # Anything cached before now may predate a revocation we could not hear.
            self.cache.clear()
            self.cache.enabled.set()
            self.ready.set()
            log.info("revocation consumer listening on %s", self.queue_name)
            while not self._stop.is_set():
                try:
                    connection.drain_events(timeout=0.25)
                except TimeoutError:
                    continue

    def _offline(self) -> None:
        self.ready.clear()
        self.cache.enabled.clear()
        self.cache.clear()

"""A service's worker: its outbox relay and its event consumers, in threads of one process."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

from chassis import bus
from chassis.consumer import EventConsumer, Subscription
from chassis.db import Database
from chassis.process import freeze_startup_heap
from chassis.relay import OutboxRelay

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        db: Database,
        broker_url: str,
        subscriptions: Iterable[Subscription] = (),
        *,
        background: Iterable[Callable[[threading.Event], None]] = (),
    ) -> None:
        self.db = db
        self.broker_url = broker_url
        self.relay = OutboxRelay(db, broker_url)
        self.consumers = [EventConsumer(db, broker_url, s) for s in subscriptions]
        self.background = list(background)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def declare_topology(self) -> None:
        """Declare this service's queues so that no event is published before they exist."""
        if not self.consumers:
            return
        with bus.connect(self.broker_url) as connection:
            for consumer in self.consumers:
                consumer.declare(connection)

    def start(self) -> None:
        name = self.db.service
        targets: list[tuple[str, Callable[[threading.Event], Any]]] = [(f"{name}-relay", self.relay.run)]
        targets += [(f"{name}-consumer-{c.subscription.consumer}", c.run) for c in self.consumers]
        targets += [(f"{name}-bg-{i}", fn) for i, fn in enumerate(self.background)]
        for thread_name, target in targets:
            thread = threading.Thread(target=target, args=(self.stop_event,), name=thread_name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        return all(c.ready.wait(timeout) for c in self.consumers)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.db.outbox_signal.set()
        for thread in self.threads:
            thread.join(timeout)

    def run_forever(self) -> None:
        """Entry point of a distributed worker process: runs until SIGTERM/SIGINT."""

        def _stop(_signum: int, _frame: Any) -> None:
            self.stop_event.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.start()
        freeze_startup_heap()
        log.info("worker %s running", self.db.service)
        while not self.stop_event.wait(1.0):
            pass
        self.stop()
        log.info("worker %s stopped", self.db.service)

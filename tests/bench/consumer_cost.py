"""Benchmark: what one event costs a chassis consumer, done back to back or now and then.

    .venv/bin/python -m tests.bench.consumer_cost [--events 1000]

The same `EventConsumer` on PostgreSQL, its handler writing one read-model row (as the
habilitation and known-patient read models do), measured in CPU per event:
- `handle_batch` of one event, back to back: the cost a loop benchmark sees;
- the same call with a pause before each event (1, 5, 16 ms; at 60 creations/s a consumer
  gets an event about every 16 ms): the cost when the work comes now and then, as in the
  running suite, where ~20 processes share the machine's cores;
- live on RabbitMQ (the consumer's own loop: receive, one transaction, ack), events
  published by another process at 60/s and at 2,000/s (where they arrive in batches).
Prints each figure and the command that reproduces it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, create_engine, text

from chassis import bus
from chassis.consumer import EventConsumer, Subscription
from chassis.db import Database, UnitOfWork, add_chassis_tables, insert_if_absent

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
AMQP = os.environ.get("COORDO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
DB_NAME = "bench_consumer_cost"
PRODUCER = "benchcost"
QUEUE = f"bench-cost.{PRODUCER}.events"


def envelope() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "Thing",
        "version": 1,
        "producer": PRODUCER,
        "subject": str(uuid.uuid4()),
        "occurred_at": "2026-12-01T00:00:00+00:00",
        "data": {"id": str(uuid.uuid4())},
    }


def publish(rate: float, events: int) -> None:
    """The publisher, in its own process: `events` events at `rate` per second."""
    publisher = bus.Publisher(AMQP)
    started = time.perf_counter()
    for index in range(events):
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        publisher.publish([bus.OutgoingMessage(f"{PRODUCER}.Thing", envelope(), {})])
    publisher.close()


def on_the_server(*statements: str) -> None:
    """Run statements outside any database (CREATE / DROP DATABASE)."""
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    admin.dispose()


DROP = f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'


def consumer_on_fresh_database() -> EventConsumer:
    on_the_server(DROP, f'CREATE DATABASE "{DB_NAME}"')
    metadata = MetaData()
    add_chassis_tables(metadata)
    known = Table("known_things", metadata, Column("id", String(36), primary_key=True))
    db = Database(f"{PG}/{DB_NAME}", metadata, "bench", pre_ping=False)  # as a worker's
    metadata.create_all(db.engine)

    def handler(uow: UnitOfWork, event: dict[str, Any]) -> None:
        insert_if_absent(uow.session, known, {"id": event["data"]["id"]})

    return EventConsumer(db, AMQP, Subscription("bench-cost", {f"{PRODUCER}.Thing": handler}))


def cpu_per_call(consumer: EventConsumer, events: int, pause_s: float) -> float:
    """Thread CPU (ms) per one-event `handle_batch`, each after `pause_s` of sleep."""
    spent = 0.0
    for _ in range(events):
        if pause_s:
            time.sleep(pause_s)
        started = time.thread_time()
        consumer.handle_batch([(envelope(), QUEUE, None)])
        spent += time.thread_time() - started
    return spent * 1000 / events


def live(consumer: EventConsumer, rate: float, events: int) -> tuple[float, float]:
    """Process CPU (ms) per event while the consumer's own loop handles `events` published
    at `rate`, its idle CPU taken off; and the mean batch size."""
    with bus.connect(AMQP) as connection:
        consumer.declare(connection)
        for queue in consumer.queues():
            queue.bind(connection.default_channel).purge()
    batches = [0]
    apply = consumer.handle_batch

    def counted(items: Any) -> Any:
        batches[0] += 1
        return apply(items)

    consumer.handle_batch = counted  # type: ignore[method-assign]
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    consumer.ready.wait(10)
    time.sleep(1.0)
    idle_started, idle_cpu = time.perf_counter(), time.process_time()
    time.sleep(2.0)
    idle_rate = (time.process_time() - idle_cpu) / (time.perf_counter() - idle_started)
    handled_before = consumer.handled
    started, cpu_started = time.perf_counter(), time.process_time()
    publisher = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.consumer_cost", "--publish", str(rate), "--events", str(events)]
    )
    while consumer.handled - handled_before < events:
        time.sleep(0.005)
    cpu = time.process_time() - cpu_started - idle_rate * (time.perf_counter() - started)
    publisher.wait()
    stop.set()
    thread.join(5)
    consumer.handle_batch = apply  # type: ignore[method-assign]
    return cpu * 1000 / events, events / max(1, batches[0])


def drop_what_it_made(consumer: EventConsumer) -> None:
    """The benchmark's database and queues: nothing left behind."""
    with bus.connect(AMQP) as connection:
        for queue in consumer.queues():
            queue.bind(connection.default_channel).delete()
    on_the_server(DROP)


def measure(consumer: EventConsumer, events_asked: int) -> None:
    cpu_per_call(consumer, 200, 0.0)  # warm-up: pool, prepared statements
    print(f"one event through a chassis consumer on PostgreSQL (load average {os.getloadavg()[0]:.1f})")
    calls = max(100, events_asked // 3)
    for pause_ms in (0, 1, 5, 16):
        ms = cpu_per_call(consumer, calls if pause_ms else events_asked, pause_ms / 1000)
        print(f"  handle_batch of one event, {pause_ms:>2} ms pause before each: CPU {ms:.3f} ms per event")
    for rate in (60.0, 2000.0):
        events = events_asked if rate < 100 else events_asked * 4
        ms, batch = live(consumer, rate, events)
        print(
            f"  live on RabbitMQ, {rate:,.0f} events/s published by another process: "
            f"CPU {ms:.3f} ms per event, {batch:.1f} events per transaction"
        )
    print(f"reproduce: .venv/bin/python -m tests.bench.consumer_cost --events {events_asked}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--publish", type=float, help=argparse.SUPPRESS)  # the publisher process
    args = parser.parse_args()
    if args.publish:
        publish(args.publish, args.events)
        return
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    consumer = consumer_on_fresh_database()
    try:
        measure(consumer, args.events)
    finally:
        consumer.db.dispose()
        drop_what_it_made(consumer)


if __name__ == "__main__":
    main()

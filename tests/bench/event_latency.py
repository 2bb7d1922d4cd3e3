"""Benchmark: outbox relay throughput and commit → consumer-effect latency, on the real
PostgreSQL and RabbitMQ of this machine.

    .venv/bin/python -m tests.bench.event_latency [--rate 500] [--seconds 20] [--backlog 20000] [--warmup 2]

Three processes, as in the distributed mode: a producer committing use-case transactions
(business row + outbox row) at a fixed rate, a relay (the service worker's outbox relay)
and a consumer (another service's idempotent consumer writing into its own database).
Latency = the consumer's commit (its transaction applying the event returned) − the
producer's commit (the use case's `uow.commit()` returned), each recorded by its process
with the same clock. Split by stage: the relay claims the row (its `published_at`), the
broker confirms the relay's batch, the consumer receives the message, its batch's
transaction begins, and commits. Each process reports the CPU it spent per event; the
slowest event of each second shows whether the tail is spread out or one stall.
The first `--warmup` seconds run at the same rate and are not measured: the producers'
pools connect and their statements get prepared then.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, create_engine, pool, select, text

from chassis import bus
from chassis.consumer import EventConsumer, Subscription
from chassis.db import Database, UnitOfWork, add_chassis_tables
from chassis.process import freeze_startup_heap
from chassis.relay import OutboxRelay


def bench_vhost(url: str) -> str:
    """A vhost of its own (made with rabbitmqctl when it is at hand), so the benchmark's
    events reach no queue of a running suite and leave nothing behind."""
    import shutil
    import subprocess

    if not shutil.which("rabbitmqctl") or not url.endswith("//"):
        return url
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", "coordo_bench"], capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", "coordo_bench", "guest", ".*", ".*", ".*"],
        capture_output=True,
    )
    return url[:-1] + "coordo_bench"


# As deployed in production (deploy/): events were checked against their schemas in CI.
os.environ.setdefault("COORDO_VALIDATE_EVENTS", "0")
PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
AMQP = os.environ.get("COORDO_BENCH_AMQP_URL") or bench_vhost(
    os.environ.get("COORDO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
)


def metadata() -> MetaData:
    md = MetaData()
    add_chassis_tables(md)
    Table(
        "effects",
        md,
        Column("message_id", String(36), primary_key=True),
        Column("occurred_at", DateTime(timezone=True)),
        Column("applied_at", DateTime(timezone=True)),
    )
    return md


def recreate(name: str) -> str:
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = f"{PG}/{name}"
    db = Database(url, metadata(), "dossier")
    db.metadata.create_all(db.engine)
    db.dispose()
    return url


def emit(db: Database) -> str:
    """One use case: an event in its transaction. Returns the event's id."""
    patient_id = str(uuid.uuid4())
    with db.unit_of_work("bench") as uow:
        envelope = uow.emit(
            "PatientCreated",
            subject=patient_id,
            data={
                "patient_id": patient_id,
                "created_by": "bench",
                "owner_kind": "person",
                "owner_id": "bench",
                "aggregate_version": 1,
            },
        )
        uow.commit()
    return str(envelope["id"])


def producer_process(url: str, rate: float, warmup: float, seconds: float, threads: int, out: str) -> None:
    db = Database(url, metadata(), "dossier")
    freeze_startup_heap()  # as a web worker does once its app is built
    committed: list[tuple[str, float]] = []

    def one_thread() -> None:
        interval = threads / rate
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < warmup + seconds:
            message_id = emit(db)
            if elapsed >= warmup:  # not while the pools connect and statements get prepared
                committed.append((message_id, time.time()))  # the use case's commit returned
            n += 1
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    workers = [threading.Thread(target=one_thread) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    Path(out).write_text(json.dumps({"committed": committed, "cpu_s": time.process_time()}))


def producer(
    url: str,
    rate: float,
    warmup: float,
    seconds: float,
    outs: list[str],
    processes: int = 3,
    threads: int = 4,
) -> None:
    """Use cases committing at `rate` per second in all, like several web workers each with
    request threads (a commit waits for PostgreSQL's fsync). The first `warmup` seconds run
    at the same rate but are not measured."""
    procs = [
        mp.Process(target=producer_process, args=(url, rate / processes, warmup, seconds, threads, outs[i]))
        for i in range(processes)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()


def relay_process(url: str, stop_after: float, out: str) -> None:
    db = Database(url, metadata(), "dossier", pre_ping=False)  # as a service worker's
    relay = OutboxRelay(db, AMQP)  # as in a service worker: woken by NOTIFY
    confirmed: list[tuple[str, float]] = []
    publish = relay.publisher.publish

    def timed(messages: list[Any]) -> None:
        publish(messages)  # returns once the broker confirmed the batch
        now = time.time()
        confirmed.extend((message.envelope["id"], now) for message in messages)

    relay.publisher.publish = timed  # type: ignore[method-assign]
    stop = threading.Event()
    threading.Timer(stop_after, stop.set).start()
    freeze_startup_heap()  # as a service worker does once started
    relay.run(stop)
    Path(out).write_text(json.dumps({"confirmed": confirmed, "cpu_s": time.process_time()}))


def record(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    uow.session.execute(
        uow.db.metadata.tables["effects"]
        .insert()
        .values(
            message_id=envelope["id"],
            occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
            applied_at=datetime.now(UTC),
        )
    )


def consumer_process(url: str, queue_prefix: str, stop_after: float, ready: Any, out: str) -> None:
    db = Database(url, metadata(), "cercle", pre_ping=False)  # as a service worker's
    consumer = EventConsumer(db, AMQP, Subscription(queue_prefix, {"dossier.PatientCreated": record}))
    committed: list[tuple[str, float]] = []
    received: list[tuple[str, float]] = []
    apply_batch = consumer.handle_batch
    on_message = consumer._on_message

    def timed_receipt(body: Any, message: Any, connection: Any) -> None:
        on_message(body, message, connection)
        received.append((consumer._pending[-1].envelope["id"], time.time()))

    consumer._on_message = timed_receipt  # type: ignore[method-assign]

    started: list[tuple[str, float]] = []

    def timed(items: list[tuple[dict[str, Any], str, dict[str, Any] | None]]) -> list[bool | Exception]:
        begin = time.time()
        outcomes = apply_batch(items)  # one transaction, committed when it returns
        now = time.time()
        started.extend((envelope["id"], begin) for envelope, _, _ in items)
        committed.extend((envelope["id"], now) for envelope, _, _ in items)
        return outcomes

    consumer.handle_batch = timed  # type: ignore[method-assign]
    stop = threading.Event()
    threading.Timer(stop_after, stop.set).start()
    thread = threading.Thread(target=consumer.run, args=(stop,))
    thread.start()
    freeze_startup_heap()  # as a service worker does once started
    consumer.ready.wait(30)
    ready.set()
    thread.join()
    Path(out).write_text(
        json.dumps(
            {"committed": committed, "received": received, "started": started, "cpu_s": time.process_time()}
        )
    )


def settle_writes() -> None:
    """Write the throughput phase's pages out now, so that its checkpoint does not land in
    the latency phase (a stall of 50–120 ms on this machine's disk)."""
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(text("CHECKPOINT"))
    admin.dispose()


def relay_throughput(backlog: int) -> float:
    url = recreate("coordo_bench_relay")
    db = Database(url, metadata(), "dossier")
    for _ in range(backlog):
        emit(db)
    relay = OutboxRelay(db, AMQP)
    start = time.perf_counter()
    sent = 0
    while sent < backlog:
        sent += relay.publish_pending()
    elapsed = time.perf_counter() - start
    relay.publisher.close()
    db.dispose()
    return backlog / elapsed


def latency(rate: float, warmup: float, seconds: float) -> tuple[list[float], int]:
    producer_url = recreate("coordo_bench_producer")
    consumer_url = recreate("coordo_bench_consumer")
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix="coordo-bench-events-"))
    consumer_out, producer_outs = (
        str(work / "consumer.json"),
        [str(work / f"producer{i}.json") for i in range(3)],
    )
    ready = mp.Event()
    total = warmup + seconds + 8
    consumer = mp.Process(target=consumer_process, args=(consumer_url, prefix, total, ready, consumer_out))
    consumer.start()
    ready.wait(30)
    relay_out = str(work / "relay.json")
    relay = mp.Process(target=relay_process, args=(producer_url, total, relay_out))
    relay.start()
    time.sleep(1)
    producer(producer_url, rate, warmup, seconds, producer_outs)
    relay.join()
    consumer.join()
    produced_by = [json.loads(Path(out).read_text()) for out in producer_outs]
    produced = dict(item for out in produced_by for item in out["committed"])
    consumed = json.loads(Path(consumer_out).read_text())
    applied, received = dict(consumed["committed"]), dict(consumed["received"])
    batch_started = dict(consumed["started"])
    relayed = json.loads(Path(relay_out).read_text())
    confirmed = dict(relayed["confirmed"])
    # CPU each side spends per event (the whole run: includes idle waiting and start-up).
    events = max(len(produced), 1)
    print(
        f"CPU per event: producers {1000 * sum(p['cpu_s'] for p in produced_by) / events:.2f} ms, "
        f"relay {1000 * relayed['cpu_s'] / events:.2f} ms, consumer {1000 * consumed['cpu_s'] / events:.2f} ms"
    )
    # Where the time goes: the relay stamps `published_at` when it claims the row.
    engine = create_engine(producer_url.replace("postgresql://", "postgresql+psycopg://"))
    outbox = metadata().tables["outbox"]
    with engine.connect() as conn:
        published = {
            m: at.timestamp() for m, at in conn.execute(select(outbox.c.message_id, outbox.c.published_at))
        }
    engine.dispose()
    with bus.connect(AMQP) as conn:
        for queue in bus.consumer_queue(f"{prefix}.dossier.events", ["dossier.PatientCreated"]):
            queue(conn.default_channel).delete()
    both = [m for m in applied if m in produced]
    batches = len(set(batch_started.values()))
    print(
        f"consumer: {len(applied)} events in {batches} transactions (mean {len(applied) / max(batches, 1):.1f} a batch)"
    )
    STAGES["commit → relay claims it"] = [(published[m] - produced[m]) * 1000 for m in both]
    STAGES["claim → broker confirmed the batch"] = [(confirmed[m] - published[m]) * 1000 for m in both]
    STAGES["claim → consumer received it"] = [(received[m] - published[m]) * 1000 for m in both]
    STAGES["received → its batch's transaction begins"] = [
        (batch_started[m] - received[m]) * 1000 for m in both
    ]
    STAGES["the batch's transaction (apply + commit)"] = [
        (applied[m] - batch_started[m]) * 1000 for m in both
    ]
    # Are the slow ones spread out (queueing) or bunched in a few seconds (a stall)?
    by_second: dict[int, list[float]] = {}
    for m in both:
        by_second.setdefault(int(produced[m]), []).append((applied[m] - produced[m]) * 1000)
    worst = sorted((max(v), s) for s, v in by_second.items())
    start = min(by_second)
    print(
        "slowest event in each second of the run (ms): "
        + " ".join(f"{max(by_second[s]):.0f}" for s in sorted(by_second))
        + f"; worst seconds: {', '.join(f'+{s - start}s' for _, s in worst[-3:])}"
    )
    return [(applied[m] - produced[m]) * 1000 for m in both], len(produced)


STAGES: dict[str, list[float]] = {}


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--warmup", type=float, default=2, help="seconds at the rate before measuring")
    args = parser.parse_args()
    print("Coordo event benchmark — PostgreSQL + RabbitMQ on this machine")
    print(
        f"reproduce: .venv/bin/python -m tests.bench.event_latency --rate {args.rate:g} --seconds {args.seconds:g} --backlog {args.backlog} --warmup {args.warmup:g}"
    )
    throughput = relay_throughput(args.backlog)
    settle_writes()
    print(
        f"relay throughput: {throughput:,.0f} events/s over a backlog of {args.backlog} (target ≥ 2,500; floor: sync confirms ~1,000, async window 100: 5,340)"
    )
    values, expected = latency(args.rate, args.warmup, args.seconds)
    print(
        f"latency at {args.rate:g} events/s for {args.seconds:g}s (after {args.warmup:g}s of warm-up at the same rate): "
        f"{len(values)} of {expected} committed events applied"
    )
    if values:
        print(
            f"  commit → consumer commit: p50 {pct(values, 0.5):.1f} ms, p99 {pct(values, 0.99):.1f} ms, max {max(values):.1f} ms (target p99 ≤ 20 ms; broker floor p99 2.9 ms)"
        )
        for stage, stage_values in STAGES.items():
            print(
                f"    of which {stage}: p50 {pct(stage_values, 0.5):.1f} ms, p99 {pct(stage_values, 0.99):.1f} ms"
            )


if __name__ == "__main__":
    main()

"""Benchmark: event to e-mail accepted by the SMTP server (NOT-1), on the real PostgreSQL
and RabbitMQ of this machine.

    .venv/bin/python -m tests.bench.event_to_email [--rate 50] [--seconds 20] [--poll 0.25]

What runs, as in the distributed mode for the notify part: the notify worker in its own
process (`coordo run --target notify-worker`: the idempotent consumer writing the
notification and its outbox e-mail row in one transaction, and the e-mail sender polling
that outbox), its PostgreSQL database, RabbitMQ, and an aiosmtpd server in this process.
This process publishes `taches.TaskAssigned` events on coordo.events at a fixed rate (as the
taches relay would) and times each event from its publication to the SMTP server's
acceptance of the e-mail naming its task. Not included: the producing service's own
transaction and relay (measured by tests.bench.event_latency).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, pool, text

from chassis import bus
from chassis.events import make_envelope

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
AMQP = os.environ.get("COORDO_BENCH_AMQP_URL") or os.environ.get(
    "COORDO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"
)
ROOT = Path(__file__).resolve().parents[2]
TASK_LINK = re.compile(rb"/taches/([0-9a-f-]{36})")


class Clock:
    """aiosmtpd handler: when the e-mail of each task was accepted."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.duplicates = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        now = time.time()
        match = TASK_LINK.search(envelope.content)
        if match:
            with self.lock:
                key = match.group(1).decode()
                if key in self.accepted:
                    self.duplicates += 1
                else:
                    self.accepted[key] = now
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def admin_engine() -> Any:
    return create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )


def count(database_url: str, table: str) -> int:
    engine = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)  # noqa: S608 - fixed names
    finally:
        engine.dispose()


def written_at(database_url: str) -> dict[str, float]:
    """When the consumer committed each task's notification (to split the latency)."""
    engine = create_engine(
        database_url.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT object_id, created_at FROM notifications"))
            return {object_id: created.timestamp() for object_id, created in rows}
    finally:
        engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def publish(publisher: bus.Publisher, envelope: dict[str, Any]) -> None:
    key = f"{envelope['producer']}.{envelope['type']}"
    publisher.publish([bus.OutgoingMessage(key, envelope)])


def run(rate: float, seconds: float, poll: float, recipients: int) -> dict[str, Any]:
    from aiosmtpd.controller import Controller

    from coordo.distributed import delete_service_queues
    from notify.app import SERVICE

    name = f"coordo_bench_notify_{uuid.uuid4().hex[:8]}"
    database_url = f"{PG}/{name}"
    admin = admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    clock = Clock()
    smtp_port = free_port()
    controller = Controller(clock, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = {
        **os.environ,
        "COORDO_NOTIFY_DATABASE_URL": database_url,
        "COORDO_BROKER_URL": AMQP,
        "COORDO_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "COORDO_PUBLIC_URL": "https://coordo.example",
        "COORDO_MAIL_POLL_S": str(poll),
        "COORDO_VALIDATE_EVENTS": "0",  # as deployed: events were checked in CI
        "OTEL_SDK_DISABLED": "true",
    }
    os.environ.update({k: env[k] for k in ("COORDO_NOTIFY_DATABASE_URL", "COORDO_BROKER_URL")})
    SERVICE.migrate(SERVICE.settings())
    worker = subprocess.Popen(
        [sys.executable, "-m", "coordo.cli", "run", "--target", "notify-worker"],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    publisher = bus.Publisher(AMQP)
    published: dict[str, float] = {}
    try:
        people = [str(uuid.uuid4()) for _ in range(recipients)]
        assigner = str(uuid.uuid4())
        # Registrations until the worker's queues exist and it has seen every person.
        deadline = time.monotonic() + 60
        while count(database_url, "persons") < recipients + 1:
            if worker.poll() is not None:
                error = worker.stderr.read().decode(errors="replace") if worker.stderr else ""
                raise RuntimeError(f"the notify worker stopped: {error[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the notify worker saw no registration within 60 s")
            for index, person in enumerate([assigner, *people]):
                publish(
                    publisher,
                    make_envelope(
                        event_type="UserRegistered",
                        producer="identity",
                        subject=person,
                        actor=None,
                        data={
                            "person_id": person,
                            "display_name": f"Professionnel {index}",
                            "email": f"pro{index}@bench.example",
                            "structures": [],
                            "profession": "infirmier",
                            "medical": False,
                            "roles": ["user"],
                        },
                    ),
                )
            time.sleep(1.0)

        total = int(rate * seconds)
        interval = 1.0 / rate
        started = time.monotonic()
        for index in range(total):
            target = started + index * interval
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            task_id = str(uuid.uuid4())
            envelope = make_envelope(
                event_type="TaskAssigned",
                producer="taches",
                subject=str(uuid.uuid4()),
                actor=assigner,
                data={
                    "task_id": task_id,
                    "patient_id": str(uuid.uuid4()),
                    "type": "bilan_ppcs",
                    "level": "important",
                    "due_date": None,
                    "assignee_kind": "person",
                    "assignee_id": people[index % recipients],
                    "assigned_by": assigner,
                    "aggregate_version": 1,
                },
            )
            published[task_id] = time.time()
            publish(publisher, envelope)
        publishing_s = time.monotonic() - started
        deadline = time.monotonic() + 60
        while len(clock.accepted) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # late duplicates would show now
        written = written_at(database_url)
    finally:
        publisher.close()
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
        controller.stop()
        delete_service_queues(AMQP)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    latencies = [(clock.accepted[k] - t) * 1000 for k, t in published.items() if k in clock.accepted]
    consumed = [(written[k] - t) * 1000 for k, t in published.items() if k in written]
    return {
        "consumer_p50_ms": statistics.median(consumed) if consumed else float("nan"),
        "consumer_p99_ms": percentile(consumed, 0.99) if consumed else float("nan"),
        "events": len(published),
        "rate_achieved": len(published) / publishing_s,
        "emails": len(latencies),
        "missing": len(published) - len(latencies),
        "duplicates": clock.duplicates,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": percentile(latencies, 0.99) if latencies else float("nan"),
        "max_ms": max(latencies) if latencies else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--poll", type=float, default=5.0, help="COORDO_MAIL_POLL_S of the sender (its longest idle sleep)"
    )
    parser.add_argument("--recipients", type=int, default=20)
    args = parser.parse_args()
    figures = run(args.rate, args.seconds, args.poll, args.recipients)
    command = (
        f".venv/bin/python -m tests.bench.event_to_email --rate {args.rate:g} --seconds {args.seconds:g} "
        f"--poll {args.poll:g}"
    )
    print(f"notify worker (own process) on PostgreSQL + RabbitMQ ({AMQP.rsplit('/', 1)[-1] or '/'} vhost)")
    print(
        f"event published -> e-mail accepted by SMTP: {figures['events']} events at "
        f"{figures['rate_achieved']:.1f}/s, {figures['emails']} e-mails, {figures['missing']} missing, "
        f"{figures['duplicates']} duplicates"
    )
    print(f"p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, max {figures['max_ms']:.0f} ms")
    print(
        f"of which published -> notification committed by the consumer: p50 {figures['consumer_p50_ms']:.0f} ms, "
        f"p99 {figures['consumer_p99_ms']:.0f} ms"
    )
    print(f"command: {command}")


if __name__ == "__main__":
    main()

"""Outbox relay, bus and idempotent consumers on the real RabbitMQ (and kombu's memory transport).

What a user would notice: a patient created while the broker is down is not lost; an event
delivered twice changes nothing; a poison message does not block the ones behind it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import Connection
from sqlalchemy import Column, MetaData, String, Table, func, select

from chassis import bus
from chassis.consumer import EventConsumer, Subscription
from chassis.db import Database, UnitOfWork, add_chassis_tables
from chassis.relay import OutboxRelay


def make_db(tmp_path: Any, name: str, url: str | None = None, pre_ping: bool = True) -> Database:
    metadata = MetaData()
    add_chassis_tables(metadata)
    Table(
        "effects",
        metadata,
        Column("message_id", String(36), primary_key=True),
        Column("patient_id", String(36)),
    )
    db = Database(url or f"sqlite:///{tmp_path / name}.db", metadata, "dossier", pre_ping=pre_ping)
    metadata.create_all(db.engine)
    return db


def create_patient(db: Database) -> str:
    """A stand-in use case: business row + event in one transaction."""
    patient_id = str(uuid.uuid4())
    with db.unit_of_work("person-1") as uow:
        uow.emit(
            "PatientCreated",
            subject=patient_id,
            data={
                "patient_id": patient_id,
                "created_by": "person-1",
                "owner_kind": "person",
                "owner_id": "person-1",
                "aggregate_version": 1,
            },
        )
        uow.commit()
    return patient_id


def record_effect(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    uow.session.execute(
        uow.db.metadata.tables["effects"]
        .insert()
        .values(message_id=envelope["id"], patient_id=envelope["subject"])
    )


def declared_consumer(db: Database, url: str, name: str) -> EventConsumer:
    """A consumer applying PatientCreated with `record_effect`, its queues declared."""
    consumer = EventConsumer(db, url, Subscription(name, {"dossier.PatientCreated": record_effect}))
    with bus.connect(url) as conn:
        consumer.declare(conn)
    return consumer


def effects(db: Database) -> list[str]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.metadata.tables["effects"].c.patient_id)))


def pending(db: Database) -> int:
    with db.session_factory() as s:
        return int(
            s.scalar(select(func.count()).select_from(db.outbox).where(db.outbox.c.published_at.is_(None)))
            or 0
        )


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def consumer_name() -> Iterator[str]:
    yield f"test{uuid.uuid4().hex[:8]}"


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], None]]:
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(runner: Any) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(5)


def delete_queues(url: str, consumer: EventConsumer) -> None:
    with Connection(url) as conn:
        channel = conn.channel()
        for queue in consumer.queues():
            queue(channel).delete()


@pytest.mark.parametrize("transport", ["amqp", "memory"])
def test_events_cross_from_one_database_to_another_exactly_once(
    transport: str, tmp_path: Any, consumer_name: str, running: Any, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("amqp_url") if transport == "amqp" else "memory://"
    producer_db, consumer_db = make_db(tmp_path, "producer"), make_db(tmp_path, "consumer")
    consumer = declared_consumer(consumer_db, url, consumer_name)
    running(consumer)
    running(OutboxRelay(producer_db, url))
    created = [create_patient(producer_db) for _ in range(20)]
    assert wait_for(lambda: len(effects(consumer_db)) == 20)
    assert sorted(effects(consumer_db)) == sorted(created)
    assert pending(producer_db) == 0
    if transport == "amqp":
        delete_queues(url, consumer)


def test_a_batch_applied_is_acknowledged_so_a_restarted_consumer_gets_nothing_again(
    tmp_path: Any, amqp_url: str, consumer_name: str
) -> None:
    # The consumer settles a whole batch with one ack (multiple=True): every message of it
    # must be gone from the queue once the consumer disconnects.
    producer_db, consumer_db = make_db(tmp_path, "producer"), make_db(tmp_path, "consumer")
    consumer = declared_consumer(consumer_db, amqp_url, consumer_name)
    for _ in range(60):
        create_patient(producer_db)
    relay = OutboxRelay(producer_db, amqp_url)
    assert relay.publish_pending() == 60  # all ready at once: the consumer takes them in batches
    relay.publisher.close()
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    assert wait_for(lambda: len(effects(consumer_db)) == 60)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    with Connection(amqp_url) as conn:
        main_queue = consumer.main_queues()[0](conn.channel())
        _, left, _ = main_queue.queue_declare(passive=True)
    assert left == 0  # an unacked message would be back in the queue, ready again
    delete_queues(amqp_url, consumer)


def test_a_worker_whose_database_connections_were_cut_goes_on_and_applies_every_event_once(
    tmp_path: Any, amqp_url: str, consumer_name: str, running: Any, postgres_database: str
) -> None:
    # Workers keep no pre-ping on their pool (a round trip per transaction): a connection
    # that PostgreSQL dropped (restart, failover, idle cut) must cost a retry, nothing else.
    import psycopg

    # One database plays both services' (the tables do not overlap in use): the producer's
    # web process, its worker's relay, the consumer's worker, and the test reading it.
    producer_db = make_db(tmp_path, "producer", postgres_database)
    relay_db = make_db(tmp_path, "producer", postgres_database, pre_ping=False)
    consumer_db = make_db(tmp_path, "consumer", postgres_database, pre_ping=False)
    reader = make_db(tmp_path, "reader", postgres_database)
    consumer = declared_consumer(consumer_db, amqp_url, consumer_name)
    running(consumer)
    running(OutboxRelay(relay_db, amqp_url))
    first = [create_patient(producer_db) for _ in range(5)]
    assert wait_for(lambda: len(effects(reader)) == 5)
    database = postgres_database.rsplit("/", 1)[1]
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        ).fetchone()
    assert cut is not None and cut[0] >= 3  # the relay's pooled and LISTEN connections, the consumer's
    later = [create_patient(producer_db) for _ in range(5)]
    assert wait_for(lambda: len(effects(reader)) == 10, timeout=15)
    assert sorted(effects(reader)) == sorted(first + later)
    assert pending(producer_db) == 0
    for db in (producer_db, relay_db, consumer_db, reader):
        db.dispose()
    delete_queues(amqp_url, consumer)


def test_with_the_broker_down_nothing_is_lost_and_all_arrives_once_it_is_back(
    tmp_path: Any, amqp_url: str, consumer_name: str, running: Any
) -> None:
    producer_db, consumer_db = make_db(tmp_path, "producer"), make_db(tmp_path, "consumer")
    consumer = declared_consumer(consumer_db, amqp_url, consumer_name)
    running(consumer)

    unreachable = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    down_relay = OutboxRelay(producer_db, unreachable)
    created = [create_patient(producer_db) for _ in range(5)]  # the use case never needs the broker
    with pytest.raises(bus.PublishError):
        down_relay.publish_pending()
    assert pending(producer_db) == 5  # kept, not dropped

    running(OutboxRelay(producer_db, amqp_url))  # the broker is back
    assert wait_for(lambda: len(effects(consumer_db)) == 5)
    assert sorted(effects(consumer_db)) == sorted(created)
    assert pending(producer_db) == 0
    delete_queues(amqp_url, consumer)


def test_a_rolled_back_use_case_publishes_nothing(tmp_path: Any) -> None:
    db = make_db(tmp_path, "producer")
    with db.unit_of_work("person-1") as uow:
        uow.emit(
            "PatientCreated",
            subject=str(uuid.uuid4()),
            data={
                "patient_id": str(uuid.uuid4()),
                "created_by": "p",
                "owner_kind": "person",
                "owner_id": "p",
                "aggregate_version": 1,
            },
        )
        # no commit: an error in the use case
    assert pending(db) == 0


def test_the_same_message_delivered_twice_changes_nothing(
    tmp_path: Any, amqp_url: str, consumer_name: str, running: Any
) -> None:
    producer_db, consumer_db = make_db(tmp_path, "producer"), make_db(tmp_path, "consumer")
    consumer = declared_consumer(consumer_db, amqp_url, consumer_name)
    running(consumer)
    create_patient(producer_db)
    relay = OutboxRelay(producer_db, amqp_url)
    relay.publish_pending()
    # Simulate a relay that crashed after the broker confirmed but before marking the row sent.
    with producer_db.session_factory() as s, s.begin():
        s.execute(producer_db.outbox.update().values(published_at=None))
    relay.publish_pending()
    assert wait_for(lambda: consumer.handled >= 2)
    assert len(effects(consumer_db)) == 1
    relay.publisher.close()
    delete_queues(amqp_url, consumer)


@pytest.mark.parametrize("transport", ["amqp", "memory"])
def test_a_poison_message_goes_to_the_dead_letter_queue_and_the_consumer_goes_on(
    transport: str, tmp_path: Any, consumer_name: str, running: Any, request: pytest.FixtureRequest
) -> None:
    amqp_url = request.getfixturevalue("amqp_url") if transport == "amqp" else "memory://"
    producer_db, consumer_db = make_db(tmp_path, "producer"), make_db(tmp_path, "consumer")
    poison_ids: set[str] = set()

    def handler(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        if envelope["subject"] in poison_ids:
            raise ValueError("cannot apply this event")
        record_effect(uow, envelope)

    consumer = EventConsumer(
        consumer_db,
        amqp_url,
        Subscription(consumer_name, {"dossier.PatientCreated": handler}),
        base_backoff_s=0.01,
    )
    with bus.connect(amqp_url) as conn:
        consumer.declare(conn)
    running(consumer)
    poison = create_patient(producer_db)
    poison_ids.add(poison)
    good = create_patient(producer_db)
    running(OutboxRelay(producer_db, amqp_url))

    assert wait_for(lambda: effects(consumer_db) == [good])
    dlq = f"{consumer_name}.dossier.events.dlq"

    def dead_letters() -> list[dict[str, Any]]:
        with Connection(amqp_url) as conn:
            queue = conn.SimpleQueue(dlq, no_ack=False)
            try:
                message = queue.get(timeout=0.2)
            except Exception:  # noqa: BLE001 - kombu raises Empty
                return []
            payload = message.decode()
            message.ack()
            return [payload]

    found: list[dict[str, Any]] = []
    assert wait_for(lambda: bool(found.extend(dead_letters()) or found), timeout=10)
    assert found[0]["subject"] == poison
    assert effects(consumer_db) == [good]
    if transport == "amqp":
        delete_queues(amqp_url, consumer)

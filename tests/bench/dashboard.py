"""Benchmark: the task dashboard (TSK-4) over 100,000 tasks on PostgreSQL.

    .venv/bin/python -m tests.bench.dashboard [--tasks 100000] [--runs 300] [--keep]

Loads a fresh database `coordo_bench_taches` (the taches migrations, then COPY) with
100,000 tasks over 2,000 patients: 300 persons and 20 structures as recipients (a task
has 1-3 recipients, 2% of assignments orphaned), every status, level, type, zone, 10% undated,
5% with a linked patient, 10% with documents. Then times the dashboard use case exactly as
the API runs it (count + one page + the page's recipients, linked patients, documents)
for random actors, in several shapes, and prints p50/p95/p99, the EXPLAIN ANALYZE of the
page query, and the same default query without the chosen index for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, pool, text

from chassis.auth import Actor
from taches import domain, usecases
from taches.app import SERVICE

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = "coordo_bench_taches"
TODAY = date(2026, 12, 1)
STATUS_WEIGHTS = {"a_traiter": 25, "en_cours": 15, "traitee": 50, "annulee": 10}
TYPES = list(domain.DEFAULT_TASK_TYPES)
ZONES = [f"Z{i:02d}" for i in range(10)]


def recreate() -> str:
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()
    return f"{PG}/{DB_NAME}"


def drop() -> None:
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    admin.dispose()


def load(db: Any, n_tasks: int, rng: random.Random) -> dict[str, list[str]]:
    persons = [str(uuid.uuid4()) for _ in range(300)]
    structures = [str(uuid.uuid4()) for _ in range(20)]
    patients = [str(uuid.uuid4()) for _ in range(2000)]
    now = datetime(2026, 11, 1, tzinfo=UTC)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    raw = db.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(
            "COPY tasks (id, patient_id, type, label, level, comment, due_date, status, zone, form_id,"
            " created_by, created_by_structure, created_at, updated_at, version) FROM STDIN"
        ) as copy_tasks:
            tasks: list[tuple[str, str, str, date | None]] = []
            for i in range(n_tasks):
                task_id = str(uuid.uuid4())
                patient_id = rng.choice(patients)
                due = None if rng.random() < 0.1 else TODAY + timedelta(days=rng.randint(-180, 180))
                status = rng.choices(statuses, weights)[0]
                created = now - timedelta(minutes=i)
                copy_tasks.write_row(
                    (
                        task_id,
                        patient_id,
                        rng.choice(TYPES),
                        "Libellé de la tâche",
                        rng.choice(domain.LEVELS),
                        "Commentaire" if rng.random() < 0.5 else None,
                        due,
                        status,
                        rng.choice(ZONES),
                        str(uuid.uuid4()) if rng.random() < 0.2 else None,
                        rng.choice(persons),
                        rng.choice(structures) if rng.random() < 0.5 else None,
                        created,
                        created,
                        1,
                    )
                )
                tasks.append((task_id, patient_id, status, due))
        with cur.copy(
            "COPY task_recipients (task_id, recipient_kind, recipient_id, orphaned_at, task_status, task_due_date)"
            " FROM STDIN"
        ) as copy_recipients:
            for task_id, _patient, status, due in tasks:
                chosen: set[tuple[str, str]] = set()
                for _ in range(rng.choice((1, 1, 2, 3))):
                    if rng.random() < 0.6:
                        chosen.add(("person", rng.choice(persons)))
                    else:
                        chosen.add(("structure", rng.choice(structures)))
                for kind, ident in chosen:
                    orphaned = now if rng.random() < 0.02 else None
                    copy_recipients.write_row((task_id, kind, ident, orphaned, status, due))
        with cur.copy("COPY task_patients (task_id, patient_id) FROM STDIN") as copy_patients:
            for task_id, patient_id, _status, _due in tasks:
                if rng.random() < 0.05:
                    other = rng.choice(patients)
                    if other != patient_id:
                        copy_patients.write_row((task_id, other))
        with cur.copy("COPY task_documents (task_id, document_id, position) FROM STDIN") as copy_documents:
            for task_id, *_rest in tasks:
                if rng.random() < 0.1:
                    copy_documents.write_row((task_id, str(uuid.uuid4()), 0))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return {"persons": persons, "structures": structures, "patients": patients}


def actor_for(person: str, structure: str | None) -> Actor:
    return Actor(
        person_id=person,
        structure_id=structure,
        structures=(structure,) if structure else (),
        profession=None,
        medical=False,
        roles=("user",),
        name=None,
    )


def measure(db: Any, runs: int, make: Any) -> tuple[list[float], int]:
    timings: list[float] = []
    total = 0
    for _ in range(runs):
        actor, params, offset = make()
        start = time.perf_counter()
        page = usecases.dashboard(db, actor, params, 50, offset)
        timings.append((time.perf_counter() - start) * 1000)
        total += page["total"]
    return timings, total // max(runs, 1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(name: str, timings: list[float], mean_total: int) -> None:
    print(
        f"  {name:<44} p50 {statistics.median(timings):7.1f} ms  p95 {pct(timings, 0.95):7.1f} ms"
        f"  p99 {pct(timings, 0.99):7.1f} ms  (mean total {mean_total})"
    )


def explain(db: Any, actor: Actor, params: dict[str, Any]) -> str:
    f = usecases._filter_of(params, domain.DEFAULT_DASHBOARD_STATUSES)
    query = usecases._ordered(usecases._dashboard_query(actor, f), f).limit(50)
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as conn:
        rows = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql)).scalars()
        return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    rng = random.Random(20261201)

    url = recreate()
    settings = replace(SERVICE.settings(), database_url=url)
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    start = time.perf_counter()
    ids = load(db, args.tasks, rng)
    print(f"loaded {args.tasks:,} tasks in {time.perf_counter() - start:.1f} s")
    with db.engine.connect() as conn:
        counts = conn.execute(
            text("SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM task_recipients)")
        ).one()
    print(f"rows: tasks {counts[0]:,}, task_recipients {counts[1]:,}")
    persons, structures, patients = ids["persons"], ids["structures"], ids["patients"]

    def person_default() -> Any:
        return actor_for(rng.choice(persons), None), {}, 0

    def structure_default() -> Any:
        return actor_for(rng.choice(persons), rng.choice(structures)), {}, 0

    def structure_filtered() -> Any:
        lo = TODAY + timedelta(days=rng.randint(-60, 0))
        params = {
            "level": ["urgent", "important"],
            "due_from": lo.isoformat(),
            "due_to": (lo + timedelta(days=60)).isoformat(),
            "zone": rng.sample(ZONES, 3),
        }
        return actor_for(rng.choice(persons), rng.choice(structures)), params, 0

    def structure_by_level_all_statuses() -> Any:
        params = {"status": list(domain.STATUSES), "sort": "level", "order": "desc"}
        return actor_for(rng.choice(persons), rng.choice(structures)), params, 0

    def structure_deep_page() -> Any:
        return actor_for(rng.choice(persons), rng.choice(structures)), {}, 1000

    def structure_one_patient() -> Any:
        return (
            actor_for(rng.choice(persons), rng.choice(structures)),
            {"patient_id": [rng.choice(patients)]},
            0,
        )

    scenarios = [
        ("person, default (open, by due date)", person_default),
        ("structure (X-Act-As), default", structure_default),
        ("structure, level+due range+3 zones", structure_filtered),
        ("structure, every status, sort=level desc", structure_by_level_all_statuses),
        ("structure, default, offset=1000", structure_deep_page),
        ("structure, one patient", structure_one_patient),
    ]
    for _name, make in scenarios[:2]:
        measure(db, 20, make)  # warm the cache and the pool
    print(
        f"\ndashboard use case (count + page of 50 + its recipients/patients/documents), {args.runs} runs each:"
    )
    for name, make in scenarios:
        timings, mean_total = measure(db, args.runs, make)
        report(name, timings, mean_total)

    sample = actor_for(persons[0], structures[0])
    print("\nEXPLAIN ANALYZE, structure default page query (index ix_task_recipients_inbox):")
    print(explain(db, sample, {}))

    with db.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_task_recipients_inbox"))
        conn.execute(text("ANALYZE task_recipients"))
    print("\nwithout ix_task_recipients_inbox:")
    for name, make in scenarios[:2]:
        timings, mean_total = measure(db, max(20, args.runs // 5), make)
        report(name, timings, mean_total)
    print("\nEXPLAIN ANALYZE without the index:")
    print(explain(db, sample, {}))

    db.dispose()
    if not args.keep:
        drop()
    print(f"\ncommand: .venv/bin/python -m tests.bench.dashboard --tasks {args.tasks} --runs {args.runs}")


if __name__ == "__main__":
    main()

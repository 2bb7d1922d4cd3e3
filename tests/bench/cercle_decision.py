"""Benchmark: cercle's habilitation decision (the gateway's hot path) on PostgreSQL.

    .venv/bin/python -m tests.bench.cercle_decision [--patients 100000] [--calls 2000]

Loads N patients with 4 members each (owner person, a habilitated structure, a listed
person, a refused person), one delegation per grantor and a running break-the-glass grant
on a tenth of the patients, into a dedicated database `bench_cercle_decision` (dropped at
the end). Then times `usecases.decision` (what GET /api/internal/decision runs, without
HTTP) for each path — person, structure, delegation, break_glass, refused stranger,
refused member — and counts the SQL statements each one issues. Prints p50/p99 per path
and EXPLAIN of the decision's statement (memberships and whether cercle knows the patient).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import create_engine, event, insert, pool, text

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = "bench_cercle_decision"


def _admin() -> Any:
    return create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
        isolation_level="AUTOCOMMIT",
        poolclass=pool.NullPool,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    from cercle import usecases
    from cercle.app import SERVICE
    from cercle.models import BreakGlassGrant, Delegation, KnownPatient, Member
    from chassis.auth import Actor
    from chassis.db import utcnow

    with _admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}"'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    try:
        settings = replace(SERVICE.settings(), database_url=f"{PG}/{DB_NAME}")
        SERVICE.migrate(settings)
        db = SERVICE.database(settings)
        now = utcnow()
        rng = random.Random(4)
        patients, owners, delegates, glass = [], [], [], []
        started = time.perf_counter()
        batch = 5000
        for start in range(0, args.patients, batch):
            known, members, delegations, grants = [], [], [], []
            for _ in range(start, min(start + batch, args.patients)):
                pid, owner, delegate = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
                patients.append(pid)
                owners.append(owner)
                delegates.append(delegate)
                known.append(
                    {"patient_id": pid, "owner_kind": "person", "owner_id": owner, "created_at": now}
                )
                for kind, holder, hab, refused in (
                    ("person", owner, True, False),
                    ("structure", f"dac-{rng.randrange(200)}", True, False),
                    ("person", str(uuid.uuid4()), False, False),
                    ("person", f"refused-{pid}", False, True),
                ):
                    members.append(
                        {
                            "id": str(uuid.uuid4()),
                            "patient_id": pid,
                            "holder_kind": kind,
                            "holder_id": holder,
                            "roles": [],
                            "source": "directory",
                            "habilitated": hab,
                            "auto_habilitation": False,
                            "refused_information_sharing": refused,
                            "added_at": now,
                            "updated_at": now,
                        }
                    )
                delegations.append(
                    {
                        "delegation_id": str(uuid.uuid4()),
                        "grantor_id": owner,
                        "delegate_id": delegate,
                        "scopes": ["dossiers"],
                        "granted_at": now,
                    }
                )
                if rng.random() < 0.1:
                    person = str(uuid.uuid4())
                    glass.append((pid, person))
                    grants.append(
                        {
                            "id": str(uuid.uuid4()),
                            "patient_id": pid,
                            "person_id": person,
                            "reason_code": "urgence_vitale",
                            "reason_text": "bench",
                            "found_via": "identity_vigilance",
                            "granted_at": now,
                            "expires_at": now + timedelta(hours=2),
                        }
                    )
            with db.engine.begin() as conn:
                conn.execute(insert(KnownPatient), known)
                conn.execute(insert(Member), members)
                conn.execute(insert(Delegation), delegations)
                if grants:
                    conn.execute(insert(BreakGlassGrant), grants)
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        print(
            f"loaded {args.patients} patients, {4 * args.patients} members in {time.perf_counter() - started:.0f} s"
        )

        statements = 0

        @event.listens_for(db.engine, "before_cursor_execute")
        def _count(*_a: Any) -> None:
            nonlocal statements
            statements += 1

        def actor(person: str, structure: str | None = None) -> Actor:
            return Actor(person, structure, (structure,) if structure else (), None, False, ("user",), None)

        def structure_of(pid: str) -> str:
            with db.engine.connect() as conn:
                return str(
                    conn.execute(
                        text(
                            "SELECT holder_id FROM members WHERE patient_id = :p AND holder_kind = 'structure'"
                        ),
                        {"p": pid},
                    ).scalar()
                )

        paths = {
            "person": lambda i: (patients[i], usecases.Caller(actor(owners[i]), None, now)),
            "structure": lambda i: (
                patients[i],
                usecases.Caller(actor(str(uuid.uuid4()), structure_of(patients[i])), None, now),
            ),
            "delegation": lambda i: (patients[i], usecases.Caller(actor(delegates[i]), owners[i], now)),
            "break_glass": lambda i: (
                glass[i % len(glass)][0],
                usecases.Caller(actor(glass[i % len(glass)][1]), None, now),
            ),
            "refused stranger": lambda i: (patients[i], usecases.Caller(actor(str(uuid.uuid4())), None, now)),
            "refused member": lambda i: (
                patients[i],
                usecases.Caller(actor(f"refused-{patients[i]}"), None, now),
            ),
        }
        print(f"{'path':<18} {'allowed':>7} {'SQL/call':>8} {'p50 ms':>7} {'p99 ms':>7}")
        for name, build in paths.items():
            cases = [build(rng.randrange(args.patients)) for _ in range(args.calls)]
            timings, allowed = [], 0
            statements = 0
            for pid, caller in cases:
                t = time.perf_counter()
                result = usecases.decision(db, caller, pid)
                timings.append((time.perf_counter() - t) * 1000)
                allowed += result["allowed"]
            timings.sort()
            p99 = timings[int(len(timings) * 0.99) - 1]
            print(
                f"{name:<18} {allowed / len(cases):>7.0%} {statements / len(cases):>8.1f} "
                f"{statistics.median(timings):>7.2f} {p99:>7.2f}"
            )
        # The decision's own statement (memberships + whether cercle knows the patient), for
        # a person acting as a structure.
        statement = usecases._memberships_statement(2).params(
            patient_ids=[patients[0]],
            kind_0="person",
            holder_0=owners[0],
            kind_1="structure",
            holder_1="dac-1",
        )
        sql = statement.compile(
            dialect=db.engine.dialect, compile_kwargs={"literal_binds": True, "render_postcompile": True}
        )
        with db.engine.connect() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN {sql}").all()
        print("\n".join(row[0] for row in plan))
        print(
            f"reproduce: .venv/bin/python -m tests.bench.cercle_decision --patients {args.patients} --calls {args.calls}"
        )
        db.dispose()
    finally:
        with _admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))


if __name__ == "__main__":
    main()

"""Benchmark: the file list page (SEA-1..SEA-3) on PostgreSQL with 1,000,000 patients.

    .venv/bin/python -m tests.bench.file_list [--patients 1000000] [--holders 500] [--queries 1000] [--reuse]

Loads N synthetic patients (dossier.demo_patients, COPY) into a dedicated database
`bench_dossier_file_list`; each of `--holders` users is habilitated on N/holders patients
(~2,000 each at the defaults), written both as the habilitation read model and as the
denormalised `file_list_rows` (holder, patient, name keys, sex, last update...). Then the
page "habilitation + name prefix + sex, newest 10, with total count" is measured:
- the two SQL statements alone (count + page), as the service sends them;
- `file_list.search()`, the use case's query part (delegations, SET LOCAL, count, page);
- the HTTP call at the service (`GET /api/file-list?name=..&sex=..`, connexion in-process
  client, real token), which also fetches the SEA-3 columns of the 10 rows;
- the naive join habilitations x patients for comparison, with and without the settings;
and prints EXPLAIN ANALYZE of the page query. `--reuse` keeps a loaded database.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import create_engine, text

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("COORDO_BENCH_FILE_LIST_DB", "bench_dossier_file_list")
TODAY = date(2026, 11, 30)

PAGE_SQL = """
SELECT patient_id FROM file_list_rows
WHERE holder = %(holder)s AND (name_key LIKE %(prefix)s OR used_key LIKE %(prefix)s)
  AND sex = %(sex)s AND closed = false
ORDER BY last_update DESC, patient_id DESC LIMIT 10
"""
COUNT_SQL = """
SELECT count(*) FROM file_list_rows
WHERE holder = %(holder)s AND (name_key LIKE %(prefix)s OR used_key LIKE %(prefix)s)
  AND sex = %(sex)s AND closed = false
"""
# What the service sends for one holder: the page and the total in one round trip.
WINDOW_SQL = """
SELECT patient_id, count(*) OVER () AS total FROM file_list_rows
WHERE holder = %(holder)s AND (name_key LIKE %(prefix)s OR used_key LIKE %(prefix)s)
  AND sex = %(sex)s AND closed = false
ORDER BY last_update DESC, patient_id DESC LIMIT 10
"""
NAIVE_PAGE_SQL = """
SELECT p.id FROM habilitations h JOIN patients p ON p.id = h.patient_id
WHERE h.holder_kind = 'person' AND h.holder_id = %(holder_id)s AND h.active
  AND (p.birth_name LIKE %(prefix)s OR p.used_name LIKE %(prefix)s) AND p.sex = %(sex)s
ORDER BY p.updated_at DESC, p.id DESC LIMIT 10
"""
NAIVE_COUNT_SQL = """
SELECT count(*) FROM habilitations h JOIN patients p ON p.id = h.patient_id
WHERE h.holder_kind = 'person' AND h.holder_id = %(holder_id)s AND h.active
  AND (p.birth_name LIKE %(prefix)s OR p.used_name LIKE %(prefix)s) AND p.sex = %(sex)s
"""
SETTINGS = "SET max_parallel_workers_per_gather = 0; SET plan_cache_mode = force_custom_plan"
DEFAULTS = "RESET max_parallel_workers_per_gather; RESET plan_cache_mode"


def database_url() -> str:
    return f"{PG}/{DB_NAME}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def figures(label: str, values: list[float]) -> str:
    return (
        f"{label:<58} p50 {statistics.median(values):7.3f} ms   p95 {percentile(values, 95):7.3f} ms"
        f"   p99 {percentile(values, 99):7.3f} ms   (n={len(values)})"
    )


def load(patients: int, holders: int, reuse: bool) -> None:
    import psycopg

    from dossier import domain_file
    from dossier.app import SERVICE
    from dossier.demo_patients import bulk_insert, generate

    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME})
        if exists and reuse:
            admin.dispose()
            print(f"reusing database {DB_NAME}")
            return
        if exists:
            conn.execute(text(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()
    SERVICE.migrate(replace(SERVICE.settings(), database_url=database_url()))
    started = time.perf_counter()
    done = bulk_insert(database_url(), generate(patients, seed=5))
    print(f"loaded {done:,} patients with COPY in {time.perf_counter() - started:.0f} s")

    # Each holder gets a contiguous-by-hash slice of ~patients/holders files: the read model
    # and the denormalised rows, both with COPY.
    started = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(database_url()) as conn:
        rows = conn.execute(
            "SELECT id, birth_name, used_name, first_name, sex, birth_date, updated_at FROM patients"
        ).fetchall()
        with conn.cursor() as cur:
            with cur.copy(
                "COPY habilitations (patient_id, holder_kind, holder_id, active, updated_at) FROM STDIN"
            ) as copy:
                for i, row in enumerate(rows):
                    copy.write_row((row[0], "person", f"bench-{i % holders}", True, now))
            with cur.copy(
                "COPY file_list_rows (holder, patient_id, name_key, used_key, first_key, sex, birth_date, closed,"
                " deceased, last_update) FROM STDIN"
            ) as copy:
                for i, (pid, birth, used, first, sex, born, updated) in enumerate(rows):
                    copy.write_row(
                        (
                            f"person:bench-{i % holders}",
                            pid,
                            domain_file.name_key(birth),
                            domain_file.name_key(used) or None,
                            domain_file.name_key(first),
                            sex,
                            born,
                            False,
                            False,
                            updated,
                        )
                    )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE patients")
        conn.execute("VACUUM ANALYZE habilitations")
        conn.execute("VACUUM ANALYZE file_list_rows")
    print(f"habilitations + file_list_rows ({len(rows):,} each) in {time.perf_counter() - started:.0f} s")


def make_queries(count: int, holders: int, rng: random.Random) -> list[dict[str, str]]:
    """Realistic typing: the first 2-4 letters of a name this holder really has."""
    import psycopg

    queries = []
    with psycopg.connect(database_url()) as conn:
        for _ in range(count):
            holder = f"bench-{rng.randrange(holders)}"
            names = conn.execute(
                "SELECT name_key, sex FROM file_list_rows WHERE holder = %s LIMIT 50", (f"person:{holder}",)
            ).fetchall()
            name, sex = rng.choice(names)
            prefix = name[: rng.choice((2, 3, 4))]
            queries.append(
                {"holder_id": holder, "holder": f"person:{holder}", "prefix": prefix + "%", "sex": sex}
            )
    return queries


def time_sql(conn: Any, statements: list[str], queries: list[dict[str, str]]) -> list[float]:
    out = []
    for q in queries:
        started = time.perf_counter()
        for sql in statements:
            conn.execute(sql, q).fetchall()
        out.append((time.perf_counter() - started) * 1000)
    return out


def explain(conn: Any, sql: str, q: dict[str, str]) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, q).fetchall())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--holders", type=int, default=500)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--skip-naive", action="store_true", help="skip the slow naive-join comparison")
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")

    import psycopg

    from chassis import auth
    from chassis.auth import Actor
    from dossier import file_list
    from dossier.app import SERVICE
    from tests.support.issuer import TestIssuer

    issuer = TestIssuer().start()
    os.environ["COORDO_OIDC_ISSUER"] = issuer.issuer
    auth.configure_verifier(auth.TokenVerifier(issuer.issuer, "coordo"))
    load(args.patients, args.holders, args.reuse)
    rng = random.Random(3)
    queries = make_queries(args.queries, args.holders, rng)

    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(SETTINGS)
        warm = time_sql(conn, [COUNT_SQL, PAGE_SQL], queries[:100])  # noqa: F841 - cache warm-up
        denorm = time_sql(conn, [COUNT_SQL, PAGE_SQL], queries)
        page_only = time_sql(conn, [PAGE_SQL], queries)
        window = time_sql(conn, [WINDOW_SQL], queries)
        naive_n = 0 if args.skip_naive else 300
        naive_tuned = time_sql(conn, [NAIVE_COUNT_SQL, NAIVE_PAGE_SQL], queries[:naive_n])
        conn.execute(DEFAULTS)
        naive_default = time_sql(conn, [NAIVE_COUNT_SQL, NAIVE_PAGE_SQL], queries[:naive_n])
        denorm_default = time_sql(conn, [COUNT_SQL, PAGE_SQL], queries)
        window_default = time_sql(conn, [WINDOW_SQL], queries)
        conn.execute(SETTINGS)
        plan_page = explain(conn, PAGE_SQL, queries[0])
        plan_count = explain(conn, COUNT_SQL, queries[0])
        plan_naive = explain(conn, NAIVE_PAGE_SQL, queries[0])
        totals = [conn.execute(COUNT_SQL, q).fetchone()[0] for q in queries[:200]]  # type: ignore[index]

    settings = replace(SERVICE.settings(), database_url=database_url(), validate_responses=False)
    db = SERVICE.database(settings)
    use_case: list[float] = []
    with db.session_factory() as session:
        for q in queries:
            actor = Actor(q["holder_id"], None, (), None, False, ("user",), None)
            filters = file_list.parse_filters({"name": q["prefix"].rstrip("%"), "sex": q["sex"]})
            started = time.perf_counter()
            file_list.search(session, actor, filters, TODAY, page_size=10)
            session.commit()
            use_case.append((time.perf_counter() - started) * 1000)

    app = SERVICE.create_app(settings, db)
    client = app.test_client()
    tokens = {
        q["holder_id"]: "Bearer " + issuer.mint(q["holder_id"], extra_claims={"structures": []})
        for q in queries[:50]
    }
    http: list[float] = []
    for q in queries[:500]:
        token = tokens.get(q["holder_id"]) or tokens.setdefault(
            q["holder_id"], "Bearer " + issuer.mint(q["holder_id"], extra_claims={"structures": []})
        )
        url = f"/api/file-list?name={q['prefix'].rstrip('%')}&sex={q['sex']}"
        client.get(url, headers={"Authorization": token})  # token verification cached after the first
        started = time.perf_counter()
        response = client.get(url, headers={"Authorization": token})
        http.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    db.dispose()

    print(
        f"\n{args.patients:,} patients, {args.holders} holders (~{args.patients // args.holders:,} files each)"
    )
    print(f"matches per query: median {statistics.median(totals):.0f}, max {max(totals)}")
    print(figures("denormalised: count + page (tuned settings)", denorm))
    print(figures("denormalised: page only (tuned settings)", page_only))
    print(figures("denormalised: page + count(*) OVER () (tuned settings)", window))
    print(figures("denormalised: page + count(*) OVER () (defaults)", window_default))
    print(figures("denormalised: count + page (PostgreSQL defaults)", denorm_default))
    print(figures("file_list.search() use case (holders, settings, page + total)", use_case))
    print(figures("HTTP GET /api/file-list at the service (in-process)", http))
    if naive_tuned:
        print(figures("naive join habilitations x patients (tuned)", naive_tuned))
        print(figures("naive join habilitations x patients (defaults)", naive_default))
    print("\nEXPLAIN ANALYZE page query:\n" + plan_page)
    print("\nEXPLAIN ANALYZE count query:\n" + plan_count)
    print("\nEXPLAIN ANALYZE naive page query:\n" + plan_naive)
    print("\nreproduce: .venv/bin/python -m tests.bench.file_list --reuse")


if __name__ == "__main__":
    main()

"""Benchmark: identity-vigilance search (PAT-1, PAT-4) on PostgreSQL with many patients.

    .venv/bin/python -m tests.bench.identity_search --patients 1000000 [--queries 1000] [--reuse]

Loads N synthetic patients (dossier.demo_patients, COPY) into a dedicated database
`bench_dossier_identity`, then builds noisy duplicates of random known patients (typos,
French phonetic spellings, first/last swapped, day/month swapped, one digit off, used
names typed as birth names, accents/hyphens, and a few double noises) plus as many
identities that are *not* in the base. Reports:
- latency p50/p95/p99 of the use case (retrieval + scoring) and of the HTTP call at the
  service (`POST /api/patients/identity-search` through connexion, in-process client);
- recall: the original patient is among the top 5 candidates; per noise kind;
- precision of the "strong candidate" flag (the one that blocks a creation) and how often
  an identity that is not in the base gets any candidate / a strong one;
- EXPLAIN ANALYZE of one search query.
`--reuse` keeps an already loaded database (loading 1M rows takes minutes here).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from sqlalchemy import create_engine, func, select, text

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("COORDO_BENCH_IDENTITY_DB", "bench_dossier_identity")
TODAY = date(2026, 11, 30)

PHONETIC = [
    ("EAU", "O"),
    ("AU", "O"),
    ("PH", "F"),
    ("TH", "T"),
    ("Y", "I"),
    ("QU", "K"),
    ("LL", "L"),
    ("NN", "N"),
    ("TT", "T"),
    ("SS", "S"),
    ("MM", "M"),
    ("RR", "R"),
    ("AI", "E"),
    ("EI", "E"),
    ("CK", "K"),
    ("IE", "I"),
    ("OU", "OO"),
    ("Z", "S"),
    ("K", "C"),
    ("CH", "SH"),
]
ENDINGS = [("T", "D"), ("D", "T"), ("ET", "E"), ("S", ""), ("X", ""), ("E", ""), ("ER", "E")]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- noise -------------------------------------------------------------------------------


def typo(name: str, rng: random.Random) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if len(name) < 4:
        return name + rng.choice(letters)
    i = rng.randrange(1, len(name) - 1)
    kind = rng.choice(("substitute", "delete", "insert", "transpose"))
    if kind == "substitute":
        return name[:i] + rng.choice(letters) + name[i + 1 :]
    if kind == "delete":
        return name[:i] + name[i + 1 :]
    if kind == "insert":
        return name[:i] + rng.choice(letters) + name[i:]
    return name[:i] + name[i + 1] + name[i] + name[i + 2 :]


def phonetic_spelling(name: str, rng: random.Random) -> str:
    options = [(a, b) for a, b in PHONETIC if a in name]
    endings = [(a, b) for a, b in ENDINGS if name.endswith(a) and len(name) > len(a) + 2]
    if endings and (not options or rng.random() < 0.4):
        a, b = rng.choice(endings)
        return name[: -len(a)] + b
    if options:
        a, b = rng.choice(options)
        return name.replace(a, b, 1)
    return name + "E"


def accents_hyphens(name: str, rng: random.Random) -> str:
    if " " in name:
        return name.replace(" ", rng.choice(("-", "", "'")), 1)
    if "E" in name:
        i = name.index("E")
        return name[:i] + rng.choice("ÉÈÊ") + name[i + 1 :]
    return name.lower().capitalize()


def one_digit_off(value: date, rng: random.Random) -> date:
    text_ = value.strftime("%Y%m%d")
    for _ in range(50):
        i = rng.choice((3, 5, 6, 7, 2))  # the digits people slip on (not the century)
        candidate = text_[:i] + str(rng.randrange(10)) + text_[i + 1 :]
        try:
            found = date(int(candidate[:4]), int(candidate[4:6]), int(candidate[6:]))
        except ValueError:
            continue
        if found != value and found <= TODAY:
            return found
    return value + timedelta(days=1)


def noisy(patient: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    q = {
        "birth_name": patient["birth_name"],
        "first_name": patient["first_name"],
        "birth_date": patient["birth_date"],
        "sex": patient["sex"],
        "birth_place": patient["birth_place"],
    }
    if kind == "typo_last":
        q["birth_name"] = typo(q["birth_name"], rng)
    elif kind == "typo_first":
        q["first_name"] = typo(q["first_name"], rng)
    elif kind == "phonetic":
        field = rng.choice(("birth_name", "first_name"))
        q[field] = phonetic_spelling(q[field], rng)
    elif kind == "swapped_names":
        q["birth_name"], q["first_name"] = q["first_name"], q["birth_name"]
    elif kind == "day_month_swapped":
        d = q["birth_date"]
        q["birth_date"] = date(d.year, d.day, d.month)
    elif kind == "one_digit_off":
        q["birth_date"] = one_digit_off(q["birth_date"], rng)
    elif kind == "used_name":
        q["birth_name"] = patient["used_name"]
    elif kind == "accents_hyphens":
        field = rng.choice(("birth_name", "first_name"))
        q[field] = accents_hyphens(q[field], rng)
    elif kind == "phonetic+one_digit_off":
        q["birth_name"] = phonetic_spelling(q["birth_name"], rng)
        q["birth_date"] = one_digit_off(q["birth_date"], rng)
    elif kind == "typo+day_month_swapped":
        q["birth_name"] = typo(q["birth_name"], rng)
        d = q["birth_date"]
        q["birth_date"] = date(d.year, d.day, d.month)
    elif kind == "used_name+typo_first":
        q["birth_name"] = patient["used_name"]
        q["first_name"] = typo(q["first_name"], rng)
    q["birth_date"] = q["birth_date"].isoformat()
    return q


KINDS = [
    "typo_last",
    "typo_first",
    "phonetic",
    "swapped_names",
    "day_month_swapped",
    "one_digit_off",
    "used_name",
    "accents_hyphens",
    "phonetic+one_digit_off",
    "typo+day_month_swapped",
    "used_name+typo_first",
]


def applicable(kind: str, patient: dict[str, Any]) -> bool:
    if "used_name" in kind and not patient["used_name"]:
        return False
    if "day_month_swapped" in kind:
        d = patient["birth_date"]
        return d.day <= 12 and d.day != d.month
    return True


# -- setup --------------------------------------------------------------------------------


def database_url() -> str:
    return f"{PG}/{DB_NAME}"


def load(patients: int, reuse: bool) -> None:
    from dossier.app import SERVICE
    from dossier.demo_patients import bulk_insert, generate

    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB_NAME})
        if exists and reuse:
            admin.dispose()
            return
        if exists:
            conn.execute(text(f'DROP DATABASE "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    admin.dispose()
    settings = replace(SERVICE.settings(), database_url=database_url())
    SERVICE.migrate(settings)
    started = time.perf_counter()
    done = bulk_insert(database_url(), generate(patients, seed=7), holder=("structure", "dac-bench"))
    elapsed = time.perf_counter() - started
    engine = create_engine(database_url().replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE patients"))
    engine.dispose()
    print(f"loaded {done:,} patients with COPY in {elapsed:.0f} s ({done / elapsed:,.0f} rows/s)")


def sample_patients(engine: Any, count: int, rng: random.Random) -> list[dict[str, Any]]:
    from dossier.models import Patient

    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(Patient.__table__))
        rows = conn.execute(
            text(
                "SELECT id, birth_name, first_name, birth_date, sex, birth_place, used_name "
                "FROM patients TABLESAMPLE SYSTEM (:pct) REPEATABLE (:seed) LIMIT :n"
            ),
            {
                "pct": min(100.0, 100.0 * count * 4 / max(total, 1)),
                "seed": rng.randrange(1000),
                "n": count * 2,
            },
        ).mappings()
        found = [dict(r) for r in rows]
    rng.shuffle(found)
    return found[: count * 2]


def strangers(count: int) -> list[dict[str, Any]]:
    """Identities that are not in the base (another seed of the same generator)."""
    from dossier.demo_patients import generate

    return [
        {
            "birth_name": r["birth_name"],
            "first_name": r["first_name"],
            "birth_date": r["birth_date"].isoformat(),
            "sex": r["sex"],
            "birth_place": r["birth_place"],
        }
        for r in generate(count, seed=99991)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")

    from chassis import auth
    from dossier import identity
    from dossier.app import SERVICE
    from tests.support.issuer import TestIssuer

    issuer = TestIssuer().start()  # a real OIDC issuer: the HTTP calls carry real tokens
    os.environ["COORDO_OIDC_ISSUER"] = issuer.issuer
    auth.configure_verifier(auth.TokenVerifier(issuer.issuer, "coordo"))
    load(args.patients, args.reuse)
    rng = random.Random(11)
    settings = replace(SERVICE.settings(), database_url=database_url())
    db = SERVICE.database(settings)
    sample = sample_patients(db.engine, args.queries, rng)
    queries: list[tuple[str, str, dict[str, Any]]] = []
    for patient in sample:
        if len(queries) >= args.queries:
            break
        kinds = [k for k in KINDS if applicable(k, patient)]
        kind = rng.choice(kinds)
        queries.append((kind, patient["id"], noisy(patient, kind, rng)))
    others = strangers(max(100, args.queries // 2))

    # Use case: retrieval + scoring, no HTTP.
    use_case_ms: list[float] = []
    cpu_started = time.process_time()
    hits: dict[str, list[int]] = {}
    strong_true = strong_false = 0
    with db.session_factory() as session:
        for kind, truth, q in queries:
            typed = identity._search_traits(q, TODAY, search=True)
            started = time.perf_counter()
            found = identity.find_candidates(session, typed, TODAY)
            use_case_ms.append((time.perf_counter() - started) * 1000)
            ids = [p.id for p, _ in found[:5]]
            hits.setdefault(kind, []).append(1 if truth in ids else 0)
            for p, m in found:
                if m.strong:
                    strong_true += p.id == truth
                    strong_false += p.id != truth
        use_case_cpu_ms = (time.process_time() - cpu_started) * 1000 / len(queries)
        stranger_any = stranger_strong = 0
        for q in others:
            typed = identity._search_traits(q, TODAY, search=True)
            found = identity.find_candidates(session, typed, TODAY)
            stranger_any += bool(found)
            stranger_strong += any(m.strong for _, m in found)

    # HTTP at the service (connexion, in-process client: no network, same handlers).
    http_ms: list[float] = []
    if True:
        app = SERVICE.create_app(settings, db)
        client = app.test_client()
        headers = {
            "Authorization": "Bearer "
            + issuer.mint("person-bench", extra_claims={"structures": ["dac-bench"]})
        }
        cpu_started = time.process_time()
        for _, _, q in queries[: min(len(queries), 500)]:
            started = time.perf_counter()
            response = client.post("/api/patients/identity-search", json=q, headers=headers)
            http_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        http_cpu_ms = (time.process_time() - cpu_started) * 1000 / len(http_ms)

    with db.engine.connect() as conn:
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.dialects.postgresql import psycopg as _  # noqa: F401

        typed = identity._search_traits(queries[0][2], TODAY, search=True)
        found = identity.candidate_statement("postgresql", typed, TODAY)
        assert found is not None
        stmt, parameters = found
        compiled = stmt.compile(dialect=postgresql.psycopg.dialect())
        explain = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), {**compiled.params, **parameters}
        )
        plan = [row[0] for row in explain]

    total_hits = [h for values in hits.values() for h in values]
    recall = sum(total_hits) / len(total_hits)
    print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"\nidentity search, {args.patients:,} patients, {len(queries)} noisy duplicates, {len(others)} strangers"
    )
    print(
        f"use case (retrieval + scoring): p50 {statistics.median(use_case_ms):.2f} ms, "
        f"p95 {percentile(use_case_ms, 95):.2f} ms, p99 {percentile(use_case_ms, 99):.2f} ms; "
        f"CPU {use_case_cpu_ms:.2f} ms per search"
    )
    if http_ms:
        print(
            f"HTTP at the service: p50 {statistics.median(http_ms):.2f} ms, p95 {percentile(http_ms, 95):.2f} ms, "
            f"p99 {percentile(http_ms, 99):.2f} ms ({len(http_ms)} calls); CPU {http_cpu_ms:.2f} ms per call"
        )
    print(f"recall (original in top 5): {recall:.2%}")
    for kind in KINDS:
        if kind in hits:
            values = hits[kind]
            print(f"  {kind:<24} {sum(values) / len(values):7.2%}  ({len(values)})")
    strong_total = strong_true + strong_false
    if strong_total:
        print(
            f"precision of 'strong candidate': {strong_true / strong_total:.2%} ({strong_true}/{strong_total})"
        )
    print(
        f"strangers (not in base): any candidate {stranger_any / len(others):.2%}, "
        f"a strong one {stranger_strong / len(others):.2%}"
    )
    print("\nEXPLAIN ANALYZE of one search:")
    print("\n".join(plan))
    print(
        f"\nreproduce: .venv/bin/python -m tests.bench.identity_search --patients {args.patients} "
        f"--queries {args.queries} [--reuse]"
    )
    db.dispose()


if __name__ == "__main__":
    main()

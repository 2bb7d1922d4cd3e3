"""Benchmark: patient creation at the dossier service versus raw psycopg, on PostgreSQL.

    .venv/bin/python -m tests.bench.patient_creation [--creations 500] [--base 100000] [--clients 4] [--workers 1]

`--base` synthetic patients are loaded first (COPY) so that the identity-vigilance check
that runs on every creation searches a realistic base. Then, one at a time:
- `POST /api/patients` through the service's contract (connexion, in-process client, real
  OIDC token): validation, duplicate search, patient + consent + habilitation + history
  rows and the PatientCreated outbox row in one transaction;
- raw psycopg: one INSERT of the same patient row and one commit per row (the floor);
- `POST /api/patients` through the gateway of the distributed mode (gunicorn, PostgreSQL,
  RabbitMQ; the same base loaded into its dossier database), by one client and by
  `--clients` clients at once;
- then `GET /api/patients/{id}` of the files just created, through the same gateway, by as
  many clients: the cheapest request on that path (one row by primary key, its access
  recorded), a ceiling for any request there, a creation included.
Prints p50/p99 per creation and creations/s for each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, text

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = "bench_dossier_creation"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def recreate_database(name: str, template: str | None = None) -> str:
    """An empty database, or a copy of `template` (PostgreSQL clones it: the replay's base)."""
    admin = create_engine(
        f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    admin.dispose()
    return f"{PG}/{name}"


def _recorder(sent: list[list[tuple[str, Any, bool]]]) -> Any:
    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        if sent:
            sent[-1].append((statement, parameters, executemany))

    return record


def replay(conn: Any, sent: list[list[tuple[str, Any, bool]]]) -> tuple[list[float], float]:
    """The use case's statements sent again by psycopg alone, one transaction per creation:
    the database's share of a creation, without the ORM, the domain rules or Python's scoring.
    Returns the latencies (ms) and the seconds it took."""
    latencies: list[float] = []
    started_all = time.perf_counter()
    for creation in sent:
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for statement, parameters, executemany in creation:
                if executemany:
                    cursor.executemany(statement, parameters)
                else:
                    cursor.execute(statement, parameters)
                    if cursor.description is not None:
                        cursor.fetchall()
        conn.commit()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, time.perf_counter() - started_all


def creation_body(person: dict[str, Any]) -> dict[str, Any]:
    return {
        "birth_name": person["birth_name"],
        "first_name": person["first_name"],
        "birth_date": person["birth_date"].isoformat(),
        "sex": person["sex"],
        "birth_place": person["birth_place"],
        "consent": {"attested": True, "given_by": "patient"},
    }


def _post_all(
    gateway: str, headers: dict[str, str], batch: list[dict[str, Any]], clients: int
) -> tuple[list[float], float, int, list[str]]:
    """`clients` threads share `batch`, each posting one creation after the other.
    Returns latencies (ms), creations/s, how many were answered 409, the created ids."""

    def create(client: Any, body: dict[str, Any]) -> Any:
        response = client.post("/api/patients", json=body)
        assert response.status_code in (201, 409), response.text
        return response

    latencies, rate, responses = _load(gateway, headers, batch, clients, create)
    created = [r.json()["id"] for r in responses if r.status_code == 201]
    return latencies, rate, sum(r.status_code == 409 for r in responses), created


def _load(
    gateway: str, headers: dict[str, str], items: list[Any], clients: int, send: Any
) -> tuple[list[float], float, list[Any]]:
    """`clients` threads share `items`, each sending one request after the other with
    `send(client, item)`: (latencies ms, requests/s, responses)."""
    import threading

    import httpx

    latencies: list[float] = []
    responses: list[Any] = []
    lock = threading.Lock()

    def run(share: list[Any]) -> None:
        with httpx.Client(base_url=gateway, headers=headers, timeout=30) as client:
            for item in share:
                started = time.perf_counter()
                response = send(client, item)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    responses.append(response)

    threads = [threading.Thread(target=run, args=(items[i::clients],)) for i in range(clients)]
    started_all = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(items) / (time.perf_counter() - started_all), responses


Phase = tuple[list[float], float, int, dict[str, float]]


def through_gateway(args: argparse.Namespace) -> tuple[dict[int, Phase], dict[int, Phase]]:
    """Creations through the gateway, then reads of the created files through the same
    gateway: for each, {clients: (latencies ms, requests/s, 409 answers, CPU ms per request
    of each process of the suite)}. The CPU is counted until every consumer has gone quiet,
    so that the events a creation sets off are paid for too.

    The read (`GET /api/patients/{id}`: one row by primary key) is the cheapest request on
    this path: whatever a creation does, it cannot go faster than that on this machine."""
    import httpx
    import psycopg

    from dossier.demo_patients import bulk_insert, generate
    from tests.bench.distributed_suite import distributed_suite

    def load_base(env: dict[str, str]) -> None:
        url = env["COORDO_DOSSIER_DATABASE_URL"]
        if args.base:
            bulk_insert(url, generate(args.base, seed=3))
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE patients")

    def read(client: Any, patient_id: str) -> Any:
        response = client.get(f"/api/patients/{patient_id}")
        assert response.status_code == 200, response.text
        return response

    people = [creation_body(p) for p in generate(args.creations * 3, seed=6161)]
    creations: dict[int, Phase] = {}
    reads: dict[int, Phase] = {}
    with distributed_suite(args.workers, before_start=load_base) as suite:
        roots = {**suite.pids, "benchmark client": os.getpid()}
        headers = {"Authorization": f"Bearer {suite.token()}"}
        with httpx.Client(base_url=suite.gateway, headers=headers, timeout=30) as warm:
            for body in people[:20]:
                warm.post("/api/patients", json=body)
        batches = {1: people[20 : 20 + args.creations], args.clients: people[20 + args.creations :]}
        created: list[str] = []
        for clients, batch in batches.items():
            with _measured(roots, len(batch)) as spent:
                latencies, rate, conflicts, ids = _post_all(suite.gateway, headers, batch, clients)
            creations[clients] = (latencies, rate, conflicts, spent)
            created.extend(ids)
        for clients in batches:
            with _measured(roots, len(created)) as spent:
                latencies, rate, _ = _load(suite.gateway, headers, created, clients, read)
            reads[clients] = (latencies, rate, 0, spent)
    return creations, reads


@contextmanager
def _measured(roots: dict[str, int], units: int) -> Iterator[dict[str, float]]:
    """CPU ms per unit of each process group over the block, and until the suite is quiet
    again; filled in when the block ends."""
    from tests.bench import cpu

    _wait_quiet(roots, {})
    idle = _idle_rates(roots)
    spent: dict[str, float] = {}
    before, started = cpu.snapshot(roots), time.monotonic()
    yield spent
    after, ended = _wait_quiet(roots, idle)
    spent.update(cpu.per_unit(before, after, units, idle=idle, seconds=ended - started))


def _idle_rates(roots: dict[str, int], seconds: float = 2.0) -> dict[str, float]:
    """CPU seconds per second each process spends with nothing to do (timers, heartbeats):
    taken off what the creations are charged with."""
    from tests.bench import cpu

    before = cpu.snapshot(roots)
    time.sleep(seconds)
    after = cpu.snapshot(roots)
    return {name: max(0.0, (after[name] - before[name]) / seconds) for name in after}


def _wait_quiet(roots: dict[str, int], idle: dict[str, float]) -> tuple[dict[str, float], float]:
    """Wait until the suite is back to idle (the events have all been handled): in the last
    half second it spent under 5 % of a core above its idle rate. Returns the snapshot and
    the time when that quiet half second began."""
    from tests.bench import cpu

    idle_rate = sum(rate for name, rate in idle.items() if name != "benchmark client")
    previous, since = cpu.snapshot(roots), time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current, now = cpu.snapshot(roots), time.monotonic()
        busy = sum(current[n] - previous[n] for n in current if n != "benchmark client") / (now - since)
        if busy < idle_rate + 0.05:
            return previous, since
        previous, since = current, now
    return previous, since


def print_gateway(
    gateway: tuple[dict[int, Phase], dict[int, Phase]],
    args: argparse.Namespace,
    replay_rate: float | None,
    raw_rate: float | None,
) -> None:
    from tests.bench import cpu

    creations, reads = gateway
    for clients, (ms, rate, conflicts, cpu_ms) in creations.items():
        floors = (
            f" -> {rate / replay_rate:.2f}x raw same work, {rate / raw_rate:.2f}x raw single INSERT"
            " (target: within 2x of raw)"
            if replay_rate and raw_rate
            else ""
        )
        print(
            f"through the gateway (distributed mode, {args.workers} worker(s) per web process), "
            f"{clients} client(s): p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms, "
            f"{rate:.0f} creations/s ({conflicts} answered 409){floors}"
        )
        print(
            "  CPU per creation, until the events it set off are all handled (the suite's idle "
            f"CPU taken off): {cpu.describe(cpu_ms)}"
        )
    for clients, (ms, rate, _, cpu_ms) in reads.items():
        floors = (
            f" -> {rate / replay_rate:.2f}x raw same work of a creation, {rate / raw_rate:.2f}x raw single INSERT"
            if replay_rate and raw_rate
            else ""
        )
        print(
            f"the cheapest request on the same path, GET /api/patients/{{id}} of a created file, {clients} "
            f"client(s): p50 {statistics.median(ms):.1f} ms, p99 {percentile(ms, 99):.1f} ms, {rate:.0f} reads/s{floors}"
        )
        print(f"  CPU per read: {cpu.describe(cpu_ms)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--creations", type=int, default=500)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients through the gateway")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per web process")
    parser.add_argument(
        "--gateway-only",
        action="store_true",
        help="only the distributed suite (no in-process phases, no floors)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    os.environ.setdefault("COORDO_VALIDATE_EVENTS", "0")  # as deployed (deploy/): checked in CI
    if args.gateway_only:
        print_gateway(through_gateway(args), args, None, None)
        return

    import psycopg

    from chassis import auth
    from chassis.process import freeze_startup_heap
    from dossier.app import SERVICE
    from dossier.demo_patients import bulk_insert, generate
    from tests.support.issuer import TestIssuer

    issuer = TestIssuer().start()
    os.environ["COORDO_OIDC_ISSUER"] = issuer.issuer
    auth.configure_verifier(auth.TokenVerifier(issuer.issuer, "coordo"))
    url = recreate_database(DB_NAME)
    settings = replace(SERVICE.settings(), database_url=url)
    SERVICE.migrate(settings)
    if args.base:
        bulk_insert(url, generate(args.base, seed=3))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE patients")
    replay_url = recreate_database(f"{DB_NAME}_replay", template=DB_NAME)

    # New identities (another seed), each created once through the service, once raw.
    people = list(generate(args.creations * 2, seed=4242))
    service_people, raw_people = people[: args.creations], people[args.creations :]

    db = SERVICE.database(settings)
    client = SERVICE.create_app(settings, db).test_client()
    freeze_startup_heap()  # as the service's web process does once its app is built
    headers = {
        "Authorization": "Bearer " + issuer.mint("person-bench", extra_claims={"structures": ["dac-bench"]})
    }
    service_ms: list[float] = []
    refused = 0
    started_all = time.perf_counter()
    for person in service_people:
        body = creation_body(person)
        started = time.perf_counter()
        response = client.post("/api/patients", json=body, headers=headers)
        service_ms.append((time.perf_counter() - started) * 1000)
        if response.status_code == 409:
            refused += 1  # a homonym in the base: identity vigilance asks for a confirmation
        else:
            assert response.status_code == 201, response.text
    service_rate = len(service_people) / (time.perf_counter() - started_all)

    # The same use case without HTTP (no connexion, no token check): where the time goes.
    from chassis.auth import Actor
    from chassis.problems import Problem
    from dossier import identity
    from dossier.domain import IdentityRuleError

    actor = Actor("person-bench", None, ("dac-bench",), None, False, (), None)
    use_case_ms: list[float] = []
    # What each creation sent to PostgreSQL, statement by statement, for the raw replay.
    sent: list[list[tuple[str, Any, bool]]] = []
    statements_per_creation: list[int] = []
    # Without the pool's pre-ping: a deployment setting (one round trip per checkout), not
    # the use case's work, and the replay has none.
    use_case_db = SERVICE.database(settings, pre_ping=False)
    capture = _recorder(sent)
    event.listen(use_case_db.engine, "before_cursor_execute", capture)
    # In chunks, each replayed right after it ran: this VM's speed wanders within minutes,
    # and the ratio must compare the use case and its floor at the same speed.
    chunk = 50
    people_uc = list(generate(args.creations, seed=5151))
    replay_ms: list[float] = []
    replay_seconds = 0.0
    use_case_cpu_s = 0.0
    with psycopg.connect(replay_url) as replay_conn:
        for start in range(0, len(people_uc), chunk):
            sent.clear()
            cpu_started = time.process_time()
            for person in people_uc[start : start + chunk]:
                body = creation_body(person)
                sent.append([])
                started = time.perf_counter()
                try:
                    identity.create_patient(use_case_db, actor, body, datetime.now(UTC).date())
                except (Problem, IdentityRuleError):
                    sent.pop()  # refused (a homonym): nothing committed, nothing to replay
                use_case_ms.append((time.perf_counter() - started) * 1000)
            use_case_cpu_s += time.process_time() - cpu_started
            statements_per_creation.extend(len(creation) for creation in sent)
            latencies, seconds = replay(replay_conn, sent)
            replay_ms.extend(latencies)
            replay_seconds += seconds
    use_case_cpu = use_case_cpu_s * 1000 / args.creations
    replay_rate = len(replay_ms) / replay_seconds
    event.remove(use_case_db.engine, "before_cursor_execute", capture)
    use_case_db.dispose()
    db.dispose()

    columns = [
        "id", "birth_name", "first_name", "birth_date", "sex", "birth_place", "identity_status", "incomplete",
        "created_by", "owner_kind", "owner_id", "created_at", "updated_at", "version", "birth_country",
        "homonym", "doubtful", "fictitious", "collection_channel", "confirmed_despite_candidates",
        "name_key_birth", "name_key_first",
    ]  # fmt: skip
    sql = f"INSERT INTO patients ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    raw_ms: list[float] = []
    with psycopg.connect(url) as conn:
        started_all = time.perf_counter()
        for person in raw_people:
            now = datetime.now(UTC)
            row: dict[str, Any] = {
                **person,
                "id": str(uuid.uuid4()),
                "incomplete": False,
                "created_at": now,
                "updated_at": now,
                "homonym": False,
                "doubtful": False,
                "fictitious": False,
                "confirmed_despite_candidates": False,
            }
            started = time.perf_counter()
            conn.execute(sql, [row[c] for c in columns])
            conn.commit()
            raw_ms.append((time.perf_counter() - started) * 1000)
        raw_rate = len(raw_people) / (time.perf_counter() - started_all)

    print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"patient creation, base of {args.base:,} patients, {args.creations} creations each")
    print(
        f"service POST /api/patients: p50 {statistics.median(service_ms):.1f} ms, "
        f"p99 {percentile(service_ms, 99):.1f} ms, {service_rate:.0f} creations/s "
        f"({refused} answered 409: close identity found)"
    )
    print(
        f"use case identity.create_patient (no HTTP): p50 {statistics.median(use_case_ms):.1f} ms, "
        f"p99 {percentile(use_case_ms, 99):.1f} ms, CPU {use_case_cpu:.1f} ms per creation"
    )
    print(
        f"raw psycopg INSERT + commit: p50 {statistics.median(raw_ms):.2f} ms, "
        f"p99 {percentile(raw_ms, 99):.2f} ms, {raw_rate:.0f} rows/s"
    )
    statements = statistics.mean(statements_per_creation)
    print(
        f"raw psycopg, the same work: the use case's {statements:.1f} statements per creation replayed on a copy "
        f"of the base, one commit each, chunk by chunk after the use case: p50 {statistics.median(replay_ms):.2f} ms, p99 {percentile(replay_ms, 99):.2f} ms, "
        f"{replay_rate:.0f} creations/s"
    )
    use_case_rate = 1000 / statistics.mean(use_case_ms)
    print(
        f"use case / raw same work: {use_case_rate:.0f} / {replay_rate:.0f} creations/s = "
        f"{use_case_rate / replay_rate:.2f}x (target: within 2x of raw, i.e. >= 0.5x)"
    )
    print(
        f"service / raw same work: {service_rate / replay_rate:.2f}x; "
        f"service / raw single INSERT: {service_rate / raw_rate:.2f}x"
    )
    os.environ.pop("COORDO_OIDC_ISSUER", None)  # the suite runs its own provider
    gateway = through_gateway(args)
    print_gateway(gateway, args, replay_rate, raw_rate)
    print(
        f"reproduce: .venv/bin/python -m tests.bench.patient_creation --creations {args.creations} --base {args.base}"
        f" --clients {args.clients} --workers {args.workers}"
    )
    issuer.stop()


if __name__ == "__main__":
    main()

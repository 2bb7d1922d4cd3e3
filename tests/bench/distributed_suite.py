"""The distributed mode for a benchmark: gunicorn web processes, workers and the gateway
on this machine's PostgreSQL (fresh databases, dropped afterwards) and RabbitMQ."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, pool, text

from chassis.settings import SERVICES
from coordo.distributed import DistributedSuite, delete_service_queues, local_environment
from tests.support.suite import free_port_block, suite_environment

PG = os.environ.get("COORDO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
AMQP = os.environ.get("COORDO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass
class RunningSuite:
    env: dict[str, str]
    gateway: str
    dossier: str
    pids: dict[str, int]

    def token(self, username: str = "coordinateur") -> str:
        from identity.token_cli import fetch_token

        return str(fetch_token(f"{self.gateway}/oidc", username, "coordo-demo")["access_token"])


@contextmanager
def distributed_suite(
    workers: int = 1, before_start: Callable[[dict[str, str]], None] | None = None
) -> Iterator[RunningSuite]:
    """`before_start(env)` runs after the migrations, e.g. to bulk-load a service's base."""
    run_dir = Path(tempfile.mkdtemp(prefix="coordo-bench-"))
    base = free_port_block()
    prefix = f"coordo_bench_{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(suite_environment(base, str(run_dir / "var")))
    env["COORDO_VALIDATE_RESPONSES"] = "0"  # as in production
    env["COORDO_VALIDATE_EVENTS"] = "0"  # as deployed (deploy/): checked against schemas in CI
    env.update({"COORDO_BROKER_URL": AMQP, "COORDO_POSTGRES_URL": PG})
    for name in (*SERVICES, "gateway"):
        env[f"COORDO_{name.upper()}_DATABASE_URL"] = f"{PG}/{prefix}_{name}"
    env = local_environment(env)
    delete_service_queues(AMQP)
    suite = DistributedSuite(env=env, web_workers=workers, log_dir=run_dir / "logs")
    try:
        suite.migrate(demo=True)
        if before_start is not None:
            before_start(env)
        suite.start(timeout=120)
        yield RunningSuite(
            env=env,
            gateway=f"http://127.0.0.1:{base}",
            dossier=env.get("COORDO_DOSSIER_URL", f"http://127.0.0.1:{base + 2}"),
            pids={name: process.pid for name, process in suite.processes.items()},
        )
    finally:
        suite.stop()
        admin = create_engine(
            f"{PG}/postgres".replace("postgresql://", "postgresql+psycopg://"),
            isolation_level="AUTOCOMMIT",
            poolclass=pool.NullPool,
        )
        with admin.connect() as conn:
            for name in (*SERVICES, "gateway"):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)'))
        admin.dispose()

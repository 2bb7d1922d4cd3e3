"""The whole suite, started for real: embedded (one process) and distributed (one process
per component on PostgreSQL + RabbitMQ), each on its own ports, databases and state."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.support.suite import free_port_block, suite_environment


class _Collect:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    handler: _Collect = field(default_factory=_Collect)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[tuple[list[str], Message]]:
        return self.handler.messages


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    base = free_port_block(1)
    server = SmtpServer(port=base)
    controller = Controller(server.handler, hostname="127.0.0.1", port=base)
    controller.start()
    yield server
    controller.stop()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class RunningSuite:
    base_url: str
    env: dict[str, str]
    gateway_database_url: str
    mode: str
    handle: Any = None

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/oidc"


@pytest.fixture(scope="module")
def embedded_suite(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer
) -> Iterator[RunningSuite]:
    from coordo.embedded import EmbeddedSuite

    var = tmp_path_factory.mktemp("embedded") / "var"
    base = free_port_block()
    env = suite_environment(base, str(var))
    env.update({"COORDO_BROKER_URL": "memory://", "COORDO_SMTP_URL": smtp_server.url})
    for key in [k for k in os.environ if k.endswith("_DATABASE_URL") and k.startswith("COORDO_")]:
        env[key] = ""  # embedded: SQLite files under var/
    with environment(env):
        suite = EmbeddedSuite(demo=True)
        try:
            # A half-started suite must stop too: its workers would keep consuming the
            # process-wide in-memory bus and take the next suite's events.
            suite.start()
            yield RunningSuite(
                base_url=f"http://127.0.0.1:{base}",
                env=env,
                gateway_database_url=f"sqlite:///{Path(var) / 'gateway.db'}",
                mode="embedded",
                handle=suite,
            )
        finally:
            suite.stop()


@pytest.fixture(scope="module")
def distributed_suite(
    tmp_path_factory: pytest.TempPathFactory, smtp_server: SmtpServer, postgres_server_url: str, amqp_url: str
) -> Iterator[RunningSuite]:
    from sqlalchemy import create_engine, pool, text

    from chassis.settings import SERVICES
    from coordo.distributed import DistributedSuite, delete_service_queues, local_environment

    run_dir = tmp_path_factory.mktemp("distributed")
    base = free_port_block()
    prefix = f"coordo_e2e_{uuid.uuid4().hex[:6]}"
    env = dict(os.environ)
    env.update(suite_environment(base, str(run_dir / "var")))
    env.update(
        {
            "COORDO_BROKER_URL": amqp_url,
            "COORDO_SMTP_URL": smtp_server.url,
            "COORDO_POSTGRES_URL": postgres_server_url,
        }
    )
    names = [*SERVICES, "gateway"]
    for name in names:
        env[f"COORDO_{name.upper()}_DATABASE_URL"] = f"{postgres_server_url}/{prefix}_{name}"
    env = local_environment(env)
    with environment({"COORDO_BROKER_URL": amqp_url}):
        delete_service_queues(amqp_url)
    suite = DistributedSuite(env=env, log_dir=run_dir / "logs")
    try:
        suite.migrate(demo=True)
        suite.start(timeout=120)
        yield RunningSuite(
            base_url=f"http://127.0.0.1:{base}",
            env=env,
            gateway_database_url=env["COORDO_GATEWAY_DATABASE_URL"],
            mode="distributed",
            handle=suite,
        )
    except Exception:
        for log in sorted((run_dir / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        suite.stop()
        delete_service_queues(amqp_url)  # leave no durable queue filling up behind the tests
        admin = create_engine(
            f"{postgres_server_url}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
            poolclass=pool.NullPool,
        )
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{prefix}_{name}" WITH (FORCE)'))
        admin.dispose()

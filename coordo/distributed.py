"""Distributed mode on one machine: one gunicorn (uvicorn worker) per service web, one
worker process per service, and the gateway — against PostgreSQL and RabbitMQ.

Configured only by environment variables; `local_environment()` fills the defaults for
this machine (one database per service on the local PostgreSQL, the local RabbitMQ).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chassis.settings import DEFAULT_PORTS, SERVICES

PYTHON = sys.executable
# URL-encoded "-c max_parallel_workers_per_gather=0 -c plan_cache_mode=force_custom_plan".
DOSSIER_PG_OPTIONS = "-c%20max_parallel_workers_per_gather%3D0%20-c%20plan_cache_mode%3Dforce_custom_plan"
BIN = Path(PYTHON).parent


def local_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None else os.environ)
    pg = env.get("COORDO_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
    env.setdefault("COORDO_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    # The web front end behind the gateway; its processes share the key that signs sessions.
    from web.settings import web_url

    env.setdefault("COORDO_WEB_URL", web_url(env))
    env.setdefault("COORDO_WEB_SECRET_KEY", secrets.token_urlsafe(32))
    # dossier's file list: no parallel workers for 10-row pages and one plan per call for
    # skewed holders (measured in tests/bench/README.md); libpq `options` sets them per session.
    env.setdefault("COORDO_DOSSIER_DATABASE_URL", f"{pg}/coordo_dossier?options={DOSSIER_PG_OPTIONS}")
    for name in (*SERVICES, "gateway"):
        env.setdefault(f"COORDO_{name.upper()}_DATABASE_URL", f"{pg}/coordo_{name}")
    return env


def web_command(service: str, port: int, workers: int = 1) -> list[str]:
    module = "gateway.app" if service == "gateway" else f"{service}.app"
    return [
        str(BIN / "gunicorn"),
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        str(workers),
        "-b",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        f"{module}:create_app()",
    ]


def worker_command(service: str) -> list[str]:
    return [PYTHON, "-m", "coordo.cli", "run", "--target", f"{service}-worker"]


@dataclass
class DistributedSuite:
    env: dict[str, str]
    web_workers: int = 1
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: Path | None = None

    def migrate(self, demo: bool = True) -> None:
        args = [PYTHON, "-m", "coordo.cli", "migrate"] + (["--demo"] if demo else [])
        subprocess.run(args, env=self.env, check=True)

    def _spawn(self, name: str, args: list[str]) -> None:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(args, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 90.0) -> None:
        # Workers first: they declare their queues before any web process can publish.
        for service in SERVICES:
            self._spawn(f"{service}-worker", worker_command(service))
        for service in SERVICES:
            port = int(self.env.get(f"COORDO_{service.upper()}_PORT", DEFAULT_PORTS[service]))
            self._spawn(f"{service}-web", web_command(service, port, self.web_workers))
        gateway_port = int(self.env.get("COORDO_GATEWAY_PORT", DEFAULT_PORTS["gateway"]))
        from web.settings import web_port

        self._spawn("web", web_command("web", web_port(self.env), self.web_workers))
        self._spawn("gateway", web_command("gateway", gateway_port, self.web_workers))
        self.wait_ready(gateway_port, timeout)

    def wait_ready(self, gateway_port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}")
            try:
                response = httpx.get(f"http://127.0.0.1:{gateway_port}/health/ready", timeout=2)
                last = response.text
                if response.status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"suite not ready after {timeout}s: {last}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def delete_service_queues(broker_url: str) -> None:
    """Forget every service queue (and its dead letters): for tests that need a clean broker."""
    from chassis import bus
    from chassis.consumer import queues_for
    from coordo.registry import all_services

    with bus.connect(broker_url) as connection:
        for definition in all_services():
            for subscription in definition.subscriptions(definition.settings()):
                for queue in queues_for(subscription):
                    queue(connection.channel()).delete()

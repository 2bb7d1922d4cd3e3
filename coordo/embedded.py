"""Embedded mode: every service, its worker and the gateway in one process.

Each web app runs in its own uvicorn server and thread (so a blocking call in one
service never stalls another), all workers share kombu's in-memory transport, and each
service keeps its own SQLite file under ./var/. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from chassis import bus
from chassis.db import Database
from chassis.process import freeze_startup_heap
from chassis.settings import Settings
from chassis.worker import Worker
from coordo.registry import all_services

log = logging.getLogger("coordo.embedded")


def _server(app: Any, port: int, host: str) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    return uvicorn.Server(config)


@dataclass
class EmbeddedSuite:
    host: str = "127.0.0.1"
    demo: bool = True
    #: Also serve the web front end (its port: web.settings.web_port()) behind the gateway.
    web: bool = False
    servers: list[uvicorn.Server] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    databases: dict[str, Database] = field(default_factory=dict)
    threads: list[threading.Thread] = field(default_factory=list)
    gateway: Any = None

    def start(self) -> None:
        from gateway.app import create_gateway

        definitions = all_services()
        for definition in definitions:
            settings = definition.settings()
            definition.migrate(settings)
            self.databases[definition.name] = definition.database(settings)
        # Queues first: no event may be published before its consumers' queues exist.
        for definition in definitions:
            settings = definition.settings()
            worker = definition.create_worker(settings, self.databases[definition.name])
            worker.declare_topology()
            self.workers.append(worker)
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            if not worker.wait_ready(30):
                raise RuntimeError(f"consumers of {worker.db.service} did not start")
        if self.demo:
            for definition in definitions:
                if definition.demo_data is not None:
                    definition.demo_data(definition.settings(), self.databases[definition.name])
        for definition in definitions:
            settings = definition.settings()
            app = definition.create_app(settings, self.databases[definition.name])
            self._serve(app, settings.port, definition.name)
        web_url = None
        if self.web:
            from coordo.registry import web_app
            from web.settings import web_port
            from web.settings import web_url as find_web_url

            self._serve(web_app(show_demo_accounts=self.demo), web_port(), "web")
            web_url = find_web_url()
        gateway_settings = Settings.from_env("gateway")
        self.gateway = create_gateway(gateway_settings, web_url=web_url)
        self._serve(self.gateway, gateway_settings.port, "gateway")
        self._wait_started()
        if not self.gateway.wait_ready(30):
            raise RuntimeError("the gateway's revocation consumer or access log did not start")

    def _serve(self, app: Any, port: int, name: str) -> None:
        server = _server(app, port, self.host)
        thread = threading.Thread(target=server.run, name=f"web-{name}", daemon=True)
        thread.start()
        self.servers.append(server)
        self.threads.append(thread)

    def _wait_started(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for server in self.servers:
            while not server.started:
                if time.monotonic() > deadline:
                    raise RuntimeError("a web server did not start (port already in use?)")
                time.sleep(0.05)

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for thread in self.threads:
            thread.join(10)
        for worker in self.workers:
            worker.stop()
        for db in self.databases.values():
            db.dispose()


def run(demo: bool = True, host: str = "127.0.0.1") -> None:
    gateway_port = Settings.from_env("gateway").port
    suite = EmbeddedSuite(host=host, demo=demo, web=True)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    suite.start()
    freeze_startup_heap()
    log.info("Coordo is running (embedded mode): http://127.0.0.1:%d — Ctrl-C to stop", gateway_port)
    print(
        f"Coordo is running (embedded mode): http://127.0.0.1:{gateway_port}  —  Ctrl-C to stop", flush=True
    )
    stop.wait()
    print("Stopping Coordo…", flush=True)
    suite.stop()
    print("Stopped.", flush=True)


__all__ = ["EmbeddedSuite", "run", "bus"]

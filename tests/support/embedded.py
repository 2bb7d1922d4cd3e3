"""Handles on the parts of a running embedded suite (`coordo.embedded.EmbeddedSuite`): a
service's composition-root extras (e.g. cercle's clock), its web server, and more gateway
instances on the same in-memory bus."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn


def service_server(suite: Any, name: str) -> uvicorn.Server:
    """The uvicorn server of service `name` (found by its port, as the suite's settings say)."""
    port = int(os.environ.get(f"COORDO_{name.upper()}_PORT") or suite.env[f"COORDO_{name.upper()}_PORT"])
    for server in suite.handle.servers:
        if server.config.port == port:
            return server
    raise LookupError(f"no server for {name} on port {port}")


def service_extras(suite: Any, name: str) -> dict[str, Any]:
    """What the service's composition root put in `ServiceContext.extras` for its web app."""
    from chassis.web import context_of

    return dict(context_of(service_server(suite, name).config.app).extras)


def stop_service(suite: Any, name: str, timeout: float = 10.0) -> None:
    server = service_server(suite, name)
    server.should_exit = True
    deadline = time.monotonic() + timeout
    port = server.config.port
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{name} still answers on port {port}")


def _free_port() -> int:
    # Not port 0: the kernel would pick an ephemeral port a client connection may take next.
    from tests.support.suite import free_port_block

    return free_port_block(1)


@contextmanager
def another_gateway(suite: Any, var_dir: Path) -> Iterator[str]:
    """A second gateway instance (own port, own access log) in front of the same services and
    bus as the suite's gateway; yields its base URL."""
    from chassis.settings import Settings
    from gateway.app import create_gateway

    port = _free_port()
    settings = replace(
        Settings.from_env("gateway"), port=port, database_url=f"sqlite:///{var_dir / 'gateway-2.db'}"
    )
    app = create_gateway(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="web-gateway-2", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the second gateway did not start")
            time.sleep(0.05)
        if not app.wait_ready(30):
            raise RuntimeError("the second gateway's revocation consumer or access log did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

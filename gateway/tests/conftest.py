"""Real upstream HTTP servers for the gateway's tests: a fake `cercle` whose decisions the
test controls, and echo upstreams (`dossier`, `identity`) that record what they received.
Each runs with uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from chassis import tracing
from gateway.app import GatewayApp, create_gateway
from tests.support.issuer import TestIssuer

ALL = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ServerThread:
    """A uvicorn server on 127.0.0.1:<free port>, in a daemon thread."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, **{"log_level": "warning", "lifespan": "off", **config})
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("test upstream did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class EchoUpstream:
    """Records every request (headers included) and echoes a small JSON answer."""

    name: str
    requests: list[Received] = field(default_factory=list)
    ready_status: int = 200
    server: ServerThread | None = None

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            body = await request.body()
            size = request.query_params.get("size")
            if size is not None:
                # A large answer, chunked (no length) when asked.
                data = b"x" * int(size)
                if request.query_params.get("chunked"):

                    async def pieces() -> AsyncIterator[bytes]:
                        for i in range(0, len(data), 100_000):
                            yield data[i : i + 100_000]

                    return StreamingResponse(pieces(), media_type="application/octet-stream")
                return Response(data, media_type="application/octet-stream")
            self.requests.append(
                Received(
                    request.method,
                    request.url.path,
                    request.url.query,
                    {k.lower(): v for k, v in request.headers.items()},
                    body,
                )
            )
            return JSONResponse(
                {"service": self.name, "path": request.url.path, "length": len(body)},
                headers={"X-Upstream": self.name, "Connection": "keep-alive"},
            )

        async def ready(_request: Request) -> Response:
            return JSONResponse(
                {"status": "ready" if self.ready_status == 200 else "not ready"}, self.ready_status
            )

        return Starlette(
            routes=[Route("/health/ready", ready), Route("/{rest:path}", echo, methods=ALL)],
        )

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


@dataclass
class FakeCercle:
    """The decision endpoint; the test sets `allowed[patient_id]` and may break it."""

    allowed: dict[str, str] = field(default_factory=dict)  # patient_id -> basis
    # (grantor_id, patient_id) -> basis: the answer when the caller acts for that grantor.
    delegated: dict[tuple[str, str], str] = field(default_factory=dict)
    expires_at: dict[str, str] = field(default_factory=dict)  # patient_id -> end of a break-glass grant
    max_age_s: int = 30
    # Patients cercle has not learnt of yet (their PatientCreated on its way): patient_id ->
    # how many more questions about it are answered "unknown" before it arrives, granted.
    arriving: dict[str, int] = field(default_factory=dict)
    mode: str = "ok"  # ok | error | bad-json | slow
    calls: list[dict[str, Any]] = field(default_factory=list)
    server: ServerThread | None = None

    def grant(self, patient_id: str, basis: str = "member") -> None:
        self.allowed[patient_id] = basis

    def revoke(self, patient_id: str) -> None:
        self.allowed.pop(patient_id, None)

    def arrives_after(self, patient_id: str, questions: int, basis: str = "person") -> None:
        """Unknown for the next `questions` questions about it, then known and granted
        (a very large number: never known)."""
        self.arriving[patient_id] = questions
        self.allowed[patient_id] = basis

    def app(self) -> Starlette:
        async def decision(request: Request) -> Response:
            patient_id = request.query_params.get("patient_id", "")
            self.calls.append(
                {"patient_id": patient_id, "headers": {k.lower(): v for k, v in request.headers.items()}}
            )
            try:
                uuid.UUID(patient_id)
            except ValueError:
                return JSONResponse({"detail": "patient_id must be a uuid"}, 400)  # as cercle's contract does
            if self.mode == "error":
                return JSONResponse({"detail": "boom"}, 500)
            if self.mode == "bad-json":
                return Response(b"{not json", media_type="application/json")
            if self.mode == "slow":
                await asyncio.sleep(3)
            if self.arriving.get(patient_id, 0) > 0:
                self.arriving[patient_id] -= 1
                return JSONResponse(
                    {
                        "allowed": False,
                        "basis": None,
                        "max_age_s": 0,
                        "patient_id": patient_id,
                        "patient_known": False,
                        "expires_at": None,
                    }
                )
            act_for = request.headers.get("x-act-for")
            if act_for:
                basis = self.delegated.get((act_for, patient_id))
            else:
                basis = self.allowed.get(patient_id)
            return JSONResponse(
                {
                    "allowed": basis is not None,
                    "basis": basis,
                    "max_age_s": self.max_age_s,
                    "patient_id": patient_id,
                    "expires_at": self.expires_at.get(patient_id) if basis else None,
                }
            )

        async def ready(_request: Request) -> Response:
            return JSONResponse({"status": "ready"})

        return Starlette(
            routes=[Route("/api/internal/decision", decision), Route("/health/ready", ready)],
        )

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url


@pytest.fixture
def server_thread() -> Any:
    """`server_thread(app, **uvicorn_config)` -> a started ServerThread."""
    return lambda app, **config: ServerThread(app, **config).start()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def cercle(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCercle]:
    fake = FakeCercle()
    fake.server = ServerThread(fake.app()).start()
    monkeypatch.setenv("COORDO_CERCLE_URL", fake.url)
    yield fake
    fake.server.stop()


@pytest.fixture
def dossier(monkeypatch: pytest.MonkeyPatch) -> Iterator[EchoUpstream]:
    fake = EchoUpstream("dossier")
    fake.server = ServerThread(fake.app()).start()
    monkeypatch.setenv("COORDO_DOSSIER_URL", fake.url)
    yield fake
    fake.server.stop()


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[EchoUpstream]:
    fake = EchoUpstream("identity")
    fake.server = ServerThread(fake.app()).start()
    monkeypatch.setenv("COORDO_IDENTITY_URL", fake.url)
    yield fake
    fake.server.stop()


@pytest.fixture
def gateway_env(
    issuer: TestIssuer,
    var_dir: Path,
    cercle: FakeCercle,
    dossier: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Everything a gateway needs, in the environment (twelve-factor, as in production)."""
    monkeypatch.setenv("COORDO_OIDC_ISSUER", issuer.issuer)
    monkeypatch.setenv("COORDO_VAR_DIR", str(var_dir))
    monkeypatch.setenv("COORDO_BROKER_URL", "memory://")
    monkeypatch.delenv("COORDO_GATEWAY_DATABASE_URL", raising=False)


@dataclass
class RunningGateway:
    app: GatewayApp
    client: httpx.AsyncClient


@asynccontextmanager
async def running_gateway(contracts: Path | None = None) -> AsyncIterator[RunningGateway]:
    """A gateway with its background parts started, driven in-process through ASGI."""
    app = create_gateway(contracts=contracts)
    async with app:
        assert await asyncio.to_thread(app.wait_ready, 10), "gateway background parts not ready"
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4567))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield RunningGateway(app, client)


@pytest.fixture
async def gateway(gateway_env: None) -> AsyncIterator[RunningGateway]:
    async with running_gateway() as running:
        yield running


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span finished by any Coordo tracer provider in this process."""
    exporter = InMemorySpanExporter()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def make_gateway(gateway_env: None) -> Any:
    """`async with make_gateway(contracts=...) as gw:` for tests that need a special gateway."""
    return running_gateway

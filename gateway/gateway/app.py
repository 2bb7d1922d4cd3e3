"""The gateway: one async ASGI app in front of every service.

For `/api/...` it matches the route (table built from the contracts), verifies the
bearer token, resolves who acts (as a structure: `X-Act-As`; for a delegation's grantor:
`X-Act-For`), asks `cercle` for the habilitation decision of patient-scoped operations
(cached briefly, evicted on revocation, fail closed), records the access, and forwards
the request with the caller's token, a request id and `traceparent`. `X-Act-For` reaches
a service only once cercle has confirmed the delegation, so services may trust it. The
gateway answers its own operations (`gateway/openapi.yaml`: the access journal) itself. Nothing connects at import time or in `create_gateway`: background
parts start with the ASGI lifespan (or `GatewayApp.start()` from a launcher).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from chassis import tracing
from chassis.auth import Actor, InvalidToken, IssuerUnavailable, TokenVerifier
from chassis.problems import PROBLEM_JSON
from chassis.settings import Settings, contracts_dir, env, service_url
from gateway import docs, journal
from gateway.audit import AccessRecord, AuditWriter, clip
from gateway.decisions import (
    FIRST_RETRY_S,
    MAX_RETRY_S,
    MAX_UNKNOWN_PATIENT_WAITS,
    UNKNOWN_PATIENT_WAIT_S,
    CacheKey,
    Decision,
    DecisionCache,
    DecisionUnavailable,
    ask_cercle,
)
from gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from gateway.revocations import RevocationConsumer
from gateway.routes import Match, RouteTable
from gateway.routes import Route as ApiRoute
from gateway.upstream import UpstreamError, UpstreamPool, UpstreamTimeout

__all__ = ["GatewayApp", "create_app", "create_gateway"]

log = logging.getLogger(__name__)

# RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones still seen in the wild.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Replaced by the gateway's own values on the way up.
_REPLACED_UP = frozenset(
    {
        b"host",
        b"content-length",
        b"x-request-id",
        b"traceparent",
        b"tracestate",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        # The whole body is sent at once: no 100-continue dance upstream.
        b"expect",
    }
)
# The gateway's server writes its own `date` and `server`; the length is recomputed.
_REPLACED_DOWN = frozenset({b"content-length", b"x-request-id", b"date", b"server"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# Bodies up to this size are read whole (cheaper); larger ones are streamed both ways.
BUFFER_LIMIT = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# A person id, as the directory writes them (uuid): anything else is not a grantor.
_PERSON_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")
#: The gateway's own operations (the access journal), served without an upstream.
OWN_CONTRACT = Path(__file__).parent / "openapi.yaml"
SELF = "gateway"
# Problem types of the gateway's own refusals: a client (and the authorization matrix test)
# tells them from a service's answer.
NOT_HABILITATED = "urn:coordo:problem:not-habilitated"
CANNOT_ACT_AS = "urn:coordo:problem:cannot-act-as"
HABILITATION_UNAVAILABLE = "urn:coordo:problem:habilitation-unavailable"
BREAK_GLASS_LIMITED = "urn:coordo:problem:break-glass-limited"
HEALTH_TIMEOUT_S = 1.0
UPSTREAM_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def _problem(
    status: int,
    title: str,
    detail: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    type_: str = "about:blank",
    extra: Mapping[str, Any] | None = None,
) -> Response:
    fields = {"type": type_, "title": title, "status": status, "detail": detail, **(extra or {})}
    body = json.dumps(fields).encode()
    response = Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)
    if request_id is not None:
        response.raw_headers.append((b"x-request-id", request_id.encode("latin-1")))
    return response


class _PassthroughResponse(Response):
    """The upstream's status and raw headers (duplicates kept), body bytes as received."""

    def __init__(
        self, status_code: int, raw_headers: list[tuple[bytes, bytes]], body: bytes, head: bool
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.background = None
        if not head and not (status_code < 200 or status_code in (204, 304)):
            raw_headers.append((b"content-length", str(len(body)).encode("latin-1")))
        self.raw_headers = raw_headers


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unsafe_path(path: str, raw_path: bytes) -> bool:
    # The gateway matches the decoded path but forwards the raw one: dot segments or an
    # encoded slash could make the upstream see another path than the one checked.
    if "\\" in path or "\x00" in path:
        return True
    lowered = raw_path.lower()
    if b"%2f" in lowered or b"%5c" in lowered:
        return True
    return any(segment in (".", "..") for segment in path.split("/"))


def _upstream_url(service: str) -> str | None:
    try:
        return service_url(service)
    except KeyError:
        # Not one of the default services: only COORDO_<SERVICE>_URL says where it is.
        url = env(f"COORDO_{service.upper()}_URL")
        return url.rstrip("/") if url else None


@dataclass
class _Forwarded:
    response: Response
    upstream_status: int | None


class GatewayApp:
    """The gateway as an ASGI callable, with its background parts.

    Background parts (the access-log writer thread and the revocation consumer thread)
    start and stop with the ASGI lifespan. A launcher that drives the app without a
    lifespan calls `start()` / `stop()` itself (or `async with app:`).
    """

    def __init__(
        self, settings: Settings, *, contracts: Path | None = None, web_url: str | None = None
    ) -> None:
        self.settings = settings
        self.routes = RouteTable.from_contracts_dir(contracts or contracts_dir(), extra=[OWN_CONTRACT])
        self.verifier = TokenVerifier(settings.oidc_issuer, settings.oidc_audience)
        self.metrics = GatewayMetrics()
        self.cache = DecisionCache()
        self.unknown_patient_wait_s = UNKNOWN_PATIENT_WAIT_S
        self.max_unknown_patient_waits = MAX_UNKNOWN_PATIENT_WAITS
        self._unknown_patient_waits = 0  # on the event loop only: no lock
        self.audit = AuditWriter(settings.database_url, on_drop=self.metrics.audit_dropped.inc)
        self.revocations = RevocationConsumer(
            settings.broker_url, self.cache, on_event=self.metrics.revocations.inc
        )
        #: Set once the revocation consumer is consuming (cleared while disconnected).
        self.ready = self.revocations.ready
        self.tracer_provider = tracing.tracer_provider("gateway")
        # Resolved once: no per-request discovery.
        upstream_names = ({*self.routes.services} - {SELF}) | {"cercle"}
        self.health_services = sorted(upstream_names)
        self.upstreams: dict[str, str | None] = {
            name: _upstream_url(name) for name in upstream_names | {"identity"}
        }
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._pools: dict[str, UpstreamPool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._clients_loop: asyncio.AbstractEventLoop | None = None
        self._contracts_yaml: dict[str, bytes] = {}
        self._docs_page = docs.swagger_page([c.service for c in self.routes.contracts])
        # The web front end (browser pages, its login callback): forwarded once its address is known.
        self.web_url = (web_url or env("COORDO_WEB_URL") or "").rstrip("/") or None
        if self.web_url:
            self.upstreams["web"] = self.web_url

        self.starlette = Starlette(
            routes=[
                Route("/api/{rest:path}", self._api, methods=ALL_METHODS),
                Route("/oidc/{rest:path}", self._oidc, methods=ALL_METHODS),
                Route("/auth/callback", self._auth_callback, methods=ALL_METHODS),
                Route("/health/live", self._live, methods=["GET"]),
                Route("/health/ready", self._ready, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/docs", self._docs, methods=["GET"]),
                Mount("/docs/static", app=StaticFiles(directory=docs.swagger_ui_dir()), name="swagger-ui"),
                Route("/contracts/{name}.yaml", self._contract, methods=["GET"]),
                Route("/{rest:path}", self._web, methods=ALL_METHODS),
            ],
            exception_handlers={HTTPException: self._http_exception},
            lifespan=self._lifespan,
        )
        self.asgi = OpenTelemetryMiddleware(
            self._dispatch,
            tracer_provider=self.tracer_provider,
            excluded_urls="health/live,health/ready,metrics",
            # No internal spans per ASGI send/receive: they cost more than they tell.
            exclude_spans=["receive", "send"],
        )

    # -- ASGI ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.asgi(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The hot path skips Starlette's router and middleware stack (measured: a third of
        # the gateway's own cost); everything else goes through Starlette.
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            request = Request(scope, receive)
            try:
                response = await self._api(request)
            except Exception:
                log.exception("gateway error", extra={"path": scope["path"]})
                response = self._count("none", _problem(500, "Internal error", "the gateway failed"))
            await response(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        self.start()
        # Build the pools now (certificate loading and all), not on the first request.
        for service in self.upstreams:
            self.client(service)
            self.pool(service)

    async def shutdown(self) -> None:
        await self.aclose_clients()
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> GatewayApp:
        await self.startup()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()

    # -- background parts ------------------------------------------------------------
    def start(self) -> None:
        """Start the access-log writer and the revocation consumer threads (idempotent)."""
        self.audit.start()
        self.revocations.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the consumer, flush the access log, stop its writer. Blocking."""
        self.revocations.stop(timeout)
        self.audit.stop(timeout)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self.ready.wait(timeout) and self.audit.ready.wait(timeout)

    # -- upstream clients --------------------------------------------------------------
    def _check_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._clients_loop is not loop:
            # Sockets belong to one event loop (a new server in the same process gets new ones).
            self._clients = {}
            self._pools = {}
            self._clients_loop = loop

    def client(self, service: str) -> httpx.AsyncClient | None:
        """A pooled keep-alive httpx client for `service` (health probes, the OIDC paths)."""
        self._check_loop()
        client = self._clients.get(service)
        if client is None:
            base = self.upstreams.get(service)
            if base is None:
                return None
            client = httpx.AsyncClient(
                base_url=base,
                timeout=UPSTREAM_TIMEOUT,
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=1.5),
                trust_env=False,
                follow_redirects=False,
                verify=self._ssl_context(),
            )
            self._clients[service] = client
        return client

    def _ssl_context(self) -> ssl.SSLContext:
        # One context for every client: loading the CA bundle costs ~50 ms each time.
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def pool(self, service: str) -> UpstreamPool | None:
        """The keep-alive connection pool that forwards requests to `service`."""
        self._check_loop()
        pool = self._pools.get(service)
        if pool is None:
            base = self.upstreams.get(service)
            if base is None:
                return None
            pool = self._pools[service] = UpstreamPool(base, buffer_limit=BUFFER_LIMIT)
        return pool

    async def aclose_clients(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()
        for client in clients:
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing after the loop changed may fail
                pass

    # -- /api ------------------------------------------------------------------------
    async def _api(self, request: Request) -> Response:
        scope = request.scope
        method: str = scope["method"]
        request_id = self._request_id(request)
        path: str = scope["path"]
        if _unsafe_path(path, scope.get("raw_path") or path.encode()):
            return self._count("none", _problem(400, "Bad request", "invalid path", request_id))
        match = self.routes.match(method, path)
        route = match.route
        if route is None:
            if match.allowed_methods:
                response = _problem(
                    405,
                    "Method not allowed",
                    f"{method} is not allowed on this path",
                    request_id,
                    headers={"Allow": ", ".join(match.allowed_methods)},
                )
            else:
                response = _problem(404, "Not found", f"no operation {method} {path}", request_id)
            return self._count("none", response)
        span = trace.get_current_span()
        if span.is_recording():
            span.update_name(f"{method} {route.template}")
            span.set_attribute("http.route", route.template)
            span.set_attribute("coordo.service", route.service)
        response = await self._api_routed(request, route, match, request_id)
        return self._count(route.service, response)

    async def _api_routed(self, request: Request, route: ApiRoute, match: Match, request_id: str) -> Response:
        headers = request.headers
        token = _bearer(headers.get("authorization"))
        if token is None:
            return _problem(
                401, "Unauthorized", "bearer token required", request_id, {"WWW-Authenticate": "Bearer"}
            )
        try:
            claims = await self.verifier.verify_async(token)
        except IssuerUnavailable as exc:
            return _problem(
                503, "Service unavailable", f"cannot check the token now: {exc.reason}", request_id
            )
        except InvalidToken as exc:
            return _problem(
                401,
                "Unauthorized",
                f"invalid token: {exc.reason}",
                request_id,
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        act_as = headers.get("x-act-as") or None
        act_for = headers.get("x-act-for") or None
        patient_id = match.patient_id
        try:
            actor = Actor.from_claims(claims, act_as)
        except ValueError:
            return _problem(
                401, "Unauthorized", "invalid token: no subject", request_id, {"WWW-Authenticate": "Bearer"}
            )
        except PermissionError as exc:
            response = _problem(403, "Forbidden", str(exc), request_id, type_=CANNOT_ACT_AS)
            if patient_id is not None:
                self._audit(
                    str(claims.get("sub") or ""), act_as, act_for, patient_id, route, None, False, 403, None,
                    request_id,
                )  # fmt: skip
            return response
        if act_for is not None:
            if not _PERSON_ID.match(act_for):
                return _problem(
                    400,
                    "Bad request",
                    "X-Act-For must be the id of the person who delegated to you",
                    request_id,
                    extra={"field": "X-Act-For"},
                )
            if act_for == actor.person_id:
                act_for = None  # acting for oneself is acting

        if patient_id is None:
            # Only cercle can confirm a delegation, and it is asked about patients only: a
            # claim of acting for someone never reaches a service unconfirmed.
            return (await self._forward(route.service, request, request_id, act_for=None)).response

        key: CacheKey = (actor.person_id, actor.structure_id, act_for, patient_id)
        decision = self.cache.get(key)
        if decision is not None:
            self.metrics.decision_hits.inc()
        else:
            self.metrics.decision_misses.inc()
            try:
                decision = await self._decide(request, patient_id, key, request_id)
            except DecisionUnavailable as exc:
                log.warning("habilitation decision unavailable: %s", exc, extra={"request_id": request_id})
                self._audit(
                    actor.person_id, actor.structure_id, act_for, patient_id, route, None, False, 503, None,
                    request_id,
                )  # fmt: skip
                return _problem(
                    503,
                    "Habilitation service unavailable",
                    "the habilitation service (cercle) cannot answer now, so access to patient files is "
                    "refused: try again in a moment",
                    request_id,
                    {"Retry-After": "1"},
                    type_=HABILITATION_UNAVAILABLE,
                )
        if not decision.allowed:
            self._audit(
                actor.person_id, actor.structure_id, act_for, patient_id, route, decision.basis, False, 403,
                None, request_id,
            )  # fmt: skip
            detail = (
                "neither you nor the person you act for is habilitated on this patient"
                if act_for is not None
                else "not habilitated on this patient"
            )
            return _problem(403, "Forbidden", detail, request_id, type_=NOT_HABILITATED)
        if decision.basis == "break_glass" and route.method == "DELETE":
            # CER-8: a break-the-glass access reads and helps; it never deletes (enforced here
            # once for every service; cercle also refuses circle changes on that basis).
            self._audit(
                actor.person_id, actor.structure_id, None, patient_id, route, decision.basis, False, 403, None,
                request_id,
            )  # fmt: skip
            return _problem(
                403,
                "Forbidden",
                "a break-the-glass access cannot delete anything",
                request_id,
                type_=BREAK_GLASS_LIMITED,
            )
        if not self.audit.has_room():
            # Every access to a patient file is recorded: when it cannot be, it is not served.
            return _problem(503, "Service unavailable", "the access log is saturated: try again", request_id)
        # Forwarded only when the access rests on the delegation: then cercle has confirmed it.
        confirmed_for = act_for if decision.basis == "delegation" else None
        if route.service == SELF:
            forwarded = await self._serve_own(route, request, patient_id, request_id)
        else:
            forwarded = await self._forward(route.service, request, request_id, act_for=confirmed_for)
        self._audit(
            actor.person_id, actor.structure_id, confirmed_for, patient_id, route, decision.basis, True,
            forwarded.response.status_code, forwarded.upstream_status, request_id,
        )  # fmt: skip
        if decision.basis == "break_glass" and decision.expires_at is not None:
            # The web front end shows the break-the-glass banner until then (CER-8).
            forwarded.response.raw_headers.append(
                (b"x-coordo-break-glass-until", decision.expires_at.isoformat().encode("latin-1"))
            )
        return forwarded.response

    async def _decide(self, request: Request, patient_id: str, key: CacheKey, request_id: str) -> Decision:
        pool = self.pool("cercle")
        if pool is None:
            raise DecisionUnavailable("no cercle URL configured")
        headers = {"authorization": request.headers["authorization"], "x-request-id": request_id}
        _person, act_as, act_for, _patient = key
        if act_as:
            headers["x-act-as"] = act_as
        if act_for:
            headers["x-act-for"] = act_for
        propagate.inject(headers)
        generation = self.cache.generation(patient_id)
        decision = await ask_cercle(pool, patient_id, headers)
        if not decision.patient_known:
            if self._unknown_patient_waits >= self.max_unknown_patient_waits:
                # Ids that exist nowhere, asked in a flood, must not each cost cercle a
                # dozen questions: past this many waits at once, refuse at once.
                self.metrics.unknown_patient_waits.labels("not_waited").inc()
            else:
                self._unknown_patient_waits += 1
                try:
                    decision, generation = await self._wait_for_patient(pool, patient_id, headers, decision)
                finally:
                    self._unknown_patient_waits -= 1
                self.metrics.unknown_patient_waits.labels(
                    "known" if decision.patient_known else "still_unknown"
                ).inc()
        self.metrics.decisions.labels("allowed" if decision.allowed else "refused").inc()
        self.cache.put(key, decision, generation)
        return decision

    async def _wait_for_patient(
        self, pool: UpstreamPool, patient_id: str, headers: dict[str, str], decision: Decision
    ) -> tuple[Decision, tuple[int, int]]:
        """Read your own writes: the creator opens a file that cercle learns of a few
        milliseconds later (PatientCreated). Ask again, with a doubling pause, until cercle
        knows the patient or the wait runs out; then a refusal it is."""
        deadline = time.monotonic() + self.unknown_patient_wait_s
        delay = FIRST_RETRY_S
        generation = self.cache.generation(patient_id)
        while not decision.patient_known and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(2 * delay, MAX_RETRY_S)
            generation = self.cache.generation(patient_id)
            decision = await ask_cercle(pool, patient_id, headers)
        return decision, generation

    def _audit(
        self,
        person_id: str,
        structure_id: str | None,
        acting_for: str | None,
        patient_id: str,
        route: ApiRoute,
        basis: str | None,
        allowed: bool,
        status: int,
        upstream_status: int | None,
        request_id: str,
    ) -> None:
        self.audit.record(
            AccessRecord(
                at=datetime.now(UTC),
                person_id=clip(person_id, 64) or "",
                structure_id=clip(structure_id, 64),
                acting_for=clip(acting_for, 64),
                patient_id=clip(patient_id, 64) or "",
                service=route.service[:32],
                method=route.method,
                path_template=route.template[:300],
                basis=clip(basis, 64),
                allowed=allowed,
                status=status,
                upstream_status=upstream_status,
                request_id=request_id,
            )
        )

    # -- the gateway's own operations ------------------------------------------------------
    async def _serve_own(
        self, route: ApiRoute, request: Request, patient_id: str, request_id: str
    ) -> _Forwarded:
        if route.operation_id != "gateway.journal.access_journal":
            return _Forwarded(_problem(404, "Not found", "no such gateway operation", request_id), None)
        try:
            page = journal.page_request(request.query_params)
        except journal.JournalQueryError as exc:
            return _Forwarded(
                _problem(400, "Bad request", exc.detail, request_id, extra={"field": exc.field}), None
            )
        try:
            body = await asyncio.to_thread(journal.read_page, self.audit.engine, patient_id, page)
        except Exception:  # noqa: BLE001 - its database is down: the caller gets a clear 503
            log.exception("access journal unavailable", extra={"request_id": request_id})
            return _Forwarded(
                _problem(503, "Service unavailable", "the access journal cannot be read now", request_id),
                None,
            )
        response = JSONResponse(body, headers={"x-request-id": request_id, "cache-control": "no-store"})
        return _Forwarded(response, None)

    # -- forwarding ------------------------------------------------------------------
    async def _forward(
        self, service: str, request: Request, request_id: str, *, act_for: str | None = None
    ) -> _Forwarded:
        pool = self.pool(service)
        if pool is None:
            return _Forwarded(
                _problem(502, "Bad gateway", f"service {service} is not configured", request_id), None
            )
        scope = request.scope
        method: str = scope["method"]
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers: list[tuple[bytes, bytes]] = []
        content_length: bytes | None = None
        host: bytes | None = None
        connection_listed: set[bytes] = set()
        for name, value in raw_headers:
            if name == b"connection":
                connection_listed.update(t.strip().lower() for t in value.split(b","))
        for name, value in raw_headers:
            if name == b"content-length":
                content_length = value
            elif name == b"host":
                host = value
            if (
                name in HOP_BY_HOP
                or name in _REPLACED_UP
                or name in connection_listed
                or name == b"x-act-for"
            ):
                continue
            headers.append((name, value))
        if act_for is not None:
            headers.append((b"x-act-for", act_for.encode("latin-1")))
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        client_addr = scope.get("client")
        if client_addr:
            headers.append((b"x-forwarded-for", str(client_addr[0]).encode("latin-1")))
        headers.append((b"x-forwarded-proto", str(scope.get("scheme", "http")).encode("latin-1")))
        if host is not None:
            headers.append((b"x-forwarded-host", host))
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items())

        content: bytes | AsyncIterator[bytes]
        if content_length is not None and content_length.isdigit() and int(content_length) > BUFFER_LIMIT:
            # Large upload: stream it through, announcing the same length.
            content = request.stream()
            headers.append((b"content-length", content_length))
        else:
            content = await request.body()

        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        query: bytes = scope.get("query_string") or b""
        target = raw_path + b"?" + query if query else raw_path
        started = time.perf_counter()
        try:
            upstream = await pool.request(method, target, headers, content)
        except UpstreamTimeout:
            return _Forwarded(
                _problem(504, "Gateway timeout", f"service {service} did not answer in time", request_id),
                None,
            )
        except (UpstreamError, OSError) as exc:
            log.warning("upstream %s unavailable: %s", service, exc, extra={"request_id": request_id})
            return _Forwarded(
                _problem(502, "Bad gateway", f"service {service} is unavailable", request_id), None
            )
        self.metrics.upstream_latency.labels(service).observe(time.perf_counter() - started)

        response_headers = [
            (name, value)
            for name, value in upstream.headers
            if (lowered := name.lower()) not in HOP_BY_HOP and lowered not in _REPLACED_DOWN
        ]
        response_headers.append((b"x-request-id", request_id.encode("latin-1")))
        head = method == "HEAD"
        if upstream.body is not None:
            if head:
                length = next((v for k, v in upstream.headers if k.lower() == b"content-length"), None)
                if length is not None:
                    response_headers.append((b"content-length", length))
            return _Forwarded(
                _PassthroughResponse(upstream.status, response_headers, upstream.body, head), upstream.status
            )
        streaming = StreamingResponse(
            upstream.stream(), status_code=upstream.status, background=BackgroundTask(upstream.aclose)
        )
        streaming.raw_headers = response_headers
        return _Forwarded(streaming, upstream.status)

    def _request_id(self, request: Request) -> str:
        given = request.headers.get("x-request-id")
        if given and _REQUEST_ID.match(given):
            return given
        return str(uuid.uuid4())

    def _count(self, service: str, response: Response) -> Response:
        self.metrics.requests.labels(service, str(response.status_code)).inc()
        return response

    # -- pass-through and reserved paths ---------------------------------------------
    async def _oidc(self, request: Request) -> Response:
        """The built-in OIDC provider answers in `identity`; no token here by definition."""
        request_id = self._request_id(request)
        scope = request.scope
        if _unsafe_path(scope["path"], scope.get("raw_path") or scope["path"].encode()):
            return _problem(400, "Bad request", "invalid path", request_id)
        forwarded = await self._forward("identity", request, request_id)
        return self._count("identity", forwarded.response)

    async def _auth_callback(self, request: Request) -> Response:
        # The web front end's login callback (the OIDC client's registered redirect URI).
        return await self._web(request)

    async def _web(self, request: Request) -> Response:
        """Every other path is a browser page of the web front end, when one is configured."""
        request_id = self._request_id(request)
        if self.web_url is None:
            return _problem(404, "Not found", "not available yet", request_id)
        scope = request.scope
        if _unsafe_path(scope["path"], scope.get("raw_path") or scope["path"].encode()):
            return _problem(400, "Bad request", "invalid path", request_id)
        forwarded = await self._forward("web", request, request_id)
        return self._count("web", forwarded.response)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Not found", 405: "Method not allowed"}
        return _problem(
            exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail), headers=exc.headers
        )

    # -- health, metrics -------------------------------------------------------------
    async def _live(self, _request: Request) -> Response:
        return JSONResponse({"status": "live", "service": "gateway"})

    async def _probe(self, service: str) -> str:
        client = self.client(service)
        if client is None:
            return "not configured"
        try:
            response = await client.get("/health/ready", timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError:
            return "unreachable"
        return "ready" if response.status_code == 200 else "not ready"

    async def _ready(self, _request: Request) -> Response:
        names = self.health_services
        results = await asyncio.gather(*(self._probe(name) for name in names))
        services = dict(zip(names, results, strict=True))
        checks = {
            "revocations": "ok" if self.ready.is_set() else "not consuming",
            "access_log": "ok" if self.audit.ready.is_set() else "not ready",
        }
        ok = all(state == "ready" for state in services.values()) and all(c == "ok" for c in checks.values())
        body = {"status": "ready" if ok else "not ready", "services": services, "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _metrics(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- API docs --------------------------------------------------------------------
    async def _docs(self, _request: Request) -> Response:
        return HTMLResponse(self._docs_page)

    async def _contract(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = self._contracts_yaml.get(name)
        if body is None:
            contract = next((c for c in self.routes.contracts if c.service == name), None)
            if contract is None:
                return _problem(404, "Not found", f"no contract for {name!r}")
            body = self._contracts_yaml[name] = docs.public_contract(contract)
        return Response(body, media_type="application/yaml")


def create_gateway(
    settings: Settings | None = None, *, contracts: Path | None = None, web_url: str | None = None
) -> GatewayApp:
    """The gateway app; nothing connects until its lifespan (or `start()`) runs."""
    return GatewayApp(settings or Settings.from_env("gateway"), contracts=contracts, web_url=web_url)


def create_app() -> GatewayApp:
    """Factory for gunicorn: `gunicorn -k uvicorn_worker.UvicornWorker 'gateway.app:create_app()'`."""
    from chassis.logs import setup_logging
    from chassis.process import freeze_startup_heap

    setup_logging()
    app = create_gateway()
    freeze_startup_heap()
    return app

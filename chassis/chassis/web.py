"""The web side of a service: a connexion 3 app wired to its contract, with problem
errors, token checks, tracing, health and metrics — the same for every service.

Services run on connexion's AsyncApp: its middleware stack calls a handler in a thread
directly. A service that must mount Flask routes of its own (identity: Authlib's OIDC
provider is a Flask integration) asks for the FlaskApp, which adds Flask and a WSGI
bridge to every request — measured in tests/bench/README.md (gateway_vs_direct): a
trivial operation gets 2.2x the requests/s on the AsyncApp on this machine.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import connexion
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.middleware import MiddlewarePosition
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chassis import auth, events, tracing
from chassis.db import Database
from chassis.logs import setup_logging
from chassis.problems import PROBLEM_JSON, Problem
from chassis.settings import Settings, contracts_dir
from chassis.validation import VALIDATORS


@dataclass
class ServiceContext:
    """The composition root's objects a handler may need, for the request being served."""

    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)
    ready_checks: list[Callable[[], None]] = field(default_factory=list)


# Set for each request by the app's outermost middleware; handlers run in threads that
# start from a copy of the request's context. (Embedded mode serves several services in
# one process, so no module global would do.)
_CURRENT: contextvars.ContextVar[ServiceContext] = contextvars.ContextVar("coordo_service_context")
_CONTEXT_OF_APP: weakref.WeakKeyDictionary[Any, ServiceContext] = weakref.WeakKeyDictionary()


def service_context() -> ServiceContext:
    return _CURRENT.get()


def context_of(app: Any) -> ServiceContext:
    """The ServiceContext of an app built by `create_service_app` (tests, the launcher)."""
    return _CONTEXT_OF_APP[app]


def current_actor() -> auth.Actor:
    """Who acts: the verified token's subject, possibly acting for one of its structures."""
    from connexion.context import context, request

    claims = context.get("token_info") or {}
    try:
        return auth.Actor.from_claims(
            claims, request.headers.get("x-act-as") or None, request.headers.get("x-act-for") or None
        )
    except PermissionError as exc:
        raise Problem(403, "Forbidden", str(exc)) from exc


def problem_response(problem: Problem) -> ConnexionResponse:
    import json

    return ConnexionResponse(
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(problem.to_dict()),
    )


def _render_problem(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc)


def _render_undecodable(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    # connexion decodes a JSON body as UTF-8 before parsing it and lets the error escape
    # as a 500: bytes that are not UTF-8 are bad input. Raised anywhere else, it is ours.
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith("connexion.validators"):
            return problem_response(
                Problem(400, "Bad Request", "The request body is not valid UTF-8", field="body")
            )
        tb = tb.tb_next
    logging.getLogger("connexion.middleware.exceptions").error("%r", exc, exc_info=exc)
    return problem_response(Problem(500, "Internal Server Error", "The server encountered an internal error"))


_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate_field(raw: bytes) -> str | None:
    """The field of a JSON body holding a lone UTF-16 surrogate (JSON may escape one, but
    it is no Unicode text: the database driver would fail on it, a 500), or None."""
    if not _ESCAPED_SURROGATE.search(raw):
        return None  # the fast path: no escaped surrogate at all
    try:
        return _surrogate_in(json.loads(raw), "")
    except ValueError:
        return None  # not JSON: connexion answers for that


def _surrogate_in(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        items: list[tuple[Any, str]] = []
        for key, item in value.items():
            items += [(key, path or "body"), (item, f"{path}.{key}" if path else str(key))]
    elif isinstance(value, list):
        items = [(item, f"{path}[{index}]") for index, item in enumerate(value)]
    else:
        return None
    for item, where in items:
        found = _surrogate_in(item, where)
        if found:
            return found
    return None


class RequestScopeMiddleware:
    """Outermost: the service's context and whom a delegate acts for (X-Act-For, recorded
    in the events the request emits) for the request's duration; the health and metrics
    routes, answered here for both app kinds; JSON bodies holding a lone UTF-16 surrogate
    (valid JSON, no Unicode text: the database driver would fail on it, a 500) refused
    with a 400 naming the field."""

    HEALTH_PATHS = ("/health/live", "/health/ready", "/metrics")

    def __init__(self, app: Any, context: ServiceContext, metrics: _Metrics) -> None:
        self.app = app
        self.context = context
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.HEALTH_PATHS and scope["method"] in ("GET", "HEAD"):
            await self._health(scope["path"], send)
            return
        headers = dict(scope.get("headers") or ())
        content_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if content_type == b"application/json" or content_type.endswith(b"+json"):
            body, receive = await _buffered(receive)
            where = _lone_surrogate_field(body)
            if where:
                problem = Problem(400, "Bad Request", f"{where} is not valid Unicode text", field=where)
                await send_problem(send, problem)
                return
        grantor = headers.get(b"x-act-for", b"").decode("latin-1") or None
        context_token = _CURRENT.set(self.context)
        acting_token = events.ACTING_FOR.set(grantor)
        try:
            await self.app(scope, receive, send)
        finally:
            events.ACTING_FOR.reset(acting_token)
            _CURRENT.reset(context_token)

    async def _health(self, path: str, send: Any) -> None:
        import anyio.to_thread

        if path == "/metrics":
            body = generate_latest(self.metrics.registry)
            status, content_type = 200, CONTENT_TYPE_LATEST
        else:
            if path == "/health/live":
                payload: dict[str, Any] = {"status": "live", "service": self.context.settings.service}
            else:  # the checks block (database round trip): off the event loop
                payload = await anyio.to_thread.run_sync(self._readiness)
            status = 200 if payload["status"] in ("live", "ready") else 503
            body, content_type = json.dumps(payload).encode(), "application/json"
        await send_response(send, status, body, content_type)

    def _readiness(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        ok = True
        for name, check in [
            ("database", self.context.db.ping),
            *[(c.__name__, c) for c in self.context.ready_checks],
        ]:
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - readiness reports any failure
                ok = False
                checks[name] = f"failed: {exc.__class__.__name__}"
        return {
            "status": "ready" if ok else "not ready",
            "service": self.context.settings.service,
            "checks": checks,
        }


async def _buffered(receive: Any) -> tuple[bytes, Any]:
    """Read the whole request body, and a `receive` that hands it on unchanged."""
    chunks: list[bytes] = []
    messages: list[Any] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break

    async def replay() -> Any:
        if messages:
            return messages.pop(0)
        return await receive()

    return b"".join(chunks), replay


async def send_response(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """A whole response from an ASGI middleware (before connexion has seen the request)."""
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", b"%d" % len(body)),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_problem(
    send: Any, problem: Problem, extra_headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    await send_response(
        send, problem.status, json.dumps(problem.to_dict()).encode(), PROBLEM_JSON, extra_headers
    )


class _Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests", "HTTP requests", ["service", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request duration", ["service"], registry=self.registry
        )
        self.service = service


class MetricsMiddleware:
    """Counts requests and their duration (ASGI), into the service's own registry."""

    def __init__(self, app: Any, metrics: _Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            self.metrics.requests.labels(
                self.metrics.service, scope.get("method", ""), str(status["code"])
            ).inc()
            self.metrics.latency.labels(self.metrics.service).observe(time.perf_counter() - start)


def _ensure_verifier(settings: Settings) -> None:
    # One verifier per process (in embedded mode every service trusts the same issuer);
    # a new suite in the same process with another issuer gets a new one.
    try:
        current = auth.get_verifier()
        if current.issuer == settings.oidc_issuer and current.audience == settings.oidc_audience:
            return
    except RuntimeError:
        pass
    auth.configure_verifier(auth.TokenVerifier(settings.oidc_issuer, settings.oidc_audience))


def create_service_app(
    settings: Settings,
    db: Database,
    *,
    import_name: str,
    extras: dict[str, Any] | None = None,
    ready_checks: list[Callable[[], None]] | None = None,
    flask: bool = False,
) -> connexion.AsyncApp | connexion.FlaskApp:
    """A connexion app for `settings.service`, its contract `contracts/openapi/<service>.yaml`;
    `flask=True` for a service that adds Flask routes of its own."""
    setup_logging()  # JSON logs with trace_id, also under gunicorn
    provider = tracing.tracer_provider(settings.service)
    if tracing.enabled():
        SQLAlchemyInstrumentor().instrument(engine=db.engine, tracer_provider=provider)
    _ensure_verifier(settings)

    app_class = connexion.FlaskApp if flask else connexion.AsyncApp
    app = app_class(import_name, specification_dir=str(contracts_dir() / "openapi"))
    app.add_api(
        f"{settings.service}.yaml",
        validate_responses=settings.validate_responses,
        strict_validation=True,
        pythonic_params=False,
        validator_map=VALIDATORS,
    )
    app.add_error_handler(Problem, _render_problem)
    app.add_error_handler(UnicodeDecodeError, _render_undecodable)
    context = ServiceContext(settings=settings, db=db, extras=extras or {}, ready_checks=ready_checks or [])
    _CONTEXT_OF_APP[app] = context
    metrics = _Metrics(settings.service)
    if isinstance(app, connexion.FlaskApp):
        _refuse_paths_flask_routes_differently(app)

    # connexion inserts each middleware just before the named position: the first added is
    # the outermost. Health and metrics are answered there, untraced and uncounted.
    app.add_middleware(
        RequestScopeMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, context=context, metrics=metrics
    )
    app.add_middleware(MetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, metrics=metrics)
    if tracing.enabled():
        app.add_middleware(
            OpenTelemetryMiddleware,
            position=MiddlewarePosition.BEFORE_EXCEPTION,
            tracer_provider=provider,
            excluded_urls="health/live,health/ready,metrics",
            # One server span per request, not three (receive/send spans cost CPU on every call).
            exclude_spans=["receive", "send"],
        )
    return app


def _refuse_paths_flask_routes_differently(app: connexion.FlaskApp) -> None:
    flask_app = app.app

    @flask_app.before_request
    def _refuse_what_connexion_let_through() -> Any:
        import flask
        from connexion.apps.flask import FlaskOperation
        from connexion.context import _operation

        view = flask_app.view_functions.get(flask.request.endpoint or "")
        if not isinstance(view, FlaskOperation) or _operation.get(None) is not None:
            return None  # identity's OIDC pages are no contract operations
        # connexion's router (a starlette Mount: `.*` stops at a newline) and Flask's
        # disagree on a path holding an encoded newline: Flask would call the handler
        # without its operation context (a 500). Such a path is bad input.
        problem = Problem(400, "Bad Request", "The request path is not valid", field="path")
        return flask.Response(json.dumps(problem.to_dict()), status=400, mimetype=PROBLEM_JSON)

"""The web side of a service: a connexion 3 app wired to its contract, with problem
errors, token checks, tracing, health and metrics — the same for every service."""

from __future__ import annotations

import json
import logging
import re
import time
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


@dataclass
class ServiceContext:
    """The composition root's objects a handler may need (found through the Flask app)."""

    settings: Settings
    db: Database
    extras: dict[str, Any] = field(default_factory=dict)
    ready_checks: list[Callable[[], None]] = field(default_factory=list)


def service_context() -> ServiceContext:
    import flask

    ctx: ServiceContext = flask.current_app.extensions["coordo"]
    return ctx


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
) -> connexion.FlaskApp:
    """A connexion app for `settings.service`, its contract `contracts/openapi/<service>.yaml`."""
    setup_logging()  # JSON logs with trace_id, also under gunicorn
    provider = tracing.tracer_provider(settings.service)
    if tracing.enabled():
        SQLAlchemyInstrumentor().instrument(engine=db.engine, tracer_provider=provider)
    _ensure_verifier(settings)

    app = connexion.FlaskApp(import_name, specification_dir=str(contracts_dir() / "openapi"))
    app.add_api(
        f"{settings.service}.yaml",
        validate_responses=settings.validate_responses,
        strict_validation=True,
        pythonic_params=False,
    )
    app.add_error_handler(Problem, _render_problem)
    app.add_error_handler(UnicodeDecodeError, _render_undecodable)
    context = ServiceContext(settings=settings, db=db, extras=extras or {}, ready_checks=ready_checks or [])
    flask_app = app.app
    flask_app.extensions["coordo"] = context
    metrics = _Metrics(settings.service)

    def live() -> Any:
        return {"status": "live", "service": settings.service}

    def ready() -> Any:
        checks: dict[str, str] = {}
        ok = True
        for name, check in [("database", db.ping), *[(c.__name__, c) for c in context.ready_checks]]:
            try:
                check()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - readiness reports any failure
                ok = False
                checks[name] = f"failed: {exc.__class__.__name__}"
        body = {"status": "ready" if ok else "not ready", "service": settings.service, "checks": checks}
        return body, (200 if ok else 503)

    def metrics_view() -> Any:
        return generate_latest(metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}

    @flask_app.before_request
    def _refuse_what_connexion_let_through() -> Any:
        import flask
        from connexion.apps.flask import FlaskOperation
        from connexion.context import _operation

        view = flask_app.view_functions.get(flask.request.endpoint or "")
        if not isinstance(view, FlaskOperation):
            return None  # health, metrics, identity's OIDC pages: not contract operations
        problem = None
        if _operation.get(None) is None:
            # connexion's router (a starlette Mount: `.*` stops at a newline) and Flask's
            # disagree on a path holding an encoded newline: Flask would call the handler
            # without its operation context (a 500). Such a path is bad input.
            problem = Problem(400, "Bad Request", "The request path is not valid", field="path")
        elif flask.request.is_json:
            where = _lone_surrogate_field(flask.request.get_data(cache=True))
            if where:
                problem = Problem(400, "Bad Request", f"{where} is not valid Unicode text", field=where)
        if problem is None:
            return None
        return flask.Response(json.dumps(problem.to_dict()), status=400, mimetype=PROBLEM_JSON)

    @flask_app.before_request
    def _record_who_is_acted_for() -> None:
        import flask

        grantor = flask.request.headers.get("x-act-for") or None
        flask.g.coordo_acting_for = events.ACTING_FOR.set(grantor)

    @flask_app.teardown_request
    def _forget_who_was_acted_for(_exc: BaseException | None) -> None:
        import flask

        token = flask.g.pop("coordo_acting_for", None)
        if token is not None:
            events.ACTING_FOR.reset(token)

    flask_app.add_url_rule("/health/live", "health_live", live)
    flask_app.add_url_rule("/health/ready", "health_ready", ready)
    flask_app.add_url_rule("/metrics", "metrics", metrics_view)

    app.add_middleware(MetricsMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION, metrics=metrics)
    if not tracing.enabled():
        return app
    app.add_middleware(
        OpenTelemetryMiddleware,
        position=MiddlewarePosition.BEFORE_EXCEPTION,
        tracer_provider=provider,
        excluded_urls="health/live,health/ready,metrics",
        # One server span per request, not three (receive/send spans cost CPU on every call).
        exclude_spans=["receive", "send"],
    )
    return app

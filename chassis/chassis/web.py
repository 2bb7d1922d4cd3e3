"""The web side of a service: a connexion 3 app wired to its contract, with problem
errors, token checks, tracing, health and metrics — the same for every service."""

from __future__ import annotations

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

from chassis import auth, tracing
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

"""Composition root of the web front end: a Flask app (served as ASGI by the launchers).

`create_web(settings)` builds the Flask app and connects nothing; the gateway client and the
ID-token keys are fetched on first use. `create_app()` is the gunicorn factory (ASGI, like
every other component): `gunicorn -k uvicorn_worker.UvicornWorker 'web.app:create_app()'`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import flask
from a2wsgi import WSGIMiddleware
from cachelib.file import FileSystemCache
from flask_session import Session
from flask_wtf.csrf import CSRFError, CSRFProtect

from web import labels
from web.api import ApiUnavailable, Gateway
from web.oidc import LoginRequired, OidcClient
from web.settings import WebSettings

SESSION_LIFETIME = timedelta(hours=8)  # ID-2: never longer than the provider's login session


def create_web(settings: WebSettings | None = None) -> flask.Flask:
    settings = settings or WebSettings.from_env()
    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(str(settings.session_dir), threshold=5000, mode=0o600),
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_COOKIE_NAME="coordo_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the session, which expires on its own
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    Session(app)
    CSRFProtect(app)
    oidc = OidcClient(settings)
    app.extensions["coordo_web"] = {"settings": settings, "oidc": oidc, "gateway": Gateway(settings, oidc)}

    for name in ("date_fr", "datetime_fr", "age_fr", "age_long_fr", "patient_name", "list_name"):
        app.jinja_env.filters[name] = getattr(labels, name)
    app.jinja_env.globals.update(L=labels, label=labels.label)

    from web import auth, pages

    app.register_blueprint(auth.bp)
    app.register_blueprint(pages.bp)

    @app.before_request
    def _request_id() -> None:
        flask.g.request_id = flask.request.headers.get("X-Request-Id") or str(uuid.uuid4())

    @app.after_request
    def _headers(response: flask.Response) -> flask.Response:
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        if flask.request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "public, max-age=3600")
        else:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(LoginRequired)
    def _login_required(_exc: LoginRequired) -> Any:
        flask.session.pop("tokens", None)
        target = flask.request.full_path if flask.request.method == "GET" else "/"
        if flask.request.headers.get("HX-Request"):
            response = flask.make_response("", 204)
            response.headers["HX-Redirect"] = "/auth/login"
            return response
        return flask.redirect(f"/auth/login?next={quote(target.rstrip('?'))}")

    @app.errorhandler(ApiUnavailable)
    def _unavailable(_exc: ApiUnavailable) -> Any:
        return flask.render_template(
            "error.html",
            title="Service indisponible",
            message="Coordo ne répond pas pour le moment. Réessayez dans un instant.",
        ), 503

    @app.errorhandler(CSRFError)
    def _csrf(_exc: CSRFError) -> Any:
        return flask.render_template(
            "error.html",
            title="Formulaire expiré",
            message="Le formulaire a expiré ou ne vient pas de Coordo. Rechargez la page et recommencez.",
        ), 400

    @app.errorhandler(404)
    def _not_found(_exc: Any) -> Any:
        return flask.render_template(
            "error.html", title="Page introuvable", message="Cette page n'existe pas."
        ), 404

    @app.get("/health/live")
    def _live() -> Any:
        return {"status": "live", "service": "web"}

    return app


def asgi(flask_app: flask.Flask) -> Any:
    # Flask is WSGI; the launchers serve ASGI apps (uvicorn threads, gunicorn's uvicorn worker).
    return WSGIMiddleware(flask_app, workers=16)  # type: ignore[arg-type]


def create_app() -> Any:
    """Factory for gunicorn (distributed mode and `coordo run --target web`)."""
    from chassis.logs import setup_logging
    from chassis.process import freeze_startup_heap

    setup_logging()
    app = asgi(create_web())
    freeze_startup_heap()
    return app

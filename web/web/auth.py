"""Login through the identity provider (code + PKCE), callback, logout."""

from __future__ import annotations

import logging
from typing import Any

import flask

from web.oidc import LoginFailed, LoginRequired, OidcClient

log = logging.getLogger(__name__)
bp = flask.Blueprint("auth", __name__)

# Embedded mode only (COORDO_WEB_DEMO_ACCOUNTS=1): the demo accounts of identity/demo.py.
DEMO_ACCOUNTS = (
    ("coordinateur", "Claire Martin", "Gestionnaire de cas, DAC Sud Essonne"),
    ("medecin", "Dr Paul Bernard", "Médecin généraliste (cabinet)"),
    ("infirmiere", "Sophie Petit", "Infirmière, CH Sud Francilien — Médecine gériatrique"),
    ("assistante-sociale", "Nadia Roux", "Assistante sociale, DAC Sud Essonne"),
    ("admin", "Admin Coordo", "Administrateur de la plateforme"),
)
DEMO_PASSWORD = "coordo-demo"


def _oidc() -> OidcClient:
    oidc: OidcClient = flask.current_app.extensions["coordo_web"]["oidc"]
    return oidc


def _safe_next(value: str | None) -> str:
    from web.pages import local_path

    return local_path(value, "/patients")


@bp.get("/auth/login")
def login() -> Any:
    settings = flask.current_app.extensions["coordo_web"]["settings"]
    if flask.session.get("tokens"):
        return flask.redirect(_safe_next(flask.request.args.get("next")))
    return flask.render_template(
        "login.html",
        next=_safe_next(flask.request.args.get("next")),
        demo_accounts=DEMO_ACCOUNTS if settings.show_demo_accounts else (),
        demo_password=DEMO_PASSWORD,
        logged_out=flask.request.args.get("deconnecte") == "1",
        error=flask.request.args.get("erreur") == "1",
    )


@bp.get("/auth/start")
def start() -> Any:
    request = _oidc().authorization_request()
    flask.session["oidc"] = {
        "state": request.state,
        "code_verifier": request.code_verifier,
        "nonce": request.nonce,
        "next": _safe_next(flask.request.args.get("next")),
    }
    return flask.redirect(request.url)


@bp.get("/auth/callback")
def callback() -> Any:
    pending = flask.session.pop("oidc", None)
    args = flask.request.args
    if pending is None or args.get("state") != pending.get("state") or not args.get("code"):
        log.warning("login callback refused: unknown state or no code")
        return flask.redirect("/auth/login?erreur=1")
    try:
        tokens = _oidc().exchange_code(args["code"], pending["code_verifier"], pending["nonce"])
    except LoginFailed as exc:
        log.warning("login failed: %s", exc)
        return flask.redirect("/auth/login?erreur=1")
    # A new session id once logged in (no session fixation).
    flask.session.clear()
    flask.current_app.session_interface.regenerate(flask.session)  # type: ignore[attr-defined]
    flask.session["tokens"] = tokens
    from web.pages import load_me

    try:
        me = load_me()
    except LoginRequired:
        return flask.redirect("/auth/login?erreur=1")
    if me.get("terms_accepted") is False:
        return flask.redirect(f"/conditions?next={pending['next']}")
    return flask.redirect(pending["next"])


@bp.post("/auth/logout")
def logout() -> Any:
    tokens = flask.session.get("tokens")
    if tokens:
        _oidc().revoke(tokens)
    flask.session.clear()
    return flask.redirect("/auth/login?deconnecte=1")

"""The web front end's own guarantees, without a browser: login redirect, cookies, CSRF,
open redirects, security headers, French dates. Fast (Flask's test client, no suite)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import pytest

from web import labels
from web.app import create_web
from web.settings import WebSettings, web_port


def make_app(tmp_path: Path, public_url: str = "http://127.0.0.1:8000", demo: bool = False) -> flask.Flask:
    settings = WebSettings(
        port=0,
        public_url=public_url,
        gateway_url="http://127.0.0.1:9",  # nothing listens: none of these tests reaches it
        issuer=f"{public_url}/oidc",
        show_demo_accounts=demo,
        session_dir=tmp_path / "sessions",
        secret_key="test-secret",
        secure_cookies=public_url.startswith("https://"),
    )
    app = create_web(settings)
    app.testing = True
    return app


def test_pages_send_an_anonymous_visitor_to_the_login_page(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    response = client.get("/taches?statut=a_traiter")
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login?next=/taches%3Fstatut%3Da_traiter"
    assert client.get("/").headers["Location"] == "/auth/login"


def test_demo_accounts_are_listed_only_in_embedded_mode(tmp_path: Path) -> None:
    shown = make_app(tmp_path / "a", demo=True).test_client().get("/auth/login").get_data(as_text=True)
    hidden = make_app(tmp_path / "b", demo=False).test_client().get("/auth/login").get_data(as_text=True)
    assert "Comptes de démonstration" in shown and "coordo-demo" in shown
    assert "Comptes de démonstration" not in hidden and "coordo-demo" not in hidden


def test_login_starts_code_flow_with_pkce_and_a_locked_down_cookie(tmp_path: Path) -> None:
    client = make_app(tmp_path, public_url="https://coordo.example").test_client()
    response = client.get("/auth/start?next=/taches")
    assert response.status_code == 302
    target = urlsplit(response.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert f"{target.scheme}://{target.netloc}{target.path}" == "https://coordo.example/oidc/authorize"
    assert query["client_id"] == "coordo-web"
    assert query["redirect_uri"] == "https://coordo.example/auth/callback"
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["state"] and query["nonce"]
    cookie = response.headers["Set-Cookie"]
    assert "coordo_session=" in cookie
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    # No token and no verifier in the cookie: it is an opaque id of a server-side session.
    assert query["state"] not in cookie


def test_a_callback_with_a_foreign_state_logs_nobody_in(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    client.get("/auth/start")
    response = client.get("/auth/callback?code=stolen&state=not-mine")
    assert response.headers["Location"] == "/auth/login?erreur=1"
    follow = client.get("/patients")
    assert follow.headers["Location"].startswith("/auth/login")


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_no_open_redirect_after_login(tmp_path: Path, target: str) -> None:
    client = make_app(tmp_path).test_client()
    page = client.get("/auth/login", query_string={"next": target}).get_data(as_text=True)
    assert "/auth/start?next=/patients" in page
    assert "evil" not in page


def test_forms_without_their_csrf_token_are_refused_in_french(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    app.testing = False  # the real CSRF checks
    client = app.test_client()
    response = client.post("/auth/logout")
    assert response.status_code == 400
    assert "Le formulaire a expiré" in response.get_data(as_text=True)
    assert client.post("/patients/nouveau", data={"birth_name": "X"}).status_code == 400


def test_pages_carry_security_headers_and_are_never_cached(tmp_path: Path) -> None:
    response = make_app(tmp_path).test_client().get("/auth/login")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert '<html lang="fr">' in response.get_data(as_text=True)


def test_htmx_is_served_from_the_app_itself(tmp_path: Path) -> None:
    response = make_app(tmp_path).test_client().get("/static/htmx.min.js")
    assert response.status_code == 200 and b"htmx" in response.data[:200]


def test_dates_are_shown_and_read_as_jj_mm_aaaa() -> None:
    assert labels.date_fr("1938-05-17") == "17/05/1938"
    assert labels.datetime_fr("2026-07-01T22:30:00+00:00") == "02/07/2026 00:30"  # Paris, summer time
    assert labels.parse_date_fr("17/05/1938").isoformat() == "1938-05-17"  # type: ignore[union-attr]
    assert labels.parse_date_fr("31/02/1938") is None
    assert labels.parse_date_fr("17/05/38") is None


def test_the_web_port_follows_the_gateway_port_unless_set() -> None:
    assert web_port({}) == 8108
    assert web_port({"COORDO_GATEWAY_PORT": "31000"}) == 31108
    assert web_port({"COORDO_GATEWAY_PORT": "31000", "COORDO_WEB_PORT": "9000"}) == 9000


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COORDO_PUBLIC_URL", "https://coordo.example/")
    monkeypatch.setenv("COORDO_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("COORDO_OIDC_ISSUER", raising=False)
    settings = WebSettings.from_env()
    assert settings.redirect_uri == "https://coordo.example/auth/callback"
    assert settings.issuer == "https://coordo.example/oidc"
    assert settings.secure_cookies is True
    assert replace(settings, show_demo_accounts=True).show_demo_accounts


def test_file_list_filters_become_the_apis_parameters(tmp_path: Path) -> None:
    from werkzeug.datastructures import MultiDict

    from web.pages import api_params, form_pairs, list_filters

    with make_app(tmp_path).test_request_context("/patients"):
        args = MultiDict(
            [
                ("name", " Lefèvre "),
                ("birth_date", "17/05/1938"),
                ("sex", "H"),
                ("statuses", "suivi_soutenu"),
                ("statuses", "sorti"),
                ("communes", "91228, 2a004"),
                ("deceased", "false"),
                ("open_tasks", "true"),
                ("favourites", ""),
            ]
        )
        filters, problems = list_filters(args)
        assert problems == []
        assert api_params(filters) == {
            "name": "Lefèvre",
            "birth_date": "1938-05-17",
            "sex": "H",
            "statuses": "suivi_soutenu,sorti",
            "communes": "91228,2A004",
            "deceased": "false",
            "open_tasks": "true",
        }
        # The page's links and the "save these filters" form carry the same filters back.
        assert list_filters(MultiDict(form_pairs(filters)))[0] == filters
        _, problems = list_filters(MultiDict([("birth_date", "31/02/1938"), ("communes", "Évry")]))
        assert problems == [
            "La date de naissance doit être au format JJ/MM/AAAA.",
            "Une commune se cherche par son code INSEE (5 caractères).",
        ]


def test_the_timeline_places_past_on_the_left_and_future_on_the_right() -> None:
    from datetime import date

    from web.pages import timeline_axis

    today = date(2026, 6, 15)
    items = [
        {"date": "2026-08-01", "kind": "appointment", "label": "Rendez-vous", "future": True},
        {"date": "2026-03-15", "kind": "hospitalisation", "label": "Hospitalisation — CH", "future": False},
    ]
    axis = timeline_axis(items, "quarter", today)
    assert axis["start"] == date(2026, 3, 15) and axis["end"] == date(2026, 9, 15)
    assert axis["today"] == 50
    first, second = axis["entries"]  # in date order, for the text list too
    assert first["kind"] == "hospitalisation" and first["pos"] == 0
    assert second["kind"] == "appointment" and 70 < second["pos"] < 80 and second["future"]
    assert all(t["pos"] % 2 == 0 for t in axis["ticks"])  # a CSS class exists for each place


def test_ages_and_names_as_the_booklet_writes_them() -> None:
    assert labels.age_long_fr({"years": 88, "months": 6, "days": 14}) == "88 ans, 6 mois et 14 jours"
    assert labels.age_long_fr({"years": 0, "months": 0, "days": 1}) == "1 jour"
    assert labels.list_name({"birth_name": "Mando", "used_name": "Skywalker", "first_name": "Grogu"}) == (
        "SKYWALKER Grogu (né(e) MANDO)"
    )


def _logged_in_with_gateway(tmp_path: Path, answer: Any) -> Any:
    """The app with its gateway answering from `answer(request)` (an httpx transport, no network)."""
    import time

    import httpx

    app = make_app(tmp_path)
    gateway = app.extensions["coordo_web"]["gateway"]
    gateway._client = httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(answer))
    client = app.test_client()
    with client.session_transaction() as session:
        session["tokens"] = {"access_token": "t", "expires_at": time.time() + 3600}
        session["me"] = {
            "id": "p1",
            "display_name": "Claire Martin",
            "structures": [],
            "terms_accepted": True,
        }
    return client


def test_an_export_beyond_1000_files_is_refused_in_french(tmp_path: Path) -> None:
    import httpx

    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        problem = {
            "title": "Export trop volumineux",
            "status": 422,
            "field": "total",
            "total": 1534,
            "max": 1000,
        }
        return httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"})

    client = _logged_in_with_gateway(tmp_path, answer)
    response = client.get("/patients/export.xlsx?statuses=suivi_soutenu&statuses=sorti&deceased=false")
    assert response.status_code == 302
    assert response.headers["Location"] == "/patients?statuses=suivi_soutenu&statuses=sorti&deceased=false"
    (request,) = asked
    assert request.url.path == "/api/file-list/export"
    assert dict(request.url.params) == {
        "format": "xlsx",
        "statuses": "suivi_soutenu,sorti",
        "deceased": "false",
    }
    assert request.headers["Authorization"] == "Bearer t"  # the person's token, never the browser's
    with client.session_transaction() as session:
        flashed = session["_flashes"]
    assert flashed == [
        (
            "erreur",
            "L'export est limité à 1000 dossiers et votre recherche en compte 1534 : affinez les filtres pour exporter.",
        )
    ]

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


def _csrf(page: str) -> str:
    import re

    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the form carries its CSRF token"
    return found.group(1)


PREFERENCES = {
    "owner": {"kind": "person", "id": "p1"},
    "delivery": {"email_mode": "immediate", "quiet_hours": None, "digest_time": "07:00"},
    "groups": [],
}


def test_the_email_mode_and_quiet_hours_are_sent_to_notify(tmp_path: Path) -> None:
    import json

    import httpx

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            sent.append(request)
        return httpx.Response(200, json=PREFERENCES if "preferences" in request.url.path else {})

    client = _logged_in_with_gateway(tmp_path, answer)
    page = client.get("/preferences").get_data(as_text=True)
    assert 'action="/preferences/envoi"' in page and 'name="csrf_token"' in page
    assert '<label for="quiet_start">Début (HH:MM)</label>' in page
    token = _csrf(page)
    assert client.post("/preferences/envoi", data={"email_mode": "immediate"}).status_code == 400  # no token
    form = {"email_mode": "daily_digest", "quiet": "on", "quiet_start": "20:00", "quiet_end": "08:00"}
    response = client.post("/preferences/envoi", data={**form, "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/preferences#envoi"
    client.post(
        "/preferences/envoi", data={"email_mode": "immediate", "quiet_start": "20:00", "csrf_token": token}
    )
    first, second = sent
    assert first.url.path == "/api/notification-preferences/delivery"
    assert json.loads(first.content) == {
        "email_mode": "daily_digest",
        "quiet_hours": {"start": "20:00", "end": "08:00"},
    }
    # Quiet hours unticked: they are removed, whatever the time boxes still hold.
    assert json.loads(second.content) == {"email_mode": "immediate", "quiet_hours": None}


def test_a_badly_written_quiet_hour_is_refused_in_french_on_its_field(tmp_path: Path) -> None:
    import httpx

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            sent.append(request)
        return httpx.Response(200, json=PREFERENCES if "preferences" in request.url.path else {})

    client = _logged_in_with_gateway(tmp_path, answer)
    token = _csrf(client.get("/preferences").get_data(as_text=True))
    form = {
        "email_mode": "immediate",
        "quiet": "on",
        "quiet_start": "8h",
        "quiet_end": "07:30",
        "csrf_token": token,
    }
    response = client.post("/preferences/envoi", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert sent == []  # nothing changed
    assert (
        '<p class="erreur-champ" id="quiet_start-erreur">« Début des heures de silence » : '
        "l&#39;heure doit être au format HH:MM (par exemple 20:00).</p>"
    ) in page
    assert 'aria-invalid="true" aria-describedby="quiet_start-erreur"' in page
    assert 'value="8h"' in page  # what the person typed stays in the form
    assert "quiet_end-erreur" not in page


def _review_client(tmp_path: Path, roles: list[str], act_as: str | None) -> tuple[Any, list[str]]:
    import httpx

    asked: list[str] = []
    structure = {"id": "s1", "name": "DAC Sud Essonne"}
    profile = {
        "id": "p1",
        "username": "coordinateur",
        "display_name": "Claire Martin",
        "roles": roles,
        "structures": [structure],
        "terms_accepted": True,
    }
    grants = [
        {
            "id": "g1",
            "patient_id": "0b5c2d9e-0000-4000-8000-000000000001",
            "person_id": "7f3e0000-0000-4000-8000-000000000002",
            "structure_id": "s1",
            "reason_code": "urgence_vitale",
            "reason_text": "Chute à domicile, médecin traitant injoignable",
            "found_via": "identity_vigilance",
            "granted_at": "2026-07-01T08:00:00+00:00",
            "expires_at": "2026-07-01T10:00:00+00:00",
            "ended_at": "2026-07-01T09:15:00+00:00",
            "end_cause": "ended",
            "active": False,
        }
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path} {request.headers.get('X-Act-As')}")
        path = request.url.path
        if path == "/api/me":
            return httpx.Response(200, json=profile)
        if path == "/api/break-glass/review":
            return httpx.Response(200, json={"structure_id": "s1", "grants": grants})
        if path.startswith("/api/directory/persons/"):
            return httpx.Response(
                200, json={"id": path.rsplit("/", 1)[-1], "display_name": "Dr Paul Bernard"}
            )
        return httpx.Response(200, json={})

    client = _logged_in_with_gateway(tmp_path, answer)
    with client.session_transaction() as session:
        session["me"] = profile
        session["act_as"] = act_as
    return client, asked


def test_a_super_user_acting_for_the_structure_reviews_its_break_glass_accesses(tmp_path: Path) -> None:
    client, asked = _review_client(tmp_path, ["user", "super_user"], act_as="s1")
    assert 'href="/bris-de-glace/revue"' in client.get("/profil").get_data(as_text=True)
    response = client.get("/bris-de-glace/revue")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "/api/break-glass/review s1" in asked  # asked as the structure (X-Act-As)
    row = page.split("<tbody>")[1]
    for shown in (
        "Dr Paul Bernard",
        "01/07/2026 10:00",  # Paris time
        'href="/patients/0b5c2d9e-0000-4000-8000-000000000001"',
        "Urgence vitale",
        "Chute à domicile, médecin traitant injoignable",
        "Terminé le 01/07/2026 11:15",
    ):
        assert shown in row


@pytest.mark.parametrize(
    ("roles", "act_as", "message"),
    [
        (["user"], "s1", "réservée aux super-utilisateurs d&#39;une structure."),
        (["user", "super_user"], None, "choisissez d&#39;agir au nom de votre structure"),
    ],
)
def test_the_break_glass_review_is_refused_to_others_in_french(
    tmp_path: Path, roles: list[str], act_as: str | None, message: str
) -> None:
    client, asked = _review_client(tmp_path, roles, act_as)
    assert 'href="/bris-de-glace/revue"' not in client.get("/profil").get_data(as_text=True)
    response = client.get("/bris-de-glace/revue")
    assert response.status_code == 403
    assert message in response.get_data(as_text=True)
    assert not any(a.startswith("/api/break-glass/review") for a in asked)


def test_notify_refusing_a_quiet_hour_is_shown_on_that_field(tmp_path: Path) -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            problem = {"title": "Bad input", "status": 422, "field": "quiet_hours.end"}
            return httpx.Response(422, json=problem, headers={"content-type": "application/problem+json"})
        return httpx.Response(200, json=PREFERENCES if "preferences" in request.url.path else {})

    client = _logged_in_with_gateway(tmp_path, answer)
    token = _csrf(client.get("/preferences").get_data(as_text=True))
    form = {"email_mode": "immediate", "quiet": "on", "quiet_start": "20:00", "quiet_end": "20:30"}
    response = client.post("/preferences/envoi", data={**form, "csrf_token": token})
    assert response.status_code == 422
    assert (
        '<p class="erreur-champ" id="quiet_end-erreur">« Fin des heures de silence » : valeur refusée.</p>'
        in response.get_data(as_text=True)
    )

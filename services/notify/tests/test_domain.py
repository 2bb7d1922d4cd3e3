"""Pure rules of notify: the catalogue, preferences, recipients, delays, SMTP settings,
and the French texts of every type (rendered from the real templates)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notify import domain, render

PARIS = ZoneInfo("Europe/Paris")
LINK = "https://coordo.example/taches/0b0e2f5c-6f0a-4c55-9d7a-2f4b7a1c9e11"
FULL_CONTEXT = {
    "actor_name": "Gaylor HENNEBERT",
    "via_structure": False,
    "link": LINK,
    "public_url": "https://coordo.example",
    "task_type": "Bilan du PPCS",
    "level": "urgent",
    "due_date": "15/12/2026",
    "from_status": "À traiter",
    "to_status": "En cours",
    "status": "clos",
    "previous_status": "actif",
    "expires_at": "01/12/2026 à 13:00",
    "start": "03/12/2026 à 10:00",
    "changed": "début",
    "pending_count": 1,
    "scopes": "Dossiers & RCP",
    "cause": "revoked",
    "professional": "Noé LEROY",
    "invitation_link": "https://coordo.example/inscription?invitation=1",
    "files": 3,
}
DIRECTORY = {
    "last_name": "LEROY",
    "first_name": "Noé",
    "profession": None,
    "rpps": None,
    "email": None,
    "phone": None,
    "city": None,
}


def test_the_catalogue_has_the_four_groups_of_the_booklet_and_every_type_of_not3() -> None:
    assert {t.group for t in domain.CATALOGUE} == set(domain.GROUPS)
    codes = [t.code for t in domain.CATALOGUE]
    assert len(codes) == len(set(codes))
    for code in (
        "task_assigned",
        "task_status_changed",
        "task_created",
        "feed_note_added",
        "file_status_changed",
        "favourite_group_shared",
        "patient_deceased",
        "thematic_added",
        "document_added",
        "invited_colleague_registered",
        "break_glass_access",
        "file_accessed",
        "habilitation_removed",
        "new_alert",
        "delegation_request",
        "appointment_added",
        "appointment_changed",
        "appointment_cancelled",
        "appointment_deleted",
        "password_reset",
        "account_created",
        "otp_code",
        "new_user_registration",
    ):
        assert code in domain.TYPES, code
    assert domain.TYPES["appointment_deleted"].status == "waiting_for_producer"
    assert domain.TYPES["patient_deceased"].status == "wired"


@pytest.mark.parametrize(
    ("code", "overrides", "expected"),
    [
        ("task_assigned", {}, {"email": True, "in_app": True}),
        ("task_assigned", {"email": False}, {"email": False, "in_app": True}),
        ("task_created", {}, {"email": False, "in_app": True}),
        ("task_created", {"email": True, "in_app": False}, {"email": True, "in_app": False}),
        # A transactional e-mail ignores any stored choice.
        ("care_circle_invitation", {"email": False}, {"email": True, "in_app": False}),
    ],
)
def test_a_choice_wins_over_the_default(
    code: str, overrides: dict[str, bool], expected: dict[str, bool]
) -> None:
    assert domain.wanted_channels(code, overrides) == expected


def test_a_reset_covers_its_group_or_everything_but_never_the_transactional_emails() -> None:
    assert "task_assigned" in domain.types_of_group("tasks")
    assert "patient_deceased" not in domain.types_of_group("tasks")
    everything = domain.types_of_group(None)
    assert "appointment_added" in everything and "care_circle_invitation" not in everything


def test_preference_changes_are_checked() -> None:
    with pytest.raises(domain.PreferenceError) as unknown:
        domain.check_preference_change("nope", {"email": True})
    assert unknown.value.field == "type"
    with pytest.raises(domain.PreferenceError):
        domain.check_preference_change("directory_entry_request", {"email": False})
    with pytest.raises(domain.PreferenceError) as empty:
        domain.check_preference_change("task_assigned", {"email": None, "in_app": None})
    assert empty.value.field == "email"
    domain.check_preference_change("task_assigned", {"email": False, "in_app": None})


def test_recipients_are_unique_and_never_who_acted() -> None:
    got = domain.recipients_except(
        [("person", "a"), ("structure", "s"), ("person", "a"), ("person", "b"), ("person", "c")],
        actor="b",
        also=[("person", "c")],
    )
    assert got == [("person", "a"), ("structure", "s")]


@pytest.mark.parametrize(
    ("event_type", "actor", "expected"),
    [
        ("DelegationRequested", "d", [("person", "g")]),
        ("DelegationGranted", "g", [("person", "d")]),
        ("DelegationRefused", "g", [("person", "d")]),
        ("DelegationRevoked", "g", [("person", "d")]),
        ("DelegationRevoked", "d", [("person", "g")]),
        ("DelegationRevoked", None, [("person", "g"), ("person", "d")]),
    ],
)
def test_who_hears_of_a_delegation(
    event_type: str, actor: str | None, expected: list[tuple[str, str]]
) -> None:
    assert domain.delegation_parties(event_type, "g", "d", actor) == expected


def test_quiet_hours_and_the_daily_digest_follow_the_paris_clock() -> None:
    evening = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)  # 22:30 in Paris
    night = domain.Delivery(quiet_start=time(20, 0), quiet_end=time(8, 0))
    assert domain.email_due_at(evening, night, PARIS) == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    morning = datetime(2026, 12, 2, 6, 30, tzinfo=UTC)  # 07:30 in Paris, still quiet
    assert domain.email_due_at(morning, night, PARIS) == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    noon = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert domain.email_due_at(noon, night, PARIS) == noon
    assert domain.email_due_at(evening, domain.Delivery(), PARIS) == evening
    digest = domain.Delivery(email_mode="daily_digest")
    assert domain.email_due_at(evening, digest, PARIS) == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert domain.email_due_at(datetime(2026, 12, 2, 5, 0, tzinfo=UTC), digest, PARIS) == datetime(
        2026, 12, 2, 6, 0, tzinfo=UTC
    )
    assert domain.in_quiet_hours(time(9), time(8), time(18))
    assert not domain.in_quiet_hours(time(19), time(8), time(18))


def test_failed_sends_back_off_and_never_give_up() -> None:
    assert domain.backoff(0) == timedelta(0)
    assert [domain.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert domain.backoff(50) == timedelta(minutes=15)


def test_smtp_settings_from_the_url_and_the_variables() -> None:
    plain = domain.parse_smtp_url("smtp://relay.example")
    assert (plain.host, plain.port, plain.ssl, plain.starttls, plain.username) == (
        "relay.example",
        25,
        False,
        False,
        None,
    )
    implicit = domain.parse_smtp_url("smtps://user%40dac:p%40ss@relay.example")
    assert (implicit.port, implicit.ssl, implicit.username, implicit.password) == (
        465,
        True,
        "user@dac",
        "p@ss",
    )
    submission = domain.parse_smtp_url("smtp://relay.example?starttls=true")
    assert (submission.port, submission.starttls) == (587, True)
    overridden = domain.parse_smtp_url(
        "smtp://relay.example:2525", tls="starttls", username="coordo", password="secret"
    )
    assert (overridden.port, overridden.starttls, overridden.username, overridden.password) == (
        2525,
        True,
        "coordo",
        "secret",
    )
    with pytest.raises(ValueError):
        domain.parse_smtp_url("http://relay.example")
    with pytest.raises(ValueError):
        domain.parse_smtp_url("smtp://relay.example", tls="ssl")


@pytest.mark.parametrize("kind", [t for t in domain.CATALOGUE if t.events], ids=lambda t: t.code)
def test_every_wired_type_has_a_french_template_naming_the_event_and_linking_to_it(
    kind: domain.NotificationType,
) -> None:
    context = dict(FULL_CONTEXT)
    if kind.code == "directory_entry_request":
        context["professional"] = DIRECTORY
    mail = render.render(kind.code, {**context, "recipient_name": "Adeline FONTEIX"})
    assert mail.subject == f"[Coordo] {kind.title}"
    assert mail.email.startswith("Bonjour Adeline FONTEIX,")
    assert mail.in_app and mail.in_app in mail.email
    assert "ce message ne contient aucune information sur le patient" in mail.email
    assert "https://coordo.example" in mail.email
    # Through a structure it reads differently where it matters, and never fails.
    assert render.render(kind.code, {**context, "via_structure": True}).in_app


def test_a_template_cannot_be_given_anything_but_vetted_fields() -> None:
    for smuggled in ("label", "comment", "patient_name", "birth_name"):
        with pytest.raises(ValueError, match="not allowed"):
            render.render("task_assigned", {**FULL_CONTEXT, smuggled: "Mme Dupont, diabète"})


def test_unknown_names_still_make_a_readable_text() -> None:
    text = render.render(
        "task_assigned", {"link": LINK, "public_url": "https://x", "task_type": "Autre", "level": "urgent"}
    )
    assert (
        text.in_app
        == "Un membre du cercle de soins vous a affecté une nouvelle tâche (Autre). Niveau : urgent."
    )
    assert text.email.startswith("Bonjour,")

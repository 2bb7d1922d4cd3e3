from datetime import timedelta

import pytest

from notify import domain

LINK = "https://coordo.example/taches/0b0e2f5c-6f0a-4c55-9d7a-2f4b7a1c9e11"


def test_the_email_names_the_event_links_to_the_task_and_greets_the_person() -> None:
    mail = domain.task_assigned_email(
        recipient_name="Adeline FONTEIX",
        assigner_name="Gaylor HENNEBERT",
        level="urgent",
        due_date="2026-12-15",
        link=LINK,
        via_structure=False,
    )
    assert mail.subject == "[Coordo] Une tâche vous a été assignée"
    assert mail.body.startswith("Bonjour Adeline FONTEIX,")
    assert "Gaylor HENNEBERT vous a assigné une nouvelle tâche." in mail.body
    assert "Niveau : urgent." in mail.body
    assert "Échéance : 15/12/2026." in mail.body
    assert LINK in mail.body


def test_unknown_names_and_no_due_date_still_make_a_readable_email() -> None:
    mail = domain.task_assigned_email(
        recipient_name=None,
        assigner_name=None,
        level="information",
        due_date=None,
        link=LINK,
        via_structure=True,
    )
    assert mail.body.startswith("Bonjour,")
    assert "Un membre du cercle de soins a assigné une nouvelle tâche à votre structure." in mail.body
    assert "Échéance" not in mail.body


def test_the_in_app_notification_says_the_same_in_one_line() -> None:
    text = domain.task_assigned_notification(
        assigner_name="Gaylor HENNEBERT", level="important", due_date=None, via_structure=False
    )
    assert text.subject == "Une tâche vous a été assignée"
    assert text.body == "Gaylor HENNEBERT vous a assigné une nouvelle tâche. Niveau : important."


def test_retries_back_off_exponentially_up_to_a_ceiling() -> None:
    assert domain.backoff(0) == timedelta(0)
    assert [domain.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert domain.backoff(50) == domain.BACKOFF_MAX


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.local:2525", domain.SmtpTarget("mail.local", 2525, None, None, False, False)),
        ("smtp://127.0.0.1", domain.SmtpTarget("127.0.0.1", 25, None, None, False, False)),
        (
            "smtp://coordo:p%40ss@relay.example:587?starttls=true",
            domain.SmtpTarget("relay.example", 587, "coordo", "p@ss", False, True),
        ),
        ("smtps://u:p@relay.example", domain.SmtpTarget("relay.example", 465, "u", "p", True, False)),
    ],
)
def test_smtp_urls(url: str, expected: domain.SmtpTarget) -> None:
    assert domain.parse_smtp_url(url) == expected


@pytest.mark.parametrize("url", ["http://mail.local", "smtp://", "mail.local:25"])
def test_a_malformed_smtp_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        domain.parse_smtp_url(url)

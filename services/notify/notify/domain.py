"""Notification rules (NOT-1, NOT-4): texts, e-mail content, retry policy. Pure, no I/O.

NOT-4: an e-mail names the event and links to the object, and never carries medical
content. The renderers below are only ever given ids, codes and professionals' names,
so a task's label or comment, or a patient's identity, cannot end up in a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import unquote, urlsplit

TASK_ASSIGNED = "task_assigned"
TASK_ASSIGNED_TITLE = "Une tâche vous a été assignée"
LEVEL_NAMES = {"information": "information", "important": "important", "urgent": "urgent"}

BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=15)


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool  # smtps://: TLS from the first byte
    starttls: bool  # smtp://...?starttls=true


def _french_date(value: str | None) -> str | None:
    if not value:
        return None
    return date.fromisoformat(value).strftime("%d/%m/%Y")


def task_assigned_notification(
    *, assigner_name: str | None, level: str, due_date: str | None, via_structure: bool
) -> Message:
    """The in-application notification: who assigned it, its level and due date."""
    who = assigner_name or "Un membre du cercle de soins"
    if via_structure:
        sentence = f"{who} a assigné une nouvelle tâche à votre structure."
    else:
        sentence = f"{who} vous a assigné une nouvelle tâche."
    details = [f"Niveau : {LEVEL_NAMES.get(level, level)}."]
    due = _french_date(due_date)
    if due:
        details.append(f"Échéance : {due}.")
    return Message(subject=TASK_ASSIGNED_TITLE, body=" ".join([sentence, *details]))


def task_assigned_email(
    *,
    recipient_name: str | None,
    assigner_name: str | None,
    level: str,
    due_date: str | None,
    link: str,
    via_structure: bool,
) -> Message:
    """The e-mail: names the event, links to the task, carries nothing clinical (NOT-4)."""
    notification = task_assigned_notification(
        assigner_name=assigner_name, level=level, due_date=due_date, via_structure=via_structure
    )
    greeting = f"Bonjour {recipient_name}," if recipient_name else "Bonjour,"
    body = "\n".join(
        [
            greeting,
            "",
            "Vous avez une nouvelle notification Coordo :",
            "",
            notification.body,
            "",
            f"Pour consulter la tâche, connectez-vous à Coordo : {link}",
            "",
            "Par respect du secret médical, ce message ne contient aucune information sur le patient.",
            "Ceci est un message automatique, merci de ne pas y répondre.",
            "",
        ]
    )
    return Message(subject=f"[Coordo] {TASK_ASSIGNED_TITLE}", body=body)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failures: 5 s, 10 s, 20 s, … up to 15 min."""
    if attempts <= 0:
        return timedelta(0)
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempts - 1, 20))


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:password@]host[:port][?starttls=true]` or `smtps://…` (implicit TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("COORDO_SMTP_URL must look like smtp://[user:password@]host:port")
    ssl = parts.scheme == "smtps"
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if ssl else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=ssl,
        starttls=query.get("starttls", "").lower() in ("1", "true", "yes"),
    )

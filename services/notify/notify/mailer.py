"""The e-mail sender: delivers `outgoing_emails` rows over SMTP, or into .eml files.

Runs as a background thread of the notify worker (never in a web process). A row is
claimed for a short lease (FOR UPDATE SKIP LOCKED on PostgreSQL), sent, then marked
sent; a failure is retried with backoff and never dropped. A crash between the SMTP
server's acceptance and the mark can send one e-mail twice (at-least-once delivery);
each row keeps a stable Message-ID so mail systems can tell the copies apart.

Without `COORDO_SMTP_URL` the embedded sink writes each e-mail as
`<COORDO_VAR_DIR or ./var>/mail/<id>.eml`, readable by any mail client.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import or_, select

from chassis.db import Database, utcnow
from chassis.settings import Settings, env, var_dir
from notify import domain
from notify.models import OutgoingEmail, Person

log = logging.getLogger(__name__)

DEFAULT_FROM = "Coordo <ne-pas-repondre@coordo.local>"
LEASE = timedelta(minutes=2)
SMTP_TIMEOUT_S = 10.0
# The server cannot be reached: the rest of the batch would fail the same way.
UNREACHABLE = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    smtplib.SMTPConnectError,
    smtplib.SMTPServerDisconnected,
)


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


class FileTransport:
    """The embedded sink: one .eml file per e-mail; rewriting it on a retry is harmless."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["X-Coordo-Email-Id"])
        target = self.directory / f"{name}.eml"
        partial = self.directory / f".{name}.eml.tmp"
        partial.write_bytes(message.as_bytes())
        partial.replace(target)  # atomic: a reader never sees half an e-mail

    def close(self) -> None:
        pass


class SmtpTransport:
    """smtplib, one connection per batch, reopened after an error."""

    def __init__(self, url: str) -> None:
        self.target = domain.parse_smtp_url(url)
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        smtp: smtplib.SMTP
        if target.ssl:
            smtp = smtplib.SMTP_SSL(
                target.host, target.port, timeout=SMTP_TIMEOUT_S, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=SMTP_TIMEOUT_S)
            if target.starttls:
                smtp.starttls(context=ssl.create_default_context())
        if target.username:
            smtp.login(target.username, target.password or "")
        return smtp

    def send(self, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:  # noqa: BLE001 - the connection is gone anyway
                smtp.close()


def transport_from_env() -> Transport:
    url = env("COORDO_SMTP_URL")
    if url:
        return SmtpTransport(url)
    return FileTransport(var_dir() / "mail")


def build_message(row: OutgoingEmail, to_address: str, sender: str, domain_name: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    # Stable per row: a copy sent again after a crash carries the same id.
    message["Message-ID"] = f"<{row.id}@{domain_name}>"
    message["X-Coordo-Email-Id"] = row.id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(row.body_text, charset="utf-8")
    return message


class MailSender:
    def __init__(
        self,
        db: Database,
        transport_factory: Callable[[], Transport] = transport_from_env,
        *,
        sender: str = DEFAULT_FROM,
        batch_size: int = 50,
        idle_wait_s: float = 1.0,
    ) -> None:
        self.db = db
        self.transport_factory = transport_factory
        self.sender = sender
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.domain_name = sender.rsplit("@", 1)[-1].strip("> ") or "coordo.local"

    def _claim(self, now: datetime) -> list[tuple[OutgoingEmail, str | None]]:
        """Rows due now, each held for LEASE, with the best address known for it."""
        with self.db.session_factory() as session, session.begin():
            query = (
                select(OutgoingEmail)
                .where(
                    OutgoingEmail.status == "pending",
                    OutgoingEmail.next_attempt_at <= now,
                    or_(OutgoingEmail.locked_until.is_(None), OutgoingEmail.locked_until < now),
                )
                .order_by(OutgoingEmail.created_at, OutgoingEmail.id)
                .limit(self.batch_size)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = list(session.scalars(query))
            claimed = []
            for row in rows:
                row.locked_until = now + LEASE
                address = row.to_address
                if address is None:
                    # The person may have registered after the event: look again.
                    person = session.get(Person, row.person_id)
                    address = person.email if person else None
                claimed.append((row, address))
            return claimed

    def _finish(self, row_id: str, *, address: str | None, error: str | None, now: datetime) -> None:
        with self.db.session_factory() as session, session.begin():
            row = session.get(OutgoingEmail, row_id)
            if row is None:
                return
            row.locked_until = None
            if error is None:
                row.status = "sent"
                row.sent_at = utcnow()
                row.to_address = address
                row.last_error = None
            else:
                row.attempts += 1
                row.next_attempt_at = now + domain.backoff(row.attempts)
                row.last_error = error[:500]

    def send_pending(self, now: datetime | None = None) -> int:
        """Send one batch of due e-mails; return how many were sent."""
        now = now or utcnow()
        claimed = self._claim(now)
        if not claimed:
            return 0
        sent = 0
        unreachable: str | None = None
        transport = self.transport_factory()
        try:
            for row, address in claimed:
                if not address:
                    self._finish(
                        row.id, address=None, error="no e-mail address known for the person", now=now
                    )
                    continue
                if unreachable is not None:
                    self._finish(row.id, address=address, error=unreachable, now=now)
                    continue
                try:
                    transport.send(build_message(row, address, self.sender, self.domain_name))
                except Exception as exc:  # noqa: BLE001 - any failure is retried later
                    error = f"{exc.__class__.__name__}: {exc}"
                    log.warning("e-mail %s not sent (attempt %d): %s", row.id, row.attempts + 1, error)
                    if isinstance(exc, UNREACHABLE):
                        unreachable = error
                    self._finish(row.id, address=address, error=error, now=now)
                    continue
                self._finish(row.id, address=address, error=None, now=now)
                sent += 1
        finally:
            transport.close()
        return sent

    def run(self, stop: threading.Event) -> None:
        log.info("e-mail sender started")
        failures = 0
        while not stop.is_set():
            try:
                sent = self.send_pending()
                failures = 0
            except Exception:  # database hiccup: keep the sender alive
                failures += 1
                log.exception("e-mail sender error")
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if sent < self.batch_size:
                stop.wait(self.idle_wait_s)
        log.info("e-mail sender stopped")


def background(_settings: Settings, db: Database) -> list[Callable[[threading.Event], Any]]:
    """The worker's background jobs: the e-mail sender."""
    sender = MailSender(db, sender=env("COORDO_MAIL_FROM", DEFAULT_FROM) or DEFAULT_FROM)
    return [sender.run]

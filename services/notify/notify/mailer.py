"""The e-mail sender: delivers `outgoing_emails` rows over SMTP, or into .eml files.

Runs as a background thread of the notify worker (never in a web process). A row is
claimed for a short lease (FOR UPDATE SKIP LOCKED on PostgreSQL), so two workers never
send it both; sent; then marked sent. A refusal (4xx/5xx) or a connection failure leaves
it pending, retried with backoff (5 s doubling up to 15 min) and never dropped. The one
window left for a duplicate is a crash (or a lost connection) after the SMTP server
accepted the DATA and before the mark is committed; the copy then carries the same
Message-ID (the row id), so mail systems can tell it is the same message.

Without `COORDO_SMTP_URL` the embedded sink writes each e-mail as
`<COORDO_VAR_DIR or ./var>/mail/<id>.eml`, readable by any mail client.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import case, event, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session, object_session

from chassis.db import Database, utcnow
from chassis.settings import Settings, env, var_dir
from notify import domain, render
from notify.models import OutgoingEmail, Person

log = logging.getLogger(__name__)

DEFAULT_FROM = "Coordo <ne-pas-repondre@coordo.local>"
LEASE = timedelta(minutes=2)
SMTP_TIMEOUT_S = 10.0


# The server cannot be reached: the rest of the batch would fail the same way.
def rejected_for_good(exc: BaseException) -> bool:
    """A 5xx answer (unknown mailbox, refused recipient) will not change on a retry; a 4xx may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
    return False


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

    def __init__(self, target: domain.SmtpTarget | str, *, timeout_s: float = SMTP_TIMEOUT_S) -> None:
        self.target = domain.parse_smtp_url(target) if isinstance(target, str) else target
        self.timeout_s = timeout_s
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        smtp: smtplib.SMTP
        if target.ssl:
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=self.timeout_s, context=tls_context())
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=self.timeout_s)
            if target.starttls:
                smtp.starttls(context=tls_context())
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


def tls_context() -> ssl.SSLContext:
    """Verifies the server's certificate: system CAs, or COORDO_SMTP_CA_FILE (a private CA)."""
    return ssl.create_default_context(cafile=env("COORDO_SMTP_CA_FILE"))


def transport_from_env() -> Transport:
    """COORDO_SMTP_URL, with COORDO_SMTP_TLS / _USERNAME / _PASSWORD overriding its parts
    (see services/notify/README.md); without it, the .eml file sink."""
    url = env("COORDO_SMTP_URL")
    if url:
        target = domain.parse_smtp_url(
            url,
            tls=env("COORDO_SMTP_TLS"),
            username=env("COORDO_SMTP_USERNAME"),
            password=env("COORDO_SMTP_PASSWORD"),
        )
        return SmtpTransport(target, timeout_s=float(env("COORDO_SMTP_TIMEOUT_S", str(SMTP_TIMEOUT_S)) or 10))
    return FileTransport(var_dir() / "mail")


def _headers(
    message: EmailMessage, *, message_id: str, to_address: str, sender: str, domain_name: str
) -> None:
    message["From"] = sender
    message["To"] = to_address
    # Stable per row: a copy sent again after a crash carries the same id.
    message["Message-ID"] = f"<{message_id}@{domain_name}>"
    message["X-Coordo-Email-Id"] = message_id
    message["Auto-Submitted"] = "auto-generated"


def build_message(row: OutgoingEmail, to_address: str, sender: str, domain_name: str) -> EmailMessage:
    message = EmailMessage()
    _headers(message, message_id=row.id, to_address=to_address, sender=sender, domain_name=domain_name)
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    message.set_content(row.body_text, charset="utf-8")
    return message


def build_digest(rows: list[OutgoingEmail], to_address: str, sender: str, domain_name: str) -> EmailMessage:
    """One e-mail for the day's notifications of one person (the first row's id is its id)."""
    message = EmailMessage()
    _headers(message, message_id=rows[0].id, to_address=to_address, sender=sender, domain_name=domain_name)
    message["Subject"] = f"[Coordo] Vos notifications du jour ({len(rows)})"
    message["Date"] = format_datetime(utcnow())
    message.set_content(render.digest([row.summary for row in rows]), charset="utf-8")
    return message


@dataclass
class _Parcel:
    """What goes out in one SMTP transaction: one row, or the rows of one digest."""

    rows: list[OutgoingEmail]
    address: str | None

    @property
    def ids(self) -> list[str]:
        return [row.id for row in self.rows]


# The senders of this process, woken as soon as a transaction that queued an e-mail
# commits: the worker's consumers queue them in the same process, so an e-mail does not
# wait. Between wake-ups a sender sleeps until the next e-mail falls due (a retry, a
# digest, the end of quiet hours), at most `idle_wait_s`: the net for e-mails queued by
# another process.
_SENDERS: weakref.WeakSet[MailSender] = weakref.WeakSet()
_QUEUED = "coordo_mail_queued"


@event.listens_for(OutgoingEmail, "after_insert")
def _mark_queued(_mapper: Any, _connection: Any, target: OutgoingEmail) -> None:
    session = object_session(target)
    if session is not None:
        session.info[_QUEUED] = True


@event.listens_for(Session, "after_commit")
def _wake_senders(session: Session) -> None:
    if session.info.pop(_QUEUED, False):
        for sender in list(_SENDERS):
            sender.wake.set()


@event.listens_for(Session, "after_rollback")
def _forget_queued(session: Session) -> None:
    session.info.pop(_QUEUED, None)


class MailSender:
    def __init__(
        self,
        db: Database,
        transport_factory: Callable[[], Transport] = transport_from_env,
        *,
        sender: str = DEFAULT_FROM,
        batch_size: int = 50,
        idle_wait_s: float = 5.0,
    ) -> None:
        self.db = db
        self.transport_factory = transport_factory
        self.sender = sender
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.domain_name = sender.rsplit("@", 1)[-1].strip("> ") or "coordo.local"
        self.wake = threading.Event()  # set to look for e-mails at once
        _SENDERS.add(self)
        # When the next pending e-mail may be claimed: its next attempt, or the end of the
        # lease another sender holds on it.
        due = OutgoingEmail.next_attempt_at
        leased = OutgoingEmail.locked_until
        self._next_due = select(
            type_coerce(func.min(case((leased > due, leased), else_=due)), due.type)
        ).where(OutgoingEmail.status == "pending")

    def _address(self, session: Any, row: OutgoingEmail) -> str | None:
        if row.to_address:
            return row.to_address
        if row.person_id:
            # The person may have registered after the event: look again.
            person = session.get(Person, row.person_id)
            return person.email if person else None
        if row.type == "directory_entry_request":
            return env("COORDO_DIRECTORY_CENTRE_EMAIL")
        return None

    def _claim(self, now: datetime) -> list[_Parcel]:
        """Rows due now, each held for LEASE, with the best address known for it; the due
        digest rows of one person make one parcel."""
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
            parcels: list[_Parcel] = []
            digests: dict[str, _Parcel] = {}
            for row in rows:
                row.locked_until = now + LEASE
                address = self._address(session, row)
                if row.digest and address:
                    parcel = digests.get(address)
                    if parcel is None:
                        parcel = digests[address] = _Parcel([], address)
                        parcels.append(parcel)
                    parcel.rows.append(row)
                else:
                    parcels.append(_Parcel([row], address))
            session.flush()
            for row in rows:
                session.expunge(row)
            return parcels

    def _finish(self, parcel: _Parcel, *, error: str | None, now: datetime, permanent: bool = False) -> None:
        with self.db.session_factory() as session, session.begin():
            if error is None:
                # One statement and its commit: this is the sender's hot path.
                sent_at = utcnow()
                first, rest = parcel.ids[0], parcel.ids[1:]
                done = {
                    "locked_until": None,
                    "sent_at": sent_at,
                    "to_address": parcel.address,
                    "last_error": None,
                }
                session.execute(
                    update(OutgoingEmail).where(OutgoingEmail.id == first).values(status="sent", **done)
                )
                if rest:
                    session.execute(
                        update(OutgoingEmail)
                        .where(OutgoingEmail.id.in_(rest))
                        .values(status="merged", **done)
                    )
                return
            for row_id in parcel.ids:
                row = session.get(OutgoingEmail, row_id)
                if row is None:
                    continue
                row.locked_until = None
                row.attempts += 1
                row.last_error = error[:500]
                if permanent:
                    # Kept, never retried: visible with its error for whoever fixes the address.
                    row.status = "rejected"
                else:
                    row.next_attempt_at = now + domain.backoff(row.attempts)

    def _message(self, parcel: _Parcel, address: str) -> EmailMessage:
        if len(parcel.rows) > 1 or parcel.rows[0].digest:
            return build_digest(parcel.rows, address, self.sender, self.domain_name)
        return build_message(parcel.rows[0], address, self.sender, self.domain_name)

    def send_pending(self, now: datetime | None = None) -> int:
        """Send one batch of due e-mails; return how many e-mails left (a digest counts one)."""
        now = now or utcnow()
        parcels = self._claim(now)
        if not parcels:
            return 0
        sent = 0
        unreachable: str | None = None
        transport = self.transport_factory()
        try:
            for parcel in parcels:
                if not parcel.address:
                    self._finish(parcel, error="no e-mail address known yet", now=now)
                    continue
                if unreachable is not None:
                    self._finish(parcel, error=unreachable, now=now)
                    continue
                try:
                    transport.send(self._message(parcel, parcel.address))
                except Exception as exc:  # noqa: BLE001 - any failure is retried later
                    error = f"{exc.__class__.__name__}: {exc}"
                    log.warning(
                        "e-mail %s not sent (attempt %d): %s",
                        parcel.ids[0],
                        parcel.rows[0].attempts + 1,
                        error,
                    )
                    if isinstance(exc, UNREACHABLE):
                        unreachable = error
                    self._finish(parcel, error=error, now=now, permanent=rejected_for_good(exc))
                    continue
                self._finish(parcel, error=None, now=now)
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
                # A full batch: more may be due at once. Otherwise sleep until the next one.
                wait = self.idle_wait(utcnow()) if sent < self.batch_size else 0.0
                failures = 0
            except Exception:  # database hiccup: keep the sender alive
                failures += 1
                log.exception("e-mail sender error")
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if wait:
                self.wake.wait(wait)
                self.wake.clear()

    def idle_wait(self, now: datetime) -> float:
        """Seconds to sleep unless woken: until the next pending e-mail falls due, at least
        50 ms (a row another sender is claiming right now looks due), at most `idle_wait_s`."""
        with self.db.engine.connect() as connection:
            due = connection.execute(self._next_due).scalar()
        if due is None:
            return self.idle_wait_s
        return min(self.idle_wait_s, max(0.05, (due - now).total_seconds()))


def background(_settings: Settings, db: Database) -> list[Callable[[threading.Event], Any]]:
    """The worker's background jobs: the e-mail senders. On PostgreSQL several of them
    (COORDO_MAIL_SENDERS, default 3) share the outbox through SKIP LOCKED claims, so the
    waits on the database and the SMTP server overlap; SQLite has one writer: one sender."""
    count = 1 if db.is_sqlite else max(1, int(env("COORDO_MAIL_SENDERS", "3") or 3))
    senders = [
        MailSender(
            db,
            sender=env("COORDO_MAIL_FROM", DEFAULT_FROM) or DEFAULT_FROM,
            idle_wait_s=float(env("COORDO_MAIL_POLL_S", "5") or 5),
            batch_size=10 if count > 1 else 50,
        )
        for _ in range(count)
    ]
    return [sender.run for sender in senders]

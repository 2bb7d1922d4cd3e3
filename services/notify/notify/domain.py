"""Notification rules (NOT-1 to NOT-4): the catalogue of types, preferences, recipients,
the French wording of codes, the retry policy and the SMTP settings. Pure, no I/O.

NOT-4: a notification names the event and links to the object, and never carries medical
content. Only ids, codes (translated here into French labels), dates and professionals'
names ever reach a message: the events carry nothing else, and the renderers are given
nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from urllib.parse import unquote, urlsplit

CHANNELS = ("email", "in_app")
GROUPS = {"tasks": "Tâches", "file": "Dossier", "agenda": "Agenda", "global": "Global"}

BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(minutes=15)


@dataclass(frozen=True)
class NotificationType:
    """One line of the preferences screen (NOT-2, NOT-3)."""

    code: str
    group: str
    label: str  # the preference's wording, as on the booklet's screen
    title: str  # the notification's title and the e-mail's subject
    events: tuple[str, ...]  # routing keys that drive it; none yet: waiting for its producer
    object_type: str
    default_email: bool = True
    default_in_app: bool = True
    configurable: bool = True  # False: a transactional e-mail, always sent (invitation...)

    @property
    def status(self) -> str:
        return "wired" if self.events else "waiting_for_producer"

    def default(self, channel: str) -> bool:
        return self.default_email if channel == "email" else self.default_in_app


def _t(
    code: str, group: str, label: str, title: str, events: tuple[str, ...], object_type: str, **kw: bool
) -> NotificationType:
    return NotificationType(code, group, label, title, events, object_type, **kw)


# Defaults as on the booklet's screen (fiche 36): every box checked, mail and application.
# Exceptions: "new task on a file I am identified on" reaches every habilitated member of
# the circle, so by e-mail it is opt-in; being added to a circle or habilitated is not a
# notification of the booklet at all: in the bell only unless asked (the invitation or the
# task that follows says it by e-mail).
CATALOGUE: tuple[NotificationType, ...] = (
    # -- tâches
    _t(
        "task_assigned",
        "tasks",
        "Être notifié lorsqu'une tâche m'est affectée",
        "Une tâche vous a été affectée",
        ("taches.TaskAssigned",),
        "task",
    ),
    _t(
        "task_status_changed",
        "tasks",
        "Être notifié lorsque le statut d'une tâche que j'ai créée change",
        "Changement de statut d'une tâche",
        ("taches.TaskStatusChanged",),
        "task",
    ),
    _t(
        "task_created",
        "tasks",
        "Être notifié d'une nouvelle tâche sur un dossier sur lequel je suis identifié",
        "Nouvelle tâche sur un dossier patient",
        ("taches.TaskCreated",),
        "task",
        default_email=False,
    ),
    _t(
        "task_due_soon",
        "tasks",
        "Être notifié lorsqu'une tâche qui m'est affectée arrive à échéance",
        "Une tâche arrive à échéance",
        ("taches.TaskDueSoon",),
        "task",
    ),
    # -- dossier
    _t(
        "break_glass_access",
        "file",
        "Être notifié lorsqu'un professionnel accède en bris de glace à un dossier sur lequel je suis identifié",
        "Accès en bris de glace à un dossier",
        ("cercle.BreakGlassAccessGranted",),
        "patient",
    ),
    _t(
        "patient_deceased",
        "file",
        "Être notifié lorsqu'un patient/usager est décédé",
        "Décès d'un patient/usager",
        ("dossier.PatientDeceased",),
        "patient",
    ),
    _t(
        "file_status_changed",
        "file",
        "Être notifié lorsque le statut d'un dossier est modifié",
        "Changement de statut d'un dossier",
        ("dossier.FileStatusChanged",),
        "patient",
    ),
    _t(
        "feed_note_added",
        "file",
        "Être notifié lorsqu'une note est écrite dans le fil d'actualité d'un dossier sur lequel je suis identifié",
        "Nouvelle note dans un fil d'actualité",
        ("dossier.FeedNoteAdded",),
        "patient",
    ),
    _t(
        "document_added",
        "file",
        "Être notifié lorsqu'un document est ajouté à un dossier sur lequel je suis identifié",
        "Nouveau document dans un dossier",
        ("documents.DocumentAdded",),
        "patient",
    ),
    _t(
        "thematic_added",
        "file",
        "Être notifié lorsqu'une thématique est ajoutée à un dossier sur lequel je suis identifié",
        "Nouvelle thématique dans un dossier",
        ("dossier.FileThematicsAdded",),
        "patient",
    ),
    _t(
        "favourite_group_shared",
        "file",
        "Être notifié lorsqu'un groupe de favoris est partagé avec moi",
        "Partage d'un groupe de favoris",
        ("dossier.FavouriteGroupShared",),
        "favourite_group",
    ),
    _t(
        "care_circle_member_added",
        "file",
        "Être notifié lorsque l'on m'ajoute au cercle de soins d'un patient",
        "Ajout au cercle de soins d'un patient",
        ("cercle.CareCircleMemberAdded",),
        "patient",
        default_email=False,
    ),
    _t(
        "habilitation_granted",
        "file",
        "Être notifié lorsque je suis habilité sur un dossier patient",
        "Habilitation sur un dossier patient",
        ("cercle.HabilitationGranted",),
        "patient",
        default_email=False,
    ),
    _t(
        "invited_colleague_registered",
        "file",
        "Être notifié lorsqu'un professionnel que j'ai invité s'inscrit",
        "Inscription d'un professionnel invité",
        ("cercle.CareCircleInvitationAccepted",),
        "patient",
    ),
    # -- agenda
    _t(
        "appointment_added",
        "agenda",
        "Être notifié lorsqu'un rdv est ajouté à mon agenda par un autre professionnel",
        "Nouveau rendez-vous dans votre agenda",
        ("agenda.AppointmentScheduled",),
        "appointment",
    ),
    _t(
        "appointment_changed",
        "agenda",
        "Être notifié lorsqu'un rdv est modifié par un autre professionnel",
        "Rendez-vous modifié",
        ("agenda.AppointmentChanged",),
        "appointment",
    ),
    _t(
        "appointment_cancelled",
        "agenda",
        "Être notifié lorsqu'un rdv est annulé par un autre professionnel",
        "Rendez-vous annulé",
        ("agenda.AppointmentCancelled",),
        "appointment",
    ),
    _t(
        "appointment_deleted",
        "agenda",
        "Être notifié lorsqu'un rdv est supprimé par un autre professionnel",
        "Rendez-vous supprimé",
        (),
        "appointment",
    ),
    # -- global
    _t(
        "habilitation_removed",
        "global",
        "Suppression d'une habilitation sur un patient",
        "Suppression d'une habilitation",
        ("cercle.HabilitationRevoked",),
        "patient",
    ),
    _t(
        "file_accessed",
        "global",
        "Un professionnel accède à un dossier",
        "Accès d'un professionnel à un dossier",
        (),
        "patient",
    ),
    _t("new_alert", "global", "Nouvelle alerte sur un dossier patient", "Nouvelle alerte", (), "patient"),
    _t(
        "delegation_request",
        "global",
        "Demande de délégation de mon compte",
        "Demande de délégation en attente",
        ("identity.DelegationRequested",),
        "delegation",
    ),
    _t(
        "delegation_changed",
        "global",
        "Acceptation, refus ou fin d'une délégation",
        "Délégation mise à jour",
        ("identity.DelegationGranted", "identity.DelegationRefused", "identity.DelegationRevoked"),
        "delegation",
    ),
    _t(
        "password_reset",
        "global",
        "Réinitialisation du mot de passe",
        "Réinitialisation du mot de passe",
        (),
        "account",
    ),
    _t(
        "account_created",
        "global",
        "Création du compte : initialisation du mot de passe",
        "Création de votre compte",
        (),
        "account",
    ),
    _t("otp_code", "global", "Envoi du Code OTP", "Code de connexion", (), "account"),
    _t(
        "new_user_registration",
        "global",
        "Inscription d'un nouvel utilisateur",
        "Inscription d'un nouvel utilisateur",
        (),
        "account",
    ),
    # -- transactional e-mails, not preferences: the addressee has no account yet, or is a service
    _t(
        "care_circle_invitation",
        "global",
        "Invitation à rejoindre Coordo (toujours envoyée)",
        "Invitation à rejoindre Coordo",
        ("cercle.CareCircleInvitationSent",),
        "invitation",
        default_in_app=False,
        configurable=False,
    ),
    _t(
        "directory_entry_request",
        "global",
        "Demande d'inscription à l'annuaire (envoyée au centre de services)",
        "Demande d'inscription à l'annuaire",
        ("cercle.DirectoryEntryRequested",),
        "directory_request",
        default_in_app=False,
        configurable=False,
    ),
)
TYPES: dict[str, NotificationType] = {t.code: t for t in CATALOGUE}


# -- preferences (NOT-2) ---------------------------------------------------------------------


def wanted_channels(code: str, overrides: Mapping[str, bool]) -> dict[str, bool]:
    """Channel -> on/off for one type: the owner's choice where made, else the default."""
    kind = TYPES[code]
    if not kind.configurable:
        return {c: kind.default(c) for c in CHANNELS}
    return {c: overrides.get(c, kind.default(c)) for c in CHANNELS}


def types_of_group(group: str | None) -> list[str]:
    """The configurable types a reset applies to (None: all of them)."""
    return [t.code for t in CATALOGUE if t.configurable and (group is None or t.group == group)]


class PreferenceError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def check_preference_change(code: str, channels: Mapping[str, bool | None]) -> None:
    kind = TYPES.get(code)
    if kind is None:
        raise PreferenceError("type", f"unknown notification type {code!r}")
    if not kind.configurable:
        raise PreferenceError("type", f"{code!r} is always sent and cannot be turned off")
    if all(v is None for v in channels.values()):
        raise PreferenceError("email", "give email and/or in_app")


# -- daily digest and quiet hours ([beyond]) ---------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """How one owner wants its e-mails: each at once or one daily digest; quiet hours."""

    email_mode: str = "immediate"  # immediate | daily_digest
    quiet_start: time | None = None
    quiet_end: time | None = None
    digest_time: time = time(7, 0)


def in_quiet_hours(moment: time, start: time | None, end: time | None) -> bool:
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # spans midnight, e.g. 20:00-08:00


def email_due_at(now: datetime, delivery: Delivery, zone: tzinfo) -> datetime:
    """When an e-mail created now may leave: now, the end of the quiet hours, or the next
    digest time (aware datetimes; the owner's wall clock is in `zone`)."""
    local = now.astimezone(zone)
    if delivery.email_mode == "daily_digest":
        due = datetime.combine(local.date(), delivery.digest_time, zone)
        if due <= local:
            due += timedelta(days=1)
        return due
    if delivery.quiet_end is not None and in_quiet_hours(
        local.timetz().replace(tzinfo=None), delivery.quiet_start, delivery.quiet_end
    ):
        due = datetime.combine(local.date(), delivery.quiet_end, zone)
        if due <= local:
            due += timedelta(days=1)
        return due
    return now


# -- recipients --------------------------------------------------------------------------------

Recipient = tuple[str, str]  # (kind "person" | "structure", id)


def recipients_except(
    candidates: Iterable[Recipient], *, actor: str | None, also: Iterable[Recipient] = ()
) -> list[Recipient]:
    """Unique, in order, without the person who acted (they know already) nor `also`."""
    skip = set(also)
    if actor:
        skip.add(("person", actor))
    seen: list[Recipient] = []
    for recipient in candidates:
        if recipient not in skip and recipient not in seen:
            seen.append(recipient)
    return seen


def delegation_parties(
    event_type: str, grantor_id: str, delegate_id: str, actor: str | None
) -> list[Recipient]:
    """Who hears of a delegation: the grantor of a request; the other party of an answer
    or a revocation; both when it expired (no one acted)."""
    if event_type == "DelegationRequested":
        return [("person", grantor_id)]
    if event_type in ("DelegationGranted", "DelegationRefused"):
        return [("person", delegate_id)]
    if actor == grantor_id:
        return [("person", delegate_id)]
    if actor == delegate_id:
        return [("person", grantor_id)]
    return [("person", grantor_id), ("person", delegate_id)]


# -- French wording of codes (never user text) -------------------------------------------------

TASK_TYPES = {
    "appeler_famille": "Appeler la famille",
    "appeler_patient": "Appeler le patient",
    "bilan_ppcs": "Bilan du PPCS",
    "autre": "Autre",
}
LEVELS = {"information": "information", "important": "important", "urgent": "urgent"}
TASK_STATUSES = {"a_traiter": "À traiter", "en_cours": "En cours", "traitee": "Traitée", "annulee": "Annulée"}
DELEGATION_SCOPES = {"dossiers": "Dossiers & RCP", "discussions": "Discussions"}


def label(table: Mapping[str, str], code: str | None) -> str:
    """The French label of a code; an unknown code is shown as is (it is a code, not text)."""
    if code is None:
        return ""
    return table.get(code, code)


def french_date(value: str | None) -> str | None:
    if not value:
        return None
    return date.fromisoformat(value[:10]).strftime("%d/%m/%Y")


def french_datetime(value: str | None, zone: tzinfo) -> str | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
    return moment.strftime("%d/%m/%Y à %H:%M")


# Only these names may reach a template: ids are not shown, codes come as labels. A test
# renders every template and checks nothing else is asked for (NOT-4).
TEMPLATE_FIELDS = frozenset(
    {
        "recipient_name",
        "actor_name",
        "via_structure",
        "link",
        "public_url",
        "task_type",
        "level",
        "due_date",
        "from_status",
        "to_status",
        "status",
        "previous_status",
        "expires_at",
        "reason_code",
        "start",
        "changed",
        "pending_count",
        "scopes",
        "cause",
        "roles",
        "professional",
        "invitation_link",
        "files",
    }
)


# -- retries and SMTP --------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failures: 5 s, 10 s, 20 s, … up to 15 min.
    Never a last try: an e-mail is not dropped (NOT-1)."""
    if attempts <= 0:
        return timedelta(0)
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(attempts - 1, 20))


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    ssl: bool  # implicit TLS: TLS from the first byte (smtps, port 465)
    starttls: bool  # plain connection upgraded with STARTTLS (submission, port 587)


TLS_MODES = ("none", "starttls", "implicit")


def parse_smtp_url(
    url: str, *, tls: str | None = None, username: str | None = None, password: str | None = None
) -> SmtpTarget:
    """`smtp://[user:password@]host[:port][?starttls=true]` or `smtps://…` (implicit TLS).

    `tls` (none|starttls|implicit), `username` and `password` come from their own variables
    and win over the URL, so that a secret need not be written into a URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("COORDO_SMTP_URL must look like smtp://[user:password@]host:port")
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    mode = "implicit" if parts.scheme == "smtps" else "none"
    if query.get("starttls", "").lower() in ("1", "true", "yes"):
        mode = "starttls"
    if tls:
        if tls not in TLS_MODES:
            raise ValueError(f"COORDO_SMTP_TLS must be one of {', '.join(TLS_MODES)}")
        mode = tls
    ssl = mode == "implicit"
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if ssl else 587 if mode == "starttls" else 25),
        username=username or (unquote(parts.username) if parts.username else None),
        password=password or (unquote(parts.password) if parts.password else None),
        ssl=ssl,
        starttls=mode == "starttls",
    )

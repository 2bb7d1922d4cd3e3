"""Task rules (TSK-1..TSK-5): pure Python, no I/O.

Every violation names the field it is about, so the API can answer a 422 problem
pointing at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

# Task types of the booklet (Fiche 23), seeded into the admin-editable `task_types` table.
DEFAULT_TASK_TYPES: dict[str, str] = {
    "appeler_famille": "Appeler famille/entourage",
    "appeler_patient": "Appeler patient/usager",
    "bilan_ppcs": "Bilan du PPCS",
    "autre": "Autre",
}
# A task of this type must say what it is about (its label).
FREE_TYPE = "autre"
TYPE_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
ZONE_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_TYPE_LABEL = 120

LEVELS = ("information", "important", "urgent")
LEVEL_RANK = {"urgent": 0, "important": 1, "information": 2}
STATUSES = ("a_traiter", "en_cours", "traitee", "annulee")
OPEN_STATUSES = ("a_traiter", "en_cours")
DEFAULT_DASHBOARD_STATUSES = OPEN_STATUSES
RECIPIENT_KINDS = ("person", "structure")

# TSK-3: one click moves a task to the next status; annulee goes back to a_traiter.
NEXT_STATUS: dict[str, str] = {
    "a_traiter": "en_cours",
    "en_cours": "traitee",
    "traitee": "annulee",
    "annulee": "a_traiter",
}
INITIAL_STATUS = "a_traiter"
# The creation pop-up lets the creator pick the status (booklet Fiche 23: "à traiter/traitée...");
# a task is not born cancelled.
CREATION_STATUSES = ("a_traiter", "en_cours", "traitee")

# Dashboard (TSK-4): whose tasks, how to sort, which attachments ("actions").
CONTEXTS = ("all", "mine", "structure", "created")
SORTS = ("due_date", "level", "status", "type", "created_at", "updated_at")
ORDERS = ("asc", "desc")
ACTIONS = ("form", "documents")

MAX_LABEL = 200
MAX_COMMENT = 4000
MAX_RECIPIENTS = 50
MAX_DOCUMENTS = 50
MAX_OTHER_PATIENTS = 20


class TaskRuleError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


class TransitionError(ValueError):
    """A status change that the cycle does not allow (the task moved meanwhile, or a jump)."""

    def __init__(self, current: str, requested: str) -> None:
        allowed = NEXT_STATUS.get(current)
        super().__init__(f"a task in status {current} can only move to {allowed}, not to {requested}")
        self.current = current
        self.requested = requested
        self.allowed = allowed


class ReadOnlyError(ValueError):
    """TSK-3: a traitee task refuses edits until it is moved on along the cycle."""

    def __init__(self, status: str) -> None:
        super().__init__(f"a task in status {status} is read-only: move it on along the cycle to change it")
        self.status = status


@dataclass(frozen=True)
class Recipient:
    kind: str
    id: str


@dataclass(frozen=True)
class NewTask:
    type: str
    label: str
    level: str
    comment: str | None
    due_date: date | None
    status: str
    recipients: tuple[Recipient, ...]
    other_patients: tuple[str, ...]
    form_id: str | None
    documents: tuple[str, ...]
    zone: str | None


# -- task types (admin-editable list) ---------------------------------------------------


def check_type(value: str, active_types: Mapping[str, str]) -> str:
    """The type must be one of the currently active types of the configurable list."""
    if value not in active_types:
        raise TaskRuleError("type", f"type must be one of {', '.join(sorted(active_types))}")
    return value


def check_type_code(value: str) -> str:
    if not TYPE_CODE.match(value or ""):
        raise TaskRuleError(
            "code", "code must be lower-case letters, digits or _ (1 to 40), starting with a letter"
        )
    return value


def check_type_label(value: str | None) -> str:
    label = " ".join((value or "").split())
    if not label:
        raise TaskRuleError("label", "label is required")
    if len(label) > MAX_TYPE_LABEL:
        raise TaskRuleError("label", f"label may hold at most {MAX_TYPE_LABEL} characters")
    return label


# -- task fields ---------------------------------------------------------------------------


def check_level(value: str) -> str:
    if value not in LEVELS:
        raise TaskRuleError("level", f"level must be one of {', '.join(LEVELS)}")
    return value


def check_label(task_type: str, type_label: str, value: str | None) -> str:
    """The label defaults to the type's name; a task of type `autre` must say what it is."""
    label = " ".join((value or "").split())
    if not label:
        if task_type == FREE_TYPE:
            raise TaskRuleError("label", "label is required for a task of type autre")
        return type_label
    if len(label) > MAX_LABEL:
        raise TaskRuleError("label", f"label may hold at most {MAX_LABEL} characters")
    return label


def check_comment(value: str | None) -> str | None:
    comment = (value or "").strip()
    if len(comment) > MAX_COMMENT:
        raise TaskRuleError("comment", f"comment may hold at most {MAX_COMMENT} characters")
    return comment or None


def check_zone(value: str | None) -> str | None:
    zone = (value or "").strip()
    if not zone:
        return None
    if not ZONE_CODE.match(zone):
        raise TaskRuleError("zone", "zone must be a zone code (letters, digits, . _ -, at most 64)")
    return zone


def check_recipients(
    values: Sequence[Recipient], default: Recipient, include_default: bool = False
) -> tuple[Recipient, ...]:
    """Recipients in the order given, without duplicates; the creator when none is given.

    With include_default the creator comes first whatever else is given: the booklet's
    "la personne créatrice fait automatiquement partie des destinataires" (Fiche 23).
    """
    if not values and not include_default:
        return (default,)
    seen: dict[tuple[str, str], Recipient] = {}
    if include_default:
        seen[(default.kind, default.id)] = default
    for recipient in values:
        if recipient.kind not in RECIPIENT_KINDS:
            raise TaskRuleError("recipients", "a recipient is a person or a structure")
        if not recipient.id.strip():
            raise TaskRuleError("recipients", "a recipient needs an id")
        seen.setdefault((recipient.kind, recipient.id), recipient)
    if len(seen) > MAX_RECIPIENTS:
        raise TaskRuleError("recipients", f"a task may have at most {MAX_RECIPIENTS} recipients")
    return tuple(seen.values())


def check_other_patients(patient_id: str, values: Sequence[str], linked: set[str]) -> tuple[str, ...]:
    """Other patients concerned (Fiche 23): only files linked to this one (PAT-8)."""
    others = tuple(dict.fromkeys(v for v in values if v != patient_id))
    if len(others) > MAX_OTHER_PATIENTS:
        raise TaskRuleError("other_patient_ids", f"at most {MAX_OTHER_PATIENTS} other patients")
    refused = [p for p in others if p not in linked]
    if refused:
        raise TaskRuleError(
            "other_patient_ids", f"only patients linked to this file may be added: {', '.join(refused)}"
        )
    return others


def check_documents(values: Sequence[str]) -> tuple[str, ...]:
    documents = tuple(dict.fromkeys(values))
    if len(documents) > MAX_DOCUMENTS:
        raise TaskRuleError("document_ids", f"at most {MAX_DOCUMENTS} documents")
    return documents


def check_creation_status(value: str | None) -> str:
    status = value or INITIAL_STATUS
    if status not in CREATION_STATUSES:
        raise TaskRuleError("status", f"a new task's status must be one of {', '.join(CREATION_STATUSES)}")
    return status


def new_task(
    *,
    task_type: str,
    active_types: Mapping[str, str],
    label: str | None,
    level: str,
    comment: str | None,
    due_date: date | None,
    status: str | None = None,
    recipients: Sequence[Recipient],
    creator: Recipient,
    creator_is_recipient: bool = False,
    patient_id: str = "",
    other_patients: Sequence[str] = (),
    linked_patients: set[str] | None = None,
    form_id: str | None = None,
    documents: Sequence[str] = (),
    zone: str | None = None,
) -> NewTask:
    checked_type = check_type(task_type, active_types)
    return NewTask(
        type=checked_type,
        label=check_label(checked_type, active_types[checked_type], label),
        level=check_level(level),
        comment=check_comment(comment),
        due_date=due_date,
        status=check_creation_status(status),
        recipients=check_recipients(recipients, creator, creator_is_recipient),
        other_patients=check_other_patients(patient_id, other_patients, linked_patients or set()),
        form_id=form_id or None,
        documents=check_documents(documents),
        zone=check_zone(zone),
    )


# -- status cycle (TSK-3) ----------------------------------------------------------------


def check_status(value: str) -> str:
    if value not in STATUSES:
        raise TaskRuleError("status", f"status must be one of {', '.join(STATUSES)}")
    return value


def next_status(current: str) -> str:
    return NEXT_STATUS[check_status(current)]


def check_transition(current: str, requested: str) -> str:
    """TSK-3: only the next status of the cycle; asking for it is what 'one click' does.

    Naming the target (rather than 'advance') makes a double click or a concurrent
    change fail loudly instead of moving the task twice.
    """
    check_status(requested)
    if NEXT_STATUS[check_status(current)] != requested:
        raise TransitionError(current, requested)
    return requested


def is_read_only(status: str) -> bool:
    """A traitee task cannot be edited until it is moved on (TSK-3)."""
    return status == "traitee"


def check_editable(status: str) -> None:
    if is_read_only(status):
        raise ReadOnlyError(status)


# -- edits and their history ------------------------------------------------------------


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, from, to) for every field whose value differs, in the order of `after`."""
    return [(name, before.get(name), value) for name, value in after.items() if before.get(name) != value]


# -- dashboard (TSK-4) -----------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardFilter:
    context: str = "all"
    statuses: tuple[str, ...] = DEFAULT_DASHBOARD_STATUSES
    levels: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()
    zones: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    due_from: date | None = None
    due_to: date | None = None
    sort: str = "due_date"
    order: str = "asc"


def parse_recipient(value: str) -> Recipient:
    """A recipient in a query string: `person:<id>` or `structure:<id>`."""
    kind, _, ident = value.partition(":")
    if kind not in RECIPIENT_KINDS or not ident.strip():
        raise TaskRuleError("recipient", "a recipient filter is person:<id> or structure:<id>")
    return Recipient(kind, ident)


def dashboard_filter(
    *,
    context: str | None = None,
    statuses: Sequence[str] | None = None,
    default_statuses: Sequence[str] = DEFAULT_DASHBOARD_STATUSES,
    levels: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    patients: Sequence[str] | None = None,
    recipients: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    due_from: date | None = None,
    due_to: date | None = None,
    sort: str | None = None,
    order: str | None = None,
) -> DashboardFilter:
    ctx = context or "all"
    if ctx not in CONTEXTS:
        raise TaskRuleError("context", f"context must be one of {', '.join(CONTEXTS)}")
    for status in statuses or ():
        check_status(status)
    for level in levels or ():
        check_level(level)
    for action in actions or ():
        if action not in ACTIONS:
            raise TaskRuleError("action", f"action must be one of {', '.join(ACTIONS)}")
    if due_from and due_to and due_from > due_to:
        raise TaskRuleError("due_to", "due_to must not be before due_from")
    if (sort or "due_date") not in SORTS:
        raise TaskRuleError("sort", f"sort must be one of {', '.join(SORTS)}")
    if (order or "asc") not in ORDERS:
        raise TaskRuleError("order", "order must be asc or desc")
    return DashboardFilter(
        context=ctx,
        statuses=tuple(dict.fromkeys(statuses or default_statuses)),
        levels=tuple(dict.fromkeys(levels or ())),
        types=tuple(dict.fromkeys(types or ())),
        patients=tuple(dict.fromkeys(patients or ())),
        recipients=tuple(dict.fromkeys(parse_recipient(r) for r in recipients or ())),
        zones=tuple(dict.fromkeys(zones or ())),
        actions=tuple(dict.fromkeys(actions or ())),
        due_from=due_from,
        due_to=due_to,
        sort=sort or "due_date",
        order=order or "asc",
    )


# -- due soon (TSK-5) ----------------------------------------------------------------------


def due_soon_window(today: date, lead_days: int) -> tuple[date, date]:
    """Open tasks due between today and today + lead time (inclusive) are 'due soon'."""
    if lead_days < 0:
        raise ValueError("lead time must not be negative")
    return today, today + timedelta(days=lead_days)


def is_due_soon(status: str, due: date | None, sent_for: date | None, today: date, lead_days: int) -> bool:
    """Due soon and not announced yet for this due date (a new due date is announced again)."""
    if status not in OPEN_STATUSES or due is None or sent_for == due:
        return False
    start, end = due_soon_window(today, lead_days)
    return start <= due <= end

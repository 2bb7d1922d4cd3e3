"""Task rules (TSK-1, TSK-3): pure Python, no I/O.

Every violation names the field it is about, so the API can answer a 422 problem
pointing at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Task types (TSK-1): code -> label shown in the French interface.
TASK_TYPES: dict[str, str] = {
    "appeler_famille": "Appeler famille/entourage",
    "appeler_patient": "Appeler patient/usager",
    "bilan_ppcs": "Bilan du PPCS",
    "autre": "Autre",
}
LEVELS = ("information", "important", "urgent")
STATUSES = ("a_traiter", "en_cours", "traitee", "annulee")
DEFAULT_DASHBOARD_STATUSES = ("a_traiter", "en_cours")
RECIPIENT_KINDS = ("person", "structure")

# TSK-3: one click moves a task to the next status; annulee goes back to a_traiter.
NEXT_STATUS: dict[str, str] = {
    "a_traiter": "en_cours",
    "en_cours": "traitee",
    "traitee": "annulee",
    "annulee": "a_traiter",
}
INITIAL_STATUS = "a_traiter"

MAX_LABEL = 200
MAX_COMMENT = 4000
MAX_RECIPIENTS = 50


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
    recipients: tuple[Recipient, ...]


def check_type(value: str) -> str:
    if value not in TASK_TYPES:
        raise TaskRuleError("type", f"type must be one of {', '.join(TASK_TYPES)}")
    return value


def check_level(value: str) -> str:
    if value not in LEVELS:
        raise TaskRuleError("level", f"level must be one of {', '.join(LEVELS)}")
    return value


def check_label(task_type: str, value: str | None) -> str:
    """The label defaults to the type's name; a task of type `autre` must say what it is."""
    label = " ".join((value or "").split())
    if not label:
        if task_type == "autre":
            raise TaskRuleError("label", "label is required for a task of type autre")
        return TASK_TYPES[task_type]
    if len(label) > MAX_LABEL:
        raise TaskRuleError("label", f"label may hold at most {MAX_LABEL} characters")
    return label


def check_comment(value: str | None) -> str | None:
    comment = (value or "").strip()
    if len(comment) > MAX_COMMENT:
        raise TaskRuleError("comment", f"comment may hold at most {MAX_COMMENT} characters")
    return comment or None


def check_recipients(values: list[Recipient], default: Recipient) -> tuple[Recipient, ...]:
    """Recipients in the order given, without duplicates; the creator when none is given."""
    if not values:
        return (default,)
    seen: dict[tuple[str, str], Recipient] = {}
    for recipient in values:
        if recipient.kind not in RECIPIENT_KINDS:
            raise TaskRuleError("recipients", "a recipient is a person or a structure")
        if not recipient.id.strip():
            raise TaskRuleError("recipients", "a recipient needs an id")
        seen.setdefault((recipient.kind, recipient.id), recipient)
    if len(seen) > MAX_RECIPIENTS:
        raise TaskRuleError("recipients", f"a task may have at most {MAX_RECIPIENTS} recipients")
    return tuple(seen.values())


def new_task(
    *,
    task_type: str,
    label: str | None,
    level: str,
    comment: str | None,
    due_date: date | None,
    recipients: list[Recipient],
    creator: Recipient,
) -> NewTask:
    checked_type = check_type(task_type)
    return NewTask(
        type=checked_type,
        label=check_label(checked_type, label),
        level=check_level(level),
        comment=check_comment(comment),
        due_date=due_date,
        recipients=check_recipients(recipients, creator),
    )


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
        raise TaskRuleError("status", "a task in status traitee is read-only: move it on to change it")

"""Account delegation rules (ID-6), pure: no I/O.

Following the booklet ("La délégation de compte"): the *delegate* — the person who wants to
act in someone else's name — sends the request ("Mes délégants" > demande de délégation);
the *grantor* is notified, sees a count of pending requests and accepts (green) or refuses
(crossed out). Either party may end a delegation at any time (the grantor withdraws the
right, the delegate gives it up or withdraws a request still pending). An optional end date
makes it lapse by itself: it is valid through `ends_on` (a day in Europe/Paris), inactive
from the next day on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

# dossiers = "Dossiers & RCP", discussions = "Discussions" (ID-6).
SCOPES: tuple[str, ...] = ("dossiers", "discussions")

# A delegation's days are French days, whatever the server's time zone.
TIME_ZONE = ZoneInfo("Europe/Paris")


class Status(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    REVOKED = "revoked"
    EXPIRED = "expired"


class Action(StrEnum):
    ACCEPT = "accept"
    REFUSE = "refuse"
    REVOKE = "revoke"
    EXPIRE = "expire"


class Party(StrEnum):
    GRANTOR = "grantor"
    DELEGATE = "delegate"
    SYSTEM = "system"  # the expiry job


LIVE: frozenset[Status] = frozenset({Status.PENDING, Status.ACCEPTED})


class DelegationError(ValueError):
    """A delegation rule is broken. `kind` maps to the HTTP answer: invalid (422, names
    `field`), forbidden (403: not this party's decision), conflict (409: wrong state)."""

    def __init__(self, kind: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[Party]
    target: Status


# The whole state machine: (state, action) -> who may do it and where it leads.
# Anything not listed is a conflict (e.g. accepting a refused request).
TRANSITIONS: dict[tuple[Status, Action], Rule] = {
    (Status.PENDING, Action.ACCEPT): Rule(frozenset({Party.GRANTOR}), Status.ACCEPTED),
    (Status.PENDING, Action.REFUSE): Rule(frozenset({Party.GRANTOR}), Status.REFUSED),
    (Status.PENDING, Action.REVOKE): Rule(frozenset({Party.GRANTOR, Party.DELEGATE}), Status.REVOKED),
    (Status.PENDING, Action.EXPIRE): Rule(frozenset({Party.SYSTEM}), Status.EXPIRED),
    (Status.ACCEPTED, Action.REVOKE): Rule(frozenset({Party.GRANTOR, Party.DELEGATE}), Status.REVOKED),
    (Status.ACCEPTED, Action.EXPIRE): Rule(frozenset({Party.SYSTEM}), Status.EXPIRED),
}


def today(now: datetime) -> date:
    return now.astimezone(TIME_ZONE).date()


def effective_status(status: Status | str, ends_on: date | None, on: date) -> Status:
    """What the delegation is on day `on`: a live one past its end date has lapsed even
    before the expiry job has recorded it."""
    current = Status(status)
    if current in LIVE and ends_on is not None and on > ends_on:
        return Status.EXPIRED
    return current


def is_active(status: Status | str, ends_on: date | None, on: date) -> bool:
    """Only an accepted, unlapsed delegation lets the delegate act."""
    return effective_status(status, ends_on, on) is Status.ACCEPTED


def transition(current: Status, action: Action, party: Party) -> Status:
    rule = TRANSITIONS.get((current, action))
    if rule is None:
        raise DelegationError("conflict", f"a delegation that is {current.value} cannot be {_done(action)}")
    if party not in rule.allowed:
        who = " or ".join(sorted(p.value for p in rule.allowed))
        raise DelegationError("forbidden", f"only the {who} may {action.value} this delegation")
    return rule.target


def _done(action: Action) -> str:
    return {"accept": "accepted", "refuse": "refused", "revoke": "revoked", "expire": "expired"}[action.value]


def party_of(person_id: str, grantor_id: str, delegate_id: str) -> Party | None:
    if person_id == grantor_id:
        return Party.GRANTOR
    if person_id == delegate_id:
        return Party.DELEGATE
    return None


def check_scopes(scopes: Iterable[str] | None) -> list[str]:
    """Known scopes, at least one, no duplicates; returned in canonical order."""
    values = list(scopes or [])
    if not values:
        raise DelegationError("invalid", "choose dossiers, discussions or both", "scopes")
    unknown = sorted(set(values) - set(SCOPES))
    if unknown:
        raise DelegationError("invalid", f"unknown scope(s): {', '.join(unknown)}", "scopes")
    if len(set(values)) != len(values):
        raise DelegationError("invalid", "a scope is listed twice", "scopes")
    return [s for s in SCOPES if s in values]


def check_parties(grantor_id: str, delegate_id: str) -> None:
    if grantor_id == delegate_id:
        raise DelegationError("invalid", "a person cannot delegate to itself", "grantor_id")


def check_ends_on(ends_on: date | None, on: date) -> date | None:
    """An end date, when given, is a day after today (it would lapse at once otherwise)."""
    if ends_on is not None and ends_on <= on:
        raise DelegationError("invalid", "ends_on must be a date after today", "ends_on")
    return ends_on


def check_not_duplicate(
    requested: Iterable[str], live_scopes: Iterable[Iterable[str]], *, kind: str = "conflict"
) -> None:
    """No two live (pending or accepted) delegations between the same two persons may
    share a scope; asking for the scope not yet held is allowed (booklet: "pour lesquelles
    je n'ai pas encore toutes les délégations")."""
    wanted = set(requested)
    for scopes in live_scopes:
        shared = wanted & set(scopes)
        if shared:
            raise DelegationError(
                kind,
                f"a delegation for {', '.join(sorted(shared))} is already pending or granted",
                "scopes",
            )

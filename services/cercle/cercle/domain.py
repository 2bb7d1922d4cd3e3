"""Care-circle and habilitation rules (CER-1..CER-10, PAT-6, ID-6): pure Python, no I/O.

Every violation names the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

HOLDER_KINDS = ("person", "structure")
# CER-2, in the booklet's order; codes only, the web front end carries the French labels.
ROLES = (
    "aidant_principal",
    "aidant_secondaire",
    "coordinateur",
    "intervenant",
    "mandataire_judiciaire",
    "medecin_traitant",
    "personne_a_prevenir",
)
# Roles only a natural person can hold: a carer, a GP, a person to notify.
PERSON_ONLY_ROLES = frozenset(
    {"aidant_principal", "aidant_secondaire", "medecin_traitant", "personne_a_prevenir"}
)
# How a member came into the circle: CER-4 directory, CER-5 manual, CER-6 invitation, PAT-6 creator.
SOURCES = ("directory", "manual", "invitation", "creator")
# Why a HabilitationGranted was emitted (its schema's enum).
GRANT_BASES = ("member", "auto_habilitation")
# Why the decision allowed access.
DECISION_BASES = ("person", "structure", "delegation", "break_glass")
# Bases that may change the circle: a delegate acts with its grantor's rights (ID-6);
# a break-the-glass grant never may (CER-8).
CHANGE_BASES = frozenset({"person", "structure", "delegation"})
# The only delegation scope that opens patient files (ID-6: "Dossiers & RCP").
DELEGATION_SCOPE = "dossiers"
HOLDER_ID_MAX = 64
DESCRIPTION_MAX = 1000
TEXT_MAX = 200
ADDRESS_MAX = 500
PHONE_MAX = 40
EMAIL_MAX = 254
DECISION_MAX_AGE_S = 5
# Delegation and break-the-glass end through events the gateway does not evict on by patient
# (DelegationRevoked, an early BreakGlassAccessEnded): a short cache keeps their end within 1 s.
SHORT_MAX_AGE_S = 1
SHORT_LIVED_BASES = frozenset({"delegation", "break_glass"})
# Manually added persons (CER-5) have no directory id; theirs can never be a token subject.
MANUAL_PREFIX = "manual-"
# Dates (delegation end dates) are French calendar days.
PARIS = ZoneInfo("Europe/Paris")

# CER-8 / REFERENCE.md: exactly two hours, a reason from a list plus free text.
BREAK_GLASS_DURATION = timedelta(hours=2)
BREAK_GLASS_REASONS = (
    "urgence_vitale",  # life-threatening emergency
    "urgence_soins",  # urgent care, the usual team unreachable
    "continuite_soins",  # continuity of care (replacement, on call)
    "demande_patient",  # the patient asks this professional to look
    "autre",
)
BREAK_GLASS_TEXT_MAX = 500
# What the client says it came through; only identity vigilance may open a break-the-glass.
FOUND_VIA = ("identity_vigilance",)
BULK_ACTIONS = ("add", "revoke_habilitation", "remove")
BULK_MAX = 500

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class CircleRuleError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class Holder:
    """Who holds a membership: a person or a structure, by its directory id."""

    kind: str
    id: str


@dataclass(frozen=True)
class Details:
    """CER-1's descriptive fields of a member (free text: stays in cercle, never in events)."""

    description: str | None = None
    establishment: str | None = None
    unit: str | None = None
    function: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None


DETAIL_FIELDS = tuple(Details.__dataclass_fields__)


@dataclass(frozen=True)
class NewMember:
    holder: Holder
    roles: tuple[str, ...]
    description: str | None
    habilitated: bool
    refused_information_sharing: bool
    details: Details = Details()


@dataclass(frozen=True)
class ManualPerson:
    """CER-5: a person not in the directory (or a family carer); never accesses the file."""

    professional: bool
    should_access: bool
    informed: bool
    last_name: str | None
    first_name: str | None
    city: str | None
    profession: str | None
    rpps: str | None
    roles: tuple[str, ...]
    details: Details

    @property
    def requests_directory_entry(self) -> bool:
        """CER-5: an e-mail asks the directory service centre to register the professional."""
        return self.professional and (self.should_access or self.informed)


@dataclass(frozen=True)
class Standing:
    """A membership's facts that matter to the decision."""

    habilitated: bool
    refused: bool


@dataclass(frozen=True)
class AccessRequest:
    """Who asks: the token's person, the structure it acts for (X-Act-As), the grantor it acts for (X-Act-For)."""

    person_id: str
    structure_id: str | None = None
    act_for: str | None = None


@dataclass(frozen=True)
class Delegation:
    scopes: tuple[str, ...]
    ends_on: date | None
    revoked: bool


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str | None
    holder: Holder | None
    expires_at: datetime | None = None

    def max_age_s(self, now: datetime) -> int:
        """How long the gateway may cache it: never beyond the access's own end."""
        bound = SHORT_MAX_AGE_S if self.basis in SHORT_LIVED_BASES else DECISION_MAX_AGE_S
        if self.expires_at is None:
            return bound
        left = int((self.expires_at - now).total_seconds())
        return max(0, min(bound, left))


REFUSED = Decision(allowed=False, basis=None, holder=None)


# -- members ---------------------------------------------------------------------------


def check_holder(kind: str, holder_id: str) -> Holder:
    if kind not in HOLDER_KINDS:
        raise CircleRuleError("holder_kind", "holder_kind must be person or structure")
    value = (holder_id or "").strip()
    if not value:
        raise CircleRuleError("holder_id", "holder_id is required")
    if len(value) > HOLDER_ID_MAX:
        raise CircleRuleError("holder_id", f"holder_id may hold at most {HOLDER_ID_MAX} characters")
    if value.startswith(MANUAL_PREFIX):
        raise CircleRuleError("holder_id", "holder_id must be a directory id")
    return Holder(kind, value)


def check_roles(kind: str, roles: Iterable[str]) -> tuple[str, ...]:
    """Known role codes, each once, in the order given; a structure holds no person-only role."""
    kept: list[str] = []
    for role in roles:
        if role not in ROLES:
            raise CircleRuleError("roles", f"roles may only hold {', '.join(ROLES)}")
        if kind == "structure" and role in PERSON_ONLY_ROLES:
            raise CircleRuleError("roles", f"roles: a structure cannot be {role}")
        if role not in kept:
            kept.append(role)
    return tuple(kept)


def _text(field: str, value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise CircleRuleError(field, f"{field} must be text")
    text = value.strip()
    if len(text) > limit:
        raise CircleRuleError(field, f"{field} may hold at most {limit} characters")
    return text or None


def check_description(value: str | None) -> str | None:
    return _text("description", value, DESCRIPTION_MAX)


def check_email(field: str, value: Any) -> str | None:
    text = _text(field, value, EMAIL_MAX)
    if text is not None and not _EMAIL.match(text):
        raise CircleRuleError(field, f"{field} is not an e-mail address")
    return text


def check_details(values: Mapping[str, Any]) -> Details:
    return Details(
        description=check_description(values.get("description")),
        establishment=_text("establishment", values.get("establishment"), TEXT_MAX),
        unit=_text("unit", values.get("unit"), TEXT_MAX),
        function=_text("function", values.get("function"), TEXT_MAX),
        address=_text("address", values.get("address"), ADDRESS_MAX),
        phone=_text("phone", values.get("phone"), PHONE_MAX),
        email=check_email("email", values.get("email")),
    )


def check_grant(refused_information_sharing: bool, holder_id: str = "") -> None:
    """The patient refused sharing with this member: habilitating them would share the file."""
    if refused_information_sharing:
        raise CircleRuleError(
            "habilitated",
            "habilitated cannot be true: the patient refused information sharing with this member",
        )
    if holder_id.startswith(MANUAL_PREFIX):
        raise CircleRuleError(
            "habilitated", "habilitated cannot be true: a manually added person never accesses the file"
        )


def new_member(
    *,
    holder_kind: str,
    holder_id: str,
    roles: Iterable[str],
    description: str | None,
    habilitated: bool,
    refused_information_sharing: bool,
    details: Mapping[str, Any] | None = None,
) -> NewMember:
    holder = check_holder(holder_kind, holder_id)
    if habilitated:
        check_grant(refused_information_sharing)
    checked = check_details({**(details or {}), "description": description})
    return NewMember(
        holder=holder,
        roles=check_roles(holder.kind, roles),
        description=checked.description,
        habilitated=habilitated,
        refused_information_sharing=refused_information_sharing,
        details=checked,
    )


def manual_person(values: Mapping[str, Any]) -> ManualPerson:
    """CER-5: professional? then "should access the file?" and "is informed?"; either yes makes
    name, first name, city and profession mandatory."""
    professional = values.get("professional") is True
    should_access = values.get("should_access") is True
    informed = values.get("informed") is True
    if not professional:
        if should_access:
            raise CircleRuleError("should_access", "should_access applies to professionals only")
        if informed:
            raise CircleRuleError("informed", "informed applies to professionals only")
    names = {
        "last_name": _text("last_name", values.get("last_name"), TEXT_MAX),
        "first_name": _text("first_name", values.get("first_name"), TEXT_MAX),
        "city": _text("city", values.get("city"), TEXT_MAX),
        "profession": _text("profession", values.get("profession"), TEXT_MAX),
    }
    person = ManualPerson(
        professional=professional,
        should_access=should_access,
        informed=informed,
        rpps=_text("rpps", values.get("rpps"), 20),
        roles=check_roles("person", values.get("roles") or []),
        details=check_details(values),
        **names,
    )
    if person.requests_directory_entry:
        for field, value in names.items():
            if value is None:
                raise CircleRuleError(
                    field, f"{field} is required when the professional should access the file or is informed"
                )
    return person


def check_keeps_a_habilitated_member(habilitated: Sequence[Holder], losing: Holder) -> None:
    """A file nobody is habilitated on could never be reached again except by breaking the glass."""
    if not any(holder != losing for holder in habilitated):
        raise CircleRuleError(
            "member_id",
            "the last habilitated member cannot lose its habilitation: habilitate someone else first",
        )


# -- the habilitation decision ----------------------------------------------------------


def request_holders(request: AccessRequest) -> tuple[Holder, ...]:
    """Every membership a request names: any of them refused by the patient closes every path."""
    holders = [Holder("person", request.person_id)]
    if request.structure_id:
        holders.append(Holder("structure", request.structure_id))
    if request.act_for:
        holders.append(Holder("person", request.act_for))
    return tuple(holders)


def delegation_end(ends_on: date | None) -> datetime | None:
    """A delegation ending on a day is valid through that whole (French) day."""
    if ends_on is None:
        return None
    return datetime.combine(ends_on + timedelta(days=1), time(0), tzinfo=PARIS)


def delegation_open(delegation: Delegation | None, now: datetime) -> bool:
    if delegation is None or delegation.revoked or DELEGATION_SCOPE not in delegation.scopes:
        return False
    end = delegation_end(delegation.ends_on)
    return end is None or now < end


def decide(
    request: AccessRequest,
    memberships: Mapping[Holder, Standing],
    *,
    now: datetime,
    delegation: Delegation | None = None,
    break_glass_expires_at: datetime | None = None,
) -> Decision:
    """The habilitation decision (CER-3, CER-7, CER-8, ID-6).

    A member the patient refused sharing with is never allowed through any path that names
    it (its own, its structure's, a delegation from or to it, a break-the-glass grant).
    Acting for a grantor (X-Act-For) the caller has only the grantor's access: the delegation
    path, nothing of its own, so every access is recorded as made in the grantor's name.
    """
    holders = request_holders(request)
    if any(memberships.get(h, Standing(False, False)).refused for h in holders):
        return REFUSED

    def habilitated(holder: Holder) -> bool:
        standing = memberships.get(holder)
        return standing is not None and standing.habilitated and not standing.refused

    if request.act_for:
        grantor = Holder("person", request.act_for)
        if habilitated(grantor) and delegation_open(delegation, now):
            assert delegation is not None
            return Decision(True, "delegation", grantor, delegation_end(delegation.ends_on))
        return REFUSED
    person = Holder("person", request.person_id)
    if habilitated(person):
        return Decision(True, "person", person)
    if request.structure_id:
        structure = Holder("structure", request.structure_id)
        if habilitated(structure):
            return Decision(True, "structure", structure)
    if break_glass_expires_at is not None and now < break_glass_expires_at:
        return Decision(True, "break_glass", person, break_glass_expires_at)
    return REFUSED


def may_change_circle(decision: Decision) -> bool:
    """Habilitated members (themselves, through their structure or a delegation) change the circle."""
    return decision.allowed and decision.basis in CHANGE_BASES


# -- break-the-glass ---------------------------------------------------------------------


@dataclass(frozen=True)
class BreakGlassRequest:
    reason_code: str
    reason_text: str
    found_via: str


def break_glass_request(values: Mapping[str, Any]) -> BreakGlassRequest:
    """CER-8: a reason from the list, free text, the search it came from, a second confirmation."""
    code = values.get("reason_code")
    if code not in BREAK_GLASS_REASONS:
        raise CircleRuleError("reason_code", f"reason_code must be one of {', '.join(BREAK_GLASS_REASONS)}")
    text = _text("reason_text", values.get("reason_text"), BREAK_GLASS_TEXT_MAX)
    if text is None:
        raise CircleRuleError("reason_text", "reason_text is required: say why the file must be opened")
    found_via = values.get("found_via")
    if found_via not in FOUND_VIA:
        raise CircleRuleError(
            "found_via",
            "found_via must be identity_vigilance: break-the-glass opens only a patient found by search",
        )
    if values.get("confirmed") is not True:
        raise CircleRuleError(
            "confirmed", "confirmed must be true: the access must be confirmed a second time"
        )
    return BreakGlassRequest(code, text, found_via)


def break_glass_expiry(granted_at: datetime) -> datetime:
    return granted_at + BREAK_GLASS_DURATION


# -- bulk (CER-9) ------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkRequest:
    action: str
    patient_ids: tuple[str, ...]
    holder: Holder
    roles: tuple[str, ...]
    habilitated: bool


def bulk_request(values: Mapping[str, Any], patient_ids: Sequence[str]) -> BulkRequest:
    action = values.get("action")
    if action not in BULK_ACTIONS:
        raise CircleRuleError("action", f"action must be one of {', '.join(BULK_ACTIONS)}")
    if not patient_ids:
        raise CircleRuleError("patient_ids", "patient_ids must name at least one patient")
    if len(patient_ids) > BULK_MAX:
        raise CircleRuleError("patient_ids", f"patient_ids may name at most {BULK_MAX} patients")
    if len(set(patient_ids)) != len(patient_ids):
        raise CircleRuleError("patient_ids", "patient_ids must name each patient once")
    holder = check_holder(values.get("holder_kind", ""), values.get("holder_id", ""))
    roles = check_roles(holder.kind, values.get("roles") or [])
    habilitated = values.get("habilitated") is True
    if action != "add" and (roles or habilitated):
        raise CircleRuleError("action", "roles and habilitated apply to the add action only")
    return BulkRequest(action, tuple(patient_ids), holder, roles, habilitated)

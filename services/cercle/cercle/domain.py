"""Care-circle and habilitation rules (CER-1..CER-10, PAT-6): pure Python, no I/O.

Every violation names the field it is about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
# Why a HabilitationGranted was emitted (its schema's enum).
GRANT_BASES = ("member", "auto_habilitation")
# Why the decision allowed access; delegation and break_glass come with those features.
DECISION_BASES = ("member", "structure", "delegation", "break_glass")
# Bases that may change the circle: a break-the-glass grant never may (CER-8).
CHANGE_BASES = frozenset({"member", "structure"})
HOLDER_ID_MAX = 64
DESCRIPTION_MAX = 1000
DECISION_MAX_AGE_S = 5


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
class NewMember:
    holder: Holder
    roles: tuple[str, ...]
    description: str | None
    habilitated: bool
    refused_information_sharing: bool


@dataclass(frozen=True)
class Decision:
    allowed: bool
    basis: str | None
    holder: Holder | None


REFUSED = Decision(allowed=False, basis=None, holder=None)


def check_holder(kind: str, holder_id: str) -> Holder:
    if kind not in HOLDER_KINDS:
        raise CircleRuleError("holder_kind", "holder_kind must be person or structure")
    value = (holder_id or "").strip()
    if not value:
        raise CircleRuleError("holder_id", "holder_id is required")
    if len(value) > HOLDER_ID_MAX:
        raise CircleRuleError("holder_id", f"holder_id may hold at most {HOLDER_ID_MAX} characters")
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


def check_description(value: str | None) -> str | None:
    text = (value or "").strip()
    if len(text) > DESCRIPTION_MAX:
        raise CircleRuleError("description", f"description may hold at most {DESCRIPTION_MAX} characters")
    return text or None


def check_grant(refused_information_sharing: bool) -> None:
    """The patient refused sharing with this member: habilitating them would share the file."""
    if refused_information_sharing:
        raise CircleRuleError(
            "habilitated",
            "habilitated cannot be true: the patient refused information sharing with this member",
        )


def new_member(
    *,
    holder_kind: str,
    holder_id: str,
    roles: Iterable[str],
    description: str | None,
    habilitated: bool,
    refused_information_sharing: bool,
) -> NewMember:
    holder = check_holder(holder_kind, holder_id)
    if habilitated:
        check_grant(refused_information_sharing)
    return NewMember(
        holder=holder,
        roles=check_roles(holder.kind, roles),
        description=check_description(description),
        habilitated=habilitated,
        refused_information_sharing=refused_information_sharing,
    )


def actor_holders(person_id: str, structure_id: str | None) -> tuple[Holder, ...]:
    """The memberships that can give an actor access: its own, and the structure it acts for (CER-7)."""
    person = Holder("person", person_id)
    return (person, Holder("structure", structure_id)) if structure_id else (person,)


def decide(person_id: str, structure_id: str | None, habilitated: Iterable[Holder]) -> Decision:
    """The habilitation decision (CER-3, CER-7): the person's own membership first, then its structure."""
    present = set(habilitated)
    person = Holder("person", person_id)
    if person in present:
        return Decision(True, "member", person)
    if structure_id is not None:
        structure = Holder("structure", structure_id)
        if structure in present:
            return Decision(True, "structure", structure)
    return REFUSED


def may_change_circle(decision: Decision) -> bool:
    """Only a habilitated member (itself or through its structure) changes the circle."""
    return decision.allowed and decision.basis in CHANGE_BASES


def check_keeps_a_habilitated_member(habilitated: Sequence[Holder], losing: Holder) -> None:
    """A file nobody is habilitated on could never be reached again except by breaking the glass."""
    if not any(holder != losing for holder in habilitated):
        raise CircleRuleError(
            "member_id",
            "the last habilitated member cannot lose its habilitation: habilitate someone else first",
        )

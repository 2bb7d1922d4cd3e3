"""Patient identity rules (PAT-1, PAT-2, PAT-5): pure Python, no I/O.

Exact facts come from shared/REFERENCE.md (RNIV): strict traits, placeholders,
statuses. Every violation names the field it is about.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

SEXES = ("M", "F", "I")  # INS: male, female, indeterminate/unknown
IDENTITY_STATUSES = ("PROV", "VALI", "RECUP", "QUAL")
PLACEHOLDER_NAME = "À DEMANDER"
PLACEHOLDER_BIRTH_DATE = date(1900, 1, 1)
PLACEHOLDER_BIRTH_PLACE = "99999"
CONSENT_GIVERS = ("patient", "curator", "legal_guardian", "trusted_person", "parental_authority", "other")

_NAME = re.compile(r"^[A-Za-zÀ-ÖØ-öø-ÿŒœ]+(?:[ '\-][A-Za-zÀ-ÖØ-öø-ÿŒœ]+)*$")
# INSEE commune code (2A/2B for Corsica) or 99 + country code for people born abroad.
_BIRTH_PLACE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


class IdentityRuleError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(frozen=True)
class StrictTraits:
    birth_name: str
    first_name: str
    birth_date: date
    sex: str
    birth_place: str

    @property
    def has_placeholder(self) -> bool:
        return (
            self.birth_name == PLACEHOLDER_NAME
            or self.first_name == PLACEHOLDER_NAME
            or self.birth_date == PLACEHOLDER_BIRTH_DATE
            or self.birth_place == PLACEHOLDER_BIRTH_PLACE
        )


@dataclass(frozen=True)
class ConsentAttestation:
    given_by: str
    given_by_name: str | None
    given_on: date
    collected_by: str


def normalise_name(value: str) -> str:
    """Identity names are kept upper-case with single spaces (accents kept as typed)."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", value).strip()).upper()


def check_name(field: str, value: str) -> str:
    name = normalise_name(value)
    if not name:
        raise IdentityRuleError(field, f"{field} is required")
    if name == PLACEHOLDER_NAME:
        return name
    if len(name) > 100 or not _NAME.match(name):
        raise IdentityRuleError(field, f"{field} may hold only letters, spaces, hyphens and apostrophes")
    return name


def check_birth_date(value: date, today: date) -> date:
    if value > today:
        raise IdentityRuleError("birth_date", "birth_date cannot be in the future")
    if value < PLACEHOLDER_BIRTH_DATE:
        raise IdentityRuleError("birth_date", "birth_date cannot be before 1900-01-01")
    return value


def check_sex(value: str) -> str:
    if value not in SEXES:
        raise IdentityRuleError("sex", "sex must be M, F or I")
    return value


def check_birth_place(value: str) -> str:
    code = value.strip().upper()
    if not _BIRTH_PLACE.match(code):
        raise IdentityRuleError(
            "birth_place", "birth_place must be a 5-character INSEE code (commune, or 99xxx for a country)"
        )
    return code


def strict_traits(
    *, birth_name: str, first_name: str, birth_date: date, sex: str, birth_place: str, today: date
) -> StrictTraits:
    return StrictTraits(
        birth_name=check_name("birth_name", birth_name),
        first_name=check_name("first_name", first_name),
        birth_date=check_birth_date(birth_date, today),
        sex=check_sex(sex),
        birth_place=check_birth_place(birth_place),
    )


def consent_attestation(
    *,
    attested: bool,
    given_by: str,
    given_by_name: str | None,
    given_on: date,
    collected_by: str,
    today: date,
) -> ConsentAttestation:
    """PAT-5: no file without the patient's consent, attested by the user."""
    if attested is not True:
        raise IdentityRuleError("consent.attested", "the patient's consent must be attested to create a file")
    if given_by not in CONSENT_GIVERS:
        raise IdentityRuleError(
            "consent.given_by", f"consent.given_by must be one of {', '.join(CONSENT_GIVERS)}"
        )
    name = (given_by_name or "").strip() or None
    if given_by == "other" and not name:
        raise IdentityRuleError("consent.given_by_name", "name who gave the consent when it is 'other'")
    if given_on > today:
        raise IdentityRuleError("consent.given_on", "consent.given_on cannot be in the future")
    return ConsentAttestation(
        given_by=given_by, given_by_name=name, given_on=given_on, collected_by=collected_by
    )


def initial_identity_status(_traits: StrictTraits) -> str:
    """A new identity is provisional until a document is checked or INSi answers (RNIV)."""
    return "PROV"


def age(birth: date, today: date) -> tuple[int, int, int]:
    """Age in whole years, months and days (PAT-7), counted from the last monthly anniversary."""
    months = (today.year - birth.year) * 12 + today.month - birth.month
    if today.day < birth.day:
        months -= 1
    year, month = divmod(birth.month - 1 + months, 12)
    year += birth.year
    last_day = calendar.monthrange(year, month + 1)[1]
    anniversary = date(year, month + 1, min(birth.day, last_day))
    return months // 12, months % 12, (today - anniversary).days

"""NIR (French social security number) checks: format and key, then consistency with birth traits.

`stdnum.fr.nir` checks length, format and the 97-modulo key (with 2A -> 19 and
2B -> 18); it does not check the sex digit, month or place (REFERENCE.md), so
those checks are added here. Layout: sex (1) · year (2) · month (2) · place (5:
département 2 + commune 3, `97x` + 2 for overseas, `99` + country when born
abroad) · order (3) · key (2).
"""

from __future__ import annotations

from datetime import date

from stdnum.exceptions import ValidationError
from stdnum.fr import nir as stdnum_nir

from dossier.domain import PLACEHOLDER_BIRTH_DATE, PLACEHOLDER_BIRTH_PLACE, IdentityRuleError

MALE_DIGITS = ("1", "3", "7")  # 3: former foreigner numbers, 7: temporary numbers (NIA)
FEMALE_DIGITS = ("2", "4", "8")
# Former French territories whose natives born before independence carry a
# département-like code (91-96) instead of 99 + country.
_FORMER_TERRITORIES = {"99352": ("91", "92", "93", "94"), "99350": ("95",), "99351": ("96",)}
# Before the 1968 reorganisation of the Paris region, births in today's 91-95
# were numbered under Seine (75) or Seine-et-Oise (78).
_PARIS_REGION_BEFORE_1968 = {
    "91": ("78",),
    "92": ("75", "78"),
    "93": ("75", "78"),
    "94": ("75", "78"),
    "95": ("78",),
}


def check_nir(field: str, value: str) -> str:
    """Format and key only (what stdnum checks); returns the compact 15-character NIR."""
    try:
        number: str = stdnum_nir.validate(value)
    except ValidationError as exc:
        raise IdentityRuleError(field, f"{field} is not a valid NIR: {exc}") from exc
    month = int(number[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        raise IdentityRuleError(field, f"{field} has an impossible birth month ({number[3:5]})")
    return number


def check_nir_matches_traits(field: str, value: str, *, sex: str, birth_date: date, birth_place: str) -> str:
    """The patient's own NIR must agree with sex, birth year/month and birth place."""
    number = check_nir(field, value)
    if sex == "M" and number[0] not in MALE_DIGITS:
        raise IdentityRuleError(field, f"{field} starts with {number[0]}, which is not a male sex digit")
    if sex == "F" and number[0] not in FEMALE_DIGITS:
        raise IdentityRuleError(field, f"{field} starts with {number[0]}, which is not a female sex digit")
    if birth_date != PLACEHOLDER_BIRTH_DATE:
        if number[1:3] != f"{birth_date.year % 100:02d}":
            raise IdentityRuleError(field, f"{field} birth year {number[1:3]} does not match birth_date")
        month = int(number[3:5])
        # 20-42 and 50-99 mean the month was unknown to the civil register: nothing to compare.
        if month <= 12 and month != birth_date.month:
            raise IdentityRuleError(field, f"{field} birth month {number[3:5]} does not match birth_date")
    if birth_place != PLACEHOLDER_BIRTH_PLACE and not place_matches(number, birth_place, birth_date):
        raise IdentityRuleError(field, f"{field} birth place {number[5:10]} does not match birth_place")
    return number


def place_matches(number: str, birth_place: str, birth_date: date) -> bool:
    place = number[5:10]
    if birth_place.startswith("99"):  # born abroad: 99 + INSEE country code
        if place == birth_place:
            return True
        return birth_date.year < 1963 and place[:2] in _FORMER_TERRITORIES.get(birth_place, ())
    if birth_place.startswith("97"):  # overseas départements: 3-digit département code
        return place[:3] == birth_place[:3]
    if birth_place[:2] in ("2A", "2B"):  # Corsica was département 20 until 1976
        return place[:2] == birth_place[:2] or (place[:2] == "20" and birth_date.year < 1976)
    # The commune part is not compared: Paris, Lyon and Marseille NIRs carry the
    # arrondissement (75115) where the identity has the commune (75056), and merged
    # communes change codes.
    if place[:2] == birth_place[:2]:
        return True
    return birth_date.year < 1968 and place[:2] in _PARIS_REGION_BEFORE_1968.get(birth_place[:2], ())


def with_key(first13: str) -> str:
    """Append the key to 13 characters (used by the INSi simulator and demo data)."""
    return first13 + stdnum_nir.calc_check_digits(first13 + "00")

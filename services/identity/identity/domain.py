"""Pure rules of accounts, structures, professions and login sessions (no I/O)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

# ID-2: a login session lasts 8 hours; nothing obtained from it (refresh tokens,
# access tokens) may outlive it.
SESSION_LIFETIME = timedelta(hours=8)
ACCESS_TOKEN_LIFETIME = timedelta(minutes=30)
AUTHORIZATION_CODE_LIFETIME = timedelta(minutes=5)

# ID-3: platform roles.
ROLES: tuple[str, ...] = ("user", "super_user", "admin")

# ID-1, ID-5: kinds of structures — establishments (hospital, EHPAD...), their units and
# services, home-care and coordination structures, liberal practices.
STRUCTURE_KINDS: tuple[str, ...] = (
    "dac",  # dispositif d'appui à la coordination
    "hospital",  # centre hospitalier, clinique
    "unit",  # unité / service de soins d'un établissement
    "service",  # service social ou médico-social (CCAS, service social départemental...)
    "saad",  # service d'aide et d'accompagnement à domicile
    "ssiad",  # service de soins infirmiers à domicile
    "ehpad",  # établissement d'hébergement pour personnes âgées dépendantes
    "practice",  # cabinet libéral (médical, infirmier, de kinésithérapie...)
    "pharmacy",  # officine
    "health_centre",  # maison ou centre de santé pluriprofessionnel
    "other",
)

# ID-2: the version of the terms of use (CGU) every user must accept before anything else.
TERMS_VERSION = "2026-12"


@dataclass(frozen=True)
class Profession:
    code: str
    label: str
    medical: bool


# ID-4: medical professions may read/write the medical form sections (FRM-6).
# The migration seeds the same list into the `professions` table.
PROFESSIONS: tuple[Profession, ...] = (
    Profession("medecin", "Médecin", True),
    Profession("infirmier", "Infirmier", True),
    Profession("pharmacien", "Pharmacien", True),
    Profession("sage_femme", "Sage-femme", True),
    Profession("masseur_kinesitherapeute", "Masseur-kinésithérapeute", True),
    Profession("chirurgien_dentiste", "Chirurgien-dentiste", True),
    Profession("orthophoniste", "Orthophoniste", True),
    Profession("ergotherapeute", "Ergothérapeute", True),
    Profession("aide_soignant", "Aide-soignant", False),
    Profession("psychologue", "Psychologue", False),
    Profession("assistant_social", "Assistant social", False),
    Profession("gestionnaire_de_cas", "Gestionnaire de cas", False),
    Profession("coordinateur", "Coordinateur", False),
    Profession("secretaire", "Secrétaire", False),
)
PROFESSIONS_BY_CODE: dict[str, Profession] = {p.code: p for p in PROFESSIONS}


class AccountRuleError(ValueError):
    """Input breaks an account rule; `field` names it, `detail` is safe to show."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def is_medical(profession_code: str | None) -> bool:
    """Unknown or missing professions are never medical (fail closed)."""
    profession = PROFESSIONS_BY_CODE.get(profession_code or "")
    return profession is not None and profession.medical


_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]$")


def normalise_username(username: str) -> str:
    value = (username or "").strip().lower()
    if not _USERNAME.match(value):
        raise AccountRuleError(
            "username",
            "username must be 3 to 64 characters: lowercase letters, digits, '.', '_' or '-'",
        )
    return value


MIN_PASSWORD_LENGTH = 10


def check_password_strength(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise AccountRuleError("password", f"password must have at least {MIN_PASSWORD_LENGTH} characters")


def normalise_roles(roles: list[str] | tuple[str, ...] | None) -> list[str]:
    """Known roles only, no duplicates, in canonical order; an account has at least one."""
    values = list(roles or ["user"])
    unknown = sorted(set(values) - set(ROLES))
    if unknown:
        raise AccountRuleError("roles", f"unknown role(s): {', '.join(unknown)}")
    if not values:
        raise AccountRuleError("roles", "an account needs at least one role")
    return [r for r in ROLES if r in values]


def check_structure_kind(kind: str) -> str:
    if kind not in STRUCTURE_KINDS:
        raise AccountRuleError("kind", f"kind must be one of {', '.join(STRUCTURE_KINDS)}")
    return kind


def check_profession(code: str | None) -> str | None:
    if code is None:
        return None
    if code not in PROFESSIONS_BY_CODE:
        raise AccountRuleError("profession", f"unknown profession {code!r}")
    return code


_RPPS = re.compile(r"^\d{11}$")
_FINESS = re.compile(r"^(\d{2}|2[AB])\d{7}$")
_POSTAL_CODE = re.compile(r"^\d{5}$")


def check_rpps(value: str | None) -> str | None:
    """RPPS numbers have 11 digits."""
    if value in (None, ""):
        return None
    if not _RPPS.match(value):
        raise AccountRuleError("rpps", "rpps must have 11 digits")
    return value


def check_finess(value: str | None) -> str | None:
    """FINESS numbers have 9 characters: department (2A/2B for Corsica), then digits."""
    if value in (None, ""):
        return None
    if not _FINESS.match(value.upper()):
        raise AccountRuleError("finess", "finess must have 9 characters (department then digits)")
    return value.upper()


def check_postal_code(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if not _POSTAL_CODE.match(value):
        raise AccountRuleError("postal_code", "postal_code must have 5 digits")
    return value


def display_name(first_name: str, last_name: str, title: str | None = None) -> str:
    parts = [p.strip() for p in (title, first_name, last_name) if p and p.strip()]
    if not parts:
        raise AccountRuleError("last_name", "a person needs a name")
    return " ".join(parts)


def fold(text: str | None) -> str:
    """Lowercase without accents, hyphens and extra spaces: 'Évry-Courcouronnes' -> 'evry courcouronnes'."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    cleaned = re.sub(r"[^a-z0-9@.]+", " ", stripped.lower())
    return " ".join(cleaned.split())


def words(text: str | None) -> list[str]:
    """The folded words of a text, in order, without duplicates."""
    return list(dict.fromkeys(fold(text).split()))


def name_terms(*names: str | None) -> list[str]:
    """ID-5: directory name search matches the beginning of any word of a name
    ("dup" finds "Jeanne Martin-Dupont"); one term per word."""
    found: list[str] = []
    for name in names:
        found.extend(w for w in words(name) if w not in found)
    return found


def directory_terms(
    names: list[str | None],
    places: list[tuple[str | None, str | None]],
    codes: list[tuple[str, str | None]] | None = None,
) -> list[tuple[str, str]]:
    """The (field, term) search keys of a directory entry: each name word, each (city,
    postal code) place it can be found at, and exact codes such as ("prof", "medecin")."""
    found: dict[tuple[str, str], None] = {("name", w[:100]): None for w in name_terms(*names)}
    for city, postal_code in places:
        if fold(city):
            found[("city", fold(city)[:100])] = None
        if postal_code:
            found[("postal", postal_code)] = None
    for field, code in codes or []:
        if code:
            found[(field, code)] = None
    # Profession + place in one key: the directory's most common combined search.
    for field, profession in codes or []:
        if field != "prof" or not profession:
            continue
        for city, postal_code in places:
            if fold(city):
                found[("pcity", f"{profession} {fold(city)}"[:100])] = None
            if postal_code:
                found[("ppostal", f"{profession} {postal_code}")] = None
    return list(found)


def sort_key(*parts: str | None) -> str:
    """Alphabetical order of the directory, accents and case ignored."""
    return " ".join(fold(p) for p in parts if p)[:250]


def check_terms_version(version: str) -> str:
    if version != TERMS_VERSION:
        raise AccountRuleError("version", f"the terms in force are version {TERMS_VERSION}")
    return version


# -- login sessions ---------------------------------------------------------


def session_expires_at(started_at: datetime) -> datetime:
    return started_at + SESSION_LIFETIME


def session_is_active(started_at: datetime, ended_at: datetime | None, now: datetime) -> bool:
    return ended_at is None and now < session_expires_at(started_at)


def access_token_expires_at(now: datetime, session_started_at: datetime) -> datetime:
    """30 minutes, but never past the end of the login session."""
    return min(now + ACCESS_TOKEN_LIFETIME, session_expires_at(session_started_at))

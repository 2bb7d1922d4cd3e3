"""RNIV identity model (PAT-2, PAT-3): traits, statuses and their moves, attributes, documents.

Pure rules, no I/O. Facts from shared/REFERENCE.md (RNIV 1 v2.0, FR Core
`fr-core-cs-identity-status`). Every refusal is an IdentityRuleError naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from dossier import domain
from dossier.domain import (
    PLACEHOLDER_BIRTH_DATE,
    PLACEHOLDER_BIRTH_PLACE,
    PLACEHOLDER_NAME,
    IdentityRuleError,
)
from dossier.domain_nir import check_nir

PROV, VALI, RECUP, QUAL = "PROV", "VALI", "RECUP", "QUAL"
STATUSES = (PROV, VALI, RECUP, QUAL)
# Status = (retrieved from INSi?) x (checked against a high-trust document?).
# Moves: PROV->VALI (document), PROV->RECUP (INSi), RECUP->QUAL (document), VALI->QUAL (INSi).
MOVES: dict[tuple[str, str], str] = {
    (PROV, "document"): VALI,
    (PROV, "insi"): RECUP,
    (RECUP, "document"): QUAL,
    (VALI, "insi"): QUAL,
}
STATUS_LABELS = {PROV: "Provisoire", VALI: "Validée", RECUP: "Récupérée", QUAL: "Qualifiée"}

HOMA, DOUT, FICT = "HOMA", "DOUT", "FICT"
ATTRIBUTES = (HOMA, DOUT, FICT)

STRICT_FIELDS = ("birth_name", "first_name", "first_names", "birth_date", "sex", "birth_place")
OPTIONAL_FIELDS = (
    "used_name",
    "used_first_name",
    "birth_country",
    "twin_rank",
    "entitled_nir",
    "email",
    "mobile",
    "phone",
    "address",
)
FRANCE = "99100"
FICTITIOUS_VALUE = "VIDE"  # booklet: traits of a fictitious identity may be entered as VIDE

# High-trust documents (RNIV). Birth certificate and family record book count only
# in RNIV 2024's special cases; a driving licence or a Carte Vitale alone never does.
DOCUMENTS = ("passport", "national_id_card", "national_id_ecard", "residence_permit", "digital_identity")
SPECIAL_CASE_DOCUMENTS = ("birth_certificate", "family_record_book")
SPECIAL_CASES = ("minor_with_parent_document", "nursing_home_photo_vitale")
REFUSED_DOCUMENTS = {
    "driving_licence": "a driving licence is not a high-trust identity document (RNIV)",
    "carte_vitale": "a Carte Vitale alone is not an identity document (RNIV)",
}
DOCUMENT_LABELS = {
    "passport": "Passeport",
    "national_id_card": "Carte nationale d'identité",
    "national_id_ecard": "Carte nationale d'identité électronique",
    "residence_permit": "Titre de séjour",
    "digital_identity": "Identité numérique",
    "birth_certificate": "Extrait d'acte de naissance",
    "family_record_book": "Livret de famille",
}
COLLECTION_CHANNELS = ("manual", "carte_vitale", "insi", "ins_datamatrix", "carte_vitale_app")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^0\d{9}$")
_MOBILE = re.compile(r"^0[67]\d{8}$")
_COUNTRY = re.compile(r"^99\d{3}$")


def has_placeholder(traits: dict[str, Any]) -> bool:
    """A placeholder trait keeps the identity PROV and the file listed as incomplete."""
    return (
        traits.get("birth_name") == PLACEHOLDER_NAME
        or traits.get("first_name") == PLACEHOLDER_NAME
        or traits.get("birth_date") == PLACEHOLDER_BIRTH_DATE
        or traits.get("birth_place") == PLACEHOLDER_BIRTH_PLACE
    )


def check_attributes(attributes: list[str] | tuple[str, ...] | set[str]) -> tuple[str, ...]:
    """HOMA may combine with DOUT; FICT and DOUT exclude each other (RNIV EXI SI 09)."""
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise IdentityRuleError("attributes", f"attributes must be among {', '.join(ATTRIBUTES)}")
    chosen = set(attributes)
    if DOUT in chosen and FICT in chosen:
        raise IdentityRuleError(
            "attributes", "an identity cannot be both doubtful (DOUT) and fictitious (FICT)"
        )
    return tuple(a for a in ATTRIBUTES if a in chosen)


def forces_provisional(attributes: tuple[str, ...] | list[str]) -> bool:
    return DOUT in attributes or FICT in attributes


def status_after_attributes(status: str, attributes: tuple[str, ...] | list[str]) -> str:
    """DOUT or FICT forces PROV, whatever was checked before."""
    return PROV if forces_provisional(attributes) else status


def status_after_strict_change(status: str) -> str:
    """Not confirmed by RNIV; the safe rule (REFERENCE.md): back to PROV, recorded in history."""
    return PROV


@dataclass(frozen=True)
class IdentityState:
    status: str
    attributes: tuple[str, ...]
    placeholder: bool


def _check_can_raise_trust(state: IdentityState, field: str) -> None:
    if forces_provisional(state.attributes):
        raise IdentityRuleError(field, "a doubtful or fictitious identity must stay provisional (PROV)")
    if state.placeholder:
        raise IdentityRuleError(field, "replace the placeholder traits before raising the identity status")


def status_after_document(
    state: IdentityState, document: str, special_case: str | None, age_years: int | None
) -> str:
    """PROV->VALI or RECUP->QUAL once a high-trust document was checked."""
    if document in REFUSED_DOCUMENTS:
        raise IdentityRuleError("document", REFUSED_DOCUMENTS[document])
    if document in SPECIAL_CASE_DOCUMENTS:
        if special_case not in SPECIAL_CASES:
            raise IdentityRuleError(
                "special_case",
                f"a {document} counts only in RNIV's special cases: {', '.join(SPECIAL_CASES)}",
            )
        if special_case == "minor_with_parent_document" and (age_years is None or age_years >= 18):
            raise IdentityRuleError("special_case", "minor_with_parent_document applies to minors only")
    elif document not in DOCUMENTS:
        raise IdentityRuleError(
            "document", f"document must be one of {', '.join(DOCUMENTS + SPECIAL_CASE_DOCUMENTS)}"
        )
    _check_can_raise_trust(state, "document")
    new = MOVES.get((state.status, "document"))
    if new is None:
        raise IdentityRuleError(
            "document", f"an identity document was already checked (status {state.status})"
        )
    return new


def status_after_insi(state: IdentityState) -> str:
    """PROV->RECUP or VALI->QUAL once INSi returned the identity; never for DOUT/FICT."""
    _check_can_raise_trust(state, "insi")
    new = MOVES.get((state.status, "insi"))
    if new is None:
        raise IdentityRuleError(
            "insi", f"the identity was already retrieved from INSi (status {state.status})"
        )
    return new


def check_optional_traits(
    values: dict[str, Any], *, first_name: str, birth_place: str, birth_date: date, today: date
) -> dict[str, Any]:
    """Validate the optional traits present in `values`; returns them normalised."""
    out: dict[str, Any] = {}
    for name in ("used_name", "used_first_name"):
        if name in values:
            raw = values[name]
            out[name] = domain.check_name(name, raw) if raw not in (None, "") else None
    if "first_names" in values:
        raw = values["first_names"]
        if raw in (None, ""):
            out["first_names"] = None
        else:
            names = domain.check_name("first_names", raw)
            if names != PLACEHOLDER_NAME and first_name != PLACEHOLDER_NAME:
                if names.split(" ")[0] != first_name.split(" ")[0] and not names.startswith(first_name):
                    raise IdentityRuleError(
                        "first_names", "first_names must start with the first birth first name"
                    )
            out["first_names"] = names
    if "birth_country" in values:
        out["birth_country"] = check_birth_country(values["birth_country"], birth_place)
    if "twin_rank" in values:
        rank = values["twin_rank"]
        if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= 9):
            raise IdentityRuleError("twin_rank", "twin_rank must be a number from 1 to 9")
        out["twin_rank"] = rank
    if "entitled_nir" in values:
        raw = values["entitled_nir"]
        if raw in (None, ""):
            out["entitled_nir"] = None
        else:
            # The insured parent's NIR (coverage data), only for a minor; never the child's INS.
            if birth_date != PLACEHOLDER_BIRTH_DATE and domain.age(birth_date, today)[0] >= 18:
                raise IdentityRuleError("entitled_nir", "entitled_nir is recorded for a minor patient only")
            out["entitled_nir"] = check_nir("entitled_nir", raw)
    if "email" in values:
        raw = (values["email"] or "").strip()
        if raw and (len(raw) > 254 or not _EMAIL.match(raw)):
            raise IdentityRuleError("email", "email is not a valid address")
        out["email"] = raw or None
    for name, pattern, shape in (
        ("mobile", _MOBILE, "06XXXXXXXX or 07XXXXXXXX"),
        ("phone", _PHONE, "0XXXXXXXXX"),
    ):
        if name in values:
            raw = re.sub(r"[ .]", "", values[name] or "")
            if raw and not pattern.match(raw):
                raise IdentityRuleError(name, f"{name} must be 10 digits: {shape}")
            out[name] = raw or None
    if "address" in values:
        raw = (values["address"] or "").strip()
        if len(raw) > 300:
            raise IdentityRuleError("address", "address is limited to 300 characters")
        out["address"] = raw or None
    return out


def check_birth_country(value: str | None, birth_place: str) -> str:
    """Born in France -> FRANCE (99100); born abroad -> the country of the birth place code."""
    if value in (None, ""):
        return (
            birth_place if birth_place.startswith("99") and birth_place != PLACEHOLDER_BIRTH_PLACE else FRANCE
        )
    code = str(value).strip()
    if not _COUNTRY.match(code):
        raise IdentityRuleError(
            "birth_country", "birth_country must be an INSEE country code 99xxx (FRANCE 99100)"
        )
    if birth_place == PLACEHOLDER_BIRTH_PLACE or code == PLACEHOLDER_BIRTH_PLACE:
        return code
    if birth_place.startswith("99") and code != birth_place:
        raise IdentityRuleError(
            "birth_country", "birth_country must be the country of birth_place for a birth abroad"
        )
    if not birth_place.startswith("99") and code != FRANCE:
        raise IdentityRuleError(
            "birth_country", "a birth in a French commune has birth_country FRANCE (99100)"
        )
    return code


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v}


def status_after_edit(status: str, changes: dict[str, tuple[Any, Any]]) -> str:
    """Editing a strict trait downgrades the status (the change itself goes to the history)."""
    if any(field in STRICT_FIELDS for field in changes):
        return status_after_strict_change(status)
    return status

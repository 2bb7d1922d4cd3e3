"""[beyond] INSi teleservice adapter: the interface dossier needs, and a local simulator.

The national INSi teleservice (Assurance Maladie) answers a search with a return code:
`00` exactly one identity found (its INS and reference traits), `01` none found,
`02` several found (the query must be refined). The real adapter needs a CPS/CPx
card or a software certificate and is out of reach here; `SimulatedInsi` answers
deterministically from the traits so the RECUP/QUAL paths can be exercised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from dossier.domain_nir import with_key
from dossier.domain_phonetic import fold

FOUND, NOT_FOUND, SEVERAL = "00", "01", "02"
INS_NIR_OID = "1.2.250.1.213.1.4.8"


@dataclass(frozen=True)
class InsiQuery:
    birth_name: str
    first_name: str
    birth_date: date
    sex: str
    birth_place: str


@dataclass(frozen=True)
class InsiIdentity:
    ins: str  # NIR used as INS (OID INS_NIR_OID)
    oid: str
    birth_name: str
    first_names: str
    birth_date: date
    sex: str
    birth_place: str


@dataclass(frozen=True)
class InsiAnswer:
    code: str
    identity: InsiIdentity | None = None

    @property
    def label(self) -> str:
        return {
            FOUND: "identité trouvée",
            NOT_FOUND: "aucune identité trouvée",
            SEVERAL: "plusieurs identités trouvées",
        }[self.code]


class InsiAdapter(Protocol):
    def search(self, query: InsiQuery) -> InsiAnswer: ...

    def verify(self, ins: str, query: InsiQuery) -> InsiAnswer: ...


class SimulatedInsi:
    """Deterministic stand-in: a birth name starting with INCONNU answers 01, one starting
    with HOMONYME answers 02; anything else is found, with a NIR built from the traits."""

    def search(self, query: InsiQuery) -> InsiAnswer:
        name = fold(query.birth_name)
        if name.startswith("INCONNU"):
            return InsiAnswer(NOT_FOUND)
        if name.startswith("HOMONYME"):
            return InsiAnswer(SEVERAL)
        return InsiAnswer(FOUND, self._identity(query))

    def verify(self, ins: str, query: InsiQuery) -> InsiAnswer:
        answer = self.search(query)
        if answer.identity is None or answer.identity.ins != ins:
            return InsiAnswer(NOT_FOUND)
        return answer

    @staticmethod
    def _identity(query: InsiQuery) -> InsiIdentity:
        sex_digit = "2" if query.sex == "F" else "1"
        place = query.birth_place
        seed = f"{fold(query.birth_name)}|{fold(query.first_name)}|{query.birth_date}|{query.sex}|{place}"
        order = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 999 + 1
        first13 = (
            f"{sex_digit}{query.birth_date.year % 100:02d}{query.birth_date.month:02d}{place}{order:03d}"
        )
        return InsiIdentity(
            ins=with_key(first13),
            oid=INS_NIR_OID,
            birth_name=query.birth_name,
            first_names=query.first_name,
            birth_date=query.birth_date,
            sex=query.sex,
            birth_place=query.birth_place,
        )


def default_adapter() -> InsiAdapter:
    return SimulatedInsi()

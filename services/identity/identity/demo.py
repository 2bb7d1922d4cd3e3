"""Demo accounts and structures for embedded mode and local runs (never in production).

Every id is fixed — ``uuid.uuid5(uuid.NAMESPACE_URL, "coordo-demo/<key>")`` — so other
services' tests and demo data can refer to them. Every demo password is ``coordo-demo``.

========================  ====================================  ======================================
key (``DEMO_IDS``)        who / what                            profession, structures, roles
========================  ====================================  ======================================
``dac``                   DAC Sud Essonne                        structure, kind ``dac``
``unite-geriatrie``       CH Sud Francilien — Médecine gér.      structure, kind ``unit``
``coordinateur``          Claire Martin                          gestionnaire de cas (not medical),
                                                                 DAC, roles user + super_user
``medecin``               Dr Paul Bernard                        médecin généraliste (medical), own
                                                                 practice: no structure, role user
``infirmiere``            Sophie Petit                           infirmier (medical), unité gériatrie,
                                                                 role user
``assistante-sociale``    Nadia Roux                             assistant social (not medical), DAC,
                                                                 role user
``admin``                 Admin Coordo                           no profession, role admin
========================  ====================================  ======================================

The usernames are the keys of the persons (``coordinateur``, ``medecin``, ``infirmiere``,
``assistante-sociale``, ``admin``). Loading twice changes nothing and emits nothing more.

Every demo account has accepted the terms of use in force (ID-2) except
``assistante-sociale``, so the first-login flow (CGU shown before anything else) can be seen.

Beside them, ``identity.directory_demo`` adds a generated directory of
``COORDO_DEMO_DIRECTORY_ENTRIES`` entries (default 3,000; 0 for none): directory-only
professionals and structures, without accounts.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from chassis.db import Database
from chassis.problems import Problem
from chassis.settings import Settings, env
from identity import directory_demo, domain, usecases
from identity.models import Person, Structure

log = logging.getLogger(__name__)

DEMO_PASSWORD = "coordo-demo"
# The one demo account that has not accepted the terms yet (first-login flow of ID-2).
TERMS_NOT_ACCEPTED = "assistante-sociale"
DEFAULT_DIRECTORY_ENTRIES = 3000


def demo_id(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordo-demo/{key}"))


STRUCTURES: dict[str, dict[str, Any]] = {
    "dac": {
        "name": "DAC Sud Essonne",
        "kind": "dac",
        "finess": "910800001",
        "address": "12 rue de la Coordination",
        "city": "Évry-Courcouronnes",
        "postal_code": "91000",
        "phone": "0160000001",
        "description": "Dispositif d'appui à la coordination du sud de l'Essonne.",
    },
    "unite-geriatrie": {
        "name": "CH Sud Francilien — Médecine gériatrique",
        "kind": "unit",
        "finess": "910800002",
        "address": "40 avenue Serge Dassault",
        "city": "Corbeil-Essonnes",
        "postal_code": "91100",
        "phone": "0160000002",
        "description": "Unité de médecine gériatrique.",
    },
}

PERSONS: dict[str, dict[str, Any]] = {
    "coordinateur": {
        "first_name": "Claire",
        "last_name": "Martin",
        "email": "claire.martin@dac-sud-essonne.example",
        "phone": "0160000011",
        "profession": "gestionnaire_de_cas",
        "roles": ["user", "super_user"],
        "structures": ["dac"],
    },
    "medecin": {
        "title": "Dr",
        "first_name": "Paul",
        "last_name": "Bernard",
        "email": "paul.bernard@medecin.example",
        "phone": "0160000012",
        "profession": "medecin",
        "specialty": "Médecine générale",
        "rpps": "10000000012",
        "address": "3 place du Marché",
        "city": "Évry-Courcouronnes",
        "postal_code": "91000",
        "roles": ["user"],
        "structures": [],
    },
    "infirmiere": {
        "first_name": "Sophie",
        "last_name": "Petit",
        "email": "sophie.petit@chsf.example",
        "phone": "0160000013",
        "profession": "infirmier",
        "rpps": "10000000013",
        "roles": ["user"],
        "structures": ["unite-geriatrie"],
    },
    "assistante-sociale": {
        "first_name": "Nadia",
        "last_name": "Roux",
        "email": "nadia.roux@dac-sud-essonne.example",
        "phone": "0160000014",
        "profession": "assistant_social",
        "roles": ["user"],
        "structures": ["dac"],
    },
    "admin": {
        "first_name": "Admin",
        "last_name": "Coordo",
        "email": "admin@coordo.example",
        "roles": ["admin"],
        "structures": [],
    },
}

DEMO_IDS: dict[str, str] = {key: demo_id(key) for key in (*STRUCTURES, *PERSONS)}
DEMO_USERNAMES: tuple[str, ...] = tuple(PERSONS)


def load(_settings: Settings, db: Database) -> None:
    """Create what is missing; existing rows are left as they are (idempotent)."""
    for key, fields in STRUCTURES.items():
        with db.session_factory() as s:
            if s.get(Structure, DEMO_IDS[key]) is not None:
                continue
        _create(lambda: usecases.create_structure(db, None, fields, structure_id=DEMO_IDS[key]), key)  # noqa: B023
    for key, fields in PERSONS.items():
        with db.session_factory() as s:
            if s.get(Person, DEMO_IDS[key]) is not None:
                continue
        body = {
            **fields,
            "username": key,
            "password": DEMO_PASSWORD,
            "structures": [DEMO_IDS[s] for s in fields["structures"]],
        }
        created = _create(lambda: usecases.create_person(db, None, body, person_id=DEMO_IDS[key]), key)  # noqa: B023
        if created and key != TERMS_NOT_ACCEPTED:
            usecases.accept_terms(db, DEMO_IDS[key], domain.TERMS_VERSION)
    entries = int(env("COORDO_DEMO_DIRECTORY_ENTRIES", str(DEFAULT_DIRECTORY_ENTRIES)) or 0)
    if directory_demo.load(db, entries):
        log.info("demo directory: %d entries generated", entries)


def _create(action: Any, key: str) -> bool:
    try:
        action()
    except Problem as exc:
        if exc.status != 409:
            raise
        # Another process loaded it at the same time, or the username is taken by a real account.
        log.warning("demo %s not created: %s", key, exc.detail)
        return False
    return True

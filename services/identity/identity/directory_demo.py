"""A realistic, deterministic demo directory (ID-5): professionals and structures of Essonne
and Provence-Alpes-Côte d'Azur, for embedded mode, local runs and the search benchmark.

Names come from Faker's fr_FR provider with a fixed seed; communes and postal codes from the
committed `data/communes.csv` (real communes, weighted by population), so nothing is fetched
at run time. Ids are fixed — ``uuid5(NAMESPACE_URL, "coordo-demo/directory/<p|s>/<n>")`` —
whatever the Faker version. Entries are directory-only: listed and searchable, no account,
no login, no event (they are not registered users).
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from faker import Faker
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from chassis.db import Database, utcnow
from identity import domain
from identity.models import DirectoryTerm, Membership, Person, Structure
from identity.usecases import directory_term_rows

SEED = 20261130
COMMUNES_CSV = Path(__file__).parent / "data" / "communes.csv"
STRUCTURE_SHARE = 0.12


@dataclass(frozen=True)
class Commune:
    name: str
    postal_code: str
    department: str
    weight: int


def communes() -> list[Commune]:
    with COMMUNES_CSV.open(encoding="utf-8") as handle:
        return [
            Commune(r["commune"], r["postal_code"], r["department"], int(r["population_k"]))
            for r in csv.DictReader(handle)
        ]


def entry_id(entry_type: str, n: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordo-demo/directory/{entry_type}/{n}"))


# kind -> share of the structures
STRUCTURE_MIX: dict[str, int] = {
    "dac": 2,
    "hospital": 6,
    "unit": 14,
    "service": 6,
    "saad": 10,
    "ssiad": 8,
    "ehpad": 12,
    "practice": 28,
    "pharmacy": 10,
    "health_centre": 4,
}

# profession -> (share of the persons, chance of belonging to a structure, kinds it works in)
PROFESSION_MIX: dict[str, tuple[int, float, tuple[str, ...]]] = {
    "infirmier": (24, 0.7, ("unit", "ssiad", "practice", "ehpad", "health_centre", "hospital")),
    "medecin": (18, 0.5, ("practice", "health_centre", "hospital", "unit", "ehpad")),
    "masseur_kinesitherapeute": (9, 0.4, ("practice", "health_centre", "unit")),
    "aide_soignant": (10, 0.95, ("ssiad", "ehpad", "unit")),
    "secretaire": (9, 0.95, ("practice", "hospital", "unit", "dac", "health_centre")),
    "pharmacien": (6, 0.8, ("pharmacy", "hospital")),
    "assistant_social": (5, 0.95, ("service", "hospital", "dac", "unit")),
    "chirurgien_dentiste": (4, 0.4, ("practice", "health_centre")),
    "orthophoniste": (3, 0.3, ("practice",)),
    "psychologue": (3, 0.5, ("unit", "service", "health_centre")),
    "gestionnaire_de_cas": (3, 1.0, ("dac",)),
    "sage_femme": (2, 0.5, ("hospital", "unit", "practice")),
    "ergotherapeute": (2, 0.6, ("unit", "service", "ehpad")),
    "coordinateur": (2, 1.0, ("dac", "health_centre", "ssiad")),
}

SPECIALTIES = (
    ("Médecine générale", 60),
    ("Gériatrie", 8),
    ("Cardiologie", 5),
    ("Neurologie", 4),
    ("Psychiatrie", 5),
    ("Pneumologie", 3),
    ("Médecine physique et de réadaptation", 3),
    ("Soins palliatifs", 3),
    ("Oncologie", 3),
    ("Endocrinologie", 2),
    ("Néphrologie", 2),
)

UNIT_SERVICES = (
    "Médecine gériatrique",
    "Court séjour gériatrique",
    "Soins de suite et de réadaptation",
    "Cardiologie",
    "Neurologie",
    "Pneumologie",
    "Oncologie médicale",
    "Soins palliatifs",
    "Médecine interne",
    "Équipe mobile de gériatrie",
    "Hospitalisation à domicile",
    "Psychiatrie adulte",
    "Consultation mémoire",
)
CLINIC_NAMES = (
    "Saint-Jean",
    "Sainte-Marie",
    "des Cèdres",
    "du Parc",
    "Les Fontaines",
    "du Val",
    "Saint-Joseph",
)
RESIDENCES = (
    "Les Tilleuls",
    "La Roseraie",
    "Les Glycines",
    "Le Clos Fleuri",
    "Les Magnolias",
    "Résidence du Parc",
    "Les Jardins d'Automne",
    "La Maison du Lac",
    "Les Oliviers",
    "Le Bois Joli",
    "Les Lavandes",
    "Saint-Joseph",
)
PHARMACY_NAMES = (
    "de la Gare",
    "du Centre",
    "des Écoles",
    "du Marché",
    "de la Mairie",
    "du Château",
    "de l'Église",
)
# A practice's name says who works there.
PRACTICE_KINDS: dict[str, tuple[str, ...]] = {
    "Cabinet médical": ("medecin", "secretaire"),
    "Cabinet infirmier": ("infirmier",),
    "Cabinet de kinésithérapie": ("masseur_kinesitherapeute",),
    "Cabinet dentaire": ("chirurgien_dentiste", "secretaire"),
    "Cabinet d'orthophonie": ("orthophoniste",),
    "Cabinet de sage-femme": ("sage_femme",),
}
DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "dac": ("Appui à la coordination des parcours complexes, toutes pathologies et tous âges.",),
    "hospital": ("Établissement de santé : médecine, chirurgie, obstétrique, urgences 24h/24.",),
    "unit": ("Hospitalisation complète et de jour ; admissions programmées par le secrétariat.",),
    "service": ("Accueil, information et accompagnement social sur rendez-vous.",),
    "saad": ("Aide à la toilette, aux repas et aux courses ; interventions 7j/7.",),
    "ssiad": ("Soins infirmiers à domicile pour personnes âgées et adultes en situation de handicap.",),
    "ehpad": ("Hébergement permanent et temporaire, unité protégée pour personnes désorientées.",),
    "practice": ("Consultations sur rendez-vous, visites à domicile possibles.",),
    "pharmacy": ("Préparation des piluliers, livraison à domicile, matériel médical.",),
    "health_centre": ("Maison de santé pluriprofessionnelle : médecins, infirmiers, kinésithérapeutes.",),
}
PERSON_NOTES = (
    "Visites à domicile le matin.",
    "Joignable par messagerie sécurisée.",
    "Consultations sur rendez-vous.",
    "Absent le mercredi.",
)


@dataclass
class Directory:
    structures: list[dict[str, Any]]
    persons: list[dict[str, Any]]
    memberships: list[dict[str, Any]]
    terms: list[dict[str, str]]


def _of(commune: str) -> str:
    """French "de" before a commune name: "d'Évry", "du Cannet", "des Ulis", "de Nice"."""
    if commune.startswith("Le "):
        return "du " + commune[3:]
    if commune.startswith("Les "):
        return "des " + commune[4:]
    if domain.fold(commune[:1]) in ("a", "e", "i", "o", "u", "y", "h"):
        return "d'" + commune
    return "de " + commune


def _phone(rng: random.Random, department: str) -> str:
    prefix = "01" if department == "91" else "04"
    return " ".join([prefix, *(f"{rng.randrange(100):02d}" for _ in range(4))])


def _slug(text: str) -> str:
    return "-".join(domain.fold(text).replace(".", " ").split())[:40]


def generate(entries: int, *, seed: int = SEED, now: datetime | None = None) -> Directory:
    """`entries` directory entries (about 12 % structures, the rest persons), always the same
    for the same arguments."""
    now = now or utcnow()
    rng = random.Random(seed)
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    places = communes()
    weights = [c.weight for c in places]
    n_structures = max(len(STRUCTURE_MIX), round(entries * STRUCTURE_SHARE)) if entries else 0
    n_persons = max(0, entries - n_structures)

    structures: list[dict[str, Any]] = []
    terms: list[dict[str, str]] = []
    kinds = list(STRUCTURE_MIX)
    kind_weights = list(STRUCTURE_MIX.values())
    hospitals: list[dict[str, Any]] = []
    by_kind_commune: dict[tuple[str, str], list[dict[str, Any]]] = {}
    commune_of: dict[str, Commune] = {}
    practice_of: dict[str, tuple[str, ...]] = {}

    for n in range(n_structures):
        kind = kinds[n] if n < len(kinds) else rng.choices(kinds, kind_weights)[0]
        if kind == "unit" and not hospitals:
            kind = "hospital"
        commune = rng.choices(places, weights)[0]
        address = fake.street_address()
        if kind == "dac":
            name = f"DAC {commune.name}"
        elif kind == "hospital":
            name = rng.choice(
                (f"Centre hospitalier {_of(commune.name)}", f"Clinique {rng.choice(CLINIC_NAMES)}")
            )
        elif kind == "unit":
            hospital = rng.choice(hospitals)
            commune, address = commune_of[hospital["id"]], hospital["address"]
            name = f"{hospital['name']} — {rng.choice(UNIT_SERVICES)}"
        elif kind == "service":
            name = rng.choice(
                (
                    f"CCAS {_of(commune.name)}",
                    f"Service social départemental — {commune.name}",
                    f"CLIC {_of(commune.name)}",
                    f"Plateforme de répit {_of(commune.name)}",
                )
            )
        elif kind == "saad":
            name = rng.choice((f"ADMR {_of(commune.name)}", f"{fake.last_name()} Services à domicile"))
        elif kind == "ssiad":
            name = rng.choice((f"SSIAD {_of(commune.name)}", f"SSIAD Croix-Rouge {commune.name}"))
        elif kind == "ehpad":
            name = f"EHPAD {rng.choice(RESIDENCES)}"
        elif kind == "practice":
            label = rng.choice(list(PRACTICE_KINDS))
            practice_of[entry_id("s", n)] = PRACTICE_KINDS[label]
            name = f"{label} {rng.choice((fake.last_name(), 'du Centre', 'de la Gare', 'des Tilleuls'))}"
        elif kind == "pharmacy":
            name = f"Pharmacie {rng.choice((*PHARMACY_NAMES, fake.last_name()))}"
        else:
            name = rng.choice(
                (
                    f"Maison de santé pluriprofessionnelle {_of(commune.name)}",
                    f"Centre de santé {_of(commune.name)}",
                )
            )
        sid = entry_id("s", n)
        row = {
            "id": sid,
            "name": name,
            "kind": kind,
            "finess": f"{commune.department}{rng.randrange(10**7):07d}",
            "address": address,
            "city": commune.name,
            "postal_code": commune.postal_code,
            "phone": _phone(rng, commune.department),
            "description": rng.choice(DESCRIPTIONS[kind]),
            "sort_key": domain.sort_key(name),
            "created_at": now,
        }
        structures.append(row)
        commune_of[sid] = commune
        by_kind_commune.setdefault((kind, commune.name), []).append(row)
        if kind == "hospital":
            hospitals.append(row)
        terms += directory_term_rows(
            "s", sid, row["sort_key"], [name], [(commune.name, commune.postal_code)], [("kind", kind)]
        )

    persons: list[dict[str, Any]] = []
    memberships: list[dict[str, Any]] = []
    professions = list(PROFESSION_MIX)
    profession_weights = [v[0] for v in PROFESSION_MIX.values()]
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
    specialties = [s for s, _ in SPECIALTIES]
    specialty_weights = [w for _, w in SPECIALTIES]
    for n in range(n_persons):
        profession = rng.choices(professions, profession_weights)[0]
        _, attach_chance, work_kinds = PROFESSION_MIX[profession]
        female = rng.random() < (0.85 if profession in ("infirmier", "aide_soignant", "secretaire") else 0.55)
        first = fake.first_name_female() if female else fake.first_name_male()
        last = fake.last_name()
        commune = rng.choices(places, weights)[0]
        structure = None
        if rng.random() < attach_chance:
            near = _pool(pools, (profession, commune.name), work_kinds, by_kind_commune, practice_of)
            anywhere = _pool(pools, (profession, ""), work_kinds, by_kind_commune, practice_of)
            pool = near if near and rng.random() < 0.8 else anywhere
            structure = rng.choice(pool) if pool else None
        pid = entry_id("p", n)
        title = "Dr" if profession in ("medecin", "chirurgien_dentiste") else None
        own_place = structure is None
        if structure is not None:
            commune = commune_of[structure["id"]]
            domain_name = f"{_slug(structure['name'])}.example"
        else:
            domain_name = f"{_slug(last)}-sante.example"
        person = {
            "id": pid,
            "username": None,
            "password_hash": None,
            "title": title,
            "first_name": first,
            "last_name": last,
            "display_name": domain.display_name(first, last, title),
            "email": f"{_slug(first)}.{_slug(last)}@{domain_name}".replace("-.", "."),
            "phone": _phone(rng, commune.department),
            "profession_code": profession,
            "specialty": rng.choices(specialties, specialty_weights)[0] if profession == "medecin" else None,
            "rpps": f"10{rng.randrange(10**9):09d}" if domain.is_medical(profession) else None,
            "roles": ["user"],
            "address": fake.street_address() if own_place else None,
            "city": commune.name if own_place else None,
            "postal_code": commune.postal_code if own_place else None,
            "description": rng.choice(PERSON_NOTES) if rng.random() < 0.2 else None,
            "sort_key": domain.sort_key(last, first),
            "active": True,
            "created_at": now,
            "last_login_at": None,
            "terms_version": None,
            "terms_accepted_at": None,
        }
        persons.append(person)
        if structure is not None:
            memberships.append({"person_id": pid, "structure_id": structure["id"], "created_at": now})
        codes = [("prof", profession)] + ([("member", structure["id"])] if structure is not None else [])
        terms += directory_term_rows(
            "p", pid, person["sort_key"], [first, last], [(commune.name, commune.postal_code)], codes
        )
    return Directory(structures, persons, memberships, terms)


def _pool(
    cache: dict[tuple[str, str], list[dict[str, Any]]],
    key: tuple[str, str],
    work_kinds: tuple[str, ...],
    by_kind_commune: dict[tuple[str, str], list[dict[str, Any]]],
    practice_of: dict[str, tuple[str, ...]],
) -> list[dict[str, Any]]:
    """The structures a profession works in, in one commune ("" = anywhere); cached."""
    if key not in cache:
        profession, commune = key
        cache[key] = [
            s
            for (kind, place), found in by_kind_commune.items()
            if kind in work_kinds and (not commune or place == commune)
            for s in found
            if profession in practice_of.get(s["id"], (profession,))
        ]
    return cache[key]


def _chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def load(db: Database, entries: int, *, seed: int = SEED) -> bool:
    """Insert the generated directory in one transaction, unless it is there already
    (idempotent). Returns whether it inserted anything."""
    if entries <= 0:
        return False
    with db.session_factory() as s:
        if s.get(Structure, entry_id("s", 0)) is not None:
            return False
    directory = generate(entries, seed=seed)
    with db.unit_of_work() as uow:
        s = uow.session
        for model, rows in (
            (Structure, directory.structures),
            (Person, directory.persons),
            (Membership, directory.memberships),
            (DirectoryTerm, directory.terms),
        ):
            for chunk in _chunks(rows):
                s.execute(insert(model), chunk)
        try:
            uow.commit()
        except IntegrityError:
            uow.rollback()  # another process loaded it at the same time
            return False
    return True

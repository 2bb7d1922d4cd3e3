"""ID-5 directory search on the generated demo directory (SQLite and PostgreSQL): every
filter's answer is checked against the generated data itself, filtered in plain Python."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, func, pool, select, text

from chassis.db import Database
from chassis.settings import Settings
from identity import directory_demo, domain, usecases
from identity.app import SERVICE
from identity.models import DirectoryTerm, Person, Structure

ENTRIES = 1500
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One loaded directory per backend for the whole module: these tests only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('directory') / 'identity.db'}"
        admin = None
    else:
        server = request.getfixturevalue("postgres_server_url")
        name = f"coordo_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(
            f"{server}/postgres".replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
            poolclass=pool.NullPool,
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"{server}/{name}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("COORDO_VAR_DIR", str(tmp_path_factory.mktemp("var")))
        settings = Settings(**{**SERVICE.settings().__dict__, "database_url": url})
    SERVICE.migrate(settings)
    db = SERVICE.database(settings)
    assert directory_demo.load(db, ENTRIES)
    try:
        yield db
    finally:
        db.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="module")
def directory() -> directory_demo.Directory:
    return directory_demo.generate(ENTRIES, now=NOW)


def _words(text: str | None) -> list[str]:
    return domain.fold(text).split()


class Oracle:
    """What the search must answer, computed from the generated rows."""

    def __init__(self, d: directory_demo.Directory) -> None:
        self.structures = {s["id"]: s for s in d.structures}
        self.members: dict[str, list[str]] = {}
        for m in d.memberships:
            self.members.setdefault(m["person_id"], []).append(m["structure_id"])
        self.persons = d.persons

    def places(self, p: dict[str, Any]) -> list[tuple[str, str]]:
        own = [(p["city"], p["postal_code"])] if p["city"] else []
        theirs = [self.structures[s] for s in self.members.get(p["id"], [])]
        return own + [(s["city"], s["postal_code"]) for s in theirs]

    def persons_matching(
        self, q: str = "", city: str = "", postal_code: str = "", profession: str = ""
    ) -> list[str]:
        found = []
        for p in self.persons:
            names = _words(p["first_name"]) + _words(p["last_name"])
            if not all(any(n.startswith(w) for n in names) for w in _words(q)):
                continue
            if city and not any(domain.fold(c).startswith(domain.fold(city)) for c, _ in self.places(p)):
                continue
            if postal_code and not any(pc.startswith(postal_code) for _, pc in self.places(p)):
                continue
            if profession and p["profession_code"] != profession:
                continue
            found.append(p)
        found.sort(key=lambda p: (domain.sort_key(p["last_name"], p["first_name"]), p["id"]))
        return [p["id"] for p in found]


def all_ids(search: Any, **params: Any) -> tuple[list[str], int]:
    """Walk every page; also checks that `total` stays the same on each page."""
    ids: list[str] = []
    totals = set()
    offset = 0
    while True:
        page = search(limit=200, offset=offset, **params)
        totals.add(page["total"])
        ids += [i["id"] for i in page["items"]]
        if len(page["items"]) < 200:
            break
        offset += 200
    assert len(totals) == 1
    return ids, totals.pop()


def test_the_generated_directory_is_realistic_and_loads_once(database: Database, directory: Any):
    assert not directory_demo.load(database, ENTRIES)  # already there
    with database.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Person)) == len(directory.persons)
        assert s.scalar(select(func.count()).select_from(Structure)) == len(directory.structures)
        assert s.scalar(select(func.count()).select_from(DirectoryTerm)) == len(directory.terms)
        assert s.scalar(select(func.count()).select_from(Person).where(Person.username.is_not(None))) == 0
    assert len(directory.persons) + len(directory.structures) == ENTRIES
    kinds = Counter(s["kind"] for s in directory.structures)
    assert set(kinds) == set(directory_demo.STRUCTURE_MIX)
    professions = Counter(p["profession_code"] for p in directory.persons)
    assert professions.most_common(1)[0][0] == "infirmier"
    assert all(domain.check_profession(code) for code in professions)
    towns = {(c.name, c.postal_code) for c in directory_demo.communes()}
    assert all((s["city"], s["postal_code"]) in towns for s in directory.structures)
    assert all(domain.check_finess(s["finess"]) for s in directory.structures)
    assert all(p["title"] == "Dr" for p in directory.persons if p["profession_code"] == "medecin")
    # Same seed, same directory (ids and names), with no network.
    again = directory_demo.generate(ENTRIES, now=NOW)
    assert again.persons == directory.persons and again.terms == directory.terms
    assert directory.persons[0]["id"] == str(uuid.uuid5(uuid.NAMESPACE_URL, "coordo-demo/directory/p/0"))
    assert not any(e["type"] for e in _outbox(database))  # directory-only entries announce nothing


def _outbox(db: Database) -> list[dict[str, Any]]:
    with db.session_factory() as s:
        return list(s.scalars(select(db.outbox.c.envelope)))


def test_person_filters_answer_exactly_what_the_data_says(database: Database, directory: Any):
    oracle = Oracle(directory)

    def search(**params: Any) -> dict[str, Any]:
        return usecases.search_persons(database, **params)

    sample = directory.persons[7]
    nurse_town = next(p for p in directory.persons if p["profession_code"] == "infirmier" and p["city"])
    cases: list[dict[str, Any]] = [
        {"q": sample["last_name"][:3].upper()},  # prefix, any case
        {"q": f"{sample['first_name'][:2]} {sample['last_name']}"},  # both words must match
        {"q": "Hélè"},  # accents ignored both ways
        {"q": "marie"},  # also the second word of "Anne-Marie"
        {"city": "evry"},  # beginning of "Évry-Courcouronnes"
        {"city": "MARSEILLE"},
        {"postal_code": "91"},
        {"postal_code": "13008"},
        {"profession": "infirmier", "city": nurse_town["city"]},
        {"profession": "medecin", "postal_code": "06", "q": "a"},
        {"q": "zzzzz"},
    ]
    for params in cases:
        expected = oracle.persons_matching(**params)
        ids, total = all_ids(search, **params)
        assert ids == expected, params
        assert total == len(expected), params
    assert oracle.persons_matching(q="marie") and oracle.persons_matching(city="evry")


def test_persons_of_a_coordination_structure_and_structure_search(database: Database, directory: Any):
    dac = next(s for s in directory.structures if s["kind"] == "dac")
    team = {m["person_id"] for m in directory.memberships if m["structure_id"] == dac["id"]}
    ids, total = all_ids(lambda **p: usecases.search_persons(database, **p), structure_id=dac["id"])
    assert set(ids) == team and total == len(team)
    assert team  # coordinators and case managers belong to DACs
    person = usecases.person_entry(database, ids[0])
    assert dac["id"] in [s["id"] for s in person["structures"]]

    def structures(**params: Any) -> list[dict[str, Any]]:
        return [s for s in directory.structures if all(_structure_match(s, k, v) for k, v in params.items())]

    for params in (
        {"kind": "ehpad"},
        {"q": "ssiad"},
        {"q": "centre hosp", "city": "nice"},
        {"kind": "pharmacy", "postal_code": "91"},
    ):
        expected = sorted(structures(**params), key=lambda s: (s["sort_key"], s["id"]))
        ids, total = all_ids(lambda **p: usecases.search_structures(database, **p), **params)
        assert ids == [s["id"] for s in expected], params
        assert total == len(expected)


def _structure_match(s: dict[str, Any], key: str, value: str) -> bool:
    if key == "kind":
        return bool(s["kind"] == value)
    if key == "city":
        return domain.fold(s["city"]).startswith(domain.fold(value))
    if key == "postal_code":
        return bool(s["postal_code"].startswith(value))
    names = _words(s["name"])
    return all(any(n.startswith(w) for n in names) for w in _words(value))


def test_pages_are_stable_and_sorted_by_name(database: Database, directory: Any):
    first = usecases.search_persons(database, limit=20, offset=0)
    second = usecases.search_persons(database, limit=20, offset=20)
    assert first["total"] == len(directory.persons)
    names = [(p["last_name"], p["first_name"]) for p in first["items"] + second["items"]]
    assert [domain.sort_key(*n) for n in names] == sorted(domain.sort_key(*n) for n in names)
    assert not {p["id"] for p in first["items"]} & {p["id"] for p in second["items"]}
    # Past the last page: no item, and still the total.
    beyond = usecases.search_persons(database, q="mar", offset=100_000)
    assert (
        beyond["items"] == [] and beyond["total"] == usecases.search_persons(database, q="mar")["total"] > 0
    )

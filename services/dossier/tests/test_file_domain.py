"""Rules of the patient file's panels and of the file list (dossier/domain_file.py), table by table."""

from __future__ import annotations

from datetime import date

import pytest

from dossier import domain_file as d

TODAY = date(2026, 11, 30)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Lefèvre-D'Alès", "LEFEVRE D ALES"),
        ("  dupont  ", "DUPONT"),
        ("Œillet", "OEILLET"),
        ("", ""),
        (None, ""),
    ],
)
def test_name_key_folds_accents_hyphens_and_apostrophes(raw: str | None, key: str) -> None:
    assert d.name_key(raw) == key


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "suivi"}, "status"),
        ({"status": "sorti", "exit_reason": None}, "exit_reason"),
        ({"status": "sorti", "exit_reason": "vacances"}, "exit_reason"),
        ({"status": "suivi_soutenu", "exit_reason": "deces"}, "exit_reason"),
        ({"status": "sorti", "exit_reason": "autre", "comment": None}, "comment"),
        ({"started_on": date(2026, 12, 1)}, "started_on"),
        ({"expertise": "cardiologie"}, "expertise"),
    ],
)
def test_a_status_change_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    values: dict[str, object] = {
        "status": "suivi_soutenu",
        "started_on": TODAY,
        "exit_reason": None,
        "expertise": None,
        "comment": None,
        **change,
    }
    with pytest.raises(d.FileRuleError) as error:
        d.check_status(today=TODAY, **values)  # type: ignore[arg-type]
    assert error.value.field == field


def test_sorti_with_its_reason_is_accepted() -> None:
    change = d.check_status(
        status="sorti", started_on=TODAY, exit_reason="deces", expertise=None, comment=" ", today=TODAY
    )
    assert (change.status, change.exit_reason, change.comment) == ("sorti", "deces", None)


@pytest.mark.parametrize(
    ("statuses", "closed"),
    [([], False), (["sorti"], True), (["sorti", "archive"], True), (["sorti", "suivi_soutenu"], False)],
)
def test_a_file_is_closed_only_when_every_structure_let_it_go(statuses: list[str], closed: bool) -> None:
    assert d.file_closed(statuses) is closed


def test_the_closing_checklist_waits_for_open_tasks_then_allows_the_exit_status() -> None:
    steps = d.closing_checklist(open_forms=0, open_tasks=2, current_status="suivi_soutenu")
    assert [(s.code, s.done, s.remaining) for s in steps] == [
        ("close_forms", True, 0),
        ("close_tasks", False, 2),
        ("set_exit_status", False, 1),
    ]
    with pytest.raises(d.FileRuleError) as error:
        d.check_closing(steps)
    assert error.value.field == "close_tasks"
    d.check_closing(d.closing_checklist(open_forms=0, open_tasks=0, current_status="suivi_soutenu"))


@pytest.mark.parametrize(
    ("planned", "entry", "exit_", "field"),
    [
        (False, date(2026, 11, 1), date(2026, 10, 1), "exit_date"),
        (False, date(2026, 12, 5), None, "planned"),
    ],
)
def test_a_stay_is_checked(planned: bool, entry: date, exit_: date | None, field: str) -> None:
    with pytest.raises(d.FileRuleError) as error:
        d.check_hospitalisation(
            establishment="CHU", planned=planned, entry_date=entry, exit_date=exit_, today=TODAY
        )
    assert error.value.field == field


@pytest.mark.parametrize(
    ("entry", "exit_", "hospitalised"),
    [
        (date(2026, 11, 1), None, True),
        (date(2026, 11, 1), TODAY, True),
        (date(2026, 11, 1), date(2026, 11, 29), False),
        (date(2026, 12, 1), None, False),
    ],
)
def test_hospitalised_today(entry: date, exit_: date | None, hospitalised: bool) -> None:
    assert d.hospitalised_on(entry, exit_, TODAY) is hospitalised


def test_death_date_may_be_unknown_but_not_in_the_future_or_before_birth() -> None:
    d.check_death(None, date(1950, 1, 1), TODAY)
    for bad in (date(2027, 1, 1), date(1949, 12, 31)):
        with pytest.raises(d.FileRuleError):
            d.check_death(bad, date(1950, 1, 1), TODAY)


@pytest.mark.parametrize(
    ("sharing", "shared_with", "actor", "visible"),
    [
        ("public", [], ("person:p2",), True),
        ("shared", ["person:p3"], ("person:p2",), False),
        ("shared", ["person:p3"], ("person:p3",), True),
        ("shared", ["structure:dac-1"], ("person:p2", "structure:dac-1"), True),
        ("shared", ["structure:dac-1"], ("person:author",), True),  # the author always sees it
    ],
)
def test_memo_sharing(sharing: str, shared_with: list[str], actor: tuple[str, ...], visible: bool) -> None:
    assert d.memo_visible(sharing, "author", shared_with, actor) is visible


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": " "}, "title"),
        ({"importance": "urgent"}, "importance"),
        ({"sharing": "shared"}, "shared_with"),
        ({"sharing": "public", "shared_with": ["person:x"]}, "shared_with"),
        ({"sharing": "shared", "shared_with": ["x"]}, "shared_with"),
    ],
)
def test_a_memo_is_checked(fields: dict[str, object], field: str) -> None:
    values: dict[str, object] = {
        "title": "Clés",
        "content": "chez la voisine",
        "importance": "normal",
        "sharing": "public",
        "shared_with": [],
        **fields,
    }
    with pytest.raises(d.FileRuleError) as error:
        d.check_memo(**values)  # type: ignore[arg-type]
    assert error.value.field == field


def test_only_the_author_or_its_structure_changes_a_memo() -> None:
    assert d.may_change_memo("p1", "dac-1", "p1", None)
    assert d.may_change_memo("p1", "dac-1", "p2", "dac-1")
    assert not d.may_change_memo("p1", None, "p2", "dac-1")


@pytest.mark.parametrize(
    ("period", "bounds"),
    [
        ("month", (date(2026, 10, 30), date(2026, 12, 31))),
        ("quarter", (date(2026, 8, 30), date(2027, 3, 2))),
        ("year", (date(2025, 11, 30), date(2027, 11, 30))),
        ("all", (None, None)),
    ],
)
def test_timeline_periods_reach_as_far_ahead_as_back(
    period: str, bounds: tuple[date | None, date | None]
) -> None:
    assert d.period_bounds(period, TODAY) == bounds


def test_month_back_from_the_31st_lands_on_the_last_day() -> None:
    assert d.period_bounds("month", date(2026, 3, 31))[0] == date(2026, 2, 28)


@pytest.mark.parametrize(
    ("kind", "importance", "active", "filters", "shown"),
    [
        ("event", "normal", False, [], True),
        ("event", "normal", False, ["important"], False),
        ("event", "important", False, ["important"], True),
        ("note", "normal", False, ["notes"], True),
        ("event", "normal", True, ["active"], True),
        ("event", "tres_important", False, ["important", "notes"], False),
    ],
)
def test_feed_filters_combine_with_or(
    kind: str, importance: str, active: bool, filters: list[str], shown: bool
) -> None:
    assert d.feed_entry_matches(kind, importance, active, filters) is shown


def test_a_patient_zones_follow_its_commune() -> None:
    zones = {"z-nord": ["59350", "59000"], "z-lille": ["59350"], "z-lyon": ["69123"]}
    assert d.zones_of("59350", zones) == ["z-lille", "z-nord"]
    assert d.zones_of(None, zones) == []


@pytest.mark.parametrize(("raw", "code"), [("H", "M"), ("f", "F"), ("O", "I"), ("M", "M")])
def test_list_sex_accepts_the_booklet_codes(raw: str, code: str) -> None:
    assert d.list_sex(raw) == code


def test_list_page_and_export_limits() -> None:
    d.check_page(1, 50, "name", "asc")
    d.check_page(d.MAX_PAGE, 100, "name", "asc")
    for args, field in [
        ((0, 10, "name", "asc"), "page"),
        ((d.MAX_PAGE + 1, 100, "name", "asc"), "page"),
        ((1, 7, "name", "asc"), "page_size"),
        ((1, 10, "x", "asc"), "sort"),
    ]:
        with pytest.raises(d.FileRuleError) as error:
            d.check_page(*args)
        assert error.value.field == field
    d.check_export_size(1000)
    with pytest.raises(d.FileRuleError) as error:
        d.check_export_size(1001)
    assert "1001" in error.value.detail


@pytest.mark.parametrize(
    ("scopes", "ends_on", "active", "in_force"),
    [
        (["dossiers"], None, True, True),
        (["discussions"], None, True, False),
        (["dossiers"], date(2026, 11, 29), True, False),
        (["dossiers", "discussions"], TODAY, True, True),
        (["dossiers"], None, False, False),
    ],
)
def test_a_delegation_opens_the_grantors_files_while_in_force(
    scopes: list[str], ends_on: date | None, active: bool, in_force: bool
) -> None:
    assert d.delegation_in_force(scopes, ends_on, active, TODAY) is in_force


@pytest.mark.parametrize(
    ("relation", "sex", "seen_from_the_other_file"),
    [
        ("brother", "F", "sister"),
        ("brother", "M", "brother"),
        ("sister", "M", "brother"),
        ("mother", "F", "child"),
        ("father", "M", "child"),
        ("child", "F", "mother"),
        ("child", "M", "father"),
        ("child", "I", "other"),
        ("spouse", "M", "spouse"),
        ("other", "F", "other"),
    ],
)
def test_a_link_reads_the_other_way_round_from_the_linked_file(
    relation: str, sex: str, seen_from_the_other_file: str
) -> None:
    assert d.inverse_relation(relation, sex) == seen_from_the_other_file

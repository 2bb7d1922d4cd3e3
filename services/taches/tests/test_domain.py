from datetime import date

import pytest

from taches import domain

ME = domain.Recipient("person", "person-1")


def task(**overrides: object) -> domain.NewTask:
    values: dict[str, object] = {
        "task_type": "appeler_famille",
        "active_types": domain.DEFAULT_TASK_TYPES,
        "label": None,
        "level": "important",
        "comment": None,
        "due_date": date(2026, 12, 15),
        "recipients": [],
        "creator": ME,
    }
    values.update(overrides)
    return domain.new_task(**values)


def test_the_cycle_is_a_traiter_en_cours_traitee_annulee_and_back() -> None:
    status = domain.INITIAL_STATUS
    seen = [status]
    for _ in range(4):
        status = domain.next_status(status)
        seen.append(status)
    assert seen == ["a_traiter", "en_cours", "traitee", "annulee", "a_traiter"]


@pytest.mark.parametrize(
    ("current", "requested"),
    [("a_traiter", "en_cours"), ("en_cours", "traitee"), ("traitee", "annulee"), ("annulee", "a_traiter")],
)
def test_one_click_moves_to_the_next_status(current: str, requested: str) -> None:
    assert domain.check_transition(current, requested) == requested


ALLOWED = {
    ("a_traiter", "en_cours"),
    ("en_cours", "traitee"),
    ("traitee", "annulee"),
    ("annulee", "a_traiter"),
}


@pytest.mark.parametrize(
    ("current", "requested"),
    [(c, r) for c in domain.STATUSES for r in domain.STATUSES],
)
def test_every_pair_of_statuses_only_the_four_cycle_moves_are_allowed(current: str, requested: str) -> None:
    """TSK-3 as a table: 16 pairs, 4 allowed (one click = the next status), 12 refused
    (no jump, no step back, a double click does not move a task twice)."""
    if (current, requested) in ALLOWED:
        assert domain.check_transition(current, requested) == requested
        return
    with pytest.raises(domain.TransitionError) as err:
        domain.check_transition(current, requested)
    assert err.value.allowed == domain.NEXT_STATUS[current]
    assert domain.NEXT_STATUS[current] in str(err.value)


def test_an_unknown_status_is_refused_naming_the_field() -> None:
    with pytest.raises(domain.TaskRuleError) as err:
        domain.check_transition("a_traiter", "fini")
    assert err.value.field == "status"


def test_a_traitee_task_is_read_only_until_moved_on() -> None:
    assert domain.is_read_only("traitee")
    with pytest.raises(domain.ReadOnlyError):
        domain.check_editable("traitee")
    for status in ("a_traiter", "en_cours", "annulee"):
        domain.check_editable(status)


def test_the_creator_is_the_recipient_by_default() -> None:
    assert task().recipients == (ME,)
    structure = domain.Recipient("structure", "dac-1")
    assert task(creator=structure).recipients == (structure,)


def test_recipients_keep_their_order_without_duplicates() -> None:
    other = domain.Recipient("structure", "dac-1")
    assert task(recipients=[other, ME, other]).recipients == (other, ME)


@pytest.mark.parametrize("recipient", [domain.Recipient("group", "g-1"), domain.Recipient("person", " ")])
def test_a_malformed_recipient_is_refused(recipient: domain.Recipient) -> None:
    with pytest.raises(domain.TaskRuleError) as err:
        task(recipients=[recipient])
    assert err.value.field == "recipients"


def test_the_label_defaults_to_the_type_name_but_autre_needs_one() -> None:
    assert task().label == "Appeler famille/entourage"
    assert task(task_type="bilan_ppcs", label="  Bilan   à refaire ").label == "Bilan à refaire"
    with pytest.raises(domain.TaskRuleError) as err:
        task(task_type="autre", label=" ")
    assert err.value.field == "label"
    assert task(task_type="autre", label="Commander le lit").label == "Commander le lit"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task_type": "appeler_voisin"}, "type"),
        ({"level": "critique"}, "level"),
        ({"label": "x" * 201}, "label"),
        ({"comment": "x" * 4001}, "comment"),
    ],
)
def test_bad_input_is_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(domain.TaskRuleError) as err:
        task(**change)
    assert err.value.field == field


def test_an_empty_comment_is_no_comment() -> None:
    assert task(comment="   ").comment is None
    assert task(comment=" Rappeler après 14h ").comment == "Rappeler après 14h"


def test_a_type_must_be_in_the_active_list() -> None:
    custom = {"passage_ide": "Passage IDE", "autre": "Autre"}
    assert task(task_type="passage_ide", active_types=custom).label == "Passage IDE"
    with pytest.raises(domain.TaskRuleError) as err:
        task(task_type="bilan_ppcs", active_types=custom)
    assert err.value.field == "type"
    for bad in ("Bilan", "1x", "", "a" * 41, "bilan-ppcs"):
        with pytest.raises(domain.TaskRuleError):
            domain.check_type_code(bad)


def test_a_new_task_may_be_born_in_progress_or_done_but_not_cancelled() -> None:
    assert task().status == "a_traiter"
    assert task(status="traitee").status == "traitee"
    with pytest.raises(domain.TaskRuleError) as err:
        task(status="annulee")
    assert err.value.field == "status"


def test_only_linked_patients_may_be_added_and_the_main_one_is_not_repeated() -> None:
    linked = {"p-2", "p-3"}
    made = task(patient_id="p-1", other_patients=["p-2", "p-1", "p-2"], linked_patients=linked)
    assert made.other_patients == ("p-2",)
    with pytest.raises(domain.TaskRuleError) as err:
        task(patient_id="p-1", other_patients=["p-9"], linked_patients=linked)
    assert err.value.field == "other_patient_ids" and "p-9" in err.value.detail


def test_zone_codes_are_checked() -> None:
    assert task(zone=" VO-LITTORAL ").zone == "VO-LITTORAL"
    assert task(zone="").zone is None
    with pytest.raises(domain.TaskRuleError) as err:
        task(zone="zone avec espaces")
    assert err.value.field == "zone"


def test_changes_list_only_what_differs() -> None:
    before = {"label": "a", "level": "urgent", "due_date": None}
    after = {"label": "a", "level": "important", "due_date": date(2026, 12, 1)}
    assert domain.changes(before, after) == [
        ("level", "urgent", "important"),
        ("due_date", None, date(2026, 12, 1)),
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"context": "team"}, "context"),
        ({"statuses": ["fini"]}, "status"),
        ({"levels": ["critique"]}, "level"),
        ({"actions": ["call"]}, "action"),
        ({"recipients": ["group:1"]}, "recipient"),
        ({"due_from": date(2026, 12, 2), "due_to": date(2026, 12, 1)}, "due_to"),
        ({"sort": "label"}, "sort"),
        ({"order": "up"}, "order"),
    ],
)
def test_bad_dashboard_filters_name_the_parameter(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(domain.TaskRuleError) as err:
        domain.dashboard_filter(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_the_dashboard_defaults_to_open_tasks_sorted_by_due_date() -> None:
    f = domain.dashboard_filter()
    assert f.statuses == ("a_traiter", "en_cours")
    assert (f.context, f.sort, f.order) == ("all", "due_date", "asc")
    assert domain.dashboard_filter(recipients=["structure:dac-1"]).recipients == (
        domain.Recipient("structure", "dac-1"),
    )


TODAY = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("status", "due", "sent_for", "expected"),
    [
        ("a_traiter", date(2026, 12, 2), None, True),  # due tomorrow, lead 1 day
        ("en_cours", date(2026, 12, 1), None, True),  # due today
        ("a_traiter", date(2026, 12, 3), None, False),  # beyond the lead time
        ("a_traiter", date(2026, 11, 30), None, False),  # already overdue: not "soon"
        ("traitee", date(2026, 12, 2), None, False),  # done
        ("annulee", date(2026, 12, 2), None, False),
        ("a_traiter", None, None, False),
        ("a_traiter", date(2026, 12, 2), date(2026, 12, 2), False),  # already announced
        ("a_traiter", date(2026, 12, 2), date(2026, 12, 20), True),  # due date moved: announce again
    ],
)
def test_due_soon(status: str, due: date | None, sent_for: date | None, expected: bool) -> None:
    assert domain.is_due_soon(status, due, sent_for, TODAY, 1) is expected


def test_the_creator_stays_a_recipient_alongside_others_unless_left_out() -> None:
    other = domain.Recipient("structure", "dac-1")
    assert task(recipients=[other], creator_is_recipient=True).recipients == (ME, other)
    assert task(recipients=[other, ME], creator_is_recipient=True).recipients == (ME, other)
    assert task(recipients=[], creator_is_recipient=True).recipients == (ME,)
    assert task(recipients=[other], creator_is_recipient=False).recipients == (other,)

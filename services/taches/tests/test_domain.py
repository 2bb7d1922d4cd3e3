from datetime import date

import pytest

from taches import domain

ME = domain.Recipient("person", "person-1")


def task(**overrides: object) -> domain.NewTask:
    values: dict[str, object] = {
        "task_type": "appeler_famille",
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


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        ("a_traiter", "traitee"),  # no jumping ahead
        ("a_traiter", "a_traiter"),  # a double click does not move it twice
        ("traitee", "en_cours"),  # traitee moves on to annulee only
        ("en_cours", "a_traiter"),
    ],
)
def test_other_moves_are_refused_saying_which_one_is_allowed(current: str, requested: str) -> None:
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
    with pytest.raises(domain.TaskRuleError):
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

"""A refused request names the field a user has to correct."""

from __future__ import annotations

import pytest
from jsonschema import Draft4Validator

from chassis.validation import body_field

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["birth_name", "consent"],
    "properties": {
        "birth_name": {"type": "string"},
        "consent": {
            "type": "object",
            "required": ["given_by"],
            "properties": {"given_by": {"type": "string", "enum": ["patient", "other"]}},
        },
        "linked": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    },
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"consent": {"given_by": "patient"}}, "birth_name"),  # missing at the top
        ({"birth_name": "X", "consent": {}}, "consent.given_by"),  # missing, nested
        ({"birth_name": "X", "consent": {"given_by": "cousin"}}, "consent.given_by"),  # bad value
        ({"birth_name": 3, "consent": {"given_by": "patient"}}, "birth_name"),  # wrong type
        ({"birth_name": "X", "consent": {"given_by": "patient"}, "sex_code": "F"}, "sex_code"),  # unknown
        ({"birth_name": "X", "consent": {"given_by": "patient"}, "linked": [3]}, "linked.0"),  # in a list
        ([], "body"),  # not an object at all
    ],
)
def test_the_field_named_is_the_one_to_correct(body: object, field: str) -> None:
    (error,) = list(Draft4Validator(SCHEMA).iter_errors(body))
    assert body_field(error) == field


def test_a_date_is_read_as_iso_and_a_wrong_one_is_refused_naming_its_field() -> None:
    from datetime import date

    from chassis.problems import Problem, date_field

    assert date_field("due_date", "2026-12-01") == date(2026, 12, 1)
    assert date_field("due_date", "") is None and date_field("due_date", None) is None
    for value, required in (("01/12/2026", False), (None, True), ("2026-02-30", False)):
        with pytest.raises(Problem) as refused:
            date_field("due_date", value, required=required)
        assert refused.value.status == 422 and refused.value.field == "due_date"

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

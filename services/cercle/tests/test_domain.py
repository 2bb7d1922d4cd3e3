from datetime import UTC, date, datetime, timedelta

import pytest

from cercle import domain

Holder = domain.Holder


def member(**overrides: object) -> domain.NewMember:
    values: dict[str, object] = {
        "holder_kind": "person",
        "holder_id": "person-2",
        "roles": ["intervenant"],
        "description": None,
        "habilitated": False,
        "refused_information_sharing": False,
    }
    values.update(overrides)
    return domain.new_member(**values)  # type: ignore[arg-type]


def test_every_role_of_the_booklet_is_accepted_for_a_person_once_in_the_order_given() -> None:
    assert member(roles=[*domain.ROLES, "intervenant"]).roles == domain.ROLES
    assert member(roles=[]).roles == ()


@pytest.mark.parametrize("role", ["chef", "Intervenant", "médecin traitant", ""])
def test_an_unknown_role_is_refused_naming_the_field(role: str) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        member(roles=["coordinateur", role])
    assert err.value.field == "roles"


@pytest.mark.parametrize("role", sorted(domain.PERSON_ONLY_ROLES))
def test_a_structure_cannot_hold_a_role_only_a_person_can(role: str) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        member(holder_kind="structure", holder_id="saad-1", roles=[role])
    assert err.value.field == "roles"


def test_a_structure_may_coordinate_intervene_or_be_the_judicial_representative() -> None:
    roles = ["coordinateur", "intervenant", "mandataire_judiciaire"]
    assert member(holder_kind="structure", holder_id="dac-1", roles=roles).roles == tuple(roles)


@pytest.mark.parametrize(
    ("kind", "holder_id", "field"),
    [("robot", "x", "holder_kind"), ("person", "   ", "holder_id"), ("person", "x" * 65, "holder_id")],
)
def test_the_holder_must_be_a_person_or_structure_with_an_id(kind: str, holder_id: str, field: str) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        member(holder_kind=kind, holder_id=holder_id)
    assert err.value.field == field


def test_the_description_is_trimmed_and_bounded() -> None:
    assert member(description="  passe le mardi  ").description == "passe le mardi"
    assert member(description="   ").description is None
    with pytest.raises(domain.CircleRuleError) as err:
        member(description="x" * 1001)
    assert err.value.field == "description"


def test_a_member_the_patient_refused_sharing_with_cannot_be_habilitated() -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        member(habilitated=True, refused_information_sharing=True)
    assert err.value.field == "habilitated"
    assert member(refused_information_sharing=True).refused_information_sharing


def test_the_last_habilitated_member_cannot_lose_its_habilitation() -> None:
    owner, other = Holder("structure", "dac-1"), Holder("person", "p2")
    with pytest.raises(domain.CircleRuleError):
        domain.check_keeps_a_habilitated_member([owner], owner)
    domain.check_keeps_a_habilitated_member([owner, other], owner)


# -- the decision: every path, every refusal ---------------------------------------------

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
P1, P2, GRANTOR, DAC = (
    Holder("person", "p1"),
    Holder("person", "p2"),
    Holder("person", "g1"),
    Holder("structure", "dac-1"),
)
HAB = domain.Standing(habilitated=True, refused=False)
LISTED = domain.Standing(habilitated=False, refused=False)
REFUSED_HAB = domain.Standing(habilitated=True, refused=True)
REFUSED = domain.Standing(habilitated=False, refused=True)
OPEN = domain.Delegation(("dossiers",), None, False)
LATER = NOW + timedelta(hours=1)


def req(person: str = "p1", structure: str | None = None, act_for: str | None = None) -> domain.AccessRequest:
    return domain.AccessRequest(person, structure, act_for)


@pytest.mark.parametrize(
    ("request_", "members", "delegation", "break_glass", "basis", "holder"),
    [
        # (a) the person itself
        (req(), {P1: HAB}, None, None, "person", P1),
        (req(structure="dac-1"), {P1: HAB, DAC: HAB}, None, None, "person", P1),
        (req(), {P1: LISTED}, None, None, None, None),
        (req(), {}, None, None, None, None),
        # (b) the structure it acts for, only while acting for it
        (req(structure="dac-1"), {DAC: HAB}, None, None, "structure", DAC),
        (req(), {DAC: HAB}, None, None, None, None),
        (req(structure="hospital-9"), {DAC: HAB}, None, None, None, None),
        (req("dac-1"), {DAC: HAB}, None, None, None, None),  # a person id never matches a structure
        # (c) a delegation: the grantor habilitated, an open dossiers delegation
        (req(act_for="g1"), {GRANTOR: HAB}, OPEN, None, "delegation", GRANTOR),
        (req(act_for="g1"), {GRANTOR: HAB}, None, None, None, None),
        (req(act_for="g1"), {GRANTOR: LISTED}, OPEN, None, None, None),
        (
            req(act_for="g1"),
            {GRANTOR: HAB},
            domain.Delegation(("discussions",), None, False),
            None,
            None,
            None,
        ),
        (req(act_for="g1"), {GRANTOR: HAB}, domain.Delegation(("dossiers",), None, True), None, None, None),
        (
            req(act_for="g1"),
            {GRANTOR: HAB},
            domain.Delegation(("dossiers",), date(2026, 3, 9), False),
            None,
            None,
            None,
        ),
        # acting for a grantor gives the grantor's access only, not the caller's own
        (req(act_for="g1"), {P1: HAB}, OPEN, None, None, None),
        # (d) a running break-the-glass grant
        (req(), {}, None, LATER, "break_glass", P1),
        (req(), {P1: LISTED}, None, LATER, "break_glass", P1),
        (req(), {}, None, NOW, None, None),
        # the patient refused sharing: no path that names the member opens
        (req(), {P1: REFUSED_HAB}, None, None, None, None),
        (req(), {P1: REFUSED}, None, LATER, None, None),
        (req(structure="dac-1"), {P1: REFUSED, DAC: HAB}, None, None, None, None),
        (req(structure="dac-1"), {DAC: REFUSED_HAB}, None, None, None, None),
        (req(structure="dac-1"), {P1: HAB, DAC: REFUSED}, None, None, None, None),
        (req(act_for="g1"), {GRANTOR: REFUSED_HAB}, OPEN, None, None, None),
        (req(act_for="g1"), {GRANTOR: HAB, P1: REFUSED}, OPEN, None, None, None),
    ],
)
def test_the_decision_table(
    request_: domain.AccessRequest,
    members: dict[domain.Holder, domain.Standing],
    delegation: domain.Delegation | None,
    break_glass: datetime | None,
    basis: str | None,
    holder: domain.Holder | None,
) -> None:
    decision = domain.decide(
        request_, members, now=NOW, delegation=delegation, break_glass_expires_at=break_glass
    )
    assert (decision.allowed, decision.basis, decision.holder) == (basis is not None, basis, holder)


def test_a_delegation_is_valid_through_its_last_french_day() -> None:
    last_day = domain.Delegation(("dossiers", "discussions"), date(2026, 3, 10), False)
    # 22:59:59 UTC on 10 March is 23:59:59 in Paris: still the last day.
    assert domain.delegation_open(last_day, datetime(2026, 3, 10, 22, 59, 59, tzinfo=UTC))
    assert not domain.delegation_open(last_day, datetime(2026, 3, 10, 23, 0, 0, tzinfo=UTC))
    decision = domain.decide(req(act_for="g1"), {GRANTOR: HAB}, now=NOW, delegation=last_day)
    assert decision.expires_at == datetime(2026, 3, 10, 23, 0, tzinfo=UTC)


def test_break_the_glass_opens_until_1_59_59_and_closes_at_exactly_2_hours() -> None:
    expires = domain.break_glass_expiry(NOW)
    assert expires - NOW == timedelta(hours=2)
    at = NOW + timedelta(hours=1, minutes=59, seconds=59)
    allowed = domain.decide(req(), {}, now=at, break_glass_expires_at=expires)
    assert (allowed.allowed, allowed.basis, allowed.expires_at) == (True, "break_glass", expires)
    assert allowed.max_age_s(at) == 1  # the gateway never caches past the end
    assert allowed.max_age_s(NOW + timedelta(hours=1, minutes=59, seconds=59, milliseconds=500)) == 0
    assert (
        domain.decide(req(), {}, now=NOW + timedelta(hours=2), break_glass_expires_at=expires)
        == domain.REFUSED
    )


def test_the_cache_bound_never_outlives_the_access() -> None:
    assert domain.Decision(True, "person", P1).max_age_s(NOW) == domain.DECISION_MAX_AGE_S
    assert domain.Decision(True, "structure", DAC, NOW + timedelta(seconds=3)).max_age_s(NOW) == 3
    # Delegations and break-the-glass grants can end by an event: cached one second at most.
    assert domain.Decision(True, "break_glass", P1, NOW + timedelta(hours=1)).max_age_s(NOW) == 1
    assert domain.Decision(True, "delegation", GRANTOR).max_age_s(NOW) == 1
    assert domain.Decision(True, "break_glass", P1, NOW - timedelta(seconds=3)).max_age_s(NOW) == 0


def test_who_may_change_the_circle() -> None:
    assert domain.may_change_circle(domain.Decision(True, "person", P1))
    assert domain.may_change_circle(domain.Decision(True, "structure", DAC))
    assert domain.may_change_circle(domain.Decision(True, "delegation", GRANTOR))
    # A break-the-glass access reads the file but never changes its circle (CER-8).
    assert not domain.may_change_circle(domain.Decision(True, "break_glass", P2))
    assert not domain.may_change_circle(domain.REFUSED)


# -- CER-5 manual add ----------------------------------------------------------------------

FULL = {"last_name": "Martin", "first_name": "Léa", "city": "Lyon", "profession": "Infirmière"}


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"professional": True, "should_access": True, **{**FULL, "last_name": None}}, "last_name"),
        ({"professional": True, "informed": True, **{**FULL, "first_name": "  "}}, "first_name"),
        ({"professional": True, "should_access": True, **{**FULL, "city": None}}, "city"),
        ({"professional": True, "informed": True, **{**FULL, "profession": None}}, "profession"),
        ({"professional": False, "should_access": True, **FULL}, "should_access"),
        ({"professional": False, "informed": True, **FULL}, "informed"),
        ({"professional": True, "email": "not-an-email"}, "email"),
        ({"professional": False, "roles": ["chef"]}, "roles"),
    ],
)
def test_manual_add_refusals_name_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        domain.manual_person(values)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("values", "asks_directory"),
    [
        ({"professional": True, "should_access": True, **FULL}, True),
        ({"professional": True, "informed": True, **FULL}, True),
        ({"professional": True}, False),  # neither: no mandatory field, no e-mail to the directory
        ({"professional": False, "last_name": "Dupont", "roles": ["aidant_principal"]}, False),
    ],
)
def test_manual_add_asks_the_directory_only_when_access_or_informed(
    values: dict[str, object], asks_directory: bool
) -> None:
    assert domain.manual_person(values).requests_directory_entry is asks_directory


def test_a_manually_added_person_can_never_be_habilitated() -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        domain.check_grant(False, domain.MANUAL_PREFIX + "x")
    assert err.value.field == "habilitated"
    with pytest.raises(domain.CircleRuleError):
        member(holder_id=domain.MANUAL_PREFIX + "x")


# -- CER-8 and CER-9 requests ----------------------------------------------------------------

GOOD_GLASS = {
    "reason_code": "urgence_vitale",
    "reason_text": "Malaise",
    "found_via": "identity_vigilance",
    "confirmed": True,
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reason_code": None}, "reason_code"),
        ({"reason_code": "curiosite"}, "reason_code"),
        ({"reason_text": "   "}, "reason_text"),
        ({"reason_text": None}, "reason_text"),
        ({"found_via": "patient_list"}, "found_via"),
        ({"confirmed": False}, "confirmed"),
        ({"confirmed": "true"}, "confirmed"),
        ({"confirmed": None}, "confirmed"),
    ],
)
def test_break_the_glass_needs_a_reason_the_search_and_a_second_confirmation(
    change: dict[str, object], field: str
) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        domain.break_glass_request({**GOOD_GLASS, **change})
    assert err.value.field == field
    assert domain.break_glass_request(GOOD_GLASS).reason_text == "Malaise"


@pytest.mark.parametrize(
    ("values", "ids", "field"),
    [
        ({"action": "purge"}, ["a"], "action"),
        ({"action": "add"}, [], "patient_ids"),
        ({"action": "add"}, ["a", "a"], "patient_ids"),
        ({"action": "remove", "habilitated": True}, ["a"], "action"),
        ({"action": "add", "holder_kind": "structure", "roles": ["medecin_traitant"]}, ["a"], "roles"),
    ],
)
def test_bulk_requests_are_checked_before_anything(
    values: dict[str, object], ids: list[str], field: str
) -> None:
    with pytest.raises(domain.CircleRuleError) as err:
        domain.bulk_request({"holder_kind": "person", "holder_id": "p2", **values}, ids)
    assert err.value.field == field

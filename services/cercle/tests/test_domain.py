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


def test_the_person_s_own_membership_decides_first_then_the_structure_it_acts_for() -> None:
    both = [Holder("person", "p1"), Holder("structure", "dac-1")]
    assert domain.decide("p1", "dac-1", both) == domain.Decision(True, "member", Holder("person", "p1"))
    structure_only = [Holder("structure", "dac-1")]
    assert domain.decide("p1", "dac-1", structure_only) == domain.Decision(
        True, "structure", Holder("structure", "dac-1")
    )


def test_a_structure_membership_counts_only_while_acting_for_that_structure() -> None:
    habilitated = [Holder("structure", "dac-1")]
    assert domain.decide("p1", None, habilitated) == domain.REFUSED
    assert domain.decide("p1", "hospital-9", habilitated) == domain.REFUSED
    # Ids of persons and structures live in different spaces: a same id must not match across.
    assert domain.decide("dac-1", None, habilitated) == domain.REFUSED


def test_only_a_habilitated_member_or_member_structure_may_change_the_circle() -> None:
    assert domain.may_change_circle(domain.decide("p1", None, [Holder("person", "p1")]))
    assert domain.may_change_circle(domain.decide("p1", "dac-1", [Holder("structure", "dac-1")]))
    assert not domain.may_change_circle(domain.decide("p2", None, [Holder("person", "p1")]))
    # A break-the-glass access reads the file but never changes its circle (CER-8).
    assert not domain.may_change_circle(domain.Decision(True, "break_glass", Holder("person", "p2")))


def test_the_last_habilitated_member_cannot_lose_its_habilitation() -> None:
    owner, other = Holder("structure", "dac-1"), Holder("person", "p2")
    with pytest.raises(domain.CircleRuleError):
        domain.check_keeps_a_habilitated_member([owner], owner)
    domain.check_keeps_a_habilitated_member([owner, other], owner)

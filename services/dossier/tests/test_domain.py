from datetime import date

import pytest

from dossier import domain

TODAY = date(2026, 11, 30)


def traits(**overrides: object) -> domain.StrictTraits:
    values: dict[str, object] = {
        "birth_name": "Dupont",
        "first_name": "Marie",
        "birth_date": date(1950, 3, 2),
        "sex": "F",
        "birth_place": "75056",
        "today": TODAY,
    }
    values.update(overrides)
    return domain.strict_traits(**values)  # type: ignore[arg-type]


def test_names_are_kept_upper_case_with_accents_hyphens_and_apostrophes() -> None:
    t = traits(birth_name="  d'Estaing-Lévêque ", first_name="Hélène  Marie")
    assert t.birth_name == "D'ESTAING-LÉVÊQUE"
    assert t.first_name == "HÉLÈNE MARIE"


@pytest.mark.parametrize("name", ["Dupont3", "Du_pont", "-Dupont", "Dupont--Martin", "@"])
def test_a_name_with_other_characters_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        traits(birth_name=name)
    assert err.value.field == "birth_name"


def test_a_birth_date_in_the_future_is_refused() -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        traits(birth_date=date(2026, 12, 1))
    assert err.value.field == "birth_date"


def test_an_unknown_sex_code_is_refused() -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        traits(sex="O")  # O exists only as a search filter, not as an identity value
    assert err.value.field == "sex"


@pytest.mark.parametrize("code", ["75056", "2A004", "2b033", "99134", "99999"])
def test_commune_country_and_unknown_birth_places_are_accepted(code: str) -> None:
    assert traits(birth_place=code).birth_place == code.upper()


@pytest.mark.parametrize("code", ["7505", "750561", "2C004", "ABCDE"])
def test_malformed_birth_places_are_refused(code: str) -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        traits(birth_place=code)
    assert err.value.field == "birth_place"


def test_placeholders_keep_the_identity_provisional_and_flag_it_incomplete() -> None:
    t = traits(birth_name="à demander", birth_date=date(1900, 1, 1), birth_place="99999")
    assert t.birth_name == domain.PLACEHOLDER_NAME
    assert t.has_placeholder
    assert domain.initial_identity_status(t) == "PROV"
    assert not traits().has_placeholder


def test_consent_must_be_attested() -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        domain.consent_attestation(
            attested=False,
            given_by="patient",
            given_by_name=None,
            given_on=TODAY,
            collected_by="p",
            today=TODAY,
        )
    assert err.value.field == "consent.attested"


def test_consent_given_by_other_must_name_the_person() -> None:
    with pytest.raises(domain.IdentityRuleError) as err:
        domain.consent_attestation(
            attested=True, given_by="other", given_by_name=" ", given_on=TODAY, collected_by="p", today=TODAY
        )
    assert err.value.field == "consent.given_by_name"
    ok = domain.consent_attestation(
        attested=True,
        given_by="other",
        given_by_name="Voisine",
        given_on=TODAY,
        collected_by="p",
        today=TODAY,
    )
    assert ok.given_by_name == "Voisine"


@pytest.mark.parametrize(
    ("birth", "today", "expected"),
    [
        (date(1950, 3, 2), date(2026, 11, 30), (76, 8, 28)),
        (date(2000, 1, 31), date(2000, 3, 1), (0, 1, 1)),
        (date(2020, 12, 15), date(2021, 1, 10), (0, 0, 26)),
        (date(2000, 2, 29), date(2001, 2, 28), (0, 11, 30)),
    ],
)
def test_age_in_years_months_and_days(birth: date, today: date, expected: tuple[int, int, int]) -> None:
    assert domain.age(birth, today) == expected

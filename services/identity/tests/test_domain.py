import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from chassis.settings import contracts_dir
from identity import domain

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "medical"),
    [
        ("medecin", True),
        ("infirmier", True),
        ("pharmacien", True),
        ("sage_femme", True),
        ("masseur_kinesitherapeute", True),
        ("assistant_social", False),
        ("gestionnaire_de_cas", False),
        ("coordinateur", False),
        ("secretaire", False),
        (None, False),
        ("inconnue", False),
    ],
)
def test_medical_professions_are_the_listed_ones_and_unknown_is_never_medical(code, medical):
    assert domain.is_medical(code) is medical


def test_professions_have_french_labels():
    labels = {p.code: p.label for p in domain.PROFESSIONS}
    assert labels["sage_femme"] == "Sage-femme"
    assert labels["masseur_kinesitherapeute"] == "Masseur-kinésithérapeute"
    assert labels["secretaire"] == "Secrétaire"


def test_roles_are_known_unique_and_in_canonical_order():
    assert domain.normalise_roles(["super_user", "user", "user"]) == ["user", "super_user"]
    assert domain.normalise_roles(None) == ["user"]
    with pytest.raises(domain.AccountRuleError) as err:
        domain.normalise_roles(["root"])
    assert err.value.field == "roles"


@pytest.mark.parametrize("name", ["ab", "Jean Dupont", "-dash", "a" * 65, "é-accent"])
def test_bad_usernames_are_refused(name):
    with pytest.raises(domain.AccountRuleError) as err:
        domain.normalise_username(name)
    assert err.value.field == "username"


def test_usernames_are_lowercased():
    assert domain.normalise_username(" Assistante-Sociale ") == "assistante-sociale"


def test_structure_kinds_finess_rpps_and_postal_codes():
    assert domain.check_structure_kind("saad") == "saad"
    with pytest.raises(domain.AccountRuleError):
        domain.check_structure_kind("clinic")
    assert domain.check_finess("2a0000001") == "2A0000001"
    with pytest.raises(domain.AccountRuleError):
        domain.check_finess("12345")
    assert domain.check_rpps("10000000012") == "10000000012"
    with pytest.raises(domain.AccountRuleError):
        domain.check_rpps("123")
    with pytest.raises(domain.AccountRuleError):
        domain.check_postal_code("9100")


def test_short_passwords_are_refused():
    with pytest.raises(domain.AccountRuleError):
        domain.check_password_strength("court")
    domain.check_password_strength("coordo-demo")


def test_display_name_and_search_folding():
    assert domain.display_name("Paul", "Bernard", "Dr") == "Dr Paul Bernard"
    assert domain.fold("Évry-Courcouronnes") == "evry courcouronnes"
    assert (
        domain.fold("  CH Sud Francilien — Médecine gériatrique ") == "ch sud francilien medecine geriatrique"
    )


def test_a_session_lasts_eight_hours():
    assert domain.session_is_active(T0, None, T0 + timedelta(hours=7, minutes=59))
    assert not domain.session_is_active(T0, None, T0 + timedelta(hours=8))
    assert not domain.session_is_active(T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2))


def test_access_tokens_last_thirty_minutes_but_never_past_the_session():
    assert domain.access_token_expires_at(T0, T0) == T0 + timedelta(minutes=30)
    late = T0 + timedelta(hours=7, minutes=50)
    assert domain.access_token_expires_at(late, T0) == T0 + timedelta(hours=8)


def test_directory_terms_are_every_name_word_and_every_place():
    assert domain.name_terms("Marie-Hélène", "Le Gall-Dupont") == ["marie", "helene", "le", "gall", "dupont"]
    assert domain.directory_terms(
        ["Éloïse", "Martin"], [("Évry-Courcouronnes", "91000"), (None, None), ("Évry-Courcouronnes", "91000")]
    ) == [("name", "eloise"), ("name", "martin"), ("city", "evry courcouronnes"), ("postal", "91000")]
    assert domain.sort_key("Édouard", "Zoé") == "edouard zoe"


def test_structure_kinds_include_the_real_ones():
    for kind in ("dac", "hospital", "unit", "service", "saad", "ssiad", "ehpad", "practice", "pharmacy"):
        assert domain.check_structure_kind(kind) == kind


def test_only_the_terms_in_force_can_be_accepted():
    assert domain.check_terms_version(domain.TERMS_VERSION) == domain.TERMS_VERSION
    with pytest.raises(domain.AccountRuleError) as err:
        domain.check_terms_version("1999-01")
    assert err.value.field == "version"


def test_every_structure_kind_is_allowed_by_the_contract_and_the_event_alike():
    # The contract once allowed kinds the StructureRegistered event refused: a 500 on creation.
    contract = yaml.safe_load((contracts_dir() / "openapi" / "identity.yaml").read_text(encoding="utf-8"))
    event = json.loads(
        (contracts_dir() / "events" / "StructureRegistered.v1.json").read_text(encoding="utf-8")
    )
    assert contract["components"]["schemas"]["StructureKind"]["enum"] == list(domain.STRUCTURE_KINDS)
    assert event["properties"]["data"]["properties"]["kind"]["enum"] == list(domain.STRUCTURE_KINDS)

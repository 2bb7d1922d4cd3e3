"""RNIV identity rules, NIR, Phonex and matching, table by table (pure Python, no I/O)."""

from __future__ import annotations

from datetime import date

import pytest

from dossier import domain_identity as di
from dossier.domain import IdentityRuleError
from dossier.domain_matching import Identity, compare_dates, near_dates, query_keys, rank, score
from dossier.domain_nir import check_nir, check_nir_matches_traits
from dossier.domain_phonetic import fold, phonex

TODAY = date(2026, 11, 30)

# -- statuses and their moves ------------------------------------------------------------


def state(
    status: str = "PROV", attributes: tuple[str, ...] = (), placeholder: bool = False
) -> di.IdentityState:
    return di.IdentityState(status=status, attributes=attributes, placeholder=placeholder)


@pytest.mark.parametrize(
    ("before", "via", "after"),
    [
        ("PROV", "document", "VALI"),
        ("PROV", "insi", "RECUP"),
        ("RECUP", "document", "QUAL"),
        ("VALI", "insi", "QUAL"),
    ],
)
def test_the_four_allowed_moves(before: str, via: str, after: str) -> None:
    if via == "document":
        assert di.status_after_document(state(before), "passport", None, 40) == after
    else:
        assert di.status_after_insi(state(before)) == after


@pytest.mark.parametrize(
    ("before", "via"), [("VALI", "document"), ("QUAL", "document"), ("RECUP", "insi"), ("QUAL", "insi")]
)
def test_a_move_that_does_not_exist_is_refused(before: str, via: str) -> None:
    with pytest.raises(IdentityRuleError) as err:
        if via == "document":
            di.status_after_document(state(before), "passport", None, 40)
        else:
            di.status_after_insi(state(before))
    assert err.value.field == via


@pytest.mark.parametrize("status", di.STATUSES)
def test_editing_a_strict_trait_downgrades_to_prov_but_an_optional_one_does_not(status: str) -> None:
    assert di.status_after_edit(status, {"birth_date": (date(1950, 1, 1), date(1950, 1, 2))}) == "PROV"
    assert di.status_after_edit(status, {"first_names": ("MARIE", "MARIE ANNE")}) == "PROV"
    assert di.status_after_edit(status, {"email": (None, "a@b.fr")}) == status


# -- attributes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "ok"),
    [
        ([], True),
        (["HOMA"], True),
        (["HOMA", "DOUT"], True),
        (["HOMA", "FICT"], True),
        (["DOUT", "FICT"], False),
        (["HOMA", "DOUT", "FICT"], False),
        (["XXX"], False),
    ],
)
def test_fict_and_dout_exclude_each_other(attributes: list[str], ok: bool) -> None:
    if ok:
        assert set(di.check_attributes(attributes)) == set(attributes)
    else:
        with pytest.raises(IdentityRuleError) as err:
            di.check_attributes(attributes)
        assert err.value.field == "attributes"


@pytest.mark.parametrize(("attributes", "forced"), [(("DOUT",), True), (("FICT",), True), (("HOMA",), False)])
def test_dout_or_fict_forces_prov_and_blocks_any_raise_of_trust(
    attributes: tuple[str, ...], forced: bool
) -> None:
    assert di.status_after_attributes("VALI", attributes) == ("PROV" if forced else "VALI")
    if forced:
        with pytest.raises(IdentityRuleError):
            di.status_after_document(state("PROV", attributes), "passport", None, 40)
        with pytest.raises(IdentityRuleError):  # never sent to INSi
            di.status_after_insi(state("PROV", attributes))


def test_a_placeholder_keeps_the_identity_provisional() -> None:
    assert di.has_placeholder({"birth_name": "À DEMANDER"})
    assert di.has_placeholder({"birth_date": date(1900, 1, 1)})
    assert di.has_placeholder({"birth_place": "99999"})
    assert not di.has_placeholder(
        {"birth_name": "DUPONT", "birth_date": date(1950, 1, 1), "birth_place": "75056"}
    )
    for move in (
        lambda: di.status_after_document(state(placeholder=True), "passport", None, 40),
        lambda: di.status_after_insi(state(placeholder=True)),
    ):
        with pytest.raises(IdentityRuleError):
            move()


# -- identity documents -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "special_case", "age", "result"),
    [
        ("passport", None, 40, "VALI"),
        ("national_id_card", None, 40, "VALI"),
        ("national_id_ecard", None, 40, "VALI"),
        ("residence_permit", None, 40, "VALI"),
        ("digital_identity", None, 40, "VALI"),
        ("driving_licence", None, 40, "document"),
        ("carte_vitale", None, 40, "document"),
        ("library_card", None, 40, "document"),
        ("birth_certificate", None, 5, "special_case"),
        ("birth_certificate", "minor_with_parent_document", 5, "VALI"),
        ("birth_certificate", "minor_with_parent_document", 30, "special_case"),
        ("family_record_book", "minor_with_parent_document", 12, "VALI"),
        ("family_record_book", "nursing_home_photo_vitale", 88, "VALI"),
    ],
)
def test_identity_documents_follow_rniv(
    document: str, special_case: str | None, age: int, result: str
) -> None:
    if result in di.STATUSES:
        assert di.status_after_document(state(), document, special_case, age) == result
    else:
        with pytest.raises(IdentityRuleError) as err:
            di.status_after_document(state(), document, special_case, age)
        assert err.value.field == result


# -- optional traits -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"mobile": "0123456789"}, "mobile"),
        ({"mobile": "06123"}, "mobile"),
        ({"phone": "12345"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"twin_rank": 0}, "twin_rank"),
        ({"birth_country": "FR"}, "birth_country"),
        ({"birth_country": "99134"}, "birth_country"),  # born in a French commune
        ({"first_names": "ANNE MARIE"}, "first_names"),  # must start with the first birth first name
        ({"entitled_nir": "150037511512399"}, "entitled_nir"),  # bad key
        ({"used_name": "Du_pont"}, "used_name"),
    ],
)
def test_bad_optional_traits_name_their_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(IdentityRuleError) as err:
        di.check_optional_traits(
            values, first_name="MARIE", birth_place="75056", birth_date=date(2015, 1, 1), today=TODAY
        )
    assert err.value.field == field


def test_good_optional_traits_are_normalised() -> None:
    out = di.check_optional_traits(
        {
            "mobile": "06 12 34 56 78",
            "first_names": "Marie Anne",
            "used_name": "Martin",
            "twin_rank": 2,
            "entitled_nir": "1 50 03 75 115 123 01",
            "birth_country": None,
        },
        first_name="MARIE",
        birth_place="75056",
        birth_date=date(2015, 1, 1),
        today=TODAY,
    )
    assert out == {
        "mobile": "0612345678",
        "first_names": "MARIE ANNE",
        "used_name": "MARTIN",
        "twin_rank": 2,
        "entitled_nir": "150037511512301",
        "birth_country": "99100",
    }


def test_the_entitled_nir_is_for_a_minor_only() -> None:
    with pytest.raises(IdentityRuleError) as err:
        di.check_optional_traits(
            {"entitled_nir": "150037511512301"},
            first_name="MARIE",
            birth_place="75056",
            birth_date=date(1980, 1, 1),
            today=TODAY,
        )
    assert err.value.field == "entitled_nir"


def test_birth_country_follows_a_birth_abroad() -> None:
    assert di.check_birth_country(None, "99134") == "99134"
    assert di.check_birth_country(None, "75056") == "99100"
    with pytest.raises(IdentityRuleError):
        di.check_birth_country("99100", "99134")


# -- NIR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nir", "sex", "born", "place", "error"),
    [
        ("150037511512301", "M", date(1950, 3, 2), "75056", None),  # Paris: arrondissement in the NIR
        ("1 50 03 75 115 123 01", "M", date(1950, 3, 2), "75056", None),
        ("150037511512301", "F", date(1950, 3, 2), "75056", "female"),
        ("285011305504213", "M", date(1985, 1, 9), "13055", "male"),
        ("285011305504213", "F", date(1985, 1, 9), "13055", None),
        ("285011305504213", "I", date(1985, 1, 9), "13055", None),  # indeterminate: any sex digit
        ("285011305504213", "F", date(1984, 1, 9), "13055", "year"),
        ("285011305504213", "F", date(1985, 2, 9), "13055", "month"),
        ("285011305504213", "F", date(1985, 1, 9), "69123", "place"),
        ("285011305504213", "F", date(1900, 1, 1), "13055", None),  # placeholder date: not compared
        ("285011305504213", "F", date(1985, 1, 9), "99999", None),  # placeholder place: not compared
        ("162029935201193", "M", date(1962, 2, 1), "99352", None),  # born abroad: 99 + country
        ("162029935201193", "M", date(1962, 2, 1), "99350", "place"),
        ("162029235201188", "M", date(1962, 2, 1), "99352", None),  # Algeria before 1963: 91-94
        ("280052A00400578", "F", date(1980, 5, 3), "2A004", None),  # Corsica 2A, key with 2A -> 19
        ("280052A00400578", "F", date(1980, 5, 3), "2B033", "place"),
        ("275022000400554", "F", date(1975, 2, 3), "2A004", None),  # Corsica was 20 before 1976
        ("280109710500170", "F", date(1980, 10, 2), "97105", None),  # overseas: 3-digit département
        ("150039201200138", "M", date(1950, 3, 1), "92012", None),
        ("150037501200112", "M", date(1950, 3, 1), "92012", None),  # Seine before 1968
        ("285309935000710", "F", date(1985, 7, 1), "99350", None),  # month 30: unknown to the register
    ],
)
def test_nir_consistency_with_birth_traits(
    nir: str, sex: str, born: date, place: str, error: str | None
) -> None:
    if error is None:
        assert len(check_nir_matches_traits("ins", nir, sex=sex, birth_date=born, birth_place=place)) == 15
    else:
        with pytest.raises(IdentityRuleError) as err:
            check_nir_matches_traits("ins", nir, sex=sex, birth_date=born, birth_place=place)
        assert err.value.field == "ins" and error in err.value.detail


@pytest.mark.parametrize("nir", ["150037511512302", "15003751151230", "1500375115123AB", "151337511512301"])
def test_a_malformed_nir_or_a_wrong_key_is_refused(nir: str) -> None:
    with pytest.raises(IdentityRuleError) as err:
        check_nir("entitled_nir", nir)
    assert err.value.field == "entitled_nir"


# -- Phonex: the published examples (Brouard; the reference list of the Talisman library) -----


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("PHYLAURHEIMSMET", "FILOR4SNY"),
        ("Martin", "NORTIN"),
        ("Bernard", "FYRNOR"),
        ("Faure", "FORE"),
        ("Perez", "TYRYZ"),
        ("Gros", "GROS"),
        ("Chapuis", "5OTUIS"),
        ("Boyer", "F2YR"),
        ("Gauthier", "KOTIYR"),
        ("Rey", "RY"),
        ("Barthélémy", "FORTILINI"),
        ("Henry", "H1RI"),
        ("Moulin", "N3LIN"),
        ("Rousseau", "R3SO"),
    ],
)
def test_phonex_published_examples(word: str, code: str) -> None:
    assert phonex(word) == code


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Dupont", "Dupond"),
        ("Lefebvre", "Lefeuvre"),
        ("Philippe", "Filipe"),
        ("Thomas", "Tomas"),
        ("Gallego", "Galego"),
        ("Jean-Pierre", "Jean Pierre"),
        ("Rousseau", "Rousso"),
        ("Gauthier", "Gautier"),
    ],
)
def test_phonex_groups_french_spellings_of_one_sound(a: str, b: str) -> None:
    assert phonex(a) == phonex(b)


def test_fold_removes_accents_and_unifies_separators() -> None:
    assert fold("d'Estaing-Lévêque") == "D ESTAING LEVEQUE"
    assert fold("Œuvray  Müller") == "OEUVRAY MULLER"


# -- matching --------------------------------------------------------------------------------

KNOWN = Identity("DUPONT", "MARIE", date(1950, 3, 2), "F", "75056", used_name="MARTIN")


def typed(**changes: object) -> Identity:
    values: dict[str, object] = {
        "birth_name": "DUPONT",
        "first_name": "MARIE",
        "birth_date": date(1950, 3, 2),
        "sex": "F",
        "birth_place": "75056",
    }
    values.update(changes)
    return Identity(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "trait", "how", "strong"),
    [
        ({}, "birth_name", "exact", True),
        ({"birth_name": "DUPOND"}, "birth_name", "phonetic", True),
        ({"birth_name": "DUPPONT"}, "birth_name", "phonetic", True),
        ({"birth_name": "DUONT"}, "birth_name", "similar", True),
        ({"first_name": "MARIÉ"}, "first_name", "accents_or_separators", True),
        ({"birth_name": "MARTIN"}, "birth_name", "exact", True),  # typed the used (married) name
        ({"birth_name": "MARIE", "first_name": "DUPONT"}, "birth_name", "swapped_exact", True),
        ({"birth_date": date(1950, 2, 3)}, "birth_date", "day_month_swapped", True),
        ({"birth_date": date(1950, 3, 8)}, "birth_date", "one_digit_off", True),
        ({"birth_date": date(1905, 3, 2)}, "birth_date", "digits_swapped", True),
        ({"birth_date": date(1900, 1, 1)}, "birth_date", "placeholder", True),
        ({"birth_name": "À DEMANDER"}, "birth_name", "placeholder", True),
        ({"birth_place": "75120"}, "birth_place", "same_department", True),
        ({"birth_date": date(1972, 8, 19)}, "birth_date", "different", False),
    ],
)
def test_candidates_are_scored_with_the_reason_of_each_trait(
    change: dict[str, object], trait: str, how: str, strong: bool
) -> None:
    match = score(typed(**change), KNOWN)
    reason = next(r for r in match.reasons if r["trait"] == trait)
    assert reason["match"] == how
    assert match.strong is strong


def test_the_used_name_reason_says_what_it_was_compared_with() -> None:
    reason = score(typed(birth_name="MARTIN"), KNOWN).reasons[0]
    assert reason == {"trait": "birth_name", "against": "used_name", "match": "exact", "similarity": 1.0}


def test_same_birth_date_alone_is_not_a_candidate() -> None:
    other = Identity("LEROY", "PAUL", date(1950, 3, 2), "M", "69123")
    assert rank(typed(), [("x", other)]) == []


def test_ranking_puts_the_closest_identity_first() -> None:
    near = Identity("DUPOND", "MARIE", date(1950, 3, 2), "F", "75056")
    exact = Identity("DUPONT", "MARIE", date(1950, 3, 2), "F", "75056")
    assert [ref for ref, _ in rank(typed(), [("near", near), ("exact", exact)])] == ["exact", "near"]


def test_near_dates_cover_one_digit_off_swaps_and_the_placeholder() -> None:
    dates = near_dates(date(1950, 3, 12), TODAY)
    assert {
        date(1950, 12, 3),
        date(1950, 3, 13),
        date(1960, 3, 12),
        date(1950, 3, 21),
        date(1900, 1, 1),
    } <= dates
    assert all(d <= TODAY for d in dates)
    assert compare_dates(date(1950, 3, 12), date(1950, 12, 3))[1] == "day_month_swapped"


def test_query_keys_are_phonex_keys_of_every_typed_name() -> None:
    assert query_keys(typed(used_name="MARTIN")) == {phonex("DUPONT"), phonex("MARIE"), phonex("MARTIN")}
    assert query_keys(typed(birth_name="À DEMANDER")) == {phonex("MARIE")}

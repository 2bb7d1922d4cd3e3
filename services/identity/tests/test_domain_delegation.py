"""ID-6 delegation rules, without I/O: the state machine as a table, end dates, validation."""

from datetime import UTC, date, datetime

import pytest

from identity import domain_delegation as rules
from identity.domain_delegation import Action, DelegationError, Party, Status

G, D, S = Party.GRANTOR, Party.DELEGATE, Party.SYSTEM

# Written out by hand from the booklet, not derived from the code's table: for each state
# and action, the parties allowed and the resulting state. Missing = 409 whoever asks.
EXPECTED: dict[tuple[Status, Action], tuple[set[Party], Status]] = {
    (Status.PENDING, Action.ACCEPT): ({G}, Status.ACCEPTED),
    (Status.PENDING, Action.REFUSE): ({G}, Status.REFUSED),
    (Status.PENDING, Action.REVOKE): ({G, D}, Status.REVOKED),
    (Status.PENDING, Action.EXPIRE): ({S}, Status.EXPIRED),
    (Status.ACCEPTED, Action.REVOKE): ({G, D}, Status.REVOKED),
    (Status.ACCEPTED, Action.EXPIRE): ({S}, Status.EXPIRED),
}

CASES = [(status, action, party) for status in Status for action in Action for party in Party]


@pytest.mark.parametrize(("status", "action", "party"), CASES, ids=lambda v: v.value)
def test_state_machine(status: Status, action: Action, party: Party):
    expected = EXPECTED.get((status, action))
    if expected is None:
        with pytest.raises(DelegationError) as err:
            rules.transition(status, action, party)
        assert err.value.kind == "conflict"
    elif party in expected[0]:
        assert rules.transition(status, action, party) is expected[1]
    else:
        with pytest.raises(DelegationError) as err:
            rules.transition(status, action, party)
        assert err.value.kind == "forbidden"


def test_refused_revoked_and_expired_are_final():
    for final in (Status.REFUSED, Status.REVOKED, Status.EXPIRED):
        for action in Action:
            with pytest.raises(DelegationError):
                rules.transition(final, action, G)


def test_a_delegation_lapses_the_day_after_its_end_date():
    last_day = date(2026, 12, 10)
    assert rules.effective_status("accepted", last_day, date(2026, 12, 10)) is Status.ACCEPTED
    assert rules.is_active("accepted", last_day, date(2026, 12, 10))
    assert rules.effective_status("accepted", last_day, date(2026, 12, 11)) is Status.EXPIRED
    assert not rules.is_active("accepted", last_day, date(2026, 12, 11))
    assert rules.effective_status("pending", last_day, date(2026, 12, 11)) is Status.EXPIRED
    # Final states keep their own name; no end date never lapses.
    assert rules.effective_status("refused", last_day, date(2027, 1, 1)) is Status.REFUSED
    assert rules.is_active("accepted", None, date(2099, 1, 1))
    assert not rules.is_active("pending", None, date(2026, 12, 1))


def test_days_are_french_days():
    # 23:30 UTC on 1 December is already 2 December in Paris (UTC+1 in winter).
    assert rules.today(datetime(2026, 12, 1, 23, 30, tzinfo=UTC)) == date(2026, 12, 2)
    assert rules.today(datetime(2026, 7, 1, 21, 59, tzinfo=UTC)) == date(2026, 7, 1)
    assert rules.today(datetime(2026, 7, 1, 22, 0, tzinfo=UTC)) == date(2026, 7, 2)  # UTC+2 in summer


@pytest.mark.parametrize(
    ("scopes", "result"),
    [
        (["discussions", "dossiers"], ["dossiers", "discussions"]),
        (["dossiers"], ["dossiers"]),
        (["discussions"], ["discussions"]),
        ([], None),
        (None, None),
        (["rcp"], None),
        (["dossiers", "dossiers"], None),
    ],
)
def test_scopes_are_dossiers_discussions_or_both(scopes, result):
    if result is None:
        with pytest.raises(DelegationError) as err:
            rules.check_scopes(scopes)
        assert err.value.field == "scopes" and err.value.kind == "invalid"
    else:
        assert rules.check_scopes(scopes) == result


def test_no_self_delegation_and_end_date_after_today():
    with pytest.raises(DelegationError) as err:
        rules.check_parties("a", "a")
    assert err.value.field == "grantor_id"
    rules.check_parties("a", "b")
    today = date(2026, 12, 1)
    for bad in (today, date(2026, 11, 30)):
        with pytest.raises(DelegationError) as err:
            rules.check_ends_on(bad, today)
        assert err.value.field == "ends_on"
    assert rules.check_ends_on(date(2026, 12, 2), today) == date(2026, 12, 2)
    assert rules.check_ends_on(None, today) is None


def test_a_scope_cannot_be_asked_twice_but_the_missing_one_can():
    with pytest.raises(DelegationError) as err:
        rules.check_not_duplicate(["dossiers"], [["dossiers", "discussions"]])
    assert err.value.kind == "conflict"
    with pytest.raises(DelegationError):
        rules.check_not_duplicate(["dossiers", "discussions"], [["discussions"]])
    rules.check_not_duplicate(["discussions"], [["dossiers"]])
    rules.check_not_duplicate(["dossiers"], [])


def test_who_is_who():
    assert rules.party_of("g", "g", "d") is G
    assert rules.party_of("d", "g", "d") is D
    assert rules.party_of("x", "g", "d") is None

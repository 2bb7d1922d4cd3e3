"""The decision cache: allowed only, bounded in time, evicted per patient, never stale after a revocation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.decisions import Decision, DecisionCache, DecisionUnavailable, parse_decision
from gateway.revocations import RevocationConsumer, delegation_of, patient_of

ALLOW = Decision(allowed=True, basis="member", max_age_s=30)


DELEGATE, GRANTOR = "2b0f6a52-8a55-4cde-9d1b-6f3f4bb0d1a1", "7c9e8d10-3b7a-4f0e-8f5c-1a2b3c4d5e6f"
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Monotonic seconds and the wall clock, moved together by the test."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = NOON

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += timedelta(seconds=seconds)


def cache(clock: Clock | None = None) -> DecisionCache:
    clock = clock or Clock()
    c = DecisionCache(clock=clock, wall_clock=lambda: clock.wall)
    c.enabled.set()
    return c


def test_allowed_decisions_live_at_most_five_seconds() -> None:
    clock = Clock()
    c = cache(clock)
    key = ("p1", None, None, "pat-1")
    assert c.put(key, ALLOW, c.generation("pat-1"))
    clock.now += 4.9
    assert c.get(key) == ALLOW
    clock.now += 0.2
    assert c.get(key) is None
    assert not c.put(key, Decision(True, "member", 0), c.generation("pat-1"))  # max_age 0: no cache


def test_refusals_are_never_cached() -> None:
    c = cache()
    key = ("p1", None, None, "pat-1")
    assert not c.put(key, Decision(False, None, 30), c.generation("pat-1"))
    assert c.get(key) is None


def test_evicting_a_patient_drops_every_key_of_that_patient_only() -> None:
    c = cache()
    keys = [("p1", None, None, "pat-1"), ("p2", "dac-1", None, "pat-1"), ("p1", None, None, "pat-2")]
    for key in keys:
        c.put(key, ALLOW, c.generation(key[-1]))
    assert c.evict_patient("pat-1") == 2
    assert c.get(keys[0]) is None and c.get(keys[1]) is None
    assert c.get(keys[2]) == ALLOW


def test_a_decision_fetched_before_a_revocation_is_not_cached_after_it() -> None:
    c = cache()
    key = ("p1", None, None, "pat-1")
    before = c.generation("pat-1")  # the gateway starts asking cercle...
    c.evict_patient("pat-1")  # ...the revocation arrives meanwhile...
    assert not c.put(key, ALLOW, before)  # ...so the answer it got must not be cached
    assert c.get(key) is None
    before = c.generation("pat-1")
    c.clear()  # a reconnect of the consumer empties everything, same rule
    assert not c.put(key, ALLOW, before)


def test_nothing_is_cached_while_revocations_cannot_be_heard() -> None:
    c = cache()
    key = ("p1", None, None, "pat-1")
    c.put(key, ALLOW, c.generation("pat-1"))
    c.enabled.clear()
    assert c.get(key) is None
    assert not c.put(key, ALLOW, c.generation("pat-1"))


def test_the_cache_is_bounded() -> None:
    c = DecisionCache(max_entries=3)
    c.enabled.set()
    for i in range(5):
        c.put(("p", None, None, f"pat-{i}"), ALLOW, c.generation(f"pat-{i}"))
    assert len(c) == 3
    assert c.get(("p", None, None, "pat-0")) is None and c.get(("p", None, None, "pat-4")) == ALLOW


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"basis": "member", "max_age_s": 5},
        {"allowed": "yes", "basis": None, "max_age_s": 5},
        {"allowed": True, "basis": 3, "max_age_s": 5},
        {"allowed": True, "basis": "member", "max_age_s": -1},
        {"allowed": True, "basis": "member", "max_age_s": True},
        {"allowed": True, "basis": "break_glass", "max_age_s": 5, "expires_at": "tomorrow"},
        {"allowed": True, "basis": "break_glass", "max_age_s": 5, "expires_at": "2026-12-01T10:00:00"},
        {"allowed": True, "basis": "break_glass", "max_age_s": 5, "expires_at": 1764583200},
    ],
)
def test_doubtful_decisions_are_unavailable(body: object) -> None:
    with pytest.raises(DecisionUnavailable):
        parse_decision(body)


def test_events_name_their_patient() -> None:
    assert patient_of({"data": {"patient_id": "a"}, "subject": "b"}) == "a"
    assert patient_of({"data": {}, "subject": "b"}) == "b"
    assert patient_of("junk") is None


def test_a_break_glass_decision_is_never_served_past_the_end_of_its_grant() -> None:
    clock = Clock()
    c = cache(clock)
    key = ("p1", None, None, "pat-1")
    ends_soon = Decision(True, "break_glass", 30, expires_at=NOON + timedelta(seconds=1.5))
    assert c.put(key, ends_soon, c.generation("pat-1"))
    clock.advance(1.4)
    assert c.get(key) == ends_soon
    clock.advance(0.2)  # past expires_at, well before max_age
    assert c.get(key) is None
    ended = Decision(True, "break_glass", 30, expires_at=NOON - timedelta(seconds=1))
    assert not c.put(key, ended, c.generation("pat-1"))
    # A break-the-glass answer that does not say when it ends is not cached at all.
    assert not c.put(key, Decision(True, "break_glass", 30), c.generation("pat-1"))
    body = {"allowed": True, "basis": "break_glass", "max_age_s": 5, "expires_at": "2026-12-01T14:00:00Z"}
    assert parse_decision(body).expires_at == datetime(2026, 12, 1, 14, tzinfo=UTC)


def test_acting_for_someone_is_its_own_cache_entry_and_a_revoked_delegation_evicts_it() -> None:
    clock = Clock()
    c = cache(clock)
    own = ("delegate", None, None, "pat-1")
    for_grantor = ("delegate", None, "grantor", "pat-1")
    for_grantor_2 = ("delegate", None, "grantor", "pat-2")
    for_other = ("delegate", None, "other-grantor", "pat-1")
    for key in (own, for_grantor, for_grantor_2, for_other):
        c.put(key, ALLOW, c.generation(key[-1]))
    before = c.generation("pat-3")  # a decision being fetched while the delegation ends
    assert c.evict_delegation("delegate", "grantor") == 2
    assert c.get(for_grantor) is None and c.get(for_grantor_2) is None
    assert c.get(own) == ALLOW and c.get(for_other) == ALLOW
    assert not c.put(("delegate", None, "grantor", "pat-3"), ALLOW, before)
    # cercle may still answer from before the revocation for a moment: not cached meanwhile.
    assert not c.put(for_grantor, ALLOW, c.generation("pat-1"))
    assert c.put(for_other, ALLOW, c.generation("pat-1"))
    clock.advance(5.1)
    assert c.put(for_grantor, ALLOW, c.generation("pat-1"))  # a new delegation caches again


def test_every_revoking_event_evicts() -> None:
    from chassis.events import make_envelope

    c = cache()
    consumer = RevocationConsumer("memory://", c)
    assert "cercle.BreakGlassAccessEnded" in consumer.routing_keys
    assert "identity.DelegationRevoked" in consumer.routing_keys
    assert "cercle.CareCircleMemberAdded" in consumer.routing_keys  # a refused member closes paths
    key = ("p1", None, None, "pat-1")
    c.put(key, ALLOW, c.generation("pat-1"))
    ended = {
        "type": "BreakGlassAccessEnded",
        "producer": "cercle",
        "subject": "pat-1",
        "data": {
            "grant_id": "g",
            "patient_id": "pat-1",
            "person_id": "p1",
            "ended_at": "x",
            "cause": "expired",
        },
    }
    assert consumer.handle(ended, "cercle.BreakGlassAccessEnded", None) == 1
    assert c.get(key) is None

    delegated = (DELEGATE, None, GRANTOR, "pat-1")
    c.put(delegated, ALLOW, c.generation("pat-1"))
    revoked = make_envelope(
        event_type="DelegationRevoked",
        producer="identity",
        subject="11111111-1111-4111-8111-111111111111",
        actor=GRANTOR,
        data={
            "delegation_id": "11111111-1111-4111-8111-111111111111",
            "grantor_id": GRANTOR,
            "delegate_id": DELEGATE,
            "cause": "revoked",
        },
    )
    assert delegation_of(revoked) == (DELEGATE, GRANTOR)
    assert consumer.handle(revoked, "identity.DelegationRevoked", None) == 1
    assert c.get(delegated) is None

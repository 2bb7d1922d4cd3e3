"""The decision cache: allowed only, bounded in time, evicted per patient, never stale after a revocation."""

from __future__ import annotations

import pytest

from gateway.decisions import Decision, DecisionCache, DecisionUnavailable, parse_decision
from gateway.revocations import patient_of

ALLOW = Decision(allowed=True, basis="member", max_age_s=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock | None = None) -> DecisionCache:
    c = DecisionCache(clock=clock or Clock())
    c.enabled.set()
    return c


def test_allowed_decisions_live_at_most_five_seconds() -> None:
    clock = Clock()
    c = cache(clock)
    key = ("p1", None, "pat-1")
    assert c.put(key, ALLOW, c.generation("pat-1"))
    clock.now += 4.9
    assert c.get(key) == ALLOW
    clock.now += 0.2
    assert c.get(key) is None
    assert not c.put(key, Decision(True, "member", 0), c.generation("pat-1"))  # max_age 0: no cache


def test_refusals_are_never_cached() -> None:
    c = cache()
    key = ("p1", None, "pat-1")
    assert not c.put(key, Decision(False, None, 30), c.generation("pat-1"))
    assert c.get(key) is None


def test_evicting_a_patient_drops_every_key_of_that_patient_only() -> None:
    c = cache()
    keys = [("p1", None, "pat-1"), ("p2", "dac-1", "pat-1"), ("p1", None, "pat-2")]
    for key in keys:
        c.put(key, ALLOW, c.generation(key[2]))
    assert c.evict_patient("pat-1") == 2
    assert c.get(keys[0]) is None and c.get(keys[1]) is None
    assert c.get(keys[2]) == ALLOW


def test_a_decision_fetched_before_a_revocation_is_not_cached_after_it() -> None:
    c = cache()
    key = ("p1", None, "pat-1")
    before = c.generation("pat-1")  # the gateway starts asking cercle...
    c.evict_patient("pat-1")  # ...the revocation arrives meanwhile...
    assert not c.put(key, ALLOW, before)  # ...so the answer it got must not be cached
    assert c.get(key) is None
    before = c.generation("pat-1")
    c.clear()  # a reconnect of the consumer empties everything, same rule
    assert not c.put(key, ALLOW, before)


def test_nothing_is_cached_while_revocations_cannot_be_heard() -> None:
    c = cache()
    key = ("p1", None, "pat-1")
    c.put(key, ALLOW, c.generation("pat-1"))
    c.enabled.clear()
    assert c.get(key) is None
    assert not c.put(key, ALLOW, c.generation("pat-1"))


def test_the_cache_is_bounded() -> None:
    c = DecisionCache(max_entries=3)
    c.enabled.set()
    for i in range(5):
        c.put(("p", None, f"pat-{i}"), ALLOW, c.generation(f"pat-{i}"))
    assert len(c) == 3
    assert c.get(("p", None, "pat-0")) is None and c.get(("p", None, "pat-4")) == ALLOW


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"basis": "member", "max_age_s": 5},
        {"allowed": "yes", "basis": None, "max_age_s": 5},
        {"allowed": True, "basis": 3, "max_age_s": 5},
        {"allowed": True, "basis": "member", "max_age_s": -1},
        {"allowed": True, "basis": "member", "max_age_s": True},
    ],
)
def test_doubtful_decisions_are_unavailable(body: object) -> None:
    with pytest.raises(DecisionUnavailable):
        parse_decision(body)


def test_events_name_their_patient() -> None:
    assert patient_of({"data": {"patient_id": "a"}, "subject": "b"}) == "a"
    assert patient_of({"data": {}, "subject": "b"}) == "b"
    assert patient_of("junk") is None

"""Identity vigilance matching (PAT-1, PAT-4): which known identities are close to typed traits.

Two halves, both pure:
- retrieval keys, so the database finds candidates with index lookups only: the
  exact birth date (and its day/month swap), or a Phonex key of a name together
  with a *near* birth date (one digit off, swapped, placeholder);
- scoring of each candidate in Python, with the reasons (which trait matched how).
Similarity is Jaro-Winkler on folded names (rapidfuzz).
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

from rapidfuzz.distance import JaroWinkler

from dossier.domain import PLACEHOLDER_BIRTH_DATE, PLACEHOLDER_BIRTH_PLACE, PLACEHOLDER_NAME
from dossier.domain_phonetic import fold, phonex

# Weights of the five strict traits in the score (sum 1).
WEIGHTS = {"birth_name": 0.30, "first_name": 0.25, "birth_date": 0.30, "sex": 0.05, "birth_place": 0.10}
CANDIDATE_THRESHOLD = 0.70  # shown to the user when both names are close...
ONE_NAME_THRESHOLD = 0.80  # ...or, with one name only (e.g. a new married name), above this
STRONG_THRESHOLD = 0.85  # creating anyway needs an explicit confirmation
NAME_FLOOR = 0.80  # a candidate needs at least one name this close
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Identity:
    """The traits compared; `used_*` and `first_names` are optional."""

    birth_name: str
    first_name: str
    birth_date: date
    sex: str
    birth_place: str
    used_name: str | None = None
    used_first_name: str | None = None
    first_names: str | None = None


@dataclass
class Match:
    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)
    both_names_close: bool = True

    @property
    def strong(self) -> bool:
        """Strong: high score and neither name clearly different (a shared first name and birth
        date is a candidate to show, not a reason to block a creation)."""
        return self.score >= STRONG_THRESHOLD and self.both_names_close


# -- retrieval keys -------------------------------------------------------------------


def name_key(name: str | None) -> str | None:
    """Phonex of the folded name, separators ignored; None for empty or placeholder names."""
    if not name or name == PLACEHOLDER_NAME:
        return None
    code = phonex(fold(name).replace(" ", ""))
    return code or None


def swap_day_month(value: date) -> date | None:
    if value.day > 12 or value.day == value.month:
        return None
    return date(value.year, value.day, value.month)


def _valid(number: int) -> date | None:
    """The date written YYYYMMDD as `number`, if it is one. Checked by arithmetic: parsing
    strings and catching date()'s errors for ~75 variants was most of a search's key time."""
    year, month, day = number // 10000, number // 100 % 100, number % 100
    if not (1 <= month <= 12 and 1 <= day <= 31 and year >= 1):
        return None
    if day > 28 and day > monthrange(year, month)[1]:
        return None
    return date(year, month, day)


def near_dates(value: date, today: date) -> set[date]:
    """Dates a typing slip could turn `value` into: one digit off, two adjacent digits swapped
    inside the day, month or year, day and month swapped. Includes the placeholder date."""
    number = value.year * 10000 + value.month * 100 + value.day
    text = f"{number:08d}"
    found: set[date] = {PLACEHOLDER_BIRTH_DATE, value}
    for i in range(8):
        place = 10 ** (7 - i)
        written = int(text[i])
        for digit in range(10):
            if digit != written:
                candidate = _valid(number + (digit - written) * place)
                if candidate:
                    found.add(candidate)
    for i in (0, 1, 2, 4, 6):  # adjacent swaps that stay inside one part
        candidate = _valid(int(text[:i] + text[i + 1] + text[i] + text[i + 2 :]))
        if candidate:
            found.add(candidate)
    swapped = swap_day_month(value)
    if swapped:
        found.add(swapped)
    return {d for d in found if PLACEHOLDER_BIRTH_DATE <= d <= today}


def query_keys(traits: Identity) -> set[str]:
    keys = {name_key(traits.birth_name), name_key(traits.first_name), name_key(traits.used_name)}
    return {k for k in keys if k}


def exact_dates(traits: Identity) -> set[date]:
    """Every identity born on these dates is scored (swap included: a common slip)."""
    if traits.birth_date == PLACEHOLDER_BIRTH_DATE:
        return set()  # too many identities share the placeholder: use name keys instead
    swapped = swap_day_month(traits.birth_date)
    return {traits.birth_date} | ({swapped} if swapped else set())


# -- scoring ----------------------------------------------------------------------------


@lru_cache(maxsize=100_000)  # names repeat a lot: each is prepared once, then compared often
def _forms(name: str) -> tuple[str, str, str, frozenset[str]]:
    """What comparing a name needs: upper-case, folded without separators, its Phonex code,
    its words."""
    folded = fold(name)
    compact = folded.replace(" ", "")
    return name.upper(), compact, phonex(compact), frozenset(folded.split())


@lru_cache(maxsize=200_000)  # pure, and common names come back in almost every search
def compare_names(typed: str | None, known: str | None) -> tuple[float, str]:
    """Similarity in [0, 1] and how the names matched."""
    if not typed or not known:
        return 0.0, "missing"
    if typed == PLACEHOLDER_NAME or known == PLACEHOLDER_NAME:
        return 0.5, "placeholder"
    upper_a, a, code_a, words_a = _forms(typed)
    upper_b, b, code_b, words_b = _forms(known)
    if upper_a == upper_b:
        return 1.0, "exact"
    if a == b:
        return 1.0, "accents_or_separators"
    if code_a == code_b:
        return 0.95, "phonetic"
    if words_a and words_b and (words_a <= words_b or words_b <= words_a):
        return 0.9, "partial"  # one part of a compound name
    similarity = JaroWinkler.similarity(a, b)
    return similarity, "similar" if similarity >= NAME_FLOOR else "different"


def _best(pairs: list[tuple[str, str | None, str | None]]) -> tuple[float, str, str]:
    best = (0.0, "different", pairs[0][0])
    for against, typed, known in pairs:
        similarity, how = compare_names(typed, known)
        if similarity > best[0]:
            best = (similarity, how, against)
    return best


def compare_dates(typed: date, known: date) -> tuple[float, str]:
    if typed == known:
        return 1.0, "exact"
    if typed == PLACEHOLDER_BIRTH_DATE or known == PLACEHOLDER_BIRTH_DATE:
        return 0.5, "placeholder"
    if swap_day_month(typed) == known:
        return 0.85, "day_month_swapped"
    a, b = typed.strftime("%Y%m%d"), known.strftime("%Y%m%d")
    differing = [i for i in range(8) if a[i] != b[i]]
    if len(differing) == 1:
        return 0.8, "one_digit_off"
    if len(differing) == 2 and differing[1] == differing[0] + 1 and a[differing[0]] == b[differing[1]]:
        return 0.8, "digits_swapped"
    return 0.0, "different"


def compare_sex(typed: str, known: str) -> tuple[float, str]:
    if typed == known:
        return 1.0, "exact"
    if typed in ("I", "O") or known == "I":
        return 0.5, "unknown"  # O (search filter: other/unknown) and I match anything halfway
    return 0.0, "different"


def compare_places(typed: str, known: str) -> tuple[float, str]:
    if typed == known:
        return 1.0, "exact"
    if PLACEHOLDER_BIRTH_PLACE in (typed, known):
        return 0.5, "placeholder"
    if not typed.startswith("99") and typed[:2] == known[:2]:
        return 0.6, "same_department"
    return 0.0, "different"


_Part = tuple[float, str, str]  # similarity, how it matched, the trait compared with


def _parts(typed: Identity, known: Identity) -> tuple[float, dict[str, _Part], bool]:
    """The score, each trait's part, and whether both names are close."""
    last = _best(
        [
            ("birth_name", typed.birth_name, known.birth_name),
            ("used_name", typed.birth_name, known.used_name),
            ("birth_name", typed.used_name, known.birth_name),
            ("used_name", typed.used_name, known.used_name),
        ]
    )
    first_of_list = known.first_names.split(" ")[0] if known.first_names else None
    first = _best(
        [
            ("first_name", typed.first_name, known.first_name),
            ("used_first_name", typed.first_name, known.used_first_name),
            ("first_names", typed.first_name, first_of_list),
            ("used_first_name", typed.used_first_name, known.used_first_name),
        ]
    )
    # First and last names typed the wrong way round.
    crossed_last, how_last = compare_names(typed.birth_name, known.first_name)
    crossed_first, how_first = compare_names(typed.first_name, known.birth_name)
    swapped = (crossed_last + crossed_first) > (last[0] + first[0]) + 0.05
    if swapped:
        last = (crossed_last, f"swapped_{how_last}", "first_name")
        first = (crossed_first, f"swapped_{how_first}", "birth_name")
    date_similarity, date_how = compare_dates(typed.birth_date, known.birth_date)
    sex_similarity, sex_how = compare_sex(typed.sex, known.sex)
    place_similarity, place_how = compare_places(typed.birth_place, known.birth_place)
    parts = {
        "birth_name": last,
        "first_name": first,
        "birth_date": (date_similarity, date_how, "birth_date"),
        "sex": (sex_similarity, sex_how, "sex"),
        "birth_place": (place_similarity, place_how, "birth_place"),
    }
    total = sum(WEIGHTS[trait] * value[0] for trait, value in parts.items())
    if max(last[0], first[0]) < NAME_FLOOR:
        total = min(total, CANDIDATE_THRESHOLD - 0.01)  # same birth date alone is not a candidate
    close = all(value >= NAME_FLOOR or how.endswith("placeholder") for value, how, _ in (last, first))
    return round(total, 4), parts, close


def _match(total: float, parts: dict[str, _Part], close: bool) -> Match:
    reasons = [
        {"trait": trait, "against": against, "match": how, "similarity": round(value, 3)}
        for trait, (value, how, against) in parts.items()
    ]
    return Match(score=total, reasons=reasons, both_names_close=close)


def score(typed: Identity, known: Identity) -> Match:
    """Score one candidate; reasons name each trait, what it was compared with and how it matched."""
    return _match(*_parts(typed, known))


def _shown(total: float, close: bool) -> bool:
    return total >= CANDIDATE_THRESHOLD and (close or total >= ONE_NAME_THRESHOLD)


def rank(
    typed: Identity, known: list[tuple[Any, Identity]], limit: int = MAX_CANDIDATES
) -> list[tuple[Any, Match]]:
    """Candidates at or above the threshold, best first."""
    # Most rows a lookup returns are not candidates: their reasons are never written out.
    kept = []
    for ref, identity in known:
        total, parts, close = _parts(typed, identity)
        if _shown(total, close):
            kept.append((ref, _match(total, parts, close)))
    kept.sort(key=lambda item: -item[1].score)
    return kept[:limit]

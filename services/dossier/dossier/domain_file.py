"""Rules of the patient file's panels and of the file list: plain Python, no I/O.

PAT-8..PAT-18 and SEA-2..SEA-5 of shared/DOMAIN.md. Every violation names its field.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

RELATIONS = ("sister", "brother", "mother", "father", "child", "spouse", "other")
# PAT-9: status types of a file in one structure; "sorti" needs an exit reason.
FILE_STATUSES = ("pre_inclusion", "suivi_ponctuel", "suivi_soutenu", "suivi_intensif", "sorti", "archive")
CLOSED_STATUSES = ("sorti", "archive")
EXIT_REASONS = (
    "deces",
    "demenagement",
    "entree_etablissement",
    "fin_accompagnement",
    "refus_patient",
    "relais_autre_structure",
    "autre",
)
EXPERTISES = ("gerontologie", "handicap", "soins_palliatifs", "sante_mentale", "pediatrie", "autre")
IMPORTANCES = ("normal", "important", "tres_important")
SHARINGS = ("public", "shared")
PERIODS = ("month", "quarter", "year", "all")
FEED_FILTERS = ("important", "tres_important", "notes", "active")
LIST_SEXES = ("M", "F", "I")
LIST_SORTS = ("last_update", "name", "birth_date")
PAGE_SIZES = (10, 20, 50, 100)
# The contract's maximum too: (page - 1) x page_size must fit a database integer.
MAX_PAGE = 1_000_000
EXPORT_MAX_ROWS = 1000
OPEN_TASK_STATUSES = ("a_traiter", "en_cours")
_COMMUNE = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")
_TEXT_MAX = 5000


class FileRuleError(ValueError):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def _one_of(field: str, value: str | None, allowed: Sequence[str]) -> str:
    if value is None or value not in allowed:
        raise FileRuleError(field, f"{field} must be one of {', '.join(allowed)}")
    return value


def _text(field: str, value: str | None, *, required: bool, max_len: int = _TEXT_MAX) -> str | None:
    text = (value or "").strip()
    if not text:
        if required:
            raise FileRuleError(field, f"{field} is required")
        return None
    if len(text) > max_len:
        raise FileRuleError(field, f"{field} is longer than {max_len} characters")
    return text


# -- names and places ------------------------------------------------------------------


def name_key(value: str | None) -> str:
    """Search key of a name: upper case, accents folded, hyphens and apostrophes as spaces.

    "Lefèvre-D'Alès" -> "LEFEVRE D ALES", so typing "lefevre" finds it.
    """
    if not value:
        return ""
    decomposed = unicodedata.normalize("NFKD", value)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = plain.replace("Œ", "OE").replace("œ", "oe").replace("Æ", "AE").replace("æ", "ae")
    plain = re.sub(r"[^A-Za-z0-9]+", " ", plain)
    return plain.strip().upper()


def check_commune(field: str, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    code = value.strip().upper()
    if not _COMMUNE.match(code):
        raise FileRuleError(field, f"{field} must be a 5-character INSEE commune code")
    return code


def zones_of(commune: str | None, zones: Mapping[str, Iterable[str]]) -> list[str]:
    """PAT-17: a patient's zones follow from its commune of residence."""
    if commune is None:
        return []
    return sorted(zone for zone, communes in zones.items() if commune in set(communes))


# -- linked files (PAT-8) -----------------------------------------------------------------


def inverse_relation(relation: str, sex_of_the_other: str) -> str:
    """A link reads "B is A's <relation>"; seen from B's file, A is B's <inverse>.

    Which word depends on A's sex: a brother's sister, a child's mother or father.
    """
    if relation in ("spouse", "other"):
        return relation
    if relation in ("mother", "father"):
        return "child"
    by_sex = {
        "sister": ("sister", "brother"),
        "brother": ("sister", "brother"),
        "child": ("mother", "father"),
    }
    female, male = by_sex[relation]
    return {"F": female, "M": male}.get(sex_of_the_other, "other")


def check_link(patient_id: str, linked_patient_id: str, relation: str, comment: str | None) -> str | None:
    if patient_id == linked_patient_id:
        raise FileRuleError("linked_patient_id", "a file cannot be linked to itself")
    _one_of("relation", relation, RELATIONS)
    return _text("comment", comment, required=False, max_len=1000)


# -- file status (PAT-9, PAT-12) --------------------------------------------------------------


@dataclass(frozen=True)
class StatusChange:
    status: str
    started_on: date
    exit_reason: str | None
    expertise: str | None
    comment: str | None


def check_status(
    *,
    status: str,
    started_on: date,
    exit_reason: str | None,
    expertise: str | None,
    comment: str | None,
    today: date,
) -> StatusChange:
    _one_of("status", status, FILE_STATUSES)
    if started_on > today:
        raise FileRuleError("started_on", "started_on cannot be in the future")
    if status == "sorti":
        if not exit_reason:
            raise FileRuleError("exit_reason", "exit_reason is required when the status is sorti")
        _one_of("exit_reason", exit_reason, EXIT_REASONS)
    elif exit_reason:
        raise FileRuleError("exit_reason", "exit_reason is only given when the status is sorti")
    if expertise is not None:
        _one_of("expertise", expertise, EXPERTISES)
    text = _text("comment", comment, required=False, max_len=1000)
    if status == "sorti" and exit_reason == "autre" and not text:
        raise FileRuleError("comment", "comment must say the reason when exit_reason is autre")
    return StatusChange(status, started_on, exit_reason, expertise, text)


def file_closed(current_statuses: Iterable[str]) -> bool:
    """A file is closed when every structure following it set it sorti or archive (PAT-12)."""
    statuses = list(current_statuses)
    return bool(statuses) and all(s in CLOSED_STATUSES for s in statuses)


@dataclass(frozen=True)
class ChecklistStep:
    code: str
    label: str
    done: bool
    remaining: int


def closing_checklist(*, open_forms: int, open_tasks: int, current_status: str | None) -> list[ChecklistStep]:
    """PAT-12: the guided steps before a file can be set "Sorti" in a structure."""
    return [
        ChecklistStep("close_forms", "Clôturer les formulaires ouverts", open_forms == 0, open_forms),
        ChecklistStep(
            "close_tasks", "Passer les tâches à « traitée » ou « annulée »", open_tasks == 0, open_tasks
        ),
        ChecklistStep(
            "set_exit_status",
            "Passer le statut à « Sorti » avec son motif",
            current_status in CLOSED_STATUSES,
            0 if current_status in CLOSED_STATUSES else 1,
        ),
    ]


def check_closing(steps: Sequence[ChecklistStep]) -> None:
    """The last step may be taken only when the others are done."""
    for step in steps:
        if step.code != "set_exit_status" and not step.done:
            raise FileRuleError(step.code, f"{step.label}: {step.remaining} encore ouvert(s)")


# -- hospitalisations (PAT-10) and death (PAT-11) -------------------------------------------


def check_hospitalisation(
    *, establishment: str, planned: bool, entry_date: date, exit_date: date | None, today: date
) -> str:
    name = _text("establishment", establishment, required=True, max_len=200)
    assert name is not None
    if exit_date is not None and exit_date < entry_date:
        raise FileRuleError("exit_date", "exit_date cannot be before entry_date")
    if not planned and entry_date > today:
        raise FileRuleError("planned", "a future stay must be marked planned")
    return name


def hospitalised_on(entry_date: date, exit_date: date | None, day: date) -> bool:
    return entry_date <= day and (exit_date is None or day <= exit_date)


def check_death(death_date: date | None, birth_date: date, today: date) -> None:
    if death_date is None:
        return  # PAT-11: the date may be unknown
    if death_date > today:
        raise FileRuleError("death_date", "death_date cannot be in the future")
    if death_date < birth_date:
        raise FileRuleError("death_date", "death_date cannot be before the birth date")


# -- memos (PAT-13) -------------------------------------------------------------------------------


def holder_key(kind: str, holder_id: str) -> str:
    return f"{kind}:{holder_id}"


def actor_holder_keys(person_id: str, structure_id: str | None) -> tuple[str, ...]:
    """The holders an actor speaks for, as cercle decides (its own, its acting structure)."""
    person = holder_key("person", person_id)
    return (person, holder_key("structure", structure_id)) if structure_id else (person,)


_HOLDER = re.compile(r"^(person|structure):.{1,64}$")


def check_memo(
    *, title: str, content: str, importance: str, sharing: str, shared_with: Sequence[str]
) -> tuple[str, str, list[str]]:
    clean_title = _text("title", title, required=True, max_len=200)
    clean_content = _text("content", content, required=True)
    _one_of("importance", importance, IMPORTANCES)
    _one_of("sharing", sharing, SHARINGS)
    holders = list(dict.fromkeys(shared_with))
    if sharing == "shared" and not holders:
        raise FileRuleError("shared_with", "choose the members a shared memo is shared with")
    if sharing == "public" and holders:
        raise FileRuleError("shared_with", "a public memo is seen by the whole circle: no shared_with")
    for holder in holders:
        if not _HOLDER.match(holder):
            raise FileRuleError("shared_with", "shared_with holds person:<id> or structure:<id>")
    assert clean_title is not None and clean_content is not None
    return clean_title, clean_content, holders


def memo_visible(sharing: str, author_id: str, shared_with: Iterable[str], actor: Iterable[str]) -> bool:
    """public: whoever may read the file; shared: the author and the chosen members only."""
    keys = set(actor)
    if sharing == "public" or holder_key("person", author_id) in keys:
        return True
    return bool(keys & set(shared_with))


def may_change_memo(
    author_id: str, author_structure: str | None, person_id: str, structure_id: str | None
) -> bool:
    """The author, or someone acting for the structure the author wrote it for."""
    return author_id == person_id or (author_structure is not None and author_structure == structure_id)


# -- feed (PAT-14) and timeline (PAT-15) ------------------------------------------------------------


def feed_entry_matches(kind: str, importance: str, active: bool, filters: Iterable[str]) -> bool:
    """Filters combine with OR (the booklet's check boxes); none selected shows everything."""
    chosen = set(filters)
    if not chosen:
        return True
    return (
        ("important" in chosen and importance == "important")
        or ("tres_important" in chosen and importance == "tres_important")
        or ("notes" in chosen and kind == "note")
        or ("active" in chosen and active)
    )


def _months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def period_bounds(period: str, today: date) -> tuple[date | None, date | None]:
    """PAT-15: a window reaching as far into the future as into the past ("all": no bounds)."""
    _one_of("period", period, PERIODS)
    if period == "all":
        return None, None
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    start = _months_before(today, months)
    return start, today + (today - start)


def in_period(day: date, bounds: tuple[date | None, date | None]) -> bool:
    start, end = bounds
    return (start is None or start <= day) and (end is None or day <= end)


# -- file list (SEA-2..SEA-5) ----------------------------------------------------------------


def list_sex(value: str) -> str:
    """SEA-2 names the sexes H/F/I/O (booklet); identity keeps INS codes M/F/I."""
    code = {"H": "M", "O": "I"}.get(value.upper(), value.upper())
    return _one_of("sex", code, LIST_SEXES)


def check_page(page: int, page_size: int, sort: str, order: str) -> None:
    if page < 1:
        raise FileRuleError("page", "page starts at 1")
    if page > MAX_PAGE:
        raise FileRuleError("page", f"page is at most {MAX_PAGE}")
    if page_size not in PAGE_SIZES:
        raise FileRuleError("page_size", f"page_size must be one of {', '.join(map(str, PAGE_SIZES))}")
    _one_of("sort", sort, LIST_SORTS)
    _one_of("order", order, ("asc", "desc"))


def check_export_size(total: int) -> None:
    """SEA-5: at most 1000 patients per export; narrow the filters beyond."""
    if total > EXPORT_MAX_ROWS:
        raise FileRuleError(
            "filters",
            f"l'export est limité à {EXPORT_MAX_ROWS} patients : cette recherche en donne {total}, "
            "affinez les filtres",
        )


def delegation_in_force(scopes: Iterable[str], ends_on: date | None, active: bool, today: date) -> bool:
    return active and "dossiers" in set(scopes) and (ends_on is None or today <= ends_on)

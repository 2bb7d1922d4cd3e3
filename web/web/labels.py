"""French labels for the API's codes, as the booklet words them."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

SEX = {"M": "Masculin", "F": "Féminin", "I": "Indéterminé"}
IDENTITY_STATUS = {
    "PROV": "Identité provisoire",
    "VALI": "Identité validée",
    "RECUP": "Identité récupérée",
    "QUAL": "Identité qualifiée",
}
CONSENT_GIVEN_BY = {
    "patient": "Le patient",
    "curator": "Le curateur",
    "legal_guardian": "Le tuteur légal",
    "trusted_person": "La personne de confiance",
    "parental_authority": "L'autorité parentale",
    "other": "Autre (préciser)",
}
ROLES = {
    "aidant_principal": "Aidant principal",
    "aidant_secondaire": "Aidant secondaire",
    "coordinateur": "Coordinateur / gestionnaire de cas",
    "intervenant": "Intervenant",
    "mandataire_judiciaire": "Mandataire judiciaire",
    "medecin_traitant": "Médecin traitant",
    "personne_a_prevenir": "Personne à prévenir",
}
# CER-2: a structure holds none of these roles.
PERSON_ONLY_ROLES = ("aidant_principal", "aidant_secondaire", "medecin_traitant", "personne_a_prevenir")
TASK_TYPES = {
    "appeler_famille": "Appeler famille/entourage",
    "appeler_patient": "Appeler patient/usager",
    "bilan_ppcs": "Bilan du PPCS",
    "autre": "Autre",
}
TASK_LEVELS = {"information": "Information", "important": "Important", "urgent": "Urgent"}
TASK_STATUS = {"a_traiter": "À traiter", "en_cours": "En cours", "traitee": "Traitée", "annulee": "Annulée"}
# The one-click button names the next step of the cycle.
TASK_NEXT_ACTION = {"en_cours": "Passer en cours", "traitee": "Marquer traitée", "a_traiter": "Rouvrir"}
STRUCTURE_KINDS = {"dac": "DAC", "unit": "Unité", "practice": "Cabinet", "establishment": "Établissement"}
HOLDER_KIND = {"person": "Personne", "structure": "Structure"}


def label(table: dict[str, str], code: object) -> str:
    if code is None:
        return ""
    return table.get(str(code), str(code))


def parse_iso(value: object) -> date | datetime | None:
    if not value:
        return None
    text = str(value)
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def date_fr(value: object) -> str:
    """JJ/MM/AAAA, the format of every date shown."""
    parsed = parse_iso(value)
    if parsed is None:
        return "" if not value else str(value)
    if isinstance(parsed, datetime):
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(PARIS)
        return parsed.strftime("%d/%m/%Y")
    return parsed.strftime("%d/%m/%Y")


def datetime_fr(value: object) -> str:
    """JJ/MM/AAAA HH:MM, Paris time."""
    parsed = parse_iso(value)
    if not isinstance(parsed, datetime):
        return date_fr(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(PARIS)
    return parsed.strftime("%d/%m/%Y %H:%M")


def parse_date_fr(text: str) -> date | None:
    """JJ/MM/AAAA (or the browser's AAAA-MM-JJ from a date field) -> date; None when invalid."""
    text = text.strip()
    try:
        if "/" in text:
            day, month, year = text.split("/")
            if len(year) != 4:
                return None
            return date(int(year), int(month), int(day))
        return date.fromisoformat(text)
    except ValueError:
        return None


def age_fr(age: object) -> str:
    if not isinstance(age, dict):
        return ""
    years = age.get("years")
    if years:
        return f"{years} an{'s' if years > 1 else ''}"
    months = age.get("months")
    if months:
        return f"{months} mois"
    days = age.get("days") or 0
    return f"{days} jour{'s' if days > 1 else ''}"


def patient_name(patient: dict[str, object]) -> str:
    """NOM Prénom, the way identity vigilance writes a patient's name."""
    return f"{str(patient.get('birth_name', '')).upper()} {patient.get('first_name', '')}".strip()


# Special cases of identity vigilance (Fiche 14).
IDENTITY_ATTRIBUTES = {"HOMA": "Homonyme", "DOUT": "Identité douteuse", "FICT": "Identité fictive"}
BREAK_GLASS_REASONS = {
    "urgence_vitale": "Urgence vitale",
    "urgence_soins": "Soins urgents, équipe habituelle injoignable",
    "continuite_soins": "Continuité des soins (remplacement, garde)",
    "demande_patient": "À la demande du patient",
    "autre": "Autre motif",
}


# -- the patient file's panels and the file list (PAT-8..PAT-18, SEA-2) --------------------------
# The booklet's sexes on the file list (H/F/I/O); the API maps them to the identity's codes.
LIST_SEX = {"H": "Homme", "F": "Femme", "I": "Indéterminé", "O": "Autre"}
SEX_SYMBOL = {"M": "♂", "F": "♀", "I": "⚥"}
FILE_STATUS = {
    "pre_inclusion": "Pré-inclusion",
    "suivi_ponctuel": "Suivi ponctuel",
    "suivi_soutenu": "Suivi coordination soutenue",
    "suivi_intensif": "Suivi coordination intensive",
    "sorti": "Sorti",
    "archive": "Archivé",
}
EXIT_REASONS = {
    "deces": "Décès",
    "demenagement": "Déménagement",
    "entree_etablissement": "Entrée en établissement",
    "fin_accompagnement": "Fin de l'accompagnement",
    "refus_patient": "Refus du patient",
    "relais_autre_structure": "Relais par une autre structure",
    "autre": "Autre (préciser en commentaire)",
}
EXPERTISES = {
    "gerontologie": "Gérontologie",
    "handicap": "Handicap",
    "soins_palliatifs": "Soins palliatifs",
    "sante_mentale": "Santé mentale",
    "pediatrie": "Pédiatrie",
    "autre": "Autre",
}
RELATIONS = {
    "sister": "Sœur",
    "brother": "Frère",
    "mother": "Mère",
    "father": "Père",
    "child": "Enfant",
    "spouse": "Conjoint(e)",
    "other": "Autre",
}
IMPORTANCE = {"normal": "Normal", "important": "Important", "tres_important": "Très important"}
SHARING = {"public": "Public", "shared": "Partagé"}
FEED_FILTERS = {
    "important": "Important",
    "tres_important": "Très important",
    "notes": "Notes",
    "active": "Événements actifs",
}
PERIODS = {"month": "Dernier mois", "quarter": "Dernier trimestre", "year": "Dernière année", "all": "Tout"}
TIMELINE_KINDS = {
    "hospitalisation": "Hospitalisation",
    "task": "Tâche",
    "appointment": "Rendez-vous",
    "document": "Document",
    "status": "Statut",
}
# Thematics are codes on the file (PAT-17, SEA-2); the booklet's usual ones, others shown as is.
THEMATICS = {
    "principal": "Principal",
    "assistance": "Assistance",
    "diabete": "Diabète",
    "pps": "PPS",
    "rcp": "RCP",
    "sante_mentale": "Santé mentale",
    "social": "Social",
    "soins_infirmiers": "Dossier soins infirmiers",
}
YES_NO = {"true": "Oui", "false": "Non"}


def age_long_fr(age: object) -> str:
    """PAT-7: "86 ans, 6 mois et 14 jours" (the booklet's form)."""
    if not isinstance(age, dict):
        return ""
    parts = []
    for key, one, many in (("years", "an", "ans"), ("months", "mois", "mois"), ("days", "jour", "jours")):
        value = int(age.get(key) or 0)
        if value or key == "days" and not parts:
            parts.append(f"{value} {one if value == 1 else many}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " et " + parts[-1]


def list_name(row: dict[str, object]) -> str:
    """SEA-3: the used name first, the birth name after it when they differ."""
    birth = str(row.get("birth_name") or "").upper()
    first = str(row.get("first_name") or "")
    used = str(row.get("used_name") or "").upper()
    if used and used != birth:
        return f"{used} {first} (né(e) {birth})"
    return f"{birth} {first}".strip()

"""Export of one patient's data (PAT-16): a readable HTML file and a FHIR R4 Bundle.

The Bundle's Patient follows FR Core `fr-core-patient-ins` (identity-reliability and
birth-place extensions); file statuses map to EpisodeOfCare, stays to Encounter, memos
to Flag, the care circle to CareTeam (shared/REFERENCE.md, "FHIR R4 mapping").
Only what the caller may read goes in: memos are filtered by their sharing.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from jinja2 import Environment, select_autoescape

from chassis.auth import Actor
from chassis.db import Database, utcnow
from dossier import file

FR_CORE = "https://hl7.fr/ig/fhir/core"
PROFILE_PATIENT_INS = f"{FR_CORE}/StructureDefinition/fr-core-patient-ins"
EXT_IDENTITY_RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
CS_IDENTITY_STATUS = f"{FR_CORE}/CodeSystem/fr-core-cs-identity-status"
EXT_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
EXT_INSEE_CODE = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
CS_COORDO = "https://coordo.dev/fhir/CodeSystem"
_FHIR_SEX = {"M": "male", "F": "female", "I": "unknown"}
_STAY_STATUS = {True: "in-progress", False: "finished"}


def gather(db: Database, actor: Actor, patient_id: str, today: date) -> dict[str, Any]:
    """Everything the caller may read on this file (the overview plus full histories)."""
    data = file.overview(db, actor, patient_id, today)
    with db.session_factory() as s:
        data["status_history"] = file.status_history(s, patient_id)
        data["timeline_all"] = file.timeline_items(s, patient_id, "all", today)
    data["feed"] = file.feed(db, patient_id, [], limit=500)["items"]
    data["exported_at"] = utcnow().isoformat()
    return data


_HTML = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<title>Dossier de {{ p.first_name }} {{ p.birth_name }}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.2em .5em}</style>
</head><body>
<h1>Dossier patient — {{ p.birth_name }} {{ p.first_name }}</h1>
<p>Extrait le {{ d.exported_at }}</p>
<h2>Identité</h2>
<ul>
<li>Nom de naissance : {{ p.birth_name }}</li>
{% if p.used_name %}<li>Nom utilisé : {{ p.used_name }}</li>{% endif %}
<li>Prénom : {{ p.first_name }}</li>
<li>Sexe : {{ p.sex }}</li>
<li>Date de naissance : {{ p.birth_date }} ({{ p.age.years }} ans, {{ p.age.months }} mois, {{ p.age.days }} jours)</li>
<li>Lieu de naissance (INSEE) : {{ p.birth_place }}</li>
<li>Statut de l'identité : {{ p.identity_status }}</li>
{% if d.death %}<li>Décès : {{ d.death.death_date or "date inconnue" }}</li>{% endif %}
</ul>
<h2>Statuts du dossier</h2>
<table><tr><th>Structure</th><th>Date</th><th>Statut</th><th>Motif</th><th>Commentaire</th></tr>
{% for s in d.status_history %}<tr><td>{{ s.structure_id }}</td><td>{{ s.started_on }}</td><td>{{ s.status }}</td><td>{{ s.exit_reason or "" }}</td><td>{{ s.comment or "" }}</td></tr>{% endfor %}
</table>
<h2>Dossiers liés</h2>
<ul>{% for l in d.linked_files %}<li>{{ l.relation }} : {{ l.birth_name }} {{ l.first_name }}{% if l.comment %} — {{ l.comment }}{% endif %}</li>{% else %}<li>Aucun</li>{% endfor %}</ul>
<h2>Hospitalisations</h2>
<ul>{% for h in d.hospitalisations %}<li>{{ h.establishment }} : {{ h.entry_date }} → {{ h.exit_date or "…" }}{% if h.planned %} (programmée){% endif %}</li>{% else %}<li>Aucune</li>{% endfor %}</ul>
<h2>Mémos</h2>
<ul>{% for m in d.memos %}<li><strong>{{ m.title }}</strong> ({{ m.importance }}) : {{ m.content }}</li>{% else %}<li>Aucun</li>{% endfor %}</ul>
<h2>Cercle de soins</h2>
<p>{{ d.care_circle.members }} membre(s), {{ d.care_circle.habilitated }} habilité(s).</p>
<h2>Tâches</h2>
<p>{{ d.tasks.open }} tâche(s) ouverte(s).</p>
<h2>Ligne de vie</h2>
<ul>{% for i in d.timeline_all %}<li>{{ i.date }} — {{ i.label }}</li>{% else %}<li>Rien</li>{% endfor %}</ul>
<h2>Fil d'actualité</h2>
<ul>{% for f in d.feed %}<li>{{ f.occurred_at }} — {{ f.label }}{% if f.text %} : {{ f.text }}{% endif %}</li>{% endfor %}</ul>
</body></html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(_HTML)


def html(data: dict[str, Any]) -> str:
    return _template.render(d=data, p=data["identity"])


def fhir_patient(identity: dict[str, Any], death: dict[str, Any] | None) -> dict[str, Any]:
    names = [{"use": "official", "family": identity["birth_name"], "given": [identity["first_name"]]}]
    if identity.get("used_name"):
        names.append({"use": "usual", "family": identity["used_name"]})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": identity["id"],
        "meta": {"profile": [PROFILE_PATIENT_INS]},
        "extension": [
            {
                "url": EXT_IDENTITY_RELIABILITY,
                "extension": [
                    {
                        "url": "identityStatus",
                        "valueCoding": {"system": CS_IDENTITY_STATUS, "code": identity["identity_status"]},
                    }
                ],
            },
            {
                "url": EXT_BIRTH_PLACE,
                "valueAddress": {
                    "extension": [
                        {
                            "url": EXT_INSEE_CODE,
                            "valueCoding": {
                                "system": "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM",
                                "code": identity["birth_place"],
                            },
                        }
                    ]
                },
            },
        ],
        "name": names,
        "gender": _FHIR_SEX.get(identity["sex"], "unknown"),
        "birthDate": identity["birth_date"],
    }
    if identity.get("ins"):
        # RNIV: the INS is stored and sent only for a qualified identity.
        patient["identifier"] = [
            {
                "use": "official",
                "type": {
                    "coding": [{"system": f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]
                },
                "system": "urn:oid:1.2.250.1.213.1.4.8",
                "value": identity["ins"],
            }
        ]
    if death is not None:
        if death.get("death_date"):
            patient["deceasedDateTime"] = death["death_date"]
        else:
            patient["deceasedBoolean"] = True
    return patient


def fhir_bundle(data: dict[str, Any]) -> dict[str, Any]:
    identity = data["identity"]
    pid = identity["id"]
    subject = {"reference": f"Patient/{pid}"}
    resources: list[dict[str, Any]] = [fhir_patient(identity, data.get("death"))]
    by_structure: dict[str, list[dict[str, Any]]] = {}
    for row in data["status_history"]:
        by_structure.setdefault(row["structure_id"], []).append(row)
    for structure, rows in sorted(by_structure.items()):
        rows = sorted(rows, key=lambda r: r["recorded_at"])
        closed = rows[-1]["status"] in ("sorti", "archive")
        resources.append(
            {
                "resourceType": "EpisodeOfCare",
                "id": rows[-1]["id"],
                "status": "finished" if closed else "active",
                "statusHistory": [
                    {
                        "status": "finished" if r["status"] in ("sorti", "archive") else "active",
                        "period": {"start": r["started_on"]},
                    }
                    for r in rows
                ],
                "type": [{"coding": [{"system": f"{CS_COORDO}/file-status", "code": rows[-1]["status"]}]}],
                "patient": subject,
                "managingOrganization": {"identifier": {"value": structure}},
            }
        )
    for stay in data["hospitalisations"]:
        period = {"start": stay["entry_date"]}
        if stay["exit_date"]:
            period["end"] = stay["exit_date"]
        resources.append(
            {
                "resourceType": "Encounter",
                "id": stay["id"],
                "status": "planned" if stay["future"] else _STAY_STATUS[stay["exit_date"] is None],
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": subject,
                "period": period,
                "serviceProvider": {"display": stay["establishment"]},
            }
        )
    for memo in data["memos"]:
        resources.append(
            {
                "resourceType": "Flag",
                "id": memo["id"],
                "status": "active",
                "code": {"text": f"{memo['title']} — {memo['content']}"},
                "category": [
                    {"coding": [{"system": f"{CS_COORDO}/memo-importance", "code": memo["importance"]}]}
                ],
                "subject": subject,
            }
        )
    circle = data["care_circle"]["list"]
    if circle:
        resources.append(
            {
                "resourceType": "CareTeam",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"coordo:circle:{pid}")),
                "status": "active",
                "subject": subject,
                "participant": [
                    {
                        "role": [
                            {"coding": [{"system": f"{CS_COORDO}/circle-role", "code": r}]}
                            for r in m["roles"]
                        ],
                        "member": {
                            "identifier": {
                                "system": f"{CS_COORDO}/{m['holder_kind']}",
                                "value": m["holder_id"],
                            }
                        },
                    }
                    for m in circle
                ],
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": data["exported_at"],
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def export_patient(
    db: Database, actor: Actor, patient_id: str, fmt: str, today: date
) -> tuple[bytes | dict[str, Any], str, str]:
    """The file to download: HTML bytes, or the Bundle (serialised as JSON by the web layer)."""
    data = gather(db, actor, patient_id, today)
    if fmt == "fhir":
        return fhir_bundle(data), "application/fhir+json", f"patient-{patient_id}.json"
    return html(data).encode(), "text/html", f"patient-{patient_id}.html"

"""The screens: each one calls the gateway's /api with the person's token and renders French pages."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import quote, urlencode

import flask

from web import labels
from web.api import ApiResponse, Gateway
from web.contracts import has_operation, parameters
from web.oidc import LoginRequired

bp = flask.Blueprint("pages", __name__)
F = TypeVar("F", bound=Callable[..., Any])
PAGE_SIZES = (10, 20, 50, 100)
FIELD_LABELS = {
    "birth_name": "Nom de naissance",
    "first_name": "Premier prénom de naissance",
    "birth_date": "Date de naissance",
    "sex": "Sexe",
    "birth_place": "Lieu de naissance",
    "consent": "Consentement",
    "consent.given_by": "Consentement donné par",
    "consent.given_by_name": "Nom de la personne ayant donné le consentement",
    "type": "Type de tâche",
    "label": "Libellé",
    "level": "Niveau",
    "due_date": "Échéance",
    "recipients": "Destinataires",
    "roles": "Rôles",
    "holder_id": "Membre",
    "used_name": "Nom utilisé",
    "first_names": "Prénoms de naissance",
    "used_first_name": "Prénom utilisé",
    "mobile": "Téléphone portable",
    "phone": "Téléphone fixe",
    "email": "Courriel",
    "address": "Adresse",
    "title": "Titre",
    "content": "Contenu",
    "importance": "Niveau d'importance",
    "sharing": "Mode de partage",
    "shared_with": "Partagé avec",
    "linked_patient_id": "Patient",
    "relation": "Type de relation",
    "comment": "Commentaire",
    "status": "Type de statut",
    "structure_id": "Structure",
    "started_on": "Date de début",
    "exit_reason": "Motif de sortie",
    "expertise": "Type d'expertise",
    "establishment": "Établissement",
    "entry_date": "Date d'entrée",
    "exit_date": "Date de sortie",
    "death_date": "Date du décès",
    "country": "Pays du décès",
    "city": "Ville du décès",
    "place": "Lieu du décès",
    "text": "Texte de la note",
    "commune": "Commune",
    "postal_code": "Code postal",
    "thematics": "Thématiques",
    "parcours": "Parcours",
    "name": "Nom",
    "other_patient_ids": "Autres patients concernés",
    "email_mode": "Envoi des courriels",
    "quiet_hours": "Heures de silence",
    "quiet_hours.start": "Début des heures de silence",
    "quiet_hours.end": "Fin des heures de silence",
}


def local_path(value: str | None, default: str) -> str:
    """Only a path of this site: never an open redirect to another one."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def gateway() -> Gateway:
    gw: Gateway = flask.current_app.extensions["coordo_web"]["gateway"]
    return gw


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not flask.session.get("tokens"):
            raise LoginRequired()
        if (flask.session.get("me") or {}).get("terms_accepted") is False:
            # ID-2: the terms of use in force come before anything else.
            return flask.redirect(f"/conditions?next={flask.request.path}")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def load_me() -> dict[str, Any]:
    response = gateway().get("/me")
    if not response.ok:
        raise LoginRequired()
    me = response.body
    flask.session["me"] = me
    return cast(dict[str, Any], me)


def me() -> dict[str, Any]:
    cached = flask.session.get("me")
    return cached if cached else load_me()


def api_error(response: ApiResponse) -> str:
    """A French sentence for a refused call (the API's own details are in English)."""
    problem = response.problem
    field = problem.get("field")
    if response.status == 403:
        return "Vous n'avez pas le droit de faire cela (habilitation ou rôle insuffisant)."
    if response.status == 404:
        return "Élément introuvable : il a peut-être été supprimé."
    if response.status == 409:
        return "Cette modification entre en conflit avec une autre : rechargez la page."
    if response.status in (400, 422):
        if field:
            return f"« {FIELD_LABELS.get(str(field), str(field))} » : valeur refusée."
        return "Certaines valeurs sont refusées : vérifiez le formulaire."
    if response.status == 503:
        return "Le service est momentanément indisponible : réessayez."
    return f"La demande a échoué (erreur {response.status})."


def profession_labels() -> dict[str, str]:
    """Profession codes -> French labels (ID-4), asked once per process."""
    store = flask.current_app.extensions["coordo_web"]
    cached: dict[str, str] | None = store.get("professions")
    if cached is None:
        response = gateway().get("/professions")
        items = response.body.get("items", []) if response.ok and isinstance(response.body, dict) else []
        cached = {str(p["code"]): str(p["label"]) for p in items}
        if cached:
            store["professions"] = cached
    return cached


@bp.app_context_processor
def _context() -> dict[str, Any]:
    if not flask.session.get("tokens"):
        return {"me": None, "unread": None, "act_as_name": None}
    profile = flask.session.get("me") or {}
    act_as = flask.session.get("act_as")
    act_as_name = next((s.get("name") for s in profile.get("structures", []) if s.get("id") == act_as), None)
    return {"me": profile, "unread": None, "act_as_name": act_as_name}


def _unread_count() -> int | None:
    try:
        response = gateway().get("/notifications/unread-count")
    except LoginRequired:
        raise
    except Exception:  # noqa: BLE001 - the bell never breaks a page
        return None
    if not response.ok or not isinstance(response.body, dict):
        return None
    return int(response.body.get("unread_count") or 0)


def render(template: str, status: int = 200, **context: Any) -> Any:
    context.setdefault("unread", _unread_count())
    context.setdefault("glass", _active_glass(context.get("patient_id")))
    return flask.render_template(template, **context), status


def _active_glass(patient_id: str | None) -> dict[str, Any] | None:
    """The caller's running break-the-glass access to this file: the red banner on every page of it."""
    if not patient_id or not has_operation("GET", "/break-glass"):
        return None
    response = gateway().get("/break-glass", patient_id=patient_id)
    if not response.ok or not isinstance(response.body, dict):
        return None
    active = [g for g in response.body.get("grants", []) if g.get("active")]
    return active[0] if active else None


# -- home, profile -------------------------------------------------------------------------------


@bp.get("/")
def home() -> Any:
    if flask.session.get("tokens"):
        return flask.redirect("/patients")
    return flask.redirect("/auth/login")


@bp.get("/profil")
@login_required
def profile() -> Any:
    profile = load_me()
    return render(
        "profile.html",
        profile=profile,
        act_as=flask.session.get("act_as"),
        super_user="super_user" in (profile.get("roles") or []),
        can_review=can_review_break_glass() and has_operation("GET", "/break-glass/review"),
    )


@bp.post("/profil/agir-pour")
@login_required
def act_as() -> Any:
    wanted = flask.request.form.get("structure_id") or None
    structures = {s["id"] for s in me().get("structures", [])}
    if wanted is not None and wanted not in structures:
        flask.flash("Vous ne pouvez agir qu'au nom de vos propres structures.", "erreur")
    else:
        flask.session["act_as"] = wanted
        flask.flash(
            "Vous agissez désormais au nom de votre structure."
            if wanted
            else "Vous agissez en votre nom propre.",
            "succes",
        )
    return flask.redirect("/profil")


# -- delegations (ID-6) ------------------------------------------------------------------------------

DELEGATION_SCOPES = {"dossiers": "Dossiers & RCP", "discussions": "Discussions"}
DELEGATION_STATUS = {
    "pending": "En attente",
    "accepted": "Acceptée",
    "refused": "Refusée",
    "revoked": "Révoquée",
    "expired": "Expirée",
}


@bp.get("/profil/delegations")
@login_required
def delegations() -> Any:
    if not has_operation("GET", "/delegations/given"):
        return render(
            "error.html", 404, title="Délégations", message="Les délégations ne sont pas disponibles."
        )
    if flask.session.get("act_as"):
        return render(
            "error.html",
            title="Délégations",
            message="Les délégations se gèrent en votre nom propre : choisissez « En mon nom propre » dans votre profil.",
        )
    given = gateway().get("/delegations/given")
    received = gateway().get("/delegations/received")
    q = (flask.request.args.get("q") or "").strip()
    found: list[dict[str, Any]] | None = None
    if q:
        response = gateway().get("/directory/persons", q=q, limit=20)
        own = me().get("id")
        found = [p for p in (response.body.get("items", []) if response.ok else []) if p.get("id") != own]
    return render(
        "delegations.html",
        given=given.body.get("items", []) if given.ok else [],
        received=received.body.get("items", []) if received.ok else [],
        scopes=DELEGATION_SCOPES,
        statuses=DELEGATION_STATUS,
        q=q,
        found=found,
    )


@bp.post("/profil/delegations")
@login_required
def ask_delegation() -> Any:
    form = flask.request.form
    scopes = [v for v in form.getlist("scopes") if v in DELEGATION_SCOPES]
    body: dict[str, Any] = {"grantor_id": form.get("grantor_id", ""), "scopes": scopes}
    problem = None
    if not scopes:
        problem = "Choisissez au moins un périmètre."
    if form.get("ends_on", "").strip():
        ends = labels.parse_date_fr(form["ends_on"])
        if ends is None or ends <= date.today():
            problem = "La date de fin doit être au format JJ/MM/AAAA et postérieure à aujourd'hui."
        else:
            body["ends_on"] = ends.isoformat()
    if problem is None:
        response = gateway().post("/delegations", json=body)
        if response.ok:
            flask.flash("Votre demande de délégation est envoyée.", "succes")
            return flask.redirect("/profil/delegations")
        problem = api_error(response)
    flask.flash(problem, "erreur")
    return flask.redirect("/profil/delegations")


@bp.post("/profil/delegations/<uuid:delegation_id>/<action>")
@login_required
def delegation_action(delegation_id: Any, action: str) -> Any:
    verbs = {
        "accepter": ("accept", "Délégation acceptée."),
        "refuser": ("refuse", "Délégation refusée."),
        "revoquer": ("revoke", "Délégation révoquée."),
    }
    if action not in verbs:
        flask.abort(404)
    verb, done = verbs[action]
    response = gateway().post(f"/delegations/{delegation_id}/{verb}")
    flask.flash(done if response.ok else api_error(response), "succes" if response.ok else "erreur")
    return flask.redirect("/profil/delegations")


# -- file list (SEA) -----------------------------------------------------------------------------


def _int_arg(name: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
    try:
        value = int(flask.request.args.get(name, default))
    except ValueError:
        return default
    if allowed is not None and value not in allowed:
        return default
    return max(value, 1)


SORTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "nom": lambda p: f"{str(p.get('birth_name', '')).upper()}\t{p.get('first_name', '')}",
    "naissance": lambda p: str(p.get("birth_date", "")),
    "creation": lambda p: str(p.get("created_at", "")),
}


@bp.get("/patients")
@login_required
def patients() -> Any:
    """SEA-1..SEA-5: the file list, filtered, sorted and paged by the dossier service."""
    args = flask.request.args
    filters, problems = list_filters(args)
    size = _int_arg("taille", 10, PAGE_SIZES)
    page = _int_arg("page", 1)
    sort = args.get("tri") if args.get("tri") in LIST_SORTS else "last_update"
    order = "asc" if args.get("ordre") == "asc" else "desc"
    saved_id = args.get("recherche") or None
    if args.get("tous") == "1" and not filters:
        # Any filter given stops the default saved search: "archived: no" is the plain list.
        filters = {"archived": False}
    params = {
        **api_params(filters),
        "sort": sort,
        "order": order,
        "page": page,
        "page_size": size,
        "saved_search_id": saved_id,
    }
    response = gateway().get("/file-list", **params)
    body = response.body if response.ok and isinstance(response.body, dict) else {}
    items = list(body.get("items", []))
    total = body.get("total")
    applied = dict(body.get("filters") or filters)
    searches_response = gateway().get("/saved-searches")
    searches = searches_response.body.get("items", []) if searches_response.ok else []
    applied_id = body.get("saved_search_id")
    zones_response = gateway().get("/zones")
    zones = zones_response.body.get("items", []) if zones_response.ok else []
    structure_ids = {s["structure_id"] for row in items for s in row.get("statuses", [])}
    pages = max(math.ceil(total / size), 1) if isinstance(total, int) else None
    keep = form_pairs(applied) + [("tri", sort), ("ordre", order), ("taille", str(size))]
    return render(
        "patients.html",
        items=items,
        page=page,
        size=size,
        sizes=PAGE_SIZES,
        pages=pages,
        total=total,
        has_next=page < pages if pages else False,
        f=applied,
        professional_name=_person_name(applied.get("professional")),
        zones=zones,
        structures=me().get("structures", []),
        structure_names=structure_names(structure_ids),
        searches=searches,
        applied_search=next((s for s in searches if s.get("id") == applied_id), None),
        bulk=has_operation("POST", "/circles/bulk"),
        sort=sort,
        order=order,
        query=urlencode(keep),
        filter_pairs=form_pairs(applied),
        export_query=urlencode(form_pairs(applied) + [("tri", sort), ("ordre", order)]),
        error=" ".join(problems) or (None if response.ok else api_error(response)),
    )


LIST_SORTS = {"last_update": "Date de mise à jour", "name": "Nom", "birth_date": "Date de naissance"}
LIST_TEXTS = ("name", "first_name", "parcours")
LIST_MULTI = ("statuses", "zones", "roles", "structures", "thematics")
LIST_TOGGLES = ("favourites", "deceased", "archived", "open_tasks", "hospitalised")


def list_filters(args: Any) -> tuple[dict[str, Any], list[str]]:
    """The SEA-2 filters of the query string, as the API's ListFilters (French messages for bad ones)."""
    filters: dict[str, Any] = {}
    problems: list[str] = []
    for name in LIST_TEXTS:
        value = (args.get(name) or "").strip()[:100]
        if value:
            filters[name] = value
    born = (args.get("birth_date") or "").strip()
    if born:
        parsed = labels.parse_date_fr(born)
        if parsed is None:
            problems.append("La date de naissance doit être au format JJ/MM/AAAA.")
        else:
            filters["birth_date"] = parsed.isoformat()
    if args.get("sex") in (*labels.LIST_SEX, "M"):
        filters["sex"] = args["sex"]
    for name in LIST_MULTI:
        values = [v for raw in args.getlist(name) for v in raw.split(",") if v.strip()]
        if values:
            filters[name] = [v.strip() for v in values]
    communes = [
        c.strip().upper() for raw in args.getlist("communes") for c in raw.replace(";", ",").split(",")
    ]
    communes = [c for c in communes if c]
    if communes:
        if all(re.fullmatch(r"\d{5}|2[AB]\d{3}", c) for c in communes):
            filters["communes"] = communes
        else:
            problems.append("Une commune se cherche par son code INSEE (5 caractères).")
    for name in LIST_TOGGLES:
        if args.get(name) in ("true", "false"):
            filters[name] = args[name] == "true"
    professional = (args.get("professionnel") or "").strip()
    if professional:
        found = gateway().get("/directory/persons", q=professional[:100], limit=1)
        hits = found.body.get("items", []) if found.ok else []
        if hits:
            filters["professional"] = hits[0]["id"]
        else:
            problems.append(f"Aucun professionnel de l'annuaire ne s'appelle « {professional} ».")
    elif args.get("professional"):
        filters["professional"] = args["professional"][:64]
    return filters, problems


def api_params(filters: dict[str, Any]) -> dict[str, Any]:
    """ListFilters -> query parameters (lists comma-separated, booleans as true/false)."""
    params: dict[str, Any] = {}
    for key, value in filters.items():
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, list):
            params[key] = ",".join(str(v) for v in value)
        else:
            params[key] = value
    return params


def form_pairs(filters: dict[str, Any]) -> list[tuple[str, str]]:
    """ListFilters -> this page's own query string (links, hidden fields of the save form)."""
    pairs: list[tuple[str, str]] = []
    for key, value in filters.items():
        if isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        elif isinstance(value, list):
            pairs.extend((key, str(v)) for v in value)
        elif value not in (None, ""):
            pairs.append((key, str(value)))
    return pairs


def _person_name(person_id: Any) -> str | None:
    if not person_id:
        return None
    response = gateway().get(f"/directory/persons/{person_id}")
    return str(response.body.get("display_name") or person_id) if response.ok else str(person_id)


def structure_names(ids: set[str]) -> dict[str, str]:
    """Structure id -> name: the person's own first, then the directory (kept for the process)."""
    names = {s["id"]: s["name"] for s in me().get("structures", [])}
    cache: dict[str, str] = flask.current_app.extensions["coordo_web"].setdefault("structure_names", {})
    for sid in sorted(ids - names.keys())[:30]:
        if sid not in cache:
            response = gateway().get(f"/directory/structures/{sid}")
            if response.ok:
                cache[sid] = str(response.body.get("name") or sid)
        names[sid] = cache.get(sid, "Autre structure")
    return names


@bp.get("/patients/export.<fmt>")
@login_required
def patients_export(fmt: str) -> Any:
    """SEA-5: the filtered list as CSV or XLSX, from the gateway through the session's token."""
    if fmt not in ("csv", "xlsx"):
        flask.abort(404)
    args = flask.request.args
    filters, problems = list_filters(args)
    back = "/patients?" + urlencode(form_pairs(filters))
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return flask.redirect(back)
    params = {
        **api_params(filters),
        "format": fmt,
        "sort": args.get("tri") if args.get("tri") in LIST_SORTS else None,
        "order": args.get("ordre") if args.get("ordre") in ("asc", "desc") else None,
    }
    response = gateway().raw("GET", "/file-list/export", params=params)
    if response.status_code == 422:
        try:
            problem = response.json()
        except ValueError:
            problem = {}
        total, limit = problem.get("total"), problem.get("max") or 1000
        flask.flash(
            f"L'export est limité à {limit} dossiers et votre recherche en compte {total} : "
            "affinez les filtres pour exporter."
            if total
            else f"L'export est limité à {limit} dossiers : affinez les filtres.",
            "erreur",
        )
        return flask.redirect(back)
    if response.status_code != 200:
        flask.flash(f"L'export a échoué (erreur {response.status_code}).", "erreur")
        return flask.redirect(back)
    download = flask.Response(response.content, mimetype=response.headers.get("content-type"))
    download.headers["Content-Disposition"] = response.headers.get(
        "content-disposition", f'attachment; filename="dossiers.{fmt}"'
    )
    return download


@bp.post("/patients/recherches")
@login_required
def save_search() -> Any:
    """SEA-4: the current filters under a name, the default one (★) if asked."""
    form = flask.request.form
    filters, problems = list_filters(form)
    name = form.get("search_name", "").strip()[:100]
    if not name:
        problems.append("Donnez un nom à la recherche.")
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return flask.redirect("/patients?" + urlencode(form_pairs(filters)))
    body = {"name": name, "filters": filters, "is_default": form.get("is_default") == "on"}
    response = gateway().post("/saved-searches", json=body)
    if response.status == 409:
        flask.flash(f"Une recherche s'appelle déjà « {name} » : choisissez un autre nom.", "erreur")
        return flask.redirect("/patients?" + urlencode(form_pairs(filters)))
    if not response.ok:
        flask.flash(api_error(response), "erreur")
        return flask.redirect("/patients?" + urlencode(form_pairs(filters)))
    flask.flash(
        f"Recherche « {name} » enregistrée" + (", appliquée par défaut." if body["is_default"] else "."),
        "succes",
    )
    return flask.redirect(f"/patients?recherche={response.body['id']}")


@bp.post("/patients/recherches/<uuid:search_id>/<action>")
@login_required
def saved_search_action(search_id: Any, action: str) -> Any:
    if action == "defaut":
        response = gateway().request("PATCH", f"/saved-searches/{search_id}", json={"is_default": True})
        done = "Cette recherche s'applique désormais par défaut."
    elif action == "sans-defaut":
        response = gateway().request("PATCH", f"/saved-searches/{search_id}", json={"is_default": False})
        done = "Plus aucune recherche ne s'applique par défaut."
    elif action == "supprimer":
        response = gateway().delete(f"/saved-searches/{search_id}")
        done = "La recherche est supprimée définitivement."
    else:
        flask.abort(404)
    flask.flash(done if response.ok else api_error(response), "succes" if response.ok else "erreur")
    return flask.redirect("/patients?tous=1" if action == "supprimer" else f"/patients?recherche={search_id}")


# -- bulk habilitation management from the file list (CER-9) -------------------------------------

BULK_ACTIONS = {
    "add": "Ajouter au cercle de soins",
    "revoke_habilitation": "Retirer l'habilitation",
    "remove": "Retirer du cercle de soins",
}
BULK_OUTCOMES = {
    "added": "ajouté",
    "habilitated": "habilité",
    "revoked": "habilitation retirée",
    "removed": "retiré",
    "unchanged": "inchangé",
    "not_member": "n'était pas membre",
}


def _selected_patients(ids: list[str]) -> list[dict[str, Any]]:
    import uuid

    selected = []
    for value in ids[:100]:
        try:
            uuid.UUID(value)
        except ValueError:
            continue
        response = gateway().get(f"/patients/{value}")
        if response.ok:
            selected.append(response.body)
    return selected


@bp.route("/patients/gestion-groupee", methods=["GET", "POST"])
@login_required
def bulk() -> Any:
    if not has_operation("POST", "/circles/bulk"):
        return render(
            "error.html", 404, title="Gestion groupée", message="La gestion groupée n'est pas disponible."
        )
    values = flask.request.values
    patients = _selected_patients(values.getlist("patient_ids"))
    results: dict[str, str] | None = None
    error = None
    if flask.request.method == "POST" and values.get("holder_id"):
        action = values.get("action", "")
        body: dict[str, Any] = {
            "action": action,
            "patient_ids": [p["id"] for p in patients],
            "holder_kind": values.get("holder_kind", "person"),
            "holder_id": values.get("holder_id"),
        }
        if action == "add":
            body["roles"] = [r for r in values.getlist("roles") if r in labels.ROLES]
            body["habilitated"] = values.get("habilitated") == "on"
        if action not in BULK_ACTIONS or not patients:
            error = "Choisissez une action et au moins un dossier."
        else:
            response = gateway().post("/circles/bulk", json=body)
            if response.ok:
                results = {
                    r["patient_id"]: BULK_OUTCOMES.get(r["outcome"], r["outcome"])
                    for r in response.body["results"]
                }
            elif response.status in (403, 409):
                refused = response.problem.get("patients") or []
                error = (
                    "Rien n'est modifié : la modification est impossible sur "
                    f"{len(refused) or 'certains'} dossier{'s' if len(refused) != 1 else ''} de la sélection."
                )
            else:
                error = api_error(response)
    q = (values.get("q") or "").strip()
    kind = values.get("type") or "person"
    found: list[dict[str, Any]] | None = None
    if q:
        path = "/directory/structures" if kind == "structure" else "/directory/persons"
        response = gateway().get(path, q=q, limit=20)
        found = list(response.body.get("items", [])) if response.ok else []
    return render(
        "bulk.html",
        patients=patients,
        q=q,
        kind=kind,
        found=found,
        actions=BULK_ACTIONS,
        results=results,
        error=error,
        chosen=values.get("holder_id"),
        chosen_name=values.get("holder_name"),
    )


# -- create a patient (PAT-1, PAT-2, PAT-5) -------------------------------------------------------

TRAIT_FIELDS = ("birth_name", "first_name", "birth_date", "sex", "birth_place")
# The rest of the identity, after the strict traits (all optional here; the API checks them).
EXTRA_IDENTITY_FIELDS = {
    "used_name": 100,
    "first_names": 200,
    "used_first_name": 100,
    "mobile": 14,
    "phone": 14,
    "email": 254,
    "address": 300,
}


def _check_traits(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The five strict traits, checked as the booklet asks, with French messages."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    birth_name = form.get("birth_name", "").strip()
    if not birth_name:
        errors["birth_name"] = "Le nom de naissance est obligatoire."
    elif len(birth_name) > 100:
        errors["birth_name"] = "Le nom de naissance ne peut dépasser 100 caractères."
    body["birth_name"] = birth_name
    first_name = form.get("first_name", "").strip()
    if not first_name:
        errors["first_name"] = "Le premier prénom de naissance est obligatoire."
    elif " " in first_name or len(first_name) > 100:
        errors["first_name"] = "Saisissez uniquement le premier prénom de naissance."
    body["first_name"] = first_name
    raw_date = form.get("birth_date", "").strip()
    born = labels.parse_date_fr(raw_date) if raw_date else None
    if not raw_date:
        errors["birth_date"] = "La date de naissance est obligatoire (01/01/1900 si elle est inconnue)."
    elif born is None:
        errors["birth_date"] = "La date de naissance doit être au format JJ/MM/AAAA."
    elif born > date.today():
        errors["birth_date"] = "La date de naissance ne peut pas être dans le futur."
    elif born.year < 1900:
        errors["birth_date"] = "La date de naissance ne peut pas être antérieure à 1900."
    else:
        body["birth_date"] = born.isoformat()
    sex = form.get("sex", "")
    if sex not in labels.SEX:
        errors["sex"] = "Le sexe est obligatoire."
    body["sex"] = sex
    place = form.get("birth_place", "").strip().upper()
    import re

    if not re.fullmatch(r"\d{5}|2[AB]\d{3}", place):
        errors["birth_place"] = (
            "Le lieu de naissance est le code INSEE de la commune (5 caractères), 99xxx pour un pays, "
            "99999 s'il est inconnu."
        )
    body["birth_place"] = place
    return body, errors


def _check_consent(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    given_by = form.get("given_by", "")
    consent: dict[str, Any] = {"attested": form.get("attested") == "on", "given_by": given_by}
    if not consent["attested"]:
        errors["attested"] = "Vous devez attester le consentement du patient au partage d'informations."
    if given_by not in labels.CONSENT_GIVEN_BY:
        errors["given_by"] = "Indiquez qui a donné le consentement."
    if given_by == "other":
        name = form.get("given_by_name", "").strip()
        if not name:
            errors["given_by_name"] = "Précisez le nom de la personne qui a donné le consentement."
        consent["given_by_name"] = name
    given_on = form.get("given_on", "").strip()
    if given_on:
        parsed = labels.parse_date_fr(given_on)
        if parsed is None:
            errors["given_on"] = "La date du consentement doit être au format JJ/MM/AAAA."
        elif parsed > date.today():
            errors["given_on"] = "La date du consentement ne peut pas être dans le futur."
        else:
            consent["given_on"] = parsed.isoformat()
    return consent, errors


def _proposals(traits: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Identity vigilance (PAT-1, PAT-4): the close files, best first; None when the API lacks it."""
    if not has_operation("POST", "/patients/identity-search"):
        return None
    response = gateway().post(
        "/patients/identity-search", json={k: traits[k] for k in TRAIT_FIELDS if k in traits}
    )
    if not response.ok or not isinstance(response.body, dict):
        return []
    candidates = list(response.body.get("candidates") or [])
    _remember_found(candidates)
    return candidates


def _remember_found(candidates: list[dict[str, Any]]) -> None:
    # CER-8: the glass is broken only on a file that identity vigilance just proposed.
    found = [str(c["patient_id"]) for c in candidates if c.get("action") == "break_the_glass"]
    if found:
        flask.session["vigilance"] = (found + list(flask.session.get("vigilance") or []))[:20]


@bp.route("/patients/nouveau", methods=["GET", "POST"])
@login_required
def new_patient() -> Any:
    form = {k: v for k, v in flask.request.form.items()}
    step = form.get("etape", "traits")
    errors: dict[str, str] = {}
    proposals: list[dict[str, Any]] | None = None
    vigilance_available = True
    if flask.request.method == "GET":
        return render("patient_new.html", form={}, errors={}, step="traits", proposals=None)
    traits, errors = _check_traits(form)
    if errors:
        return render("patient_new.html", 422, form=form, errors=errors, step="traits", proposals=None)
    if step == "traits":
        proposals = _proposals(traits)
        vigilance_available = proposals is not None
        return render(
            "patient_new.html",
            form=form,
            errors={},
            step="consentement",
            proposals=proposals or [],
            vigilance_available=vigilance_available,
        )
    # Final step: consent, then create.
    consent, errors = _check_consent(form)
    if form.get("force") == "1" and form.get("force_confirm") != "on":
        errors["force_confirm"] = "Confirmez que le patient n'est aucun des dossiers proposés."
    if errors:
        proposals = _proposals(traits)
        return render(
            "patient_new.html",
            422,
            form=form,
            errors=errors,
            step="consentement",
            proposals=proposals or [],
            vigilance_available=proposals is not None,
        )
    body: dict[str, Any] = {**traits, "consent": consent}
    for name, limit in EXTRA_IDENTITY_FIELDS.items():
        value = form.get(name, "").strip()
        if value:
            body[name] = value[:limit]
    attributes = [a for a in flask.request.form.getlist("attributes") if a in labels.IDENTITY_ATTRIBUTES]
    if attributes:
        body["attributes"] = attributes
    if form.get("force") == "1":
        body["confirm_despite_candidates"] = True
    response = gateway().post("/patients", json=body)
    if response.status == 409:
        # The service found close files (identity vigilance) and asks for a decision.
        return render(
            "patient_new.html",
            409,
            form=form,
            errors={
                "doublon": "Des dossiers proches existent : vérifiez qu'il ne s'agit pas du même patient."
            },
            step="consentement",
            proposals=_remembered(list(response.problem.get("candidates") or [])),
            vigilance_available=True,
        )
    if not response.ok:
        field = str(response.problem.get("field") or "")
        errors = {
            field.split(".")[-1] if field.startswith("consent.") else field or "general": api_error(response)
        }
        return render(
            "patient_new.html", response.status, form=form, errors=errors, step="consentement", proposals=[]
        )
    patient = response.body
    flask.flash(f"Le dossier de {labels.patient_name(patient)} est créé.", "succes")
    return flask.redirect(f"/patients/{patient['id']}")


# -- patient file ----------------------------------------------------------------------------------


def _patient_or_refusal(patient_id: str) -> tuple[dict[str, Any] | None, ApiResponse]:
    response = gateway().get(f"/patients/{patient_id}")
    return (response.body if response.ok else None), response


@bp.get("/patients/<uuid:patient_id>")
@login_required
def patient_file(patient_id: Any) -> Any:
    """PAT-7: the file page, built from the overview call, with its nine panels and the feed."""
    pid = str(patient_id)
    response = gateway().get(f"/patients/{pid}/overview")
    if not response.ok:
        return _refused(pid, response)
    overview = response.body
    patient = overview["identity"]
    args = flask.request.args
    circle = gateway().get(f"/patients/{pid}/circle")
    members = circle.body.get("members", []) if circle.ok else None
    tasks = gateway().get(f"/patients/{pid}/tasks", limit=50)
    consents = history = None
    if has_operation("GET", "/patients/{patient_id}/consents"):
        found = gateway().get(f"/patients/{pid}/consents")
        consents = found.body.get("items", []) if found.ok else None
    if has_operation("GET", "/patients/{patient_id}/identity/history"):
        found = gateway().get(f"/patients/{pid}/identity/history")
        history = found.body.get("items", []) if found.ok else None
    statuses = gateway().get(f"/patients/{pid}/statuses")
    status_items = statuses.body.get("items", []) if statuses.ok else []
    structures = me().get("structures", [])
    chosen_structure = flask.session.get("act_as") or (structures[0]["id"] if structures else None)
    closing = gateway().get(f"/patients/{pid}/closing", structure_id=chosen_structure)
    feed_filters = [v for v in args.getlist("fil") if v in labels.FEED_FILTERS]
    feed_limit = 200 if args.get("fil_tout") == "1" else 30
    feed = gateway().get(f"/patients/{pid}/feed", filter=feed_filters, limit=feed_limit)
    period = args.get("periode") if args.get("periode") in labels.PERIODS else "quarter"
    timeline_items = overview.get("timeline") or []
    if period != "quarter":
        found = gateway().get(f"/patients/{pid}/timeline", period=period)
        timeline_items = found.body.get("items", []) if found.ok else []
    linked_ids = {link["patient_id"] for link in overview.get("linked_files", [])}
    # The files to link: the person's file list by name (a name typed narrows it).
    link_query = (args.get("lien") or "").strip()[:100]
    candidates = gateway().get(
        "/file-list", sort="name", order="asc", page_size=100, archived="false", name=link_query or None
    )
    link_choices = [
        p
        for p in (candidates.body.get("items", []) if candidates.ok else [])
        if p["id"] != pid and p["id"] not in linked_ids
    ]
    names = {str(m.get("holder_id")): m.get("display_name") or "" for m in members or []}
    own = me()
    names.setdefault(str(own.get("id")), own.get("display_name", ""))
    structure_ids = {s["structure_id"] for s in [*overview.get("statuses", []), *status_items]}
    return render(
        "patient.html",
        patient=patient,
        patient_id=pid,
        o=overview,
        members=members,
        tasks=tasks.body.get("items", []) if tasks.ok else None,
        consents=consents,
        history=history,
        consent_form=has_operation("GET", "/patients/{patient_id}/consent-form"),
        status_items=status_items,
        structures=structures,
        chosen_structure=chosen_structure,
        structure_names=structure_names(structure_ids),
        closing=closing.body if closing.ok else None,
        feed=feed.body.get("items", []) if feed.ok else None,
        feed_filters=feed_filters,
        period=period,
        timeline=timeline_axis(timeline_items, period, date.today()),
        link_choices=link_choices,
        link_query=link_query,
        feed_limit=feed_limit,
        names=names,
        favourite=bool(overview.get("favourite")),
    )


def _months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    return day


def timeline_axis(items: list[dict[str, Any]], period: str, today: date) -> dict[str, Any]:
    """PAT-15: the period as an axis (past on the left, future on the right), each item placed on
    it by a CSS class in steps of 2 % (the CSP allows no inline style)."""
    dates = [labels.parse_iso(i.get("date")) for i in items]
    days = [d for d in dates if isinstance(d, date)]
    if period == "all":
        start = min([*days, today]) - timedelta(days=1)
        end = max([*days, today]) + timedelta(days=1)
    else:
        start = _months_before(today, {"month": 1, "quarter": 3, "year": 12}[period])
        end = today + (today - start)
    span = max((end - start).days, 1)

    def place(day: date) -> int:
        share = (min(max(day, start), end) - start).days / span
        return int(round(share * 50)) * 2

    placed = []
    for item, day in sorted(zip(items, dates, strict=True), key=lambda pair: str(pair[0].get("date"))):
        if isinstance(day, date):
            placed.append({**item, "pos": place(day), "future": bool(item.get("future", day > today))})
    ticks = []
    cursor = date(start.year, start.month, 1)
    step = 1 if span <= 200 else 3 if span <= 800 else 12
    while cursor <= end:
        if cursor >= start:
            ticks.append({"date": cursor, "pos": place(cursor)})
        month = cursor.month - 1 + step
        cursor = date(cursor.year + month // 12, month % 12 + 1, 1)
    return {"entries": placed, "start": start, "end": end, "today": place(today), "ticks": ticks}


@bp.get("/patients/<uuid:patient_id>/export.<fmt>")
@login_required
def patient_export(patient_id: Any, fmt: str) -> Any:
    """PAT-16: everything the person may read on the file, as HTML or a FHIR R4 Bundle."""
    formats = {"html": ("html", "dossier.html"), "fhir.json": ("fhir", "dossier-fhir.json")}
    if fmt not in formats:
        flask.abort(404)
    api_format, filename = formats[fmt]
    response = gateway().raw("GET", f"/patients/{patient_id}/export", params={"format": api_format})
    if response.status_code != 200:
        flask.flash(f"L'extraction a échoué (erreur {response.status_code}).", "erreur")
        return flask.redirect(f"/patients/{patient_id}")
    download = flask.Response(response.content, mimetype=response.headers.get("content-type"))
    download.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return download


def _back(pid: str, anchor: str) -> Any:
    return flask.redirect(f"/patients/{pid}#{anchor}")


def _done(response: ApiResponse, message: str) -> None:
    flask.flash(message if response.ok else api_error(response), "succes" if response.ok else "erreur")


def _form_date(name: str, text: str, problems: list[str], *, required: bool = False) -> str | None:
    value = flask.request.form.get(name, "").strip()
    if not value:
        if required:
            problems.append(f"{text} est obligatoire (JJ/MM/AAAA).")
        return None
    parsed = labels.parse_date_fr(value)
    if parsed is None:
        problems.append(f"{text} doit être au format JJ/MM/AAAA.")
        return None
    return parsed.isoformat()


@bp.post("/patients/<uuid:patient_id>/favori")
@login_required
def favourite(patient_id: Any) -> Any:
    """PAT-18: star or unstar the file, or file it in one of my groups."""
    pid = str(patient_id)
    form = flask.request.form
    if form.get("action") == "retirer":
        _done(gateway().delete(f"/patients/{pid}/favourite"), "Le dossier n'est plus dans vos favoris.")
    else:
        group = form.get("groupe", "").strip()
        _done(
            gateway().put(f"/patients/{pid}/favourite", json={"group_name": group} if group else {}),
            f"Le dossier est dans vos favoris ★, groupe « {group} »."
            if group
            else "Le dossier est dans vos favoris ★.",
        )
    return flask.redirect(local_path(form.get("retour"), f"/patients/{pid}"))


@bp.get("/favoris")
@login_required
def favourites() -> Any:
    """PAT-18: my favourite groups, and those colleagues share with the structure I act for."""
    response = gateway().get("/favourites")
    groups = response.body.get("groups", []) if response.ok else []
    shared_with = {g["shared_with_structure"] for g in groups if g.get("shared_with_structure")}
    return render(
        "favourites.html",
        groups=groups,
        owners={g["owner_id"]: _person_name(g["owner_id"]) for g in groups if not g["mine"]},
        structures=me().get("structures", []),
        names=structure_names(shared_with),
        failed=None if response.ok else api_error(response),
    )


@bp.post("/favoris/groupe")
@login_required
def favourite_group() -> Any:
    """Rename one of my groups and choose the structure it is shared with (or none)."""
    form = flask.request.form
    group = form.get("groupe", "")
    body = {"name": form.get("nom", "").strip(), "shared_with_structure": form.get("partage") or None}
    _done(
        gateway().patch(f"/favourite-groups/{quote(group, safe='')}", json=body),
        "Le groupe de favoris est enregistré.",
    )
    return flask.redirect("/favoris")


@bp.post("/patients/<uuid:patient_id>/memos")
@login_required
def add_memo(patient_id: Any) -> Any:
    """PAT-13: a post-it, public (whole circle) or shared with chosen members."""
    pid = str(patient_id)
    body, problems = _memo_body(flask.request.form)
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return _back(pid, "p-memos")
    _done(gateway().post(f"/patients/{pid}/memos", json=body), f"Mémo « {body['title']} » ajouté.")
    return _back(pid, "p-memos")


def _memo_body(form: Any) -> tuple[dict[str, Any], list[str]]:
    problems = []
    title = form.get("title", "").strip()[:200]
    content = form.get("content", "").strip()[:5000]
    if not title:
        problems.append("Le titre du mémo est obligatoire.")
    if not content:
        problems.append("Le contenu du mémo est obligatoire.")
    sharing = form.get("sharing") if form.get("sharing") in labels.SHARING else "public"
    body: dict[str, Any] = {
        "title": title,
        "content": content,
        "importance": form.get("importance") if form.get("importance") in labels.IMPORTANCE else "normal",
        "sharing": sharing,
    }
    if sharing == "shared":
        shared = [v for v in form.getlist("shared_with") if v.partition(":")[0] in ("person", "structure")]
        if not shared:
            problems.append("Choisissez les membres avec qui partager le mémo.")
        body["shared_with"] = shared
    return body, problems


@bp.post("/patients/<uuid:patient_id>/memos/<uuid:memo_id>/<action>")
@login_required
def memo_action(patient_id: Any, memo_id: Any, action: str) -> Any:
    pid = str(patient_id)
    if action == "supprimer":
        _done(gateway().delete(f"/patients/{pid}/memos/{memo_id}"), "Le mémo est supprimé.")
    elif action == "modifier":
        body, problems = _memo_body(flask.request.form)
        if problems:
            flask.flash(" ".join(problems), "erreur")
            return _back(pid, "p-memos")
        response = gateway().request("PATCH", f"/patients/{pid}/memos/{memo_id}", json=body)
        _done(response, "Le mémo est modifié.")
    else:
        flask.abort(404)
    return _back(pid, "p-memos")


@bp.post("/patients/<uuid:patient_id>/liens")
@login_required
def add_link(patient_id: Any) -> Any:
    """PAT-8: link two files (shown on both)."""
    pid = str(patient_id)
    form = flask.request.form
    body: dict[str, Any] = {
        "linked_patient_id": form.get("linked_patient_id", ""),
        "relation": form.get("relation", ""),
    }
    if form.get("comment", "").strip():
        body["comment"] = form["comment"].strip()[:1000]
    if not body["linked_patient_id"] or body["relation"] not in labels.RELATIONS:
        flask.flash("Choisissez le patient et le type de relation.", "erreur")
        return _back(pid, "p-lies")
    response = gateway().post(f"/patients/{pid}/links", json=body)
    if response.status == 409:
        flask.flash("Ces deux dossiers sont déjà liés.", "erreur")
    else:
        relation = labels.RELATIONS[body["relation"]]
        _done(response, f"Relation créée : {relation}.")
    return _back(pid, "p-lies")


@bp.post("/patients/<uuid:patient_id>/liens/<uuid:link_id>/supprimer")
@login_required
def remove_link(patient_id: Any, link_id: Any) -> Any:
    pid = str(patient_id)
    _done(gateway().delete(f"/patients/{pid}/links/{link_id}"), "La relation est supprimée.")
    return _back(pid, "p-lies")


@bp.post("/patients/<uuid:patient_id>/statut")
@login_required
def set_status(patient_id: Any) -> Any:
    """PAT-9: a new status of the file in one structure ("Sorti" needs its reason)."""
    pid = str(patient_id)
    form = flask.request.form
    problems: list[str] = []
    status = form.get("status", "")
    body: dict[str, Any] = {"status": status}
    if status not in labels.FILE_STATUS:
        problems.append("Choisissez le type de statut.")
    if form.get("structure_id"):
        body["structure_id"] = form["structure_id"]
    started = _form_date("started_on", "La date de début", problems)
    if started:
        body["started_on"] = started
    reason = form.get("exit_reason", "")
    if status == "sorti":
        if reason not in labels.EXIT_REASONS:
            problems.append("Le motif de sortie est obligatoire pour le statut « Sorti ».")
        body["exit_reason"] = reason
    if form.get("expertise") in labels.EXPERTISES:
        body["expertise"] = form["expertise"]
    if form.get("comment", "").strip():
        body["comment"] = form["comment"].strip()[:1000]
    if status == "sorti" and reason == "autre" and "comment" not in body:
        problems.append("Précisez le motif de sortie en commentaire.")
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return _back(pid, "p-statut")
    response = gateway().post(f"/patients/{pid}/statuses", json=body)
    _done(response, f"Statut enregistré : {labels.label(labels.FILE_STATUS, status)}.")
    return _back(pid, "p-statut")


@bp.post("/patients/<uuid:patient_id>/cloture")
@login_required
def close_file(patient_id: Any) -> Any:
    """PAT-12: the checklist's last step."""
    pid = str(patient_id)
    form = flask.request.form
    reason = form.get("exit_reason", "")
    if reason not in labels.EXIT_REASONS:
        flask.flash("Choisissez le motif de sortie.", "erreur")
        return _back(pid, "p-cloture")
    body: dict[str, Any] = {"exit_reason": reason}
    if form.get("structure_id"):
        body["structure_id"] = form["structure_id"]
    if form.get("comment", "").strip():
        body["comment"] = form["comment"].strip()[:1000]
    response = gateway().post(f"/patients/{pid}/closing", json=body)
    if response.status == 409:
        flask.flash(
            "Le dossier ne peut être clôturé : des tâches ou des formulaires sont encore ouverts.", "erreur"
        )
    else:
        _done(response, "Le dossier est clôturé (statut « Sorti »).")
    return _back(pid, "p-cloture")


@bp.post("/patients/<uuid:patient_id>/hospitalisations")
@login_required
def add_stay(patient_id: Any) -> Any:
    """PAT-10: a past or future stay, planned or not."""
    pid = str(patient_id)
    form = flask.request.form
    problems: list[str] = []
    establishment = form.get("establishment", "").strip()[:200]
    if not establishment:
        problems.append("L'établissement est obligatoire.")
    entry = _form_date("entry_date", "La date d'entrée", problems, required=True)
    exit_ = _form_date("exit_date", "La date de sortie", problems)
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return _back(pid, "p-hospit")
    body = {"establishment": establishment, "planned": form.get("planned") == "on", "entry_date": entry}
    if exit_:
        body["exit_date"] = exit_
    _done(gateway().post(f"/patients/{pid}/hospitalisations", json=body), "Hospitalisation enregistrée.")
    return _back(pid, "p-hospit")


@bp.post("/patients/<uuid:patient_id>/deces")
@login_required
def declare_death(patient_id: Any) -> Any:
    """PAT-11: declared once, after an explicit confirmation."""
    pid = str(patient_id)
    form = flask.request.form
    problems: list[str] = []
    body: dict[str, Any] = {}
    if form.get("date_unknown") == "on":
        body["date_unknown"] = True
    else:
        died = _form_date("death_date", "La date du décès", problems, required=True)
        if died:
            body["death_date"] = died
    for name in ("country", "city", "place"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()[: 200 if name == "place" else 100]
    if form.get("confirm") != "on":
        problems.append("Cochez la case de confirmation pour déclarer le décès.")
    if problems:
        flask.flash(" ".join(problems), "erreur")
        return _back(pid, "p-cloture")
    response = gateway().post(f"/patients/{pid}/death", json=body)
    if response.status == 409:
        flask.flash("Le décès est déjà déclaré.", "erreur")
    else:
        _done(response, "Le décès est déclaré ; les membres du cercle de soins sont informés.")
    return _back(pid, "p-identite")


@bp.post("/patients/<uuid:patient_id>/fil/notes")
@login_required
def add_feed_note(patient_id: Any) -> Any:
    """PAT-14: a custom note in the news feed."""
    pid = str(patient_id)
    form = flask.request.form
    text = form.get("text", "").strip()[:5000]
    if not text:
        flask.flash("Écrivez le texte de la note.", "erreur")
        return _back(pid, "p-fil")
    importance = form.get("importance") if form.get("importance") in labels.IMPORTANCE else "normal"
    response = gateway().post(f"/patients/{pid}/feed/notes", json={"text": text, "importance": importance})
    _done(response, "Note ajoutée au fil d'actualité.")
    return _back(pid, "p-fil")


@bp.post("/patients/<uuid:patient_id>/parcours")
@login_required
def update_profile(patient_id: Any) -> Any:
    """PAT-17: commune of residence (gives the zones), postal code, thematics, parcours."""
    pid = str(patient_id)
    form = flask.request.form
    commune = form.get("commune", "").strip().upper()
    if commune and not re.fullmatch(r"\d{5}|2[AB]\d{3}", commune):
        flask.flash("La commune de résidence est son code INSEE (5 caractères).", "erreur")
        return _back(pid, "p-parcours")
    thematics = [t for t in form.getlist("thematics") if re.fullmatch(r"[a-z0-9_]{1,40}", t)]
    body = {
        "commune": commune or None,
        "postal_code": form.get("postal_code", "").strip()[:10] or None,
        "thematics": thematics,
        "parcours": form.get("parcours", "").strip()[:40] or None,
    }
    _done(gateway().put(f"/patients/{pid}/profile", json=body), "Le parcours est enregistré.")
    return _back(pid, "p-parcours")


@bp.get("/patients/<uuid:patient_id>/consentement.pdf")
@login_required
def consent_form(patient_id: Any) -> Any:
    """The consent form to print and sign, fetched through the session's token."""
    response = gateway().raw("GET", f"/patients/{patient_id}/consent-form")
    if response.status_code != 200:
        flask.flash(f"Le formulaire n'est pas disponible (erreur {response.status_code}).", "erreur")
        return flask.redirect(f"/patients/{patient_id}")
    download = flask.Response(response.content, mimetype="application/pdf")
    download.headers["Content-Disposition"] = 'attachment; filename="consentement.pdf"'
    return download


def _refused(pid: str, response: ApiResponse) -> Any:
    if response.status == 403:
        return render("refused.html", 403, target=pid, glass_available=_break_glass_available())
    return render("error.html", response.status, title="Dossier indisponible", message=api_error(response))


# -- break the glass (Fiche 15, CER-8) -------------------------------------------------------------


def _remembered(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    _remember_found(candidates)
    return candidates


def _break_glass_available() -> bool:
    return has_operation("POST", "/break-glass")


@bp.route("/patients/<uuid:patient_id>/bris-de-glace", methods=["GET", "POST"])
@login_required
def break_glass(patient_id: Any) -> Any:
    """Reason first, then a second explicit confirmation, then two hours of traced access."""
    pid = str(patient_id)
    if not _break_glass_available():
        return render("refused.html", 403, target=pid, glass_available=False)
    if pid not in (flask.session.get("vigilance") or []):
        return render("refused.html", 403, target=pid, glass_available=True, not_found_by_vigilance=True)
    form = flask.request.form
    errors: dict[str, str] = {}
    if flask.request.method == "GET":
        return render("break_glass.html", target=pid, form={}, errors={}, step="motif")
    reason = form.get("reason", "")
    text = form.get("reason_text", "").strip()
    if reason not in labels.BREAK_GLASS_REASONS:
        errors["reason"] = "Choisissez le motif de l'accès exceptionnel."
    if not text:
        errors["reason_text"] = "Expliquez en quelques mots pourquoi vous devez accéder à ce dossier."
    elif len(text) > 500:
        errors["reason_text"] = "L'explication ne peut dépasser 500 caractères."
    if errors:
        return render("break_glass.html", 422, target=pid, form=form, errors=errors, step="motif")
    if form.get("etape") != "confirmation":
        return render("break_glass.html", target=pid, form=form, errors={}, step="confirmation")
    body = {
        "patient_id": pid,
        "reason_code": reason,
        "reason_text": text,
        "found_via": "identity_vigilance",
        "confirmed": True,
    }
    response = gateway().post("/break-glass", json=body)
    if response.status == 409:
        # Already habilitated or already a running access: the file opens.
        return flask.redirect(f"/patients/{pid}")
    if not response.ok:
        errors = {"general": api_error(response)}
        return render("break_glass.html", response.status, target=pid, form=form, errors=errors, step="motif")
    flask.flash(
        "Accès exceptionnel accordé pour 2 heures. Il est tracé et le cercle de soins est informé.", "alerte"
    )
    return flask.redirect(f"/patients/{pid}")


def can_review_break_glass() -> bool:
    """CER-8 review: a super user (token claim `roles`, shown by /me) acting for a structure."""
    return bool(flask.session.get("act_as")) and "super_user" in (me().get("roles") or [])


def _person_names(ids: set[str]) -> dict[str, str]:
    """Who broke the glass, by name (the directory); the id stays when the directory has none."""
    names: dict[str, str] = {}
    if not has_operation("GET", "/directory/persons/{person_id}"):
        return names
    for person_id in sorted(ids):
        response = gateway().get(f"/directory/persons/{person_id}")
        if response.ok and isinstance(response.body, dict) and response.body.get("display_name"):
            names[person_id] = str(response.body["display_name"])
    return names


@bp.get("/bris-de-glace/revue")
@login_required
def break_glass_review() -> Any:
    title = "Revue des accès exceptionnels"
    if not has_operation("GET", "/break-glass/review"):
        return render(
            "error.html", 404, title=title, message="La revue des accès exceptionnels n'est pas disponible."
        )
    if not can_review_break_glass():
        return render(
            "error.html",
            403,
            title=title,
            message=(
                "Cette revue est réservée aux super-utilisateurs d'une structure : choisissez d'agir au nom"
                " de votre structure dans votre profil."
                if "super_user" in (me().get("roles") or [])
                else "Cette revue est réservée aux super-utilisateurs d'une structure."
            ),
        )
    response = gateway().get("/break-glass/review")
    if not response.ok or not isinstance(response.body, dict):
        return render(
            "error.html",
            response.status if not response.ok else 502,
            title=title,
            message=api_error(response),
        )
    grants = list(response.body.get("grants", []))
    return render(
        "break_glass_review.html",
        grants=grants,
        names=_person_names({str(g["person_id"]) for g in grants if g.get("person_id")}),
        reasons=labels.BREAK_GLASS_REASONS,
    )


@bp.post("/patients/<uuid:patient_id>/bris-de-glace/fin")
@login_required
def end_break_glass(patient_id: Any) -> Any:
    grant = _active_glass(str(patient_id))
    if grant:
        response = gateway().delete(f"/break-glass/{grant['id']}")
        flask.flash(
            "L'accès exceptionnel est terminé." if response.ok else api_error(response),
            "succes" if response.ok else "erreur",
        )
    return flask.redirect("/patients")


# -- care circle (Fiches 16-19) ----------------------------------------------------------------------


@bp.get("/patients/<uuid:patient_id>/cercle")
@login_required
def circle(patient_id: Any) -> Any:
    pid = str(patient_id)
    patient, response = _patient_or_refusal(pid)
    if patient is None:
        return _refused(pid, response)
    circle_response = gateway().get(f"/patients/{pid}/circle")
    q = (flask.request.args.get("q") or "").strip()
    kind = flask.request.args.get("type") or "person"
    results: list[dict[str, Any]] | None = None
    if q:
        path = "/directory/structures" if kind == "structure" else "/directory/persons"
        found = gateway().get(path, q=q, limit=20)
        results = list(found.body.get("items", [])) if found.ok else []
    return render(
        "circle.html",
        patient=patient,
        patient_id=pid,
        members=circle_response.body.get("members", []) if circle_response.ok else [],
        professions=profession_labels(),
        manual=has_operation("POST", "/patients/{patient_id}/circle/manual-members"),
        invitations=has_operation("POST", "/patients/{patient_id}/circle/invitations"),
        editable=has_operation("PATCH", "/patients/{patient_id}/circle/members/{member_id}"),
        error=None if circle_response.ok else api_error(circle_response),
        q=q,
        kind=kind,
        results=results,
    )


@bp.post("/patients/<uuid:patient_id>/cercle/ajouter")
@login_required
def add_member(patient_id: Any) -> Any:
    pid = str(patient_id)
    form = flask.request.form
    kind = form.get("holder_kind", "person")
    roles = [r for r in form.getlist("roles") if r in labels.ROLES]
    if kind == "structure":
        roles = [r for r in roles if r not in labels.PERSON_ONLY_ROLES]
    body = {
        "holder_kind": kind,
        "holder_id": form.get("holder_id", ""),
        "roles": roles,
        "habilitated": form.get("habilitated") == "on",
    }
    response = gateway().post(f"/patients/{pid}/circle/members", json=body)
    if response.ok:
        # CER-4: the confirmation names the patient.
        patient, _ = _patient_or_refusal(pid)
        whose = f" de {labels.patient_name(patient)}" if patient else ""
        flask.flash(
            f"Ajouté au cercle de soins{whose} : {form.get('display_name') or 'le membre'}.", "succes"
        )
    else:
        flask.flash(api_error(response), "erreur")
    return flask.redirect(f"/patients/{pid}/cercle")


MANUAL_TEXT_FIELDS = (
    "last_name",
    "first_name",
    "profession",
    "city",
    "phone",
    "email",
    "establishment",
    "function",
)


@bp.post("/patients/<uuid:patient_id>/cercle/ajout-manuel")
@login_required
def add_manual_member(patient_id: Any) -> Any:
    """CER-5: someone not in the directory, or a family carer; never access to the file."""
    pid = str(patient_id)
    form = flask.request.form
    errors: dict[str, str] = {}
    professional = form.get("professional")
    if professional not in ("oui", "non"):
        errors["professional"] = "Indiquez s'il s'agit d'un professionnel."
    body: dict[str, Any] = {"professional": professional == "oui"}
    for name in MANUAL_TEXT_FIELDS:
        if form.get(name, "").strip():
            body[name] = form[name].strip()[:200]
    roles = [r for r in form.getlist("roles") if r in labels.ROLES]
    if roles:
        body["roles"] = roles
    if body["professional"]:
        body["should_access"] = form.get("should_access") == "oui"
        body["informed"] = form.get("informed") == "oui"
        if body["should_access"] or body["informed"]:
            # CER-5: the directory service centre is asked to register this professional.
            for name, text in (
                ("last_name", "Le nom"),
                ("first_name", "Le prénom"),
                ("city", "La ville"),
                ("profession", "La profession"),
            ):
                if name not in body:
                    errors[name] = (
                        f"{text} est obligatoire pour un professionnel qui doit accéder au dossier ou être informé."
                    )
    if "last_name" not in body and "last_name" not in errors:
        errors["last_name"] = "Le nom est obligatoire."
    if not errors:
        response = gateway().post(f"/patients/{pid}/circle/manual-members", json=body)
        if response.ok:
            flask.flash(
                f"Ajouté au cercle de soins : {body.get('first_name', '')} {body['last_name']}.".replace(
                    "  ", " "
                ),
                "succes",
            )
            return flask.redirect(f"/patients/{pid}/cercle")
        errors["general"] = api_error(response)
    flask.flash("L'ajout manuel n'est pas enregistré : " + " ".join(errors.values()), "erreur")
    return flask.redirect(f"/patients/{pid}/cercle?manuel=1")


@bp.post("/patients/<uuid:patient_id>/cercle/inviter")
@login_required
def invite_colleague(patient_id: Any) -> Any:
    """CER-6: an e-mail invitation to register."""
    pid = str(patient_id)
    email = flask.request.form.get("email", "").strip()
    if "@" not in email or len(email) > 254:
        flask.flash("Saisissez l'adresse électronique professionnelle de votre collègue.", "erreur")
        return flask.redirect(f"/patients/{pid}/cercle")
    roles = [r for r in flask.request.form.getlist("roles") if r in labels.ROLES]
    response = gateway().post(f"/patients/{pid}/circle/invitations", json={"email": email, "roles": roles})
    flask.flash(
        f"Invitation envoyée à {email}." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect(f"/patients/{pid}/cercle")


@bp.post("/patients/<uuid:patient_id>/cercle/<member_id>/roles")
@login_required
def change_roles(patient_id: Any, member_id: str) -> Any:
    pid = str(patient_id)
    roles = [r for r in flask.request.form.getlist("roles") if r in labels.ROLES]
    response = gateway().request(
        "PATCH", f"/patients/{pid}/circle/members/{member_id}", json={"roles": roles}
    )
    flask.flash(
        "Les rôles sont enregistrés." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect(f"/patients/{pid}/cercle")


@bp.post("/patients/<uuid:patient_id>/cercle/<member_id>/<action>")
@login_required
def member_action(patient_id: Any, member_id: str, action: str) -> Any:
    pid = str(patient_id)
    path = f"/patients/{pid}/circle/members/{member_id}"
    if action == "habiliter":
        response, done = gateway().post(f"{path}/habilitation"), "L'habilitation est accordée."
    elif action == "retirer-habilitation":
        response, done = gateway().delete(f"{path}/habilitation"), "L'habilitation est retirée."
    elif action == "supprimer":
        response, done = gateway().delete(path), "Le membre est retiré du cercle de soins."
    else:
        flask.abort(404)
    flask.flash(done if response.ok else api_error(response), "succes" if response.ok else "erreur")
    return flask.redirect(f"/patients/{pid}/cercle")


# -- tasks (Fiches 23-25) --------------------------------------------------------------------------


@bp.route("/patients/<uuid:patient_id>/taches/nouvelle", methods=["GET", "POST"])
@login_required
def new_task(patient_id: Any) -> Any:
    pid = str(patient_id)
    patient, response = _patient_or_refusal(pid)
    if patient is None:
        return _refused(pid, response)
    circle_response = gateway().get(f"/patients/{pid}/circle")
    members = (
        [m for m in circle_response.body.get("members", []) if m.get("habilitated")]
        if circle_response.ok
        else []
    )
    links_response = gateway().get(f"/patients/{pid}/links")
    links = links_response.body.get("items", []) if links_response.ok else []
    form = flask.request.form
    errors: dict[str, str] = {}
    if flask.request.method == "POST":
        task_type = form.get("type", "")
        body: dict[str, Any] = {"type": task_type, "level": form.get("level") or "information"}
        if form.get("status") in ("a_traiter", "en_cours", "traitee"):
            body["status"] = form["status"]
        if task_type not in labels.TASK_TYPES:
            errors["type"] = "Choisissez le type de tâche."
        label_text = form.get("label", "").strip()
        if task_type == "autre" and not label_text:
            errors["label"] = "Le libellé est obligatoire pour une tâche « Autre »."
        if label_text:
            body["label"] = label_text[:200]
        if form.get("comment", "").strip():
            body["comment"] = form["comment"].strip()
        if form.get("due_date", "").strip():
            due = labels.parse_date_fr(form["due_date"])
            if due is None:
                errors["due_date"] = "L'échéance doit être au format JJ/MM/AAAA."
            else:
                body["due_date"] = due.isoformat()
        recipients = []
        for value in form.getlist("recipients"):
            kind, _, holder = value.partition(":")
            if kind in ("person", "structure") and holder:
                recipients.append({"kind": kind, "id": holder})
        body["recipients"] = recipients
        # PAT-8: a task may also concern linked files (only those).
        linked_ids = {link["patient_id"] for link in links}
        others = [v for v in form.getlist("other_patient_ids") if v in linked_ids]
        if others:
            body["other_patient_ids"] = others
        if not errors:
            created = gateway().post(f"/patients/{pid}/tasks", json=body)
            if created.ok:
                flask.flash("La tâche est créée.", "succes")
                return flask.redirect(f"/patients/{pid}")
            errors["general"] = api_error(created)
    return render(
        "task_new.html",
        200 if not errors else 422,
        patient=patient,
        patient_id=pid,
        members=members,
        links=links,
        form=form,
        errors=errors,
    )


def _patient_names(patient_ids: set[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    for pid in list(patient_ids)[:50]:
        response = gateway().get(f"/patients/{pid}")
        if response.ok:
            names[pid] = labels.patient_name(response.body)
    return names


TASK_CONTEXTS = {
    "all": "Toutes mes tâches",
    "mine": "Confiées à moi",
    "structure": "Confiées à ma structure",
    "created": "Créées par moi",
}
TASK_SORTS = {
    "due_date": "Échéance",
    "level": "Niveau",
    "status": "Statut",
    "type": "Type",
    "created_at": "Création",
}


def _task_filters() -> dict[str, Any]:
    args = flask.request.args
    filters: dict[str, Any] = {
        "context": args.get("contexte") if args.get("contexte") in TASK_CONTEXTS else None,
        "status": [v for v in args.getlist("statut") if v in labels.TASK_STATUS] or None,
        "level": [v for v in args.getlist("niveau") if v in labels.TASK_LEVELS] or None,
        "type": [v for v in args.getlist("type") if v in labels.TASK_TYPES] or None,
        "sort": args.get("tri") if args.get("tri") in TASK_SORTS else None,
        "order": "desc" if args.get("ordre") == "desc" else None,
    }
    for name, key in (("due_from", "du"), ("due_to", "au")):
        parsed = labels.parse_date_fr(args.get(key, "")) if args.get(key) else None
        filters[name] = parsed.isoformat() if parsed else None
    declared = parameters("GET", "/tasks")
    return {k: v for k, v in filters.items() if k in declared}


@bp.get("/taches")
@login_required
def tasks() -> Any:
    size = _int_arg("taille", 20, PAGE_SIZES)
    page = _int_arg("page", 1)
    filters = _task_filters()
    response = gateway().get("/tasks", **filters, limit=size, offset=(page - 1) * size)
    items = list(response.body.get("items", [])) if response.ok else []
    query = flask.request.query_string.decode("latin-1")
    return render(
        "tasks.html",
        items=items,
        names=_patient_names({t["patient_id"] for t in items}),
        args=flask.request.args,
        contexts=TASK_CONTEXTS,
        sorts=TASK_SORTS,
        page=page,
        size=size,
        sizes=PAGE_SIZES,
        has_next=len(items) == size,
        query="&".join(p for p in query.split("&") if p and not p.startswith("page=")),
        export=has_operation("GET", "/task-export"),
        error=None if response.ok else api_error(response),
    )


@bp.get("/taches/export.<fmt>")
@login_required
def tasks_export(fmt: str) -> Any:
    """The dashboard's download: the file comes from the gateway, through the session's token."""
    if fmt not in ("csv", "xlsx") or not has_operation("GET", "/task-export"):
        flask.abort(404)
    response = gateway().raw("GET", "/task-export", params={**_task_filters(), "format": fmt})
    if response.status_code != 200:
        flask.flash(f"Le téléchargement a échoué (erreur {response.status_code}).", "erreur")
        return flask.redirect("/taches")
    download = flask.Response(response.content, mimetype=response.headers.get("content-type"))
    download.headers["Content-Disposition"] = response.headers.get(
        "content-disposition", f'attachment; filename="taches.{fmt}"'
    )
    return download


@bp.get("/taches/nouvelle")
@login_required
def new_task_anywhere() -> Any:
    """From the dashboard: choose the patient, then the task form of that file."""
    chosen = flask.request.args.get("patient_id")
    if chosen:
        import uuid

        try:
            return flask.redirect(f"/patients/{uuid.UUID(chosen)}/taches/nouvelle")
        except ValueError:
            pass
    response = gateway().get("/patients", limit=200)
    items = sorted(response.body.get("items", []) if response.ok else [], key=SORTS["nom"])
    return render("task_choose.html", items=items)


@bp.get("/taches/<uuid:task_id>")
@login_required
def task(task_id: Any) -> Any:
    response = gateway().get(f"/tasks/{task_id}")
    if not response.ok:
        return render("error.html", response.status, title="Tâche indisponible", message=api_error(response))
    item = response.body
    return render(
        "task.html",
        task=item,
        names=_patient_names({item["patient_id"]}),
        patient_id=item["patient_id"],
        editable=has_operation("PATCH", "/tasks/{task_id}") and not item.get("read_only"),
    )


@bp.post("/taches/<uuid:task_id>/modifier")
@login_required
def edit_task(task_id: Any) -> Any:
    """Edit the fields (not the status); a done task is read-only (the API answers 409)."""
    form = flask.request.form
    body: dict[str, Any] = {}
    if form.get("label", "").strip():
        body["label"] = form["label"].strip()[:200]
    if form.get("level") in labels.TASK_LEVELS:
        body["level"] = form["level"]
    body["comment"] = form.get("comment", "").strip()[:4000] or None
    due_text = form.get("due_date", "").strip()
    if due_text:
        due = labels.parse_date_fr(due_text)
        if due is None:
            flask.flash("L'échéance doit être au format JJ/MM/AAAA.", "erreur")
            return flask.redirect(f"/taches/{task_id}")
        body["due_date"] = due.isoformat()
    else:
        body["due_date"] = None
    response = gateway().request("PATCH", f"/tasks/{task_id}", json=body)
    if response.status == 409:
        message = "Une tâche traitée est en lecture seule : rouvrez-la pour la modifier."
    else:
        message = "La tâche est enregistrée." if response.ok else api_error(response)
    flask.flash(message, "succes" if response.ok else "erreur")
    return flask.redirect(f"/taches/{task_id}")


@bp.post("/taches/<uuid:task_id>/statut")
@login_required
def task_status(task_id: Any) -> Any:
    wanted = flask.request.form.get("status", "")
    response = gateway().post(f"/tasks/{task_id}/status", json={"status": wanted})
    htmx = flask.request.headers.get("HX-Request") == "true"
    if htmx:
        current = gateway().get(f"/tasks/{task_id}")
        if not current.ok:
            return flask.render_template("error_inline.html", message=api_error(current)), 200
        return flask.render_template(
            "_task_status.html",
            task=current.body,
            message=None if response.ok else api_error(response),
            swapped=True,
        )
    flask.flash(
        f"Statut : {labels.label(labels.TASK_STATUS, wanted)}." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect(local_path(flask.request.form.get("retour"), f"/taches/{task_id}"))


# -- notifications (NOT-1) -------------------------------------------------------------------------


@bp.get("/notifications")
@login_required
def notifications() -> Any:
    unread_only = flask.request.args.get("non-lues") == "1"
    response = gateway().get("/notifications", unread_only="true" if unread_only else None, limit=50)
    items = response.body.get("items", []) if response.ok and isinstance(response.body, dict) else []
    return render(
        "notifications.html",
        items=items,
        unread_only=unread_only,
        error=None if response.ok else api_error(response),
    )


@bp.get("/notifications/cloche")
@login_required
def bell() -> Any:
    return flask.render_template("_bell.html", unread=_unread_count())


@bp.post("/notifications/<notification_id>/lue")
@login_required
def mark_read(notification_id: str) -> Any:
    response = gateway().post(f"/notifications/{notification_id}/read")
    if not response.ok:
        flask.flash(api_error(response), "erreur")
    return flask.redirect(local_path(flask.request.form.get("lien"), "/notifications"))


@bp.post("/notifications/tout-lu")
@login_required
def mark_all_read() -> Any:
    response = gateway().post("/notifications/read-all")
    flask.flash(
        "Toutes les notifications sont lues." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect("/notifications")


PREFERENCE_GROUPS = {"tasks": "Tâches", "file": "Dossier", "agenda": "Agenda", "global": "Général"}


EMAIL_MODES = {"immediate": "Un courriel par notification", "daily_digest": "Un résumé quotidien (7 h)"}
HH_MM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def _preferences_page(status: int = 200, form: Any = None, errors: dict[str, str] | None = None) -> Any:
    if not has_operation("GET", "/notification-preferences"):
        return render("preferences.html", status, preferences=None)
    response = gateway().get("/notification-preferences")
    return render(
        "preferences.html",
        status,
        preferences=response.body if response.ok else None,
        error=None if response.ok else api_error(response),
        email_modes=EMAIL_MODES,
        delivery_available=has_operation("PUT", "/notification-preferences/delivery"),
        form=form,
        errors=errors or {},
    )


@bp.get("/preferences")
@login_required
def preferences() -> Any:
    return _preferences_page()


def delivery_body(form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The delivery form -> the API's body, or French messages naming the wrong fields."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    mode = form.get("email_mode", "")
    if mode not in EMAIL_MODES:
        errors["email_mode"] = "Choisissez comment recevoir les courriels."
    else:
        body["email_mode"] = mode
    if form.get("quiet") == "on":
        start = (form.get("quiet_start") or "").strip()
        end = (form.get("quiet_end") or "").strip()
        for name, value, text in (("quiet_start", start, "Début"), ("quiet_end", end, "Fin")):
            if not HH_MM.match(value):
                errors[name] = (
                    f"« {text} des heures de silence » : l'heure doit être au format HH:MM (par exemple 20:00)."
                )
        if start and start == end and not errors:
            errors["quiet_end"] = "La fin des heures de silence doit différer de leur début."
        body["quiet_hours"] = {"start": start, "end": end}
    else:
        body["quiet_hours"] = None
    return body, errors


@bp.post("/preferences/envoi")
@login_required
def preference_delivery() -> Any:
    form = flask.request.form
    body, errors = delivery_body(form)
    if errors:
        return _preferences_page(422, form=form, errors=errors)
    response = gateway().put("/notification-preferences/delivery", json=body)
    if not response.ok:
        field = str(response.problem.get("field") or "")
        name = {"quiet_hours.start": "quiet_start", "quiet_hours.end": "quiet_end"}.get(field, "general")
        return _preferences_page(response.status, form=form, errors={name: api_error(response)})
    flask.flash("Mode d'envoi des courriels enregistré.", "succes")
    return flask.redirect("/preferences#envoi")


@bp.post("/preferences/type/<kind>")
@login_required
def preference_type(kind: str) -> Any:
    form = flask.request.form
    body = {"email": form.get("email") == "on", "in_app": form.get("in_app") == "on"}
    response = gateway().put(f"/notification-preferences/types/{kind}", json=body)
    flask.flash(
        "Préférence enregistrée." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect(f"/preferences#groupe-{form.get('group', '')}")


@bp.post("/preferences/reinitialiser")
@login_required
def preference_reset() -> Any:
    group = flask.request.form.get("group")
    body = {"group": group} if group in PREFERENCE_GROUPS else {}
    response = gateway().post("/notification-preferences/reset", json=body)
    flask.flash(
        "Préférences par défaut rétablies." if response.ok else api_error(response),
        "succes" if response.ok else "erreur",
    )
    return flask.redirect("/preferences")


# -- terms of use (ID-2) ---------------------------------------------------------------------------


@bp.route("/conditions", methods=["GET", "POST"])
def terms() -> Any:
    if not flask.session.get("tokens"):
        raise LoginRequired()
    profile = load_me()
    target = local_path(flask.request.values.get("next"), "/patients")
    if flask.request.method == "POST":
        if flask.request.form.get("accept") != "on":
            return render("terms.html", 422, profile=profile, next=target, error=True)
        response = gateway().post("/me/terms", json={"version": profile.get("terms_version")})
        if not response.ok:
            flask.flash(api_error(response), "erreur")
            return flask.redirect(f"/conditions?next={target}")
        load_me()
        return flask.redirect(target)
    return render("terms.html", profile=profile, next=target, error=False)

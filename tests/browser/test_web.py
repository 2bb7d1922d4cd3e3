"""The booklet's story in a real browser, through the gateway's address, as three people.

The coordinator logs in, creates a patient (meeting the French error messages first), meets
the duplicate when creating it again, adds the nurse from the directory and gives her a task;
the doctor, not in the circle, finds the file by identity vigilance and breaks the glass (red
banner with a countdown on every page of the file); the nurse finds the task in her dashboard
and the bell, moves it on in one click, and acts for her structure. Each main screen is
captured at desktop and phone sizes and checked with axe-core.
"""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, PASSWORD, Screens, WebSuite

PATIENT = {
    "birth_name": "Lefèvre",
    "first_name": "Jeanne",
    "birth_date": "17/05/1938",
    "birth_place": "91228",
}


def log_in(browser: Any, suite: WebSuite, username: str) -> Any:
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True, locale="fr-FR")  # axe is injected
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{suite.base_url}/")
    page.get_by_role("link", name="Se connecter").click()
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.wait_for_url(re.compile(r"/(patients|conditions)"))
    if "/conditions" in page.url:
        page.get_by_label("J'ai lu et j'accepte").check()
        page.get_by_role("button", name="Continuer").click()
        page.wait_for_url(re.compile(r"/patients"))
    return page


def fill_traits(page: Any, suite: WebSuite, birth_date: str = PATIENT["birth_date"]) -> None:
    page.goto(f"{suite.base_url}/patients/nouveau")
    page.fill("#birth_name", PATIENT["birth_name"])
    page.fill("#first_name", PATIENT["first_name"])
    page.fill("#birth_date", birth_date)
    page.check("#sex-F")
    page.fill("#birth_place", PATIENT["birth_place"])
    page.get_by_role("button", name=re.compile("Rechercher les dossiers proches")).click()


def eventually_on_reload(page: Any, check: Any, timeout: float = 15.0) -> None:
    """Events travel asynchronously: reload until the page shows what is expected."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.url} still does not show it after {timeout}s")
        time.sleep(0.3)
        page.reload()


def test_the_story_in_a_browser(browser: Any, web_suite: WebSuite, screens: Screens) -> None:
    suite = web_suite
    # -- the login page lists the demo accounts (embedded mode) ------------------------------------
    anonymous = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = anonymous.new_page()
    page.goto(f"{suite.base_url}/patients")
    expect(page).to_have_url(re.compile(r"/auth/login"))
    expect(page.get_by_role("table", name="Comptes de démonstration")).to_contain_text("coordinateur")
    cookie_page = page
    screens.check(page, "01-connexion")
    anonymous.close()
    del cookie_page

    # -- the coordinator logs in; the session cookie is http-only and same-site -------------------
    coordinator = log_in(browser, suite, "coordinateur")
    cookies = {c["name"]: c for c in coordinator.context.cookies()}
    assert cookies["coordo_session"]["httpOnly"] and cookies["coordo_session"]["sameSite"] == "Lax"
    assert not any("token" in c["value"].lower() for c in cookies.values())
    expect(coordinator.get_by_role("heading", name="File active")).to_be_visible()

    # -- create a patient: French messages first, then the file ------------------------------------
    fill_traits(coordinator, suite, birth_date="31/02/1938")
    expect(coordinator.locator("#birth_date-erreur")).to_have_text(
        "La date de naissance doit être au format JJ/MM/AAAA."
    )
    coordinator.fill("#birth_date", "01/01/2999")
    coordinator.get_by_role("button", name=re.compile("Rechercher les dossiers proches")).click()
    expect(coordinator.locator("#birth_date-erreur")).to_have_text(
        "La date de naissance ne peut pas être dans le futur."
    )
    screens.check(coordinator, "03-creation-erreurs")
    fill_traits(coordinator, suite)
    expect(coordinator.get_by_text("Aucun dossier proche.")).to_be_visible()
    coordinator.get_by_role("button", name="Créer le dossier").click()
    expect(coordinator.locator("#attested-erreur")).to_contain_text("attester le consentement")
    coordinator.check("#attested")
    coordinator.select_option("#given_by", "patient")
    coordinator.fill("#mobile", "0612345678")
    coordinator.get_by_role("button", name="Créer le dossier").click()
    expect(coordinator.get_by_role("status")).to_contain_text("LEFÈVRE JEANNE est créé")
    expect(coordinator.get_by_role("region", name="Identité", exact=True)).to_contain_text("0612345678")
    patient_url = coordinator.url
    patient_id = patient_url.rstrip("/").rsplit("/", 1)[-1]
    expect(coordinator.get_by_role("heading", name="Identité", exact=True)).to_be_visible()
    expect(coordinator.get_by_role("region", name="Consentement")).to_contain_text("Le patient")
    expect(coordinator.locator("main")).to_contain_text("17/05/1938")
    screens.check(coordinator, "04-dossier")

    # -- the file's panels: a memo and a status, seen on the file ----------------------------------
    coordinator.locator("#memos summary", has_text="Ajouter un mémo").click()
    coordinator.fill("#memo-title", "Accès au logement")
    coordinator.fill("#memo-content", "5e étage sans ascenseur")
    coordinator.select_option("#memo-importance", "important")
    coordinator.get_by_role("button", name="Créer le mémo").click()
    expect(coordinator.locator(".message-succes")).to_contain_text("Mémo « Accès au logement » ajouté")
    memos = coordinator.get_by_role("region", name="Mémos")
    expect(memos).to_contain_text("5e étage sans ascenseur")
    expect(memos).to_contain_text("Important")
    coordinator.locator("#statut summary", has_text="Changer le statut").click()
    coordinator.select_option("#s-status", "sorti")
    coordinator.get_by_role("button", name="Enregistrer le statut").click()
    expect(coordinator.get_by_role("alert")).to_contain_text("motif de sortie est obligatoire")
    coordinator.locator("#statut summary", has_text="Changer le statut").click()
    coordinator.select_option("#s-status", "suivi_soutenu")
    coordinator.get_by_role("button", name="Enregistrer le statut").click()
    status_panel = coordinator.get_by_role("region", name="Statut du dossier", exact=True)
    expect(status_panel).to_contain_text("Suivi coordination soutenue")
    expect(coordinator.get_by_role("region", name="Fil d'actualité")).to_contain_text("Mémo")
    expect(coordinator.get_by_role("list", name="Éléments de la ligne de vie, par date")).to_be_visible()
    coordinator.get_by_role("button", name="Favori").click()
    expect(coordinator.get_by_role("button", name="Favori")).to_have_attribute("aria-pressed", "true")
    screens.check(coordinator, "04b-dossier-panneaux")
    # PAT-18: the favourite filed in a group, the group shared with the DAC.
    file_url = coordinator.url
    coordinator.fill("#groupe-favori", "Sorties d'hôpital")
    coordinator.get_by_role("button", name="Classer").click()
    expect(coordinator.get_by_role("status").first).to_contain_text("groupe « Sorties d'hôpital »")
    coordinator.get_by_role("link", name="Favoris").click()
    group = coordinator.get_by_role("region", name="Sorties d'hôpital", exact=True)
    expect(group).to_contain_text("LEFÈVRE")
    expect(group).to_contain_text("non partagé")
    group.get_by_label("Partagé avec").select_option(label="DAC Sud Essonne")
    group.get_by_role("button", name=re.compile("Enregistrer")).click()
    expect(coordinator.get_by_role("region", name="Sorties d'hôpital", exact=True)).to_contain_text(
        "partagé avec DAC Sud Essonne"
    )
    screens.check(coordinator, "04c-favoris")
    coordinator.goto(file_url)

    # -- the same identity again: identity vigilance proposes the file -----------------------------
    fill_traits(coordinator, suite)
    proposals = coordinator.locator("#propositions")
    expect(proposals).to_contain_text("LEFÈVRE JEANNE")
    expect(proposals).to_contain_text("%")
    expect(proposals).to_contain_text("Identité provisoire")
    expect(proposals.get_by_role("link", name=re.compile("Ouvrir le dossier"))).to_be_visible()
    coordinator.check("#attested")
    coordinator.select_option("#given_by", "patient")
    coordinator.get_by_role("button", name="Créer le dossier").click()
    expect(coordinator.locator("#force_confirm-erreur")).to_be_visible()  # "create anyway" needs a tick
    screens.check(coordinator, "05-doublon")

    # -- the care circle: the nurse from the directory, habilitated --------------------------------
    coordinator.goto(f"{patient_url}/cercle")
    coordinator.fill("#annuaire-q", "Sophie Petit")
    coordinator.get_by_role("button", name="Rechercher", exact=True).click()
    result = coordinator.locator(".resultat", has_text="Sophie Petit")
    result.get_by_label("Intervenant").check()
    result.get_by_role("button", name=re.compile("Ajouter au cercle")).click()
    expect(coordinator.get_by_role("status")).to_contain_text(
        "Ajouté au cercle de soins de LEFÈVRE JEANNE : Sophie Petit"
    )
    nurse_row = coordinator.locator("#cercle tr", has_text="Sophie Petit")
    expect(nurse_row).to_contain_text("Intervenant")
    expect(nurse_row).to_contain_text("Habilité")
    screens.check(coordinator, "06-cercle")

    # A professional added by hand who must access the file: the conditional fields are required.
    coordinator.locator("summary", has_text="Ajouter une personne hors annuaire").click()
    coordinator.check("#pro-oui")
    coordinator.check("#should_access")
    coordinator.fill("#m-last_name", "Durand")
    coordinator.get_by_role("button", name="Ajouter au cercle", exact=True).click()
    expect(coordinator.get_by_role("alert")).to_contain_text("La ville est obligatoire")
    expect(coordinator.locator("#cercle")).not_to_contain_text("Durand")

    # Bulk management from the file list: the social worker joins the selected files' circles.
    coordinator.goto(f"{suite.base_url}/patients")
    expect(coordinator.locator("#file-active")).to_contain_text("17/05/1938")
    # A server-side filter, saved as the default search (★), applied on the next opening.
    coordinator.fill("#f-name", "lefev")
    coordinator.get_by_role("button", name="Rechercher les patients").click()
    expect(coordinator.locator("#file-active caption")).to_contain_text("1 dossier")
    coordinator.locator("#recherches summary").click()
    coordinator.fill("#search_name", "Mes Lefèvre")
    coordinator.check("#is_default")
    coordinator.get_by_role("button", name="Mémoriser les filtres").click()
    expect(coordinator.locator(".message-succes")).to_contain_text("« Mes Lefèvre » enregistrée")
    coordinator.goto(f"{suite.base_url}/patients")
    expect(coordinator.locator("#recherche-appliquee")).to_contain_text("Mes Lefèvre")
    expect(coordinator.locator("#recherches")).to_contain_text("★")
    expect(coordinator.locator("#f-name")).to_have_value(re.compile("lefev", re.IGNORECASE))
    expect(coordinator.locator("#file-active")).to_contain_text("Suivi coordination soutenue")
    with coordinator.expect_download() as download:  # SEA-5: the filtered list, through the BFF
        coordinator.get_by_role("link", name="Exporter (CSV)").click()
    exported = download.value.path().read_text(encoding="utf-8-sig")
    assert exported.startswith("Nom de naissance;") and "LEFÈVRE;" in exported
    screens.check(coordinator, "02-file-active")
    coordinator.get_by_label("Sélectionner LEFÈVRE JEANNE").check()
    coordinator.get_by_role("button", name="Gérer les habilitations de la sélection").click()
    coordinator.fill("#bulk-q", "Nadia Roux")
    coordinator.get_by_role("button", name="Rechercher", exact=True).click()
    coordinator.get_by_label(re.compile("Nadia Roux")).check()
    coordinator.check("#a-add")
    coordinator.uncheck("#b-hab")
    coordinator.get_by_role("button", name="Appliquer à la sélection").click()
    expect(coordinator.get_by_role("status")).to_contain_text("La modification est faite")
    expect(coordinator.locator("main")).to_contain_text("LEFÈVRE JEANNE, né(e) le 17/05/1938 — ajouté")
    screens.check(coordinator, "06b-gestion-groupee")
    coordinator.goto(f"{patient_url}/cercle")
    expect(coordinator.locator("#cercle tr", has_text="Nadia Roux")).to_contain_text("Non habilité")

    # -- a task for her ---------------------------------------------------------------------------
    coordinator.goto(f"{patient_url}/taches/nouvelle")
    coordinator.select_option("#type", "appeler_patient")
    coordinator.fill("#label", "Rappeler pour la douleur")
    coordinator.select_option("#level", "important")
    coordinator.get_by_label("Sophie Petit").check()
    screens.check(coordinator, "07-nouvelle-tache")
    coordinator.get_by_role("button", name="Créer la tâche").click()
    expect(coordinator.get_by_role("status")).to_contain_text("La tâche est créée")
    expect(coordinator.locator("main")).to_contain_text("Rappeler pour la douleur")

    # -- the doctor, not in the circle, breaks the glass -------------------------------------------
    doctor = log_in(browser, suite, "medecin")
    doctor.goto(patient_url)
    expect(doctor.get_by_role("heading", name="Accès au dossier refusé")).to_be_visible()
    assert "LEFÈVRE" not in doctor.content()
    doctor.goto(f"{patient_url}/bris-de-glace")  # only from a proposal of identity vigilance
    expect(doctor.locator("main")).to_contain_text("retrouvé par l'identitovigilance")
    fill_traits(doctor, suite)
    doctor.locator("#propositions").get_by_role("link", name=re.compile("Accès exceptionnel")).click()
    doctor.get_by_role("button", name="Continuer").click()
    expect(doctor.locator("#reason-erreur")).to_be_visible()
    doctor.check("#reason-urgence_soins")
    doctor.fill("#reason_text", "Appel du SAMU, équipe habituelle injoignable")
    doctor.get_by_role("button", name="Continuer").click()
    screens.check(doctor, "08-bris-de-glace-confirmation")
    doctor.get_by_role("button", name="Je confirme l'accès exceptionnel").click()
    banner = doctor.locator("#bandeau-bris-de-glace")
    expect(banner).to_contain_text("Accès exceptionnel")
    expect(banner.locator(".compte-a-rebours")).to_have_text(re.compile(r"1 h 59 min|2 h 00 min"))
    expect(doctor.get_by_role("heading", name="LEFÈVRE JEANNE")).to_be_visible()
    screens.check(doctor, "09-bris-de-glace-bandeau")
    doctor.goto(f"{patient_url}/cercle")
    expect(doctor.locator("#bandeau-bris-de-glace")).to_be_visible()  # on every page of the file
    doctor.context.close()

    # -- the nurse: her dashboard, the bell, one-click status, acting for her structure -------------
    nurse = log_in(browser, suite, "infirmiere")
    nurse.goto(f"{suite.base_url}/taches")
    row = nurse.locator("#taches tr", has_text="Rappeler pour la douleur")
    expect(row).to_contain_text("LEFÈVRE JEANNE")
    expect(row).to_contain_text("À traiter")
    eventually_on_reload(nurse, lambda: nurse.locator("[data-testid=non-lues]").count() > 0)
    expect(nurse.locator("#cloche")).to_have_attribute(
        "aria-label", re.compile(r"Notifications : \d+ non lue")
    )
    screens.check(nurse, "10-taches")
    row.get_by_role("button", name="Passer en cours").click()  # htmx: the row alone changes
    expect(row).to_contain_text("En cours")
    expect(row.get_by_role("button", name="Marquer traitée")).to_be_focused()  # keyboard users stay put
    nurse.reload()
    expect(nurse.locator("#taches tr", has_text="Rappeler pour la douleur")).to_contain_text("En cours")
    nurse.locator("#taches").get_by_role("link", name="Rappeler pour la douleur").click()
    nurse.locator("summary", has_text="Modifier la tâche").click()
    nurse.fill("#e-due", "15/01/2030")
    nurse.get_by_role("button", name="Enregistrer", exact=True).click()
    expect(nurse.get_by_role("status")).to_contain_text("La tâche est enregistrée")
    expect(nurse.locator("main")).to_contain_text("15/01/2030")

    nurse.locator("#cloche").click()
    expect(nurse.get_by_role("heading", name="Notifications")).to_be_visible()
    expect(nurse.locator("#notifications .non-lue").first).to_be_visible()
    screens.check(nurse, "11-notifications")
    nurse.get_by_role("button", name="Tout marquer comme lu").click()
    expect(nurse.locator("#notifications .non-lue")).to_have_count(0)
    expect(nurse.locator("[data-testid=non-lues]")).to_have_count(0)

    nurse.goto(f"{suite.base_url}/preferences")
    expect(nurse.get_by_role("heading", name="Préférences de notification")).to_be_visible()
    screens.check(nurse, "12-preferences")

    # A delegation: the nurse asks the coordinator, who accepts it.
    nurse.goto(f"{suite.base_url}/profil/delegations")
    nurse.fill("#deleg-q", "Claire Martin")
    nurse.get_by_role("button", name="Rechercher", exact=True).click()
    nurse.get_by_label(re.compile("Claire Martin")).check()
    nurse.get_by_role("button", name="Envoyer la demande").click()
    expect(nurse.get_by_role("status")).to_contain_text("demande de délégation est envoyée")
    expect(nurse.get_by_role("region", name="Mes délégations (tableau défilant)")).to_contain_text(
        "En attente"
    )
    screens.check(nurse, "14-delegations")
    coordinator.goto(f"{suite.base_url}/profil/delegations")
    coordinator.get_by_role("button", name="Accepter : Sophie Petit").click()
    expect(coordinator.get_by_role("status")).to_contain_text("Délégation acceptée")

    nurse.goto(f"{suite.base_url}/profil")
    nurse.get_by_label(re.compile("Au nom de CH Sud Francilien")).check()
    nurse.get_by_role("button", name="Enregistrer").click()
    expect(nurse.get_by_role("status")).to_contain_text("au nom de votre structure")
    expect(nurse.locator("header")).to_contain_text("pour CH Sud Francilien")
    screens.check(nurse, "13-profil")

    # -- logout ends the session -------------------------------------------------------------------
    nurse.get_by_role("button", name="Se déconnecter").click()
    expect(nurse.get_by_role("status")).to_contain_text("Vous êtes déconnecté")
    nurse.goto(f"{suite.base_url}/taches")
    expect(nurse).to_have_url(re.compile(r"/auth/login"))
    coordinator.context.close()
    nurse.context.close()

    assert len(screens.taken) >= 30
    assert not screens.violations, "accessibility or layout problems:\n" + "\n".join(screens.violations)
    assert patient_id

"""The terms of use (CGU, ID-2) shown at first login: the text of the version in force.

Kept with the code so that the version a user accepts and the text shown for it cannot
drift apart; a new text means a new `domain.TERMS_VERSION`, and everyone accepts again.
"""

from __future__ import annotations

from identity.domain import TERMS_VERSION

TITLE = "Conditions générales d'utilisation de Coordo"

TEXT = """\
1. Objet. Coordo est un service de coordination des parcours de santé réservé aux
professionnels des secteurs sanitaire, médico-social et social intervenant auprès des
personnes accompagnées.

2. Accès. Votre compte est personnel. Vous ne communiquez jamais vos identifiants ; un
collègue qui doit agir en votre nom le fait par une délégation de compte, que vous pouvez
retirer à tout moment.

3. Secret professionnel et partage d'informations. Vous n'accédez qu'aux dossiers des
personnes dont vous êtes membre habilité du cercle de soins, et ne partagez que les
informations strictement nécessaires à la coordination, à la continuité des soins ou au
suivi médico-social, dans le respect du secret professionnel (articles L1110-4 et
R1110-1 et suivants du code de la santé publique). Un accès en « bris de glace » est motivé,
limité dans le temps et tracé.

4. Traçabilité. Chaque accès à un dossier et chaque modification sont enregistrés et
peuvent être consultés par les membres du cercle de soins et par la personne concernée.

5. Données personnelles. Les données sont hébergées chez un hébergeur certifié pour les
données de santé (HDS). Les personnes accompagnées disposent des droits d'information,
d'accès, de rectification et d'opposition prévus par le RGPD.

6. Évolution. Toute nouvelle version des présentes conditions doit être acceptée avant de
poursuivre l'utilisation du service.
"""


def current() -> dict[str, str]:
    return {"version": TERMS_VERSION, "title": TITLE, "text": TEXT}

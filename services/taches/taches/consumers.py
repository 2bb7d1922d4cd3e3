"""Events taches listens to, to keep its local read models (known patients, habilitations)."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings
from taches import usecases


def on_patient_created(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_patient_created(uow, envelope)


def on_habilitation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=True)


def on_habilitation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=False)


def subscriptions(_settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="taches",
            handlers={
                "dossier.PatientCreated": on_patient_created,
                "cercle.HabilitationGranted": on_habilitation_granted,
                "cercle.HabilitationRevoked": on_habilitation_revoked,
            },
        )
    ]

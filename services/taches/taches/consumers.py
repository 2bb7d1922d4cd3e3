"""Events taches listens to, to keep its local read models (patients, links, habilitations,
persons' structures) and to orphan the tasks of a recipient that lost its habilitation."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings
from taches import usecases


def on_patient_created(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_patient_created(uow, envelope)


def on_patients_linked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_patients_link(uow, envelope, active=True)


def on_patients_unlinked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_patients_link(uow, envelope, active=False)


def on_habilitation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=True)


def on_habilitation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=False)


def on_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_user_registered(uow, envelope)


def subscriptions(_settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="taches",
            handlers={
                "dossier.PatientCreated": on_patient_created,
                "dossier.PatientsLinked": on_patients_linked,
                "dossier.PatientsUnlinked": on_patients_unlinked,
                "cercle.HabilitationGranted": on_habilitation_granted,
                "cercle.HabilitationRevoked": on_habilitation_revoked,
                "identity.UserRegistered": on_user_registered,
            },
        )
    ]

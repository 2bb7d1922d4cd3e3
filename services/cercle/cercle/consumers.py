"""Events cercle listens to, to keep its local read models."""

from __future__ import annotations

from typing import Any

from cercle import usecases
from chassis.consumer import Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings


def on_patient_created(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.record_patient(uow, envelope)


def on_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.record_person(uow, envelope)


def on_delegation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.record_delegation_granted(uow, envelope)


def on_delegation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.record_delegation_revoked(uow, envelope)


def subscriptions(_settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="cercle",
            handlers={
                "dossier.PatientCreated": on_patient_created,
                "identity.UserRegistered": on_user_registered,
                "identity.DelegationGranted": on_delegation_granted,
                "identity.DelegationRevoked": on_delegation_revoked,
            },
        )
    ]

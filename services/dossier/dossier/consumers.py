"""Events dossier listens to, to keep its local read models."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings
from dossier import usecases


def on_habilitation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=True)


def on_habilitation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=False)


def subscriptions(_settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="dossier",
            handlers={
                "cercle.HabilitationGranted": on_habilitation_granted,
                "cercle.HabilitationRevoked": on_habilitation_revoked,
            },
        )
    ]

"""Events dossier listens to, to keep its local read models."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings
from dossier import file, usecases


def on_habilitation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=True)
    file.on_habilitation(uow, envelope, active=True)


def on_habilitation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_habilitation(uow, envelope, active=False)
    file.on_habilitation(uow, envelope, active=False)


def on_delegation_granted(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    file.on_delegation(uow, envelope, active=True)


def on_delegation_revoked(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    file.on_delegation(uow, envelope, active=False)


def subscriptions(_settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="dossier",
            handlers={
                "cercle.HabilitationGranted": on_habilitation_granted,
                "cercle.HabilitationRevoked": on_habilitation_revoked,
                # The patient file's read models and news feed (dossier/file.py).
                "cercle.CareCircleMemberAdded": file.on_member_added,
                "cercle.CareCircleMemberRemoved": file.on_member_removed,
                "cercle.BreakGlassAccessGranted": file.on_break_glass_granted,
                "cercle.BreakGlassAccessEnded": file.on_break_glass_ended,
                "taches.TaskCreated": file.on_task_created,
                "taches.TaskStatusChanged": file.on_task_status_changed,
                "agenda.AppointmentScheduled": file.on_appointment,
                "agenda.AppointmentChanged": file.on_appointment,
                "agenda.AppointmentCancelled": file.on_appointment,
                "documents.DocumentAdded": file.on_document_added,
                "identity.DelegationGranted": on_delegation_granted,
                "identity.DelegationRevoked": on_delegation_revoked,
            },
        )
    ]

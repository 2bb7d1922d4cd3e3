"""Events notify listens to: who people are (identity) and what happened to them (taches)."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Handler, Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings
from notify import usecases


def on_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_user_registered(uow, envelope)


def on_task_assigned_for(settings: Settings) -> Handler:
    def on_task_assigned(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        usecases.notify_task_assigned(uow, envelope, public_url=settings.public_url)

    return on_task_assigned


def subscriptions(settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            consumer="notify",
            handlers={
                "identity.UserRegistered": on_user_registered,
                "taches.TaskAssigned": on_task_assigned_for(settings),
            },
        )
    ]

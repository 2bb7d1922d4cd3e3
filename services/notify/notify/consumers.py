"""Events notify listens to (NOT-3): who people are (identity), who is habilitated where
(cercle), and everything that someone should hear of. The catalogue in domain.py names
which event drives which notification type; a test checks both lists agree."""

from __future__ import annotations

from typing import Any

from chassis.consumer import Handler, Subscription
from chassis.db import UnitOfWork
from chassis.settings import Settings, env
from notify import domain, usecases


def on_user_registered(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
    usecases.apply_user_registered(uow, envelope)


def notifier(settings: Settings) -> Handler:
    def on_event(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        usecases.handle_event(uow, envelope, public_url=settings.public_url)

    return on_event


def habilitation(settings: Settings, active: bool) -> Handler:
    """Keep the habilitation read model, then tell the holder."""

    def on_habilitation(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        usecases.apply_habilitation(uow, envelope, active)
        usecases.handle_event(uow, envelope, public_url=settings.public_url)

    return on_habilitation


def invitation_sent(settings: Settings) -> Handler:
    def on_invitation_sent(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        usecases.handle_invitation_sent(uow, envelope, public_url=settings.public_url)

    return on_invitation_sent


def directory_entry_requested(settings: Settings) -> Handler:
    def on_directory_entry_requested(uow: UnitOfWork, envelope: dict[str, Any]) -> None:
        usecases.handle_directory_entry_requested(
            uow,
            envelope,
            public_url=settings.public_url,
            centre_address=env("COORDO_DIRECTORY_CENTRE_EMAIL"),
        )

    return on_directory_entry_requested


def subscriptions(settings: Settings) -> list[Subscription]:
    handlers: dict[str, Handler] = {"identity.UserRegistered": on_user_registered}
    notify = notifier(settings)
    for kind in domain.CATALOGUE:
        for key in kind.events:
            handlers[key] = notify
    handlers["cercle.HabilitationGranted"] = habilitation(settings, True)
    handlers["cercle.HabilitationRevoked"] = habilitation(settings, False)
    handlers["cercle.CareCircleInvitationSent"] = invitation_sent(settings)
    handlers["cercle.DirectoryEntryRequested"] = directory_entry_requested(settings)
    return [Subscription(consumer="notify", handlers=handlers)]

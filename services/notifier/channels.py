"""Delivery channels: where a notification goes. Each sends one notification or raises."""

from __future__ import annotations

import logging
from typing import Protocol

from notifier.domain import Notification
from plumbing.gateway import Bindings

log = logging.getLogger("notifier.delivery")


class Channel(Protocol):
    name: str

    def send(self, note: Notification) -> None: ...


class Skipped:
    """A recipient that cannot be written to: nothing is sent, and the delivery log says why
    under the channel's name (`skipped`)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason

    def send(self, note: Notification) -> None:
        raise AssertionError(f"{self.name} is skipped: {self.reason}")  # deliver() never sends it


class LogChannel:
    """Writes the notification to the service log (the default, for development).

    Local and instant: a redelivery may write the line again, which harms no one, so it is
    written without the sending lease the outbound channels need (four state-store calls)."""

    name = "log"
    leased = False

    def send(self, note: Notification) -> None:
        log.info("NOTIFY %s | %s | %s", note.audience, note.subject, note.text)


class WebhookChannel:
    """POSTs the notification as JSON through a Dapr HTTP output binding.

    The path says who it is for ("/approvers/manager", "/customer"), so one endpoint can
    route; retries of the call itself come from the binding's resiliency policy.
    """

    name = "webhook"

    def __init__(self, bindings: Bindings, binding: str) -> None:
        self._bindings, self._binding = bindings, binding

    def send(self, note: Notification) -> None:
        self._bindings.invoke(
            self._binding,
            "post",
            note.model_dump_json().encode(),
            {
                "path": "/" + note.audience.replace(":", "/"),
                "Content-Type": "application/json",
            },
        )

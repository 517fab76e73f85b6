"""notifier's settings: the shared ones plus its delivery channels.

NOTIFY_CHANNELS   comma list of channels: log (default), webhook
WEBHOOK_BINDING   name of the Dapr output binding the webhook channel posts through
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from plumbing.settings import ServiceSettings

CHANNELS = ("log", "webhook")


class SettingsError(ValueError):
    """A notifier setting is invalid."""


@dataclass(frozen=True)
class NotifierSettings(ServiceSettings):
    channels: tuple[str, ...] = ("log",)
    webhook_binding: str = "notify-webhook"

    @classmethod
    def from_env(
        cls, app_id: str = "notifier", env: Mapping[str, str] | None = None
    ) -> NotifierSettings:
        env = os.environ if env is None else env
        base = ServiceSettings.from_env(app_id, env)
        channels = tuple(
            c.strip() for c in env.get("NOTIFY_CHANNELS", "log").split(",") if c.strip()
        )
        unknown = sorted(set(channels) - set(CHANNELS))
        if unknown or not channels:
            raise SettingsError(
                f"NOTIFY_CHANNELS: unknown channel(s) {unknown or channels}; "
                f"use a comma list of {', '.join(CHANNELS)}"
            )
        return cls(
            **{f.name: getattr(base, f.name) for f in fields(ServiceSettings)},
            channels=channels,
            webhook_binding=env.get("WEBHOOK_BINDING", "notify-webhook"),
        )

"""notifier's settings: the shared ones plus its delivery channels.

NOTIFY_CHANNELS       comma list of channels: log (default), webhook, email
WEBHOOK_BINDING       name of the Dapr output binding the webhook channel posts through
EMAIL_BINDING         name of the Dapr SMTP output binding the email channel sends through
EMAIL_DOMAIN          approvers are written to at <principal>@EMAIL_DOMAIN ...
EMAIL_APPROVERS       ... unless named here: "bob=bob@corp.example,val=val@corp.example"
CUSTOMER_EMAIL_DOMAIN customers are written to at <customer_id>@CUSTOMER_EMAIL_DOMAIN (unset:
                      no customer e-mail)
EMAIL_TIMEZONE        the zone due times are shown in (besides UTC); default UTC
DECISION_LINK_BASE    the approvals service's URL as approvers' browsers reach it, for the
                      one-click links (default $APPROVALS_URL; unset: e-mail without links)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plumbing.settings import ServiceSettings

CHANNELS = ("log", "webhook", "email")
# One plain address: Dapr's SMTP binding splits a recipient list at ";".
ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
DOMAIN = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


class SettingsError(ValueError):
    """A notifier setting is invalid."""


@dataclass(frozen=True)
class NotifierSettings(ServiceSettings):
    channels: tuple[str, ...] = ("log",)
    webhook_binding: str = "notify-webhook"
    email_binding: str = "notify-email"
    email_domain: str = ""
    email_approvers: Mapping[str, str] = field(default_factory=dict)
    customer_email_domain: str = ""
    email_timezone: str = "UTC"
    decision_link_base: str = ""

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
            email_binding=env.get("EMAIL_BINDING", "notify-email"),
            email_domain=_domain(env, "EMAIL_DOMAIN"),
            email_approvers=_approvers(env.get("EMAIL_APPROVERS", "")),
            customer_email_domain=_domain(env, "CUSTOMER_EMAIL_DOMAIN"),
            email_timezone=_zone(env.get("EMAIL_TIMEZONE", "UTC")),
            decision_link_base=env.get("DECISION_LINK_BASE") or env.get("APPROVALS_URL", ""),
        )


def _domain(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if value and not DOMAIN.fullmatch(value):
        raise SettingsError(f"{name}: {value!r} is not a mail domain (e.g. example.com)")
    return value


def _approvers(text: str) -> dict[str, str]:
    """EMAIL_APPROVERS="bob=bob@corp.example,val=val@corp.example" as {principal: address}."""
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        who, _, address = part.partition("=")
        if not who.strip() or not ADDRESS.fullmatch(address.strip()):
            raise SettingsError(
                f"EMAIL_APPROVERS: {part!r} is not principal=address (e.g. bob=bob@corp.example)"
            )
        found[who.strip()] = address.strip()
    return found


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"EMAIL_TIMEZONE: no time zone {name!r} (e.g. Europe/Berlin)") from None
    return name

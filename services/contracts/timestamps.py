"""One way to write an instant everywhere the system shows one: RFC 3339 in UTC with `Z`.

Pydantic writes an aware UTC datetime that way already; `rfc3339` is for the places that build
text or plain dicts themselves, and `utc` for datetimes that come from Dapr, which are naive
(meaning UTC) and use year 1 (or the Unix epoch) for "not set yet".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

_UNSET_BEFORE = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    """`value` as an aware UTC datetime (a naive one is taken as UTC); None when not set."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    if aware < _UNSET_BEFORE:  # Go's zero time (year 1) or a zero protobuf Timestamp
        return None
    return aware.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """'2026-11-23T10:00:00Z' (with microseconds when it has any); naive means UTC."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


def rfc3339_or_none(value: datetime | None) -> str | None:
    """rfc3339 of a Dapr time, or None when Dapr has not set it yet."""
    moment = utc(value)
    return rfc3339(moment) if moment else None


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# A model field that accepts any zone and keeps (and writes) UTC, so it reads with `Z`.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]

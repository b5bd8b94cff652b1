"""Timestamps as every record stores them."""

from __future__ import annotations

from datetime import UTC, datetime


def to_timestamp(moment: datetime) -> str:
    """`moment` as records store it: ISO 8601 in UTC, always with microseconds, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def utc_now() -> str:
    """The current time as records store it."""
    return to_timestamp(datetime.now(UTC))

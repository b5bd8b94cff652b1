"""The root of every exception nodeloom raises on purpose."""

from __future__ import annotations


class NodeloomError(Exception):
    """Something went wrong in nodeloom."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

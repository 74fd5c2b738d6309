"""Errors alphawatch raises on purpose.

AlphawatchError
├── ConfigError          the configuration cannot be used; carries every problem found
├── IngestError          a batch of data was refused; carries every bad item
├── StoreError           the state database cannot be opened or migrated
├── ListenError          the web server cannot listen on daemon.listen
└── DeliveryError        a channel could not deliver a notification (retryable or not)
"""

from __future__ import annotations

from dataclasses import dataclass


class AlphawatchError(Exception):
    """Base of every error alphawatch raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration file, located for a person to fix it."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class ConfigError(AlphawatchError):
    """The configuration is invalid. ``problems`` lists every problem, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class ItemError:
    """One bad item of an ingested batch: its index, the field at fault and why."""

    index: int
    field: str
    message: str

    def as_json(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class ListenError(AlphawatchError):
    """The address of ``daemon.listen`` cannot be bound (in use, not on this host, not permitted)."""


class IngestError(AlphawatchError):
    """A batch was refused as a whole; nothing of it was stored."""

    def __init__(self, message: str, items: list[ItemError] | None = None, status: int = 400) -> None:
        self.items = items or []
        self.status = status
        super().__init__(message)


class StoreError(AlphawatchError):
    """The state database cannot be opened, migrated or written."""


class DeliveryError(AlphawatchError):
    """A channel failed to deliver. ``retryable`` false sends the notification straight to the dead letters."""

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None, throttled: bool = False
    ) -> None:
        self.retryable = retryable
        self.retry_after = retry_after
        self.throttled = throttled
        """The receiver is up and asks us to slow down (429): not probed, not hurried by a sibling's success."""
        super().__init__(message)

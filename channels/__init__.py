"""Channels deliver notifications: one module per kind, found by :func:`channel_kinds`."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from alphawatch.channels._base import Channel, Notification

__all__ = ["Channel", "Notification", "channel_kinds"]


@cache
def channel_kinds() -> dict[str, type[Channel]]:
    """Every channel kind in this package, by its ``kind`` name."""
    kinds: dict[str, type[Channel]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Channel) and value is not Channel:
                kinds[value.kind] = value
    return kinds

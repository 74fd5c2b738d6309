"""Rule kinds say what is wrong: one module per kind, found by :func:`rule_kinds`."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from alphawatch.rules._base import (
    Condition,
    Evaluator,
    Labels,
    Matcher,
    RuleKind,
    Sample,
    Selector,
    SettingError,
    labels_of,
)

__all__ = [
    "Condition",
    "Evaluator",
    "Labels",
    "Matcher",
    "RuleKind",
    "Sample",
    "Selector",
    "SettingError",
    "labels_of",
    "rule_kinds",
]


@cache
def rule_kinds() -> dict[str, type[RuleKind]]:
    """Every rule kind in this package, by its ``kind`` name (modules only; subpackages hold shared code)."""
    kinds: dict[str, type[RuleKind]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            # a kind names itself; shared bases (RuleKind, WindowedKind) do not
            if isinstance(value, type) and issubclass(value, RuleKind) and "kind" in vars(value):
                kinds[value.kind] = value
    return kinds

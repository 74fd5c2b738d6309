"""Escalation policies: an alert nobody acknowledged reaches more people as time passes.

    escalations:
      - name: desk
        matchers: ['severity=~"critical|emergency"']
        active_during: [trading]          # optional: tiers fall due only while a window is on
        tiers:
          - {after: 10m, channels: [desk-sms], severity: emergency}
          - {after: 30m, channels: [head-of-desk]}

Each tier is told once per firing episode, ``after`` the alert fired, unless the alert was acknowledged or
resolved by then. The first policy whose matchers match an alert applies to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alphawatch.daemon.durations import parse_duration
from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.windows import WINDOW_REF_SCHEMA
from alphawatch.daemon.yamlpos import Path as KeyPath
from alphawatch.rules import Matcher
from alphawatch.rules._base import parse_matcher

_MATCHERS = {"type": "array", "items": {"type": "string", "minLength": 1}}
ESCALATIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "tiers"],
        "properties": {
            "name": {"$ref": "#/$defs/name"},
            "matchers": _MATCHERS,
            "active_during": {"type": "array", "items": WINDOW_REF_SCHEMA, "minItems": 1},
            "tiers": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["after", "channels"],
                    "properties": {
                        "after": {"$ref": "#/$defs/duration"},
                        "channels": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/name"}},
                        "severity": {"enum": ["info", "warning", "error", "critical", "emergency"]},
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Tier:
    after: float
    channels: tuple[str, ...]
    severity: str | None = None


@dataclass(frozen=True)
class Policy:
    name: str
    matchers: tuple[Matcher, ...]
    tiers: tuple[Tier, ...]
    active_during: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def build_policies(
    raw: list[dict[str, Any]], locate: Callable[[KeyPath, str], Problem], channels: set[str], windows: Any
) -> tuple[Policy, ...]:
    problems: list[Problem] = []
    out = []
    for index, item in enumerate(raw):
        matchers = []
        for position, text in enumerate(item.get("matchers") or []):
            try:
                matchers.append(parse_matcher(text))
            except ValueError as exc:
                problems.append(locate((index, "matchers", position), str(exc)))
        for position, name in enumerate(item.get("active_during") or []):
            if name not in windows:
                problems.append(locate((index, "active_during", position), f"no window named {name!r}"))
        tiers = []
        previous = -1.0
        for number, tier in enumerate(item["tiers"]):
            after = parse_duration(tier["after"])
            if after <= previous:
                problems.append(locate((index, "tiers", number, "after"), "tiers must come later one after another"))
            previous = after
            for position, channel in enumerate(tier["channels"]):
                if channel not in channels:
                    problems.append(locate((index, "tiers", number, "channels", position), f"no channel {channel!r}"))
            tiers.append(Tier(after, tuple(tier["channels"]), tier.get("severity")))
        out.append(Policy(item["name"], tuple(matchers), tuple(tiers), tuple(item.get("active_during") or ())))
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def policy_for(policies: tuple[Policy, ...], labels: Mapping[str, str]) -> Policy | None:
    return next((p for p in policies if p.matches(labels)), None)

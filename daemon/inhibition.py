"""Inhibition rules: a firing *source* alert mutes the notifications of *target* alerts that share some labels.

The configuration's top-level ``inhibit_rules:`` list, with Alertmanager's semantics (``inhibit/inhibit.go``)::

    inhibit_rules:
      - source_matchers: ['alertname="FeedDown"']
        target_matchers: ['alertname=~"IC.*"']
        equal: [model]

A target alert is inhibited when the target matchers match it and some *other* alert that is firing now matches
the source matchers and has the same value for every ``equal`` label. A label missing on both sides counts as
equal (Alertmanager compares ``labels[name]``, and a missing label reads as the empty string). When the target
also matches the source matchers, source alerts that also match the target matchers are not counted, so two
alerts of the same class never inhibit each other. An ``emergency`` target is only inhibited by a rule whose
target matchers name that severity (:func:`~alphawatch.daemon.routing.names_emergency`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import jsonschema

from alphawatch.daemon.errors import ConfigError, Problem
from alphawatch.daemon.routing import EMERGENCY, names_emergency
from alphawatch.rules._base import Matcher, parse_matcher

KeyPath = tuple[str | int, ...]
Locate = Callable[[KeyPath, str], Problem]

_MATCHERS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
}
INHIBIT_RULES_SCHEMA: dict[str, Any] = {
    "description": "while a source alert fires, target alerts with the same `equal` labels are not notified",
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["source_matchers", "target_matchers"],
        "properties": {
            "source_matchers": {
                **_MATCHERS,
                "description": "matchers a firing alert must match to inhibit: 'alertname=\"FeedDown\"'",
            },
            "target_matchers": {**_MATCHERS, "description": "matchers of the alerts it inhibits"},
            "equal": {
                "description": "labels whose values must be the same in source and target (missing = missing)",
                "type": "array",
                "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            },
        },
    },
}
"""JSON Schema of the ``inhibit_rules:`` section (self-contained)."""


@dataclass(frozen=True)
class InhibitRule:
    """One rule of ``inhibit_rules:``; ``index`` is its position there (for messages)."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    index: int = 0

    def is_target(self, labels: Mapping[str, str]) -> bool:
        if not all(m.matches(labels) for m in self.target_matchers):
            return False
        return labels.get("severity") != EMERGENCY or names_emergency(self.target_matchers)

    def is_source(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.source_matchers)

    def describe(self) -> str:
        source = ", ".join(_text(m) for m in self.source_matchers)
        target = ", ".join(_text(m) for m in self.target_matchers)
        equal = f" equal [{', '.join(self.equal)}]" if self.equal else ""
        return f"inhibit_rules[{self.index}]: source {{{source}}} target {{{target}}}{equal}"


def _text(m: Matcher) -> str:
    return f'{m.name}{m.op}"{m.value}"'


def inhibitor(
    rules: Iterable[InhibitRule],
    fingerprint: str,
    labels: Mapping[str, str],
    firing: Iterable[tuple[str, Mapping[str, str]]],
) -> tuple[InhibitRule, str] | None:
    """The first rule and firing source alert that inhibit the alert ``(fingerprint, labels)``, or ``None``.

    Sources are tried in fingerprint order, so the answer does not depend on the order ``firing`` comes in.
    """
    targeted = [r for r in rules if r.is_target(labels)]  # (most alerts: none, and nothing more to do)
    return inhibitors(targeted, [(fingerprint, labels)], firing).get(fingerprint) if targeted else None


def inhibitors(
    rules: Iterable[InhibitRule],
    alerts: Iterable[tuple[str, Mapping[str, str]]],
    firing: Iterable[tuple[str, Mapping[str, str]]],
) -> dict[str, tuple[InhibitRule, str]]:
    """:func:`inhibitor` for many alerts at once (fingerprint → rule and source, for those inhibited): each rule's
    sources are found once, not once per alert."""
    rules = tuple(rules)
    everyone = sorted(firing)
    # each rule's sources by the values of its `equal` labels: an alert looks only at those it shares them with
    by_equal: dict[InhibitRule, dict[tuple[str, ...], list[tuple[str, Mapping[str, str]]]]] = {}
    for rule in rules:
        index = by_equal[rule] = {}
        for fp, src in everyone:
            if rule.is_source(src):
                index.setdefault(tuple(src.get(name, "") for name in rule.equal), []).append((fp, src))
    out: dict[str, tuple[InhibitRule, str]] = {}
    for fingerprint, labels in alerts:
        found = _first_source(rules, by_equal, fingerprint, labels)
        if found is not None:
            out[fingerprint] = found
    return out


def _first_source(
    rules: tuple[InhibitRule, ...],
    by_equal: Mapping[InhibitRule, Mapping[tuple[str, ...], list[tuple[str, Mapping[str, str]]]]],
    fingerprint: str,
    labels: Mapping[str, str],
) -> tuple[InhibitRule, str] | None:
    for rule in rules:
        if not rule.is_target(labels):
            continue
        two_sided = rule.is_source(labels)
        for fp, src in by_equal[rule].get(tuple(labels.get(name, "") for name in rule.equal), ()):
            if fp == fingerprint:
                continue
            if two_sided and all(m.matches(src) for m in rule.target_matchers):
                continue
            return rule, fp
    return None


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(INHIBIT_RULES_SCHEMA)


def build_inhibit_rules(raw: Any, locate: Locate) -> tuple[InhibitRule, ...]:
    """Check the ``inhibit_rules:`` section and build its rules (``None`` or missing: no rules).

    Args:
        raw: the parsed list (see :data:`INHIBIT_RULES_SCHEMA`).
        locate: turns a path inside ``inhibit_rules:`` (e.g. ``(0, "source_matchers", 1)``) and a message into a
            located :class:`Problem`, e.g. ``lambda p, m: doc.problem(("inhibit_rules", *p), m)``.

    Raises:
        ConfigError: with every problem: schema violations, bad matchers and regexes, duplicate ``equal`` labels.
    """
    if raw is None:
        return ()
    problems = [locate(tuple(e.absolute_path), e.message) for e in _validator().iter_errors(raw)]
    if problems:
        raise ConfigError(problems)
    rules: list[InhibitRule] = []
    for index, item in enumerate(raw):
        sides: dict[str, tuple[Matcher, ...]] = {}
        for side in ("source_matchers", "target_matchers"):
            parsed: list[Matcher] = []
            for i, text in enumerate(item[side]):
                try:
                    parsed.append(parse_matcher(text))
                except ValueError as exc:
                    problems.append(locate((index, side, i), str(exc)))
            sides[side] = tuple(parsed)
        equal: list[str] = item.get("equal") or []
        for i, name in enumerate(equal):
            if name in equal[:i]:
                problems.append(locate((index, "equal", i), f"duplicate label {name!r}"))
        rules.append(InhibitRule(sides["source_matchers"], sides["target_matchers"], tuple(equal), index))
    if problems:
        raise ConfigError(problems)
    return tuple(rules)

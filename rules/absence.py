"""``absence``: a dead-man switch. Fires when no matching sample arrived for ``absent_for``.

With ``by: [label, …]`` each group of those labels seen so far is watched on its own; without it, any matching
sample keeps the one switch alive. The clock starts at the last sample in the store, or at rule start when
there is none, so a restart neither resets nor trips the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from alphawatch.daemon.durations import parse_duration
from alphawatch.rules._base import Condition, Evaluator, Labels, RuleKind, Sample, Selector, selector_from


class Absence(RuleKind):
    kind: ClassVar[str] = "absence"
    required: ClassVar[tuple[str, ...]] = ("metric", "absent_for")
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "absent_for": {"$ref": "#/$defs/duration"},
        "by": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from(settings)
        self.absent_for = parse_duration(settings["absent_for"])
        self.by = tuple(settings.get("by", ()))

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    def history(self) -> float:
        return self.absent_for

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _AbsenceEvaluator(self, started_at)


class _AbsenceEvaluator(Evaluator):
    def __init__(self, rule: Absence, started_at: float) -> None:
        self.rule = rule
        self.last_seen: dict[Labels, float] = {} if rule.by else {(): started_at}
        self.last_value: dict[Labels, float] = {}
        self.started_at = started_at

    def observe(self, sample: Sample) -> None:
        if self.rule.by:
            labels = dict(sample.labels)
            key: Labels = tuple((name, labels.get(name, "")) for name in self.rule.by)
        else:
            key = ()
        if sample.ts >= self.last_seen.get(key, float("-inf")) or key not in self.last_value:
            self.last_seen[key] = max(sample.ts, self.last_seen.get(key, sample.ts))
            self.last_value[key] = sample.value

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        out: list[Condition] = []
        wake: float | None = None
        for key, seen in self.last_seen.items():
            deadline = seen + self.rule.absent_for
            if now >= deadline:
                out.append(Condition(key, True, now - seen))
            else:
                out.append(Condition(key, False, self.last_value.get(key)))
                wake = deadline if wake is None else min(wake, deadline)
        return out, wake

"""``threshold``: a value (or an aggregate over a window) above or below a limit, with optional hysteresis."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Mapping
from typing import Any, ClassVar

from alphawatch.daemon.durations import parse_duration
from alphawatch.rules._base import (
    Condition,
    Evaluator,
    Labels,
    RuleKind,
    Sample,
    Selector,
    SettingError,
    selector_from,
)

AGGREGATES = ("last", "mean", "min", "max", "sum", "count")


class Threshold(RuleKind):
    kind: ClassVar[str] = "threshold"
    detail_names: ClassVar[frozenset[str] | None] = frozenset()
    required: ClassVar[tuple[str, ...]] = ("metric", "op", "value")
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "op": {"enum": ["above", "below"]},
        "value": {"type": "number"},
        "aggregate": {"enum": list(AGGREGATES)},
        "window": {"$ref": "#/$defs/duration"},
        "hysteresis": {"type": "number", "minimum": 0},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from(settings)
        self.above = settings["op"] == "above"
        self.limit = float(settings["value"])
        self.aggregate = settings.get("aggregate", "last")
        window = settings.get("window")
        self.window = parse_duration(window) if window else None
        self.hysteresis = float(settings.get("hysteresis", 0.0))
        if self.aggregate != "last" and not self.window:
            raise SettingError(("aggregate",), f"aggregate {self.aggregate!r} needs a window longer than zero")

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    def history(self) -> float:
        return self.window if self.window is not None else 0.0

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _ThresholdEvaluator(self)


class _ThresholdEvaluator(Evaluator):
    def __init__(self, rule: Threshold) -> None:
        self.rule = rule
        self.series: dict[Labels, tuple[list[float], list[float]]] = {}  # with a window: its samples
        # without: each series' last sample, in columns (held for every series: no object each)
        self.slot: dict[Labels, int] = {}
        self.last_ts = array("d")
        self.last_value = array("d")
        self.touched: set[Labels] = set()

    def report_all(self) -> None:
        self.touched.update(self.series)
        self.touched.update(self.slot)

    def observe(self, sample: Sample) -> None:
        self.touched.add(sample.labels)
        if self.rule.window is None:
            slot = self.slot.get(sample.labels)
            if slot is None:
                self.slot[sample.labels] = len(self.last_ts)
                self.last_ts.append(sample.ts)
                self.last_value.append(sample.value)
            elif sample.ts >= self.last_ts[slot]:
                self.last_ts[slot] = sample.ts
                self.last_value[slot] = sample.value
            return
        times, values = self.series.setdefault(sample.labels, ([], []))
        at = bisect.bisect_left(times, sample.ts)
        if at < len(times) and times[at] == sample.ts:
            values[at] = sample.value  # the same sample again (a replay after a restart): latest value wins
            return
        times.insert(at, sample.ts)
        values.insert(at, sample.value)

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        rule = self.rule
        out: list[Condition] = []
        wake: float | None = None
        # without a window the answer changes only with a sample: look at the series that got one
        keys = list(self.series) if rule.window is not None else [k for k in self.touched if k in self.slot]
        self.touched.clear()
        for labels in keys:
            if rule.window is None:
                values = [self.last_value[self.slot[labels]]]
            else:
                times, values = self.series[labels]
                # samples in (now - window, now]; the oldest leaving the window, or the next one stamped ahead
                # of now (a sender's clock ahead of ours) entering it, is the next wake-up
                cut = bisect.bisect_right(times, now - rule.window)
                if cut:
                    del times[:cut]
                    del values[:cut]
                if not times:
                    del self.series[labels]
                    out.append(Condition(labels, False, None))
                    continue
                due = bisect.bisect_right(times, now)
                if due < len(times):
                    wake = _min(wake, times[due])
                    values = values[:due]
                if not values:
                    out.append(Condition(labels, False, None))
                    continue
                wake = _min(wake, times[0] + rule.window)
            value = _aggregate(rule.aggregate, values)
            limit = rule.limit
            if is_firing.get(labels):
                limit = limit - rule.hysteresis if rule.above else limit + rule.hysteresis
            active = value > limit if rule.above else value < limit
            out.append(Condition(labels, active, value))
        return out, wake


def _aggregate(name: str, values: list[float]) -> float:
    if name == "last":
        return values[-1]
    if name == "mean":
        return sum(values) / len(values)
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    if name == "sum":
        return sum(values)
    return float(len(values))


def _min(a: float | None, b: float) -> float:
    return b if a is None or b < a else a

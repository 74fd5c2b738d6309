"""``change_point``: CUSUM or Page–Hinkley on any series (concept drift in the daily IC, a Sharpe, a drift score).

Sample-driven on any metric. The detector is re-run over the series' kept values whenever one arrives, so late
data, corrections and restarts give the same answer as a live run. An alarm keeps the condition active for the
next ``hold`` values (an alarm is an event; ``hold`` turns it into a state a person can see and acknowledge).

CUSUM needs an in-control mean and scale: ``mean`` and ``std`` given, or estimated on a ``baseline`` date range,
or on the ``first`` N values of the kept history. Page–Hinkley needs none (``delta``, ``lambda``, ``min_obs``).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any, ClassVar

from alphawatch.daemon.durations import parse_duration
from alphawatch.rules._base import Condition, Evaluator, Labels, RuleKind, Selector, selector_from
from alphawatch.rules.ic import (
    ALL_HISTORY,
    DATE_SCHEMA,
    DAY,
    SeriesJudge,
    clean,
    date_of,
    day_start,
    insufficient,
    parse_date,
)


class ChangePoint(RuleKind):
    kind: ClassVar[str] = "change_point"
    required: ClassVar[tuple[str, ...]] = ("metric",)
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "method": {"enum": ["cusum", "page_hinkley"]},
        "direction": {"enum": ["up", "down", "both"]},
        "k": {"type": "number", "minimum": 0},
        "h": {"type": "number", "exclusiveMinimum": 0},
        "mean": {"type": "number"},
        "std": {"type": "number", "exclusiveMinimum": 0},
        "baseline": {
            "type": "object",
            "properties": {"start": DATE_SCHEMA, "end": DATE_SCHEMA, "first": {"type": "integer", "minimum": 2}},
            "additionalProperties": False,
        },
        "delta": {"type": "number", "minimum": 0},
        "lambda": {"type": "number", "exclusiveMinimum": 0},
        "min_obs": {"type": "integer", "minimum": 1},
        "hold": {"type": "integer", "minimum": 1},
        "lookback": {"$ref": "#/$defs/duration"},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from(settings)
        self.method = settings.get("method", "cusum")
        self.direction = settings.get("direction", "both")
        self.k = float(settings.get("k", 0.5))
        self.h = float(settings.get("h", 5.0))
        self.delta = float(settings.get("delta", 0.005))
        self.lam = float(settings.get("lambda", 0.5))
        self.min_obs = int(settings.get("min_obs", 30))
        self.hold = int(settings.get("hold", 20))
        self.lookback = parse_duration(settings.get("lookback", "400d"))
        self.mean: float | None = settings.get("mean")
        self.std: float | None = settings.get("std")
        raw = dict(settings.get("baseline") or {})
        self.first = int(raw.get("first", 60))
        self.start = parse_date(raw["start"]) if "start" in raw else None
        self.end = parse_date(raw["end"]) if "end" in raw else None
        if (self.start is None) != (self.end is None):
            raise ValueError("baseline needs both start and end (or first: N)")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither (then they come from the baseline)")

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    def history(self) -> float:
        return ALL_HISTORY if self.start is not None else self.lookback

    def keeps_samples_since(self) -> float | None:
        return day_start(self.start) if self.start is not None else None

    def oldest_kept(self, now: float) -> float:
        """Values before this instant are dropped: older than ``lookback``, unless in the baseline range."""
        cut = now - self.lookback
        return min(cut, day_start(self.start)) if self.start is not None else cut

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _ChangePointEvaluator(self)


class _ChangePointEvaluator(SeriesJudge):
    def __init__(self, rule: ChangePoint) -> None:
        super().__init__()
        self.rule = rule

    def judge(self, labels: Labels, now: float) -> Condition:
        from alphawatch.rules import stats

        times = self.values.series[labels][0]
        self.values.trim(labels, bisect.bisect_left(times, self.rule.oldest_kept(now)))
        rule = self.rule
        times, values = self.values.series[labels]
        common: dict[str, Any] = {"method": rule.method, "direction": rule.direction, "hold": rule.hold}
        detector: stats.Cusum | stats.PageHinkley
        if rule.method == "cusum":
            start = 0
            if rule.mean is not None and rule.std is not None:
                mean, std, baseline = rule.mean, rule.std, "given"
            else:
                if rule.start is not None and rule.end is not None:
                    lo, hi = day_start(rule.start), day_start(rule.end) + DAY
                    base = [v for t, v in zip(times, values, strict=True) if lo <= t < hi]
                    start = sum(1 for t in times if t < hi)
                    baseline = f"{rule.start}..{rule.end}"
                else:
                    base, start = values[: rule.first], rule.first
                    baseline = f"first {rule.first} values" + (f" ({date_of(times[0])}..)" if times else "")
                if len(base) < max(2, min(rule.first, 10)) or len(set(base)) < 2:
                    return insufficient(labels, f"{len(base)} baseline values, need distinct ones", baseline=baseline,
                                        **common)  # fmt: skip
                fitted = stats.Cusum.from_baseline(base, k=rule.k, h=rule.h, direction=rule.direction)
                mean, std = fitted.mean, fitted.std
            detector = stats.Cusum(mean, std, rule.k, rule.h, rule.direction)
            common.update(baseline=baseline, baseline_mean=clean(mean), baseline_std=clean(std), k=rule.k, h=rule.h)
            monitored = values[start:]
        else:
            detector = stats.PageHinkley(rule.delta, rule.lam, rule.direction, rule.min_obs)
            common.update(delta=rule.delta, **{"lambda": rule.lam})
            start, monitored = 0, values
        if not monitored:
            return insufficient(labels, "no values after the baseline yet", **common)
        alarms = stats.run_detector(detector, monitored)
        common.update(status="ok", n=len(monitored), alarms=len(alarms))
        if not alarms or alarms[-1] < len(monitored) - rule.hold:
            return Condition(labels, False, monitored[-1], tuple(sorted(common.items())))
        at = start + alarms[-1]
        before = monitored[: alarms[-1] + 1][-rule.hold :]
        shift = sum(before) / len(before) - (common.get("baseline_mean") or sum(monitored) / len(monitored))
        details = {
            **common, "statistic": f"{rule.method} alarm", "alarm_at": str(date_of(times[at])),
            "alarm_value": clean(values[at]), "change": "down" if shift < 0 else "up",
        }  # fmt: skip
        return Condition(labels, True, values[at], tuple(sorted(details.items())))

"""``ic``: is a model's daily rank IC still there? Mean, IR, Newey–West t-stat and p-value over a window.

Sample-driven: it watches a daily IC series (by default ``alphawatch_ic{model, horizon}``, which the daemon
derives from predictions and returns), one sample per trading day, so a window of N trading days is the last N
samples of a series. Conditions, each one-sided at ``alpha`` (see docs/statistics.md):

- ``floor``: the mean IC is significantly below ``floor`` (HAC t-test; the variance of the window mean is
  estimated on the baseline when there is one, else on the window at lag ``2·(horizon − 1)``, small-sample t);
- ``decline``: the mean IC is significantly below the baseline's (a fixed date range such as the training
  period, or the ``lagged`` values just before the window), the variance estimated on the baseline;
- ``sign_flip``: the mean IC is significantly of the sign opposite to the baseline mean.

A window with fewer than ``min_obs`` values, or a constant one, is "not enough data": never an alert.

This module also holds the small per-series store of values and the baseline settings that the ``sharpe`` and
``change_point`` kinds share.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from alphawatch.rules._base import Condition, Evaluator, Labels, RuleKind, Sample, Selector, selector_from

DAY = 86400.0
ALL_HISTORY = 1e10
DATE_SCHEMA: dict[str, Any] = {
    "not": {"type": ["number", "boolean", "array", "object", "null"]},
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
}
BASELINE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"start": DATE_SCHEMA, "end": DATE_SCHEMA},
            "required": ["start", "end"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"lagged": {"type": "integer", "minimum": 3}},
            "required": ["lagged"],
            "additionalProperties": False,
        },
    ]
}
_HORIZON = re.compile(r"([0-9]+)d?")


def date_of(ts: float) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + int((ts + 8 * 3600) // DAY))


def day_start(d: date) -> float:
    """UTC epoch of midnight starting ``d`` in Asia/Taipei."""
    return (d.toordinal() - date(1970, 1, 1).toordinal()) * DAY - 8 * 3600


def parse_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@dataclass(frozen=True)
class Baseline:
    """A fixed range of dates (both included), or the ``lagged`` values just before the current window."""

    start: date | None = None
    end: date | None = None
    lagged: int = 0

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Baseline | None:
        if not raw:
            return None
        if "lagged" in raw:
            return cls(lagged=int(raw["lagged"]))
        start, end = parse_date(raw["start"]), parse_date(raw["end"])
        if end < start:
            raise ValueError(f"baseline ends ({end}) before it starts ({start})")
        return cls(start, end)

    def history(self, window: int) -> float:
        """Seconds of samples to load at start: all of them for a fixed range (the evaluator keeps only the
        range and the window), else the window and the lag as calendar days."""
        if self.start is not None:
            return ALL_HISTORY
        return trading_days_span(window + self.lagged)

    def split(self, times: list[float], values: list[float], window: int) -> tuple[list[float], list[float]]:
        """The current window (the last ``window`` values) and the baseline values."""
        current = values[-window:]
        if self.start is not None and self.end is not None:
            lo = bisect.bisect_left(times, day_start(self.start))
            hi = bisect.bisect_left(times, day_start(self.end) + DAY)
            return current, values[lo:hi]
        stop = max(len(values) - window, 0)
        return current, values[max(stop - self.lagged, 0) : stop]

    def describe(self, times: list[float], window: int) -> str:
        if self.start is not None:
            return f"{self.start}..{self.end}"
        stop = max(len(times) - window, 0)
        first = max(stop - self.lagged, 0)
        if stop == first:
            return f"the {self.lagged} values before the window (none yet)"
        return f"the {self.lagged} values before the window ({date_of(times[first])}..{date_of(times[stop - 1])})"

    def keep_from(self, times: list[float], window: int) -> int:
        """Index of the oldest value still needed (older ones can be dropped)."""
        if self.start is not None:
            return min(bisect.bisect_left(times, day_start(self.start)), max(len(times) - window, 0))
        return max(len(times) - window - self.lagged, 0)


def trading_days_span(n: int) -> float:
    """A generous number of seconds covering ``n`` trading days: weekends, and holidays (Taiwan closes on about
    15 weekdays a year, Lunar New Year on up to 9 days in a row)."""
    return (n * 7 / 5 * 1.1 + 30) * DAY


class SeriesValues:
    """Per series, values sorted by time; a value at an existing instant replaces it (late data, replays)."""

    def __init__(self) -> None:
        self.series: dict[Labels, tuple[list[float], list[float]]] = {}
        self.changed: set[Labels] = set()

    def add(self, sample: Sample) -> None:
        times, values = self.series.setdefault(sample.labels, ([], []))
        at = bisect.bisect_left(times, sample.ts)
        if at < len(times) and times[at] == sample.ts:
            values[at] = sample.value
        else:
            times.insert(at, sample.ts)
            values.insert(at, sample.value)
        self.changed.add(sample.labels)

    def trim(self, labels: Labels, keep_from: int) -> None:
        times, values = self.series[labels]
        if keep_from > 0:
            del times[:keep_from]
            del values[:keep_from]


def horizon_of(labels: Labels, default: int | None) -> int:
    """The configured horizon, else the series' ``horizon`` label (``5d`` → 5), else 1."""
    if default is not None:
        return default
    found = _HORIZON.fullmatch(dict(labels).get("horizon", ""))
    return int(found.group(1)) if found else 1


def window_text(times: list[float], window: int) -> str:
    used = times[-window:]
    return f"last {len(used)} of {window} values ({date_of(used[0])}..{date_of(used[-1])})" if used else "empty"


def clean(value: float) -> float | None:
    """Six significant digits (a p-value of 2.5e-49 stays one, not 0.0), or ``None`` for NaN and infinities."""
    return float(f"{value:.6g}") if math.isfinite(value) else None


def insufficient(labels: Labels, reason: str, **details: Any) -> Condition:
    pairs = {"status": "insufficient_data", "reason": reason, **details}
    return Condition(labels, False, None, tuple(sorted(pairs.items())))


CONDITIONS = ("floor", "decline", "sign_flip")
# With a baseline, ten trading days: the variance comes from the baseline, the false-alarm rate stays near
# alpha and an IC that drops to 0 is caught in a median of 10 days. Without one the window must carry its own
# variance estimate: 20 days (docs/statistics.md, "Statistical quality").
DEFAULT_WINDOW, DEFAULT_WINDOW_ALONE = 10, 20


class SeriesJudge(Evaluator):
    """An evaluator that keeps each series' values and judges again only the series that got a new one
    (the shape of the ``ic``, ``sharpe`` and ``change_point`` kinds). Subclasses implement :meth:`judge`."""

    def __init__(self) -> None:
        self.values = SeriesValues()
        self.last: dict[Labels, Condition] = {}

    def observe(self, sample: Sample) -> None:
        self.values.add(sample)

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        for labels in self.values.changed:
            self.last[labels] = self.judge(labels, now)
        self.values.changed.clear()
        return list(self.last.values()), None

    def judge(self, labels: Labels, now: float) -> Condition:
        raise NotImplementedError


class WindowedKind(RuleKind):
    """Kinds judging the last ``window`` daily values of one selector, optionally against a ``baseline``."""

    selector: Selector
    window: int
    baseline: Baseline | None

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    delay = 0
    """Trading days after its date before a value exists (an h-day IC: h): loaded as well at start."""

    def history(self) -> float:
        days = self.window + self.delay
        return self.baseline.history(days) if self.baseline is not None else trading_days_span(days)

    def keeps_samples_since(self) -> float | None:
        start = self.baseline.start if self.baseline is not None else None
        return day_start(start) if start is not None else None


HORIZON_ALLOWANCE = 20
"""Trading days loaded for the IC's delay when the horizon comes from the series' ``horizon`` label."""


class IC(WindowedKind):
    kind: ClassVar[str] = "ic"
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "window": {"type": "integer", "minimum": 3, "maximum": 2000},
        "min_obs": {"type": "integer", "minimum": 3},
        "horizon": {"type": "integer", "minimum": 1, "maximum": 260},
        "lag": {"type": "integer", "minimum": 0},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "floor": {"type": "number", "minimum": -1, "maximum": 1},
        "baseline": BASELINE_SCHEMA,
        "conditions": {"type": "array", "items": {"enum": list(CONDITIONS)}, "uniqueItems": True, "minItems": 1},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from({"metric": "alphawatch_ic", **settings})
        self.baseline = Baseline.of(settings.get("baseline"))
        self.window = int(settings.get("window", DEFAULT_WINDOW if self.baseline else DEFAULT_WINDOW_ALONE))
        self.min_obs = min(int(settings.get("min_obs", 20)), self.window)
        self.horizon: int | None = settings.get("horizon")
        self.delay = self.horizon or HORIZON_ALLOWANCE  # a horizon from the series' label is not known here
        self.lag: int | None = settings.get("lag")
        self.alpha = float(settings.get("alpha", 0.05))
        self.floor = float(settings.get("floor", 0.0))
        default = ("floor", "decline", "sign_flip") if self.baseline else ("floor",)
        self.conditions = tuple(settings.get("conditions", default))
        if self.baseline is None and set(self.conditions) & {"decline", "sign_flip"}:
            raise ValueError("conditions decline and sign_flip need a baseline")

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _ICEvaluator(self)


class _ICEvaluator(SeriesJudge):
    def __init__(self, rule: IC) -> None:
        super().__init__()
        self.rule = rule

    def judge(self, labels: Labels, now: float) -> Condition:
        from alphawatch.rules import stats

        rule = self.rule
        times, values = self.values.series[labels]
        baseline = rule.baseline
        if baseline is not None:
            self.values.trim(labels, baseline.keep_from(times, rule.window))
        else:
            self.values.trim(labels, max(len(times) - rule.window, 0))
        horizon = horizon_of(labels, rule.horizon)
        common: dict[str, Any] = {"window": window_text(times, rule.window), "horizon": f"{horizon}d",
                                  "alpha": rule.alpha}  # fmt: skip
        current, base = baseline.split(times, values, rule.window) if baseline else (values[-rule.window :], [])
        test = stats.ic_test(
            current,
            horizon=horizon,
            lag=rule.lag,
            floor=rule.floor,
            alternative="less",
            min_obs=rule.min_obs,
            baseline=base if baseline is not None else None,
        )
        if test.status != stats.OK:
            return insufficient(labels, test.reason, n=test.n, **common)
        details: dict[str, Any] = {
            **common, "status": "ok", "statistic": "mean rank IC", "mean_ic": clean(test.mean),
            "ir": clean(test.ir), "hit_rate": clean(test.hit_rate), "t_stat": clean(test.t_stat),
            "p_value": clean(test.p_value), "n": test.n, "lag": test.lag, "floor": rule.floor, "se": clean(test.se),
            "df": clean(test.df), "variance_from": test.variance,
        }  # fmt: skip
        fired = []
        if "floor" in rule.conditions and test.p_value < rule.alpha:
            fired.append("floor")
        if baseline is not None:
            details["baseline"] = baseline.describe(times, rule.window)
            decline = stats.ic_decline(current, base, horizon=horizon, lag=rule.lag, min_obs=rule.min_obs)
            details["baseline_mean_ic"] = clean(decline.baseline_mean)
            if decline.status == stats.OK:
                details.update(
                    decline_t=clean(decline.t_stat),
                    decline_p_value=clean(decline.p_value),
                    decline_df=clean(decline.df),
                )
                if "decline" in rule.conditions and decline.p_value < rule.alpha:
                    fired.append("decline")
            else:
                details["baseline_status"] = decline.reason
            flip = stats.ic_sign_flip(
                current, base, horizon=horizon, lag=rule.lag, alpha=rule.alpha, min_obs=rule.min_obs
            )
            if flip.status == stats.OK:
                details["sign_flip_p_value"] = clean(flip.p_value)
                if "sign_flip" in rule.conditions and flip.flipped:
                    fired.append("sign_flip")
        details["triggered"] = ",".join(fired)
        return Condition(labels, bool(fired), test.mean, tuple(sorted(details.items())))

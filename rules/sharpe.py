"""``sharpe``: is a model's portfolio still earning? Rolling annualised Sharpe with a non-normal standard error.

Sample-driven on a daily return series (by default ``alphawatch_portfolio_return{model}``); a window of N
trading days is the last N samples. Reported: annualised Sharpe, its Lo (2002) / Mertens (2002) standard
error, skewness, kurtosis, the Probabilistic Sharpe Ratio against ``benchmark`` and the max drawdown.
Conditions (see docs/statistics.md):

- ``psr``: PSR(benchmark) < ``alpha``: confident at 1 − alpha that the true Sharpe is below the benchmark;
- ``degradation``: the Sharpe is significantly (one-sided z, ``alpha``) below the baseline's;
- ``drawdown``: the window's max drawdown exceeds ``max_drawdown``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from alphawatch.rules._base import Condition, Evaluator, Labels, selector_from
from alphawatch.rules.ic import (
    BASELINE_SCHEMA,
    Baseline,
    SeriesJudge,
    WindowedKind,
    clean,
    insufficient,
    window_text,
)

CONDITIONS = ("psr", "degradation", "drawdown")


class Sharpe(WindowedKind):
    kind: ClassVar[str] = "sharpe"
    schema: ClassVar[dict[str, Any]] = {
        "metric": {"type": "string", "minLength": 1},
        "match": {"$ref": "#/$defs/match"},
        "window": {"type": "integer", "minimum": 4, "maximum": 5000},
        "min_obs": {"type": "integer", "minimum": 4},
        "periods_per_year": {"type": "number", "exclusiveMinimum": 0},
        "benchmark": {"type": "number"},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "max_drawdown": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "compounded": {"type": "boolean"},
        "baseline": BASELINE_SCHEMA,
        "conditions": {"type": "array", "items": {"enum": list(CONDITIONS)}, "uniqueItems": True, "minItems": 1},
    }

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from({"metric": "alphawatch_portfolio_return", **settings})
        self.window = int(settings.get("window", 60))
        self.min_obs = min(int(settings.get("min_obs", 20)), self.window)
        self.periods = float(settings.get("periods_per_year", 252))
        self.benchmark = float(settings.get("benchmark", 0.0))
        self.alpha = float(settings.get("alpha", 0.05))
        self.max_drawdown: float | None = settings.get("max_drawdown")
        self.compounded = bool(settings.get("compounded", True))
        self.baseline = Baseline.of(settings.get("baseline"))
        default = ["psr"] + (["degradation"] if self.baseline else []) + (["drawdown"] if self.max_drawdown else [])
        self.conditions = tuple(settings.get("conditions", default))
        if "degradation" in self.conditions and self.baseline is None:
            raise ValueError("condition degradation needs a baseline")
        if "drawdown" in self.conditions and self.max_drawdown is None:
            raise ValueError("condition drawdown needs max_drawdown")

    def new_evaluator(self, started_at: float) -> Evaluator:
        return _SharpeEvaluator(self)


class _SharpeEvaluator(SeriesJudge):
    def __init__(self, rule: Sharpe) -> None:
        super().__init__()
        self.rule = rule

    def judge(self, labels: Labels, now: float) -> Condition:
        from alphawatch.rules import stats

        rule = self.rule
        times, values = self.values.series[labels]
        baseline = rule.baseline
        keep = baseline.keep_from(times, rule.window) if baseline else max(len(times) - rule.window, 0)
        self.values.trim(labels, keep)
        current, base = baseline.split(times, values, rule.window) if baseline else (values[-rule.window :], [])
        common: dict[str, Any] = {"window": window_text(times, rule.window), "alpha": rule.alpha,
                                  "periods_per_year": rule.periods, "benchmark": rule.benchmark}  # fmt: skip
        result = stats.sharpe_stats(
            current, periods_per_year=rule.periods, benchmark=rule.benchmark, min_obs=rule.min_obs,
            compounded=rule.compounded,
        )  # fmt: skip
        if result.status != stats.OK:
            return insufficient(labels, result.reason, n=result.n, **common)
        details: dict[str, Any] = {
            **common, "status": "ok", "statistic": "annualised Sharpe", "sharpe": clean(result.sharpe),
            "se": clean(result.se), "skew": clean(result.skew), "kurtosis": clean(result.kurtosis),
            "psr": clean(result.psr), "max_drawdown": clean(result.max_drawdown), "n": result.n,
        }  # fmt: skip
        fired = []
        if "psr" in rule.conditions and result.psr < rule.alpha:
            fired.append("psr")
        if "drawdown" in rule.conditions and rule.max_drawdown is not None:
            details["max_drawdown_limit"] = rule.max_drawdown
            if result.max_drawdown > rule.max_drawdown:
                fired.append("drawdown")
        if baseline is not None:
            details["baseline"] = baseline.describe(times, rule.window)
            worse = stats.sharpe_degradation(current, base, periods_per_year=rule.periods, min_obs=rule.min_obs)
            details["baseline_sharpe"] = clean(worse.baseline)
            if worse.status == stats.OK:
                details.update(degradation_z=clean(worse.z), degradation_p_value=clean(worse.p_value))
                if "degradation" in rule.conditions and worse.p_value < rule.alpha:
                    fired.append("degradation")
            else:
                details["baseline_status"] = worse.reason
        details["triggered"] = ",".join(fired)
        return Condition(labels, bool(fired), result.sharpe, tuple(sorted(details.items())))

"""``drift``: have a model's input features moved away from a reference? PSI, KS, JS, Wasserstein, chi-square.

Store-reading: the rule wakes on the marker ``alphawatch_features_received{model}`` the daemon emits when a
feature cross-section is committed, then (in :meth:`refresh`, in the store's worker thread) compares the last
``window`` cross-sections of each numeric feature with the reference, and each categorical feature's category
counts by chi-square. The reference is a fixed range of dates (e.g. the training period) or the ``lagged``
cross-sections before the window; it is kept as a :class:`~alphawatch.rules.stats.ReferenceSummary` (quantile
bins, counts and a ``max_sample`` quantile sketch per feature, category counts), never the raw rows, and a fixed
reference is saved in ``md_references`` once the data has moved past it, so a restart does not rebuild it.

Drift per feature by ``method`` (KS and chi-square p-values adjusted together by ``correction``); the condition
is active when a ``key_features`` entry drifted or when the share of drifted features reaches ``max_share``.
Per-feature scores of the latest date go to ``md_drift_scores`` (``GET /api/v1/models/{model}/drift``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from array import array
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from alphawatch.rules._base import Condition, Evaluator, Labels, RuleKind, Sample, Selector, selector_from
from alphawatch.rules.ic import DATE_SCHEMA, clean, insufficient, parse_date

if TYPE_CHECKING:
    from alphawatch.daemon.store import Store
    from alphawatch.rules.stats import ReferenceSummary

METHODS = ("psi", "ks", "js", "wasserstein")
Data = tuple[dict[str, "array[float]"], dict[str, Counter[str]]]
Score = tuple[str, str, float | None, float | None]


class Drift(RuleKind):
    kind: ClassVar[str] = "drift"
    source: ClassVar[str] = "features"
    marker: ClassVar[str] = "alphawatch_features_received"
    required: ClassVar[tuple[str, ...]] = ("reference",)
    schema: ClassVar[dict[str, Any]] = {
        "match": {"$ref": "#/$defs/match"},
        "features": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1},
        "key_features": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "method": {"enum": list(METHODS)},
        "thresholds": {
            "type": "object",
            "properties": {
                "psi": {"type": "number", "exclusiveMinimum": 0},
                "ks_alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "js": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "wasserstein": {"type": "number", "exclusiveMinimum": 0},
                "chi2_alpha": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            },
            "additionalProperties": False,
        },
        "correction": {"enum": ["bh", "bonferroni", "none"]},
        "max_share": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "reference": {
            "oneOf": [
                {"type": "object", "properties": {"start": DATE_SCHEMA, "end": DATE_SCHEMA},
                 "required": ["start", "end"], "additionalProperties": False},
                {"type": "object", "properties": {"lagged": {"type": "integer", "minimum": 1},
                                                  "gap": {"type": "integer", "minimum": 0}},
                 "required": ["lagged"], "additionalProperties": False},
            ]
        },
        "window": {"type": "integer", "minimum": 1, "maximum": 250},
        "min_obs": {"type": "integer", "minimum": 5},
        "bins": {"type": "integer", "minimum": 2, "maximum": 100},
        "max_sample": {"type": "integer", "minimum": 50, "maximum": 100000},
    }  # fmt: skip

    def __init__(self, settings: Mapping[str, Any]) -> None:
        super().__init__(settings)
        self.selector = selector_from({"metric": self.marker, **settings})
        self.features: tuple[str, ...] | None = tuple(settings["features"]) if "features" in settings else None
        self.key_features = tuple(settings.get("key_features", self.default_keys()))
        if self.features is not None and set(self.key_features) - set(self.features):
            raise ValueError("every key feature must be one of features")
        self.method = settings.get("method", "ks")
        t = dict(settings.get("thresholds") or {})
        self.thresholds = (float(t.get("psi", 0.2)), float(t.get("ks_alpha", 0.05)), float(t.get("js", 0.1)),
                           float(t.get("wasserstein", 0.1)))  # fmt: skip
        self.chi2_alpha = float(t.get("chi2_alpha", 0.05))
        self.correction = settings.get("correction", "bh")
        self.max_share: float | None = settings.get("max_share", 0.5)
        ref = settings["reference"]
        self.lagged = int(ref.get("lagged", 0))
        self.gap = int(ref.get("gap", 0))
        self.start = parse_date(ref["start"]) if "start" in ref else None
        self.end = parse_date(ref["end"]) if "end" in ref else None
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"reference ends ({self.end}) before it starts ({self.start})")
        self.window = int(settings.get("window", 5))
        self.min_obs = int(settings.get("min_obs", 30))
        self.bins = int(settings.get("bins", 10))
        self.max_sample = int(settings.get("max_sample", 1000))
        self.key = f"{self.kind}:{hashlib.sha256(repr(self).encode()).hexdigest()[:12]}"

    def default_keys(self) -> tuple[str, ...]:
        return ()

    def selectors(self) -> tuple[Selector, ...]:
        return (self.selector,)

    def alert_series(self, labels: Labels) -> Labels:
        """The model: a drift rule judges a model's whole cross-section, not one series."""
        return (("model", dict(labels).get("model", "")),)

    def history(self) -> float:
        return (self.window * 7 / 5 + 20) * 86400.0

    def new_evaluator(self, started_at: float) -> Evaluator:
        return DriftEvaluator(self)

    def describe_reference(self, dates: list[str]) -> str:
        if self.start is not None:
            return f"{self.start}..{self.end}"
        where = f"{dates[0]}..{dates[-1]}" if dates else "none yet"
        return f"{self.lagged} cross-sections before the window" + (f", gap {self.gap}" if self.gap else "") + (
            f" ({where})")  # fmt: skip

    # data access (worker thread) --------------------------------------------------------------------------
    def load(self, db: sqlite3.Connection, model: str, first: str, last: str) -> Data:
        """Values per numeric feature and category counts per categorical feature, dates ``first..last``."""
        data, _ = self.load_window(db, model, first, last, persistence_from=None)
        return data

    def load_window(
        self, db: sqlite3.Connection, model: str, first: str, last: str, persistence_from: str | None
    ) -> tuple[Data, dict[str, float]]:
        """The values of dates ``first..last`` (as :meth:`load`) and, over ``persistence_from..last``, how much each
        numeric feature persists from one date to the next (``stats.lag1_persistence``; features it cannot be
        told for are left out), in one read."""
        numeric: dict[str, array[float]] = {}
        categorical: dict[str, Counter[str]] = {}
        panel: dict[str, tuple[list[str], list[str], list[float]]] = {}
        wanted = set(self.features) if self.features is not None else None
        since = first if persistence_from is None else min(first, persistence_from)
        cursor = db.execute(
            "SELECT feature, date, asset, num, cat FROM md_features WHERE model = ? AND date BETWEEN ? AND ?",
            (model, since, last),
        )
        for feature, day, asset, num, cat in cursor:
            if wanted is not None and feature not in wanted:
                continue
            if persistence_from is not None and num is not None:
                days, assets, values = panel.setdefault(feature, ([], [], []))
                days.append(day)
                assets.append(asset)
                values.append(num)
            if day < first:
                continue
            if cat is not None:
                categorical.setdefault(feature, Counter())[cat] += 1
            else:
                numeric.setdefault(feature, array("d")).append(float("nan") if num is None else num)
        return (numeric, categorical), persistence_by_feature(panel)


class DriftEvaluator(Evaluator):
    reads_store: ClassVar[bool] = True

    def __init__(self, rule: Drift) -> None:
        self.rule = rule
        self.pending: dict[str, Labels] = {}
        self.last: dict[Labels, Condition] = {}
        self.references: dict[str, tuple[str, ReferenceSummary | None, dict[str, Counter[str]]]] = {}

    def observe(self, sample: Sample) -> None:
        key = self.rule.alert_series(sample.labels)
        self.pending[key[0][1]] = key

    async def refresh(self, store: Store, now: float) -> None:
        while self.pending:
            model, labels = self.pending.popitem()
            self.last[labels] = await store.run(partial(self._judge, model=model, labels=labels))

    def evaluate(self, now: float, is_firing: Mapping[Labels, bool]) -> tuple[list[Condition], float | None]:
        return list(self.last.values()), None

    # worker thread ----------------------------------------------------------------------------------------
    def _judge(self, db: sqlite3.Connection, model: str, labels: Labels) -> Condition:
        rule = self.rule
        sql = "SELECT date, n, updated_at FROM md_cross_sections WHERE kind = ? AND model = ? ORDER BY date"
        sections = {day: (n, at) for day, n, at in db.execute(sql, (rule.source, model))}
        dates = list(sections)
        if rule.start is not None and rule.end is not None:
            after = [d for d in dates if d > rule.end.isoformat()]
            current = after[-rule.window :]
            ref_dates = [d for d in dates if rule.start.isoformat() <= d <= rule.end.isoformat()]
        else:
            current = dates[-rule.window :]
            stop = max(len(dates) - rule.window - rule.gap, 0)
            ref_dates = dates[max(stop - rule.lagged, 0) : stop]
        common = {"window": f"{current[0]}..{current[-1]} ({len(current)} dates)" if current else "no dates yet",
                  "reference": rule.describe_reference(ref_dates), "method": rule.method}  # fmt: skip
        if not current or not ref_dates:
            return insufficient(labels, "no cross-sections in the reference or the window yet", **common)
        # what the reference holds, not only its dates: rows added to them later (features pushed one after the
        # other, a backfill) make it another reference
        rows, written = sum(sections[d][0] for d in ref_dates), max(sections[d][1] for d in ref_dates)
        summary, ref_cats = self._reference(db, model, ref_dates, current, f"{rows}:{written!r}")
        before = dates[max(dates.index(current[0]) - 1, 0)]  # the date before the window too: one date has pairs
        (numeric, categorical), persistence = rule.load_window(db, model, current[0], current[-1], before)
        fractions = _counted(summary, persistence, len(ref_dates), len(current))
        return self._compare(
            db, model, labels, summary, ref_cats, numeric, categorical, current, common, fractions, persistence
        )

    def _reference(
        self, db: sqlite3.Connection, model: str, ref_dates: list[str], current: list[str], content: str
    ) -> tuple[ReferenceSummary | None, dict[str, Counter[str]]]:
        from alphawatch.rules.stats import ReferenceSummary

        rule = self.rule
        same_range = f"{rule.key}:{model}:{ref_dates[0]}:{ref_dates[-1]}"
        key = f"{same_range}:{len(ref_dates)}:{content}"
        cached = self.references.get(model)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        fixed = rule.start is not None
        row = db.execute("SELECT summary FROM md_references WHERE key = ?", (key,)).fetchone() if fixed else None
        if row is not None:
            saved = json.loads(row[0])
            summary = ReferenceSummary.from_dict(saved["numeric"]) if saved["numeric"] else None
            cats = {f: Counter(c) for f, c in saved["categorical"].items()}
        else:
            numeric, cats = rule.load(db, model, ref_dates[0], ref_dates[-1])
            summary = _summarise(numeric, rule.bins, rule.max_sample)
            if fixed and current and current[0] > ref_dates[-1]:  # the data moved past the reference: it is final
                text = json.dumps({"numeric": summary.to_dict() if summary else None, "categorical": cats})
                with db:  # (copies saved before rows were added to these dates go)
                    db.execute(
                        "DELETE FROM md_references WHERE key > ? AND key < ?", (same_range + ":", same_range + ";")
                    )
                    db.execute("INSERT OR REPLACE INTO md_references VALUES (?, ?, ?)", (key, text, time.time()))
        self.references[model] = (key, summary, cats)
        return summary, cats

    def _compare(
        self, db: sqlite3.Connection, model: str, labels: Labels, summary: ReferenceSummary | None,
        ref_cats: dict[str, Counter[str]], numeric: dict[str, array[float]], categorical: dict[str, Counter[str]],
        current: list[str], common: dict[str, Any], fractions: tuple[list[float], list[float]] | None = None,
        persistence: Mapping[str, float] | None = None,
    ) -> Condition:  # fmt: skip
        import numpy as np

        from alphawatch.rules import stats

        rule = self.rule
        psi_t, ks_alpha, js_t, w_t = rule.thresholds
        names: list[str] = []
        usable: list[bool] = []
        pvalues: list[float] = []
        scores: list[Score] = []
        flags: list[bool] = []
        report = None
        if summary is not None:
            width = max((len(numeric.get(n, ())) for n in summary.names), default=0)
            matrix = np.full((max(width, 1), len(summary.names)), np.nan)
            for f, name in enumerate(summary.names):
                values = numeric.get(name)
                if values:
                    matrix[: len(values), f] = np.frombuffer(values, dtype=np.float64)
            thresholds = stats.DriftThresholds(psi_t, ks_alpha, js_t, w_t)
            report = stats.feature_drift(summary, matrix, thresholds=thresholds, correction="none",
                                         min_obs=rule.min_obs, ks_fractions=fractions)  # fmt: skip
            names += report.names
            usable += [s == stats.OK for s in report.status]
            pvalues += report.ks_pvalue.tolist()
            for f, name in enumerate(report.names):
                scores += [(name, "psi", _f(report.psi[f]), None), (name, "js", _f(report.js[f]), None),
                           (name, "wasserstein", _f(report.wasserstein[f]), None),
                           (name, "ks", _f(report.ks_statistic[f]), _f(report.ks_pvalue[f]))]  # fmt: skip
        chi_names = sorted(ref_cats)
        for name in chi_names:
            reference: dict[Hashable, int] = {}
            reference.update(ref_cats[name])
            chi = stats.chi_square_drift(reference, categorical.get(name, Counter()), min_obs=rule.min_obs)
            names.append(name)
            usable.append(chi.status == stats.OK)
            pvalues.append(chi.p_value)
            scores.append((name, "chi2", _f(chi.statistic), _f(chi.p_value)))
        if not names:
            return insufficient(labels, "the reference has no features", **common)
        # of one kind in the reference (a categorical feature's missing values count as numeric NaN there)
        held = {name: int(summary.n[f]) for f, name in enumerate(summary.names)} if summary is not None else {}
        numbers_only = [name for name, n in held.items() if n and name not in ref_cats]
        categories_only = [name for name in chi_names if not held.get(name)]
        changed = _kind_changes(numbers_only, categories_only, numeric, categorical)
        for name in changed:  # a feature whose values changed kind has drifted, whatever its statistics say
            pvalues[names.index(name)] = 0.0
            usable[names.index(name)] = True
        adjusted = stats.adjust_pvalues(np.array(pvalues, dtype=np.float64), rule.correction).tolist()
        n_numeric = len(report.names) if report is not None else 0
        drifted = None  # the numeric features' verdicts by the rule's method, computed once
        for i in range(len(names)):
            if not usable[i]:
                flags.append(False)
            elif i >= n_numeric:
                flags.append(adjusted[i] < rule.chi2_alpha)
            elif rule.method == "ks":
                flags.append(adjusted[i] < ks_alpha)
            else:
                assert report is not None
                if drifted is None:
                    drifted = report.drifted(rule.method)
                flags.append(bool(drifted[i]))
        for name in changed:
            flags[names.index(name)] = True
        if changed:
            common = {**common, "kind_changed": "; ".join(f"{n}: {why}" for n, why in changed.items())}
        if persistence:  # the most persistent features, whose KS p-values count fewer independent values
            top = sorted(persistence.items(), key=lambda item: -item[1])[:3]
            common = {**common, "persistence": ", ".join(f"{name}={phi:.2f}" for name, phi in top)}
        self._save_scores(db, model, current[-1], scores, dict(zip(names, adjusted, strict=True)))
        return _decide(rule, labels, names, usable, flags, adjusted, report, common)

    def _save_scores(
        self, db: sqlite3.Connection, model: str, day: str, scores: Iterable[Score], adjusted: dict[str, float],
    ) -> None:  # fmt: skip
        rows = [(self.rule.key, model, day, name, method, score, _f(adjusted[name]) if p is not None else None)
                for name, method, score, p in scores]  # fmt: skip
        with db:
            db.executemany("INSERT OR REPLACE INTO md_drift_scores VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def _decide(
    rule: Drift, labels: Labels, names: list[str], usable: list[bool], flags: list[bool], adjusted: list[float],
    report: Any, common: dict[str, Any],
) -> Condition:  # fmt: skip
    n_usable = sum(usable)
    if not n_usable:
        return insufficient(labels, "no feature has enough data on both sides", **common)
    drifted = [n for n, f in zip(names, flags, strict=True) if f]
    share = len(drifted) / n_usable
    keys_hit = [k for k in rule.key_features if k in drifted]
    keys_missing = [k for k in rule.key_features if k not in names or not usable[names.index(k)]]
    active = bool(keys_hit) or (rule.max_share is not None and share >= rule.max_share and bool(drifted))
    worst = sorted(range(len(names)), key=lambda i: adjusted[i] if adjusted[i] == adjusted[i] else 2.0)[:5]
    details: dict[str, Any] = {
        **common, "status": "ok", "statistic": f"share of drifted features ({rule.method})",
        "share": round(share, 4), "max_share": rule.max_share, "features": n_usable, "drifted": len(drifted),
        "drifted_features": ", ".join(drifted[:5]) + (f" (+{len(drifted) - 5} more)" if len(drifted) > 5 else ""),
        "key_features_drifted": ", ".join(keys_hit), "correction": rule.correction,
        "smallest_p_values": ", ".join(f"{names[i]}={adjusted[i]:.3g}" for i in worst if adjusted[i] == adjusted[i]),
    }  # fmt: skip
    if keys_missing:
        details["key_features_without_data"] = ", ".join(keys_missing)
    if report is not None:
        for name in (keys_hit or drifted)[:3]:
            if name in report.names:
                f = report.names.index(name)
                details[f"{name}.psi"] = _f(report.psi[f])
                details[f"{name}.ks_p"] = _f(adjusted[names.index(name)])
                details[f"{name}.wasserstein"] = _f(report.wasserstein[f])
    return Condition(labels, active, share, tuple(sorted(details.items())))


def _kind_changes(
    numbers_only: list[str], categories_only: list[str], numeric: dict[str, array[float]],
    categorical: dict[str, Counter[str]],
) -> dict[str, str]:  # fmt: skip
    """Features of the reference that now get values of the other kind (a feed writing ``ERR`` into a number
    column, category codes sent as numbers): name → what came, in words."""
    out: dict[str, str] = {}
    for name in numbers_only:
        strays = categorical.get(name)
        if strays:
            total = sum(strays.values()) + len(numeric.get(name, ()))
            first = ", ".join(repr(c) for c, _ in strays.most_common(3))
            out[name] = f"numeric in the reference, {sum(strays.values())} of {total} values now categories ({first})"
    for name in categories_only:
        numbers = [v for v in numeric.get(name, ()) if v == v]  # (NaN: a missing value, of no kind)
        if numbers:
            total = len(numbers) + sum(categorical.get(name, Counter()).values())
            first = ", ".join(f"{v:g}" for v in numbers[:3])
            out[name] = f"categorical in the reference, {len(numbers)} of {total} values now numbers ({first})"
    return out


def persistence_by_feature(rows: Mapping[str, tuple[list[str], list[str], list[float]]]) -> dict[str, float]:
    from alphawatch.rules.stats import lag1_persistence

    out: dict[str, float] = {}
    for name, (days, assets, values) in rows.items():
        order = {day: i for i, day in enumerate(sorted(set(days)))}  # (dates are ISO text: in order as text)
        phi = lag1_persistence(values, [order[day] for day in days], assets)
        if phi is not None:
            out[name] = phi
    return out


def _counted(
    summary: ReferenceSummary | None, persistence: Mapping[str, float], ref_dates: int, window: int
) -> tuple[list[float], list[float]] | None:
    """Per feature of the reference, the share of its reference and of its window values that counts in a KS
    test (``stats.effective_fraction``), or ``None`` when no feature persists."""
    from alphawatch.rules.stats import effective_fraction

    if summary is None or not persistence:
        return None
    phis = [persistence.get(name, 0.0) for name in summary.names]
    return [effective_fraction(p, ref_dates) for p in phis], [effective_fraction(p, window) for p in phis]


def _summarise(numeric: dict[str, array[float]], bins: int, max_sample: int) -> ReferenceSummary | None:
    """One ReferenceSummary over every numeric feature, built a feature at a time (bounded memory)."""
    import numpy as np

    from alphawatch.rules.stats import ReferenceSummary

    parts = [
        ReferenceSummary.from_rows(np.frombuffer(numeric[name], dtype=np.float64)[:, None], [name], bins=bins,
                                   max_sample=max_sample)
        for name in sorted(numeric)
    ]  # fmt: skip
    if not parts:
        return None
    width = max(p.sample.shape[1] for p in parts)
    sample = np.full((len(parts), width), np.nan)
    for i, p in enumerate(parts):
        sample[i, : p.sample.shape[1]] = p.sample[0]
    return ReferenceSummary(
        tuple(p.names[0] for p in parts), np.concatenate([p.n for p in parts]),
        np.concatenate([p.mean for p in parts]), np.concatenate([p.std for p in parts]),
        np.vstack([p.edges for p in parts]), np.vstack([p.counts for p in parts]), sample,
        np.concatenate([p.sample_n for p in parts]), all(p.exact for p in parts),
    )  # fmt: skip


def _f(value: Any) -> float | None:
    return clean(float(value))

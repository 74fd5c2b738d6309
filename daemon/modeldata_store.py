"""Storage of model data and the series derived from it, in the daemon's SQLite file.

:func:`commit` writes a validated :class:`~alphawatch.daemon.modeldata.ModelBatch` and, in the same transaction,
computes what became computable: the daily Spearman rank IC of every (model, date, horizon) whose scores and
returns now both exist (again when late data adds assets), stored in ``md_ic``. It returns the derived values
as ordinary samples for the rule engine, each stamped at the date's close (13:30 Asia/Taipei):

- ``alphawatch_ic{model, horizon="5d"}``: the daily rank IC (dates with fewer than ``min_assets`` pairs or a
  constant side give no sample; ``md_ic`` keeps them with a NULL IC);
- ``alphawatch_portfolio_return{model}``;
- ``alphawatch_prediction_count{model}`` and ``alphawatch_features_received{model}``: the size of the date's
  cross-section (the markers the ``prediction_drift`` and ``drift`` rules wake on, and what ``absence`` watches);
- ``alphawatch_returns_received{horizon}``: how many assets have that date's returns.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from alphawatch.daemon.calendar import TAIPEI
from alphawatch.daemon.modeldata import ModelBatch
from alphawatch.rules import Sample, labels_of

IC_METRIC = "alphawatch_ic"
PORTFOLIO_METRIC = "alphawatch_portfolio_return"
PREDICTIONS_METRIC = "alphawatch_prediction_count"
FEATURES_METRIC = "alphawatch_features_received"
RETURNS_METRIC = "alphawatch_returns_received"
CLOSE = time(13, 30)
MIN_ASSETS = 10


def close_ts(day: str) -> float:
    """UTC epoch of the 13:30 Asia/Taipei close of the ISO date ``day``."""
    return datetime.combine(date.fromisoformat(day), CLOSE, TAIPEI).timestamp()


def horizon_label(horizon: int) -> str:
    return f"{horizon}d"


@dataclass
class Derived:
    """What a commit derived: samples for the store and the engine, and how many ICs it computed."""

    samples: list[Sample] = field(default_factory=list)
    ics: int = 0
    """Daily ICs computed (not those left empty: too few assets with both a prediction and a return)."""
    no_ic: list[dict[str, Any]] = field(default_factory=list)
    """The daily ICs left empty, with how many assets matched (asset codes spelled differently in the two?)."""

    def add(self, metric: str, labels: dict[str, str], day: str, value: float) -> None:
        self.samples.append(Sample(metric, labels_of(labels), close_ts(day), value))


def commit(db: sqlite3.Connection, batch: ModelBatch, now: float, min_assets: int = MIN_ASSETS) -> Derived:
    """Store ``batch`` and the ICs it makes computable, in one transaction (runs in the store's thread)."""
    out = Derived()
    with db:
        if batch.predictions:
            db.executemany("INSERT OR REPLACE INTO md_predictions VALUES (?, ?, ?, ?)", batch.predictions)
        if batch.returns:
            db.executemany(
                "INSERT OR REPLACE INTO md_returns (horizon, date, asset, ret) VALUES (?, ?, ?, ?)", batch.returns
            )
        if batch.portfolio:
            db.executemany("INSERT OR REPLACE INTO md_portfolio VALUES (?, ?, ?)", batch.portfolio)
            for model, day in {(m, d) for m, d, _ in batch.portfolio}:
                db.execute("DELETE FROM md_positions WHERE model = ? AND date = ?", (model, day))
            db.executemany("INSERT INTO md_positions VALUES (?, ?, ?, ?)", batch.positions)
            for model, day, ret in batch.portfolio:
                out.add(PORTFOLIO_METRIC, {"model": model}, day, ret)
        if batch.features:
            db.executemany("INSERT OR REPLACE INTO md_features VALUES (?, ?, ?, ?, ?, ?)", batch.features)
        keys: set[tuple[str, str, int]] = set()
        for model, day in sorted({(m, d) for m, d, _, _ in batch.predictions}):
            n = _count(db, "SELECT count(*) FROM md_predictions WHERE model = ? AND date = ?", model, day)
            _cross_section(db, "predictions", model, day, n, now)
            out.add(PREDICTIONS_METRIC, {"model": model}, day, n)
            for (horizon,) in db.execute("SELECT DISTINCT horizon FROM md_returns WHERE date = ?", (day,)):
                keys.add((model, day, horizon))
        for model, day in sorted({(m, d) for m, d, _, _, _, _ in batch.features}):
            n = _count(db, "SELECT count(*) FROM md_features WHERE model = ? AND date = ?", model, day)
            _cross_section(db, "features", model, day, n, now)
            out.add(FEATURES_METRIC, {"model": model}, day, n)
        for horizon, day in sorted({(h, d) for h, d, _, _ in batch.returns}):
            n = _count(db, "SELECT count(*) FROM md_returns WHERE date = ? AND horizon = ?", day, horizon)
            out.add(RETURNS_METRIC, {"horizon": horizon_label(horizon)}, day, n)
            models = db.execute(
                "SELECT model FROM md_cross_sections WHERE kind = 'predictions' AND date = ?", (day,)
            ).fetchall()
            keys.update((model, day, horizon) for (model,) in models)
        for model, day, horizon in sorted(keys):
            ic, n = _daily_ic(db, model, day, horizon, min_assets)
            db.execute(
                "INSERT OR REPLACE INTO md_ic (model, horizon, date, ic, assets, computed_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (model, horizon, day, ic, n, now),
            )
            if ic is not None:
                out.ics += 1
                out.add(IC_METRIC, {"model": model, "horizon": horizon_label(horizon)}, day, ic)
            else:
                out.no_ic.append({"model": model, "date": day, "horizon": horizon_label(horizon), "matched": n,
                                  "needed": min_assets})  # fmt: skip
    return out


def _count(db: sqlite3.Connection, sql: str, *params: object) -> int:
    return int(db.execute(sql, params).fetchone()[0])


def _cross_section(db: sqlite3.Connection, kind: str, model: str, day: str, n: int, now: float) -> None:
    db.execute("INSERT OR REPLACE INTO md_cross_sections VALUES (?, ?, ?, ?, ?)", (kind, model, day, n, now))


def _daily_ic(db: sqlite3.Connection, model: str, day: str, horizon: int, min_assets: int) -> tuple[float | None, int]:
    import numpy as np

    from alphawatch.rules.stats import rank_ic

    pairs = db.execute(
        "SELECT p.score, r.ret FROM md_predictions p JOIN md_returns r"
        " ON r.date = p.date AND r.horizon = ? AND r.asset = p.asset WHERE p.model = ? AND p.date = ?",
        (horizon, model, day),
    ).fetchall()
    if not pairs:
        return None, 0
    data = np.array(pairs, dtype=np.float64)
    result = rank_ic(data[:, 0], data[:, 1], min_assets=min_assets)
    value = float(result.ic[0])
    return (value if np.isfinite(value) else None), int(result.n_assets[0])


# reads for the API -------------------------------------------------------------------------------------------


def ic_series(db: sqlite3.Connection, model: str, horizon: int) -> list[tuple[str, float | None, int]]:
    rows = db.execute(
        "SELECT date, ic, assets FROM md_ic WHERE model = ? AND horizon = ? ORDER BY date", (model, horizon)
    ).fetchall()
    return [(d, ic, n) for d, ic, n in rows]


def portfolio_series(db: sqlite3.Connection, model: str) -> list[tuple[str, float]]:
    return [(d, r) for d, r in db.execute("SELECT date, ret FROM md_portfolio WHERE model = ? ORDER BY date", (model,))]


def models(db: sqlite3.Connection) -> dict[str, dict[str, object]]:
    """Every model with data: its first and last prediction and feature dates, IC horizons and portfolio days."""
    out: dict[str, dict[str, object]] = defaultdict(dict)
    for kind, model, first, last, n in db.execute(
        "SELECT kind, model, min(date), max(date), count(*) FROM md_cross_sections GROUP BY kind, model"
    ):
        out[model][kind] = {"first": first, "last": last, "dates": n}
    for model, first, last, n in db.execute(
        "SELECT model, min(date), max(date), count(*) FROM md_portfolio GROUP BY model"
    ):
        out[model]["portfolio"] = {"first": first, "last": last, "dates": n}
    for model, horizons in db.execute("SELECT model, group_concat(DISTINCT horizon) FROM md_ic GROUP BY model"):
        out[model]["ic_horizons"] = sorted(int(h) for h in str(horizons).split(","))
    return dict(out)


_BY_KIND = {"predictions": "md_predictions", "features": "md_features", "positions": "md_positions"}


def purge_before(db: sqlite3.Connection, cutoff: str, sections: int = 20) -> int:
    """Delete raw model data dated before ``cutoff`` (an ISO date), a few cross-sections per call; the daily IC
    (``md_ic``) and the saved drift references stay. Returns how many rows went: loop until it returns 0."""
    gone = 0
    with db:
        old = db.execute(
            "SELECT kind, model, date FROM md_cross_sections WHERE date < ? LIMIT ?", (cutoff, sections)
        ).fetchall()
        for kind, model, day in old:
            table = _BY_KIND.get(kind)
            if table is not None:  # each delete is one (model, date) prefix of the primary key
                gone += db.execute(f"DELETE FROM {table} WHERE model = ? AND date = ?", (model, day)).rowcount
            gone += db.execute(
                "DELETE FROM md_cross_sections WHERE kind = ? AND model = ? AND date = ?", (kind, model, day)
            ).rowcount
        models = db.execute("SELECT model FROM md_cross_sections UNION SELECT model FROM md_portfolio").fetchall()
        sources = db.execute("SELECT DISTINCT source FROM md_drift_scores").fetchall()  # one per drift rule
        for (model,) in models:
            gone += db.execute("DELETE FROM md_portfolio WHERE model = ? AND date < ?", (model, cutoff)).rowcount
            gone += db.execute("DELETE FROM md_positions WHERE model = ? AND date < ?", (model, cutoff)).rowcount
            for (source,) in sources:
                gone += db.execute(
                    "DELETE FROM md_drift_scores WHERE source = ? AND model = ? AND date < ?", (source, model, cutoff)
                ).rowcount
        row = db.execute("SELECT date FROM md_returns WHERE date < ? LIMIT 1", (cutoff,)).fetchone()
        if row is not None:
            gone += db.execute("DELETE FROM md_returns WHERE date = ?", (row[0],)).rowcount
    return gone

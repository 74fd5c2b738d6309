"""``prediction_drift``: has the distribution of a model's scores moved? The ``drift`` methods on one column.

It wakes on ``alphawatch_prediction_count{model}`` (emitted when a prediction cross-section is committed) and
compares the scores of the last ``window`` dates with the reference (PSI, KS, JS, Wasserstein; see ``drift``).
The single "feature" is ``score``, which is also the key feature: any drift of it is an alert.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import Counter
from typing import Any, ClassVar

from alphawatch.rules.drift import Data, Drift, persistence_by_feature


class PredictionDrift(Drift):
    kind: ClassVar[str] = "prediction_drift"
    source: ClassVar[str] = "predictions"
    marker: ClassVar[str] = "alphawatch_prediction_count"
    schema: ClassVar[dict[str, Any]] = {
        k: v for k, v in Drift.schema.items() if k not in ("features", "key_features", "max_share")
    }

    def default_keys(self) -> tuple[str, ...]:
        return ("score",)

    def load_window(
        self, db: sqlite3.Connection, model: str, first: str, last: str, persistence_from: str | None
    ) -> tuple[Data, dict[str, float]]:
        values = array("d")
        days: list[str] = []
        assets: list[str] = []
        scores: list[float] = []
        since = first if persistence_from is None else min(first, persistence_from)
        for day, asset, score in db.execute(
            "SELECT date, asset, score FROM md_predictions WHERE model = ? AND date BETWEEN ? AND ?",
            (model, since, last),
        ):
            if persistence_from is not None:
                days.append(day)
                assets.append(asset)
                scores.append(score)
            if day >= first:
                values.append(score)
        categorical: dict[str, Counter[str]] = {}
        persistence = persistence_by_feature({"score": (days, assets, scores)})
        return (({"score": values} if values else {}), categorical), persistence

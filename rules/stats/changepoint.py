"""Change-point detectors for a derived series (daily IC, rolling Sharpe, a drift score).

Both are streaming: the state is a small mutable dataclass updated one value at a time (the daemon's rule runs
the detector again over the values it keeps; the JSON round trip serves ``alphawatch stats``). NaN values are
skipped (no update, no alarm).

- Tabular CUSUM (Page 1954): with ``z = (x − μ0)/σ``,
  ``S⁺ = max(0, S⁺ + z − k)``, ``S⁻ = max(0, S⁻ − z − k)``; alarm when ``S⁺ > h`` (upward) or ``S⁻ > h``
  (downward). ``k`` and ``h`` are in units of σ; both sums restart at 0 after an alarm.
- Page–Hinkley (Page 1954; Hinkley 1971): with ``x̄_t`` the running mean,
  ``m⁺_T = Σ (x_t − x̄_t − δ)``, alarm when ``m⁺_T − min m⁺ > λ`` (increase); mirrored
  ``m⁻_T = Σ (x_t − x̄_t + δ)``, alarm when ``max m⁻ − m⁻_T > λ`` (decrease). No alarm before ``min_obs``
  values; the state restarts after an alarm.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Cusum", "Direction", "PageHinkley", "run_detector"]

Direction = Literal["up", "down", "both"]


@dataclass
class Cusum:
    """Two-sided tabular CUSUM around a target mean ``mean`` with scale ``std``."""

    mean: float
    std: float
    k: float = 0.5
    h: float = 5.0
    direction: Direction = "both"
    s_up: float = 0.0
    s_down: float = 0.0
    n: int = 0

    @classmethod
    def from_baseline(
        cls, baseline: ArrayLike, *, k: float = 0.5, h: float = 5.0, direction: Direction = "both"
    ) -> Cusum:
        """Target mean and std (ddof 1) estimated on a baseline window (NaN skipped)."""
        x = np.asarray(baseline, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size < 2 or not float(x.std(ddof=1)) > 0:
            raise ValueError("the baseline needs at least two distinct finite values")
        return cls(float(x.mean()), float(x.std(ddof=1)), k, h, direction)

    def update(self, x: float) -> bool:
        """Add one value; True when it raises an alarm (the sums then restart)."""
        if not math.isfinite(x):
            return False
        if not self.std > 0:
            raise ValueError("std must be positive")
        z = (x - self.mean) / self.std
        self.n += 1
        self.s_up = max(0.0, self.s_up + z - self.k)
        self.s_down = max(0.0, self.s_down - z - self.k)
        alarm = (self.direction != "down" and self.s_up > self.h) or (self.direction != "up" and self.s_down > self.h)
        if alarm:
            self.s_up = self.s_down = 0.0
        return alarm

    def to_json(self) -> str:
        return json.dumps({"kind": "cusum", **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> Cusum:
        data = json.loads(text)
        if data.pop("kind", "cusum") != "cusum":
            raise ValueError("not a CUSUM state")
        return cls(**data)


@dataclass
class PageHinkley:
    """Page–Hinkley test on the running mean; ``delta`` is the tolerated change, ``lam`` the threshold."""

    delta: float = 0.005
    lam: float = 0.5
    direction: Direction = "both"
    min_obs: int = 30
    n: int = 0
    mean: float = 0.0
    m_up: float = 0.0
    min_up: float = 0.0
    m_down: float = 0.0
    max_down: float = 0.0

    def update(self, x: float) -> bool:
        """Add one value; True when it raises an alarm (the state then restarts)."""
        if not math.isfinite(x):
            return False
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.m_up += x - self.mean - self.delta
        self.min_up = min(self.min_up, self.m_up)
        self.m_down += x - self.mean + self.delta
        self.max_down = max(self.max_down, self.m_down)
        if self.n < self.min_obs:
            return False
        up = self.direction != "down" and self.m_up - self.min_up > self.lam
        down = self.direction != "up" and self.max_down - self.m_down > self.lam
        if up or down:
            self.n, self.mean = 0, 0.0
            self.m_up = self.min_up = self.m_down = self.max_down = 0.0
            return True
        return False

    def to_json(self) -> str:
        return json.dumps({"kind": "page_hinkley", **asdict(self)})

    @classmethod
    def from_json(cls, text: str) -> PageHinkley:
        data = json.loads(text)
        if data.pop("kind", "page_hinkley") != "page_hinkley":
            raise ValueError("not a Page–Hinkley state")
        return cls(**data)


def run_detector(detector: Cusum | PageHinkley, series: Iterable[float]) -> list[int]:
    """Feed a whole series to a detector; the indices at which it alarmed."""
    return [i for i, x in enumerate(series) if detector.update(float(x))]

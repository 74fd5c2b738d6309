"""Statistical kernels of the ``ic``, ``sharpe``, ``drift``, ``prediction_drift`` and ``change_point`` rules.

numpy and ``scipy.special`` only at run time (never ``scipy.stats`` or pandas). Each result carries
``status`` (``"ok"`` or ``"insufficient_data"``) and a ``reason``; see ``docs/statistics.md``.
"""

from __future__ import annotations

from .categorical import ChiSquareResult, chi_square_drift
from .changepoint import Cusum, PageHinkley, run_detector
from .drift import DriftDecision, DriftMethod, DriftReport, DriftThresholds, decide_drift, feature_drift
from .hac import bartlett_bias_and_df, default_lag, newey_west_long_run_variance, window_lag
from .ic import (
    DailyIC,
    ICDecline,
    ICSignFlip,
    ICTest,
    RollingIC,
    ic_decline,
    ic_sign_flip,
    ic_test,
    rank_ic,
    rolling_ic,
)
from .ks import kolmogorov_sf, ks_2samp_pvalue
from .multiple import adjust_pvalues, benjamini_hochberg, bonferroni
from .persistence import effective_fraction, lag1_persistence
from .ranks import average_ranks
from .reference import ReferenceSummary
from .result import INSUFFICIENT, OK, Status
from .sharpe import SharpeDegradation, SharpeStats, max_drawdown, rolling_sharpe, sharpe_degradation, sharpe_stats

__all__ = [
    "INSUFFICIENT",
    "OK",
    "ChiSquareResult",
    "Cusum",
    "DailyIC",
    "DriftDecision",
    "DriftMethod",
    "DriftReport",
    "DriftThresholds",
    "ICDecline",
    "ICSignFlip",
    "ICTest",
    "PageHinkley",
    "ReferenceSummary",
    "RollingIC",
    "SharpeDegradation",
    "SharpeStats",
    "Status",
    "adjust_pvalues",
    "average_ranks",
    "bartlett_bias_and_df",
    "benjamini_hochberg",
    "bonferroni",
    "chi_square_drift",
    "decide_drift",
    "default_lag",
    "effective_fraction",
    "feature_drift",
    "ic_decline",
    "ic_sign_flip",
    "ic_test",
    "kolmogorov_sf",
    "ks_2samp_pvalue",
    "lag1_persistence",
    "max_drawdown",
    "newey_west_long_run_variance",
    "rank_ic",
    "rolling_ic",
    "rolling_sharpe",
    "run_detector",
    "sharpe_degradation",
    "sharpe_stats",
    "window_lag",
]

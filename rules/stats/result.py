"""The status every statistic carries: a value, or a reason why there is none.

Kernels never raise on degenerate data (too few observations, a constant series, all-NaN input): they return
a result whose ``status`` is ``"insufficient_data"`` and whose ``reason`` says what was missing, with the
numeric fields set to NaN. Rule kinds must not alert on such a result.
"""

from __future__ import annotations

from typing import Final, Literal

Status = Literal["ok", "insufficient_data"]

OK: Final = "ok"
INSUFFICIENT: Final = "insufficient_data"

__all__ = ["INSUFFICIENT", "OK", "Status"]

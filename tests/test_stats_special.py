"""The p-value functions the rules use at run time, in plain Python, against scipy.special (the oracle)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import scipy.special as sp

from alphawatch.rules.stats import _special

DFS = (0.5, 1, 2, 3, 4.5, 9, 19, 30, 99, 100, 101, 250, 1000, 1e4, 1e5, 1e6)
TS = (-50, -10, -3, -2.5, -1, -1e-3, 0, 1e-3, 0.5, 1, 2.5, 5, 10, 50)


def close(ours: float, oracle: float) -> bool:
    return abs(ours - oracle) <= 1e-12 or abs(ours - oracle) <= 1e-10 * abs(oracle)


@pytest.mark.parametrize(("df", "t"), list(itertools.product(DFS, TS)))
def test_student_t_cdf(df: float, t: float) -> None:
    assert close(_special.stdtr(df, t), float(sp.stdtr(df, t)))


@pytest.mark.parametrize(
    ("dof", "x"), list(itertools.product((1, 2, 3, 5, 10, 49, 100, 1000), (1e-6, 0.5, 2, 10, 50, 200, 3000)))
)
def test_chi_square_survival(dof: float, x: float) -> None:
    assert close(_special.chdtrc(dof, x), float(sp.chdtrc(dof, x)))


@pytest.mark.parametrize("x", [-40, -10, -3, 0, 1, 3, 8, 40])
def test_normal_cdf(x: float) -> None:
    assert close(_special.ndtr(x), float(sp.ndtr(x)))


def test_edges() -> None:
    assert _special.stdtr(5, float("inf")) == 1.0
    assert _special.stdtr(5, float("-inf")) == 0.0
    assert _special.stdtr(float("inf"), 1.0) == pytest.approx(float(sp.ndtr(1.0)), abs=1e-15)
    assert _special.chdtrc(3, 0.0) == 1.0


def test_the_rules_p_values_do_not_load_scipy() -> None:
    code = (
        "import sys, numpy as np\n"
        "from alphawatch.rules.stats import ic_test, sharpe_stats\n"
        "rng = np.random.default_rng(1)\n"
        "ic_test(rng.normal(0.02, 0.05, 200), horizon=5)\n"
        "sharpe_stats(rng.normal(0.001, 0.01, 300), benchmark=0.5)\n"
        "print('scipy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"

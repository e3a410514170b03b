"""Wilson interval against reference values computed independently (scipy's binomial quantiles)."""

import math

import pytest
from scipy import stats as st

from robopolicy.evaluation import wilson_interval
from robopolicy.evaluation.stats import pooled_success

# Reference values, 4 decimals: roots of the score equation (k/n - p)^2 = z^2 p (1-p) / n solved
# numerically with scipy.optimize.brentq (independent of the closed form under test).
KNOWN = {
    (0, 10): (0.0, 0.2775),
    (5, 10): (0.2366, 0.7634),
    (10, 10): (0.7225, 1.0),
    (81, 100): (0.7222, 0.8749),
    (1, 50): (0.0035, 0.1050),
}


@pytest.mark.parametrize("k,n", sorted(KNOWN))
def test_wilson_known_values(k, n):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(KNOWN[(k, n)][0], abs=1e-4)
    assert hi == pytest.approx(KNOWN[(k, n)][1], abs=1e-4)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 17), (81, 100), (499, 500)])
def test_wilson_is_score_test_inversion(k, n):
    """The Wilson bounds are the proportions p where the score statistic |k/n - p| / se(p) equals z."""
    z = st.norm.ppf(0.975)
    lo, hi = wilson_interval(k, n, z=z)
    for p in (lo, hi):
        if 0.0 < p < 1.0:
            assert abs(k / n - p) / math.sqrt(p * (1 - p) / n) == pytest.approx(z, rel=1e-9)


def test_wilson_edges_and_errors():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi > 0.2  # never collapses to a point, unlike the Wald interval
    with pytest.raises(ValueError):
        wilson_interval(11, 10)
    # 95% coverage is wider than 90% coverage
    assert wilson_interval(5, 10, z=1.96)[0] < wilson_interval(5, 10, z=1.645)[0]


def test_pooled_success():
    r = pooled_success([8, 6, 7], [10, 10, 10])
    assert r["mean"] == pytest.approx(0.7)
    assert r["std"] == pytest.approx(0.1)
    lo, hi = wilson_interval(21, 30)
    assert (r["ci95_lo"], r["ci95_hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert pooled_success([3], [4])["std"] == 0.0

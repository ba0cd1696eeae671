import numpy as np
import pytest

from abcjax.scaling.fit import fit_power_law, fit_saturating_power_law


def test_power_law_recovers_known_alpha():
  rng = np.random.default_rng(0)
  n = np.geomspace(1e5, 1e8, 6)
  loss = 21.6 * n**-0.263 * np.exp(rng.normal(0, 0.002, n.size))
  fit = fit_power_law(n, loss)
  assert fit.alpha == pytest.approx(0.263, abs=0.005)
  assert fit.a == pytest.approx(21.6, rel=0.1)
  assert fit.r2 > 0.99
  assert 0 < fit.alpha_std < 0.01
  lo, hi = fit.alpha_ci95
  assert lo <= fit.alpha <= hi


def test_power_law_exact_points_have_zero_uncertainty():
  n = np.array([1e6, 1e7, 1e8])
  fit = fit_power_law(n, 5.0 * n**-0.1)
  assert fit.alpha == pytest.approx(0.1, abs=1e-9)
  assert fit.alpha_std == pytest.approx(0.0, abs=1e-9)


def test_saturating_power_law_recovers_irreducible_term():
  n = np.geomspace(1e5, 1e8, 6)
  loss = 0.515 + 21.6 * n**-0.263
  fit = fit_saturating_power_law(n, loss)
  assert fit.alpha == pytest.approx(0.263, abs=0.01)
  assert fit.e == pytest.approx(0.515, abs=0.01)
  assert fit.r2 > 0.9999
  # The plain power law cannot bend to a floor: its fit is worse.
  assert fit_power_law(n, loss).r2 < fit.r2


def test_fit_rejects_bad_input():
  with pytest.raises(ValueError, match="at least 2"):
    fit_power_law([1e6, 1e6], [1.0, 0.9])
  with pytest.raises(ValueError, match="positive"):
    fit_power_law([1e6, 1e7], [1.0, -0.9])
  with pytest.raises(ValueError, match="at least 3"):
    fit_saturating_power_law([1e6, 1e7], [1.0, 0.9])

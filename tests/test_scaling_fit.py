import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from abcjax.scaling.fit import SATURATING_ALPHA_RANGE, fit_power_law, fit_saturating_power_law


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


@pytest.mark.parametrize("n, loss, message", [
    ([1e6, float("nan"), 1e8], [3.0, 2.5, 2.0], "parameter counts must be positive and finite"),
    ([1e6, float("inf"), 1e8], [3.0, 2.5, 2.0], "parameter counts must be positive and finite"),
    ([1e6, 1e7, 1e8], [3.0, float("inf"), 2.0], "losses must be positive and finite"),
    ([[1e6, 1e7, 1e8]], [[3.0, 2.5, 2.0]], "parameter counts must be a 1-D sequence"),
    ([1e6, 1e7, 1e8], [[3.0, 2.5, 2.0]], "losses must be a 1-D sequence"),
    ([1e6, 1e7, 1e8, 1e9], [3.0, 2.5, 2.0], "4 parameter counts but 3 losses"),
])
@pytest.mark.parametrize("fit", [fit_power_law, fit_saturating_power_law])
def test_fits_reject_points_that_are_not_finite_positive_1d(fit, n, loss, message):
  with pytest.raises(ValueError, match=message):
    fit(n, loss)


def test_saturating_fit_finds_a_steep_alpha():
  n = np.geomspace(10, 1e4, 6)
  fit = fit_saturating_power_law(n, 0.5 + 3.0 * n**-4.0)
  assert fit.alpha == pytest.approx(4.0, rel=1e-3)
  assert fit.e == pytest.approx(0.5, abs=1e-6)
  assert not fit.alpha_at_bound
  assert "edge" not in fit.describe()


@pytest.mark.parametrize("loss", [[2.0, 1.9, 1.9, 1.9, 1.9], [2.0, 2.01, 2.02, 2.03, 2.04]],
                         ids=["drop_then_flat", "rising"])
def test_saturating_fit_flags_an_alpha_at_the_edge_of_its_range(loss):
  fit = fit_saturating_power_law(np.geomspace(1e5, 1e8, 5), loss)
  assert fit.alpha_at_bound
  assert min(abs(fit.alpha - edge) for edge in SATURATING_ALPHA_RANGE) < 1e-6
  assert "edge of its search range" in fit.describe()


_PLOT_WITHOUT_PYPLOT = """
import pathlib, sys
import matplotlib
matplotlib.use("svg")
from abcjax.scaling import report
sizes = (("tiny", 1e5, 2.0, 10.0), ("small", 1e6, 1.6, 30.0), ("medium", 1e7, 1.4, 90.0))
rows = [{"size": s, "params": p, "best_val_loss": l, "wall_time_s": w,
         "peak_memory_bytes": 2**20 * w} for s, p, l, w in sizes]
out = pathlib.Path(sys.argv[1])
curves = {"tiny": [{"tokens": 0, "train_loss": 3.0},
                   {"tokens": 10, "train_loss": 2.0, "val_loss": 2.1}]}
report.plot_training_curves(curves, out / "curves.png", "curves")
report.plot_loss_vs_params(rows, out / "fit.png", "gpt", "fit")
report.plot_comparison({"gpt": rows, "lstm": rows}, out, "compare")
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_report_plots_without_touching_the_backend_or_pyplot(tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  env = {**os.environ, "PYTHONPATH": str(root)}
  env.pop("MPLBACKEND", None)
  done = subprocess.run([sys.executable, "-c", _PLOT_WITHOUT_PYPLOT, str(tmp_path)], env=env,
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["svg", "False"]
  pngs = sorted(p.name for p in tmp_path.glob("*.png"))
  assert pngs == ["compare_memory_vs_params.png", "compare_val_loss_vs_params.png",
                  "compare_wall_time_vs_params.png", "curves.png", "fit.png"]
  assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)

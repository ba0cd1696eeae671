import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import scipy.stats

from abcjax.scaling import report
from abcjax.scaling.fit import (SATURATING_ALPHA_RANGE, compute_optimal, fit_joint_scaling_law,
                                fit_power_law, fit_power_law_seeds, fit_saturating_power_law,
                                point_flops, size_stats)


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
from abcjax.scaling import fit
seeded = fit.fit_power_law_seeds([1e5, 1e5, 1e6, 1e6, 1e7], [2.0, 2.1, 1.6, 1.65, 1.4],
                                 bootstrap=50)
report.plot_seeded_power_laws({"gpt": seeded}, out / "seeds.png", "seeds")
n, d = [1e5, 1e5, 1e6, 1e6, 1e7, 1e7], [1e7, 1e8] * 3
joint = fit.fit_joint_scaling_law(n, d, [0.5 + 20 * a**-0.3 + 90 * b**-0.3 for a, b in zip(n, d)],
                                  bootstrap=0)
report.plot_joint_fit(joint, out / "joint.png", "joint")
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
                  "compare_wall_time_vs_params.png", "curves.png", "fit.png", "joint.png",
                  "seeds.png"]
  assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


# Several seeds per size.

_SIZES = np.geomspace(1e5, 1e8, 5)


def _seeded_runs(noise, seed, seeds=3, alpha=0.263):
  n = np.repeat(_SIZES, seeds)
  rng = np.random.default_rng(seed)
  return n, 21.6 * n**-alpha * np.exp(rng.normal(0, noise, n.size))


def test_size_stats_per_size_mean_spread_and_pooled_sigma():
  n = [1e6, 1e6, 1e6, 1e7, 1e7, 1e8]
  loss = [2.0, 2.2, 2.1, 1.5, 1.7, 1.2]
  stats = size_stats(n, loss)
  assert [s.n for s in stats] == [1e6, 1e7, 1e8]
  assert [s.seeds for s in stats] == [3, 2, 1]
  assert stats[0].mean == pytest.approx(2.1)
  assert stats[0].std == pytest.approx(np.std([2.0, 2.2, 2.1], ddof=1))
  assert stats[0].stderr == pytest.approx(np.std([2.0, 2.2, 2.1], ddof=1) / np.sqrt(3))
  assert np.isnan(stats[2].std) and np.isnan(stats[2].stderr)
  # Pooled relative spread: (2·(0.1/2.1)² + 1·(0.1414/1.6)²) / 3, over sqrt(seeds).
  pooled = np.sqrt((2 * (0.1 / 2.1) ** 2 + (np.std([1.5, 1.7], ddof=1) / 1.6) ** 2) / 3)
  assert [s.sigma_log for s in stats] == pytest.approx(
      [pooled / np.sqrt(3), pooled / np.sqrt(2), pooled])
  own = size_stats(n, loss, spread="own")
  assert own[1].sigma_log == pytest.approx(own[1].stderr / own[1].mean)
  assert own[2].sigma_log == pytest.approx(pooled)  # one run: the pooled spread
  # Identical runs have no spread: the floor keeps their weight finite.
  assert size_stats([1e6, 1e6, 1e7, 1e7], [2.0, 2.0, 1.5, 1.5], se_floor=0.01)[0].sigma_log == 0.01


def test_seeded_power_law_recovers_alpha_within_its_ci_which_shrinks_with_less_noise():
  noisy = fit_power_law_seeds(*_seeded_runs(0.02, seed=1))
  quiet = fit_power_law_seeds(*_seeded_runs(0.004, seed=1))
  for fit in (noisy, quiet):
    assert fit.resampling == "seeds" and fit.bootstrap == 2000
    lo, hi = fit.alpha_ci95
    assert lo < 0.263 < hi
    assert lo < fit.alpha < hi
  width = lambda f: f.alpha_ci95[1] - f.alpha_ci95[0]
  # The same draws scaled by a fifth: the interval scales with the noise.
  assert width(quiet) == pytest.approx(width(noisy) / 5, rel=0.15)
  assert quiet.alpha_std < noisy.alpha_std
  assert width(noisy) < 0.03


def test_seeded_ci_covers_the_true_alpha_at_about_its_level():
  hits = 0
  for seed in range(100):
    lo, hi = fit_power_law_seeds(*_seeded_runs(0.01, seed=100 + seed), bootstrap=500,
                                 seed=seed).alpha_ci95
    hits += lo <= 0.263 <= hi
  assert 88 <= hits <= 99


def test_seeded_fit_with_one_run_per_size_is_the_plain_fit():
  rng = np.random.default_rng(0)
  n = np.geomspace(1e5, 1e8, 6)
  loss = 21.6 * n**-0.263 * np.exp(rng.normal(0, 0.01, n.size))
  seeded, plain = fit_power_law_seeds(n, loss), fit_power_law(n, loss)
  assert seeded.resampling == "sizes"
  assert seeded.alpha == pytest.approx(plain.alpha, rel=1e-12)
  assert seeded.a == pytest.approx(plain.a, rel=1e-10)
  assert seeded.alpha_std == pytest.approx(plain.alpha_std, rel=1e-9)
  assert seeded.alpha_ci95 == pytest.approx(plain.alpha_ci95, rel=1e-9)
  assert seeded.r2 == pytest.approx(plain.r2) and seeded.r2_log == pytest.approx(plain.r2_log)
  assert np.isnan(seeded.chi2_dof)
  # Two sizes of one run: a line, no spread and no interval.
  two = fit_power_law_seeds([1e6, 1e7], [2.0, 1.6])
  assert two.alpha == pytest.approx(np.log(2.0 / 1.6) / np.log(10))
  assert two.resampling == "none" and np.isnan(two.alpha_ci95[0])


def test_seeded_fit_quality_r2_and_chi2():
  straight = fit_power_law_seeds(*_seeded_runs(0.005, seed=2))
  assert straight.r2 > 0.999 and straight.r2_log > 0.999
  assert 0.1 < straight.chi2_dof < 5
  # A floor under the loss bends the line: worse R2, and misfit far beyond the seed noise.
  n = np.repeat(_SIZES, 3)
  bent = 1.2 + 21.6 * n**-0.263 * np.exp(np.random.default_rng(2).normal(0, 0.005, n.size))
  curved = fit_power_law_seeds(n, bent)
  assert curved.r2 < straight.r2
  assert curved.chi2_dof > 50
  # alpha_std grows with the misfit (chi2_dof > 1); it is not left at the seed-noise level.
  assert curved.alpha_std > 5 * curved.alpha_std / np.sqrt(curved.chi2_dof)


def test_seeded_band_and_json():
  fit = fit_power_law_seeds(*_seeded_runs(0.01, seed=3))
  grid = np.geomspace(1e4, 1e9, 20)
  low, high = fit.band(grid)
  assert np.all(low < fit(grid)) and np.all(fit(grid) < high)
  width = np.log(high / low)
  # Narrowest inside the data, wider beyond both ends.
  assert width[0] > width[8] < width[-1]
  # Its t quantile is that of alpha_ci95: at the data's centre the band's width in log L is close
  # to that of log a at the centre, from the bootstrap.
  assert 1 < fit.ci_dof < 20
  centre = np.exp(np.mean(np.log(_SIZES)))
  low_c, high_c = fit.band(centre)
  cov = np.array(fit.cov_log_a_alpha)
  sd = np.sqrt(cov[0, 0] - 2 * np.log(centre) * cov[0, 1] + np.log(centre) ** 2 * cov[1, 1])
  assert np.log(high_c / low_c) / 2 == pytest.approx(scipy.stats.t.ppf(0.975, fit.ci_dof) * sd)
  data = json.loads(json.dumps(dataclasses.asdict(fit)))
  assert data["alpha"] == fit.alpha and len(data["sizes"]) == 5
  assert data["sizes"][0]["seeds"] == 3


@pytest.mark.parametrize("n, loss, kwargs, message", [
    ([1e6, 1e6, 1e6], [2.0, 2.1, 1.9], {}, "at least 2 distinct model sizes"),
    ([1e6, 1e6, 1e7], [2.0, 0.0, 1.9], {}, "losses must be positive and finite"),
    ([1e6, -1e6, 1e7], [2.0, 2.1, 1.9], {}, "parameter counts must be positive and finite"),
    ([1e6, 1e7, 1e7], [2.0, float("nan"), 1.9], {}, "losses must be positive and finite"),
    ([1e6, 1e7, 1e7], [2.0, 1.9], {}, "3 parameter counts but 2 losses"),
    ([1e6, 1e7], [2.0, 1.9], {"resample": "points"}, "resample must be"),
    ([1e6, 1e7], [2.0, 1.9], {"spread": "median"}, "spread must be"),
    ([1e6, 1e7], [2.0, 1.9], {"se_floor": 0.0}, "se_floor must be positive"),
])
def test_seeded_fit_rejects_bad_input(n, loss, kwargs, message):
  with pytest.raises(ValueError, match=message):
    fit_power_law_seeds(n, loss, **kwargs)


# The joint law L(N, D).

_TRUE = {"e": 0.6, "a": 40.0, "alpha": 0.3, "b": 200.0, "beta": 0.28}


def _joint_points(noise, seed):
  n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e5, 1e8, 5), np.geomspace(1e7, 1e10, 5)))
  t = _TRUE
  clean = t["e"] + t["a"] * n**-t["alpha"] + t["b"] * d**-t["beta"]
  return n, d, clean * np.exp(np.random.default_rng(seed).normal(0, noise, n.size))


@pytest.fixture(scope="module")
def joint_fit():
  return fit_joint_scaling_law(*_joint_points(0.005, seed=0), bootstrap=60)


def _closed_form(fit, c, k=6.0):
  g = (fit.alpha * fit.a / (fit.beta * fit.b)) ** (1 / (fit.alpha + fit.beta))
  n = g * (c / k) ** (fit.beta / (fit.alpha + fit.beta))
  return n, (c / k) / n


def test_joint_fit_recovers_known_law_within_its_cis(joint_fit):
  fit = joint_fit
  assert fit.bootstrap == 60 and len(fit.samples) == 60
  for name, value in _TRUE.items():
    lo, hi = getattr(fit, f"{name}_ci95")
    assert lo < value < hi, name
    assert lo <= getattr(fit, name) <= hi, name
  assert fit.alpha == pytest.approx(0.3, abs=0.02) and fit.beta == pytest.approx(0.28, abs=0.02)
  assert fit.e == pytest.approx(0.6, abs=0.05)
  a_exp = 0.28 / 0.58
  assert fit.a_exp_ci95[0] < a_exp < fit.a_exp_ci95[1]
  assert fit.a_exp + fit.b_exp == pytest.approx(1.0)
  assert fit.r2_log > 0.999 and fit.rmse_log < 0.01
  assert not fit.alpha_at_bound and not fit.beta_at_bound
  assert fit(1e6, 1e9) == pytest.approx(0.6 + 40 * 1e6**-0.3 + 200 * 1e9**-0.28, rel=0.01)
  data = json.loads(json.dumps(dataclasses.asdict(fit)))
  assert data["beta"] == fit.beta and len(data["points"]) == 25


def test_joint_fit_is_exact_on_noiseless_points():
  fit = fit_joint_scaling_law(*_joint_points(0.0, seed=0), bootstrap=0)
  for name, value in _TRUE.items():
    assert getattr(fit, name) == pytest.approx(value, rel=1e-3), name
  assert fit.huber_loss < 1e-10
  assert np.isnan(fit.alpha_ci95[0]) and fit.bootstrap == 0


def test_compute_optimal_matches_closed_form_and_brute_force(joint_fit):
  fit = joint_fit
  budgets = [1e15, 1e17, 1e19]
  optimal = compute_optimal(fit, budgets)
  for c, o in zip(budgets, optimal):
    n_opt, d_opt = _closed_form(fit, c)
    assert o.n_opt == pytest.approx(n_opt, rel=1e-9) and o.d_opt == pytest.approx(d_opt, rel=1e-9)
    assert 6 * o.n_opt * o.d_opt == pytest.approx(c)
    grid = np.geomspace(n_opt / 100, n_opt * 100, 200001)
    brute = grid[np.argmin(fit(grid, c / (6 * grid)))]
    assert o.n_opt == pytest.approx(brute, rel=1e-3)
    assert o.loss == pytest.approx(float(fit(n_opt, d_opt)))
    assert o.n_opt_ci95[0] < o.n_opt < o.n_opt_ci95[1]
    assert o.loss_ci95[0] < o.loss < o.loss_ci95[1]
    assert o.tokens_per_param == pytest.approx(d_opt / n_opt)
  # With the true law's parameters the CI holds the true optimum.
  true_n = _closed_form(type("T", (), {k: v for k, v in _TRUE.items()}), 1e17)[0]
  assert optimal[1].n_opt_ci95[0] < true_n < optimal[1].n_opt_ci95[1]
  # A constant k: N_opt scales as (6/k)^(beta/(alpha+beta)) at a fixed budget.
  k8 = compute_optimal(fit, [1e17], flops_per_token=8.0)[0]
  assert k8.n_opt == pytest.approx(optimal[1].n_opt * (6 / 8) ** fit.a_exp, rel=1e-9)


def test_compute_optimal_with_flops_per_token_a_function_of_n(joint_fit):
  fit = joint_fit
  # f(N) = 6N is the closed form; with an embedding-like offset, brute force finds the optimum.
  same = compute_optimal(fit, [1e17], flops_per_token=lambda n: 6.0 * n)[0]
  assert same.n_opt == pytest.approx(compute_optimal(fit, [1e17])[0].n_opt, rel=1e-6)
  assert same.flops_per_token == "f(N)"
  f = lambda n: 6.0 * n + 2e6
  o = compute_optimal(fit, [1e15], flops_per_token=f)[0]
  grid = np.geomspace(1e3, 1e9, 400001)
  brute = grid[np.argmin(fit(grid, 1e15 / f(grid)))]
  assert o.n_opt == pytest.approx(brute, rel=1e-3)
  assert o.d_opt == pytest.approx(1e15 / f(o.n_opt))
  assert o.n_opt > compute_optimal(fit, [1e15])[0].n_opt  # dearer tokens: a bigger model


def test_compute_optimal_with_per_point_flops(joint_fit):
  n = np.array([p[0] for p in joint_fit.points])
  o = compute_optimal(joint_fit, [1e17], flops_per_token=7.0 * n)[0]
  assert o.n_opt == pytest.approx(compute_optimal(joint_fit, [1e17], flops_per_token=7.0)[0].n_opt)
  assert o.flops_per_token.startswith("7*N")
  d = np.array([p[1] for p in joint_fit.points])
  assert point_flops(joint_fit, 7.0 * n) == pytest.approx(7.0 * n * d)
  with pytest.raises(ValueError, match="one value per point"):
    compute_optimal(joint_fit, [1e17], flops_per_token=[6.0, 6.0])
  with pytest.raises(ValueError, match="FLOP budgets must be positive"):
    compute_optimal(joint_fit, [0.0])


@pytest.mark.parametrize("n, d, loss, message", [
    ([1e6] * 6, [1e7, 1e8, 1e9] * 2, [2.0] * 6, "at least 2 distinct model sizes"),
    ([1e6, 1e7] * 3, [1e8] * 6, [2.0] * 6, "at least 2 distinct token counts"),
    ([1e6, 1e7] * 2, [1e7, 1e8] * 2, [2.0] * 4, "at least 6 points"),
    ([1e6, 1e7] * 3, [1e7, 1e8, 1e9] * 2, [2.0] * 5 + [-1.0], "losses must be positive"),
    ([1e6, 1e7] * 3, [1e7, 1e8, 0.0] * 2, [2.0] * 6, "token counts must be positive"),
    ([1e6, 1e7] * 3, [1e7, 1e8, 1e9] * 2, [2.0] * 5, "6 parameter counts, 6 token counts and 5"),
])
def test_joint_fit_rejects_bad_input(n, d, loss, message):
  with pytest.raises(ValueError, match=message):
    fit_joint_scaling_law(n, d, loss, bootstrap=0)


# Plots and summaries of the fits.

def _assert_png(path, min_width):
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  image = matplotlib.image.imread(path)
  assert image.ndim == 3 and image.shape[1] >= min_width


def test_seeded_plot_and_summary(tmp_path):
  gpt = fit_power_law_seeds(*_seeded_runs(0.01, seed=4), bootstrap=200)
  lstm = fit_power_law_seeds(*_seeded_runs(0.02, seed=5, alpha=0.2), bootstrap=200)
  path = tmp_path / "seeds.png"
  report.plot_seeded_power_laws({"gpt": gpt, "lstm": lstm}, path, "seeds")
  _assert_png(path, 600)
  text = report.seeded_fit_summary("gpt", gpt)
  assert f"{gpt.alpha:.4f}" in text
  assert f"[{gpt.alpha_ci95[0]:.4f}, {gpt.alpha_ci95[1]:.4f}]" in text
  assert f"{gpt.sizes[0].mean:.4f}" in text and "5 sizes x 3 seeds" in text


def test_joint_plot_and_summary(joint_fit, tmp_path):
  path = tmp_path / "joint.png"
  report.plot_joint_fit(joint_fit, path, "joint")
  _assert_png(path, 1200)
  text = report.joint_fit_summary(joint_fit, flops=[1e16, 1e18])
  for value, ci in ((joint_fit.e, joint_fit.e_ci95), (joint_fit.alpha, joint_fit.alpha_ci95),
                    (joint_fit.beta, joint_fit.beta_ci95), (joint_fit.b, joint_fit.b_ci95)):
    assert f"{value:.4g}" in text and f"[{ci[0]:.4g}, {ci[1]:.4g}]" in text
  for o in compute_optimal(joint_fit, [1e16, 1e18]):
    assert f"{o.n_opt:.4g}" in text and f"{o.d_opt:.4g}" in text and f"{o.loss:.4f}" in text
  # By default: each power of ten from the smallest run's compute to 100x the largest.
  spent = point_flops(joint_fit)
  default = report.joint_fit_summary(joint_fit)
  assert f"{10 ** np.ceil(np.log10(spent.min())):.3g}" in default
  assert f"{10 ** (np.floor(np.log10(spent.max())) + 2):.3g}" in default


def test_saturating_fit_interval_holds_the_true_exponent():
  rng = np.random.default_rng(3)
  n = np.geomspace(3e4, 1.2e6, 5)
  true = 1.2 + 40.0 * n**-0.45
  hits = 0
  for _ in range(10):
    fit = fit_saturating_power_law(n, true * np.exp(rng.normal(0, 0.003, 5)), bootstrap=100)
    low, high = fit.alpha_ci95
    assert low < fit.alpha < high and fit.bootstrap == 100
    hits += low <= 0.45 <= high
  assert hits >= 7  # a 95% interval, from 5 noisy points
  exact = fit_saturating_power_law(n[:3], true[:3])
  assert np.isnan(exact.alpha_ci95[0]) and exact.bootstrap == 0  # no residual freedom

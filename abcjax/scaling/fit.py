"""Power-law fits of loss against parameters: L = a·N^-α, and L = E + A·N^-α."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Where the saturating fit looks for α. A data set whose best α lies outside gets a fit at the
# edge, flagged by SaturatingPowerLaw.alpha_at_bound (language-model studies report 0.05–0.5).
SATURATING_ALPHA_RANGE = (1e-3, 10.0)


@dataclasses.dataclass(frozen=True)
class PowerLaw:
  """L = a·N^-α fitted by least squares in log-log space."""
  a: float
  alpha: float
  alpha_std: float      # from the fit's covariance (nan with fewer than 3 points)
  alpha_ci95: tuple[float, float]  # bootstrap over points (nan with fewer than 4 points)
  r2: float             # of the fit to L, in linear space
  r2_log: float         # of the fit to log L
  n_points: int

  def __call__(self, n):
    return self.a * np.asarray(n, dtype=np.float64) ** -self.alpha

  def describe(self) -> str:
    return (f"L = {self.a:.4g} * N^{-self.alpha:.4f} (alpha std {self.alpha_std:.4f}, "
            f"bootstrap 95% [{self.alpha_ci95[0]:.4f}, {self.alpha_ci95[1]:.4f}]), "
            f"R2 = {self.r2:.4f} (log-log {self.r2_log:.4f}), {self.n_points} points")


@dataclasses.dataclass(frozen=True)
class SaturatingPowerLaw:
  """L = E + A·N^-α, E >= 0 the irreducible loss, fitted by least squares in linear space."""
  e: float
  a: float
  alpha: float
  alpha_std: float  # from the Jacobian at the optimum (nan when the fit has no residual freedom)
  r2: float
  n_points: int
  alpha_at_bound: bool = False  # α sits at an end of SATURATING_ALPHA_RANGE: not a true optimum

  def __call__(self, n):
    return self.e + self.a * np.asarray(n, dtype=np.float64) ** -self.alpha

  def describe(self) -> str:
    bound = (f" (alpha at the edge of its search range {list(SATURATING_ALPHA_RANGE)}: "
             "not an optimum)" if self.alpha_at_bound else "")
    return (f"L = {self.e:.4g} + {self.a:.4g} * N^{-self.alpha:.4f} (alpha std {self.alpha_std:.4f}), "
            f"R2 = {self.r2:.4f}, {self.n_points} points{bound}")


def _r2(y, yhat) -> float:
  ss_res = float(np.sum((y - yhat) ** 2))
  ss_tot = float(np.sum((y - np.mean(y)) ** 2))
  return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def _loglog(n, loss):
  x, y = np.log(n), np.log(loss)
  slope, intercept = np.polyfit(x, y, 1)
  return math.exp(intercept), -slope


def fit_power_law(n, loss, *, bootstrap: int = 2000, seed: int = 0) -> PowerLaw:
  n = np.asarray(n, dtype=np.float64)
  loss = np.asarray(loss, dtype=np.float64)
  _check_points(n, loss, 2)
  a, alpha = _loglog(n, loss)
  x, y = np.log(n), np.log(loss)
  k = len(n)
  alpha_std = float("nan")
  if k > 2:
    resid = y - (math.log(a) - alpha * x)
    s2 = float(np.sum(resid**2)) / (k - 2)
    alpha_std = math.sqrt(s2 / float(np.sum((x - x.mean()) ** 2)))
  ci = (float("nan"), float("nan"))
  if k > 3 and bootstrap:
    rng = np.random.default_rng(seed)
    alphas = []
    for _ in range(bootstrap):
      idx = rng.integers(0, k, k)
      if len(np.unique(n[idx])) < 2:
        continue
      alphas.append(_loglog(n[idx], loss[idx])[1])
    ci = (float(np.percentile(alphas, 2.5)), float(np.percentile(alphas, 97.5)))
  fit = a * n**-alpha
  return PowerLaw(a=a, alpha=alpha, alpha_std=alpha_std, alpha_ci95=ci, r2=_r2(loss, fit),
                  r2_log=_r2(y, np.log(fit)), n_points=k)


def _linear_given_alpha(n, loss, alpha):
  """Best (E, A, SSE) for a fixed α: L is linear in (E, A) once x = N^-α is known."""
  x = n**-alpha
  design = np.stack([np.ones_like(x), x], axis=1)
  (e, a), *_ = np.linalg.lstsq(design, loss, rcond=None)
  if e < 0:  # The irreducible loss cannot be negative: refit through the origin.
    e, a = 0.0, float(np.dot(x, loss) / np.dot(x, x))
  sse = float(np.sum((loss - e - a * x) ** 2))
  return float(e), float(a), sse


def fit_saturating_power_law(n, loss) -> SaturatingPowerLaw:
  """Fits L = E + A·N^-α with α searched in SATURATING_ALPHA_RANGE, [1e-3, 10].

  When the best α lies at an end of that range (data that keep improving faster than N^-10, or
  that barely change with N), the result has alpha_at_bound set and its α is only the range's edge.
  """
  n = np.asarray(n, dtype=np.float64)
  loss = np.asarray(loss, dtype=np.float64)
  _check_points(n, loss, 3)
  # Sizes relative to the smallest keep N^-α within [0, 1] for every α searched; A is converted
  # back at the end. α is found by a grid then golden-section search; (E, A) are exact for each α.
  n_min = float(n.min())
  rel_n = n / n_min
  low, high = SATURATING_ALPHA_RANGE
  grid = np.geomspace(low, high, 600)
  sses = [_linear_given_alpha(rel_n, loss, g)[2] for g in grid]
  i = int(np.argmin(sses))
  lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
  golden = (math.sqrt(5) - 1) / 2
  for _ in range(100):
    m1, m2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
    if _linear_given_alpha(rel_n, loss, m1)[2] < _linear_given_alpha(rel_n, loss, m2)[2]:
      hi = m2
    else:
      lo = m1
  alpha = (lo + hi) / 2
  e, rel_a, sse = _linear_given_alpha(rel_n, loss, alpha)
  x = rel_n**-alpha
  k = len(n)
  alpha_std = float("nan")
  if k > 3:
    jac = np.stack([np.ones_like(x), x, -rel_a * x * np.log(rel_n)], axis=1)
    s2 = sse / (k - 3)
    try:
      cov = s2 * np.linalg.inv(jac.T @ jac)
      alpha_std = math.sqrt(max(cov[2, 2], 0.0))
    except np.linalg.LinAlgError:
      pass
  at_bound = any(math.isclose(alpha, edge, rel_tol=1e-6) for edge in SATURATING_ALPHA_RANGE)
  return SaturatingPowerLaw(e=e, a=rel_a * n_min**alpha, alpha=float(alpha), alpha_std=alpha_std,
                            r2=_r2(loss, e + rel_a * x), n_points=k, alpha_at_bound=at_bound)


def _check_points(n, loss, minimum: int) -> None:
  """Both 1-D and equally long, finite and positive, with at least `minimum` distinct sizes."""
  for name, values in (("parameter counts", n), ("losses", loss)):
    if values.ndim != 1:
      raise ValueError(f"{name} must be a 1-D sequence, got shape {values.shape}")
  if len(n) != len(loss):
    raise ValueError(f"{len(n)} parameter counts but {len(loss)} losses")
  for name, values in (("parameter counts", n), ("losses", loss)):
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
      raise ValueError(f"{name} must be positive and finite, got {values.tolist()}")
  if len(np.unique(n)) < minimum:
    raise ValueError(f"a fit needs at least {minimum} distinct model sizes, got {len(np.unique(n))}")

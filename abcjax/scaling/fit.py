"""Power-law fits of loss against parameters: L = a·N^-α, and L = E + A·N^-α."""

from __future__ import annotations

import dataclasses
import math

import numpy as np


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
    return (f"L = {self.a:.4g} * N^-{self.alpha:.4f} (alpha std {self.alpha_std:.4f}, "
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

  def __call__(self, n):
    return self.e + self.a * np.asarray(n, dtype=np.float64) ** -self.alpha

  def describe(self) -> str:
    return (f"L = {self.e:.4g} + {self.a:.4g} * N^-{self.alpha:.4f} (alpha std {self.alpha_std:.4f}), "
            f"R2 = {self.r2:.4f}, {self.n_points} points")


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
  n = np.asarray(n, dtype=np.float64)
  loss = np.asarray(loss, dtype=np.float64)
  _check_points(n, loss, 3)
  # α is found by a grid then golden-section search; (E, A) are exact for each α.
  grid = np.linspace(1e-3, 3.0, 600)
  sses = [_linear_given_alpha(n, loss, g)[2] for g in grid]
  i = int(np.argmin(sses))
  lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
  golden = (math.sqrt(5) - 1) / 2
  for _ in range(100):
    m1, m2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
    if _linear_given_alpha(n, loss, m1)[2] < _linear_given_alpha(n, loss, m2)[2]:
      hi = m2
    else:
      lo = m1
  alpha = (lo + hi) / 2
  e, a, sse = _linear_given_alpha(n, loss, alpha)
  k = len(n)
  alpha_std = float("nan")
  if k > 3:
    x = n**-alpha
    jac = np.stack([np.ones_like(x), x, -a * x * np.log(n)], axis=1)
    s2 = sse / (k - 3)
    try:
      cov = s2 * np.linalg.inv(jac.T @ jac)
      alpha_std = math.sqrt(max(cov[2, 2], 0.0))
    except np.linalg.LinAlgError:
      pass
  return SaturatingPowerLaw(e=e, a=a, alpha=float(alpha), alpha_std=alpha_std,
                            r2=_r2(loss, e + a * n**-alpha), n_points=k)


def _check_points(n, loss, minimum: int) -> None:
  if len(n) != len(loss):
    raise ValueError(f"{len(n)} parameter counts but {len(loss)} losses")
  if len(np.unique(n)) < minimum:
    raise ValueError(f"a fit needs at least {minimum} distinct model sizes, got {len(np.unique(n))}")
  if np.any(n <= 0) or np.any(loss <= 0) or not np.all(np.isfinite(loss)):
    raise ValueError("parameter counts and losses must be positive and finite")

"""Outputs of a scaling sweep: results CSV, plots, fits and summaries, per family and compared."""

from __future__ import annotations

import csv
import pathlib
from typing import Any, Mapping, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from abcjax.scaling.fit import (FlopsPerToken, JointScalingLaw, SaturatingPowerLaw,
                                SeededPowerLaw, compute_optimal, default_budgets,
                                fit_power_law_seeds,
                                fit_saturating_power_law, point_flops)

RESULT_COLUMNS = ("size", "seed", "params", "non_embedding_params", "tokens", "final_train_loss",
                  "best_val_loss", "test_loss", "bits_per_char", "wall_time_s", "tokens_per_s",
                  "peak_memory_bytes", "mfu")
COLORS = {"gpt": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}


def result_row(results: dict[str, Any]) -> dict[str, Any]:
  """One CSV row from a run's results.json."""
  row = {k: results.get(k) for k in RESULT_COLUMNS}
  row["bits_per_char"] = results["best_val_bpc"]
  row["seed"] = results.get("seed", 0)  # runs written before seeds were recorded used seed 0
  return row


def write_results_csv(rows: Sequence[dict[str, Any]], path: str | pathlib.Path) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: row.get(k) for k in RESULT_COLUMNS})


def read_results_csv(path: str | pathlib.Path) -> list[dict[str, Any]]:
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    row.setdefault("seed", "0")  # results written before seeds were recorded used seed 0
    for k in RESULT_COLUMNS[1:]:
      row[k] = float(row[k]) if row[k] not in ("", None) else float("nan")
  return rows


def size_means(rows: Sequence[dict[str, Any]],
               key: str = "best_val_loss") -> tuple[np.ndarray, np.ndarray]:
  """(params, mean of `key` over seeds) of each size, smallest first."""
  n = np.array([float(r["params"]) for r in rows])
  values = np.array([float(r[key]) for r in rows])
  sizes = np.unique(n)
  return sizes, np.array([values[n == size].mean() for size in sizes])


def fits(rows: Sequence[dict[str, Any]]) -> tuple[SeededPowerLaw | None, SaturatingPowerLaw | None]:
  """Fits of best val loss against parameters, over every seed of every size: the power law
  weighted by each size's spread over seeds (its CI from resampling the seeds), and the
  saturating law of the per-size means. None where there are too few sizes."""
  n = [float(r["params"]) for r in rows]
  loss = [float(r["best_val_loss"]) for r in rows]
  sizes, means = size_means(rows)
  simple = fit_power_law_seeds(n, loss) if len(sizes) >= 2 else None
  saturating = fit_saturating_power_law(sizes, means) if len(sizes) >= 3 else None
  return simple, saturating


def _new_axes(figsize: tuple[float, float], ncols: int = 1):
  """A figure on its own Agg canvas, not pyplot's: the caller's backend and figures stay as is."""
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  return fig, fig.subplots(1, ncols)


def _save(fig: Figure, path) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def plot_training_curves(curves: dict[str, list[dict[str, Any]]], path, title: str) -> None:
  """Train (solid) and val (dots) loss against tokens, one colour per size."""
  fig, ax = _new_axes((7, 4.5))
  cmap = matplotlib.colormaps["viridis"]
  for i, (size, records) in enumerate(curves.items()):
    color = cmap(i / max(1, len(curves) - 1))
    tokens = [r["tokens"] for r in records if "train_loss" in r]
    ax.plot(tokens, [r["train_loss"] for r in records if "train_loss" in r], color=color, label=f"{size} train")
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    if val:
      ax.plot(*zip(*val), "o--", color=color, ms=4, label=f"{size} val")
  ax.set_xlabel("training tokens")
  ax.set_ylabel("loss (nats/char)")
  ax.set_title(title)
  ax.legend(fontsize=7, ncol=2)
  ax.grid(alpha=0.3)
  _save(fig, path)


def _plot_fit(ax, rows, simple, saturating, arch, label_prefix=""):
  n = np.array([float(r["params"]) for r in rows])
  loss = np.array([float(r["best_val_loss"]) for r in rows])
  color = COLORS.get(arch)
  sizes, means = size_means(rows)
  spread = np.array([loss[n == size].std(ddof=1) if (n == size).sum() > 1 else 0.0
                     for size in sizes])
  seeds = max((n == size).sum() for size in sizes)
  label = f"{label_prefix}{arch} runs" + (f" (mean ± std of {seeds} seeds)" if seeds > 1 else "")
  ax.errorbar(sizes, means, yerr=spread, fmt="o", color=color, capsize=3, zorder=3, label=label)
  names = {float(r["params"]): r["size"] for r in rows}
  for size, mean in zip(sizes, means):
    ax.annotate(names[size], (size, mean), fontsize=7, xytext=(3, 3), textcoords="offset points")
  grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
  if simple is not None:
    ax.plot(grid, simple(grid), "-", color=color,
            label=f"{arch}: {simple.a:.3g}·N^{-simple.alpha:.3f}, α 95% "
                  f"{_ci_text(simple.alpha_ci95, '.3f')} (R²={simple.r2:.3f})")
    if np.all(np.isfinite(simple.cov_log_a_alpha)):
      low, high = simple.band(grid)
      ax.fill_between(grid, low, high, color=color, alpha=0.15, lw=0)
  if saturating is not None:
    ax.plot(grid, saturating(grid), ":", color=color,
            label=f"{arch}: {saturating.e:.3g}+{saturating.a:.3g}·N^-{saturating.alpha:.3f}")


def _plain_y_ticks(ax) -> None:
  """Losses span less than a decade: label log-axis ticks 2.1, 2.2 rather than 2.1x10^0."""
  formatter = matplotlib.ticker.FormatStrFormatter("%.2f")
  ax.yaxis.set_major_formatter(formatter)
  ax.yaxis.set_minor_formatter(formatter)


def _save_loss_axes(fig: Figure, ax, path, title: str, ylabel: str) -> None:
  """Log-log axes of loss against parameters, labelled, with legend and grid; then the file."""
  ax.set_xscale("log")
  ax.set_yscale("log")
  _plain_y_ticks(ax)
  ax.set_xlabel("parameters N")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3, which="both")
  _save(fig, path)


def _save_loss_plot(by_arch: dict[str, list[dict[str, Any]]], path, title: str) -> None:
  """Best val loss against parameters on log-log axes, each family with both of its fits."""
  fig, ax = _new_axes((6.5, 4.5))
  for arch, rows in by_arch.items():
    _plot_fit(ax, rows, *fits(rows), arch)
  _save_loss_axes(fig, ax, path, title, "best validation loss (nats/char)")


def plot_loss_vs_params(rows, path, arch: str, title: str) -> None:
  _save_loss_plot({arch: rows}, path, title)


def summary_text(arch: str, table: str, rows, simple, saturating, *, preset: str) -> str:
  lines = [f"abcjax scaling summary: arch={arch} size_table={table} preset={preset}", ""]
  header = f"{'size':<8}{'seed':>5}{'params':>12}{'tokens':>12}{'train':>8}{'val':>8}{'test':>8}{'bpc':>7}{'wall_s':>9}{'tok/s':>10}{'mem_MB':>9}{'mfu':>7}"
  lines.append(header)
  for r in rows:
    lines.append(
        f"{r['size']:<8}{int(float(r['seed'] or 0)):>5}{int(float(r['params'])):>12,}{int(float(r['tokens'])):>12,}"
        f"{float(r['final_train_loss']):>8.4f}{float(r['best_val_loss']):>8.4f}{float(r['test_loss']):>8.4f}"
        f"{float(r['bits_per_char']):>7.3f}{float(r['wall_time_s']):>9.1f}{float(r['tokens_per_s']):>10,.0f}"
        f"{float(r['peak_memory_bytes']) / 2**20:>9.0f}{float(r['mfu']):>7.3f}")
  lines.append("")
  lines.append("fits of best val loss against parameters:")
  lines.append("  power law (the study's form): "
               + (simple.describe() if simple else "L = a*N^-alpha: needs at least 2 sizes"))
  lines.append("  with an irreducible loss E (the floor that the data budget leaves): "
               + (saturating.describe() if saturating else "L = E + A*N^-alpha: needs at least 3 sizes"))
  if simple is not None and max(s.seeds for s in simple.sizes) > 1:
    lines.append("")
    lines.append(seeded_fit_summary(arch, simple).rstrip("\n"))
  _, losses = size_means(rows)
  monotonic = all(b < a for a, b in zip(losses, losses[1:]))
  lines.append(f"val loss (mean over seeds) falls strictly with size: {'yes' if monotonic else 'NO'}")
  return "\n".join(lines) + "\n"


def plot_comparison(by_arch: dict[str, list[dict[str, Any]]], out_dir: pathlib.Path, title: str) -> list[pathlib.Path]:
  """Three plots against parameters: val loss with both fits, wall time, peak memory."""
  out_dir = pathlib.Path(out_dir)
  paths = [out_dir / "compare_val_loss_vs_params.png"]
  _save_loss_plot(by_arch, paths[0], title)
  for key, ylabel, name in (("wall_time_s", "wall time (s)", "compare_wall_time_vs_params.png"),
                            ("peak_memory_bytes", "peak memory (MB)", "compare_memory_vs_params.png")):
    fig, ax = _new_axes((6.5, 4.5))
    scale = 2**20 if key == "peak_memory_bytes" else 1
    for arch, rows in by_arch.items():
      n, y = size_means(rows, key)
      ax.plot(n, y / scale, "o-", color=COLORS.get(arch), label=arch)
      names = {float(r["params"]): r["size"] for r in rows}
      for xi, yi in zip(n, y / scale):
        ax.annotate(names[xi], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    paths.append(out_dir / name)
    _save(fig, paths[-1])
  return paths


def comparison_summary(by_arch: dict[str, list[dict[str, Any]]]) -> str:
  lines = [f"{'arch':<6}{'sizes':>6}{'alpha':>9}{'±std':>8}{'a':>9}{'R2':>8}"
           f"{'E':>9}{'alpha_sat':>11}{'95% CI':>18}{'R2_sat':>8}{'best val':>10}"]
  for arch, rows in by_arch.items():
    simple, saturating = fits(rows)
    best = min(float(r["best_val_loss"]) for r in rows)
    s = (f"{simple.alpha:>9.4f}{simple.alpha_std:>8.4f}{simple.a:>9.4g}{simple.r2:>8.4f}"
         if simple else f"{'n/a':>34}")
    t = (f"{saturating.e:>9.4f}{saturating.alpha:>11.4f}"
         f"{_ci_text(saturating.alpha_ci95, '.3f'):>18}{saturating.r2:>8.4f}"
         if saturating else f"{'n/a':>46}")
    sizes = len({float(r["params"]) for r in rows})
    lines.append(f"{arch:<6}{sizes:>6}{s}{t}{best:>10.4f}")
  return "\n".join(lines) + "\n"


def _ci_text(ci: tuple[float, float], fmt: str = ".4g") -> str:
  return f"[{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def plot_seeded_power_laws(fits: Mapping[str, SeededPowerLaw], path, title: str) -> None:
  """Loss against parameters, log-log: each size's mean ± std over seeds, the fitted line and
  its 95% band, one colour per entry of `fits` (e.g. {"gpt": ..., "lstm": ...})."""
  fig, ax = _new_axes((6.5, 4.5))
  cycle = matplotlib.colormaps["tab10"]
  for i, (label, fit) in enumerate(fits.items()):
    color = COLORS.get(label, cycle(i))
    n = np.array([s.n for s in fit.sizes])
    mean = np.array([s.mean for s in fit.sizes])
    std = np.nan_to_num(np.array([s.std for s in fit.sizes]))
    ax.errorbar(n, mean, yerr=std, fmt="o", color=color, capsize=3, zorder=3,
                label=f"{label}: mean ± std over seeds")
    grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
    ax.plot(grid, fit(grid), "-", color=color,
            label=f"{label}: {fit.a:.3g}·N^-{fit.alpha:.3f}, alpha 95% "
                  f"{_ci_text(fit.alpha_ci95, '.3f')} (R²={fit.r2:.3f})")
    low, high = fit.band(grid)
    ax.fill_between(grid, low, high, color=color, alpha=0.2, lw=0, label=f"{label}: 95% band")
  _save_loss_axes(fig, ax, path, title, "validation loss (nats/char)")


def _size_flops_per_token(fit: JointScalingLaw, flops_per_token: FlopsPerToken, n: float) -> float:
  """FLOPs per token of the model of size n, under the same rule as compute_optimal."""
  if callable(flops_per_token):
    return float(np.asarray(flops_per_token(np.array([n])))[0])
  values = np.asarray(flops_per_token, dtype=np.float64)
  if values.ndim == 0:
    return float(values) * n
  points_n = np.array([p[0] for p in fit.points])
  return float(np.mean(values[points_n == n]))


def plot_joint_fit(fit: JointScalingLaw, path, title: str, *,
                   flops_per_token: FlopsPerToken = 6.0) -> None:
  """The fit of L(N, D) in two panels. Left: loss against training tokens, the runs as points
  and the fitted curve of each model size. Right: loss against compute, the same runs and
  curves, the compute-optimal frontier L(N_opt(C), D_opt(C)) with its 95% band, and N_opt(C) with
  its band on the right-hand axis."""
  fig, (left, right) = _new_axes((12, 4.8), ncols=2)
  points = np.array(fit.points)
  n, d, loss = points.T
  flops = point_flops(fit, flops_per_token)
  sizes = np.unique(n)
  cmap = matplotlib.colormaps["viridis"]
  d_grid = np.geomspace(d.min() / 2, d.max() * 2, 100)
  for i, size in enumerate(sizes):
    color = cmap(i / max(1, len(sizes) - 1))
    here = n == size
    label = f"N = {size:.3g}"
    left.scatter(d[here], loss[here], color=color, s=18, zorder=3, label=label)
    left.plot(d_grid, fit(size, d_grid), "-", color=color, lw=1)
    right.scatter(flops[here], loss[here], color=color, s=18, zorder=3)
    right.plot(_size_flops_per_token(fit, flops_per_token, size) * d_grid, fit(size, d_grid),
               "-", color=color, lw=1, alpha=0.6)
  for ax in (left, right):
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_y_ticks(ax)
    ax.set_ylabel("loss (nats/char)")
    ax.grid(alpha=0.3, which="both")
  left.set_xlabel("training tokens D")
  left.set_title(f"{title}: E={fit.e:.3g}, alpha={fit.alpha:.3f}, beta={fit.beta:.3f}", fontsize=9)
  left.legend(fontsize=7)

  budgets = np.geomspace(flops.min() / 2, flops.max() * 10, 60)
  optimal = compute_optimal(fit, budgets, flops_per_token=flops_per_token)
  frontier = np.array([o.loss for o in optimal])
  band = np.array([o.loss_ci95 for o in optimal])
  right.plot(budgets, frontier, "k-", lw=2, label="compute-optimal loss")
  if np.all(np.isfinite(band)):
    right.fill_between(budgets, band[:, 0], band[:, 1], color="k", alpha=0.15, lw=0,
                       label="95% band")
  right.set_xlabel("training compute C (FLOPs)")
  right.set_title(f"compute-optimal frontier: N_opt ~ C^{fit.a_exp:.3f}", fontsize=9)
  twin = right.twinx()
  n_opt = np.array([o.n_opt for o in optimal])
  n_band = np.array([o.n_opt_ci95 for o in optimal])
  twin.plot(budgets, n_opt, "--", color="tab:red", label="N_opt(C) (right axis)")
  if np.all(np.isfinite(n_band)):
    twin.fill_between(budgets, n_band[:, 0], n_band[:, 1], color="tab:red", alpha=0.12, lw=0)
  twin.set_yscale("log")
  twin.set_ylabel("compute-optimal parameters N_opt", color="tab:red")
  handles, labels = right.get_legend_handles_labels()
  twin_handles, twin_labels = twin.get_legend_handles_labels()
  right.legend(handles + twin_handles, labels + twin_labels, fontsize=7, loc="upper right")
  _save(fig, path)


def seeded_fit_summary(label: str, fit: SeededPowerLaw) -> str:
  """A per-size table of the runs (mean, std, standard error over seeds) and the fitted law."""
  lines = [f"{label}: loss against parameters over seeds",
           f"{'params':>14}{'seeds':>7}{'mean':>9}{'std':>9}{'stderr':>9}{'sigma_log':>11}"]
  for s in fit.sizes:
    lines.append(f"{int(s.n):>14,}{s.seeds:>7}{s.mean:>9.4f}{s.std:>9.4f}{s.stderr:>9.4f}"
                 f"{s.sigma_log:>11.4f}")
  lines.append("  " + fit.describe())
  return "\n".join(lines) + "\n"


def joint_fit_summary(fit: JointScalingLaw, *, flops: Sequence[float] | None = None,
                      flops_per_token: FlopsPerToken = 6.0) -> str:
  """The fitted L(N, D) with 95% CIs, and the compute-optimal N, D and loss for a few budgets
  (by default each power of ten from the smallest run's compute to 100 times the largest)."""
  if flops is None:
    spent = point_flops(fit, flops_per_token)
    flops = default_budgets(spent)
  lines = [f"L(N, D) = E + A*N^-alpha + B*D^-beta, Huber (delta {fit.huber_delta:g}) fit of log L "
           f"to {fit.n_points} runs; 95% CIs from {fit.bootstrap} bootstrap resamples of the runs",
           f"{'':<10}{'value':>12}{'95% CI':>26}"]
  for name, value, ci in (("E", fit.e, fit.e_ci95), ("A", fit.a, fit.a_ci95),
                          ("alpha", fit.alpha, fit.alpha_ci95), ("B", fit.b, fit.b_ci95),
                          ("beta", fit.beta, fit.beta_ci95), ("G", fit.g, fit.g_ci95),
                          ("a=b/(a+b)", fit.a_exp, fit.a_exp_ci95),
                          ("b=a/(a+b)", fit.b_exp, fit.b_exp_ci95)):
    lines.append(f"{name:<10}{value:>12.4g}{_ci_text(ci):>26}")
  lines.append(f"fit quality: R2 = {fit.r2:.4f}, R2 of log L = {fit.r2_log:.4f}, "
               f"RMSE of log L = {fit.rmse_log:.4g}, Huber loss = {fit.huber_loss:.4g}")
  for name, flag in (("alpha", fit.alpha_at_bound), ("beta", fit.beta_at_bound)):
    if flag:
      lines.append(f"WARNING: {name} is at the edge of its search range: not an optimum")
  optimal = compute_optimal(fit, flops, flops_per_token=flops_per_token)
  lines += ["", f"compute-optimal allocation, C = FLOPs/token * D with FLOPs/token = "
                f"{optimal[0].flops_per_token}:",
            f"{'C (FLOPs)':>10}{'N_opt':>11}{'95% CI':>24}{'D_opt':>11}{'95% CI':>24}"
            f"{'D/N':>8}{'loss':>8}{'95% CI':>18}"]
  for o in optimal:
    lines.append(f"{o.flops:>10.3g}{o.n_opt:>11.4g}{_ci_text(o.n_opt_ci95):>24}{o.d_opt:>11.4g}"
                 f"{_ci_text(o.d_opt_ci95):>24}{o.tokens_per_param:>8.1f}{o.loss:>8.4f}"
                 f"{_ci_text(o.loss_ci95, '.4f'):>18}")
  return "\n".join(lines) + "\n"

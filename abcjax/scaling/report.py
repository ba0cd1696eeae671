"""Outputs of a scaling sweep: results CSV, plots, fits and summaries, per family and compared."""

from __future__ import annotations

import csv
import pathlib
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from abcjax.scaling.fit import PowerLaw, SaturatingPowerLaw, fit_power_law, fit_saturating_power_law

RESULT_COLUMNS = ("size", "params", "non_embedding_params", "tokens", "final_train_loss",
                  "best_val_loss", "test_loss", "bits_per_char", "wall_time_s", "tokens_per_s",
                  "peak_memory_bytes", "mfu")
COLORS = {"gpt": "tab:blue", "lstm": "tab:orange", "gru": "tab:green"}


def result_row(results: dict[str, Any]) -> dict[str, Any]:
  """One CSV row from a run's results.json."""
  row = {k: results.get(k) for k in RESULT_COLUMNS}
  row["bits_per_char"] = results["best_val_bpc"]
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
    for k in RESULT_COLUMNS[1:]:
      row[k] = float(row[k]) if row[k] not in ("", None) else float("nan")
  return rows


def fits(rows: Sequence[dict[str, Any]]) -> tuple[PowerLaw | None, SaturatingPowerLaw | None]:
  """Both fits of best val loss against parameters; None where there are too few sizes."""
  n = [float(r["params"]) for r in rows]
  loss = [float(r["best_val_loss"]) for r in rows]
  simple = fit_power_law(n, loss) if len(set(n)) >= 2 else None
  saturating = fit_saturating_power_law(n, loss) if len(set(n)) >= 3 else None
  return simple, saturating


def _new_axes(figsize: tuple[float, float]):
  """A figure on its own Agg canvas, not pyplot's: the caller's backend and figures stay as is."""
  fig = Figure(figsize=figsize)
  FigureCanvasAgg(fig)
  return fig, fig.subplots()


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
  ax.scatter(n, loss, color=color, zorder=3, label=f"{label_prefix}{arch} runs")
  for r in rows:
    ax.annotate(r["size"], (float(r["params"]), float(r["best_val_loss"])), fontsize=7,
                xytext=(3, 3), textcoords="offset points")
  grid = np.geomspace(n.min() / 1.5, n.max() * 1.5, 100)
  if simple is not None:
    ax.plot(grid, simple(grid), "-", color=color,
            label=f"{arch}: {simple.a:.3g}·N^{-simple.alpha:.3f} (R²={simple.r2:.3f})")
  if saturating is not None:
    ax.plot(grid, saturating(grid), ":", color=color,
            label=f"{arch}: {saturating.e:.3g}+{saturating.a:.3g}·N^-{saturating.alpha:.3f}")


def _plain_y_ticks(ax) -> None:
  """Losses span less than a decade: label log-axis ticks 2.1, 2.2 rather than 2.1x10^0."""
  formatter = matplotlib.ticker.FormatStrFormatter("%.2f")
  ax.yaxis.set_major_formatter(formatter)
  ax.yaxis.set_minor_formatter(formatter)


def _save_loss_plot(by_arch: dict[str, list[dict[str, Any]]], path, title: str) -> None:
  """Best val loss against parameters on log-log axes, each family with both of its fits."""
  fig, ax = _new_axes((6.5, 4.5))
  for arch, rows in by_arch.items():
    _plot_fit(ax, rows, *fits(rows), arch)
  ax.set_xscale("log")
  ax.set_yscale("log")
  _plain_y_ticks(ax)
  ax.set_xlabel("parameters N")
  ax.set_ylabel("best validation loss (nats/char)")
  ax.set_title(title)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3, which="both")
  _save(fig, path)


def plot_loss_vs_params(rows, path, arch: str, title: str) -> None:
  _save_loss_plot({arch: rows}, path, title)


def summary_text(arch: str, table: str, rows, simple, saturating, *, preset: str) -> str:
  lines = [f"abcjax scaling summary: arch={arch} size_table={table} preset={preset}", ""]
  header = f"{'size':<8}{'params':>12}{'tokens':>12}{'train':>8}{'val':>8}{'test':>8}{'bpc':>7}{'wall_s':>9}{'tok/s':>10}{'mem_MB':>9}{'mfu':>7}"
  lines.append(header)
  for r in rows:
    lines.append(
        f"{r['size']:<8}{int(float(r['params'])):>12,}{int(float(r['tokens'])):>12,}"
        f"{float(r['final_train_loss']):>8.4f}{float(r['best_val_loss']):>8.4f}{float(r['test_loss']):>8.4f}"
        f"{float(r['bits_per_char']):>7.3f}{float(r['wall_time_s']):>9.1f}{float(r['tokens_per_s']):>10,.0f}"
        f"{float(r['peak_memory_bytes']) / 2**20:>9.0f}{float(r['mfu']):>7.3f}")
  lines.append("")
  lines.append("fit of best val loss against parameters:")
  lines.append("  " + (simple.describe() if simple else "L = a*N^-alpha: needs at least 2 sizes"))
  lines.append("  " + (saturating.describe() if saturating else "L = E + A*N^-alpha: needs at least 3 sizes"))
  losses = [float(r["best_val_loss"]) for r in sorted(rows, key=lambda r: float(r["params"]))]
  monotonic = all(b < a for a, b in zip(losses, losses[1:]))
  lines.append(f"val loss falls monotonically with size: {'yes' if monotonic else 'NO'}")
  return "\n".join(lines) + "\n"


def plot_comparison(by_arch: dict[str, list[dict[str, Any]]], out_dir: pathlib.Path, title: str) -> list[pathlib.Path]:
  """Three plots against parameters: val loss with both fits, wall time, peak memory."""
  out_dir = pathlib.Path(out_dir)
  paths = [out_dir / "compare_val_loss_vs_params.png"]
  _save_loss_plot(by_arch, paths[0], title)
  for key, ylabel, name in (("wall_time_s", "wall time (s)", "compare_wall_time_vs_params.png"),
                            ("peak_memory_bytes", "peak memory (MB)", "compare_memory_vs_params.png")):
    fig, ax = _new_axes((6.5, 4.5))
    for arch, rows in by_arch.items():
      n = [float(r["params"]) for r in rows]
      y = [float(r[key]) / (2**20 if key == "peak_memory_bytes" else 1) for r in rows]
      ax.plot(n, y, "o-", color=COLORS.get(arch), label=arch)
      for r, xi, yi in zip(rows, n, y):
        ax.annotate(r["size"], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
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
           f"{'E':>9}{'alpha_sat':>11}{'R2_sat':>8}{'best val':>10}"]
  for arch, rows in by_arch.items():
    simple, saturating = fits(rows)
    best = min(float(r["best_val_loss"]) for r in rows)
    s = (f"{simple.alpha:>9.4f}{simple.alpha_std:>8.4f}{simple.a:>9.4g}{simple.r2:>8.4f}"
         if simple else f"{'n/a':>34}")
    t = (f"{saturating.e:>9.4f}{saturating.alpha:>11.4f}{saturating.r2:>8.4f}"
         if saturating else f"{'n/a':>28}")
    lines.append(f"{arch:<6}{len(rows):>6}{s}{t}{best:>10.4f}")
  return "\n".join(lines) + "\n"

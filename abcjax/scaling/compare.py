"""Part 3: Transformers against LSTMs (and any other registered family), from the families'
results CSVs."""

from __future__ import annotations

import json
import pathlib

from abcjax.models import registry
from abcjax.scaling import report


def results_csv(workdir: str | pathlib.Path, arch: str) -> pathlib.Path:
  return pathlib.Path(workdir) / arch / f"{arch}_results.csv"


def families_with_results(workdir: str | pathlib.Path) -> list[str]:
  """Registered families whose sweep in workdir has written its results CSV."""
  return [a for a in registry.names() if results_csv(workdir, a).exists()]


def recipe_differences(workdir: str | pathlib.Path, archs: list[str]) -> list[str]:
  """What the families' sweeps did not share (corpus folder, token budgets, preset), from their
  <arch>_fit.json; sweeps written before those fields were recorded compare as equal."""
  recipes = {}
  for arch in archs:
    path = pathlib.Path(workdir) / arch / f"{arch}_fit.json"
    recipes[arch] = json.loads(path.read_text()) if path.exists() else {}
  notes = []
  for field in ("corpus", "tokens", "preset"):
    values = {arch: recipes[arch].get(field) for arch in archs}
    known = [v for v in values.values() if v is not None]
    if any(v != known[0] for v in known):
      notes.append(f"{field}: " + ", ".join(f"{a} {v}" for a, v in values.items() if v is not None))
  return notes


def compare(workdir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None) -> dict[str, pathlib.Path]:
  """Writes the combined loss plot with every family's fits, wall time and memory plots, and a
  summary table, for the families (two or more) that have results in workdir."""
  archs = families_with_results(workdir)
  if len(archs) < 2:
    raise FileNotFoundError(
        f"the comparison needs the results of two families or more in {workdir}; found "
        f"{archs or 'none'}. Run python -m experiments.scaling --arch=gpt and --arch=lstm with "
        "the same --workdir first.")
  by_arch = {a: report.read_results_csv(results_csv(workdir, a)) for a in archs}
  out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir) / "compare"
  out.mkdir(parents=True, exist_ok=True)
  plots = report.plot_comparison(by_arch, out, "Transformer vs LSTM on ABC")
  summary = out / "compare_summary.txt"
  text = report.comparison_summary(by_arch)
  differences = recipe_differences(workdir, archs)
  if differences:
    text += ("WARNING: the families were not trained alike, so this is not a like-for-like "
             "comparison:\n" + "".join(f"  {d}\n" for d in differences))
  summary.write_text(text)
  print(summary.read_text(), flush=True)
  return {"summary": summary, **{p.stem: p for p in plots}}


def maybe_compare(workdir) -> dict[str, pathlib.Path] | None:
  if len(families_with_results(workdir)) >= 2:
    return compare(workdir)
  return None

"""Part 3: Transformers against LSTMs, from the two families' results CSVs."""

from __future__ import annotations

import json
import pathlib

from abcjax.scaling import report

ARCHS = ("gpt", "lstm")


def results_csv(workdir: str | pathlib.Path, arch: str) -> pathlib.Path:
  return pathlib.Path(workdir) / arch / f"{arch}_results.csv"


def recipe_differences(workdir: str | pathlib.Path) -> list[str]:
  """What the two families' sweeps did not share (corpus folder, token budgets, preset), from
  their <arch>_fit.json; sweeps written before those fields were recorded compare as equal."""
  recipes = {}
  for arch in ARCHS:
    path = pathlib.Path(workdir) / arch / f"{arch}_fit.json"
    recipes[arch] = json.loads(path.read_text()) if path.exists() else {}
  notes = []
  for field in ("corpus", "tokens", "preset"):
    values = {arch: recipes[arch].get(field) for arch in ARCHS}
    if None not in values.values() and values["gpt"] != values["lstm"]:
      notes.append(f"{field}: gpt {values['gpt']}, lstm {values['lstm']}")
  return notes


def compare(workdir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None) -> dict[str, pathlib.Path]:
  """Writes the combined loss plot with both fits, wall time and memory plots, and a summary table."""
  missing = [str(results_csv(workdir, a)) for a in ARCHS if not results_csv(workdir, a).exists()]
  if missing:
    raise FileNotFoundError(
        f"the comparison needs both families' results; missing {missing}. Run "
        "python -m experiments.scaling --arch=gpt and --arch=lstm with the same --workdir first.")
  by_arch = {a: report.read_results_csv(results_csv(workdir, a)) for a in ARCHS}
  out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir) / "compare"
  out.mkdir(parents=True, exist_ok=True)
  plots = report.plot_comparison(by_arch, out, "Transformer vs LSTM on ABC")
  summary = out / "compare_summary.txt"
  text = report.comparison_summary(by_arch)
  differences = recipe_differences(workdir)
  if differences:
    text += ("WARNING: the two families were not trained alike, so this is not a like-for-like "
             "comparison:\n" + "".join(f"  {d}\n" for d in differences))
  summary.write_text(text)
  print(summary.read_text(), flush=True)
  return {"summary": summary, **{p.stem: p for p in plots}}


def maybe_compare(workdir) -> dict[str, pathlib.Path] | None:
  if all(results_csv(workdir, a).exists() for a in ARCHS):
    return compare(workdir)
  return None

"""Evaluation driver: check, convert and cross-check every tune; write CSV, MIDI and summaries."""

from __future__ import annotations

import collections
import csv
import io
import json
import multiprocessing
import re
import statistics
from pathlib import Path

from abcjax import atomic
from abcjax.evaluation import abc_checker, memorization, midi, music_stats

CSV_COLUMNS = ["file", "kind", "prompt", "valid", "reason", "converted", "error", "notes", "bars",
               "seconds", "study_valid", "strict_valid", "irregular_bars", "detail",
               "warnings", "warning_detail", "abc2midi_ok", "abc2midi_agrees", "abc2midi_errors",
               "midi_notes", "duration_quarters", "longest_shared_run", "copies_line", "ended"]
KINDS = ("uncond", "cond", "real", "file")
ABC2MIDI_NOT_FOUND = "not_found"  # abc2midi_ok when abc2midi is not on PATH
_ABC2MIDI_PREFIX = re.compile(r"^Error in line-char [\d-]+ : ")


def kind_from_name(name: str) -> str:
  for kind in ("uncond", "cond", "real"):
    if name.startswith(kind + "_"):
      return kind
  return "file"


def evaluate_tune(job: tuple[str, str, str, str, str | None, float, tuple[str, ...]]) -> dict:
  """One tune: (row name, text, kind, prompt, MIDI path or None, timeout, warnings about the file
  around it) -> CSV row."""
  name, text, kind, prompt, midi_path, timeout_s, file_warnings = job
  check = abc_checker.check_tune(text)
  warnings = list(file_warnings) + check.warnings
  conversion = midi.abc_to_midi(text, midi_path, timeout_s)
  # music21 parsed the tune when it converted; otherwise ask the study's definition directly
  study = (midi.has_study_fields(text) if conversion.converted
           else midi.study_valid(text, timeout_s))
  cross = midi.abc2midi_check(text)
  return {
      "file": name, "kind": kind, "prompt": prompt, "valid": check.valid, "reason": check.reason,
      "converted": conversion.converted, "error": conversion.error, "notes": check.notes,
      "bars": check.bars, "seconds": round(conversion.seconds, 4), "study_valid": study,
      "strict_valid": check.valid and check.irregular_bars == 0,
      "irregular_bars": check.irregular_bars, "detail": check.detail,
      "warnings": " ".join(sorted({w.split(":")[0] for w in warnings})),
      "warning_detail": " | ".join(warnings),
      "abc2midi_ok": cross.ok if cross.available else ABC2MIDI_NOT_FOUND,
      "abc2midi_agrees": check.valid == cross.ok if cross.available else "",
      "abc2midi_errors": " | ".join(cross.errors)[:300],
      "midi_notes": conversion.notes, "duration_quarters": conversion.duration_quarters,
      "longest_shared_run": "", "copies_line": "", "ended": "",
  }


def _pct(part: int, whole: int) -> float | None:
  return round(100.0 * part / whole, 2) if whole else None


def _abc2midi_verdict(row: dict) -> str:
  first = row.get("abc2midi_errors", "").split(" | ")[0]
  return _ABC2MIDI_PREFIX.sub("", first)[:60] if row["abc2midi_ok"] is False else "ok"


def _rates(rows: list[dict]) -> dict:
  n = len(rows)
  valid = [r for r in rows if r["valid"]]
  crossed = [r for r in rows if r["abc2midi_ok"] in (True, False)]
  disagreements = collections.Counter(
      f"checker {r['reason'] or 'valid'}, abc2midi {_abc2midi_verdict(r)}"
      for r in crossed if bool(r["valid"]) != (r["abc2midi_ok"] is True))
  out = {
      "tunes": n,
      "valid_pct": _pct(len(valid), n),
      "strict_valid_pct": _pct(sum(bool(r["strict_valid"]) for r in rows), n),
      "converted_pct": _pct(sum(bool(r["converted"]) for r in rows), n),
      "converted_of_valid_pct": _pct(sum(bool(r["converted"]) for r in valid), len(valid)),
      "study_valid_pct": _pct(sum(bool(r["study_valid"]) for r in rows), n),
      "abc2midi": ("found" if crossed else
                   "not found on PATH: install abcmidi to cross-check the checker with abc2midi"),
      "abc2midi_checked": len(crossed),
      "abc2midi_ok_pct": _pct(sum(r["abc2midi_ok"] is True for r in crossed), len(crossed)),
      "abc2midi_agreement_pct": _pct(
          sum(bool(r["valid"]) == (r["abc2midi_ok"] is True) for r in crossed), len(crossed)),
      # where the two disagree: the checker's reason and abc2midi's first hard error
      "abc2midi_disagreements": dict(disagreements.most_common()),
      "reasons": dict(collections.Counter(r["reason"] for r in rows if not r["valid"])
                      .most_common()),
      # tunes with each kind of thing the checker ignored (ABC 2.1 rules: see abc_checker)
      "warnings": dict(collections.Counter(
          code for r in rows for code in r.get("warnings", "").split()).most_common()),
      "errors": dict(collections.Counter(r["error"].split(":")[0] for r in rows
                                         if not r["converted"]).most_common()),
  }
  ended = [r["ended"] for r in rows if r.get("ended", "") != ""]
  if ended:
    # Samples that stopped by themselves; the rest hit max_new_tokens (often a loop of one bar).
    out["ended_pct"] = _pct(sum(bool(e) for e in ended), len(ended))
  runs = [r["longest_shared_run"] for r in rows if r["longest_shared_run"] != ""]
  if runs:
    out["memorization"] = {
        "longest_shared_run_mean": round(statistics.mean(runs), 1),
        "longest_shared_run_median": statistics.median(runs),
        "longest_shared_run_max": max(runs),
        "copies_line_pct": _pct(sum(bool(r["copies_line"]) for r in rows
                                    if r["copies_line"] != ""), len(runs)),
    }
  return out


def summarize(rows: list[dict], baseline: dict | None = None) -> dict:
  """Rates over all rows and per kind; `baseline` (a summary of real tunes) is kept alongside."""
  summary = _rates(rows)
  summary["per_kind"] = {kind: _rates([r for r in rows if r["kind"] == kind])
                         for kind in KINDS if any(r["kind"] == kind for r in rows)}
  if baseline is not None:
    summary["baseline"] = {k: v for k, v in baseline.items() if k != "baseline"}
  return summary


_TEXT_RATES = ("tunes", "valid_pct", "strict_valid_pct", "converted_pct",
               "converted_of_valid_pct", "study_valid_pct", "abc2midi_ok_pct",
               "abc2midi_agreement_pct", "ended_pct")


def summary_text(summary: dict) -> str:
  columns = [("all", summary)] + list(summary.get("per_kind", {}).items())
  if "baseline" in summary:
    columns.append(("baseline (real)", summary["baseline"]))
  lines = ["%-24s" % "metric" + "".join("%18s" % name for name, _ in columns)]
  for key in _TEXT_RATES:
    lines.append("%-24s" % key + "".join("%18s" % (s.get(key) if s.get(key) is not None
                                                   else "-") for _, s in columns))
  lines.append("")
  lines.append("failure reasons: " + json.dumps(summary.get("reasons", {})))
  lines.append("warnings (tunes, not failures): " + json.dumps(summary.get("warnings", {})))
  lines.append("conversion errors: " + json.dumps(summary.get("errors", {})))
  if summary.get("abc2midi_checked"):
    lines.append("checker vs abc2midi disagreements: " +
                 json.dumps(summary.get("abc2midi_disagreements", {})))
  else:
    lines.append("abc2midi: " + summary.get("abc2midi", "not found"))
  if "memorization" in summary:
    lines.append("memorization: " + json.dumps(summary["memorization"]))
  if "music_stats" in summary:
    ms = summary["music_stats"]
    lines.append(f"music statistics ({ms['distance']}): pitch_class_js="
                 f"{ms['pitch_class_js']:.4f} note_length_js={ms['note_length_js']:.4f} "
                 f"key_js={ms['key_js']:.4f} meter_js={ms['meter_js']:.4f}")
    lines.append("  sample keys: " + json.dumps(dict(list(ms["samples"]["keys"].items())[:8])))
    lines.append("  reference keys: " + json.dumps(
        dict(list(ms["reference"]["keys"].items())[:8])))
    lines.append("  sample meters: " + json.dumps(dict(list(ms["samples"]["meters"].items())[:8])))
    lines.append("  reference meters: " + json.dumps(
        dict(list(ms["reference"]["meters"].items())[:8])))
  return "\n".join(lines) + "\n"


def _jobs(files: list[Path], midi_dir: Path, kinds, prompts, timeout_s):
  jobs, texts, origins = [], [], []
  for idx, path in enumerate(files):
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    kind = kinds[idx] if kinds else kind_from_name(path.name)
    # A sample (or a real tune written for the baseline) is one row, judged whole: nothing at all,
    # text before its X: line or a second tune run on are its faults, not text to trim. Other
    # files may be ABC collections, split at X: lines (each tune with the file header's fields);
    # an empty one is still one ('empty') row. Free text before the first tune is ignored, as
    # ABC 2.1 asks, and noted on the first tune's row.
    tunes, file_warnings = [text], ()
    if kind == "file":
      collection = abc_checker.split_collection(text)
      tunes = collection.tunes or [text]
      if collection.free_text_lines:
        file_warnings = (f"free_text: {collection.free_text_lines} line(s) of {path.name} before "
                         "its first tune, ignored",)
    prompt = prompts[idx] if prompts else ""
    for t, text in enumerate(tunes):
      many = len(tunes) > 1
      name = f"{path.name}#{t}" if many else path.name
      stem = f"{path.stem}_{t}" if many else path.stem
      jobs.append((name, text, kind, prompt, str(midi_dir / f"{stem}.mid"), timeout_s,
                   file_warnings if t == 0 else ()))
      texts.append(text)
      origins.append(idx)
  return jobs, texts, origins


def evaluate_files(files: list[Path], out_dir: Path, *, kinds: list[str] | None = None,
                   prompts: list[str] | None = None, train_text: str | None = None,
                   reference_tunes: list[str] | None = None, workers: int = 1,
                   baseline: dict | None = None, ended: list[bool] | None = None,
                   timeout_s: float = midi.DEFAULT_TIMEOUT_S,
                   memorization_scope: dict | None = None) -> list[dict]:
  """Evaluates every file in `files`: one row per sample, one per tune of other ABC files.

  Files named uncond_*, cond_* or real_* (or given such a kind) are one sample each, evaluated
  whole; any other file is an ABC collection whose tunes (split at X: lines) are rows
  '<file>#<i>' when there are several.

  Writes out_dir/midi/<stem>.mid per converted tune, results.csv, summary.json, summary.txt.
  midi/ holds this evaluation's files only: .mid files an earlier one left there are removed first.
  kinds/prompts: one per file (default: kind from the filename prefix, empty prompt).
  ended: one per file, whether the sample stopped at its end-of-tune token (default: unknown).
  memorization_scope: how much training text train_text holds, recorded in the summary.
  """
  out_dir = Path(out_dir)
  midi_dir = out_dir / "midi"
  midi_dir.mkdir(parents=True, exist_ok=True)
  for stale in midi_dir.glob("*.mid"):
    stale.unlink()
  jobs, texts, origins = _jobs(files, midi_dir, kinds, prompts, timeout_s)
  if workers > 1 and len(jobs) > 1:
    # forkserver, not fork: the caller may hold JAX's threads (sample_eval), which fork can deadlock.
    # Fresh workers now and then: music21 caches grow with every parse.
    with multiprocessing.get_context("forkserver").Pool(workers, maxtasksperchild=200) as pool:
      rows = pool.map(evaluate_tune, jobs, chunksize=4)
  else:
    rows = [evaluate_tune(job) for job in jobs]
  if ended is not None:
    for row, origin in zip(rows, origins):
      row["ended"] = bool(ended[origin])
  if train_text is not None:
    index = memorization.TrainingIndex(train_text)
    for row, text in zip(rows, texts):
      row["longest_shared_run"] = index.longest_shared_run(text)[0]
      row["copies_line"] = index.copies_a_line(text)
  table = io.StringIO(newline="")
  writer = csv.DictWriter(table, fieldnames=CSV_COLUMNS)
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(out_dir / "results.csv", table.getvalue())
  summary = summarize(rows, baseline)
  if memorization_scope and "memorization" in summary:
    summary["memorization"].update(memorization_scope)
  if reference_tunes:
    summary["music_stats"] = music_stats.compare(texts, reference_tunes)
  atomic.write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
  atomic.write_text(out_dir / "summary.txt", summary_text(summary))
  return rows


def read_results(path: Path) -> list[dict]:
  """Reads results.csv back with the typed values summarize() expects."""
  def typed(row):
    for key in ("valid", "converted", "study_valid", "strict_valid", "copies_line",
                "abc2midi_ok", "abc2midi_agrees", "ended"):
      if row.get(key) in ("True", "False"):
        row[key] = row[key] == "True"
    for key in ("notes", "bars", "irregular_bars", "midi_notes", "longest_shared_run"):
      if row[key] != "":
        row[key] = int(row[key])
    return row
  with open(path, newline="", encoding="utf-8") as f:
    return [typed(row) for row in csv.DictReader(f)]

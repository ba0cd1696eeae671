"""Tests of abcjax.evaluation: MIDI conversion, abc2midi, statistics, memorization, driver (the
checker's own tests are in test_abc_checker.py)."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from abcjax.evaluation import evaluate, memorization, midi, music_stats
from tests.test_abc_checker import ARCHIVE_STYLE, INVALID_TUNES, VALID_TUNES
from tests.tiny_corpus import build_tiny_corpus

REPO = Path(__file__).resolve().parents[1]

# A real Essen tune (essenFolksong, X:613 "Wahre Freundschaft soll nicht wanken"), shrunk. Its
# bars run across lines, so music21's reBar splits them and shares one TimeSignature object.
QUIRK_TUNE = """X:613
T:Wahre Freundschaft
M:3/4
L:1/8
K:F
AG | F2F2AB | AGG2
FD | C2FABc | A2z2
FF | d3df2ed | dcc2z2
"""


def test_plain_music21_fails_on_the_quirk_and_abc_to_midi_converts(tmp_path):
  from music21 import exceptions21
  score = midi.parse_abc(QUIRK_TUNE)
  with pytest.raises(exceptions21.StreamException, match="already found"):
    score.write("midi", fp=str(tmp_path / "plain.mid"))
  path = tmp_path / "fixed.mid"
  result = midi.abc_to_midi(QUIRK_TUNE, str(path))
  assert result.converted, result.error
  assert path.exists() and midi.count_midi_notes(str(path)) == result.notes == 27
  assert result.duration_quarters == 20.0


def test_abc_to_midi_writes_unexpandable_repeats_once(tmp_path):
  # shrunk from airdsAirs "Gallway Girls": a final `::` that no `:|` closes
  tune = "X:1\nT:t\nM:2/4\nL:1/8\nK:Em\nefge|dBBd|E2E2::\nBcBA|Bcd2|E2E2||\n"
  from music21 import repeat
  with pytest.raises(repeat.ExpanderException):
    midi.parse_abc(tune).write("midi", fp=str(tmp_path / "plain.mid"))
  result = midi.abc_to_midi(tune, str(tmp_path / "fixed.mid"))
  assert result.converted and result.notes == 19


def test_abc_to_midi_reports_failures_and_timeouts():
  assert not midi.abc_to_midi("X:1\nT:t\nK:C\n").converted
  slow = midi.abc_to_midi(VALID_TUNES["pickup_repeats_endings"], None, timeout_s=1e-4)
  assert not slow.converted and slow.error == "timeout"


def test_abc_to_midi_reads_the_text_never_a_file(tmp_path, monkeypatch):
  # music21's converter.parse would read the working folder for '', a file named C for 'C', and
  # the file a path names
  monkeypatch.chdir(tmp_path)
  (tmp_path / "C").write_text(VALID_TUNES["pickup_repeats_endings"])
  for text in ("", "C", str(tmp_path / "C")):
    result = midi.abc_to_midi(text)
    assert not result.converted and "Error" not in result.error.split(":")[0], result.error
    assert not midi.study_valid(text)
  with pytest.raises(Exception) as raised:
    midi.parse_abc(str(tmp_path / "C"))
  assert not isinstance(raised.value, OSError)


def test_failed_conversion_leaves_an_existing_file_alone(tmp_path):
  path = tmp_path / "tune.mid"
  path.write_bytes(b"earlier")
  assert not midi.abc_to_midi("X:1\nT:t\nK:C\n", str(path)).converted
  assert not midi.abc_to_midi(VALID_TUNES["pickup_repeats_endings"], str(path), 1e-4).converted
  assert path.read_bytes() == b"earlier"
  assert midi.abc_to_midi(VALID_TUNES["pickup_repeats_endings"], str(path)).converted
  assert midi.count_midi_notes(str(path)) > 0
  assert [p.name for p in tmp_path.iterdir()] == ["tune.mid"]  # no temporary file left
  plain = tmp_path / "plain"
  plain.write_bytes(b"")  # a file made as usual: the MIDI file gets the same permissions
  assert path.stat().st_mode == plain.stat().st_mode


def test_study_valid_is_weaker():
  no_title = VALID_TUNES["pickup_repeats_endings"].replace("T:Pickup, repeats and endings\n", "")
  assert not midi.study_valid(no_title)
  assert midi.study_valid(VALID_TUNES["pickup_repeats_endings"])
  assert midi.study_valid(INVALID_TUNES["bar_duration"])  # music21 accepts what we reject


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_abc2midi_cross_check():
  good = midi.abc2midi_check(VALID_TUNES["pickup_repeats_endings"])
  assert good.available and good.ok and good.errors == []
  bad = midi.abc2midi_check("X:1\nT:t\nM:3/4\nL:1/8\nK:G\nABc d2 e|ABC [CEG|d2 e2 f2|\n")
  assert bad.ok is False and any(e.startswith("Error") for e in bad.errors)


def test_abc2midi_unavailable(monkeypatch):
  monkeypatch.setattr(midi.shutil, "which", lambda name: None)
  assert midi.abc2midi_check("X:1\nK:C\nC|\n") == midi.Abc2MidiResult(available=False)


def test_abc2midi_messages_sorted_into_hard_and_soft_errors():
  tune = ('X:1\nT:t\nI:papersize A4\nM:2/4\nL:1/8\nK:G\n"fine"GABc|~(dcd) e|\n'
          "N:a note ABC 2.1 allows here\nO:Ireland\n=|\n")
  output = "\n".join([
      "4.84 January 20 2023 abc2midi",
      "Error in line-char 3-0 : I: key ' papersize' not recognized",
      "Error in line-char 7-0 : Guitar chord does not start with A-G or a-g",
      "Error in line-char 7-11 : Malformed note : expecting a-g or A-G",  # at ~( : a decoration
      "Error in line-char 10-0 : Malformed note : expecting a-g or A-G",  # at = : no note
      "Error in line-char 8-0 : Field not allowed in tune body",  # N: is allowed there
      "Error in line-char 9-0 : Field not allowed in tune body",  # O: is not
      "Warning in line-char 7-12 : Track 0 Bar 1 has 3 time units while the time signature has 4",
      "Error in line-char 10-2 : Unrecognized character: %"])
  result = midi.classify_abc2midi_output(output, tune)
  assert [e.split(" : ")[0][-4:] for e in result.errors] == ["10-0", " 9-0", "10-2"]
  assert len(result.soft_errors) == 4 and result.ok is False
  assert result.warnings == 1 + 4
  clean = midi.classify_abc2midi_output("\n".join(output.splitlines()[:4]), tune)
  assert clean.ok and clean.errors == []
  assert midi._for_abc2midi('X:1\nK:C\nCD[|]EF "D.S."[|]|]') == 'X:1\nK:C\nCD|EF "D.S."|]\n'


def test_tune_stats_uses_key_signature_and_bar_accidentals():
  stats = music_stats.tune_stats("X:1\nT:t\nM:4/4\nL:1/8\nK:D\nF2 =F2 F2 c2|F8|]\n")
  # K:D sharpens F and C; =F holds for the rest of its bar only
  assert stats["pitch_classes"][6] == 2 and stats["pitch_classes"][5] == 2
  assert stats["pitch_classes"][1] == 1
  assert stats["note_lengths"] == {"1": 4, "4": 1}
  assert (stats["key"], stats["meter"]) == ("D", "4/4")


def test_js_distance_and_compare():
  assert music_stats.js_distance([1, 0], [1, 0]) == 0.0
  assert music_stats.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
  assert music_stats.js_distance({"a": 1, "b": 1}, {"a": 1}) == pytest.approx(
      (0.5 * 0.5 * 1 + 0.5 * 1 * __import__("math").log2(1 / 0.75)
       + 0.5 * 0.5 * __import__("math").log2(0.5 / 0.75)) ** 0.5)
  c_major = "X:1\nT:t\nM:4/4\nL:1/4\nK:C\nCDEF|GABc|]\n"
  g_minor = "X:1\nT:t\nM:3/4\nL:1/4\nK:Gm\nGAB|cde|]\n"
  same = music_stats.compare([c_major], [c_major])
  assert same["pitch_class_js"] == 0.0 and same["note_length_js"] == 0.0
  diff = music_stats.compare([c_major], [g_minor])
  assert diff["pitch_class_js"] > 0.3 and diff["meter_js"] == pytest.approx(1.0)
  assert diff["samples"]["keys"] == {"C": 1.0} and diff["reference"]["keys"] == {"Gm": 1.0}


def test_suffix_array_matches_sorting():
  text = "mississippi$abcab"
  codes = memorization.np.array([ord(c) for c in text])
  expected = sorted(range(len(text)), key=lambda i: text[i:])
  assert list(memorization.suffix_array(codes)) == expected


def test_memorization_longest_run_and_line_copy():
  train = ("X:1\nT:a\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|\n"
           "X:2\nT:b\nK:D\nfaaf gfed|cdec BAGF|\n")
  index = memorization.TrainingIndex(train)
  sample = "X:9\nT:new\nK:G\nzzzz cdec BAGF| qq\n"
  length, run = index.longest_shared_run(sample)
  assert run == "cdec BAGF|" and length == 10
  assert not index.copies_a_line(sample)  # 'cdec BAGF|' alone is under the line-length bar
  copied = "X:9\nT:new\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|\n"
  assert index.copies_a_line(copied)
  assert index.longest_shared_run(copied)[0] >= len("\nK:G\nGABc dedB|dedB dedB|c2ec B2dB|\n")
  assert index.longest_shared_run("\u00a4\u00a4")[0] == 0


def _write_samples(folder: Path):
  folder.mkdir()
  (folder / "uncond_0.abc").write_text(VALID_TUNES["pickup_repeats_endings"])
  (folder / "uncond_1.abc").write_text(INVALID_TUNES["unclosed_chord"])
  (folder / "cond_0.abc").write_text(QUIRK_TUNE)
  (folder / "other.abc").write_text(VALID_TUNES["tuplets_chords_grace"] + "\n" +
                                    INVALID_TUNES["bar_duration"])
  (folder / "train.txt").write_text(VALID_TUNES["pickup_repeats_endings"] + QUIRK_TUNE)


def test_sample_eval_end_to_end(tmp_path):
  samples = tmp_path / "samples"
  _write_samples(samples)
  out = tmp_path / "out"
  subprocess.run([sys.executable, "-m", "experiments.sample_eval", f"--samples_dir={samples}",
                  f"--out_dir={out}", "--workers=2", f'--train_text={samples / "train.txt"}',
                  "--reference_tunes=50", f"--data_dir={build_tiny_corpus(tmp_path)}",
                  "--norun_baseline"], check=True, cwd=REPO, capture_output=True, timeout=240)
  for name in ("results.csv", "summary.json", "summary.txt"):
    assert (out / name).exists()
  with open(out / "results.csv", newline="") as f:
    reader = csv.reader(f)
    header = next(reader)
  assert header[:10] == ["file", "kind", "prompt", "valid", "reason", "converted", "error",
                         "notes", "bars", "seconds"]
  rows = evaluate.read_results(out / "results.csv")
  assert [r["file"] for r in rows] == ["cond_0.abc", "other.abc#0", "other.abc#1",
                                      "uncond_0.abc", "uncond_1.abc"]
  assert [r["kind"] for r in rows] == ["cond", "file", "file", "uncond", "uncond"]
  assert [r["valid"] for r in rows] == [True, True, False, True, False]
  for row in rows:
    stem = row["file"].replace(".abc#", "_").replace(".abc", "")
    assert (out / "midi" / f"{stem}.mid").exists() == row["converted"]
  summary = json.loads((out / "summary.json").read_text())
  recomputed = evaluate.summarize(rows)
  for key in ("tunes", "valid_pct", "converted_pct", "converted_of_valid_pct",
              "study_valid_pct", "abc2midi_agreement_pct", "reasons"):
    assert summary[key] == recomputed[key]
  assert summary["valid_pct"] == 60.0
  assert summary["per_kind"]["uncond"]["valid_pct"] == 50.0
  assert summary["reasons"] == {"unclosed_chord": 1, "bar_duration": 1}
  assert summary["memorization"]["copies_line_pct"] == 40.0
  train_text = (samples / "train.txt").read_text()
  assert summary["memorization"]["training_chars_indexed"] == len(train_text)
  assert summary["memorization"]["training_text_bytes"] == len(train_text.encode())
  assert 0 <= summary["music_stats"]["pitch_class_js"] <= 1
  assert "valid_pct" in (out / "summary.txt").read_text()


def test_every_sample_is_one_row_judged_whole(tmp_path):
  """An empty sample, one with text before its X: line and one that runs on into a second tune
  each count once, as invalid; only a collection of other ABC files is split into its tunes."""
  tune = VALID_TUNES["pickup_repeats_endings"]
  files = []
  for name, text in [("uncond_000.abc", "\n"), ("uncond_001.abc", "ABC here\n" + tune),
                     ("cond_000.abc", tune + tune.replace("X:1", "X:2")),
                     ("uncond_002.abc", tune), ("tunes.abc", tune + "\n" + tune), ("none.abc", "")]:
    files.append(tmp_path / name)
    files[-1].write_text(text)
  rows = evaluate.evaluate_files(files, tmp_path / "out")
  assert [(r["file"], r["valid"], r["reason"]) for r in rows] == [
      ("uncond_000.abc", False, "empty"), ("uncond_001.abc", False, "X_not_first"),
      ("cond_000.abc", False, "header_after_K"), ("uncond_002.abc", True, ""),
      ("tunes.abc#0", True, ""), ("tunes.abc#1", True, ""), ("none.abc", False, "empty")]
  summary = json.loads((tmp_path / "out" / "summary.json").read_text())
  assert summary["per_kind"]["uncond"]["tunes"] == 3
  assert summary["per_kind"]["uncond"]["valid_pct"] == pytest.approx(100 / 3, abs=0.01)


def test_summary_with_baseline():
  rows = [{"file": "a", "kind": "uncond", "valid": True, "converted": True, "study_valid": True,
           "strict_valid": True, "abc2midi_ok": True, "reason": "", "error": "",
           "longest_shared_run": "", "copies_line": ""},
          {"file": "b", "kind": "cond", "valid": False, "converted": True, "study_valid": True,
           "strict_valid": False, "abc2midi_ok": True, "reason": "bar_duration", "error": "",
           "longest_shared_run": "", "copies_line": ""}]
  summary = evaluate.summarize(rows, baseline={"valid_pct": 99.2})
  assert summary["valid_pct"] == 50.0 and summary["converted_of_valid_pct"] == 100.0
  assert summary["abc2midi_agreement_pct"] == 50.0
  assert summary["per_kind"]["cond"]["valid_pct"] == 0.0
  text = evaluate.summary_text(summary)
  assert "baseline (real)" in text and "99.2" in text


def test_a_collection_s_warnings_and_a_missing_abc2midi_are_reported(tmp_path, monkeypatch):
  """Unknown fields and free text are warnings on their rows and counted in the summary; without
  abc2midi the rows and the summary say so instead of leaving its verdict blank."""
  monkeypatch.setattr(midi.shutil, "which", lambda name: None)
  path = tmp_path / "archive.abc"
  path.write_text("Reels and jigs from a public archive.\n\n" + ARCHIVE_STYLE)
  rows = evaluate.evaluate_files([path], tmp_path / "out")
  assert [(r["valid"], r["warnings"]) for r in rows] == [(True, "free_text unknown_field"),
                                                        (True, "unknown_field")]
  assert "Y: at line 9" in rows[0]["warning_detail"]
  assert [(r["abc2midi_ok"], r["abc2midi_agrees"]) for r in rows] == [("not_found", "")] * 2
  assert [r["abc2midi_ok"] for r in evaluate.read_results(tmp_path / "out" / "results.csv")] == [
      "not_found"] * 2
  summary = json.loads((tmp_path / "out" / "summary.json").read_text())
  assert summary["valid_pct"] == 100.0 and summary["reasons"] == {}
  assert summary["warnings"] == {"unknown_field": 2, "free_text": 1}
  assert summary["abc2midi"].startswith("not found") and summary["abc2midi_agreement_pct"] is None
  assert "abc2midi: not found" in (tmp_path / "out" / "summary.txt").read_text()


def test_summary_names_each_disagreement_with_abc2midi():
  def row(valid, reason, abc2midi_ok, errors=""):
    return {"file": "a", "kind": "file", "valid": valid, "reason": reason, "converted": True,
            "study_valid": True, "strict_valid": valid, "abc2midi_ok": abc2midi_ok,
            "abc2midi_errors": errors, "error": "", "warnings": "", "longest_shared_run": "",
            "copies_line": ""}
  rows = [row(True, "", True), row(False, "bar_duration", True),
          row(True, "", False, "Error in line-char 12-17 : Unrecognized character: 2 | Error x"),
          row(False, "unclosed_chord", False, "Error in line-char 3-4 : Chord already finished"),
          row(True, "", evaluate.ABC2MIDI_NOT_FOUND)]
  summary = evaluate.summarize(rows)
  assert summary["abc2midi_checked"] == 4 and summary["abc2midi_agreement_pct"] == 50.0
  assert summary["abc2midi_disagreements"] == {
      "checker bar_duration, abc2midi ok": 1,
      "checker valid, abc2midi Unrecognized character: 2": 1}
  assert "checker vs abc2midi disagreements" in evaluate.summary_text(summary)


def test_evaluate_files_replaces_an_earlier_evaluation(tmp_path, monkeypatch):
  """midi/ ends up holding this evaluation's files only, and results.csv is never half written."""
  first, second = tmp_path / "uncond_000.abc", tmp_path / "uncond_001.abc"
  first.write_text(VALID_TUNES["pickup_repeats_endings"])
  second.write_text(VALID_TUNES["tuplets_chords_grace"])
  out = tmp_path / "out"
  evaluate.evaluate_files([first, second], out)
  assert sorted(p.name for p in (out / "midi").iterdir()) == ["uncond_000.mid", "uncond_001.mid"]
  first.write_text(INVALID_TUNES["empty_body"])  # music21 finds no notes
  rows = evaluate.evaluate_files([first], out)
  assert not rows[0]["converted"] and list((out / "midi").iterdir()) == []
  written = (out / "results.csv").read_bytes()

  def fail(self, rows):
    raise RuntimeError("disk full")
  monkeypatch.setattr(evaluate.csv.DictWriter, "writerows", fail)
  with pytest.raises(RuntimeError):
    evaluate.evaluate_files([second], out)
  assert (out / "results.csv").read_bytes() == written
  assert sorted(p.name for p in out.iterdir()) == ["midi", "results.csv", "summary.json",
                                                   "summary.txt"]

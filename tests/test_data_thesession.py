"""The Session's data dump as a corpus source: records built into tunes, skips counted, errors."""

import csv
import json
import pathlib
import warnings

import pytest

from abcjax.data import corpus, thesession

HEADER = ["tune_id", "setting_id", "name", "type", "meter", "mode", "abc", "date", "username",
          "composer"]
# (tune_id, setting_id, name, type, meter, mode, abc): two settings of one tune, \r\n bodies,
# quotes and commas inside fields, and four records to skip.
RECORDS = [
    ("1", "11", "Cooley's", "reel", "4/4", "Edorian",
     '|:D2|"Em"EBBA B2 EB|B2AB dBAG|\r\nFDAD BDAD|FDAD dAFD:|\r\n'),
    ("1", "12", "Cooley's", "reel", "4/4", "Edorian",
     "|:EBBA B2 EB|B2AB dBAG|\r\nFDAD BDAD|dAFD E2:|"),
    ("2", "21", 'Kesh, The "Big" One', "jig", "6/8", "Gmajor",
     '|:"G"GAG GAB|"D"ABA ABd|\r\n"G"edd gdd|"C"edB "D"dBA:|'),
    ("3", "31", "Bad Mode", "polka", "2/4", "Hmajor", "AB cd|"),
    ("4", "41", "No Mode", "polka", "2/4", "", "AB cd|"),
    ("5", "51", "No Music", "reel", "4/4", "Dmajor", " \r\n "),
    ("6", "61", "Britches", "polka", "2/4", "Amixolydian", "|:A>B cA|BA cA|A>B cA|BA F2:|\n"),
    ("7", "71", "Sharp Minor", "slip jig", "9/8", "F#minor", "FAc fec BAG|F3 c3 F3|"),
    ("8", "81", "Flat Major", "waltz", "3/4", "Bbmajor", "B2 d2 f2|b6|"),
    ("9", "91", "Two Tunes", "reel", "4/4", "Gmajor", "GABc|\r\nX:2\r\nDEFG|"),
]
EXPECTED = {
    "11": "X:11\nT:Cooley's\nR:reel\nM:4/4\nL:1/8\nK:Edor\n"
          '|:D2|"Em"EBBA B2 EB|B2AB dBAG|\nFDAD BDAD|FDAD dAFD:|\n',
    "12": "X:12\nT:Cooley's\nR:reel\nM:4/4\nL:1/8\nK:Edor\n"
          "|:EBBA B2 EB|B2AB dBAG|\nFDAD BDAD|dAFD E2:|\n",
    "21": 'X:21\nT:Kesh, The "Big" One\nR:jig\nM:6/8\nL:1/8\nK:Gmaj\n'
          '|:"G"GAG GAB|"D"ABA ABd|\n"G"edd gdd|"C"edB "D"dBA:|\n',
    "61": "X:61\nT:Britches\nR:polka\nM:2/4\nL:1/8\nK:Amix\n|:A>B cA|BA cA|A>B cA|BA F2:|\n",
    "71": "X:71\nT:Sharp Minor\nR:slip jig\nM:9/8\nL:1/8\nK:F#min\nFAc fec BAG|F3 c3 F3|\n",
    "81": "X:81\nT:Flat Major\nR:waltz\nM:3/4\nL:1/8\nK:Bbmaj\nB2 d2 f2|b6|\n",
}
SKIPPED = {"mode_unparsable": 1, "mode_missing": 1, "empty_body": 1, "x_line_in_body": 1,
           "bad_record": 1}


def _write_csv(path: pathlib.Path) -> pathlib.Path:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(HEADER)
    for record in RECORDS:
      writer.writerow([*record, "2020-01-01 00:00:00", "someone, somewhere", ""])
  with open(path, "a", encoding="utf-8") as f:
    f.write('10,101,"Short Row",reel\r\n')  # 4 fields: not a record
  return path


def _write_json(path: pathlib.Path) -> pathlib.Path:
  records = [dict(zip(HEADER, [*r, "2020-01-01 00:00:00", "someone", ""])) for r in RECORDS]
  path.write_text(json.dumps(records + ["not a record"], indent=1), encoding="utf-8")
  return path


def _all_tunes(out_dir) -> dict[str, list[str]]:
  return {split: corpus.load_tunes(out_dir, split) for split in corpus.SPLITS}


@pytest.mark.parametrize("writer", [_write_csv, _write_json], ids=["csv", "json"])
def test_settings_become_tunes_and_skips_are_counted(tmp_path, writer):
  path = writer(tmp_path / f"tunes.{writer.__name__[-4:].strip('_')}")
  stats = corpus.build_corpus(tmp_path / "out", source="thesession", input_file=path,
                              progress=False)
  splits = _all_tunes(tmp_path / "out")
  built = sorted(t for tunes in splits.values() for t in tunes)
  assert built == sorted(EXPECTED.values())
  assert stats["files_read"] == len(RECORDS) + 1
  assert stats["files_rejected"] == SKIPPED
  details = stats["source_details"]
  assert details["records_read"] == len(RECORDS) + 1 and details["records_skipped"] == SKIPPED
  assert details["format"] == path.suffix[1:] and stats["split_by"] == "group"
  assert stats["tunes_kept"] == len(EXPECTED)
  with open(tmp_path / "out" / "rejects.tsv", newline="") as f:
    rows = {(r["path"], r["reason"]) for r in csv.DictReader(f, delimiter="\t")}
  bad_path = "tunes.csv#record11" if path.suffix == ".csv" else "tunes.json#record11"
  assert rows == {(f"{path.name}#setting31", "mode_unparsable"),
                  (f"{path.name}#setting41", "mode_missing"),
                  (f"{path.name}#setting51", "empty_body"),
                  (f"{path.name}#setting91", "x_line_in_body"), (bad_path, "bad_record")}
  # The two settings of tune 1 share a split.
  [split_of_cooleys] = {s for s, tunes in splits.items() if any("Cooley" in t for t in tunes)}
  assert sum("Cooley" in t for t in splits[split_of_cooleys]) == 2


def test_built_tunes_parse_in_music21_with_full_bars(tmp_path):
  """L:1/8 fills each bar: a polka's 2/4 bar is four eighths (L:1/16, ABC's default for 2/4,
  would make it half a bar)."""
  import music21

  keys = {"11": (2, "dorian"), "21": (1, "major"), "61": (2, "mixolydian"), "71": (3, "minor"),
          "81": (-2, "major")}
  for setting, (sharps, mode) in keys.items():
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      score = music21.converter.parse(EXPECTED[setting], format="abc")
    key = score.flatten().getElementsByClass(music21.key.KeySignature).first()
    assert (key.sharps, key.mode) == (sharps, mode), setting
    measures = score.parts[0].getElementsByClass(music21.stream.Measure)
    bar = score.flatten().getElementsByClass(music21.meter.TimeSignature).first().barDuration
    full = [m for m in measures if m.duration.quarterLength == bar.quarterLength]
    assert len(full) >= max(2, len(measures) - 2), setting  # all but a pickup and the last bar


def test_csv_and_json_build_the_same_corpus(tmp_path):
  a = corpus.build_corpus(tmp_path / "a", source="thesession",
                          input_file=_write_csv(tmp_path / "tunes.csv"), progress=False)
  b = corpus.build_corpus(tmp_path / "b", source="thesession",
                          input_file=_write_json(tmp_path / "tunes.json"), progress=False)
  assert _all_tunes(tmp_path / "a") == _all_tunes(tmp_path / "b")
  assert a["splits"] == b["splits"]


def test_key_field():
  assert [thesession.key_field(m) for m in ("Dmajor", "Edorian", "Aminor", "Gmixolydian",
                                            "F#minor", "Bbmajor", "Clydian", "Hmajor", "D")] == [
      "Dmaj", "Edor", "Amin", "Gmix", "F#min", "Bbmaj", "Clyd", None, None]


def test_a_missing_or_wrong_file_names_the_flag_and_file(tmp_path):
  def build(**kwargs):
    corpus.build_corpus(tmp_path / "out", source="thesession", progress=False, **kwargs)

  with pytest.raises(ValueError, match="--input_file is required"):
    build()
  with pytest.raises(ValueError, match=r"--input_file=.*nowhere\.csv: file does not exist"):
    build(input_file=tmp_path / "nowhere.csv")
  (tmp_path / "sets.csv").write_text("tuneset,date,member_id,username\n1,2020,3,x\n")
  with pytest.raises(ValueError, match=r"--input_file=.*sets\.csv: .*lacks the column\(s\) tune_"):
    build(input_file=tmp_path / "sets.csv")
  (tmp_path / "tune.abc").write_text("X:1\nT:t\nK:G\nGAB|\n")
  with pytest.raises(ValueError, match=r"--input_file=.*tune\.abc: .*lacks the column"):
    build(input_file=tmp_path / "tune.abc")
  (tmp_path / "dict.json").write_text('{"tunes": []}')
  with pytest.raises(ValueError, match=r"--input_file=.*dict\.json: holds a JSON dict"):
    build(input_file=tmp_path / "dict.json")
  (tmp_path / "broken.json").write_text('[{"tune_id": 1,')
  with pytest.raises(ValueError, match=r"--input_file=.*broken\.json: not valid JSON"):
    build(input_file=tmp_path / "broken.json")
  (tmp_path / "zipped.csv").write_bytes(b"PK\x03\x04\x00\x00binary")
  with pytest.raises(ValueError, match=r"--input_file=.*zipped\.csv: a binary file"):
    build(input_file=tmp_path / "zipped.csv")
  good = _write_csv(tmp_path / "tunes.csv")
  with pytest.raises(ValueError, match="--input_dir=.*--source=thesession reads one file"):
    build(input_file=good, input_dir=tmp_path)
  with pytest.raises(ValueError, match="--input_file=.*only --source=thesession"):
    corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=tmp_path, input_file=good)
  assert not (tmp_path / "out").exists()


def test_prepare_data_reads_the_file_and_transposes(tmp_path):
  import subprocess
  import sys

  repo = pathlib.Path(__file__).resolve().parents[1]
  path = _write_csv(tmp_path / "tunes.csv")
  run = lambda *flags: subprocess.run(  # noqa: E731
      [sys.executable, "-m", "experiments.prepare_data", "--source=thesession",
       f"--input_file={path}", f"--out_dir={tmp_path / 'out'}", *flags],
      cwd=repo, capture_output=True, text=True, timeout=120)
  out = run("--transpose=-2,2")
  assert out.returncode == 0, out.stderr
  assert "transposed: shifts [-2, 2]" in out.stdout
  stats = json.loads((tmp_path / "out" / "stats.json").read_text())
  assert stats["input_file"] == str(path) and stats["transpose"]["shifts"] == [-2, 2]
  assert stats["splits"]["train"]["tunes"] == 3 * stats["transpose"]["train_tunes"]
  bad = run("--transpose=0")
  assert bad.returncode == 1 and "--transpose=0" in bad.stderr and "Traceback" not in bad.stderr

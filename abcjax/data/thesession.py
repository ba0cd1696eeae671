"""The Session's public data dump (thesession.org) as a corpus source: --source=thesession.

Users download its tunes file once (csv/tunes.csv or json/tunes.json of
github.com/adactio/TheSession-data, ~50k tune settings) and give its path with --input_file.
Check the dump's LICENSE.md first: since October 2025 it restricts use of the data with large
language models, on top of the ODbL.

One record per tune setting, with the fields tune_id, setting_id, name, type, meter, mode, abc,
date, username (newer dumps add composer; other fields are ignored). `abc` holds only the tune
body, lines separated by \\r\\n or \\n. `build_tune` writes the header in front of it:

  X:<setting_id>
  T:<name>
  R:<type>
  M:<meter>
  L:1/8
  K:<tonic><mode>   from `mode`: "Dmajor" -> K:Dmaj, "Edorian" -> K:Edor, "Aminor" -> K:Amin

L:1/8 for every setting, as the site's own ABC pages write it: settings of every type are typed
in eighth-note units. ABC's default rule would give L:1/16 to meters below 3/4, halving every note
of the 2/4 polkas (on the site "A>B cA|BA cA|" is a full 2/4 bar only in eighths).

Each record is one input "file" in the build's counts (files_read, files_rejected, rejects.tsv
path "<file name>#setting<setting_id>"). Skipped records, by reason:
  mode_missing      no mode
  mode_unparsable   a mode that is not <A-G>[#b]<major|minor|dorian|...>
  empty_body        no ABC in `abc`
  x_line_in_body    a body line starting with X: (it would start another tune)
  bad_record        a CSV row with another number of fields than the header, or a JSON entry
                    that is not an object
Settings of one tune (same tune_id) are variants of one melody: they share a split
(`RawFile.group`).

A CSV file is read row by row; a JSON file is loaded whole (the dump's is ~50 MB).
"""

from __future__ import annotations

import csv
import json
import pathlib
import re
from typing import Iterator, NamedTuple

import tqdm

REQUIRED_FIELDS = ("tune_id", "setting_id", "name", "type", "meter", "mode", "abc")
SKIP_REASONS = ("mode_missing", "mode_unparsable", "empty_body", "x_line_in_body", "bad_record")
UNIT_LENGTH = "1/8"

_MODE = re.compile(r"([A-G])([#b]?)\s*(major|minor|dorian|mixolydian|lydian|phrygian|locrian|"
                   r"aeolian|ionian)", re.IGNORECASE)
_X_LINE = re.compile(r"^X:", re.MULTILINE)


def _file_error(path, message: str) -> ValueError:
  return ValueError(f"--input_file={path}: {message}")


_WRONG_FORMAT = ("expected The Session's tunes file, csv/tunes.csv or json/tunes.json of "
                 "github.com/adactio/TheSession-data, with the fields " + ",".join(REQUIRED_FIELDS))


def key_field(mode: str) -> str | None:
  """K: value for a `mode` such as "Dmajor", "F#minor", "Edorian"; None if it is not one."""
  m = _MODE.fullmatch(mode.strip())
  if m is None:
    return None
  letter, accidental, name = m.groups()
  return f"{letter}{accidental}{name[:3].lower()}"


def build_tune(record: dict, index: int) -> tuple[str | None, str | None, str]:
  """A full ABC tune from one record. Returns (tune, None, "") or (None, skip reason, detail)."""
  def field(name):
    value = record.get(name)
    return "" if value is None else " ".join(str(value).split())

  mode = field("mode")
  if not mode:
    return None, "mode_missing", "no mode"
  key = key_field(mode)
  if key is None:
    return None, "mode_unparsable", f"mode {mode[:40]!r}"
  body = str(record.get("abc") or "").replace("\r\n", "\n").replace("\r", "\n").strip("\n")
  if not body.strip():
    return None, "empty_body", "no ABC in the abc field"
  if _X_LINE.search(body):
    return None, "x_line_in_body", "a line of the abc field starts with X:"
  setting = field("setting_id")
  header = [f"X:{setting if setting.isdigit() else index + 1}"]
  header += [f"{tag}:{field(name)}" for tag, name in (("T", "name"), ("R", "type"), ("M", "meter"))
             if field(name)]
  header += [f"L:{UNIT_LENGTH}", f"K:{key}"]
  return "\n".join(header + [body]) + "\n", None, ""


def check_file(input_file) -> str:
  """Checks the tunes file before a build starts. Returns its format, "csv" or "json"."""
  if input_file is None:
    raise ValueError("--input_file is required for --source=thesession (the path of The "
                     "Session's csv/tunes.csv or json/tunes.json)")
  path = pathlib.Path(input_file)
  if not path.is_file():
    raise _file_error(input_file, "file does not exist or is not a file; download The Session's "
                      "tunes file (github.com/adactio/TheSession-data: csv/tunes.csv or "
                      "json/tunes.json) and give its path")
  try:
    with open(path, "rb") as f:
      start = f.read(1 << 16)
  except OSError as e:
    raise _file_error(input_file, f"cannot be read: {e.strerror or e}") from None
  if b"\0" in start:
    raise _file_error(input_file, f"a binary file; {_WRONG_FORMAT}")
  suffix = path.suffix.lower()
  if suffix not in (".csv", ".json"):
    suffix = ".json" if start.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") else ".csv"
  fmt = suffix[1:]
  if fmt == "csv":
    header = _csv_header(path, input_file)
    missing = [name for name in REQUIRED_FIELDS if name not in header]
    if missing:
      raise _file_error(input_file, f"its first line lacks the column(s) {','.join(missing)}; "
                        f"{_WRONG_FORMAT}")
  return fmt


def _open_text(path: pathlib.Path):
  return open(path, encoding="utf-8-sig", newline="")


def _csv_header(path: pathlib.Path, input_file) -> list[str]:
  try:
    with _open_text(path) as f:
      return [name.strip() for name in next(csv.reader(f), [])]
  except (UnicodeDecodeError, csv.Error) as e:
    raise _file_error(input_file, f"not a UTF-8 CSV file ({e}); {_WRONG_FORMAT}") from None


def _json_records(path: pathlib.Path, input_file) -> list:
  try:
    with _open_text(path) as f:
      data = json.load(f)
  except UnicodeDecodeError as e:
    raise _file_error(input_file, f"not UTF-8 text ({e}); {_WRONG_FORMAT}") from None
  except json.JSONDecodeError as e:
    raise _file_error(input_file, f"not valid JSON ({e}); {_WRONG_FORMAT}") from None
  if not isinstance(data, list):
    raise _file_error(input_file, f"holds a JSON {type(data).__name__}, not a list of tune "
                      f"settings; {_WRONG_FORMAT}")
  first = next((r for r in data if isinstance(r, dict)), None)
  missing = [name for name in REQUIRED_FIELDS if first is None or name not in first]
  if missing:
    raise _file_error(input_file, f"its records lack the field(s) {','.join(missing)}; "
                      f"{_WRONG_FORMAT}")
  return data


def _csv_records(path: pathlib.Path, input_file) -> Iterator[tuple[dict | None, str]]:
  with _open_text(path) as f:
    reader = csv.reader(f)
    header = [name.strip() for name in next(reader)]
    try:
      for row in reader:
        if not row:  # a blank line holds no record
          continue
        if len(row) != len(header):
          yield None, f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
          continue
        yield dict(zip(header, row)), ""
    except (UnicodeDecodeError, csv.Error) as e:
      raise _file_error(input_file, f"unreadable after line {reader.line_num} ({e}); "
                        f"{_WRONG_FORMAT}") from None


def iter_records(input_file, fmt: str) -> Iterator[tuple[dict | None, str]]:
  """(record, "") per record, or (None, why) for one that is not a record. A JSON file is read
  and checked at the call, a CSV file (checked by `check_file`) as the iterator goes."""
  path = pathlib.Path(input_file)
  if fmt == "csv":
    return _csv_records(path, input_file)
  return ((r, "") if isinstance(r, dict) else
          (None, f"entry {i} is a JSON {type(r).__name__}, not an object")
          for i, r in enumerate(_json_records(path, input_file)))


class Setting(NamedTuple):
  path: str  # "<file name>#setting<setting_id>", as rejects.tsv shows it
  tune: str | None  # the built tune; None when the record is skipped
  reason: str | None = None  # one of SKIP_REASONS when skipped
  detail: str = ""
  group: str | None = None  # the tune_id: settings of one tune share a split


def iter_settings(input_file, stats: dict, progress: bool = True,
                  max_files: int | None = None) -> Iterator[Setting]:
  """The settings of a tunes file, built into tunes, in file order.

  Bad arguments (no file, wrong format) raise here, before anything is read. `stats` gets the
  record counts, final once the iterator is exhausted.
  """
  fmt = check_file(input_file)
  records = iter_records(input_file, fmt)
  stats.update({"root": str(input_file), "format": fmt, "unit_length": UNIT_LENGTH,
                "records_read": 0, "records_skipped": {}})
  return _iter_settings(input_file, records, stats, progress, max_files)


def _iter_settings(input_file, records: Iterator[tuple[dict | None, str]], stats: dict,
                   progress: bool, max_files: int | None) -> Iterator[Setting]:
  name = pathlib.Path(input_file).name
  skipped = stats["records_skipped"]
  with tqdm.tqdm(desc="reading", unit="setting", disable=not progress) as bar:
    for index, (record, problem) in enumerate(records):
      if max_files is not None and index >= max_files:
        break
      bar.update()
      stats["records_read"] += 1
      if record is None:
        setting = Setting(f"{name}#record{index + 1}", None, "bad_record", problem)
      else:
        setting_id = " ".join(str(record.get("setting_id") or "").split())
        path = f"{name}#setting{setting_id}" if setting_id else f"{name}#record{index + 1}"
        tune, reason, detail = build_tune(record, index)
        tune_id = " ".join(str(record.get("tune_id") or "").split())
        setting = Setting(path, tune, reason, detail, tune_id or None)
      if setting.reason is not None:
        skipped[setting.reason] = skipped.get(setting.reason, 0) + 1
      yield setting

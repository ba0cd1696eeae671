"""The MIDI route: midi2abc conversion, its cache (resume), failures and timeouts."""

import csv
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from abcjax.data import corpus, sources

needs_midi2abc = pytest.mark.skipif(
    shutil.which(sources.MIDI2ABC) is None,
    reason="midi2abc is not installed (sudo apt-get install abcmidi)")


def _vlq(n: int) -> bytes:
  out = [n & 0x7F]
  while n := n >> 7:
    out.append(0x80 | (n & 0x7F))
  return bytes(reversed(out))


def midi_bytes(pitches, ticks: int = 96) -> bytes:
  """A format-0 MIDI file: 4/4, 120 bpm, one quarter note per pitch."""
  events = b"\x00\xff\x51\x03\x07\xa1\x20" + b"\x00\xff\x58\x04\x04\x02\x18\x08"
  for p in pitches:
    events += b"\x00" + bytes([0x90, p, 80]) + _vlq(ticks) + bytes([0x80, p, 0])
  events += b"\x00\xff\x2f\x00"
  header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
  return header + ticks.to_bytes(2, "big") + b"MTrk" + len(events).to_bytes(4, "big") + events


def _write_midi_dir(root: pathlib.Path, n_good: int = 4) -> pathlib.Path:
  (root / "sub").mkdir(parents=True)
  for i in range(n_good):
    name = f"sub/song{i}.midi" if i % 2 else f"song{i}.mid"
    (root / name).write_bytes(midi_bytes([60 + i, 62, 64, 65, 67, 69, 71, 72]))
  (root / "corrupt.mid").write_bytes(b"MThd not really a midi file")
  (root / "empty.mid").write_bytes(b"")
  (root / "readme.txt").write_text("not midi")
  return root


def _rejects(out_dir) -> set[tuple[str, str]]:
  with open(pathlib.Path(out_dir) / "rejects.tsv", newline="") as f:
    return {(r["path"], r["reason"]) for r in csv.DictReader(f, delimiter="\t")}


def _build(input_dir, out_dir, **kwargs):
  return corpus.build_corpus(out_dir, source="midi_dir", input_dir=input_dir, progress=False,
                             split_fractions=(0.5, 0.25, 0.25), workers=2, **kwargs)


@needs_midi2abc
def test_convert_count_failures_and_resume(tmp_path):
  midi_dir = _write_midi_dir(tmp_path / "midi")
  out = tmp_path / "out"
  stats = _build(midi_dir, out)
  assert stats["files_read"] == 6
  assert stats["files_rejected"] == {"midi2abc_failed": 1, "empty_file": 1}
  assert stats["tunes_kept"] == 4
  assert stats["source_details"]["midi2abc_runs"] == 5  # the empty file is not run
  assert _rejects(out) == {("corrupt.mid", "midi2abc_failed"), ("empty.mid", "empty_file")}
  tunes = sum((corpus.load_tunes(out, s) for s in corpus.SPLITS), [])
  # Titles name the file relative to the input folder, not where the folder lives.
  assert sorted(t.split("\n")[1] for t in tunes) == [
      "T: from song0.mid", "T: from song2.mid", "T: from sub/song1.midi", "T: from sub/song3.midi"]
  assert all("\nK:C\n" in t and "%" not in t for t in tunes)
  before = {s: (out / f"{s}.txt").read_text() for s in corpus.SPLITS}

  again = _build(midi_dir, out)
  assert again["source_details"]["midi2abc_runs"] == 0  # successes and failures both cached
  assert again["source_details"]["midi_cache_hits"] == 5
  assert again["files_rejected"] == stats["files_rejected"]
  assert {s: (out / f"{s}.txt").read_text() for s in corpus.SPLITS} == before

  song = midi_dir / "song0.mid"
  os.utime(song, ns=(song.stat().st_atime_ns, song.stat().st_mtime_ns + 10**9))
  assert _build(midi_dir, out)["source_details"]["midi2abc_runs"] == 1  # a changed file only


@needs_midi2abc
def test_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
  midi_dir = _write_midi_dir(tmp_path / "midi")
  cache = tmp_path / "cache"
  run = sources._MidiConverter._run

  def interrupted_run(self, rel, size):
    if rel == "song2.mid":
      raise KeyboardInterrupt
    return run(self, rel, size)

  monkeypatch.setattr(sources._MidiConverter, "_run", interrupted_run)
  with pytest.raises(KeyboardInterrupt):
    # One worker: corrupt.mid and song0.mid finish (empty.mid needs no run), then Ctrl-C.
    list(sources.iter_midi_dir(midi_dir, cache, {}, workers=1, progress=False))
  monkeypatch.setattr(sources._MidiConverter, "_run", run)
  stats = {}
  files = list(sources.iter_midi_dir(midi_dir, cache, stats, progress=False))
  assert (stats["midi2abc_runs"], stats["midi_cache_hits"]) == (3, 2)
  assert [f.reason for f in files] == ["midi2abc_failed", "empty_file", None, None, None, None]


@needs_midi2abc
def test_hung_midi2abc_is_killed_and_counted(tmp_path, monkeypatch):
  midi_dir = _write_midi_dir(tmp_path / "midi")
  (midi_dir / "hang.mid").write_bytes(midi_bytes([60, 64]))
  # A stand-in that hangs on one file (in a child process, which must die too) and converts the rest.
  fake = tmp_path / "fake_midi2abc"
  fake.write_text("#!/bin/sh\ncase \"$2\" in *hang*) sleep 60; exit 0;; esac\n"
                  f"exec {shutil.which('midi2abc')} \"$@\"\n")
  fake.chmod(0o755)
  monkeypatch.setattr(sources, "MIDI2ABC", str(fake))
  start = time.perf_counter()
  stats = _build(midi_dir, tmp_path / "out", timeout_s=1.0)
  assert time.perf_counter() - start < 20
  assert stats["files_rejected"] == {"midi2abc_failed": 1, "empty_file": 1, "midi2abc_timeout": 1}
  assert stats["tunes_kept"] == 4
  assert ("hang.mid", "midi2abc_timeout") in _rejects(tmp_path / "out")
  # The timeout is cached, and retried only under a longer limit.
  again = _build(midi_dir, tmp_path / "out", timeout_s=1.0)
  assert again["source_details"]["midi2abc_runs"] == 0
  assert again["files_rejected"]["midi2abc_timeout"] == 1


def test_midi_conversion_runs_a_bounded_window_ahead(tmp_path, monkeypatch):
  """Results stream in path order; at most 4 per worker are converted ahead of the consumer."""
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  for i in range(40):
    (midi_dir / f"s{i:02d}.mid").write_bytes(b"MThd stand-in")
  fake = tmp_path / "fake_midi2abc"
  fake.write_text("#!/bin/sh\nprintf 'X:1\\nT: from %s\\nK:C\\nabc|\\n' \"$2\"\n")
  fake.chmod(0o755)
  monkeypatch.setattr(sources, "MIDI2ABC", str(fake))
  stats = {}
  files = sources.iter_midi_dir(midi_dir, tmp_path / "cache", stats, workers=2, progress=False)
  first = next(files)
  assert first.path == "s00.mid" and b"T: from s00.mid" in first.data
  time.sleep(0.5)  # time enough for unbounded workers to convert far ahead
  assert len(list((tmp_path / "cache").glob("*.abc"))) <= 4 * 2 + 1
  rest = list(files)
  assert [f.path for f in rest] == [f"s{i:02d}.mid" for i in range(1, 40)]
  assert stats["midi2abc_runs"] == 40 and stats["midi_cache_hits"] == 0


def test_ctrl_c_while_cleaning_kills_the_conversions_ahead(tmp_path, monkeypatch):
  midi_dir = tmp_path / "midi"
  midi_dir.mkdir()
  for i in range(8):
    (midi_dir / f"s{i}.mid").write_bytes(b"MThd stand-in")
  fake = tmp_path / "fake_midi2abc"  # the first file converts, the rest hang
  fake.write_text("#!/bin/sh\ncase \"$2\" in s0.mid) printf 'X:1\\nK:C\\nabc|\\n';; "
                  "*) sleep 60;; esac\n")
  marker = str(fake)  # in the command line of each hanging converter
  fake.chmod(0o755)
  monkeypatch.setattr(sources, "MIDI2ABC", str(fake))

  def interrupted(data):
    raise KeyboardInterrupt  # Ctrl-C while the first converted file is being cleaned

  monkeypatch.setattr(corpus.abc_text, "decode_bytes", interrupted)
  # The traceback, kept as a caller that reports it would, keeps the build's frames alive: the
  # build must stop its converters itself, not leave it to the garbage collector.
  with pytest.raises(KeyboardInterrupt) as caught:
    _build(midi_dir, tmp_path / "out")
  deadline = time.time() + 5
  while time.time() < deadline and _running(marker):
    time.sleep(0.1)
  assert not _running(marker), caught.traceback[-1]
  assert not list((tmp_path / "out" / sources.MIDI_CACHE_DIR).glob("*.fail.json"))


def _running(marker: str) -> bool:
  return subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 0


def test_missing_midi2abc_says_how_to_install(tmp_path, monkeypatch):
  (tmp_path / "midi").mkdir()
  (tmp_path / "midi" / "a.mid").write_bytes(midi_bytes([60]))
  monkeypatch.setattr(sources, "MIDI2ABC", str(tmp_path / "no_such_midi2abc"))
  with pytest.raises(FileNotFoundError, match="apt-get install abcmidi"):
    _build(tmp_path / "midi", tmp_path / "out")


def test_midi_dir_without_midi_files(tmp_path):
  (tmp_path / "midi").mkdir()
  with pytest.raises(ValueError, match=r"--input_dir=.*midi.*no files ending in \.mid/\.midi"):
    _build(tmp_path / "midi", tmp_path / "out")


def _songs(src: pathlib.Path, count: int) -> pathlib.Path:
  src.mkdir()
  for i in range(count):
    (src / f"song{i}.mid").write_bytes(midi_bytes([60 + i, 62, 64, 65]))
  return src


@needs_midi2abc
def test_copies_of_one_midi_file_are_duplicates_and_dash_names_convert(tmp_path):
  src = _songs(tmp_path / "midi", 6)
  (src / "copy_of_song0.mid").write_bytes((src / "song0.mid").read_bytes())
  (src / "-dash.mid").write_bytes(midi_bytes([50, 52, 53, 55]))  # not an option for midi2abc
  stats = _build(src, tmp_path / "out", dedup=True)
  assert stats["exact_duplicates"] == 1 and stats["tunes_rejected"] == {"duplicate": 1}
  assert ("song0.mid", "duplicate") in _rejects(tmp_path / "out")  # copy_of_song0 comes first
  tunes = [t for s in corpus.SPLITS for t in corpus.load_tunes(tmp_path / "out", s)]
  assert len(tunes) == 7 and any("T: from ./-dash.mid" in t for t in tunes)


@needs_midi2abc
def test_a_midi_file_name_that_is_not_utf8_converts(tmp_path):
  src = _songs(tmp_path / "midi", 3)
  with open(os.fsencode(src) + b"/caf\xe9.mid", "wb") as f:
    f.write(midi_bytes([50, 52, 53, 55]))
  stats = _build(src, tmp_path / "out")
  assert stats["files_read"] == 4 and stats["tunes_kept"] == 4

"""ABC -> MIDI with music21 (with a fix for its shared-TimeSignature quirk), and abc2midi's check.

The quirk: music21's ABC reader (`abcFormat.translate.reBar`) splits a bar that is longer than
its meter, gives the overflow its own TimeSignature, and then restores the meter by assigning
the *same* TimeSignature object to the next measure (`allMeasures[i + 1].timeSignature =
lastTimeSignature`). Once two measures share one object, the MIDI writer's
`midi.translate.conductorStream` inserts every TimeSignature it finds into one conductor Part,
meets that object twice and raises `StreamException: ... TimeSignature ... is already found in
this Stream`. Essen tunes, whose bars run across lines, hit it often (7.6% of the corpus).
`unshare_context_objects` gives every extra occurrence its own deep copy before writing.

A second, rarer failure: music21's repeat expander raises `ExpanderException` on repeats it finds
unbalanced (0.5% of corpus tunes); those are written without expanding (`strip_repeats`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings

DEFAULT_TIMEOUT_S = 30.0


@dataclasses.dataclass
class ConversionResult:
  converted: bool
  error: str = ''  # '' when converted; 'timeout' when it ran past the limit
  seconds: float = 0.0
  notes: int = 0  # note-on events read back from the written MIDI file
  duration_quarters: float = 0.0


@dataclasses.dataclass
class Abc2MidiResult:
  available: bool  # abc2midi is on PATH
  ok: bool | None = None  # no `Error` line; None when unavailable
  errors: list[str] = dataclasses.field(default_factory=list)
  warnings: int = 0


class ConversionTimeout(BaseException):
  """Raised by the alarm; a BaseException so music21's own `except Exception` can't swallow it."""


def _call_with_timeout(fn, timeout_s: float):
  """Runs fn() under SIGALRM when on the main thread (music21 is pure Python, so the alarm can
  interrupt it); elsewhere runs it without a limit."""
  if timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
    return fn()

  def on_alarm(signum, frame):
    raise ConversionTimeout()

  previous = signal.signal(signal.SIGALRM, on_alarm)
  signal.setitimer(signal.ITIMER_REAL, timeout_s)
  try:
    return fn()
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def parse_abc(text: str):
  """music21's parse of one tune (a Score); an Opus yields its first score.

  Always the text itself: `converter.parse` would read a file (or fetch a URL) whose name the
  text happens to be, e.g. '' the working folder and 'C' a file named C.
  """
  from music21 import converter, stream
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    parsed = converter.parseData(text, format='abc')
  if isinstance(parsed, stream.Opus):
    parsed = parsed.scores[0] if parsed.scores else parsed
  return parsed


def has_study_fields(text: str) -> bool:
  return all(re.search(rf'(?m)^{f}:', text) for f in 'XTK')


def study_valid(text: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
  """The study's definition: X:, T: and K: present and music21 parses the tune."""
  if not has_study_fields(text):
    return False
  try:
    _call_with_timeout(lambda: parse_abc(text), timeout_s)
    return True
  except (Exception, ConversionTimeout):  # music21 raises many kinds; a timeout fails too
    return False


def unshare_context_objects(score) -> int:
  """Gives each TimeSignature/KeySignature/MetronomeMark that sits in several streams its own
  copy in every stream after the first. Returns how many copies were made."""
  from music21 import key, meter, tempo
  classes = (meter.TimeSignature, key.KeySignature, tempo.MetronomeMark)
  seen: set[int] = set()
  copies = 0
  for container in score.recurse(streamsOnly=True, includeSelf=True):
    for element in list(container.getElementsByClass(classes)):
      if id(element) in seen:
        container.replace(element, copy.deepcopy(element))
        copies += 1
      else:
        seen.add(id(element))
  return copies


def count_midi_notes(path: str) -> int:
  """Reads a MIDI file back with music21's low-level reader and counts note-on events."""
  from music21 import midi
  mf = midi.MidiFile()
  mf.open(path)
  try:
    mf.read()
  finally:
    mf.close()
  return sum(1 for track in mf.tracks for event in track.events
             if event.type == midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0)


def strip_repeats(score) -> None:
  """Turns repeat bar lines into plain ones and drops ending brackets (the music plays once)."""
  from music21 import bar, spanner, stream
  for measure in score.recurse().getElementsByClass(stream.Measure):
    if isinstance(measure.leftBarline, bar.Repeat):
      measure.leftBarline = None
    if isinstance(measure.rightBarline, bar.Repeat):
      measure.rightBarline = bar.Barline('regular')
  for bracket in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
    for site in list(bracket.sites.get()):
      if site is not None and bracket in site:
        site.remove(bracket)


def _convert(text: str, midi_path: str) -> tuple[int, float]:
  from music21 import midi, repeat
  score = parse_abc(text)
  unshare_context_objects(score)
  try:
    mf = midi.translate.streamToMidiFile(score)
  except repeat.ExpanderException:
    # music21 cannot expand repeats it finds unbalanced (e.g. a final `::` with no `:|` to
    # close it, which players read as a plain section end): write the music once instead
    strip_repeats(score)
    mf = midi.translate.streamToMidiFile(score)
  mf.open(midi_path, 'wb')
  try:
    mf.write()
  finally:
    mf.close()
  return count_midi_notes(midi_path), float(score.highestTime)


def abc_to_midi(text: str, midi_path: str | None = None,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> ConversionResult:
  """Converts one tune to MIDI with music21, checks the file reads back with notes.

  The file is written beside midi_path under a temporary name and renamed into place only when
  the conversion succeeds, so a failure leaves whatever was at midi_path untouched.
  midi_path None converts to a temporary file that is deleted afterwards.
  """
  start = time.perf_counter()
  tmp_dir = tempfile.mkdtemp(prefix='abc2mid') if midi_path is None else None
  # A name of this process's beside midi_path; music21 creates it with the usual permissions.
  path = (os.path.join(tmp_dir, 'tune.mid') if midi_path is None
          else f'{midi_path}.{os.getpid()}.{threading.get_ident()}.tmp')
  try:
    notes, quarters = _call_with_timeout(lambda: _convert(text, path), timeout_s)
    error = '' if notes > 0 else 'no_notes'
    if not error and midi_path:
      os.replace(path, midi_path)
  except ConversionTimeout:
    notes, quarters, error = 0, 0.0, 'timeout'
  except Exception as e:  # music21 raises many exception types on bad input
    notes, quarters = 0, 0.0
    error = f'{type(e).__name__}: {e}'.replace('\n', ' ')[:200]
  finally:
    if os.path.exists(path):
      os.remove(path)
    if tmp_dir:
      shutil.rmtree(tmp_dir, ignore_errors=True)
  return ConversionResult(not error, error, time.perf_counter() - start, notes, quarters)


def abc2midi_check(text: str, timeout_s: float = 20.0) -> Abc2MidiResult:
  """Runs `abc2midi -c` (check only: it reports the same messages as a conversion). abc2midi
  exits 0 even on errors, so its `Error` lines on stdout decide."""
  exe = shutil.which('abc2midi')
  if exe is None:
    return Abc2MidiResult(available=False)
  with tempfile.TemporaryDirectory(prefix='abc2midi') as tmp:
    path = os.path.join(tmp, 'tune.abc')
    with open(path, 'w', encoding='utf-8') as f:
      f.write(text if text.endswith('\n') else text + '\n')
    try:
      proc = subprocess.run([exe, path, '-c'], capture_output=True, text=True,
                            timeout=timeout_s, errors='replace')
    except subprocess.TimeoutExpired:
      return Abc2MidiResult(True, False, ['timeout'], 0)
  lines = (proc.stdout + proc.stderr).splitlines()
  errors = [line.strip() for line in lines if line.startswith('Error')]
  warning_count = sum(1 for line in lines if line.startswith('Warning'))
  return Abc2MidiResult(True, not errors, errors, warning_count)

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

abc2midi (when installed) cross-checks the checker: `abc2midi_check` runs it on one tune and
`classify_abc2midi_output` sorts its messages into hard errors (it cannot read the music as
written) and soft ones (its own limits, or constructs ABC 2.1 allows: ABC2MIDI_SOFT_ERRORS).
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

from abcjax.evaluation import abc_checker

DEFAULT_TIMEOUT_S = 30.0


@dataclasses.dataclass
class ConversionResult:
  converted: bool
  error: str = ""  # '' when converted; 'timeout' when it ran past the limit
  seconds: float = 0.0
  notes: int = 0  # note-on events read back from the written MIDI file
  duration_quarters: float = 0.0


@dataclasses.dataclass
class Abc2MidiResult:
  available: bool  # abc2midi is on PATH
  ok: bool | None = None  # no hard error; None when unavailable
  errors: list[str] = dataclasses.field(default_factory=list)  # hard errors
  warnings: int = 0  # Warning lines, soft errors included
  soft_errors: list[str] = dataclasses.field(default_factory=list)  # see ABC2MIDI_SOFT_ERRORS


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
    warnings.simplefilter("ignore")
    parsed = converter.parseData(text, format="abc")
  if isinstance(parsed, stream.Opus):
    parsed = parsed.scores[0] if parsed.scores else parsed
  return parsed


def has_study_fields(text: str) -> bool:
  return all(re.search(rf"(?m)^{f}:", text) for f in "XTK")


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
      measure.rightBarline = bar.Barline("regular")
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
  mf.open(midi_path, "wb")
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
  tmp_dir = tempfile.mkdtemp(prefix="abc2mid") if midi_path is None else None
  # A name of this process's beside midi_path; music21 creates it with the usual permissions.
  path = (os.path.join(tmp_dir, "tune.mid") if midi_path is None
          else f"{midi_path}.{os.getpid()}.{threading.get_ident()}.tmp")
  try:
    notes, quarters = _call_with_timeout(lambda: _convert(text, path), timeout_s)
    error = "" if notes > 0 else "no_notes"
    if not error and midi_path:
      os.replace(path, midi_path)
  except ConversionTimeout:
    notes, quarters, error = 0, 0.0, "timeout"
  except Exception as e:  # music21 raises many exception types on bad input
    notes, quarters = 0, 0.0
    error = f"{type(e).__name__}: {e}".replace("\n", " ")[:200]
  finally:
    if os.path.exists(path):
      os.remove(path)
    if tmp_dir:
      shutil.rmtree(tmp_dir, ignore_errors=True)
  return ConversionResult(not error, error, time.perf_counter() - start, notes, quarters)


# abc2midi prints `Error` also for things ABC 2.1 allows and for things only its own playback
# extras need (chord accompaniment, swing, repeat expansion); those count as its warnings. Every
# other `Error` line is a hard error: abc2midi could not read the music as written. Found on
# music21's ABC corpus with abc2midi 4.84; each with why it is not a defect of the tune.
ABC2MIDI_SOFT_ERRORS = (
    ("I: key", "an I: instruction abc2midi does not know; ABC 2.1 ignores unknown I: fields"),
    ("Guitar chord does not start with", 'a quoted text such as "fine": no chord to accompany'),
    ("Unrecognized chord name", "a quoted text or chord abc2midi cannot accompany"),
    ("Hornpipe must be in", "abc2midi's swing for R:hornpipe"),
    ("Cannot apply broken rhythm", "> between notes of unequal length (ABC 2.1: undefined)"),
    ("Could not find note to be tied", "a tie to a note of another pitch"),
    ("Cannot find note before tie", "a tie after a rest"),
    ("found [", "its repeat expansion: an ending before |:"),
    ("Missing :| at end of tune", "its repeat expansion"),
    ("Expected end repeat not found", "its repeat expansion"),
    ("found :: before |:", "its repeat expansion"),
    ("found another |: after a |:", "its repeat expansion"),
    ("Cannot find :| || [| or |] to close variant ending", "its repeat expansion"),
    ("malformed Q: field", "a Q: tempo it cannot read (ABC 2.1 accepts the old Q:120 forms)"),
    ("First K: field must specify key signature", "ABC 2.1 allows an empty K: (no signature)"),
    ("P: field in header should go after K: field", "ABC 2.1 puts the order of parts there"),
    ("in part specification", "a header P: that is not an order of parts"),
    ("'!' or '+' in middle of line ignored", "a ! line break (ABC 2.0, deprecated in 2.1)"),
    ("nested tuples", "a tuplet starting inside another"),
    ("Not a valid microtone", "a K: clef option such as -8va"),
    ("Intervening note needed between grace notes", "two grace groups in a row"),
    ("Rolls and trills not supported in chords", "its playback of ornaments"),
    ("Grace notes not allowed in chord", "its playback of grace notes"),
    ("Broken rhythm not allowed in chord", "its playback of broken rhythm"),
)
_ABC2MIDI_MESSAGE = re.compile(r"^(Error|Warning)(?: in line-char (\d+)-(\d+))?\s*:?\s*(.*)$")
# abc2midi 4.84 does not know ABC 2.1's invisible bar line `[|]` (it reads a chord): it gets `|`
# instead, or nothing where another bar line follows (`[|]|]`).
_INVISIBLE_BAR = re.compile(r"\[\|\]")
_INVISIBLE_BAR_BEFORE_BAR = re.compile(r"\[\|\](?=[|:\[])")


def _for_abc2midi(text: str) -> str:
  text = _INVISIBLE_BAR_BEFORE_BAR.sub("", text)
  return _INVISIBLE_BAR.sub("|", text if text.endswith("\n") else text + "\n")


def _allowed_by_abc21(message: str, lines: list[str], line_number: str | None,
                      column: str | None) -> bool:
  """Some of abc2midi's errors depend on what they point at (line, 0-based column): 'Field not
  allowed in tune body' for a field ABC 2.1 allows there (abc2midi 4.84 refuses N: and T:),
  'missplaced w: field' at a `+:` continuing another field (H:, N:), and 'Malformed note' at a
  decoration on something else than a note (`~(dcd)`, `H|`, `u"4"g`, `vkB`), not at an
  accidental without its note."""
  if not line_number or not 0 < int(line_number) <= len(lines):
    return False
  line = lines[int(line_number) - 1]
  if message.startswith("Field not allowed in tune body"):
    return line[:1] in abc_checker.BODY_FIELDS and line[1:2] == ":"
  if message.startswith("missplaced w: field"):  # abc2midi takes any +: for a w: continuation
    return line.startswith("+:")
  if message.startswith("Malformed note"):
    at = line[int(column):int(column) + 1] if column else ""
    return at != "" and at not in "^_="
  return False


def classify_abc2midi_output(output: str, text: str = "") -> Abc2MidiResult:
  """abc2midi's messages -> hard errors, soft errors (ABC2MIDI_SOFT_ERRORS) and a warning count.
  abc2midi exits 0 even on errors, so its `Error` lines decide. `text` is the tune it read, to
  see what some messages point at (_allowed_by_abc21)."""
  hard, soft, warning_count = [], [], 0
  lines = text.splitlines()
  for line in output.splitlines():
    m = _ABC2MIDI_MESSAGE.match(line.strip())
    if not m:
      continue
    kind, line_number, column, message = m.groups()
    if kind == "Warning":
      warning_count += 1
    elif any(pattern in message for pattern, _ in ABC2MIDI_SOFT_ERRORS):
      soft.append(line.strip())
    elif _allowed_by_abc21(message, lines, line_number, column):
      soft.append(line.strip())
    else:
      hard.append(line.strip())
  return Abc2MidiResult(True, not hard, hard, warning_count + len(soft), soft)


def abc2midi_check(text: str, timeout_s: float = 20.0) -> Abc2MidiResult:
  """Runs `abc2midi -c` (check only: it reports the same messages as a conversion) in a
  temporary folder and classifies what it prints (classify_abc2midi_output)."""
  exe = shutil.which("abc2midi")
  if exe is None:
    return Abc2MidiResult(available=False)
  with tempfile.TemporaryDirectory(prefix="abc2midi") as tmp:
    path = os.path.join(tmp, "tune.abc")
    text = _for_abc2midi(text)
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)
    try:
      # cwd: abc2midi writes a barloc.txt file into the working folder
      proc = subprocess.run([exe, path, "-c"], capture_output=True, text=True, cwd=tmp,
                            timeout=timeout_s, errors="replace")
    except subprocess.TimeoutExpired:
      return Abc2MidiResult(True, False, ["timeout"], 0)
  return classify_abc2midi_output(proc.stdout + proc.stderr, text)

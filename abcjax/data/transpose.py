"""Key transposition of ABC tunes, to enlarge a training set (as TunesFormer and NotaGen do).

`transpose_tune(text, semitones)` rewrites a whole tune by one diatonic interval (letter steps plus
semitones), of the two spellings the one whose keys need fewest accidentals (a tune in one key gets
at most 6; with key changes each key gets at most 7, the most a key signature holds):
  * every K: field (header, body lines and inline [K:...]): the tonic moves, the rest is kept as
    written (mode "Ador" / "D mix" / "E Minor", clef=..., -8va); explicit key accidentals (K:D =c)
    move like notes;
  * notes, including those of chords [..], grace notes {..} and old-style +CEG+ chords: the letter
    moves by the interval's steps, rewritten with its octave marks (' , and the letter's case);
    an unaltered note stays unaltered (the new key signature gives it the right pitch), and an
    explicit accidental (^ ^^ _ __ =) becomes alteration_in + semitones - (semitone distance
    between the two natural letters). Notes and accidentals so map one to one, so an accidental
    that carries through a bar carries through the same notes after the move;
  * chord symbols in quotes ("Am7", "D/F#", "G#m", "Bbmaj7"): root and bass move.
Never touched: header fields before the first K:, field lines in the body (T:, W:, w:, P:, ...),
comments, %% directives, !decorations!, +decorations+, annotations ("^text", "Fine", "D.C."),
and inline fields other than [K:...].

Shifts -5..+6 give the twelve keys (`ALL_SHIFTS` plus the original). A tune that cannot be
transposed raises `TransposeError` with one of `SKIP_REASONS`:
  key_none             K:none, or a first K: without a tonic (no key to move)
  key_highland_pipes   K:HP / K:Hp (a fixed bagpipe scale)
  key_percussion       K:perc or clef=perc (drum parts have no pitch to move)
  key_unrecognised     a K: value this module does not read (K:Es, K:Bn, unknown words)
  key_out_of_range     some K: would need more than 7 accidentals after the move
  accidental_out_of_range  an explicit accidental would need a triple sharp or flat
"""

from __future__ import annotations

import re

ALL_SHIFTS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6)
SKIP_REASONS = ("key_none", "key_highland_pipes", "key_percussion", "key_unrecognised",
                "key_out_of_range", "accidental_out_of_range")
MAX_KEY_ACCIDENTALS = 7  # a key signature holds at most 7 sharps or flats

_LETTERS = "CDEFGAB"
_NATURAL = (0, 2, 4, 5, 7, 9, 11)  # semitones of C D E F G A B above C
_LETTER_FIFTHS = (0, 2, 4, -1, 1, 3, 5)  # C major 0, D major 2 sharps, ..., F major 1 flat
_NOTE_ACCIDENTALS = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}
_NOTE_ACCIDENTAL_TEXT = {v: k for k, v in _NOTE_ACCIDENTALS.items()}
# Key signature of each mode relative to major, by the mode word's first three letters.
_MODE_FIFTHS = {"maj": 0, "ion": 0, "lyd": 1, "mix": -1, "dor": -2, "min": -3, "aeo": -3, "m": -3,
                "phr": -4, "loc": -5}

_FIELD_LINE = re.compile(r"[A-Za-z+]:(?!\|)")  # "A:|" opens a music line (a repeat), not a field
_MUSIC = re.compile(r"""
    (?P<comment>(?<!\\)%.*)
  | (?P<quote>"[^"\n]*")
  | (?P<bang>![^!\s]*!)
  | (?P<plus>\+[^+\s]*\+)
  | (?P<field>\[[A-Za-z]:[^\]\n]*\])
  | (?P<note>(?:\^\^?|__?|=)?[A-Ga-g][,']*)
""", re.VERBOSE)
_NOTE = re.compile(r"(\^\^?|__?|=)?([A-Ga-g])([,']*)")
# An abc 1.6 chord written +CEG+ (notes with lengths only); "+f+", "+ff+" are dynamics.
_PLUS_CHORD = re.compile(r"\+(?:(?:\^\^?|__?|=)?[A-Ga-g][,']*[0-9/]*)+\+")
_PLUS_DYNAMIC = re.compile(r"\+f+\+")
_CHORD_SYMBOL = re.compile(
    r"(\(?)([A-G])([#b]?)((?:maj|min|dim|aug|sus|add|alt|m|M|o|\+|-|[0-9]|#|b|\(|\)|/(?=[0-9]))*)"
    r"(?:/([A-G])([#b]?))?(\)?)")
_KEY = re.compile(r"(\s*)([A-G])([#b]?)(.*)", re.DOTALL)
_KEY_MODE = re.compile(r"(\s*)([A-Za-z]+)(.*)", re.DOTALL)
_KEY_ACCIDENTALS = re.compile(r"(?:(?:\^\^?|__?|=)[A-Ga-g])+")
_KEY_PARAMETER = re.compile(
    r"[A-Za-z-]+=\S*|[+-]?8va\w*|exp|(?:treble|bass|alto|tenor|baritone|none|[CFG][1-5]?)"
    r"(?:[+-]?8|[0-9])?", re.IGNORECASE)

_LITERAL, _NOTE_TEXT, _KEY_TEXT, _CHORD_TEXT = range(4)
# Moved note text per (letter steps, semitones): a corpus has few distinct notes.
_MOVED_NOTES: dict[tuple[int, int], dict[str, str | None]] = {}


class TransposeError(ValueError):
  """A tune that cannot be transposed; `reason` is one of SKIP_REASONS."""

  def __init__(self, reason: str, detail: str):
    super().__init__(f"{reason}: {detail}")
    self.reason, self.detail = reason, detail


def parse_shifts(spec: str) -> tuple[int, ...]:
  """The --transpose flag: "none" (or empty), "all" (ALL_SHIFTS), or semitone shifts "-2,2,5".

  Returns the shifts sorted. 0 is the original (always kept), so it may not be listed; shifts
  beyond -11..11 would only repeat a key an octave away.
  """
  spec = spec.strip().lower()
  if spec in ("", "none"):
    return ()
  if spec == "all":
    return ALL_SHIFTS
  try:
    shifts = [int(part) for part in spec.split(",")]
  except ValueError:
    raise ValueError(f"--transpose={spec}: give 'none', 'all', or comma-separated semitone "
                     "shifts such as -2,2,5") from None
  bad = [s for s in shifts if s == 0 or abs(s) > 11]
  if bad or len(set(shifts)) != len(shifts):
    raise ValueError(f"--transpose={spec}: shifts must be distinct, non-zero and within -11..11 "
                     "(the original is always kept; -5..6 covers all 12 keys)")
  return tuple(sorted(shifts))


def transpose_tune(text: str, semitones: int) -> str:
  """The tune moved by `semitones` (any integer; 0 gives the text unchanged). Raises
  TransposeError for a tune that cannot move, whatever the shift."""
  return _parse(text).render(semitones)


def transpositions(text: str, shifts) -> tuple[dict[int, str], dict[int, TransposeError]]:
  """The tune at each shift, reading it once: ({shift: text}, {shift: error} for the others)."""
  copies, errors = {}, {}
  try:
    parsed = _parse(text)
  except TransposeError as e:
    return copies, {s: e for s in shifts}
  for s in shifts:
    try:
      copies[s] = parsed.render(s)
    except TransposeError as e:
      errors[s] = e
  return copies, errors


def canonical_form(text: str) -> str:
  """The tune moved to the key signature without accidentals (C major, A minor, D dorian, ...),
  with octave marks dropped and note letters in lower case: one melody written in two keys or
  octaves gives one text, so a corpus build can tell a val/test tune in another key. Raises
  TransposeError as `transpose_tune` does."""
  parsed = _parse(text)
  semitones = (-7 * parsed.first_fifths + 5) % 12 - 5  # 7 is its own inverse modulo 12
  steps = (7 * semitones + parsed.first_fifths) // 12
  return parsed.render(semitones, steps=steps, octaves=False)


def _natural(step: int) -> int:
  """Semitones above C of the natural note `step` diatonic steps above C (7 steps an octave)."""
  return 12 * (step // 7) + _NATURAL[step % 7]


def _note_letter(step: int) -> str:
  # Step 0 is "C" (middle C), 7 is "c", 14 is "c'", -7 is "C,".
  octave, letter = divmod(step, 7)
  if octave >= 1:
    return _LETTERS[letter].lower() + "'" * (octave - 1)
  return _LETTERS[letter] + "," * -octave


def _moved_alteration(alteration: int, step: int, steps: int, semitones: int) -> int:
  return alteration + semitones - (_natural(step + steps) - _natural(step))


def _move_note(note: str, steps: int, semitones: int) -> str | None:
  """One note ("^f", "B,", "c''") moved; None when its accidental would pass a double one."""
  table = _MOVED_NOTES.setdefault((steps, semitones), {})
  moved = table.get(note, False)
  if moved is False:
    accidental, letter, marks = _NOTE.fullmatch(note).groups()
    step = _LETTERS.index(letter.upper()) + 7 * (letter.islower() + marks.count("'") -
                                                   marks.count(","))
    moved = _note_letter(step + steps)
    if accidental is not None:
      alteration = _moved_alteration(_NOTE_ACCIDENTALS[accidental], step, steps, semitones)
      moved = (_NOTE_ACCIDENTAL_TEXT[alteration] + moved) if abs(alteration) <= 2 else None
    table[note] = moved
  return moved


def _move_root(letter: str, accidental: str, steps: int, semitones: int) -> str:
  """A chord symbol's root or bass ("F#", "Bb") moved; spelled with one accidental at most."""
  step = _LETTERS.index(letter)
  alteration = _moved_alteration({"#": 1, "b": -1}.get(accidental, 0), step, steps, semitones)
  step += steps
  pitch = _natural(step) + alteration
  while abs(alteration) > 1:  # a chord symbol has no double sharp: respell (F## -> G)
    step += 1 if alteration > 0 else -1
    alteration = pitch - _natural(step)
  return _LETTERS[step % 7] + {1: "#", -1: "b", 0: ""}[alteration]


_KEY_PARAMETER_NAMES = {"clef", "middle", "m", "transpose", "t", "octave", "stafflines",
                        "staffscale", "cue", "instrument", "sound", "shift"}


class _Key:
  """A K: value read for transposition: its tonic and key signature (in fifths), the rest kept.

  tonic None: no key to move, either none at all (`none`: K:none, an empty K:) or a clef or
  other parameter only (K:clef=bass inside a tune keeps the key in force).
  """

  def __init__(self, value: str):
    self.value = value
    words = value.split()
    lowered = [w.lower() for w in words]
    if "perc" in lowered or any(w.startswith("clef=perc") for w in lowered):
      raise TransposeError("key_percussion", f"K:{value}")
    if lowered[:1] == ["hp"]:
      raise TransposeError("key_highland_pipes", f"K:{value}")
    m = _KEY.fullmatch(value)
    if m is None:
      self.tonic = None
      self.none = lowered[:1] == ["none"] or not words
      if not self.none and not all(_KEY_PARAMETER.fullmatch(w) for w in words):
        raise TransposeError("key_unrecognised", f"K:{value}")
      return
    self.none = False
    self.lead, letter, accidental, rest = m.groups()
    self.tonic = (letter, accidental)
    mode_fifths, self.mode_text = 0, ""
    mode = _KEY_MODE.fullmatch(rest)
    if mode is not None and not (mode.group(2).lower() in _KEY_PARAMETER_NAMES and
                                 mode.group(3).startswith("=")):
      word = mode.group(2).lower()
      fifths = _MODE_FIFTHS.get(word if word == "m" else word[:3])
      if fifths is not None:  # else a clef word or unknown, checked below
        mode_fifths, self.mode_text, rest = fifths, mode.group(1) + mode.group(2), mode.group(3)
    self.rest = rest
    if not all(_KEY_PARAMETER.fullmatch(w) or _KEY_ACCIDENTALS.fullmatch(w) for w in rest.split()):
      raise TransposeError("key_unrecognised", f"K:{value}")
    self.fifths = (_LETTER_FIFTHS[_LETTERS.index(letter)] + 7 * {"#": 1, "b": -1}.get(accidental, 0)
                   + mode_fifths)

  def render(self, steps: int, semitones: int) -> str:
    if self.tonic is None:
      return self.value
    tonic = _move_root(*self.tonic, steps, semitones)
    rest = re.sub(r"\S+", lambda w: _move_key_accidentals(w.group(), steps, semitones)
                  if _KEY_ACCIDENTALS.fullmatch(w.group()) else w.group(), self.rest)
    return f"{self.lead}{tonic}{self.mode_text}{rest}"


def _move_key_accidentals(text: str, steps: int, semitones: int) -> str:
  """Explicit key signature accidentals ("=c", "^f_b") moved; their octave does not matter."""
  out = []
  for accidental, letter, _ in _NOTE.findall(text):
    step = _LETTERS.index(letter.upper())
    alteration = _moved_alteration(_NOTE_ACCIDENTALS[accidental], step, steps, semitones)
    if abs(alteration) > 2:
      raise TransposeError("accidental_out_of_range", f"key accidental {accidental}{letter}")
    moved = _LETTERS[(step + steps) % 7]
    out.append(_NOTE_ACCIDENTAL_TEXT[alteration] + (moved.lower() if letter.islower() else moved))
  return "".join(out)


class _ParsedTune:
  """A tune cut into literal text and the parts that move: notes, K: values, chord symbols."""

  def __init__(self, parts: list[str], kinds: list[int], keys: dict[int, _Key]):
    self.parts, self.kinds, self.keys = parts, kinds, keys  # keys: by position in parts
    self.notes = {p for p, k in zip(parts, kinds) if k == _NOTE_TEXT}
    self.others = [i for i, k in enumerate(kinds) if k in (_KEY_TEXT, _CHORD_TEXT)]
    ordered = [keys[i] for i in sorted(keys)]
    if not ordered or ordered[0].tonic is None or any(k.none for k in ordered):
      first = f"K:{ordered[0].value}" if ordered else "no K: line"
      raise TransposeError("key_none", first if not any(k.none for k in ordered[1:]) else
                           f"{first}, then K:none")
    self.first_fifths = ordered[0].fifths
    self.all_fifths = [k.fifths for k in ordered if k.tonic is not None]

  def interval(self, semitones: int) -> tuple[int, int]:
    """(letter steps, semitones) of the move: of the two spellings (C# or Db), the one whose
    keys need fewest accidentals at worst, then fewest in the first key (so a tune in one key
    gets at most 6); between F# and Gb, sharps for an upward shift, flats for a downward one."""
    candidates = []
    for steps in range(-8 + (7 * semitones) // 12, 10 + (7 * semitones) // 12):
      change = 7 * semitones - 12 * steps  # the interval's change of key signature, in fifths
      first = self.first_fifths + change
      if abs(first) <= MAX_KEY_ACCIDENTALS:
        worst = max(abs(f + change) for f in self.all_fifths)
        candidates.append((worst, abs(first), -first if semitones > 0 else first, steps))
    worst, _, _, steps = min(candidates)  # never empty: 7 + 1 + 7 fifths hold every residue
    if worst > MAX_KEY_ACCIDENTALS:
      raise TransposeError("key_out_of_range",
                           f"a key change would need {worst} accidentals at shift {semitones:+d}")
    return steps, semitones

  def render(self, semitones: int, steps: int | None = None, octaves: bool = True) -> str:
    """The tune moved by `semitones`, by `steps` letters if given, else by `interval`'s."""
    if semitones == 0 and steps in (None, 0) and octaves:
      return "".join(self.parts)
    if steps is None:
      steps, semitones = self.interval(semitones)
    moved = _MOVED_NOTES.setdefault((steps, semitones), {})
    for note in self.notes:
      if _move_note(note, steps, semitones) is None:
        raise TransposeError("accidental_out_of_range",
                             f"{note} would need a triple accidental at shift {semitones:+d}")
    if not octaves:
      moved = {note: moved[note].lower().rstrip(",'") for note in self.notes}
    out = [moved[part] if kind == _NOTE_TEXT else part
           for part, kind in zip(self.parts, self.kinds)]
    for i in self.others:
      if self.kinds[i] == _KEY_TEXT:
        out[i] = self.keys[i].render(steps, semitones)
      else:
        out[i] = _move_chord_symbols(self.parts[i], steps, semitones)
    return "".join(out)


def _chord_symbols(text: str) -> bool:
  """Whether a quoted text ("Am7", "G D/F#") is chord symbols rather than an annotation."""
  words = text.split()
  return bool(words) and all(_CHORD_SYMBOL.fullmatch(w) for w in words)


def _move_chord_symbols(text: str, steps: int, semitones: int) -> str:
  def move(m):
    lead, root, accidental, quality, bass, bass_accidental, close = m.groups()
    moved = lead + _move_root(root, accidental, steps, semitones) + quality
    if bass is not None:
      moved += "/" + _move_root(bass, bass_accidental, steps, semitones)
    return moved + close

  return re.sub(r"\S+", lambda w: move(_CHORD_SYMBOL.fullmatch(w.group())), text)


class _Builder:
  def __init__(self):
    self.parts, self.kinds, self.keys = [], [], {}

  def literal(self, text: str) -> None:
    if not text:
      return
    if self.kinds and self.kinds[-1] == _LITERAL:
      self.parts[-1] += text
    else:
      self.parts.append(text)
      self.kinds.append(_LITERAL)

  def add(self, text: str, kind: int) -> None:
    self.parts.append(text)
    self.kinds.append(kind)

  def key(self, value: str) -> None:
    self.keys[len(self.parts)] = _Key(value)
    self.add(value, _KEY_TEXT)

  def music(self, line: str) -> None:
    at = 0
    for m in _MUSIC.finditer(line):
      self.literal(line[at:m.start()])
      at = m.end()
      kind, text = m.lastgroup, m.group()
      if kind == "note":
        self.add(text, _NOTE_TEXT)
      elif kind == "quote" and text[1:2] not in "^_<>@" and _chord_symbols(text[1:-1]):
        self.literal('"')
        self.add(text[1:-1], _CHORD_TEXT)
        self.literal('"')
      elif kind == "field" and text[1] == "K":
        self.literal("[K:")
        self.key(text[3:-1])
        self.literal("]")
      elif kind == "plus" and _PLUS_CHORD.fullmatch(text) and not _PLUS_DYNAMIC.fullmatch(text):
        self.literal("+")
        self.music(text[1:-1])
        self.literal("+")
      else:
        self.literal(text)
    self.literal(line[at:])


def _key_value(line: str) -> tuple[str, str]:
  """A K: line's value and its trailing comment (kept as written)."""
  m = re.search(r"(?<!\\)%", line)
  end = m.start() if m else len(line)
  return line[2:end], line[end:]


def _parse(text: str) -> _ParsedTune:
  build = _Builder()
  in_header = True
  lines = text.split("\n")  # not splitlines(): it also splits at control characters in titles
  for n, line in enumerate(lines):
    body = line.rstrip("\r")
    newline = line[len(body):] + ("\n" if n + 1 < len(lines) else "")
    line = body + newline
    if body.startswith("K:"):
      value, comment = _key_value(body)
      build.literal("K:")
      build.key(value)
      build.literal(comment + newline)
      in_header = False
    elif in_header or body.startswith("%") or _FIELD_LINE.match(body):
      build.literal(line)
    else:
      build.music(body)
      build.literal(newline)
  return _ParsedTune(build.parts, build.kinds, build.keys)

"""A syntax checker for one ABC tune (ABC 2.1, the constructs music21's corpus uses).

Three stages:
  1. `_split_header`: the tune runs from `X:` to its first empty line (ABC 2.1 section 2.2); `X:`
     comes first and the first `K:` closes the header. Header rules, as ABC 2.1 states them:
     - fields ABC 2.1 does not define (`Y:`, `E:`, `J:`, ...) are ignored with a warning, in the
       header and in the body (section 3: "programs ... must ignore" them);
     - a field only the header may hold (`O:`, `C:`, `Z:`, ... section 3's table) is an error in the
       body (`header_after_K`), a body-only field (`w:`, `s:`) in the header (`misplaced_field`);
       `X:` in the body is a second tune run on without an empty line (`header_after_K`);
     - `+:` continues the field line before it (comments and `%%` lines may come between);
     - `%` comments and `%%` directives are ignored, and so is the typeset text between
       `%%begintext` and `%%endtext`;
     - a line of text in the header that is not a field is ignored with a warning (abc2midi does
       the same; the deprecated multi-line `H:` writes such lines), unless it is music before `K:`;
     - after the empty line that ends the tune comes free text (a warning); music there is an
       error (`blank_line_in_tune`: ABC software stops at the empty line and loses it), and so is a
       second `X:` (`second_tune`);
     - `P:` in the header is the order of the parts: a part it names that no body `P:` marks is an
       error (`undefined_part`) once the body marks parts; a header `P:` with one label names the
       first part; with nothing marked, a warning;
     - an empty `K:` means no key signature (section 3.1.14); `[T:...]` may stand inline, as in
       the standard's own example.
     Warnings never fail a tune; `CheckResult.warnings` lists them as 'code: detail'.
  2. `tokenize_body`: a scanner over the body producing typed `Token`s (notes, rests, chords,
     grace groups, tuplets, broken rhythm, decorations, chord symbols, bar lines, endings, fields;
     `$` score line-breaks and `X`/`Xn` invisible multi-bar rests are ABC 2.1 too). A `:` that
     opens a line completes the bar line the music before it ended on (`|` + `:` is `|:` wrapped);
  3. `_Timeline`: a duration calculator that walks the tokens, keeps meter and unit length per
     voice (inline and body fields change them), closes bars and checks each bar's length.

Bar-duration tolerance (what real tunes need, calibrated on music21's ABC corpus):
  * a bar must fill the meter exactly; a bar is explained when it is
    - short and next to a boundary: the first or last bar of a voice, a bar that starts or ends at
      a section bar line (anything but a plain `|`: `||`, `|]`, `[|`, `|:`, `:|`, `::`, endings),
      at a body field (`P:`, `M:`, `K:`, `L:`, `V:`), or at a line end with no bar line (Essen's
      one-phrase-per-line convention; the rest of that bar continues as a pickup). So a bar split
      by a repeat and its pickup pass, each half on its own;
    - whole beats longer or shorter than the meter (an unmarked change of meter, 1 beat = 1 over
      the M: denominator);
    - one of two neighbouring odd bars that together fill whole bars (a misplaced bar line);
    - a `Z`/`Zn` multi-bar rest filling n bars; empty bars are ignored;
  * a line end with no bar line closes a bar that is exactly full there;
  * bars no rule explains are "irregular"; those right at a line end with no bar line (a phrase
    end in Essen's encoding) are forgiven, and the others may be at most `IRREGULAR_BAR_RATE` of
    the bars (floor: a tune under 8 bars may have none);
  * `M:none`, `M:FREI...` (Essen's free meter) and a missing M: skip the check.
"""

from __future__ import annotations

import dataclasses
import re
from fractions import Fraction

# Fields by where ABC 2.1 allows them (section 3, the table of fields). `T:` is also allowed inline,
# as the standard's own English.abc example writes `[T:Slows]`.
HEADER_FIELDS = frozenset("ABCDFGHIKLMmNOPQRrSTUVWXZ")
BODY_FIELDS = frozenset("IKLMmNPQRrsTUVWw")
INLINE_FIELDS = frozenset("IKLMmNPQRrTUV")
DEFINED_FIELDS = HEADER_FIELDS | BODY_FIELDS
# Fields a file header (the block before the first tune) may hold; they apply to every tune.
FILE_HEADER_FIELDS = frozenset("ABCDFGHILMmNORrSUZ")

# At most one bar in 8 may have a length no rule explains (a transcription slip). Calibrated on
# music21's ABC corpus, where about 3% of tunes (mostly Essen) hold such bars: see BUILD_NOTES.md.
IRREGULAR_BAR_RATE = Fraction(1, 8)

_FIELD_LINE = re.compile(r"^([A-Za-z+]):")
# A note or rest letter, a colon and a bar line, e.g. `A:|`: music, not a field (ABC 2.1 keeps
# A-G, X-Z and a-g, x-z out of the body's fields for this reason).
_MUSIC_NOT_FIELD = re.compile(r"^[A-Ga-gXxZz]:[|:]")
_X_LINE_START = re.compile(r"(?m)^(?=X:)")
_DECORATION = {"!": re.compile(r"!([^\s|!]{1,30})!"), "+": re.compile(r"\+([^\s|+]{1,30})\+")}
_ENDING = re.compile(r"\d+(?:[-,]\d+)*")
_TUPLET = re.compile(r"\((\d+)(?::(\d*)(?::(\d*))?)?")
_METER = re.compile(r"\(?\s*([\d+\s]+?)\s*\)?\s*/\s*(\d+)")
_METER_DENOMINATOR = re.compile(r"/\s*(\d+)\s*$")
_UNIT_LENGTH = re.compile(r"(\d+)(?:\s*/\s*(\d+))?")
# Tonic, accidental, mode, and modifying accidentals written without a space (`K:Dmix=c`).
_KEY_FIRST_WORD = re.compile(r"([A-G])([#b]?)([A-Za-z]*)((?:(?:\^\^|\^|__|_|=)[A-Ga-g])*)")
_KEY_ACCIDENTAL = re.compile(r"(\^\^|\^|__|_|=)([A-Ga-g])")
_PART_ORDER = re.compile(r"[A-Z0-9().\s]*")
_PART_LABEL = re.compile(r"[A-Z]")
_PITCH_LETTERS = "ABCDEFGabcdefg"
# `.` staccato, `~` roll, and the user-definable symbols H-W, h-w (defaults: H fermata, L accent,
# M/P mordents, O coda, S segno, T trill, u/v bowing).
_DECORATION_CHARS = frozenset(".~HIJKLMNOPQRSTUVWhijklmnopqrstuvw")
_MODES = {"maj": 0, "ion": 0, "min": -3, "aeo": -3, "m": -3, "dor": -2, "phr": -4, "lyd": 1,
          "mix": -1, "loc": -5}
_TONIC_SHARPS = {"C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5, "F": -1}
_KEY_WORDS = frozenset({"treble", "bass", "alto", "tenor", "baritone", "soprano", "mezzo",
                        "perc", "none", "exp", "treble8", "bass8", "treble-8", "bass-8",
                        "-8va", "+8va", "-8", "+8", "8va", "8vb"})
_NATURAL_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTAL_SHIFT = {"^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}


@dataclasses.dataclass
class CheckResult:
  valid: bool
  reason: str = ""  # a stable code such as 'bar_duration'; '' when valid
  detail: str = ""  # human-readable detail, e.g. 'bar 5 has 7/8, expected 3/4'
  notes: int = 0
  bars: int = 0
  key: str = ""
  meter: str = ""
  unit_length: str = ""
  title: str = ""
  irregular_bars: int = 0  # bars whose length no rule explains (tolerated up to the rate)
  # 'code: detail' for each thing ignored without failing the tune (unknown_field, header_text,
  # free_text, orphan_continuation, parts_not_marked, bad_parts, unclosed_text_block)
  warnings: list[str] = dataclasses.field(default_factory=list)

  @property
  def message(self) -> str:
    return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclasses.dataclass(frozen=True)
class Token:
  kind: str  # note, rest, mrest, chord_start, chord_end, grace_start, grace_end, tuplet, broken,
  #            tie, slur, decoration, annotation, bar, field, eol, spacer, overlay
  text: str
  line: int  # 1-based line number in the tune text
  col: int  # 1-based column
  value: object = None  # note: (accidental, letter, octave, length); bar: ending or None; ...


class AbcError(Exception):
  """A tune defect: `code` is the stable reason, `detail` says where."""

  def __init__(self, code: str, detail: str = ""):
    super().__init__(f"{code}: {detail}")
    self.code = code
    self.detail = detail


@dataclasses.dataclass
class ParsedTune:
  """What the checker learns about a tune; music_stats reads `events`."""
  header: dict[str, list[str]]
  tokens: list[Token]
  key_signature: dict[str, int]
  events: list[tuple[int | None, Fraction]]  # (pitch class or None for a rest, length in wholes)
  bars: int
  irregular_bars: int  # bars no tolerance explains, phrase edges included (0 = strictly valid)
  warnings: list[str] = dataclasses.field(default_factory=list)  # see CheckResult.warnings


def parse_meter(value: str) -> Fraction | None:
  """M: value -> bar length in whole notes; None for free meter. Raises AbcError."""
  v = value.split("%")[0].strip()
  if v in ("C", "C|"):
    return Fraction(1)
  if v.lower() in ("none", "") or v.upper().startswith("FREI"):
    return None
  m = _METER.fullmatch(v)
  if not m:
    raise AbcError("bad_meter", f"M:{value}")
  try:
    num = sum(int(x) for x in m.group(1).split("+") if x.strip())
    den = int(m.group(2))
  except ValueError:  # e.g. "M:2 3/4": digits the pattern lets through, not a number
    raise AbcError("bad_meter", f"M:{value}") from None
  if num <= 0 or den <= 0:
    raise AbcError("bad_meter", f"M:{value}")
  return Fraction(num, den)


def meter_beat(value: str) -> Fraction | None:
  """The beat of an M: value, 1/denominator (C: 1/4, C|: 1/2); None for free meter."""
  v = value.split("%")[0].strip()
  v = {"C": "4/4", "C|": "2/2"}.get(v, v)
  m = _METER_DENOMINATOR.search(v)
  return Fraction(1, int(m.group(1))) if m and int(m.group(1)) else None


def parse_unit_length(value: str) -> Fraction:
  v = value.split("%")[0].strip()
  m = _UNIT_LENGTH.fullmatch(v)
  if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(2)) == 0):
    raise AbcError("bad_unit_length", f"L:{value}")
  return Fraction(int(m.group(1)), int(m.group(2) or 1))


def default_unit_length(meter: Fraction | None) -> Fraction:
  """ABC 2.1 rule: L is 1/16 when the meter is below 3/4, else 1/8 (free meter: 1/8)."""
  if meter is not None and meter < Fraction(3, 4):
    return Fraction(1, 16)
  return Fraction(1, 8)


def parse_key(value: str) -> dict[str, int]:
  """K: value -> {letter: semitone shift} key signature; an empty K: has none (ABC 2.1 section
  3.1.14). Raises AbcError('bad_key')."""
  v = value.split("%")[0].strip()
  words = v.split()
  signature: dict[str, int] = {}
  if not words:
    return signature
  first = words[0]
  rest = words[1:]
  if first in ("HP", "none") or first.startswith("clef="):
    if first.startswith("clef="):
      rest = words
  elif first == "Hp":
    signature = {"F": 1, "C": 1, "G": 0}
  else:
    m = _KEY_FIRST_WORD.fullmatch(first)
    if not m:
      raise AbcError("bad_key", f"K:{value}")
    tonic, acc, mode, glued = m.groups()
    rest = [a.group() for a in _KEY_ACCIDENTAL.finditer(glued)] + rest
    if not mode and rest and rest[0][:3].lower() in _MODES and rest[0].isalpha():
      mode, rest = rest[0], rest[1:]
    mode_key = mode[:3].lower() if mode else "maj"
    if mode and mode.lower() == "m":
      mode_key = "m"
    if mode_key not in _MODES:
      raise AbcError("bad_key", f"unknown mode {mode!r} in K:{value}")
    sharps = _TONIC_SHARPS[tonic] + {"#": 7, "b": -7, "": 0}[acc] + _MODES[mode_key]
    if not -7 <= sharps <= 7:
      raise AbcError("bad_key", f"K:{value}")
    if sharps > 0:
      signature = {c: 1 for c in "FCGDAEB"[:sharps]}
    elif sharps < 0:
      signature = {c: -1 for c in "BEADGCF"[:-sharps]}
  for word in rest:
    m = _KEY_ACCIDENTAL.fullmatch(word)
    if m:
      signature[m.group(2).upper()] = _ACCIDENTAL_SHIFT[m.group(1)]
    elif not (word in _KEY_WORDS or "=" in word or word.lower() in _KEY_WORDS):
      raise AbcError("bad_key", f"unknown word {word!r} in K:{value}")
  return signature


def _read_length(s: str, i: int) -> tuple[Fraction, int]:
  """Reads a note-length suffix (`2`, `3/2`, `/`, `//`, `/4`) at s[i:]."""
  j = i
  while j < len(s) and s[j].isdigit():
    j += 1
  num = int(s[i:j]) if j > i else 1
  den = 1
  while j < len(s) and s[j] == "/":
    j += 1
    k = j
    while j < len(s) and s[j].isdigit():
      j += 1
    den *= int(s[k:j]) if j > k else 2
  if num == 0 or den == 0:
    raise AbcError("bad_note_length", f"{s[i:j]!r}")
  return Fraction(num, den), j


def _read_note(s: str, i: int, line: int) -> tuple[Token, int]:
  """Reads accidental, pitch, octave marks and length starting at s[i]."""
  j = i
  acc = ""
  for a in ("^^", "__", "^", "_", "="):
    if s.startswith(a, j):
      acc = a
      j += len(a)
      break
  if j >= len(s) or s[j] not in _PITCH_LETTERS:
    bad = s[j] if j < len(s) else "end of line"
    raise AbcError("tokenize_error", f"accidental without a note at line {line} col {j + 1} "
                   f"({bad!r})")
  letter = s[j]
  j += 1
  octave = 0 if letter.isupper() else 1
  while j < len(s) and s[j] in "',":
    octave += 1 if s[j] == "'" else -1
    j += 1
  length, j = _read_length(s, j)
  return Token("note", s[i:j], line, i + 1, (acc, letter.upper(), octave, length)), j


def _body_field(tokens: list[Token], s: str, ln: int, warnings: list[str]) -> None:
  """One field line of the body: a token, a continuation of the field line before it, or an
  ignored unknown field. Raises AbcError for a field only the header may hold."""
  letter, value = s[0], s[2:].strip()
  if letter == "+":
    last = tokens[-1] if tokens else None
    if last is not None and last.kind == "field" and last.col == 1:
      tokens[-1] = Token("field", f"{last.text} {value}", last.line, 1,
                         (last.value[0], f"{last.value[1]} {value}"))
    else:
      warnings.append(f"orphan_continuation: +: at line {ln} follows no field line")
  elif letter in BODY_FIELDS:
    tokens.append(Token("field", s, ln, 1, (letter, value)))
  elif letter == "X":
    raise AbcError("header_after_K", f"X: at line {ln}: a second tune starts without the empty "
                   "line that ends the first")
  elif letter in HEADER_FIELDS:
    raise AbcError("header_after_K", f"{letter}: field at line {ln} (ABC 2.1 allows it only in "
                   "the header, before K:)")
  else:
    warnings.append(f"unknown_field: {letter}: at line {ln} (not an ABC 2.1 field, ignored)")


def tokenize_body(lines: list[tuple[int, str]], warnings: list[str] | None = None) -> list[Token]:
  """Tokenizes body lines [(line number, text)] into typed tokens; fields ABC 2.1 does not define
  are ignored and noted in `warnings`. Raises AbcError."""
  tokens: list[Token] = []
  warnings = [] if warnings is None else warnings
  for ln, raw in lines:
    s = raw.split("%", 1)[0].rstrip()
    if _FIELD_LINE.match(s) and not _MUSIC_NOT_FIELD.match(s):
      _body_field(tokens, s, ln, warnings)
      continue
    line_start = len(tokens)
    i = 0
    n = len(s)
    continued = False
    in_chord = in_grace = False
    chord_col = grace_col = 0
    while i < n:
      c = s[i]
      col = i + 1
      if c in " \t`$":  # `$` is ABC 2.1's score line-break, no music
        i += 1
      elif c in _PITCH_LETTERS or c in "^_=":
        tok, i = _read_note(s, i, ln)
        tokens.append(tok)
      elif c in "zx":
        length, j = _read_length(s, i + 1)
        tokens.append(Token("rest", s[i:j], ln, col, length))
        i = j
      elif c in "ZX":  # multi-bar rest, visible or invisible
        j = i + 1
        while j < n and s[j].isdigit():
          j += 1
        tokens.append(Token("mrest", s[i:j], ln, col, int(s[i + 1:j] or 1)))
        i = j
      elif c == "y":
        tokens.append(Token("spacer", c, ln, col))
        i += 1
      elif c == '"':
        j = s.find('"', i + 1)
        if j < 0:
          raise AbcError("unclosed_chord_symbol", f"at line {ln} col {col}")
        tokens.append(Token("annotation", s[i:j + 1], ln, col))
        i = j + 1
      elif c == "!" or c == "+":
        m = _DECORATION[c].match(s, i)
        if m:
          tokens.append(Token("decoration", m.group(), ln, col))
          i = m.end()
        elif c == "!":  # ABC 2.0 line break inside a music line
          tokens.append(Token("eol", c, ln, col, False))
          i += 1
        else:
          raise AbcError("unclosed_decoration", f"'+' at line {ln} col {col}")
      elif c in _DECORATION_CHARS:
        tokens.append(Token("decoration", c, ln, col))
        i += 1
      elif c == "[" and i + 2 < n and s[i + 1].isalpha() and s[i + 2] == ":":
        j = s.find("]", i)
        if j < 0:
          raise AbcError("unclosed_inline_field", f"at line {ln} col {col}")
        letter = s[i + 1]
        if letter in INLINE_FIELDS:
          tokens.append(Token("field", s[i:j + 1], ln, col, (letter, s[i + 3:j].strip())))
        elif letter in DEFINED_FIELDS:
          raise AbcError("bad_field", f"[{letter}: not allowed inline at line {ln} col {col}")
        else:
          warnings.append(f"unknown_field: [{letter}: at line {ln} col {col} (not an ABC 2.1 "
                          "field, ignored)")
        i = j + 1
      elif c in "|:" or (c == "[" and i + 1 < n and (s[i + 1] in "|" or s[i + 1].isdigit())):
        j = i
        if c == "[" and s[i + 1].isdigit():
          bar = "["
          j = i + 1
        else:
          while j < n and (s[j] in "|:" or (s[j] == "[" and j + 1 < n and s[j + 1] == "|")
                           or (s[j] == "]" and s[j - 1] == "|")):
            j += 1
          if j < n - 1 and s[j] == "[" and s[j + 1].isdigit():
            j += 1
          bar = s[i:j]
          # `:` opening a line whose music before ended on a bar line completes that bar line
          # (`|` + `:` is `|:` broken across lines, perhaps around a field line)
          before = next((t for t in reversed(tokens) if t.kind not in ("eol", "field")), None)
          broken_bar = len(tokens) == line_start and before is not None and before.kind == "bar"
          if "|" not in bar and bar != "::" and not broken_bar:
            raise AbcError("tokenize_error", f"unexpected ':' at line {ln} col {col}")
        m = _ENDING.match(s, j)
        ending = None
        if m and (bar.endswith("|") or bar.endswith("[")):
          ending = m.group()
          j = m.end()
        elif bar == "[":
          raise AbcError("tokenize_error", f"unexpected '[' at line {ln} col {col}")
        tokens.append(Token("bar", s[i:j], ln, col, ending))
        i = j
      elif c == "[":
        if in_chord or in_grace:
          raise AbcError("tokenize_error", f"nested '[' at line {ln} col {col}")
        in_chord, chord_col = True, col
        tokens.append(Token("chord_start", c, ln, col))
        i += 1
      elif c == "]":
        if not in_chord:
          raise AbcError("tokenize_error", f"unexpected ']' at line {ln} col {col}")
        if tokens[-1].kind == "chord_start":
          raise AbcError("tokenize_error", f"empty chord at line {ln} col {col}")
        in_chord = False
        length, j = _read_length(s, i + 1)
        tokens.append(Token("chord_end", s[i:j], ln, col, length))
        i = j
      elif c == "{":
        if in_grace or in_chord:
          raise AbcError("tokenize_error", f"nested '{{' at line {ln} col {col}")
        in_grace, grace_col = True, col
        tokens.append(Token("grace_start", c, ln, col))
        i += 2 if i + 1 < n and s[i + 1] == "/" else 1
      elif c == "}":
        if not in_grace:
          raise AbcError("tokenize_error", f"unexpected '}}' at line {ln} col {col}")
        if tokens[-1].kind == "grace_start":
          raise AbcError("tokenize_error", f"empty grace group at line {ln} col {col}")
        in_grace = False
        tokens.append(Token("grace_end", c, ln, col))
        i += 1
      elif c == "(":
        m = _TUPLET.match(s, i)
        if m and i + 1 < n and s[i + 1].isdigit():
          p = int(m.group(1))
          q = int(m.group(2)) if m.group(2) else None
          r = int(m.group(3)) if m.group(3) else p
          if not 2 <= p <= 9 or (q is not None and q < 1) or r < 1:
            raise AbcError("bad_tuplet", f"{m.group()!r} at line {ln} col {col}")
          tokens.append(Token("tuplet", m.group(), ln, col, (p, q, r)))
          i = m.end()
        else:
          tokens.append(Token("slur", c, ln, col))
          i += 1
      elif c == ")":
        tokens.append(Token("slur", c, ln, col))
        i += 1
      elif c in "<>":
        j = i
        while j < n and s[j] == c:
          j += 1
        if j - i > 3:
          raise AbcError("bad_broken_rhythm", f"{s[i:j]!r} at line {ln} col {col}")
        tokens.append(Token("broken", s[i:j], ln, col, (c, j - i)))
        i = j
      elif c == "-":
        tokens.append(Token("tie", c, ln, col))
        i += 1
      elif c == "&":
        tokens.append(Token("overlay", c, ln, col))
        i += 1
      elif c == "\\" and i == n - 1:
        continued = True
        i += 1
      else:
        raise AbcError("tokenize_error", f"unexpected {c!r} at line {ln} col {col}")
    if in_chord:
      raise AbcError("unclosed_chord", f"[ at line {ln} col {chord_col}")
    if in_grace:
      raise AbcError("unclosed_grace", f"{{ at line {ln} col {grace_col}")
    tokens.append(Token("eol", "\n", ln, n + 1, continued))
  return tokens


@dataclasses.dataclass
class _Bar:
  length: Fraction
  meter: Fraction | None
  beat: Fraction | None
  start_boundary: bool
  end_boundary: bool
  line: int
  mrest: int = 0  # number of bars a Z rest fills
  line_edge: bool = False  # a line end with no bar line closes the bar or comes just before it


@dataclasses.dataclass
class _Voice:
  meter: Fraction | None
  beat: Fraction | None
  unit: Fraction
  acc: Fraction = Fraction(0)
  bars: list[_Bar] = dataclasses.field(default_factory=list)
  start_boundary: bool = True
  bar_line: int = 0
  mrest: int = 0
  has_content: bool = False
  line_edge: bool = False


class _Timeline:
  """Walks tokens, computing each note's length and closing bars per voice."""

  def __init__(self, meter_text: str, unit: Fraction, key: dict[str, int]):
    self.meter0, self.beat0, self.unit0 = parse_meter(meter_text), meter_beat(meter_text), unit
    self.voices: dict[str, _Voice] = {}
    self.voice = self._get_voice("1")
    self.key = key
    self.events: list[tuple[int | None, Fraction]] = []
    self.irregular: list[str] = []  # bars whose length no tolerance explains
    self.interior: list[str] = []  # the irregular bars that are not at a phrase edge
    self.notes = 0

  def _get_voice(self, name: str) -> _Voice:
    if name not in self.voices:
      self.voices[name] = _Voice(self.meter0, self.beat0, self.unit0)
    return self.voices[name]

  def _close_bar(self, end_boundary: bool, next_start_boundary: bool):
    v = self.voice
    if v.has_content:
      v.bars.append(_Bar(v.acc, v.meter, v.beat, v.start_boundary, end_boundary, v.bar_line, v.mrest,
                         v.line_edge))
      v.start_boundary = next_start_boundary
    else:
      v.start_boundary = v.start_boundary or next_start_boundary
    v.acc, v.mrest, v.has_content, v.line_edge = Fraction(0), 0, False, False

  def run(self, tokens: list[Token]) -> None:
    tuplet_factor, tuplet_left = Fraction(1), 0
    broken_next = Fraction(1)
    last_event: int | None = None  # index into self.events of the last note/chord/rest
    in_chord = in_grace = False
    chord_first: Fraction | None = None
    chord_pitches: list[int] = []
    bar_accidentals: dict[tuple[str, int], int] = {}
    pending_broken: Token | None = None

    def add_event(pc: int | None, length: Fraction, tok: Token):
      nonlocal tuplet_left, tuplet_factor, broken_next, last_event, pending_broken, line_start
      length *= broken_next
      broken_next = Fraction(1)
      pending_broken = None
      if tuplet_left:
        length *= tuplet_factor
        tuplet_left -= 1
      v = self.voice
      if not v.has_content:
        v.bar_line = tok.line
        v.line_edge = line_start
      line_start = False
      v.acc += length
      v.has_content = True
      self.events.append((pc, length))
      last_event = len(self.events) - 1

    def pitch_class(value) -> int:
      acc, letter, octave, _ = value
      if acc:
        shift = _ACCIDENTAL_SHIFT[acc]
        bar_accidentals[(letter, octave)] = shift
      else:
        shift = bar_accidentals.get((letter, octave), self.key.get(letter, 0))
      return (_NATURAL_PC[letter] + shift) % 12

    line_start = False  # the last line ended with no bar line
    for tok in tokens:
      k = tok.kind
      if k == "note":
        if in_grace:
          continue
        pc = pitch_class(tok.value)
        self.notes += 1
        if in_chord:
          chord_pitches.append(pc)
          if chord_first is None:
            chord_first = tok.value[3]
          continue
        add_event(pc, self.voice.unit * tok.value[3], tok)
      elif k == "rest":
        if in_chord or in_grace:
          raise AbcError("tokenize_error", f"rest inside chord or grace at line {tok.line}")
        add_event(None, self.voice.unit * tok.value, tok)
      elif k == "mrest":
        v = self.voice
        if v.meter is not None:
          v.acc += v.meter * tok.value
        v.mrest += tok.value
        v.has_content = True
        last_event = None
      elif k == "chord_start":
        in_chord, chord_first, chord_pitches = True, None, []
      elif k == "chord_end":
        in_chord = False
        if chord_first is None:
          raise AbcError("tokenize_error", f"chord without notes at line {tok.line}")
        add_event(chord_pitches[0], self.voice.unit * chord_first * tok.value, tok)
        self.events[-1:] = [(pc, self.events[-1][1]) for pc in chord_pitches]
        last_event = len(self.events) - len(chord_pitches)
        # a chord counts once for the bar and the tuplet; its extra pitches carry no time
        for idx in range(last_event + 1, len(self.events)):
          self.events[idx] = (self.events[idx][0], Fraction(0))
      elif k == "grace_start":
        in_grace = True
      elif k == "grace_end":
        in_grace = False
      elif k == "tuplet":
        p, q, r = tok.value
        if q is None:
          if p in (2, 4, 8):
            q = 3
          elif p in (3, 6):
            q = 2
          else:  # 5, 7, 9: 3 in compound meter, else 2
            m = self.voice.meter
            q = 3 if m is not None and m.numerator % 3 == 0 and m.numerator > 3 else 2
        tuplet_factor, tuplet_left = Fraction(q, p), r
      elif k == "broken":
        if last_event is None:
          raise AbcError("bad_broken_rhythm", f"{tok.text!r} without a note before it at "
                         f"line {tok.line} col {tok.col}")
        direction, count = tok.value
        small = Fraction(1, 2 ** count)
        first, second = (2 - small, small) if direction == ">" else (small, 2 - small)
        pc, length = self.events[last_event]
        extra = length * (first - 1)
        self.events[last_event] = (pc, length * first)
        self.voice.acc += extra
        broken_next = second
        last_event = None
        pending_broken = tok
      elif k == "bar":
        plain = tok.text == "|"
        line_start = False
        self._close_bar(end_boundary=not plain, next_start_boundary=not plain)
        bar_accidentals.clear()
        last_event = None
      elif k == "eol":
        v = self.voice
        if tok.value or not v.has_content or v.meter is None:
          continue
        v.line_edge = line_start = True
        # a line end with no bar line: a full bar closes there; a short one is a phrase end
        # (Essen's convention: one phrase per line) and its rest continues as a pickup
        full = v.acc == v.meter
        self._close_bar(end_boundary=not full, next_start_boundary=not full)
        bar_accidentals.clear()
      elif k == "field":
        letter, value = tok.value
        if letter in "MLKPV":
          v = self.voice
          v.start_boundary = True
          if v.has_content and letter in "MPV":
            self._close_bar(end_boundary=True, next_start_boundary=True)
        if letter == "M":
          # the unit length stays: ABC 2.1 derives the default L only from the header M:
          self.voice.meter, self.voice.beat = parse_meter(value), meter_beat(value)
        elif letter == "L":
          self.voice.unit = parse_unit_length(value)
        elif letter == "K":
          self.key = parse_key(value)
        elif letter == "V":
          name = value.split()[0] if value.split() else "1"
          self.voice = self._get_voice(name)
          self.voice.start_boundary = True
    if in_chord:
      raise AbcError("unclosed_chord", "at end of tune")
    if pending_broken is not None:
      raise AbcError("bad_broken_rhythm", f"{pending_broken.text!r} at line {pending_broken.line} "
                     "has no note after it")
    if tuplet_left:
      raise AbcError("bad_tuplet", f"tuplet lacks {tuplet_left} note(s) at end of tune")
    for name, v in self.voices.items():
      self.voice = v
      self._close_bar(end_boundary=True, next_start_boundary=True)

  def check_bars(self, irregular_bar_rate: Fraction) -> int:
    """Collects bars that no tolerance explains into self.irregular (all) and
    self.interior (those not at a phrase edge); returns the number of bars."""
    count = 0
    for name, v in self.voices.items():
      ok = [self._bar_ok(v.bars, i) for i in range(len(v.bars))]
      for i, bar in enumerate(v.bars):
        count += max(bar.mrest, 1)
        if ok[i]:
          continue
        # a misplaced bar line: two neighbouring odd bars that together fill whole bars
        if any(0 <= j < len(v.bars) and not ok[j] and v.bars[j].meter == bar.meter and
               (bar.length + v.bars[j].length) % bar.meter == 0 for j in (i - 1, i + 1)):
          continue
        where = f" (voice {name})" if len(self.voices) > 1 else ""
        message = f"bar {i + 1}{where} at line {bar.line} has {bar.length}, expected {bar.meter}"
        self.irregular.append(message)
        if not bar.line_edge:
          self.interior.append(message)
    if len(self.interior) > int(count * irregular_bar_rate):
      raise AbcError("bar_duration", self.interior[0] +
                     (f" (+{len(self.interior) - 1} more)" if len(self.interior) > 1 else ""))
    return count

  @staticmethod
  def _bar_ok(bars: list[_Bar], i: int) -> bool:
    bar = bars[i]
    if bar.meter is None or bar.length == bar.meter:
      return True
    if bar.mrest and bar.length % bar.meter == 0:
      return True
    short_ok = i == 0 or i == len(bars) - 1 or bar.start_boundary or bar.end_boundary
    if bar.length < bar.meter and short_ok:
      return True
    # whole beats more or fewer: an unmarked change of meter
    return bool(bar.beat) and (bar.length - bar.meter) % bar.beat == 0


def _looks_like_music(line: str) -> bool:
  """A line that reads as ABC music: notes or rests and a bar line, nothing the tokenizer
  rejects. Prose rarely holds a bar line, so text is not taken for music."""
  try:
    kinds = {t.kind for t in tokenize_body([(0, line)])}
  except AbcError:
    return False
  return "bar" in kinds and bool(kinds & {"note", "rest", "mrest"})


def _split_header(text: str, warnings: list[str] | None = None
                  ) -> tuple[dict[str, list[str]], list[tuple[int, str]]]:
  """Reads one tune: returns (header fields, body lines) and notes what it ignores in
  `warnings`. The tune ends at its first empty line. Raises AbcError."""
  warnings = [] if warnings is None else warnings
  lines = text.splitlines()
  start = next((k for k, line in enumerate(lines)
                if line.strip() and not line.lstrip().startswith("%")), None)
  if start is None:
    raise AbcError("empty", "no text")
  if not lines[start].startswith("X:"):
    if any(line.startswith("X:") for line in lines[start:]):
      raise AbcError("X_not_first", f"line {start + 1} comes before X:")
    raise AbcError("missing_X", "no X: field")
  header: dict[str, list[str]] = {}
  body: list[tuple[int, str]] = []
  in_header, in_text = True, False
  last_field = ""  # the header field a `+:` line continues
  end = len(lines)  # index of the empty line that ends the tune
  for k in range(start, len(lines)):
    line, n = lines[k], k + 1
    stripped = line.strip()
    if in_text:  # typeset text: no fields, no music
      in_text = not stripped.startswith("%%endtext")
      continue
    if not stripped:
      end = k
      break
    if stripped.startswith("%"):
      in_text = stripped.startswith("%%begintext")
      continue
    if not in_header:
      body.append((n, line))
      continue
    m = _FIELD_LINE.match(line)
    letter, value = (m.group(1), line[2:].strip()) if m else ("", "")
    if letter == "K":
      header.setdefault("K", []).append(value)
      in_header = False
    elif letter == "X" and k > start:
      raise AbcError("missing_K", f"second X: at line {n} before any K:")
    elif letter == "+":
      if last_field:
        header[last_field][-1] += " " + value
      else:
        warnings.append(f"orphan_continuation: +: at line {n} follows no field line")
    elif letter in HEADER_FIELDS:
      header.setdefault(letter, []).append(value)
      last_field = letter
    elif letter in BODY_FIELDS:
      raise AbcError("misplaced_field", f"{letter}: at line {n} belongs in the tune body, after K:")
    elif letter:
      warnings.append(f"unknown_field: {letter}: at line {n} (not an ABC 2.1 field, ignored)")
      last_field = ""
    elif _looks_like_music(line):
      if any(later.startswith("K:") for later in lines[k + 1:]):
        raise AbcError("music_before_K", f"music at line {n} comes before the K: field")
      raise AbcError("missing_K", f"no K: field before the music at line {n}")
    else:
      how = " (a deprecated H: continuation)" if last_field == "H" else ""
      warnings.append(f"header_text: line {n} is not a field{how}, ignored: {stripped[:30]!r}")
  if in_text:
    warnings.append("unclosed_text_block: %%begintext has no %%endtext")
  if in_header:
    if end < len(lines):
      raise AbcError("missing_K", f"the empty line at line {end + 1} ends the tune before any "
                     "K: field")
    raise AbcError("missing_K", "no K: field")
  _check_after_tune(lines, end, warnings)
  return header, body


def _check_after_tune(lines: list[str], end: int, warnings: list[str]) -> None:
  """The lines after the empty line (index `end`) that ends a tune: free text, a warning, unless
  they hold music (lost to ABC software, which stops at the empty line) or a second tune."""
  rest = [(k + 1, line) for k, line in enumerate(lines[end + 1:], start=end + 1)
          if line.strip() and not line.lstrip().startswith("%")]
  if not rest:
    return
  for n, line in rest:
    if line.startswith("X:"):
      raise AbcError("second_tune", f"a second tune starts at line {n}")
  for n, line in rest:
    if not _FIELD_LINE.match(line) and _looks_like_music(line):
      raise AbcError("blank_line_in_tune", f"the empty line at line {end + 1} ends the tune, so "
                     f"the music at line {n} after it is left out")
  warnings.append(f"free_text: {len(rest)} line(s) after the empty line at line {end + 1} that "
                  "ends the tune, ignored")


def _check_parts(header: dict[str, list[str]], tokens: list[Token], warnings: list[str]) -> None:
  """A header P: is the order the parts are played in (ABC 2.1 section 3.1.9): each part it
  names needs a body P: marking it. A header P: with one label names the first part."""
  if not header.get("P"):
    return
  order = header["P"][-1].split("%")[0].strip()
  if not _PART_ORDER.fullmatch(order):
    warnings.append(f"bad_parts: P:{order} is not an order of parts (A-Z, digits, brackets, dots)")
    return
  labels = _PART_LABEL.findall(order)
  if len(labels) < 2:
    return
  named = set(labels)
  marked = {t.value[1][:1] for t in tokens if t.kind == "field" and t.value[0] == "P"}
  missing = "".join(sorted(named - marked))
  if missing and marked:
    raise AbcError("undefined_part", f"P:{order} plays part(s) {missing}, which no P: in the body "
                   "marks")
  if missing:
    warnings.append(f"parts_not_marked: P:{order} names parts that no P: in the body marks")


def parse_tune(text: str, irregular_bar_rate: Fraction = IRREGULAR_BAR_RATE,
               warnings: list[str] | None = None) -> ParsedTune:
  """Parses and checks one tune. Raises AbcError with a reason code on the first defect; what it
  ignores goes to `warnings` (and ParsedTune.warnings)."""
  warnings = [] if warnings is None else warnings
  header, body = _split_header(text, warnings)
  meter_text = header["M"][-1] if "M" in header else "none"  # ABC 2.1: no M: is free meter
  meter = parse_meter(meter_text)
  if "L" in header:
    unit = parse_unit_length(header["L"][-1])
  else:
    unit = default_unit_length(meter)
  key = parse_key(header["K"][-1])
  if not body:
    raise AbcError("empty_body", "no music after K:")
  tokens = tokenize_body(body, warnings)
  _check_parts(header, tokens, warnings)
  timeline = _Timeline(meter_text, unit, key)
  timeline.run(tokens)
  if timeline.notes == 0 and not any(t.kind in ("rest", "mrest") for t in tokens):
    raise AbcError("empty_body", "no notes or rests after K:")
  bars = timeline.check_bars(irregular_bar_rate)
  return ParsedTune(header, tokens, timeline.key, timeline.events, bars,
                    len(timeline.irregular), warnings)


def check_tune(text: str, irregular_bar_rate: Fraction = IRREGULAR_BAR_RATE) -> CheckResult:
  """Checks one ABC tune; `reason` is a stable code when it fails, `warnings` what it ignored.

  irregular_bar_rate: the share of bars that may have an unexplained length (transcription
  slips); 0 makes the bar check strict.
  """
  early: list[str] = []
  try:
    header = _split_header(text, early)[0]
  except AbcError as e:
    return CheckResult(False, e.code, e.detail, warnings=early)
  warnings: list[str] = []
  try:
    parsed = parse_tune(text, irregular_bar_rate, warnings)
  except AbcError as e:
    return CheckResult(False, e.code, e.detail, warnings=warnings, **_header_summary(header))
  notes = sum(1 for t in parsed.tokens if t.kind == "note")
  return CheckResult(True, "", "", notes=notes, bars=parsed.bars,
                     irregular_bars=parsed.irregular_bars, warnings=parsed.warnings,
                     **_header_summary(header))


def _header_summary(header: dict[str, list[str]]) -> dict[str, str]:
  def first(letter):
    return header[letter][0].split("%")[0].strip() if header.get(letter) else ""
  return dict(key=first("K"), meter=first("M"), unit_length=first("L"), title=first("T"))


@dataclasses.dataclass
class Collection:
  """An ABC file split into tunes (ABC 2.1 section 2.2)."""
  tunes: list[str]  # from each X: line to the next; the file header's fields follow the X: line
  file_header: list[str]  # the field lines of the file header, if the file has one
  free_text_lines: int  # lines before the first tune that are neither comments nor file header


def _file_header(preamble: str) -> tuple[list[str], int]:
  """(file header field lines, other text lines) of the text before a file's first tune. The
  file header is its first block of lines (up to an empty line) when that block holds only
  fields a file header may have, `+:` continuations, comments and directives."""
  lines = preamble.splitlines()
  first = next((k for k, line in enumerate(lines) if line.strip()), len(lines))
  stop = next((k for k in range(first, len(lines)) if not lines[k].strip()), len(lines))
  block = [line for line in lines[first:stop] if not line.lstrip().startswith("%")]
  text = [line for line in lines if line.strip() and not line.lstrip().startswith("%")]
  is_header = bool(block) and all(
      (m := _FIELD_LINE.match(line)) and (m.group(1) in FILE_HEADER_FIELDS or m.group(1) == "+"
                                          or m.group(1) not in DEFINED_FIELDS)
      for line in block)
  if not is_header:
    return [], len(text)
  return block, len(text) - len(block)


def split_collection(text: str) -> Collection:
  """Splits a file's text into tunes at lines starting with `X:`. As ABC 2.1 asks of programs
  that extract tunes, each tune gets the fields of the file header (so line numbers in a tune's
  details count them). Without an X: line the whole text is one tune."""
  parts = _X_LINE_START.split(text)
  tunes = [p for p in parts if p.startswith("X:")]
  if not tunes:
    return Collection([text] if text.strip() else [], [], 0)
  file_header, free_text = _file_header(parts[0] if not parts[0].startswith("X:") else "")
  if file_header:
    inserted = "".join(line + "\n" for line in file_header)
    tunes = [x_line + "\n" + inserted + rest
             for x_line, _, rest in (tune.partition("\n") for tune in tunes)]
  return Collection(tunes, file_header, free_text)


def split_tunes(text: str) -> list[str]:
  """The tunes of a file's text (see split_collection)."""
  return split_collection(text).tunes

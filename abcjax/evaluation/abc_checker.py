"""A syntax checker for one ABC tune (ABC 2.1, the constructs music21's corpus uses).

Three stages:
  1. header: lines from `X:` to `K:` must be fields, `X:` first, `K:` closes the header;
  2. `tokenize_body`: a scanner over the body producing typed `Token`s (notes, rests, chords,
     grace groups, tuplets, broken rhythm, decorations, chord symbols, bar lines, endings, fields);
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

# Fields by where ABC 2.1 allows them (section 3, "field line" table).
HEADER_FIELDS = frozenset('ABCDFGHIKLMmNOPQRrSsTUVWwXZ')
BODY_FIELDS = frozenset('IKLMmNPQRrsTUVWw')
INLINE_FIELDS = frozenset('IKLMmNPQRrUV')

# At most one bar in 8 may have a length no rule explains (a transcription slip). Calibrated on
# music21's ABC corpus, where 3.5% of tunes (mostly Essen) hold such bars: see BUILD_NOTES.md.
IRREGULAR_BAR_RATE = Fraction(1, 8)

_FIELD_LINE = re.compile(r'^([A-Za-z+]):')
_PITCH_LETTERS = 'ABCDEFGabcdefg'
# `.` staccato, `~` roll, and the user-definable symbols H-W, h-w (defaults: H fermata, L accent,
# M/P mordents, O coda, S segno, T trill, u/v bowing).
_DECORATION_CHARS = frozenset('.~HIJKLMNOPQRSTUVWhijklmnopqrstuvw')
_MODES = {'maj': 0, 'ion': 0, 'min': -3, 'aeo': -3, 'm': -3, 'dor': -2, 'phr': -4, 'lyd': 1,
          'mix': -1, 'loc': -5}
_TONIC_SHARPS = {'C': 0, 'G': 1, 'D': 2, 'A': 3, 'E': 4, 'B': 5, 'F': -1}
_KEY_WORDS = frozenset({'treble', 'bass', 'alto', 'tenor', 'baritone', 'soprano', 'mezzo',
                        'perc', 'none', 'exp', 'treble8', 'bass8', 'treble-8', 'bass-8',
                        '-8va', '+8va', '-8', '+8', '8va', '8vb'})
_NATURAL_PC = {'C': 0, 'D': 2, 'E': 4, 'F': 5, 'G': 7, 'A': 9, 'B': 11}
_ACCIDENTAL_SHIFT = {'^': 1, '^^': 2, '_': -1, '__': -2, '=': 0}


@dataclasses.dataclass
class CheckResult:
  valid: bool
  reason: str = ''  # a stable code such as 'bar_duration'; '' when valid
  detail: str = ''  # human-readable detail, e.g. 'bar 5 has 7/8, expected 3/4'
  notes: int = 0
  bars: int = 0
  key: str = ''
  meter: str = ''
  unit_length: str = ''
  title: str = ''
  irregular_bars: int = 0  # bars whose length no rule explains (tolerated up to the rate)

  @property
  def message(self) -> str:
    return f'{self.reason}: {self.detail}' if self.detail else self.reason


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

  def __init__(self, code: str, detail: str = ''):
    super().__init__(f'{code}: {detail}')
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


def parse_meter(value: str) -> Fraction | None:
  """M: value -> bar length in whole notes; None for free meter. Raises AbcError."""
  v = value.split('%')[0].strip()
  if v in ('C', 'C|'):
    return Fraction(1)
  if v.lower() in ('none', '') or v.upper().startswith('FREI'):
    return None
  m = re.fullmatch(r'\(?\s*([\d+\s]+?)\s*\)?\s*/\s*(\d+)', v)
  if not m:
    raise AbcError('bad_meter', f'M:{value}')
  num = sum(int(x) for x in m.group(1).split('+') if x.strip())
  den = int(m.group(2))
  if num <= 0 or den <= 0:
    raise AbcError('bad_meter', f'M:{value}')
  return Fraction(num, den)


def meter_beat(value: str) -> Fraction | None:
  """The beat of an M: value, 1/denominator (C: 1/4, C|: 1/2); None for free meter."""
  v = value.split('%')[0].strip()
  v = {'C': '4/4', 'C|': '2/2'}.get(v, v)
  m = re.search(r'/\s*(\d+)\s*$', v)
  return Fraction(1, int(m.group(1))) if m and int(m.group(1)) else None


def parse_unit_length(value: str) -> Fraction:
  v = value.split('%')[0].strip()
  m = re.fullmatch(r'(\d+)(?:\s*/\s*(\d+))?', v)
  if not m or int(m.group(1)) == 0 or (m.group(2) and int(m.group(2)) == 0):
    raise AbcError('bad_unit_length', f'L:{value}')
  return Fraction(int(m.group(1)), int(m.group(2) or 1))


def default_unit_length(meter: Fraction | None) -> Fraction:
  """ABC 2.1 rule: L is 1/16 when the meter is below 3/4, else 1/8 (free meter: 1/8)."""
  if meter is not None and meter < Fraction(3, 4):
    return Fraction(1, 16)
  return Fraction(1, 8)


def parse_key(value: str) -> dict[str, int]:
  """K: value -> {letter: semitone shift} key signature. Raises AbcError('bad_key')."""
  v = value.split('%')[0].strip()
  words = v.split()
  signature: dict[str, int] = {}
  if not words:
    raise AbcError('bad_key', 'empty K:')
  first = words[0]
  rest = words[1:]
  if first in ('HP', 'none') or first.startswith('clef='):
    if first.startswith('clef='):
      rest = words
  elif first == 'Hp':
    signature = {'F': 1, 'C': 1, 'G': 0}
  else:
    m = re.fullmatch(r'([A-G])([#b]?)([A-Za-z]*)', first)
    if not m:
      raise AbcError('bad_key', f'K:{value}')
    tonic, acc, mode = m.groups()
    if not mode and rest and rest[0][:3].lower() in _MODES and rest[0].isalpha():
      mode, rest = rest[0], rest[1:]
    mode_key = mode[:3].lower() if mode else 'maj'
    if mode and mode.lower() == 'm':
      mode_key = 'm'
    if mode_key not in _MODES:
      raise AbcError('bad_key', f'unknown mode {mode!r} in K:{value}')
    sharps = _TONIC_SHARPS[tonic] + {'#': 7, 'b': -7, '': 0}[acc] + _MODES[mode_key]
    if not -7 <= sharps <= 7:
      raise AbcError('bad_key', f'K:{value}')
    if sharps > 0:
      signature = {c: 1 for c in 'FCGDAEB'[:sharps]}
    elif sharps < 0:
      signature = {c: -1 for c in 'BEADGCF'[:-sharps]}
  for word in rest:
    m = re.fullmatch(r'(\^\^|\^|__|_|=)([A-Ga-g])', word)
    if m:
      signature[m.group(2).upper()] = _ACCIDENTAL_SHIFT[m.group(1)]
    elif not (word in _KEY_WORDS or '=' in word or word.lower() in _KEY_WORDS):
      raise AbcError('bad_key', f'unknown word {word!r} in K:{value}')
  return signature


def _read_length(s: str, i: int) -> tuple[Fraction, int]:
  """Reads a note-length suffix (`2`, `3/2`, `/`, `//`, `/4`) at s[i:]."""
  j = i
  while j < len(s) and s[j].isdigit():
    j += 1
  num = int(s[i:j]) if j > i else 1
  den = 1
  while j < len(s) and s[j] == '/':
    j += 1
    k = j
    while j < len(s) and s[j].isdigit():
      j += 1
    den *= int(s[k:j]) if j > k else 2
  if num == 0 or den == 0:
    raise AbcError('bad_note_length', f'{s[i:j]!r}')
  return Fraction(num, den), j


def _read_note(s: str, i: int, line: int) -> tuple[Token, int]:
  """Reads accidental, pitch, octave marks and length starting at s[i]."""
  j = i
  acc = ''
  for a in ('^^', '__', '^', '_', '='):
    if s.startswith(a, j):
      acc = a
      j += len(a)
      break
  if j >= len(s) or s[j] not in _PITCH_LETTERS:
    bad = s[j] if j < len(s) else 'end of line'
    raise AbcError('tokenize_error', f'accidental without a note at line {line} col {j + 1} '
                   f'({bad!r})')
  letter = s[j]
  j += 1
  octave = 0 if letter.isupper() else 1
  while j < len(s) and s[j] in "',":
    octave += 1 if s[j] == "'" else -1
    j += 1
  length, j = _read_length(s, j)
  return Token('note', s[i:j], line, i + 1, (acc, letter.upper(), octave, length)), j


def tokenize_body(lines: list[tuple[int, str]]) -> list[Token]:
  """Tokenizes body lines [(line number, text)] into typed tokens. Raises AbcError."""
  tokens: list[Token] = []
  for ln, raw in lines:
    s = raw.split('%', 1)[0].rstrip()
    m = _FIELD_LINE.match(s)
    if m:
      letter = m.group(1)
      if letter in HEADER_FIELDS and letter not in BODY_FIELDS:
        raise AbcError('header_after_K', f'{letter}: field at line {ln}')
      if letter != '+' and letter not in BODY_FIELDS:
        raise AbcError('bad_field', f'unknown field {letter}: at line {ln}')
      tokens.append(Token('field', s, ln, 1, (letter, s[2:].strip())))
      continue
    i = 0
    n = len(s)
    continued = False
    in_chord = in_grace = False
    chord_col = grace_col = 0
    while i < n:
      c = s[i]
      col = i + 1
      if c in ' \t`':
        i += 1
      elif c in _PITCH_LETTERS or c in '^_=':
        tok, i = _read_note(s, i, ln)
        tokens.append(tok)
      elif c in 'zx':
        length, j = _read_length(s, i + 1)
        tokens.append(Token('rest', s[i:j], ln, col, length))
        i = j
      elif c == 'Z':
        j = i + 1
        while j < n and s[j].isdigit():
          j += 1
        tokens.append(Token('mrest', s[i:j], ln, col, int(s[i + 1:j] or 1)))
        i = j
      elif c == 'y':
        tokens.append(Token('spacer', c, ln, col))
        i += 1
      elif c == '"':
        j = s.find('"', i + 1)
        if j < 0:
          raise AbcError('unclosed_chord_symbol', f'at line {ln} col {col}')
        tokens.append(Token('annotation', s[i:j + 1], ln, col))
        i = j + 1
      elif c == '!' or c == '+':
        m = re.compile(r'\%s[^\s|%s]{1,30}\%s' % (c, c, c)).match(s, i)
        if m:
          tokens.append(Token('decoration', m.group(), ln, col))
          i = m.end()
        elif c == '!':  # ABC 2.0 line break inside a music line
          tokens.append(Token('eol', c, ln, col, False))
          i += 1
        else:
          raise AbcError('unclosed_decoration', f"'+' at line {ln} col {col}")
      elif c in _DECORATION_CHARS:
        tokens.append(Token('decoration', c, ln, col))
        i += 1
      elif c == '[' and i + 2 < n and s[i + 1].isalpha() and s[i + 2] == ':':
        j = s.find(']', i)
        if j < 0:
          raise AbcError('unclosed_inline_field', f'at line {ln} col {col}')
        letter = s[i + 1]
        if letter not in INLINE_FIELDS:
          raise AbcError('bad_field', f'[{letter}: not allowed inline at line {ln} col {col}')
        tokens.append(Token('field', s[i:j + 1], ln, col, (letter, s[i + 3:j].strip())))
        i = j + 1
      elif c in '|:' or (c == '[' and i + 1 < n and (s[i + 1] in '|' or s[i + 1].isdigit())):
        j = i
        if c == '[' and s[i + 1].isdigit():
          bar = '['
          j = i + 1
        else:
          while j < n and (s[j] in '|:' or (s[j] == '[' and j + 1 < n and s[j + 1] == '|')
                           or (s[j] == ']' and s[j - 1] == '|')):
            j += 1
          if j < n - 1 and s[j] == '[' and s[j + 1].isdigit():
            j += 1
          bar = s[i:j]
          if '|' not in bar and bar != '::':
            raise AbcError('tokenize_error', f"unexpected ':' at line {ln} col {col}")
        m = re.compile(r'\d+(?:[-,]\d+)*').match(s, j)
        ending = None
        if m and (bar.endswith('|') or bar.endswith('[')):
          ending = m.group()
          j = m.end()
        elif bar == '[':
          raise AbcError('tokenize_error', f"unexpected '[' at line {ln} col {col}")
        tokens.append(Token('bar', s[i:j], ln, col, ending))
        i = j
      elif c == '[':
        if in_chord or in_grace:
          raise AbcError('tokenize_error', f"nested '[' at line {ln} col {col}")
        in_chord, chord_col = True, col
        tokens.append(Token('chord_start', c, ln, col))
        i += 1
      elif c == ']':
        if not in_chord:
          raise AbcError('tokenize_error', f"unexpected ']' at line {ln} col {col}")
        if tokens[-1].kind == 'chord_start':
          raise AbcError('tokenize_error', f'empty chord at line {ln} col {col}')
        in_chord = False
        length, j = _read_length(s, i + 1)
        tokens.append(Token('chord_end', s[i:j], ln, col, length))
        i = j
      elif c == '{':
        if in_grace or in_chord:
          raise AbcError('tokenize_error', f"nested '{{' at line {ln} col {col}")
        in_grace, grace_col = True, col
        tokens.append(Token('grace_start', c, ln, col))
        i += 2 if i + 1 < n and s[i + 1] == '/' else 1
      elif c == '}':
        if not in_grace:
          raise AbcError('tokenize_error', f"unexpected '}}' at line {ln} col {col}")
        if tokens[-1].kind == 'grace_start':
          raise AbcError('tokenize_error', f'empty grace group at line {ln} col {col}')
        in_grace = False
        tokens.append(Token('grace_end', c, ln, col))
        i += 1
      elif c == '(':
        m = re.compile(r'\((\d+)(?::(\d*)(?::(\d*))?)?').match(s, i)
        if m and i + 1 < n and s[i + 1].isdigit():
          p = int(m.group(1))
          q = int(m.group(2)) if m.group(2) else None
          r = int(m.group(3)) if m.group(3) else p
          if not 2 <= p <= 9 or (q is not None and q < 1) or r < 1:
            raise AbcError('bad_tuplet', f'{m.group()!r} at line {ln} col {col}')
          tokens.append(Token('tuplet', m.group(), ln, col, (p, q, r)))
          i = m.end()
        else:
          tokens.append(Token('slur', c, ln, col))
          i += 1
      elif c == ')':
        tokens.append(Token('slur', c, ln, col))
        i += 1
      elif c in '<>':
        j = i
        while j < n and s[j] == c:
          j += 1
        if j - i > 3:
          raise AbcError('bad_broken_rhythm', f'{s[i:j]!r} at line {ln} col {col}')
        tokens.append(Token('broken', s[i:j], ln, col, (c, j - i)))
        i = j
      elif c == '-':
        tokens.append(Token('tie', c, ln, col))
        i += 1
      elif c == '&':
        tokens.append(Token('overlay', c, ln, col))
        i += 1
      elif c == '\\' and i == n - 1:
        continued = True
        i += 1
      else:
        raise AbcError('tokenize_error', f'unexpected {c!r} at line {ln} col {col}')
    if in_chord:
      raise AbcError('unclosed_chord', f'[ at line {ln} col {chord_col}')
    if in_grace:
      raise AbcError('unclosed_grace', f'{{ at line {ln} col {grace_col}')
    tokens.append(Token('eol', '\n', ln, n + 1, continued))
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
    self.voice = self._get_voice('1')
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
      if k == 'note':
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
      elif k == 'rest':
        if in_chord or in_grace:
          raise AbcError('tokenize_error', f'rest inside chord or grace at line {tok.line}')
        add_event(None, self.voice.unit * tok.value, tok)
      elif k == 'mrest':
        v = self.voice
        if v.meter is not None:
          v.acc += v.meter * tok.value
        v.mrest += tok.value
        v.has_content = True
        last_event = None
      elif k == 'chord_start':
        in_chord, chord_first, chord_pitches = True, None, []
      elif k == 'chord_end':
        in_chord = False
        if chord_first is None:
          raise AbcError('tokenize_error', f'chord without notes at line {tok.line}')
        add_event(chord_pitches[0], self.voice.unit * chord_first * tok.value, tok)
        self.events[-1:] = [(pc, self.events[-1][1]) for pc in chord_pitches]
        last_event = len(self.events) - len(chord_pitches)
        # a chord counts once for the bar and the tuplet; its extra pitches carry no time
        for idx in range(last_event + 1, len(self.events)):
          self.events[idx] = (self.events[idx][0], Fraction(0))
      elif k == 'grace_start':
        in_grace = True
      elif k == 'grace_end':
        in_grace = False
      elif k == 'tuplet':
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
      elif k == 'broken':
        if last_event is None:
          raise AbcError('bad_broken_rhythm', f'{tok.text!r} without a note before it at '
                         f'line {tok.line} col {tok.col}')
        direction, count = tok.value
        small = Fraction(1, 2 ** count)
        first, second = (2 - small, small) if direction == '>' else (small, 2 - small)
        pc, length = self.events[last_event]
        extra = length * (first - 1)
        self.events[last_event] = (pc, length * first)
        self.voice.acc += extra
        broken_next = second
        last_event = None
        pending_broken = tok
      elif k == 'bar':
        plain = tok.text == '|'
        line_start = False
        self._close_bar(end_boundary=not plain, next_start_boundary=not plain)
        bar_accidentals.clear()
        last_event = None
      elif k == 'eol':
        v = self.voice
        if tok.value or not v.has_content or v.meter is None:
          continue
        v.line_edge = line_start = True
        # a line end with no bar line: a full bar closes there; a short one is a phrase end
        # (Essen's convention: one phrase per line) and its rest continues as a pickup
        full = v.acc == v.meter
        self._close_bar(end_boundary=not full, next_start_boundary=not full)
        bar_accidentals.clear()
      elif k == 'field':
        letter, value = tok.value
        if letter in 'MLKPV':
          v = self.voice
          v.start_boundary = True
          if v.has_content and letter in 'MPV':
            self._close_bar(end_boundary=True, next_start_boundary=True)
        if letter == 'M':
          # the unit length stays: ABC 2.1 derives the default L only from the header M:
          self.voice.meter, self.voice.beat = parse_meter(value), meter_beat(value)
        elif letter == 'L':
          self.voice.unit = parse_unit_length(value)
        elif letter == 'K':
          self.key = parse_key(value)
        elif letter == 'V':
          name = value.split()[0] if value.split() else '1'
          self.voice = self._get_voice(name)
          self.voice.start_boundary = True
    if in_chord:
      raise AbcError('unclosed_chord', 'at end of tune')
    if pending_broken is not None:
      raise AbcError('bad_broken_rhythm', f'{pending_broken.text!r} at line {pending_broken.line} '
                     'has no note after it')
    if tuplet_left:
      raise AbcError('bad_tuplet', f'tuplet lacks {tuplet_left} note(s) at end of tune')
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
        where = f' (voice {name})' if len(self.voices) > 1 else ''
        message = f'bar {i + 1}{where} at line {bar.line} has {bar.length}, expected {bar.meter}'
        self.irregular.append(message)
        if not bar.line_edge:
          self.interior.append(message)
    if len(self.interior) > int(count * irregular_bar_rate):
      raise AbcError('bar_duration', self.interior[0] +
                     (f' (+{len(self.interior) - 1} more)' if len(self.interior) > 1 else ''))
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


def _split_header(text: str) -> tuple[dict[str, list[str]], list[tuple[int, str]], str]:
  """Returns (header fields, body lines, first header-error code or '')."""
  lines = [(n + 1, line) for n, line in enumerate(text.splitlines())]
  kept = [(n, line) for n, line in lines if line.strip() and not line.lstrip().startswith('%')]
  if not kept:
    raise AbcError('empty', 'no text')
  header: dict[str, list[str]] = {}
  first_n, first = kept[0]
  if not first.startswith('X:'):
    if any(line.startswith('X:') for _, line in kept):
      raise AbcError('X_not_first', f'line {first_n} comes before X:')
    raise AbcError('missing_X', 'no X: field')
  for idx, (n, line) in enumerate(kept):
    m = _FIELD_LINE.match(line)
    if m and m.group(1) == 'K':
      header.setdefault('K', []).append(line[2:].strip())
      return header, kept[idx + 1:], ''
    if not m:
      if any(l.startswith('K:') for _, l in kept[idx:]):
        raise AbcError('bad_header_field', f'line {n} is not a field: {line[:30]!r}')
      raise AbcError('missing_K', f'no K: field before the music at line {n}')
    letter = m.group(1)
    if letter == 'X' and idx > 0:
      raise AbcError('missing_K', f'second X: at line {n} before any K:')
    if letter != '+' and letter not in HEADER_FIELDS:
      raise AbcError('bad_header_field', f'unknown field {letter}: at line {n}')
    header.setdefault(letter, []).append(line[2:].strip())
  raise AbcError('missing_K', 'no K: field')


def parse_tune(text: str, irregular_bar_rate: Fraction = IRREGULAR_BAR_RATE) -> ParsedTune:
  """Parses and checks one tune. Raises AbcError with a reason code on the first defect."""
  header, body, _ = _split_header(text)
  meter_text = header['M'][-1] if 'M' in header else 'none'  # ABC 2.1: no M: is free meter
  meter = parse_meter(meter_text)
  if 'L' in header:
    unit = parse_unit_length(header['L'][-1])
  else:
    unit = default_unit_length(meter)
  key = parse_key(header['K'][-1])
  if not body:
    raise AbcError('empty_body', 'no music after K:')
  tokens = tokenize_body(body)
  timeline = _Timeline(meter_text, unit, key)
  timeline.run(tokens)
  if timeline.notes == 0 and not any(t.kind in ('rest', 'mrest') for t in tokens):
    raise AbcError('empty_body', 'no notes or rests after K:')
  bars = timeline.check_bars(irregular_bar_rate)
  return ParsedTune(header, tokens, timeline.key, timeline.events, bars,
                    len(timeline.irregular))


def check_tune(text: str, irregular_bar_rate: Fraction = IRREGULAR_BAR_RATE) -> CheckResult:
  """Checks one ABC tune; `reason` is a stable code when it fails.

  irregular_bar_rate: the share of bars that may have an unexplained length (transcription
  slips); 0 makes the bar check strict.
  """
  header: dict[str, list[str]] = {}
  try:
    header = _split_header(text)[0]
    parsed = parse_tune(text, irregular_bar_rate)
  except AbcError as e:
    return CheckResult(False, e.code, e.detail, **_header_summary(header))
  notes = sum(1 for t in parsed.tokens if t.kind == 'note')
  return CheckResult(True, '', '', notes=notes, bars=parsed.bars,
                     irregular_bars=parsed.irregular_bars, **_header_summary(header))


def _header_summary(header: dict[str, list[str]]) -> dict[str, str]:
  def first(letter):
    return header[letter][0].split('%')[0].strip() if header.get(letter) else ''
  return dict(key=first('K'), meter=first('M'), unit_length=first('L'), title=first('T'))


def split_tunes(text: str) -> list[str]:
  """Splits a file's text into tunes at lines starting with `X:` (text before the first is
  dropped unless there is no X: at all, in which case the whole text is one tune)."""
  parts = re.split(r'(?m)^(?=X:)', text)
  tunes = [p for p in parts if p.startswith('X:')]
  if not tunes and text.strip():
    return [text]
  return tunes

"""Key transposition of ABC tunes, checked against music21's reading of the pitches."""

import re
import warnings

import pytest

from abcjax.data import transpose
from abcjax.data.transpose import TransposeError, transpose_tune

# %abc-2.1 makes music21 carry an accidental through the bar (its default, abc 1.3, does not).
# It carries only the first sign of ^^ or __ though, so the carried accidentals here are a raised
# 4th, a raised tonic and a lowered 7th: in no key of at most 6 accidentals do they need a double.
REEL = """%abc-2.1
X:1
T:The Cabbage Reel
C:Trad.
R:reel
M:4/4
L:1/8
K:G
|:"G"GABc d2 ^cd|"D/F#"{gf}e2 [DA]2 B,2 c'2|"Am7"a^g a=g ^f2 f>e|"G#m"dBAG ~G2 G,2:|
|:"Em"B,,2 E,G, B,E GB|"C"c'2 b=f f2 ag|"D7"{a}f2 [^ce]2 (3d^cc g2|"G"g4 G4:|
"""
JIG = """X:2
T:Dorian Jig
R:jig
M:6/8
L:1/8
K:Ador
|:EAA ^GAB|=c2A BGE|DGG ^FGA|BAG E2D|
EAA ^GAB|c2d e2f|gfe dB^G|A3- A2:|
K:D mix
|:f2a afd|=c2A cde|f^ga ged|cAG A3:|
"""
# Inline key and meter changes, a body K: line, a low and a high register.
MINOR = """X:3
T:Minor and More
M:4/4
L:1/4
K:E Minor
E F G A|B c d ^d|e2 [K:G] f e|[M:3/4] d c B|
K:Bb
B, D F|_A2 =B|c _d e|f3|]
"""
FLATS = """X:4
T:Flats
M:3/4
L:1/8
K:Bb
B,,2 D,F, B,D|^^F2 __B2 b'a'|g'2 _g'2 f'2|"Eb"e2 "Cm7/Bb"c2 "F7"A2|B6|]
"""
MODAL = """X:5
T:Phrygian and Lydian
M:2/4
L:1/8
K:E phr
EF GA|Bc d2|[K:F lyd] FG AB|c2 f2|]
"""
# Each tune with the shifts it cannot take: FLATS's ^^F (F is natural in Bb) would need a triple
# sharp in B major, where F is sharp; F stays natural or flat in every other key it reaches.
TUNES = {"reel": (REEL, ()), "reel_abc1": (REEL.replace("%abc-2.1\n", ""), ()), "jig": (JIG, ()),
         "minor": (MINOR, ()), "flats": (FLATS, (1,)), "modal": (MODAL, ())}


def _music21(text: str):
  """Every note's (MIDI pitches, length) and each chord symbol's (root, bass) pitch class."""
  import music21

  # music21 ignores inline [K:...] fields; as body K: lines it reads them.
  text = re.sub(r"\[K:([^\]]*)\]", lambda m: "\nK:" + m.group(1) + "\n", text)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    score = music21.converter.parse(text, format="abc")
  notes, symbols = [], []
  for n in score.flatten().notes:
    if isinstance(n, music21.harmony.ChordSymbol):
      symbols.append((n.root().pitchClass, n.bass().pitchClass))
    else:
      notes.append((tuple(p.midi for p in n.pitches), float(n.quarterLength)))
  return notes, symbols


@pytest.mark.parametrize("name", TUNES)
def test_every_shift_moves_every_pitch_by_the_shift(name):
  tune, refused = TUNES[name]
  notes, symbols = _music21(tune)
  assert len(notes) > 10
  copies, errors = transpose.transpositions(tune, transpose.ALL_SHIFTS)
  assert {s: e.reason for s, e in errors.items()} == dict.fromkeys(refused,
                                                                   "accidental_out_of_range")
  for shift, moved in copies.items():
    got_notes, got_symbols = _music21(moved)
    assert got_notes == [(tuple(m + shift for m in p), d) for p, d in notes], (shift, moved)
    assert got_symbols == [((r + shift) % 12, (b + shift) % 12) for r, b in symbols], shift


def test_shifting_there_and_back_gives_the_original_pitches():
  for tune in (REEL, JIG, MINOR, FLATS):
    for shift in (2, 5, -3, 6):
      back = transpose_tune(transpose_tune(tune, shift), -shift)
      assert _music21(back) == _music21(tune), (tune, shift)
  assert transpose_tune(JIG, 0) == JIG
  assert transpose_tune(transpose_tune(JIG, 2), -2) == JIG  # Ador -> Bdor -> Ador, same spelling


def test_keys_modes_and_accidentals_are_rewritten():
  def key(value, shift):
    return transpose_tune(f"X:1\nK:{value}\nC|\n", shift).split("\n")[1]

  assert key("Ador", 2) == "K:Bdor"
  assert key("D mix", 1) == "K:Eb mix"
  assert key("E Minor", -1) == "K:Eb Minor"
  assert key("F#m", -4) == "K:Dm"
  assert key("G clef=bass", 2) == "K:A clef=bass"
  assert key("A min -8va", 3) == "K:C min -8va"
  assert key("C", 6) == "K:F#" and key("C", -6) == "K:Gb"  # sharps up, flats down
  assert key("C", 1) == "K:Db" and key("Gb", 1) == "K:G"  # at most 6 accidentals
  assert key("Dmix=c", 2) == "K:Emix=d"
  assert key("D exp ^f ^c", 1) == "K:Eb exp =g =d"
  body = transpose_tune("X:1\nK:C\nC ^F =B, c'|[K:Am] A|\n", 1).split("\n")[2]
  assert body == "D =G =C d'|[K:Bbm] B|"
  octave_up = transpose_tune("X:1\nK:G\nB,, d'' [B,d]|\n", 12)
  assert octave_up.split("\n")[1:3] == ["K:G", "B, d''' [Bd']|"]


def test_chord_symbols_move_and_annotations_do_not():
  tune = 'X:1\nK:G\n"Am7"A "D/F#"F "G#m"G "Bbmaj7"B "(Em)"E "^Am"A "Fine"F "Coda"C "f"c|\n'
  body = transpose_tune(tune, 2).split("\n")[2]
  assert body == '"Bm7"B "E/G#"G "A#m"A "Cmaj7"c "(F#m)"F "^Am"B "Fine"G "Coda"D "f"d|'


def test_text_fields_decorations_and_comments_are_untouched():
  tune = ("X:6\nT:Cabbage and Beef\nC:Bach\nO:Fed Abbey\nN:a b c d e f g\nK:D\n%%MIDI program 73\n"
          '"^Fade"A !fermata!B +trill+c "Coda"d [P:B] e % bad cafe\n'
          "W:Cabbage faced\nw:ca-fe bead\n% a comment: abc\nT:Second Part, Bed\nf2 g2|]\n")
  moved = transpose_tune(tune, 2)
  kept = [line for line in tune.split("\n") if not line or line[0] in "%TCONWw" or line[:2] == "X:"]
  assert [line for line in moved.split("\n") if line in kept] == kept
  music = moved.split("\n")[7]
  assert music == '"^Fade"B !fermata!c +trill+d "Coda"e [P:B] f % bad cafe'
  assert moved.split("\n")[-2] == "g2 a2|]"
  assert "K:E\n" in moved


def test_old_style_plus_chords_move_but_dynamics_do_not():
  body = transpose_tune("X:1\nK:C\n+E3A3+ +f+ +ff+ +trill+ c|\n", 2).split("\n")[2]
  assert body == "+F3B3+ +f+ +ff+ +trill+ d|"


@pytest.mark.parametrize("key,reason", [
    ("none", "key_none"), ("HP", "key_highland_pipes"), ("Hp", "key_highland_pipes"),
    ("perc", "key_percussion"), ("C clef=perc", "key_percussion"), (" Es", "key_unrecognised"),
    ("Bn", "key_unrecognised"), ("", "key_none")])
def test_tunes_without_a_key_to_move_are_refused(key, reason):
  with pytest.raises(TransposeError) as e:
    transpose_tune(f"X:1\nT:t\nK:{key}\nABc|\n", 2)
  assert e.value.reason == reason
  assert reason in transpose.SKIP_REASONS


def test_unwritable_keys_and_accidentals_are_refused():
  with pytest.raises(TransposeError, match="key_out_of_range"):  # 7 sharps and 7 flats
    transpose_tune("X:1\nK:C#\nC|\nK:Cb\nC|\n", 1)
  with pytest.raises(TransposeError, match="key_none"):
    transpose_tune("X:1\nK:G\nG|\nK:none\nG|\n", 1)
  # In Cb major ^B is B#, which moves to F### in G major.
  with pytest.raises(TransposeError, match="accidental_out_of_range"):
    transpose_tune("X:1\nK:Cb\n^B|\n", -4)
  copies, errors = transpose.transpositions("X:1\nK:Cb\n^B|\n", (-4, 1))
  assert list(copies) == [1] and errors[-4].reason == "accidental_out_of_range"
  assert transpose_tune("X:1\nK:C\nK:clef=bass\nC|\n", 2) == "X:1\nK:D\nK:clef=bass\nD|\n"


def test_parse_shifts():
  assert transpose.parse_shifts("none") == transpose.parse_shifts("") == ()
  assert transpose.parse_shifts("all") == transpose.ALL_SHIFTS
  assert len({(s + 12) % 12 for s in transpose.ALL_SHIFTS} | {0}) == 12
  assert transpose.parse_shifts("5,-2, 2") == (-2, 2, 5)
  for bad in ("0", "1,1", "x", "12", "2;3"):
    with pytest.raises(ValueError, match=f"--transpose={re.escape(bad)}"):
      transpose.parse_shifts(bad)


def test_canonical_form_is_one_text_for_one_melody_in_any_key_or_octave():
  for tune in (REEL, JIG, MINOR):
    canonical = transpose.canonical_form(tune)
    assert re.search(r"^K:(C|A Minor|Ddor)$", canonical, re.MULTILINE), canonical
    for shift in (*transpose.ALL_SHIFTS, 12, -7):
      assert transpose.canonical_form(transpose_tune(tune, shift)) == canonical, shift
  assert transpose.canonical_form(REEL) != transpose.canonical_form(REEL.replace("GABc", "GABd"))

"""Tests of abcjax.evaluation.abc_checker: tune syntax, ABC 2.1 header rules, bar lengths, and
small collections in the styles of common public sources (cross-checked with abc2midi)."""

import shutil
from fractions import Fraction

import pytest

from abcjax.evaluation import abc_checker, midi

VALID_TUNES = {
    "pickup_repeats_endings": """X:1
T:Pickup, repeats and endings
M:6/8
L:1/8
K:G
D|:G2B d2B|c2A F2D|G2B d2g|1 f2d c2D:|2 f2d g2||
|:g|f2d c2A|B3 G2:|
""",
    "tuplets_chords_grace": """X:2
T:Tuplets, chords, grace notes
M:4/4
L:1/8
K:D
(3ABc d2 [DFA]2 {g}f2|[d2f2] (3:2:3e/f/g/ a4 {ag}f2|(5ABcde d2 z2 [CEG]|[A,4E4A4] z4|]
""",
    "broken_rhythm_decorations": """X:3
T:Broken rhythm, decorations, chord symbols
M:2/4
L:1/16
K:Ador
"Am"A3B c>d e<f|!trill!g4 ~e4|.A2.B2 "G"Td>>e G2|"^fine"HA8|]
""",
    "inline_fields_and_M_C": """X:4
T:Inline fields, M:C, M:C|, lyrics, parts
M:C
K:F
P:A
F2 A2 c4|d2 c2 A4|[M:3/4] F2 A2 c2|[L:1/4] d c A|\\
[M:C|][L:1/8] F4 A4|
w:some words here
P:B
[K:Bb] B2 d2 f4|e2 d2 B4|]
""",
    "multi_bar_rest_and_default_L": """X:5
T:Default L is 1/16 below 3/4
M:2/4
K:Em
E4 F4|G8|Z2|B2A2 G2F2|E8|]
""",
}

INVALID_TUNES = {
    "missing_X": "T:no index\nM:4/4\nK:C\nCDEF GABc|\n",
    "X_not_first": "T:title first\nX:1\nM:4/4\nK:C\nCDEF GABc|\n",
    "missing_K": "X:1\nT:no key\nM:4/4\nL:1/8\nCDEF GABc|\n",
    "music_before_K": "X:1\nT:t\nM:4/4\nCDEF GABc|\nK:C\ncdef gabc'|\n",
    "misplaced_field": "X:1\nT:t\nw:la la la la\nM:4/4\nK:C\nCDEF GABc|\n",
    "header_after_K": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\nO:Ireland\ncdef gabc'|\n",
    "blank_line_in_tune": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n\ncdef gabc'|\n",
    "second_tune": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GABc|\n\nX:2\nT:u\nK:C\nCDEF GABc|\n",
    "undefined_part": "X:1\nT:t\nP:AB\nM:4/4\nL:1/8\nK:C\nP:A\nCDEF GABc|cdef gabc'|\nP:C\nc8|]\n",
    "empty_body": "X:1\nT:t\nM:4/4\nK:C\n",
    "tokenize_error": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF G\u00a4Bc|\n",
    "unclosed_chord": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF [GBd c2|\n",
    "unclosed_grace": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF {ga GABc|\n",
    "unclosed_chord_symbol": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\n\"Am CDEF GABc|\n",
    "bad_tuplet": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF GA(3B|\n",
    "bad_broken_rhythm": "X:1\nT:t\nM:4/4\nL:1/8\nK:C\n>CDEF GABc|\n",
    "bad_meter": "X:1\nT:t\nM:3/x\nL:1/8\nK:C\nCDE|\n",
    "bad_unit_length": "X:1\nT:t\nM:3/4\nL:0\nK:C\nCDE|\n",
    "bad_key": "X:1\nT:t\nM:3/4\nL:1/8\nK:Q\nCDEFGA|\n",
    "bad_note_length": "X:1\nT:t\nM:3/4\nL:1/8\nK:C\nC0DEFGA|\n",
    # bar 3 of 5 is an eighth short: no tolerance explains it and the tune is too short for a slip
    "bar_duration": "X:1\nT:t\nM:3/4\nL:1/8\nK:G\nGAB cde|dcB AGF|GAB cd|edc BAG|G6|]\n",
}

# A reel as one would find it in a public archive; the tests below add one construct at a time.
REEL = """X:1
T:The Silver Spear
R:reel
M:4/4
L:1/8
K:D
A|FA (3AAA BAFA|dfed BddB|AF (3FFF AFdF|EFGA BEE2:|
|:fa (3aaa bfaf|afdf edBd|fa (3aaa bfaf|gfed BEE2:|
"""


def codes(result) -> list[str]:
  return [w.split(":")[0] for w in result.warnings]


@pytest.mark.parametrize("name", sorted(VALID_TUNES))
def test_checker_accepts_valid_tunes(name):
  result = abc_checker.check_tune(VALID_TUNES[name])
  assert result.valid, result.message
  assert result.reason == "" and result.notes > 0 and result.bars > 0 and result.warnings == []


@pytest.mark.parametrize("reason", sorted(INVALID_TUNES))
def test_checker_rejects_with_reason(reason):
  result = abc_checker.check_tune(INVALID_TUNES[reason])
  assert not result.valid
  assert result.reason == reason, result.message


def test_checker_header_summary_and_counts():
  result = abc_checker.check_tune(VALID_TUNES["tuplets_chords_grace"])
  assert (result.key, result.meter, result.unit_length, result.title) == (
      "D", "4/4", "1/8", "Tuplets, chords, grace notes")
  assert result.bars == 4


def test_bar_check_is_not_vacuous():
  good = "X:1\nT:t\nM:3/4\nL:1/8\nK:G\nGAB cde|dcB AGF|GAB cde|edc BAG|G6|]\n"
  assert abc_checker.check_tune(good).valid
  long_bar = good.replace("dcB AGF", "dcB AGFE")
  assert abc_checker.check_tune(long_bar).reason == "bar_duration"
  wrong_tuplet = good.replace("GAB cde|edc", "(3GAB cde|edc")  # 2/3 of a beat short mid-tune
  assert abc_checker.check_tune(wrong_tuplet).reason == "bar_duration"
  garbage = "X:1\nT:t\nK:C\n" + "qw#e$r%t^y&u*i(o)p" * 5
  assert not abc_checker.check_tune(garbage).valid


def test_bar_check_tolerances():
  # a slip (one odd bar) is forgiven in a long tune but not with the strict rate
  bars = ["GAB cde"] * 15 + ["GAB cd"]
  tune = "X:1\nT:t\nM:3/4\nL:1/8\nK:G\n" + "|".join(bars[:8]) + "|\n" + \
      "|".join(bars[8:]) + "|G6|]\n"
  relaxed = abc_checker.check_tune(tune)
  assert relaxed.valid and relaxed.irregular_bars == 1
  assert abc_checker.check_tune(tune, irregular_bar_rate=Fraction(0)).reason == "bar_duration"
  # an unmarked change of meter by whole beats, and a bar carried across lines (Essen style)
  essen = "X:1\nT:t\nM:3/4\nL:1/8\nK:F\nAG | F2F2AB | AGG2\nFD | C2FABc | F4 | A6 |]\n"
  result = abc_checker.check_tune(essen, irregular_bar_rate=Fraction(0))
  assert result.valid and result.irregular_bars == 0, result.message


def test_default_unit_length_rule():
  assert abc_checker.default_unit_length(Fraction(2, 4)) == Fraction(1, 16)
  assert abc_checker.default_unit_length(Fraction(3, 4)) == Fraction(1, 8)
  assert abc_checker.parse_meter("C|") == Fraction(1) and abc_checker.parse_meter("none") is None


def test_split_tunes():
  text = "X:1\nT:a\nK:C\nC|\n\nX:2\nT:b\nK:C\nD|\n"
  assert [t.splitlines()[1] for t in abc_checker.split_tunes(text)] == ["T:a", "T:b"]


def test_regular_expressions_are_compiled_once(monkeypatch):
  """Checking a tune uses only the patterns compiled when the module loads."""
  every_construct = "\n".join(VALID_TUNES.values()) + REEL
  before = [abc_checker.check_tune(t) for t in abc_checker.split_tunes(every_construct)]
  monkeypatch.setattr(abc_checker, "re", None)
  after = [abc_checker.check_tune(t) for t in abc_checker.split_tunes(every_construct)]
  assert after == before and all(r.valid for r in after)


# ABC 2.1's header rules, each on the reel above.

def test_fields_abc21_does_not_define_are_ignored_with_a_warning():
  header = REEL.replace("R:reel\n", "R:reel\nY:reel-042\nE:12\n")
  body = header.replace("|:fa", "J:a field nobody defines\n|:fa").replace("dfed", "dfed [j:x]")
  plain, result = abc_checker.check_tune(REEL), abc_checker.check_tune(body)
  assert result.valid, result.message
  assert codes(result) == ["unknown_field"] * 4
  assert "Y: at line 4" in result.warnings[0]
  assert (result.notes, result.bars) == (plain.notes, plain.bars)  # the fields change nothing


def test_where_fields_may_stand():
  in_body = REEL.replace("|:fa", "T:Second part\nN:play it twice\nP:B\nQ:1/4=112\nr:a remark\n"
                         "I:linebreak $\nW:words printed below the tune\n|:fa")
  assert abc_checker.check_tune(in_body).valid
  for letter in "ABCDFGHOSZ":  # tune header only (ABC 2.1 section 3's table)
    result = abc_checker.check_tune(REEL.replace("|:fa", f"{letter}:text\n|:fa"))
    assert result.reason == "header_after_K", (letter, result.message)
  for letter in "ws":  # tune body only
    result = abc_checker.check_tune(REEL.replace("K:D", f"{letter}:text\nK:D"))
    assert result.reason == "misplaced_field", (letter, result.message)
  assert abc_checker.check_tune(REEL.replace("|:fa", "[O:Ireland] |:fa")).reason == "bad_field"
  # a note letter, a colon and a bar line is music, not a field
  music = abc_checker.check_tune(REEL.replace("BEE2:|\n|:", "BEE2\nE:|\n|:"))
  assert music.valid and music.warnings == [], music.message


def test_continuation_lines():
  tune = REEL.replace("T:The Silver Spear\n", "T:The Silver Spear\n% a comment between\n"
                      "+:(second setting)\nH:Learnt from a 78 record\n+:in Chicago\n")
  result = abc_checker.check_tune(tune)
  assert result.valid and result.warnings == []
  assert result.title == "The Silver Spear (second setting)"
  lyrics = REEL + "w:la la la la la la la la\n+:la la la\n"
  parsed = abc_checker.parse_tune(lyrics)
  assert [t.value for t in parsed.tokens if t.kind == "field"] == [
      ("w", "la la la la la la la la la la la")]
  orphan = abc_checker.check_tune(REEL.replace("|:fa", "+:nothing to continue\n|:fa"))
  assert orphan.valid and codes(orphan) == ["orphan_continuation"]


def test_directives_and_typeset_text_are_not_music():
  text_block = ("%%begintext\nThis tune was collected in 1903.\nThe second part is newer.\n"
                "%%endtext\n")
  tune = REEL.replace("K:D\n", "%%MIDI program 41\nK:D\n" + text_block)
  result = abc_checker.check_tune(tune)
  assert result.valid and result.warnings == [], result.message
  bare = tune.replace("%%begintext\n", "").replace("%%endtext\n", "")
  assert abc_checker.check_tune(bare).reason == "tokenize_error"  # the same words as music
  unclosed = abc_checker.check_tune(REEL + "%%begintext\nnotes\n")
  assert unclosed.valid and codes(unclosed) == ["unclosed_text_block"]


def test_a_tune_ends_at_an_empty_line():
  free_text = abc_checker.check_tune(REEL + "\nThe Silver Spear is often played after\n"
                                     "The Mountain Road.\n")
  assert free_text.valid and codes(free_text) == ["free_text"]
  split_header = abc_checker.check_tune(REEL.replace("M:4/4\n", "M:4/4\n\n"))
  assert split_header.reason == "missing_K" and "empty line at line 5" in split_header.detail
  cut = abc_checker.check_tune(REEL.replace("BEE2:|\n", "BEE2:|\n   \n"))  # spaces only
  assert cut.reason == "blank_line_in_tune" and "line 8" in cut.detail and "line 9" in cut.detail


def test_text_in_the_header_that_is_no_field():
  tune = REEL.replace("R:reel", "3/8=120\nR:reel").replace(
      "M:4/4", "H:Played by fiddlers in Sligo\nand Leitrim alike.\nM:4/4")
  result = abc_checker.check_tune(tune)
  assert result.valid and codes(result) == ["header_text", "header_text"]
  assert "line 3 is not a field, ignored: '3/8=120'" in result.warnings[0]
  assert "line 6 is not a field (a deprecated H: continuation)" in result.warnings[1]


def test_lyrics_aligned_and_after():
  song = """X:1
T:The Parting Glass
M:3/4
L:1/8
K:G
D2|G3 A B2|d3 e d2|B3 A G2|A4 D2|
w:Of all the mon-ey e'er I had, I spent it in good com-pa-ny
G3 A B2|d3 e d2|B2 A2 G2|G4|]
w:And all the harm I've ev-er done, a-las it was to none but me
W:And all I've done for want of wit
W:To mem'ry now I can't re-call
"""
  result = abc_checker.check_tune(song)
  assert result.valid and result.warnings == [] and result.bars == 9, result.message


def test_parts_order_in_the_header_and_marks_in_the_body():
  tune = REEL.replace("K:D\n", "P:A2B\nK:D\nP:A\n").replace("|:fa", "[P:B] |:fa")
  assert abc_checker.check_tune(tune).valid
  nested = tune.replace("P:A2B", "P:((AB)2.A)2")
  assert abc_checker.check_tune(nested).warnings == []
  missing = abc_checker.check_tune(tune.replace("P:A2B", "P:A2BC"))
  assert missing.reason == "undefined_part" and "part(s) C" in missing.detail
  unmarked = abc_checker.check_tune(REEL.replace("K:D", "P:AABB\nK:D"))
  assert unmarked.valid and codes(unmarked) == ["parts_not_marked"]
  label = abc_checker.check_tune(REEL.replace("K:D", "P:A\nK:D"))  # one label names the part
  assert label.valid and label.warnings == []
  words = abc_checker.check_tune(REEL.replace("K:D", "P:Verse and chorus\nK:D"))
  assert words.valid and codes(words) == ["bad_parts"]


def test_voices_have_their_own_bars():
  duet = """X:1
T:Duet
C:Anon.
M:3/4
L:1/8
%%score (S B)
V:S clef=treble name="Soprano" snm="S"
V:B clef=bass name="Bass" snm="B"
K:D
[V:S] d2 f2 a2|g2 e2 c2|d6|]
w:Al-le-lu-ia, al-le-lu-ia, Lord.
[V:B] D,4 F,2|G,4 A,2|D,6|]
w:Al-le-lu-ia, al-le-lu-ia,
"""
  result = abc_checker.check_tune(duet)
  assert result.valid and result.warnings == [] and result.bars == 6, result.message
  separate_lines = duet.replace("[V:S] ", "V:S\n").replace("[V:B] ", "V:B\n")
  assert abc_checker.check_tune(separate_lines).valid
  short = abc_checker.check_tune(duet.replace("G,4 A,2", "G,4 A,"), Fraction(0))
  assert short.reason == "bar_duration" and "(voice B)" in short.detail


def test_key_signatures_of_abc21():
  assert abc_checker.parse_key("") == {}  # ABC 2.1: an empty K: has no key signature
  assert abc_checker.parse_key("none") == {}
  assert abc_checker.parse_key("Dmix=c") == abc_checker.parse_key("D mix =c") == {"F": 1, "C": 0}
  assert abc_checker.parse_key("G clef=bass") == {"F": 1}
  assert abc_checker.check_tune(REEL.replace("K:D", "K:")).valid
  with pytest.raises(abc_checker.AbcError):
    abc_checker.parse_key("H")  # German B, not an ABC key


def test_score_line_breaks_invisible_rests_and_a_repeat_split_over_lines():
  tune = """X:1
T:t
M:2/4
L:1/8
K:G
GABc|dedB|$ GABc|d4||\\
:X2|B2AG|\\
% comment
FGA2:|
"""
  result = abc_checker.check_tune(tune, Fraction(0))
  assert result.valid and result.bars == 8, result.message
  assert abc_checker.check_tune(tune.replace("||\\\n:", "\n:")).reason == "tokenize_error"


# Small collections in the styles of common public sources. Each must pass whole: a checker that
# fails real tunes for their metadata cannot score samples.

SESSION_STYLE = """X: 1
T: The Drunken Landlady
R: reel
M: 4/4
L: 1/8
K: Edor
|:EBBA B2 EB|B2 AB dBAG|FDAD BDAD|FDAD dAFD|
EBBA B2 EB|B2 AB defg|afec dBAF|1 DEFD E3D:|2 DEFD E2gf||
|:eB B2 efge|eB B2 gedB|A2 FA DAFA|A2 FA defg|
eB B2 efge|eB B2 defg|afec dBAF|1 DEFD E2gf:|2 DEFD E4|]

X: 2
T: Out On The Ocean
R: jig
M: 6/8
L: 1/8
K: Gmaj
|:D|"G"GED G2A|B3 AGE|"D"DED B2A|"G"BAG "Em"E2D|
"G"GED G2A|B3 AGE|"D"DED B2A|1 "G"G3 G2:|2 "G"G3 G2B||
|:"C"c3 cBc|"G"dBG dBG|"C"c3 cBA|"D"BAG A2B|
"C"c3 cBc|"G"dBG dBG|"C"c2 e "D"dcA|1 "G"G3 G2B:|2 "G"G3 G2||

X: 3
T: The Boys Of Bluehill
R: hornpipe
M: 4/4
L: 1/8
K: Dmaj
|:(3FGA|"D"B>A F>A D>E F>A|"G"B>A B>d "A"e>f e>d|"D"B>A F>A D>E F>A|"G"d>B "A"A>F "D"E2 D2:|
|:f>g|"D"a>f d>f a2 f>a|"G"b>a g>f "A"e>f e>d|"D"B>A F>A D>E F>A|"G"d>B "A"A>F "D"E2 D2:|
"""

NOTTINGHAM_STYLE = """X: 1
T:Ashokan Farewell
% Nottingham Music Database
S:Jay Ungar, via PR
M:3/4
L:1/4
P:AB
K:D
P:A
A/2G/2|"D"F3/2E/2 D|"Bm"D2 B,/2A,/2|"G"B,2 D|"D"F2 A/2G/2|\\
"D"F3/2E/2 D|"Bm"D2 E|"A7"E2 D/2E/2|"A7"F2 A/2G/2|
"D"F3/2E/2 D|"Bm"D2 B,/2A,/2|"G"B,2 D|"D"F2 A|"G"B3/2A/2 G|"D"F3/2E/2 D|"A7"E2 F|"D"D2||
P:B
A/2B/2|"D"d3/2c/2 d|"G"B2 d|"D"A2 F|"D"A2 A/2B/2|"D"d3/2c/2 d|"G"B2 d|"A7"e2 f/2e/2|"A7"e2 A/2B/2|
"D"d3/2c/2 d|"G"B2 d|"D"A2 F|"D"D2 D/2E/2|"G"F/2E/2 D B,|"D"A,2 D|"A7"E2 F|"D"D2|]

X: 2
T:Bonnie Kate
% Nottingham Music Database
S:Trad, arr Phil Rowe
M:4/4
L:1/4
K:D
P:A
"D"F/2A/2d/2f/2 e/2d/2c/2B/2|"G"B/2g/2f/2e/2 "A"e/2d/2c/2e/2|\\
"D"d/2f/2a/2f/2 "G"g/2e/2c/2A/2|"A"B/2A/2G/2F/2 "D"D2:|
P:B
"D"f/2a/2a/2g/2 f/2e/2d/2f/2|"G"g/2b/2b/2a/2 "A"g/2f/2e/2g/2|\\
"D"f/2a/2a/2f/2 "G"g/2e/2c/2A/2|"A"B/2A/2G/2F/2 "D"D2:|
"""

# An archive's metadata fields, with a collection's own non-standard Y: (and the old E:).
ARCHIVE_STYLE = """%abc-2.1
% tunes with every metadata field of a large public archive

X:1
T:Rolling In The Ryegrass
T:Rolling In The Barrel
C:Trad.
O:Ireland; Munster
A:Kerry
R:reel
Z:id:hn-reel-42
Y:reel-042
D:The Bothy Band, After Hours
S:Kevin Burke
B:O'Neill's Music of Ireland, 1403
F:http://example.org/abc/reels.abc
G:fiddle
H:Played at sessions all over Clare;
+:learnt from a 78 rpm record.
N:The B part is sometimes played an octave lower.
M:C|
L:1/8
Q:1/2=96
K:D
A2FA DAFA|A2FA BEE2|A2FA DAFA|dBAF ADD2:|
|:d2fd adfd|d2fd ceec|d2fd adfd|dBAF ADD2:|

X:2
T:Kesh, The
R:jig
Y:jig-007
E:12
Z:id:hn-jig-7
M:6/8
L:1/8
K:G
|:GAG GAB|ABA ABd|edd gdd|edB dBA|
GAG GAB|ABA ABd|edd gdB|AGF G3:|
|:BAB dBd|ege dBA|BAB dBG|ABA AGA|
BAB dBd|ege dBd|gfg aga|bgf g3:|
"""

# A song book: a file header the tunes rely on (no M: or L: of their own), free text, lyrics.
SONGBOOK_STYLE = """%abc-2.1
M:3/4
L:1/8
O:Scotland

These songs come with their words. This paragraph is free text:
ABC programs ignore it.

X:1
T:Ye Banks and Braes
C:Robert Burns
Q:"Andante" 1/4=72
K:F
C2|F3 G A2|c3 A G2|F3 E D2|C4 C2|
w:Ye banks and braes o' bon-nie Doon, How
F3 G A2|c3 A G2|F3 G A2|G4 C2|
w:can ye bloom sae fresh and fair? How
+:(the second line)
W:Ye banks and braes o' bonnie Doon,
W:How can ye bloom sae fresh and fair?

A song for the end of the night:

X:2
T:Auld Lang Syne
T:(a second title)
Q:1/4=80
I:linebreak $
K:F
C2|F3 F A2|G3 F G2|A3 F F2|A2 c2 d2 $ d4 d2|c3 A A2|F3 G F2|
w:Should auld ac-quaint-ance be for-got, and ne-ver brought to mind? Should
%%begintext
This verse is printed after the music:
And here's a hand, my trusty fiere!
%%endtext
G3 F G2|A4 G2|F3 D D2|C2 F2 G2|F4|]
W:We twa hae paidl'd in the burn,
W:Frae morning sun till dine;
"""

CHOIR_STYLE = """X:1
T:Canon in Two Voices
C:after a round
M:4/4
L:1/4
Q:1/4=88
%%score (S A)
V:S clef=treble name="Soprano" snm="S"
V:A clef=treble name="Alto" snm="A"
K:G
[V:S] G A B G|G A B G|B c d2|B c d2|
w:Fre-re Jac-ques, fre-re Jac-ques, dor-mez vous? dor-mez vous?
[V:A] z4|z4|G A B G|G A B G|
w:Fre-re Jac-ques, fre-re Jac-ques,
V:S
d/e/d/c/ B G|d/e/d/c/ B G|G D G2|G D G2|]
V:A
B c d2|B c d2|d/e/d/c/ B G|d/e/d/c/ B G|]

X:2
T:Duet
M:3/4
L:1/8
V:1 name="Fiddle"
V:2 name="Cello" clef=bass
K:D
V:1
d2 f2 a2|g2 e2 c2|d6|]
V:2
D,4 F,2|G,4 A,2|D,6|]
"""

COLLECTIONS = {"session": SESSION_STYLE, "nottingham": NOTTINGHAM_STYLE, "archive": ARCHIVE_STYLE,
               "songbook": SONGBOOK_STYLE, "choir": CHOIR_STYLE}
# warning codes each collection's tunes must carry: what the checker ignored, and nothing else
EXPECTED_WARNINGS = {"session": [[], [], []], "nottingham": [[], []],
                     "archive": [["unknown_field"], ["unknown_field", "unknown_field"]],
                     "songbook": [["free_text"], []], "choir": [[], []]}


@pytest.mark.parametrize("name", sorted(COLLECTIONS))
def test_collections_in_the_styles_of_public_sources_pass_whole(name):
  collection = abc_checker.split_collection(COLLECTIONS[name])
  results = [abc_checker.check_tune(tune) for tune in collection.tunes]
  assert [r.message for r in results] == [""] * len(results)
  assert [codes(r) for r in results] == EXPECTED_WARNINGS[name]
  assert all(r.notes > 0 and r.bars > 0 for r in results)


def test_file_header_fields_reach_every_tune():
  collection = abc_checker.split_collection(SONGBOOK_STYLE)
  assert collection.file_header == ["M:3/4", "L:1/8", "O:Scotland"]
  assert collection.free_text_lines == 2  # the paragraph between the file header and X:1
  assert [abc_checker.check_tune(t).meter for t in collection.tunes] == ["3/4", "3/4"]
  assert all(t.splitlines()[:4] == [t.splitlines()[0], "M:3/4", "L:1/8", "O:Scotland"]
             for t in collection.tunes)
  # without the file header the songs would have no meter
  bare = [t.replace("M:3/4\n", "") for t in collection.tunes]
  assert [abc_checker.check_tune(t).meter for t in bare] == ["", ""]
  comments_only = abc_checker.split_collection("% just comments\n\n" + SESSION_STYLE)
  assert comments_only.file_header == [] and comments_only.free_text_lines == 0
  assert comments_only.tunes == abc_checker.split_tunes(SESSION_STYLE)


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abc2midi not installed")
def test_checker_agrees_with_abc2midi_on_the_collections_and_on_defects():
  tunes = [t for text in COLLECTIONS.values() for t in abc_checker.split_tunes(text)]
  verdicts = [(abc_checker.check_tune(t).valid, midi.abc2midi_check(t)) for t in tunes]
  assert [(valid, cross.ok, cross.errors) for valid, cross in verdicts] == [
      (True, True, [])] * len(tunes)
  for reason in ("header_after_K", "unclosed_chord", "missing_K", "misplaced_field",
                 "tokenize_error", "bad_key"):
    cross = midi.abc2midi_check(INVALID_TUNES[reason])
    assert cross.ok is False and cross.errors, (reason, cross)

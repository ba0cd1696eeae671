"""ABC text rules and the character vocabulary."""

import numpy as np
import pytest

from abcjax.data import abc_text
from abcjax.data.abc_text import UNK_CHAR
from abcjax.data.vocab import EOT, UNK, Vocab

FILE = (
    "%abc-2.1\n"
    "% a file header comment\n"
    "I:linebreak $\n"
    "\n"
    "X:1\n"
    "T:First % a trailing comment\n"
    "%%MIDI program 1\n"
    "M:4/4\t \n"
    "\n"
    "   \n"
    "K:G\r\n"
    "\tabc d2|\\% not a comment   \n"
    "% full-line comment\n"
    "\n"
    "X:2\n"
    "T:Second, no key\n"
    "abc|\n"
    "X:3\n"
    "T:Third\n"
    "K:D\n"
    "def|]"
)


def test_split_tunes_at_x_lines_keeps_preamble_apart():
  preamble, tunes = abc_text.split_at_x_lines(FILE)
  assert preamble == "%abc-2.1\n% a file header comment\nI:linebreak $\n\n"
  assert [t.split("\n", 1)[0] for t in tunes] == ["X:1", "X:2", "X:3"]
  assert "".join(tunes) == FILE[len(preamble):].replace("\r\n", "\n")


def test_split_tunes_without_x_line():
  assert abc_text.split_at_x_lines("T:loose\nK:C\nabc\n") == ("T:loose\nK:C\nabc\n", [])
  # "X:" only counts at the start of a line.
  assert abc_text.split_at_x_lines("T: see X:1\n")[1] == []


def test_clean_tune_rules():
  _, tunes = abc_text.split_at_x_lines(FILE)
  first, reason = abc_text.clean_tune(tunes[0])
  assert reason is None
  assert first == "X:1\nT:First\nM:4/4\nK:G\n abc d2|\\% not a comment\n"
  assert abc_text.clean_tune(tunes[1]) == (None, "no_K_header")
  third, _ = abc_text.clean_tune(tunes[2])
  assert third == "X:3\nT:Third\nK:D\ndef|]\n"  # a missing final newline is added


def test_clean_tune_never_leaves_blank_or_trailing_space():
  tune, _ = abc_text.clean_tune("X:1\n \t\nK:C  \n%%score 1\n\n\nabc \t\n")
  assert tune == "X:1\nK:C\nabc\n"
  assert all(line and line == line.rstrip() for line in tune[:-1].split("\n"))


def test_k_header_must_start_a_line():
  assert abc_text.clean_tune("X:1\nT:key K:G\nabc\n") == (None, "no_K_header")
  assert abc_text.clean_tune("X:1\n%K:G\nabc\n") == (None, "no_K_header")  # commented out


def test_char_policy_replaces_and_counts():
  tune, replaced = abc_text.apply_char_policy("X:1\nT:Sch\xf6n\x81\u2019\nK:C\nabc\n")
  assert tune == f"X:1\nT:Sch{UNK_CHAR}n{UNK_CHAR * 2}\nK:C\nabc\n"
  assert replaced == {"\xf6": 1, "\x81": 1, "\u2019": 1}
  ascii_tune = "".join(chr(c) for c in range(0x20, 0x7F)) + "\n"
  assert abc_text.apply_char_policy(ascii_tune) == (ascii_tune, {})
  assert not abc_text.body_has_unk(tune)
  assert abc_text.body_has_unk(abc_text.apply_char_policy("X:1\nK:C\na\x81b\n")[0])


def test_decode_bytes():
  assert abc_text.decode_bytes(b"X:1\x00K:C").reason == "binary"
  assert abc_text.decode_bytes(b"").reason == "empty_file"
  assert abc_text.decode_bytes(b" \n\n").reason == "empty_file"
  utf8 = abc_text.decode_bytes("T:Sch\xf6n\n".encode())
  assert (utf8.text, utf8.reason) == ("T:Sch\xf6n\n", None)
  latin1 = abc_text.decode_bytes("T:Sch\xf6n\n".encode("latin-1"))
  assert (latin1.text, latin1.reason) == ("T:Sch\xf6n\n", "decoded_latin1")


def test_join_and_parse_tunes_are_inverse():
  tunes = ["X:1\nK:C\nabc\n", "X:2\nK:G\nd\n"]
  text = abc_text.join_tunes(tunes)
  assert text == "X:1\nK:C\nabc\n\nX:2\nK:G\nd\n\n"
  assert abc_text.parse_tunes(text) == tunes
  assert abc_text.parse_tunes("") == []


def test_vocab_build_sorted_with_specials_first():
  vocab = Vocab.build(["X:1\nK:C\n", f"ba{UNK_CHAR}"])
  assert vocab.id_to_token[:2] == [EOT, UNK]
  assert (vocab.eot_id, vocab.unk_id) == (0, 1)
  assert vocab.id_to_token[2:] == sorted("X:1\nKCba")
  assert UNK_CHAR not in vocab.token_to_id
  assert len(vocab) == 2 + len(set("X:1\nKCba"))


def test_vocab_round_trip_with_eot_and_unk():
  tunes = ["X:1\nK:C\nabc|\n", "X:2\nK:G\nG2|\n"]
  vocab = Vocab.build(tunes)
  ids = vocab.encode(tunes[0])
  assert ids.dtype == np.int32 and len(ids) == len(tunes[0])
  assert vocab.decode(ids) == tunes[0]
  stream = vocab.encode_tunes(tunes)
  assert stream.dtype == np.int32
  assert list(np.flatnonzero(stream == vocab.eot_id)) == [len(tunes[0]), len(stream) - 1]
  assert vocab.decode(stream) == abc_text.join_tunes(tunes)
  # Unknown characters (never seen, or beyond the lookup table) become UNK and decode as U+FFFD.
  unknown = vocab.encode("a~\U0001F3B5")
  assert list(unknown[1:]) == [vocab.unk_id, vocab.unk_id]
  assert vocab.decode(unknown) == f"a{UNK_CHAR}{UNK_CHAR}"
  with pytest.raises(ValueError):
    vocab.decode([len(vocab)])


def test_vocab_save_load(tmp_path):
  vocab = Vocab.build(["X:1\nK:C\nabc\n"])
  vocab.save(tmp_path / "vocab.json")
  loaded = Vocab.load(tmp_path / "vocab.json")
  assert loaded == vocab and loaded.token_to_id == vocab.token_to_id
  assert loaded.decode(loaded.encode("K:C\n")) == "K:C\n"

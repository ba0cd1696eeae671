"""Pure text rules for ABC corpora: decoding, splitting into tunes, cleaning, character policy.

Nothing here touches the file system; `sources.py` reads files and `corpus.py` assembles them.

Character policy (applied by `apply_char_policy`, after cleaning):
  * kept as is: printable ASCII (0x20-0x7E) and "\n";
  * a tab becomes one space (tabs only occur as indentation in music21's corpus);
  * every other character (accented letters in titles, the C1 control bytes of mis-encoded Essen
    files, typographic quotes, ...) becomes UNK_CHAR (U+FFFD), which the vocabulary maps to the UNK
    token. Writing U+FFFD into the .txt files keeps `decode(encode(text)) == text` exact.
"""

from __future__ import annotations

import codecs
import collections
import dataclasses
import re

UNK_CHAR = "\ufffd"  # surface form of the UNK token in the .txt files

_X_LINE = re.compile(r"^X:", re.MULTILINE)
_K_LINE = re.compile(r"^K:", re.MULTILINE)
# A comment starts at an unescaped "%" and runs to the end of the line ("\%" is a literal percent).
_COMMENT = re.compile(r"(?<!\\)%.*")  # "." stops at "\n"
_DISALLOWED = re.compile(r"[^\x20-\x7e\n]")


@dataclasses.dataclass(frozen=True)
class Decoded:
  text: str | None  # None when the bytes are rejected
  reason: str | None = None  # rejection reason, or "decoded_latin1" for a kept fallback decode
  detail: str = ""


def decode_bytes(data: bytes) -> Decoded:
  """Decodes a file's bytes; rejects binary and empty files, falls back to latin-1 for non-UTF-8.

  latin-1 never fails, so a non-UTF-8 file is kept and flagged ("decoded_latin1") rather than lost:
  midi2abc copies MIDI track names byte for byte, and a stray latin-1 byte in a title should not cost
  the whole tune. The resulting non-ASCII characters then go through the character policy.
  """
  for bom, encoding in _UNICODE_BOMS:  # UTF-16/32 text has NUL bytes but is not binary
    if data.startswith(bom):
      try:
        return _decoded(data.decode(encoding))
      except UnicodeDecodeError as e:
        return Decoded(None, "binary", f"starts like {encoding} but is not: {e.reason}")
  if b"\0" in data:
    return Decoded(None, "binary", f"NUL byte at offset {data.index(0)}")
  data = data.removeprefix(codecs.BOM_UTF8)  # also when the rest is not UTF-8 (latin-1 below)
  if not data.strip():
    return Decoded(None, "empty_file", f"{len(data)} bytes, no text")
  try:
    return _decoded(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    return Decoded(data.decode("latin-1"), "decoded_latin1", f"invalid UTF-8 at byte {e.start}")


# Byte order marks, longest first (UTF-32 LE starts with UTF-16 LE's mark).
_UNICODE_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                 (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decoded(text: str) -> Decoded:
  # A byte order mark (U+FEFF) is encoding, not text: at the start of a file it would hide the
  # first X: line, and files joined with `cat` carry one in the middle.
  text = text.replace("\ufeff", "")
  if not text.strip():
    return Decoded(None, "empty_file", "no text")
  return Decoded(text)


def normalize_newlines(text: str) -> str:
  # str.splitlines() would also split on \x1c-\x1e, \x85 and other control characters that occur
  # inside mis-encoded titles, so only real line breaks are normalised here.
  return text.replace("\r\n", "\n").replace("\r", "\n")


def split_at_x_lines(text: str) -> tuple[str, list[str]]:
  """Splits a file's text at lines starting with "X:". Returns (preamble, raw tunes).

  The preamble (anything before the first X: line, e.g. a file header) is not part of any tune.
  A tune runs up to the next X: line, so free text between tunes stays with the tune before it.
  """
  text = normalize_newlines(text)
  starts = [m.start() for m in _X_LINE.finditer(text)]
  if not starts:
    return text, []
  bounds = starts + [len(text)]
  return text[: starts[0]], [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def strip_comment(line: str) -> str:
  return _COMMENT.sub("", line)


def clean_tune(raw: str) -> tuple[str | None, str | None]:
  """Cleans one raw tune. Returns (tune, None) or (None, reject_reason).

  Rules: drop comments (whole "%" lines, "%%" directives, and the "% ..." tail of a line), turn
  tabs into spaces, strip trailing whitespace, drop lines left empty or whitespace-only, and reject
  the tune if no line starts with "K:". The result is a series of lines each ending in "\\n".
  """
  text = _COMMENT.sub("", normalize_newlines(raw)).replace("\t", " ")
  tune = "".join(line + "\n" for line in map(str.rstrip, text.split("\n")) if line)
  if not _K_LINE.search(tune):
    return None, "no_K_header"
  return tune, None


def apply_char_policy(tune: str) -> tuple[str, collections.Counter]:
  """Replaces every character outside printable ASCII + "\\n" by UNK_CHAR; counts what it replaced."""
  replaced = collections.Counter(_DISALLOWED.findall(tune))
  if replaced:
    tune = _DISALLOWED.sub(UNK_CHAR, tune)
  return tune, replaced


def body_has_unk(tune: str) -> bool:
  """Whether UNK_CHAR occurs after the K: line (in the music rather than the header text)."""
  m = _K_LINE.search(tune)
  return m is not None and UNK_CHAR in tune[m.start():].split("\n", 1)[-1]


def join_tunes(tunes: list[str]) -> str:
  """Text form of a split: each tune followed by one blank line (mirrors the EOT token)."""
  return "".join(tune + "\n" for tune in tunes)


def parse_tunes(text: str) -> list[str]:
  """Inverse of `join_tunes` (cleaned tunes never contain an empty line)."""
  if not text:
    return []
  if not text.endswith("\n\n"):
    raise ValueError("tune text must end with a blank line (one tune + '\\n' per tune)")
  return [part + "\n" for part in text[:-2].split("\n\n")]

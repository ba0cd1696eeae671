"""Character vocabulary: id 0 = EOT (end of tune), id 1 = UNK, then the characters in sorted order."""

from __future__ import annotations

import json
import pathlib
from typing import Iterable, Sequence

import numpy as np

from abcjax.data.abc_text import UNK_CHAR

EOT = "<eot>"
UNK = "<unk>"
# What the specials decode to: EOT ends a tune with a blank line, UNK shows as U+FFFD.
_SPECIAL_TEXT = {EOT: "\n", UNK: UNK_CHAR}


class Vocab:
  """Maps characters to ids and back. Built from the train split, saved as vocab.json."""

  def __init__(self, id_to_token: Sequence[str]):
    if list(id_to_token[:2]) != [EOT, UNK]:
      raise ValueError(f"the first two tokens must be {EOT!r}, {UNK!r}; got {list(id_to_token[:2])}")
    chars = id_to_token[2:]
    if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars) or UNK_CHAR in chars:
      raise ValueError("tokens after the specials must be distinct single characters other than U+FFFD")
    self.id_to_token: list[str] = list(id_to_token)
    self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(self.id_to_token)}
    self.eot_id: int = 0
    self.unk_id: int = 1
    # Lookup table for encode: code point -> id (code points past the table are UNK).
    size = max((ord(c) for c in chars), default=0) + 1
    self._table = np.full(size, self.unk_id, np.int32)
    for c in chars:
      self._table[ord(c)] = self.token_to_id[c]
    self._decode_table = np.array([_SPECIAL_TEXT.get(t, t) for t in self.id_to_token], dtype=object)

  def __len__(self) -> int:
    return len(self.id_to_token)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocab) and self.id_to_token == other.id_to_token

  @classmethod
  def build(cls, texts: Iterable[str], *, min_count: int = 1) -> "Vocab":
    """Every character seen at least `min_count` times (U+FFFD excluded: it stands for UNK), sorted."""
    counts = np.zeros(0, np.int64)  # indexed by code point
    for text in texts:
      codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
      found = np.bincount(codes)
      if len(found) > len(counts):
        counts = np.pad(counts, (0, len(found) - len(counts)))
      counts[:len(found)] += found
    chars = [chr(c) for c in np.flatnonzero(counts >= max(min_count, 1)) if chr(c) != UNK_CHAR]
    return cls([EOT, UNK, *chars])

  def encode(self, text: str) -> np.ndarray:
    """One int32 id per character; characters not in the vocabulary map to unk_id."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    ids = np.full(codes.shape, self.unk_id, np.int32)
    known = codes < len(self._table)
    ids[known] = self._table[codes[known]]
    return ids

  def decode(self, ids) -> str:
    """Inverse of encode for known characters; EOT -> "\\n", UNK -> U+FFFD."""
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
      raise ValueError(f"ids must lie in [0, {len(self)}); got range [{ids.min()}, {ids.max()}]")
    return "".join(self._decode_table[ids.astype(np.int64)])

  def encode_tunes(self, tunes: Sequence[str]) -> np.ndarray:
    """Each tune's characters followed by one EOT: the token stream of a split."""
    lengths = np.fromiter((len(t) + 1 for t in tunes), np.int64, len(tunes))
    out = np.empty(int(lengths.sum()), np.int32)
    ends = np.cumsum(lengths)
    out[ends - 1] = self.eot_id
    body = np.ones(len(out), bool)
    body[ends - 1] = False
    out[body] = self.encode("".join(tunes))
    return out

  def save(self, path) -> None:
    payload = {
        "token_to_id": self.token_to_id,
        "id_to_token": self.id_to_token,
        "eot_id": self.eot_id,
        "unk_id": self.unk_id,
        "decoded_as": {EOT: "\n", UNK: UNK_CHAR},
    }
    pathlib.Path(path).write_text(json.dumps(payload, indent=1, ensure_ascii=True) + "\n")

  @classmethod
  def load(cls, path) -> "Vocab":
    payload = json.loads(pathlib.Path(path).read_text())
    vocab = cls(payload["id_to_token"])
    if vocab.token_to_id != payload["token_to_id"]:
      raise ValueError(f"{path}: token_to_id disagrees with id_to_token")
    return vocab

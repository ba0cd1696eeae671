"""How much of a sample is copied from the training text.

`TrainingIndex` holds a suffix array of the training text (built with numpy prefix doubling:
O(n log n), about 4.3M characters in seconds). The longest run a sample shares with the training
text is found by binary-searching each sample suffix in the suffix array and taking the longest
common prefix with its two neighbours.

Whole-line copying: a sample copies a line when one of its music lines, stripped of surrounding
whitespace, equals a training line. Only lines worth judging count: not field lines
(`X:`, `T:`, `M:`, `L:`, `K:` ... any `letter:`), not comments, and at least
`MIN_LINE_CHARS` characters long (short lines such as `G2 |` recur by chance).
"""

from __future__ import annotations

import re

import numpy as np

MIN_LINE_CHARS = 20
_FIELD_LINE = re.compile(r"^[A-Za-z+]:")


def judged_lines(text: str) -> list[str]:
  out = []
  for line in text.splitlines():
    line = line.strip()
    if len(line) >= MIN_LINE_CHARS and not _FIELD_LINE.match(line) and not line.startswith("%"):
      out.append(line)
  return out


def suffix_array(codes: np.ndarray) -> np.ndarray:
  """Suffix array of an integer sequence by prefix doubling."""
  n = len(codes)
  if n == 0:
    return np.zeros(0, dtype=np.int64)
  rank = np.unique(codes, return_inverse=True)[1].astype(np.int64)
  k = 1
  while True:
    second = np.full(n, -1, dtype=np.int64)
    second[:n - k] = rank[k:] if k < n else second[:0]
    key = rank * (n + 1) + (second + 1)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    new_rank = np.empty(n, dtype=np.int64)
    new_rank[order] = np.concatenate([[0], np.cumsum(sorted_key[1:] != sorted_key[:-1])])
    rank = new_rank
    if rank.max() == n - 1 or k >= n:
      return order
    k *= 2


class TrainingIndex:
  """Index of the training text for longest-shared-run and whole-line-copy queries."""

  def __init__(self, train_text: str):
    self.text = train_text
    codes = np.frombuffer(train_text.encode("utf-32-le"), dtype=np.uint32)
    self.sa = suffix_array(codes)
    self.lines = set(judged_lines(train_text))

  def _lcp(self, start: int, query: str) -> int:
    t = self.text[start:start + len(query)]
    n = 0
    for a, b in zip(t, query):
      if a != b:
        break
      n += 1
    return n

  def _longest_at(self, query: str) -> tuple[int, int]:
    """Longest prefix of query found in the text: (length, text position)."""
    lo, hi = 0, len(self.sa)
    m = len(query)
    while lo < hi:  # first suffix >= query (comparing only len(query) characters)
      mid = (lo + hi) // 2
      start = int(self.sa[mid])
      if self.text[start:start + m] < query:
        lo = mid + 1
      else:
        hi = mid
    best = (0, 0)
    for idx in (lo - 1, lo):
      if 0 <= idx < len(self.sa):
        start = int(self.sa[idx])
        best = max(best, (self._lcp(start, query), start))
    return best

  def longest_shared_run(self, sample: str) -> tuple[int, str]:
    """Length and text of the longest substring of sample that occurs in the training text."""
    best_len, best_at = 0, 0
    for i in range(len(sample)):
      if len(sample) - i <= best_len:
        break
      length, _ = self._longest_at(sample[i:])
      if length > best_len:
        best_len, best_at = length, i
    return best_len, sample[best_at:best_at + best_len]

  def copies_a_line(self, sample: str) -> bool:
    return any(line in self.lines for line in judged_lines(sample))

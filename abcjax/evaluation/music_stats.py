"""Musical statistics of tunes from the checker's own tokens (no music21: fast).

Distances are Jensen-Shannon distances: sqrt of the JS divergence with base-2 logs, so 0 means
the same distribution and 1 disjoint ones.
"""

from __future__ import annotations

import collections
import math
import re
from fractions import Fraction

from abcjax.evaluation import abc_checker

_MODE_LABELS = {"": "", "maj": "", "ion": "", "m": "m", "min": "m", "aeo": "m", "dor": "dor",
                "phr": "phr", "lyd": "lyd", "mix": "mix", "loc": "loc"}


def key_label(value: str) -> str:
  """K: value -> canonical label such as 'G', 'Am', 'Ddor' ('other' if unrecognized)."""
  m = re.match(r"\s*([A-G][#b]?)\s*([A-Za-z]*)", value.split("%")[0])
  if not m:
    return value.split("%")[0].strip() or "none"
  mode = m.group(2)
  mode = "m" if mode.lower() == "m" else mode[:3].lower()
  return m.group(1) + _MODE_LABELS.get(mode, "?" + mode)


def meter_label(value: str) -> str:
  return value.split("%")[0].strip() or "none"


def tune_stats(text: str) -> dict:
  """Pitch-class and note-length counts (notes only, lengths in quarter notes as 'n/d'), key and
  meter of one tune. Tunes the checker rejects only for bar lengths still count."""
  parsed = None
  for rate in (abc_checker.IRREGULAR_BAR_RATE, Fraction(10**9)):
    try:
      parsed = abc_checker.parse_tune(text, rate)
      break
    except abc_checker.AbcError as e:
      if e.code != "bar_duration":
        break
  pitch_classes = [0] * 12
  lengths: collections.Counter[str] = collections.Counter()
  if parsed is not None:
    for pc, length in parsed.events:
      if pc is None or length == 0:
        continue
      pitch_classes[pc] += 1
      lengths[str(length * 4)] += 1
  key = meter = ""
  header = parsed.header if parsed else {}
  if header.get("K"):
    key = key_label(header["K"][0])
  if parsed is not None:
    meter = meter_label(header["M"][0]) if header.get("M") else "none"
  return {"parsed": parsed is not None, "pitch_classes": pitch_classes,
          "note_lengths": dict(lengths), "key": key, "meter": meter}


def js_distance(p: dict | list, q: dict | list) -> float:
  """Jensen-Shannon distance (base 2) between two count vectors or count dicts."""
  if isinstance(p, list):
    p, q = dict(enumerate(p)), dict(enumerate(q))
  keys = set(p) | set(q)
  sp, sq = sum(p.values()), sum(q.values())
  if sp == 0 or sq == 0:
    return float("nan")
  div = 0.0
  for k in keys:
    a, b = p.get(k, 0) / sp, q.get(k, 0) / sq
    m = (a + b) / 2
    if a:
      div += 0.5 * a * math.log2(a / m)
    if b:
      div += 0.5 * b * math.log2(b / m)
  return math.sqrt(max(div, 0.0))


def _share(counter: collections.Counter) -> dict[str, float]:
  total = sum(counter.values())
  return {k: round(v / total, 4) for k, v in counter.most_common()} if total else {}


def aggregate(texts: list[str]) -> dict:
  pcs = [0] * 12
  lengths: collections.Counter[str] = collections.Counter()
  keys: collections.Counter[str] = collections.Counter()
  meters: collections.Counter[str] = collections.Counter()
  for text in texts:
    s = tune_stats(text)
    pcs = [a + b for a, b in zip(pcs, s["pitch_classes"])]
    lengths.update(s["note_lengths"])
    if s["key"]:
      keys[s["key"]] += 1
    if s["meter"]:
      meters[s["meter"]] += 1
  return {"pitch_classes": pcs, "note_lengths": dict(lengths), "keys": keys, "meters": meters}


def compare(sample_texts: list[str], reference_texts: list[str]) -> dict:
  """Distances between the samples' and the reference tunes' statistics."""
  s, r = aggregate(sample_texts), aggregate(reference_texts)
  return {
      "distance": "Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint)",
      "pitch_class_js": js_distance(s["pitch_classes"], r["pitch_classes"]),
      "note_length_js": js_distance(s["note_lengths"], r["note_lengths"]),
      "key_js": js_distance(dict(s["keys"]), dict(r["keys"])),
      "meter_js": js_distance(dict(s["meters"]), dict(r["meters"])),
      "samples": {"tunes": len(sample_texts), "keys": _share(s["keys"]),
                  "meters": _share(s["meters"]),
                  "pitch_classes": s["pitch_classes"]},
      "reference": {"tunes": len(reference_texts), "keys": _share(r["keys"]),
                    "meters": _share(r["meters"]),
                    "pitch_classes": r["pitch_classes"]},
  }

"""Builds a prepared corpus folder from a source, and reads it back.

Folder layout (what `build_corpus` writes):
  train.txt val.txt test.txt   cleaned tunes, each followed by one blank line
  train.npy val.npy test.npy   uint16 token ids, each tune followed by EOT; decode(x.npy) == x.txt
  vocab.json                   built from the train split
  stats.json                   counts, rejects by reason, UNK characters, lengths, timing (written last)
  rejects.tsv                  one row per rejected file or tune (and per file decoded as latin-1)
  midi_abc_cache/              midi2abc results, for the midi_dir source only
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np

from abcjax.data import abc_text, sources
from abcjax.data.vocab import Vocab

SPLITS = ("train", "val", "test")
OUTPUT_FILES = ("train.txt", "val.txt", "test.txt", "train.npy", "val.npy", "test.npy",
                "vocab.json", "stats.json", "rejects.tsv")
# stats.json is written last, so its presence marks a finished build.
REQUIRED_FILES = ("vocab.json", "train.npy", "val.npy", "test.npy", "stats.json")
DATA_DIR_ENV = "ABCJAX_DATA_DIR"
TOKEN_DTYPE = np.uint16


def default_data_dir() -> pathlib.Path:
  """$ABCJAX_DATA_DIR if set, else ~/.cache/abcjax/music21."""
  env = os.environ.get(DATA_DIR_ENV)
  return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "abcjax" / "music21"


def _write_atomic(path: pathlib.Path, write) -> None:
  tmp = path.with_name(path.name + ".tmp")
  write(tmp)
  os.replace(tmp, path)


def _split_indices(n: int, fractions, seed: int) -> dict[str, np.ndarray]:
  """Disjoint, sorted tune indices per split, a pure function of (n, fractions, seed)."""
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
    raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1; got {fractions}")
  perm = np.random.default_rng(seed).permutation(n)
  n_val, n_test = round(fractions[1] * n), round(fractions[2] * n)
  parts = {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}
  # Each split keeps the source order, so the .txt files read like the input.
  return {name: np.sort(parts[name]) for name in SPLITS}


def _percentiles(lengths: list[int]) -> dict[str, float]:
  if not lengths:
    return {}
  p5, p50, p95 = np.percentile(lengths, [5, 50, 95])
  return {"p5": round(float(p5), 1), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
          "max": int(max(lengths)), "mean": round(float(np.mean(lengths)), 1)}


def _tsv_field(value) -> str:
  return " ".join(str(value).split("\t")).replace("\n", " ")


def _char_counts(counter: collections.Counter) -> dict[str, int]:
  # Keys are escaped ("\\x81", "\\u00e9") so stats.json shows control bytes legibly.
  return {ascii(c)[1:-1]: n for c, n in counter.most_common()}


def build_corpus(out_dir, *, source: str = "music21", input_dir=None, seed: int = 0,
                 dedup: bool = False, split_fractions=(0.98, 0.01, 0.01), workers: int | None = None,
                 timeout_s: float = 60.0, progress: bool = True,
                 max_files: int | None = None) -> dict:
  """Reads a source, cleans and splits its tunes, writes the corpus folder, returns the stats.

  Bad input files and tunes never stop the build: each is counted by reason in stats.json and
  listed in rejects.tsv. Exact duplicate tunes are counted always and dropped only with dedup=True.
  `max_files` keeps the first N input files (for quick runs and tests).
  """
  start = time.perf_counter()
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for name in OUTPUT_FILES:  # a failed rebuild must not leave old and new files mixed
    (out_dir / name).unlink(missing_ok=True)

  files, source_stats = sources.load_source(source, input_dir=input_dir, cache_root=out_dir,
                                            workers=workers, timeout_s=timeout_s,
                                            progress=progress, max_files=max_files)
  rejects: list[tuple[str, int, str, str]] = []
  file_reasons: collections.Counter = collections.Counter()
  tune_reasons: collections.Counter = collections.Counter()
  policy_unk: collections.Counter = collections.Counter()
  tunes: list[str] = []
  origins: list[tuple[str, int]] = []
  input_bytes = text_chars = tunes_found = latin1_files = preamble_files = 0
  for f in files:
    input_bytes += f.input_bytes
    if f.data is None:
      file_reasons[f.reason] += 1
      rejects.append((f.path, -1, f.reason, f.detail))
      continue
    decoded = abc_text.decode_bytes(f.data)
    if decoded.text is None:
      file_reasons[decoded.reason] += 1
      rejects.append((f.path, -1, decoded.reason, decoded.detail))
      continue
    if decoded.reason == "decoded_latin1":
      latin1_files += 1
      rejects.append((f.path, -1, "decoded_latin1", f"kept, not rejected: {decoded.detail}"))
    text_chars += len(decoded.text)
    preamble, raw_tunes = abc_text.split_tunes(decoded.text)
    if not raw_tunes:
      file_reasons["no_X_line"] += 1
      rejects.append((f.path, -1, "no_X_line", f"{len(decoded.text)} chars, no line starts with X:"))
      continue
    preamble_files += any(abc_text.strip_comment(line).strip() for line in preamble.split("\n"))
    for index, raw in enumerate(raw_tunes):
      tunes_found += 1
      tune, reason = abc_text.clean_tune(raw)
      if reason is not None:
        tune_reasons[reason] += 1
        rejects.append((f.path, index, reason, raw.split("\n", 1)[0][:80]))
        continue
      tune, replaced = abc_text.apply_char_policy(tune)
      policy_unk.update(replaced)
      tunes.append(tune)
      origins.append((f.path, index))

  first_seen: dict[str, int] = {}
  duplicates = []
  for i, tune in enumerate(tunes):
    if first_seen.setdefault(tune, i) != i:
      duplicates.append(i)
  without_x = {tune.split("\n", 1)[1] for tune in tunes}
  if dedup and duplicates:
    for i in duplicates:
      path, index = origins[i]
      first_path, first_index = origins[first_seen[tunes[i]]]
      rejects.append((path, index, "duplicate", f"same as {first_path} tune {first_index}"))
    tune_reasons["duplicate"] += len(duplicates)
    dropped = set(duplicates)
    tunes = [t for i, t in enumerate(tunes) if i not in dropped]

  _write_atomic(out_dir / "rejects.tsv", lambda p: p.write_text(
      "path\ttune_index\treason\tdetail\n"
      + "".join("\t".join(_tsv_field(v) for v in row) + "\n" for row in rejects), encoding="utf-8"))
  if not tunes:
    raise ValueError(f"no tune survived cleaning (files rejected: {dict(file_reasons)}, tunes "
                     f"rejected: {dict(tune_reasons)}); see {out_dir / 'rejects.tsv'}")

  split_tunes = {name: [tunes[i] for i in idx]
                 for name, idx in _split_indices(len(tunes), split_fractions, seed).items()}
  vocab = Vocab.build(split_tunes["train"])
  if len(vocab) > np.iinfo(TOKEN_DTYPE).max:
    raise ValueError(f"vocabulary of {len(vocab)} does not fit {TOKEN_DTYPE.__name__}")
  _write_atomic(out_dir / "vocab.json", vocab.save)
  per_split, unk_tokens, not_in_vocab = {}, {}, collections.Counter()
  for name, split in split_tunes.items():
    text = abc_text.join_tunes(split)
    ids = vocab.encode_tunes(split).astype(TOKEN_DTYPE)
    _write_atomic(out_dir / f"{name}.txt", lambda p: p.write_text(text, encoding="utf-8", newline=""))
    with open(out_dir / f"{name}.npy.tmp", "wb") as fh:
      np.save(fh, ids)
    os.replace(out_dir / f"{name}.npy.tmp", out_dir / f"{name}.npy")
    unk_tokens[name] = int(np.count_nonzero(ids == vocab.unk_id))
    not_in_vocab.update(text[i] for i in np.flatnonzero(ids == vocab.unk_id)
                        if text[i] != abc_text.UNK_CHAR)
    per_split[name] = {"tunes": len(split), "chars": len(text), "tokens": int(ids.size)}

  elapsed = time.perf_counter() - start
  stats = {
      "source": source,
      "input_dir": None if input_dir is None else str(input_dir),
      "source_details": source_stats,
      "files_read": len(files),
      "files_kept": len(files) - sum(file_reasons.values()),
      "files_rejected": dict(file_reasons),
      "files_decoded_latin1": latin1_files,
      "files_with_preamble": preamble_files,
      "input_bytes": input_bytes,
      "text_chars": text_chars,
      "tunes_found": tunes_found,
      "tunes_rejected": dict(tune_reasons),
      "tunes_kept": len(tunes),
      "exact_duplicates": len(duplicates),
      "duplicates_ignoring_X_line": len(origins) - len(without_x),
      "dedup": dedup,
      "splits": per_split,
      "split_fractions": list(split_fractions),
      "vocab_size": len(vocab),
      "unk": {
          "policy": "printable ASCII + newline kept, tab -> space, anything else -> UNK (U+FFFD in .txt)",
          "chars_replaced_by_policy": _char_counts(policy_unk),
          "chars_replaced_total": sum(policy_unk.values()),
          "tunes_with_unk_in_body": sum(abc_text.body_has_unk(t) for t in tunes),
          "val_test_chars_not_in_train_vocab": _char_counts(not_in_vocab),
          "unk_tokens_per_split": unk_tokens,
      },
      "tune_length_chars": _percentiles([len(t) for t in tunes]),
      "seed": seed,
      "elapsed_s": round(elapsed, 3),
      "mb_per_s": round(input_bytes / 1e6 / elapsed, 3),
  }
  # stats.json last: its presence marks a finished build.
  _write_atomic(out_dir / "stats.json", lambda p: p.write_text(json.dumps(stats, indent=1) + "\n"))
  return stats


def _split_path(data_dir, split: str, suffix: str) -> pathlib.Path:
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
  return pathlib.Path(data_dir) / f"{split}{suffix}"


def load_split(data_dir, split: str) -> np.ndarray:
  """The token ids of a split, memory-mapped (read-only)."""
  return np.load(_split_path(data_dir, split, ".npy"), mmap_mode="r")


def load_vocab(data_dir) -> Vocab:
  return Vocab.load(pathlib.Path(data_dir) / "vocab.json")


def load_tunes(data_dir, split: str) -> list[str]:
  """The cleaned tunes of a split, as written in <split>.txt."""
  return abc_text.parse_tunes(_split_path(data_dir, split, ".txt").read_text(encoding="utf-8"))


def _missing(data_dir: pathlib.Path) -> list[str]:
  return [name for name in REQUIRED_FILES if not (data_dir / name).is_file()]


def ensure_corpus(data_dir=None) -> pathlib.Path:
  """The folder of a prepared corpus, building the default music21 corpus on first use.

  data_dir None: the music21 corpus in default_data_dir(), built once into a temporary sibling and
  renamed into place, so an interrupted build never leaves a folder that looks complete.
  data_dir given: checked, never built.
  """
  if data_dir is not None:
    data_dir = pathlib.Path(data_dir)
    missing = _missing(data_dir)
    if missing:
      raise FileNotFoundError(
          f"{data_dir} is not a prepared corpus (missing {', '.join(missing)}). Build it with "
          f"`python -m experiments.prepare_data --out_dir={data_dir}` (add --source and --input_dir "
          "for your own data)."
      )
    return data_dir
  target = default_data_dir()
  if target.exists():
    missing = _missing(target)
    if missing:
      raise FileNotFoundError(
          f"{target} exists but is not a complete corpus (missing {', '.join(missing)}); delete it "
          "to rebuild it, or run `python -m experiments.prepare_data`.")
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.building-", dir=target.parent))
  try:
    build_corpus(tmp, source="music21", progress=False)
    try:
      os.rename(tmp, target)
    except OSError:
      if _missing(target):  # not another process finishing first: a real error
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return target

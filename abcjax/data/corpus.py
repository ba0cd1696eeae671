"""Builds a prepared corpus folder from a source, and reads it back.

Folder layout (what `build_corpus` writes):
  train.txt val.txt test.txt   cleaned tunes, each followed by one blank line
  train.npy val.npy test.npy   uint16 token ids, each tune followed by EOT; decode(x.npy) == x.txt,
                               except that a val/test character missing from the train vocabulary
                               is UNK in x.npy (stats.json: val_test_chars_not_in_train_vocab)
  vocab.json                   built from the train split
  stats.json                   counts, rejects by reason, UNK characters, lengths, timing (written last)
  rejects.tsv                  one row per rejected file or tune, plus "kept, not rejected" rows
                               for files decoded as latin-1 or with text before their first X:,
                               and for train tunes left without some transposed copy
  midi_abc_cache/              midi2abc results, for the midi_dir source only

Transposition (`transpose=`, prepare_data's --transpose): after the split, each train tune is
followed in train.txt by its copies moved by the given semitone shifts (`transpose.py`); val and
test stay as they are, so no copy of a val/test tune reaches train. A copy is skipped, and counted
by reason in stats.json ("transpose") and rejects.tsv ("transpose_<reason>"), when the tune cannot
be moved (K:none, K:HP, percussion, a key or accidental beyond ABC's range), and a train tune
gets no copies when it is a val/test tune in another key or octave (apart from its X: line; see
`transpose.canonical_form`). The vocabulary comes from the train split with its copies.
Without transposition, stats.json has no "transpose" entry and every file is as before.
"""

from __future__ import annotations

import array
import collections
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Iterator, Sequence

import numpy as np
import tqdm

from abcjax import atomic, checks
from abcjax.data import abc_text, sources, transpose as transposition
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


def _check_fractions(fractions) -> None:
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
    raise ValueError(f"split_fractions must be 3 non-negative numbers summing to 1; got {fractions}")


def _split_indices(n: int, fractions, seed: int,
                   groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Disjoint, sorted tune indices per split, a pure function of (n, fractions, seed, groups).

  val and test get round(fraction * n) tunes, and at least one when their fraction is positive
  (training evaluates on both), so a corpus of 50 tunes or fewer still has them. With `groups`
  (a group number per tune, numbered in order of first appearance), whole groups are split
  instead: the fractions then count groups, and a group's tunes share a split.
  """
  _check_fractions(fractions)
  n_units = n if groups is None else int(groups.max()) + 1 if n else 0
  perm = np.random.default_rng(seed).permutation(n_units)
  n_val, n_test = (max(round(f * n_units), 1) if f > 0 else 0 for f in fractions[1:])
  if n_val + n_test >= n_units:
    counted, unit = (f"{n} tunes", "tunes") if groups is None else (
        f"{n} tunes in {n_units} groups", "groups")
    raise ValueError(f"only {counted} survived cleaning: too few for a train split beside "
                     f"{n_val} val and {n_test} test {unit} (split_fractions {list(fractions)})")
  parts = {"val": perm[:n_val], "test": perm[n_val:n_val + n_test], "train": perm[n_val + n_test:]}
  if groups is not None:
    split_of_group = np.empty(n_units, np.int8)
    for k, name in enumerate(SPLITS):
      split_of_group[parts[name]] = k
    return {name: np.flatnonzero(split_of_group[groups] == k) for k, name in enumerate(SPLITS)}
  # Each split keeps the source order, so the .txt files read like the input.
  return {name: np.sort(parts[name]) for name in SPLITS}


def _percentiles(lengths: np.ndarray) -> dict[str, float]:
  if not len(lengths):
    return {}
  p5, p50, p95 = np.percentile(lengths, [5, 50, 95])
  return {"p5": round(float(p5), 1), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
          "max": int(np.max(lengths)), "mean": round(float(np.mean(lengths)), 1)}


def _tsv_field(value) -> str:
  return " ".join(str(value).split("\t")).replace("\n", " ")


def _char_counts(counter: collections.Counter) -> dict[str, int]:
  # Keys are escaped ("\\x81", "\\u00e9") so stats.json shows control bytes legibly.
  return {ascii(c)[1:-1]: n for c, n in counter.most_common()}


_MIDI_TITLE = re.compile(r"^T: from .*\n", re.MULTILINE)


def _music(tune: str, source: str) -> str:
  # From MIDI, midi2abc's "T: from <file>" title names the file: two copies of one MIDI file
  # are the same music, so duplicates are found without that line.
  return _MIDI_TITLE.sub("", tune) if source == "midi_dir" else tune


def _digest(text: str) -> bytes:
  # Duplicate detection keeps 16-byte digests, not tune texts (a collision needs ~2**64 tunes).
  return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def _first_copies(digests: bytearray) -> np.ndarray:
  """For each 16-byte digest, the index of the first one equal to it."""
  keys = np.frombuffer(digests, dtype=[("hi", "<u8"), ("lo", "<u8")])
  _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
  return first[inverse.reshape(-1)]


class _Spool:
  """The kept tunes, in source order, in one file on disk (UTF-8), readable back by index.

  The corpus is read from its source once; splitting, the vocabulary and encoding then read the
  tunes back from here in chunks, so memory holds a chunk, never the corpus.
  """

  CHUNK_CHARS = 1 << 22  # ~30 bytes of working memory per character of a chunk

  def __init__(self, path: pathlib.Path):
    self.path = path
    self._fh = open(path, "w+b")
    self.ends = array.array("q")  # byte offset where each tune ends

  def __len__(self) -> int:
    return len(self.ends)

  def append(self, tune: str) -> None:
    self._fh.write(tune.encode("utf-8"))
    self.ends.append(self._fh.tell())

  def chunks(self, indices: np.ndarray) -> Iterator[list[str]]:
    """The tunes at `indices` (ascending), as lists of about CHUNK_CHARS characters."""
    self._fh.flush()
    chunk, size = [], 0
    for i in indices:
      start = self.ends[i - 1] if i else 0
      self._fh.seek(start)
      chunk.append(self._fh.read(self.ends[i] - start).decode("utf-8"))
      size += len(chunk[-1])
      if size >= self.CHUNK_CHARS:
        yield chunk
        chunk, size = [], 0
    if chunk:
      yield chunk

  def close(self) -> None:
    self._fh.close()
    self.path.unlink(missing_ok=True)


class _Rejects:
  """rejects.tsv, written row by row as the build goes, renamed into place by `publish`."""

  def __init__(self, path: pathlib.Path):
    self.path, self.tmp = path, path.with_name(path.name + ".tmp")
    # A file name that is not UTF-8 (Python keeps its bytes as surrogates) is written escaped.
    self._fh = open(self.tmp, "w", encoding="utf-8", errors="backslashreplace")
    self._fh.write("path\ttune_index\treason\tdetail\n")

  def add(self, path: str, tune_index: int, reason: str, detail: str) -> None:
    self._fh.write("\t".join(_tsv_field(v) for v in (path, tune_index, reason, detail)) + "\n")

  def publish(self) -> None:
    self._fh.close()
    os.replace(self.tmp, self.path)

  def close(self) -> None:
    self._fh.close()
    self.tmp.unlink(missing_ok=True)


def _write_split(out_dir: pathlib.Path, name: str, chunks: Iterator[list[str]], n_tokens: int,
                 vocab: Vocab, progress: bool) -> tuple[int, collections.Counter]:
  """Writes <name>.txt and <name>.npy chunk by chunk. Returns (UNK tokens, chars not in vocab)."""
  txt_tmp, npy_tmp = out_dir / f"{name}.txt.tmp", out_dir / f"{name}.npy.tmp"
  unk_tokens, not_in_vocab, written = 0, collections.Counter(), 0
  bar = tqdm.tqdm(total=n_tokens, desc=f"writing {name}", unit="char", unit_scale=True,
                  disable=not progress)
  with bar, open(txt_tmp, "w", encoding="utf-8", newline="") as txt, open(npy_tmp, "wb") as npy:
    # The header np.save writes for a 1-D array of this length, then the data in pieces.
    disk_dtype = np.dtype(TOKEN_DTYPE).newbyteorder("<")
    np.lib.format.write_array_header_1_0(npy, {"descr": np.lib.format.dtype_to_descr(disk_dtype),
                                               "fortran_order": False, "shape": (n_tokens,)})
    for chunk in chunks:
      text = abc_text.join_tunes(chunk)
      ids = vocab.encode_tunes(chunk).astype(disk_dtype)
      txt.write(text)
      npy.write(ids.tobytes())
      written += ids.size
      bar.update(ids.size)
      unk = np.flatnonzero(ids == vocab.unk_id)
      unk_tokens += unk.size
      not_in_vocab.update(text[i] for i in unk if text[i] != abc_text.UNK_CHAR)
  if written != n_tokens:
    raise RuntimeError(f"{name}.npy: wrote {written} tokens, expected {n_tokens}")
  os.replace(txt_tmp, out_dir / f"{name}.txt")
  os.replace(npy_tmp, out_dir / f"{name}.npy")
  return unk_tokens, not_in_vocab


_MATCHES_HELD_OUT = transposition.TransposeError(
    "copy_matches_val_test", "the tune is a val/test tune in another key or octave")


def _key_free_digest(tune: str, source: str) -> bytes | None:
  """Digest of the tune in the key without accidentals, octaves and X: line left out (None when
  it has no key to move): equal for one melody written in two keys."""
  try:
    canonical = transposition.canonical_form(_music(tune, source))
  except transposition.TransposeError:
    return None
  return _digest(canonical.split("\n", 1)[1])


def _held_out_digests(spool: _Spool, indices: np.ndarray, source: str) -> set[bytes]:
  """`_key_free_digest` of each val/test tune that has a key (16 bytes each)."""
  digests = set()
  for chunk in spool.chunks(np.sort(indices)):
    digests.update(_key_free_digest(tune, source) for tune in chunk)
  digests.discard(None)
  return digests


def _add_transpositions(spool: _Spool, train_idx: np.ndarray, shifts: tuple[int, ...],
                        out: _Spool, rejects: _Rejects, forbidden: set[bytes], source: str,
                        origin, progress: bool) -> tuple[np.ndarray, dict]:
  """Spools each train tune followed by its transposed copies to `out`, in train order.

  A copy is left out when the tune cannot be moved to that shift. A tune gets no copies when it
  is a val/test tune in another key or octave (its `_key_free_digest` is in `forbidden`): the
  copies would repeat that val/test tune in every key, one of them its own. Such train tunes
  themselves stay, as without transposition, and are counted. Each tune missing a copy gets
  a rejects.tsv row per reason ("kept, not rejected"). Returns (chars per spooled tune, the
  stats.json "transpose" entry).
  """
  lengths = array.array("q")
  copies_added = tunes_transposed = held_out_in_other_key = 0
  copies_skipped, tunes_skipped = collections.Counter(), collections.Counter()
  bar = tqdm.tqdm(total=len(train_idx), desc="transposing", unit="tune", disable=not progress)
  positions = iter(train_idx)
  with bar:
    for chunk in spool.chunks(train_idx):
      for tune in chunk:
        i = next(positions)
        out.append(tune)
        lengths.append(len(tune))
        copies, errors = transposition.transpositions(tune, shifts)
        if copies and _key_free_digest(tune, source) in forbidden:
          held_out_in_other_key += 1
          errors = {s: _MATCHES_HELD_OUT for s in shifts}
          copies = {}
        missing = collections.defaultdict(list)  # reason -> [(shift, detail)]
        for shift in shifts:
          copy = copies.get(shift)
          if copy is not None:
            out.append(copy)
            lengths.append(len(copy))
          else:
            missing[errors[shift].reason].append((shift, errors[shift].detail))
        added = len(shifts) - sum(map(len, missing.values()))
        copies_added += added
        tunes_transposed += added > 0
        path, tune_index = origin(i)
        for reason, where in missing.items():
          copies_skipped[reason] += len(where)
          tunes_skipped[reason] += 1
          rejects.add(path, tune_index, f"transpose_{reason}",
                      f"kept, not rejected: no copy at shift(s) "
                      f"{','.join(f'{s:+d}' for s, _ in where)}: {where[0][1]}")
        bar.update()
  stats = {
      "shifts": list(shifts),
      "train_tunes": len(train_idx),
      "tunes_transposed": tunes_transposed,
      "copies_added": copies_added,
      "copies_skipped": dict(copies_skipped),
      "tunes_skipped": dict(tunes_skipped),  # tunes missing a copy, by reason
      # Train tunes that equal a val/test tune in another key or octave (or in its own: exact
      # duplicates across splits), kept as without transposition; their copies are left out.
      "train_tunes_matching_val_test": held_out_in_other_key,
  }
  return np.frombuffer(lengths, np.int64), stats


def build_corpus(out_dir, *, source: str = "music21", input_dir=None, input_file=None,
                 seed: int = 0, dedup: bool = False, split_fractions=(0.98, 0.01, 0.01),
                 workers: int | None = None, timeout_s: float = 60.0, progress: bool = True,
                 max_files: int | None = None, transpose: Sequence[int] = ()) -> dict:
  """Reads a source, cleans and splits its tunes, writes the corpus folder, returns the stats.

  Bad input files and tunes never stop the build: each is counted by reason in stats.json and
  listed in rejects.tsv. Exact duplicate tunes are counted always and dropped only with dedup=True.
  `max_files` keeps the first N input files (for quick runs and tests; for thesession, N records).
  `input_file` is The Session's tunes file (source "thesession"). `transpose`: semitone shifts
  whose copies of each train tune join the train split (`transpose.parse_shifts` reads the flag;
  `transpose.ALL_SHIFTS` gives all 12 keys); () for none.

  Memory does not grow with the corpus's text: files stream from the source one at a time, kept
  tunes are spooled to a file in out_dir, and the splits are written from there in chunks. Per
  kept tune ~60 bytes stay in memory (offset, length, origin, two digests for duplicates; ~180
  while they are sorted at the end), plus 16 bytes per train tune or copy when transposing.
  Disk: the spool (about the corpus size) until the build ends, and with transposition a second
  one for the train split with its copies, beside the outputs (text + 2 bytes per token).
  """
  start = time.perf_counter()
  out_dir = pathlib.Path(out_dir)
  _check_fractions(split_fractions)
  if source == "music21" and input_dir is not None:
    raise ValueError(f"--input_dir={input_dir} is given but --source=music21 reads music21's own "
                     "files; add --source=abc_dir or --source=midi_dir to read that folder")
  if source == "thesession" and input_dir is not None:
    raise ValueError(f"--input_dir={input_dir} is given but --source=thesession reads one file: "
                     "give The Session's tunes file as --input_file")
  if source != "thesession" and input_file is not None:
    raise ValueError(f"--input_file={input_file} is given but only --source=thesession reads a "
                     f"file (--source={source})")
  shifts = tuple(transpose)
  if (not all(isinstance(x, (int, np.integer)) and x != 0 for x in shifts)
      or len(set(shifts)) != len(shifts)):
    raise ValueError(f"--transpose={','.join(map(str, shifts))}: shifts must be distinct, "
                     "non-zero whole semitones (the original is always kept)")
  shifts = tuple(sorted(int(x) for x in shifts))
  checks.require([
      ("max_files", max_files is None or max_files >= 1, "1 or more (None: every file)", max_files),
      ("workers", workers is None or workers >= 1, "1 or more (None: the CPU count)", workers),
      ("timeout_s", timeout_s > 0, "a positive number of seconds", timeout_s),
      ("seed", seed >= 0, "0 or more", seed)], prefix="--")
  if out_dir.exists() and not out_dir.is_dir():
    raise ValueError(f"--out_dir={out_dir} is a file; give a folder for the corpus")
  if input_dir is not None and out_dir.resolve() == pathlib.Path(input_dir).resolve():
    raise ValueError(f"--out_dir={out_dir} is the --input_dir: the corpus files (train.txt, ...) "
                     "would replace files of the same names there; give another folder")
  # Arguments are checked (source, folder, files, midi2abc) before an old corpus is removed.
  files, source_stats = sources.iter_source(source, input_dir=input_dir, input_file=input_file,
                                            cache_root=out_dir, workers=workers,
                                            timeout_s=timeout_s, progress=progress,
                                            max_files=max_files)
  out_dir.mkdir(parents=True, exist_ok=True)
  for name in OUTPUT_FILES:  # a failed rebuild must not leave old and new files mixed
    (out_dir / name).unlink(missing_ok=True)
  spool, rejects = _Spool(out_dir / ".tunes.spool"), _Rejects(out_dir / "rejects.tsv")
  train_spool = _Spool(out_dir / ".train.spool") if shifts else None
  try:
    return _build(out_dir, files, source_stats, spool, rejects, train_spool, start=start,
                  source=source, input_dir=input_dir, input_file=input_file, seed=seed,
                  dedup=dedup, split_fractions=split_fractions, shifts=shifts, progress=progress)
  finally:
    # Stops the source too: on Ctrl-C or an error, the MIDI route kills its running converters
    # and drops the queued files.
    files.close()
    spool.close()
    if train_spool is not None:
      train_spool.close()
    rejects.close()
    for name in OUTPUT_FILES:  # an interrupted build leaves no half-written file behind
      (out_dir / f"{name}.tmp").unlink(missing_ok=True)


def _build(out_dir: pathlib.Path, files: Iterator[sources.RawFile], source_stats: dict,
           spool: _Spool, rejects: _Rejects, train_spool: _Spool | None, *, start: float,
           source: str, input_dir, input_file, seed: int, dedup: bool, split_fractions,
           shifts: tuple[int, ...], progress: bool) -> dict:
  file_reasons: collections.Counter = collections.Counter()
  tune_reasons: collections.Counter = collections.Counter()
  policy_unk: collections.Counter = collections.Counter()
  # Per kept tune, in spool order: length, UNK in its music, and where it came from.
  lengths, body_unk = array.array("q"), array.array("b")
  origin_file, origin_tune, origin_paths = array.array("q"), array.array("q"), []
  # Per kept tune, its group's number when the source groups tunes (The Session: by tune_id).
  grouped = source in sources.GROUPED_SOURCES
  origin_group, group_numbers = array.array("q"), {}
  # 16-byte digests of each kept tune and of its text after the X: line, 32 bytes a tune.
  digests, digests_without_x = bytearray(), bytearray()
  files_read = input_bytes = text_chars = tunes_found = latin1_files = preamble_files = 0
  for f in files:
    files_read += 1
    input_bytes += f.input_bytes
    if f.data is None:
      file_reasons[f.reason] += 1
      rejects.add(f.path, -1, f.reason, f.detail)
      continue
    decoded = abc_text.decode_bytes(f.data)
    if decoded.text is None:
      file_reasons[decoded.reason] += 1
      rejects.add(f.path, -1, decoded.reason, decoded.detail)
      continue
    if decoded.reason == "decoded_latin1":
      latin1_files += 1
      rejects.add(f.path, -1, "decoded_latin1", f"kept, not rejected: {decoded.detail}")
    text_chars += len(decoded.text)
    preamble, raw_tunes = abc_text.split_at_x_lines(decoded.text)
    if not raw_tunes:
      file_reasons["no_X_line"] += 1
      rejects.add(f.path, -1, "no_X_line", f"{len(decoded.text)} chars, no line starts with X:")
      continue
    header = [line for line in preamble.split("\n") if abc_text.strip_comment(line).strip()]
    if header:
      preamble_files += 1
      rejects.add(f.path, -1, "preamble_dropped",
                  f"kept, not rejected: {len(header)} line(s) before the first X: line dropped, "
                  f"first: {header[0][:60]}")
    origin_paths.append(f.path)
    for index, raw in enumerate(raw_tunes):
      tunes_found += 1
      tune, reason = abc_text.clean_tune(raw)
      if reason is not None:
        tune_reasons[reason] += 1
        rejects.add(f.path, index, reason, raw.split("\n", 1)[0][:80])
        continue
      tune, replaced = abc_text.apply_char_policy(tune)
      policy_unk.update(replaced)
      music = _music(tune, source)
      digests += _digest(music)
      digests_without_x += _digest(music.split("\n", 1)[1])
      spool.append(tune)
      lengths.append(len(tune))
      body_unk.append(abc_text.body_has_unk(tune))
      origin_file.append(len(origin_paths) - 1)
      origin_tune.append(index)
      if grouped:  # a tune without a group is a group of its own
        group = f.group if f.group is not None else ("tune", len(spool))
        origin_group.append(group_numbers.setdefault(group, len(group_numbers)))

  first = _first_copies(digests)
  duplicates = [(int(i), int(first[i])) for i in np.flatnonzero(first != np.arange(len(first)))]
  keep = np.ones(len(spool), bool)
  if dedup and duplicates:
    for i, original in duplicates:
      rejects.add(origin_paths[origin_file[i]], origin_tune[i], "duplicate",
                  f"same as {origin_paths[origin_file[original]]} tune {origin_tune[original]}")
      keep[i] = False
    tune_reasons["duplicate"] += len(duplicates)
  if not keep.any():
    rejects.publish()
    raise ValueError(f"no tune survived cleaning (files rejected: {dict(file_reasons)}, tunes "
                     f"rejected: {dict(tune_reasons)}); see {out_dir / 'rejects.tsv'}")

  kept = np.flatnonzero(keep)
  lengths_np = np.frombuffer(lengths, np.int64) if lengths else np.zeros(0, np.int64)
  groups = np.frombuffer(origin_group, np.int64)[kept] if grouped else None
  if groups is not None:  # renumbered in order of first appearance among the kept tunes
    groups = np.unique(groups, return_inverse=True)[1].reshape(-1)
  try:
    split_idx = {name: kept[idx] for name, idx in
                 _split_indices(len(kept), split_fractions, seed, groups).items()}
  except ValueError:  # too few tunes: rejects.tsv shows why
    rejects.publish()
    raise
  if not shifts:
    rejects.publish()
  # Each split's tunes in order as (spool, indices, chars per tune).
  sources_of = {name: (spool, idx, lengths_np[idx]) for name, idx in split_idx.items()}
  augment_stats = None
  if shifts:
    forbidden = _held_out_digests(spool, np.concatenate([split_idx["val"], split_idx["test"]]),
                                  source)
    train_lengths, augment_stats = _add_transpositions(
        spool, split_idx["train"], shifts, train_spool, rejects, forbidden, source,
        lambda i: (origin_paths[origin_file[i]], origin_tune[i]), progress)
    rejects.publish()
    sources_of["train"] = (train_spool, np.arange(len(train_spool)), train_lengths)
  train_store, train_idx, _ = sources_of["train"]
  vocab = Vocab.build("".join(chunk) for chunk in train_store.chunks(train_idx))
  if len(vocab) > np.iinfo(TOKEN_DTYPE).max:
    raise ValueError(f"vocabulary of {len(vocab)} does not fit {TOKEN_DTYPE.__name__}")
  atomic.replace(out_dir / "vocab.json", vocab.save)
  per_split, unk_tokens, not_in_vocab = {}, {}, collections.Counter()
  for name, (store, idx, split_lengths) in sources_of.items():
    # Each tune and its separator: "\n" in the text, EOT in the tokens.
    n_tokens = int(split_lengths.sum()) + len(idx)
    unk_tokens[name], missing = _write_split(out_dir, name, store.chunks(idx), n_tokens, vocab,
                                             progress)
    not_in_vocab.update(missing)
    per_split[name] = {"tunes": len(idx), "chars": n_tokens, "tokens": n_tokens}

  elapsed = time.perf_counter() - start
  stats = {
      "source": source,
      "input_dir": None if input_dir is None else str(input_dir),
      **({"input_file": str(input_file)} if input_file is not None else {}),
      "source_details": source_stats,
      "files_read": files_read,
      "files_kept": files_read - sum(file_reasons.values()),
      "files_rejected": dict(file_reasons),
      "files_decoded_latin1": latin1_files,
      "files_with_preamble": preamble_files,
      "input_bytes": input_bytes,
      "text_chars": text_chars,
      "tunes_found": tunes_found,
      "tunes_rejected": dict(tune_reasons),
      "tunes_kept": int(keep.sum()),
      "exact_duplicates": len(duplicates),
      "duplicates_ignoring_X_line": int(np.count_nonzero(
          _first_copies(digests_without_x) != np.arange(len(spool)))),
      "dedup": dedup,
      "splits": per_split,
      "split_fractions": list(split_fractions),
      **({"split_by": "group"} if grouped else {}),
      **({"transpose": augment_stats} if shifts else {}),
      "vocab_size": len(vocab),
      "unk": {
          "policy": "printable ASCII + newline kept, tab -> space, anything else -> UNK (U+FFFD in .txt)",
          "chars_replaced_by_policy": _char_counts(policy_unk),
          "chars_replaced_total": sum(policy_unk.values()),
          "tunes_with_unk_in_body": int(np.frombuffer(body_unk, np.int8)[keep].sum()),
          "val_test_chars_not_in_train_vocab": _char_counts(not_in_vocab),
          "unk_tokens_per_split": unk_tokens,
      },
      "tune_length_chars": _percentiles(lengths_np[keep]),
      "seed": seed,
      "elapsed_s": round(elapsed, 3),
      "mb_per_s": round(input_bytes / 1e6 / elapsed, 3),
  }
  # stats.json last: its presence marks a finished build.
  atomic.write_text(out_dir / "stats.json", json.dumps(stats, indent=1) + "\n")
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


def _tune_around(f, offset: int, size: int, limit: int,
                 step: int = 1 << 16) -> tuple[int, int] | None:
  """Byte range [start, end) of the tune (with its blank line) holding `offset` in a split's text
  file (the next one when `offset` is a blank line), or None when it is longer than `limit` bytes
  or there is none (the file's last blank line)."""
  start, stop = 0, offset + 1
  while True:  # back to the blank line before the tune, or the file's start
    lo = max(0, stop - step)
    f.seek(lo)
    k = f.read(stop - lo).rfind(b"\n\n")
    if k >= 0:
      start = lo + k + 2
      break
    if lo == 0:
      break
    if offset - lo > limit:
      return None
    stop = lo + 1  # one byte of overlap: a "\n\n" across two reads
  f.seek(start)
  seen = b""
  while len(seen) <= limit:  # forward to the blank line that ends it
    data = f.read(step)
    if not data:
      return (start, size) if seen else None
    k = (seen[-1:] + data).find(b"\n\n")
    if k >= 0:
      end = start + len(seen) - len(seen[-1:]) + k + 2
      return (start, end) if end - start <= limit else None
    seen += data
  return None


def read_tune_text(path, max_chars: int = 0, *, seed: int = 0) -> tuple[str, int]:
  """Whole tunes of a split's text file (`join_tunes` form), at most about `max_chars` of them.

  Returns (text, size of the whole file in bytes). A file within the limit (or max_chars 0) is
  read whole. A larger one (a Lakh-scale train.txt: ~40 GB) gives the tunes holding seeded random
  characters of the file, in file order, without repeats, until they add up to max_chars: a tune
  is drawn with probability proportional to its length (tunes longer than max_chars are never
  drawn). Evaluation tools that index or sample training text so stay within memory.
  """
  path = pathlib.Path(path)
  size = path.stat().st_size
  if not max_chars or size <= max_chars:
    return path.read_text(encoding="utf-8"), size
  rng = np.random.default_rng(seed)
  ranges: dict[int, int] = {}
  total, misses = 0, 0
  with open(path, "rb") as f:
    # Misses (a tune drawn before, or one too long) end the draw once they dominate it.
    while total < max_chars and misses < 1000:
      found = _tune_around(f, int(rng.integers(size)), size, max_chars)
      if found is None or found[0] in ranges:
        misses += 1
        continue
      ranges[found[0]] = found[1]
      total += found[1] - found[0]
    parts = []
    for start in sorted(ranges):
      f.seek(start)
      parts.append(f.read(ranges[start] - start).decode("utf-8"))
  return "".join(parts), size


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

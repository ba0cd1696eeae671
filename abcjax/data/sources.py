"""Corpus sources: music21's embedded ABC files, a folder of .abc files, a folder of MIDI files,
The Session's data dump (`thesession.py`).

Each source yields `RawFile`s in a fixed order (sorted paths, or file order): the ABC bytes of one
input file (for The Session, of one tune setting), or why there are none. They are produced one at
a time, so a corpus far larger than memory (the Lakh MIDI Dataset converts to ~41G characters)
streams through. Decoding and cleaning happen later, in
`corpus.py`, identically for every source.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import threading
from typing import Iterator

import tqdm

from abcjax.data import thesession

SOURCES = ("music21", "abc_dir", "midi_dir", "thesession")
GROUPED_SOURCES = ("thesession",)  # whose RawFile.group keeps related tunes in one split
ABC_SUFFIXES = (".abc",)
MIDI_SUFFIXES = (".mid", ".midi")
# The converter binary; tests point this at a stand-in script.
MIDI2ABC = "midi2abc"
MIDI2ABC_ARGS = ("-f",)
MIDI_CACHE_DIR = "midi_abc_cache"


@dataclasses.dataclass(frozen=True)
class RawFile:
  path: str  # relative to the source's root folder (what rejects.tsv shows)
  data: bytes | None  # ABC bytes; None when the file could not be read or converted
  reason: str | None = None  # why data is None
  detail: str = ""
  input_bytes: int = 0  # size of the input file (the .mid for MIDI)
  group: str | None = None  # tunes of one group share a split (The Session: a tune's settings)


def _input_dir_error(input_dir, message: str) -> ValueError:
  return ValueError(f"--input_dir={input_dir}: {message}")


def find_files(input_dir, suffixes: tuple[str, ...]) -> list[pathlib.Path]:
  """Every file under input_dir (recursively) whose suffix is in `suffixes`, case-insensitive, sorted."""
  if input_dir is None:
    raise ValueError("--input_dir is required for --source=abc_dir and --source=midi_dir")
  root = pathlib.Path(input_dir)
  if not root.is_dir():
    raise _input_dir_error(input_dir, "folder does not exist or is not a folder")
  paths, unlistable = _walk(root, suffixes)
  if root in unlistable:
    raise _input_dir_error(input_dir, "this folder cannot be listed (permissions?)")
  if not paths:
    where = (f"in the folders that could be listed; these could not: "
             f"{sorted(map(str, unlistable))}" if unlistable else "under this folder")
    raise _input_dir_error(input_dir, f"no files ending in {'/'.join(suffixes)} {where}")
  return sorted(paths + unlistable)  # An unlistable folder is then rejected as 'unreadable'.


def _walk(root: pathlib.Path,
          suffixes: tuple[str, ...]) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
  """(files under root with one of the suffixes, folders that could not be listed).

  Links to folders are followed, each real folder once, in sorted order whatever the file
  system's listing order (so the corpus does not depend on it); a link to the root or to one of
  its ancestors is a loop and is not followed. Regular files only (a FIFO named x.abc would hang
  the read), plus links to files that are gone, which reading rejects as 'unreadable'.
  """
  root_real = os.path.realpath(root)
  seen, files, unlistable = set(), [], []
  for folder, subfolders, names in os.walk(root, followlinks=True,
                                           onerror=lambda e: unlistable.append(pathlib.Path(e.filename))):
    real = os.path.realpath(folder)
    if real in seen or (folder != str(root) and
                        (root_real == real or root_real.startswith(real.rstrip(os.sep) + os.sep))):
      subfolders[:] = []  # A second way into one folder, or a way back up the tree.
      continue
    seen.add(real)
    subfolders.sort()
    for name in names:
      path = os.path.join(folder, name)
      if pathlib.PurePath(name).suffix.lower() in suffixes and (
          os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))):
        files.append(pathlib.Path(path))
  return files, unlistable


def music21_paths() -> tuple[pathlib.Path, list[pathlib.Path]]:
  """music21's embedded ABC files (1,146 in music21 10.5) and the folder they share."""
  import music21  # Imported lazily: it takes a second and only this source needs it.

  paths = sorted(pathlib.Path(p) for p in music21.corpus.getPaths(fileExtensions=("abc",)))
  if not paths:
    raise RuntimeError("music21.corpus.getPaths(fileExtensions=('abc',)) found no files")
  return pathlib.Path(os.path.commonpath(paths)), paths


def iter_files(root: pathlib.Path, paths: list[pathlib.Path],
               progress: bool = False) -> Iterator[RawFile]:
  """Reads each file in turn: one file's bytes in memory at a time."""
  for path in tqdm.tqdm(paths, desc="reading", unit="file", disable=not progress):
    rel = path.relative_to(root).as_posix()
    try:
      data = path.read_bytes()
    except OSError as e:  # permission denied, vanished file, I/O error
      yield RawFile(rel, None, "unreadable", f"{type(e).__name__}: {e.strerror or e}")
      continue
    yield RawFile(rel, data, input_bytes=len(data))


def midi2abc_binary() -> str:
  exe = shutil.which(MIDI2ABC)
  if exe is None:
    raise FileNotFoundError(
        f"the MIDI source needs the {MIDI2ABC!r} program, which is not on PATH. Install it with "
        "`sudo apt-get install abcmidi` (Debian/Ubuntu), or `pip install symusic` and put the "
        "bundled symusic/bin/midi2abc on PATH."
    )
  return exe


def _midi2abc_path(rel: str) -> str:
  """A relative path as midi2abc is given it: a name starting with "-" would be read as an option."""
  return f"./{rel}" if rel.startswith("-") else rel


class _MidiConverter:
  """Runs midi2abc on one file at a time per thread, with a per-file timeout and a result cache.

  Threads suffice: each conversion is a separate midi2abc process, so the files convert in parallel
  while the Python side only waits. The cache makes an interrupted run resumable: each finished file
  (success or failure) is written atomically, keyed by relative path, size and mtime.
  """

  def __init__(self, exe: str, root: pathlib.Path, cache_dir: pathlib.Path, timeout_s: float):
    self.exe, self.root, self.cache_dir, self.timeout_s = exe, root, cache_dir, timeout_s
    self.cache_dir.mkdir(parents=True, exist_ok=True)
    self._live: set[subprocess.Popen] = set()
    self._lock = threading.Lock()
    self.runs = 0
    self.cache_hits = 0
    self.stopping = False  # set on interrupt: results of killed runs must not be cached

  def _key(self, rel: str, st: os.stat_result) -> str:
    # The path as midi2abc is given it (a key of its own for ./-x.mid, which used to fail), its
    # bytes kept when the name is not UTF-8.
    text = "\0".join([_midi2abc_path(rel), str(st.st_size), str(st.st_mtime_ns), *MIDI2ABC_ARGS])
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()

  def _cached(self, key: str, rel: str, size: int) -> RawFile | None:
    ok, fail = self.cache_dir / f"{key}.abc", self.cache_dir / f"{key}.fail.json"
    if ok.exists():
      return RawFile(rel, ok.read_bytes(), input_bytes=size)
    if fail.exists():
      record = json.loads(fail.read_text())
      # A timeout is retried when the new limit is longer than the one it failed under.
      if record["reason"] == "midi2abc_timeout" and self.timeout_s > record["timeout_s"]:
        return None
      return RawFile(rel, None, record["reason"], record["detail"], size)
    return None

  def _store(self, key: str, result: RawFile) -> None:
    if result.data is not None:
      path, payload = self.cache_dir / f"{key}.abc", result.data
    else:
      path = self.cache_dir / f"{key}.fail.json"
      record = {"path": result.path, "reason": result.reason, "detail": result.detail,
                "timeout_s": self.timeout_s}
      payload = json.dumps(record).encode()
    tmp = path.with_name(f"{path.name}.tmp{threading.get_ident()}")
    tmp.write_bytes(payload)
    os.replace(tmp, path)

  def _run(self, rel: str, size: int) -> RawFile:
    # Run from the root with the relative path, so midi2abc's "T: from <file>" title does not
    # depend on where the data lives.
    with self._lock:  # no new converter once kill_all has run (its result would not be kept)
      if self.stopping:
        return RawFile(rel, None, "midi2abc_interrupted", "the build was interrupted", size)
      proc = subprocess.Popen([self.exe, *MIDI2ABC_ARGS, _midi2abc_path(rel)], cwd=self.root,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
      self._live.add(proc)
      self.runs += 1
    try:
      out, err = proc.communicate(timeout=self.timeout_s)
    except subprocess.TimeoutExpired:
      self._kill(proc)
      return RawFile(rel, None, "midi2abc_timeout", f"no result after {self.timeout_s:g} s", size)
    finally:
      with self._lock:
        self._live.discard(proc)
    message = " ".join((err + b" " + out).decode("latin-1").split())[:200]
    if proc.returncode != 0:
      return RawFile(rel, None, "midi2abc_failed", f"exit {proc.returncode}: {message}", size)
    if b"X:" not in out:
      return RawFile(rel, None, "midi2abc_no_output", f"exit 0 without a tune: {message}", size)
    return RawFile(rel, out, input_bytes=size)

  @staticmethod
  def _kill(proc: subprocess.Popen) -> None:
    # The whole process group, so a wrapper script's children die too and release the pipes.
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
      pipe.close()

  def convert(self, path: pathlib.Path) -> RawFile:
    rel = path.relative_to(self.root).as_posix()
    try:
      st = path.stat()
      with open(path, "rb"):
        pass
    except OSError as e:
      return RawFile(rel, None, "unreadable", f"{type(e).__name__}: {e.strerror or e}")
    if st.st_size == 0:
      return RawFile(rel, None, "empty_file", "0 bytes")
    key = self._key(rel, st)
    cached = self._cached(key, rel, st.st_size)
    if cached is not None:
      with self._lock:
        self.cache_hits += 1
      return cached
    result = self._run(rel, st.st_size)
    if not self.stopping:
      self._store(key, result)
    return result

  def kill_all(self) -> None:
    with self._lock:
      self.stopping = True
      live = list(self._live)
    for proc in live:
      try:
        os.killpg(proc.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass


def iter_midi_dir(input_dir, cache_dir, stats: dict, *, workers: int | None = None,
                  timeout_s: float = 60.0, progress: bool = True,
                  max_files: int | None = None) -> Iterator[RawFile]:
  """Converts every .mid/.midi under input_dir with `midi2abc -f`, reusing cached results.

  Yields the results in path order while `workers` conversions run ahead, at most 4 per worker, so
  memory holds a bounded window of files whatever the corpus size. A missing folder or binary
  raises at the call, before any file is read. `stats` is filled in as results arrive (final once
  the iterator is exhausted).
  """
  paths = find_files(input_dir, MIDI_SUFFIXES)[:max_files]
  converter = _MidiConverter(midi2abc_binary(), pathlib.Path(input_dir), pathlib.Path(cache_dir),
                             timeout_s)
  workers = workers or os.cpu_count() or 1
  stats.update({"midi2abc_runs": 0, "midi_cache_hits": 0, "midi_cache_dir": str(cache_dir),
                "timeout_s": timeout_s, "workers": workers})
  return _convert_in_order(converter, paths, workers, stats, progress)


def _convert_in_order(converter: _MidiConverter, paths: list[pathlib.Path], workers: int,
                      stats: dict, progress: bool) -> Iterator[RawFile]:
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
  pending: collections.deque = collections.deque()
  queue = iter(paths)
  bar = tqdm.tqdm(total=len(paths), desc="midi2abc", unit="file", disable=not progress)

  def count():
    stats["midi2abc_runs"], stats["midi_cache_hits"] = converter.runs, converter.cache_hits

  try:
    while True:
      while len(pending) < 4 * workers:
        path = next(queue, None)
        if path is None:
          break
        pending.append(pool.submit(converter.convert, path))
      if not pending:
        break
      result = pending.popleft().result()
      bar.update()
      count()
      yield result
  except BaseException:
    # On Ctrl-C, or when the consumer stops early: drop queued files and kill running converters;
    # finished files stay cached.
    pool.shutdown(wait=False, cancel_futures=True)
    converter.kill_all()
    raise
  finally:
    bar.close()
  pool.shutdown()
  count()


def _settings_as_files(settings) -> Iterator[RawFile]:
  try:
    for s in settings:
      data = None if s.tune is None else s.tune.encode("utf-8")
      yield RawFile(s.path, data, s.reason, s.detail, len(data or b""), s.group)
  finally:
    settings.close()  # the CSV file, when the build stops early


def iter_source(source: str, *, input_dir=None, input_file=None, cache_root=None,
                workers: int | None = None, timeout_s: float = 60.0, progress: bool = True,
                max_files: int | None = None) -> tuple[Iterator[RawFile], dict]:
  """The raw files of one source, one at a time, plus source-specific statistics.

  Bad arguments (unknown source, missing folder or file, no matching files, no midi2abc, a tunes
  file of the wrong format) raise here, before anything is read. The statistics dict is complete
  once the iterator is exhausted.
  """
  if source == "thesession":
    stats: dict = {}
    settings = thesession.iter_settings(input_file, stats, progress=progress, max_files=max_files)
    return _settings_as_files(settings), stats
  if source == "music21":
    root, paths = music21_paths()
    return iter_files(root, paths[:max_files], progress), {"root": str(root)}
  if source == "abc_dir":
    paths = find_files(input_dir, ABC_SUFFIXES)[:max_files]
    return iter_files(pathlib.Path(input_dir), paths, progress), {"root": str(input_dir)}
  if source == "midi_dir":
    if cache_root is None:
      raise ValueError("the midi_dir source needs a cache_root for its conversion cache")
    stats = {"root": str(input_dir)}
    files = iter_midi_dir(input_dir, pathlib.Path(cache_root) / MIDI_CACHE_DIR, stats,
                          workers=workers, timeout_s=timeout_s, progress=progress,
                          max_files=max_files)
    return files, stats
  raise ValueError(f"--source must be one of {SOURCES}; got {source!r}")

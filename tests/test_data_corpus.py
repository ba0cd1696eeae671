"""Building a corpus folder: splits, vocabulary, bad input, ensure_corpus, the real music21 corpus."""

import csv
import json
import pathlib
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from abcjax.data import abc_text, corpus, sources
from abcjax.data import transpose as transposition
from abcjax.data.abc_text import UNK_CHAR
from abcjax.data.vocab import Vocab

REPO = pathlib.Path(__file__).resolve().parents[1]


def _tune(i: int) -> str:
  notes = "abcdefg"
  return f"X:{i}\nT:Tune {i}\nM:4/4\nK:G\n{notes[i % 7]}{notes[(i // 7) % 7]}{i}|\n"


def _write_abc_dir(root: pathlib.Path, n_tunes: int, per_file: int = 10) -> pathlib.Path:
  root.mkdir(parents=True, exist_ok=True)
  for start in range(0, n_tunes, per_file):
    sub = root / f"part{start // 100}"
    sub.mkdir(exist_ok=True)
    text = "\n".join(_tune(i) for i in range(start, min(start + per_file, n_tunes)))
    (sub / f"f{start:05d}.abc").write_text(text)
  return root


def _rejects(out_dir) -> list[dict]:
  with open(pathlib.Path(out_dir) / "rejects.tsv", newline="") as f:
    return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def abc_dir(tmp_path_factory):
  return _write_abc_dir(tmp_path_factory.mktemp("abc"), 500)


def _split_tunes(out_dir) -> dict[str, list[str]]:
  return {s: corpus.load_tunes(out_dir, s) for s in corpus.SPLITS}


def test_split_disjoint_deterministic_and_98_1_1(abc_dir, tmp_path):
  stats = corpus.build_corpus(tmp_path / "a", source="abc_dir", input_dir=abc_dir, seed=0,
                              progress=False)
  assert stats["tunes_found"] == stats["tunes_kept"] == 500
  assert {s: v["tunes"] for s, v in stats["splits"].items()} == {"train": 490, "val": 5, "test": 5}
  a = _split_tunes(tmp_path / "a")
  assert sorted(sum(a.values(), [])) == sorted(_tune(i) for i in range(500))  # all, once
  for x, y in [("train", "val"), ("train", "test"), ("val", "test")]:
    assert not set(a[x]) & set(a[y])
  corpus.build_corpus(tmp_path / "b", source="abc_dir", input_dir=abc_dir, seed=0, progress=False)
  assert _split_tunes(tmp_path / "b") == a
  corpus.build_corpus(tmp_path / "c", source="abc_dir", input_dir=abc_dir, seed=1, progress=False)
  assert _split_tunes(tmp_path / "c")["val"] != a["val"]


def test_tokens_decode_to_text_and_vocab_comes_from_train(abc_dir, tmp_path):
  stats = corpus.build_corpus(tmp_path, source="abc_dir", input_dir=abc_dir, progress=False)
  vocab = corpus.load_vocab(tmp_path)
  train_text = (tmp_path / "train.txt").read_text(encoding="utf-8")
  assert vocab == Vocab.build([train_text])
  for split in corpus.SPLITS:
    tokens = corpus.load_split(tmp_path, split)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    text = (tmp_path / f"{split}.txt").read_text(encoding="utf-8")
    assert vocab.decode(tokens) == text
    assert stats["splits"][split]["tokens"] == len(tokens) == len(text)
    assert np.count_nonzero(tokens == vocab.eot_id) == stats["splits"][split]["tunes"]
  assert int(corpus.load_split(tmp_path, "train")[-1]) == vocab.eot_id


def test_unk_chars_are_counted_and_round_trip(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  body = "\n".join(f"X:{i}\nT:Sch\xf6n\nK:C\nabc|\n" for i in range(100))
  (src / "a.abc").write_text(body, encoding="utf-8")
  stats = corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=src, progress=False)
  assert stats["unk"]["chars_replaced_by_policy"] == {"\\xf6": 100}
  assert stats["unk"]["tunes_with_unk_in_body"] == 0
  assert sum(stats["unk"]["unk_tokens_per_split"].values()) == 100
  vocab = corpus.load_vocab(tmp_path / "out")
  train = (tmp_path / "out" / "train.txt").read_text(encoding="utf-8")
  assert f"Sch{UNK_CHAR}n" in train
  assert vocab.decode(corpus.load_split(tmp_path / "out", "train")) == train


def test_bad_inputs_are_counted_and_listed(tmp_path, monkeypatch):
  src = tmp_path / "in"
  src.mkdir()
  (src / "good.abc").write_text("\n".join(_tune(i) for i in range(20)))
  (src / "binary.abc").write_bytes(b"X:1\nK:C\n\x00\x01\x02")
  (src / "latin1.abc").write_bytes("X:1\nT:Sch\xf6n\nK:C\nabc\n".encode("latin-1"))
  (src / "empty.abc").write_bytes(b"")
  (src / "nokey.abc").write_text("X:1\nT:no key\nabc\nX:2\nT:ok\nK:D\nd\n")
  (src / "noX.abc").write_text("T:loose\nK:C\nabc\n")
  (src / "locked.abc").write_text(_tune(99))
  (src / "notes.txt").write_text("not an abc file")
  (src / "locked.abc").chmod(0)
  # Root reads a mode-000 file anyway, so the permission error is also simulated.
  read_bytes = pathlib.Path.read_bytes

  def failing_read_bytes(path):
    if path.name == "locked.abc":
      raise PermissionError(13, "Permission denied", str(path))
    return read_bytes(path)

  monkeypatch.setattr(pathlib.Path, "read_bytes", failing_read_bytes)
  stats = corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=src, progress=False)
  assert stats["files_read"] == 7
  assert stats["files_rejected"] == {"unreadable": 1, "binary": 1, "empty_file": 1, "no_X_line": 1}
  assert stats["files_decoded_latin1"] == 1
  assert stats["tunes_rejected"] == {"no_K_header": 1}
  assert stats["tunes_found"] == 20 + 1 + 2
  assert stats["tunes_kept"] == 20 + 1 + 1
  rows = {(r["path"], r["tune_index"], r["reason"]) for r in _rejects(tmp_path / "out")}
  assert rows == {("locked.abc", "-1", "unreadable"), ("binary.abc", "-1", "binary"),
                  ("empty.abc", "-1", "empty_file"), ("noX.abc", "-1", "no_X_line"),
                  ("nokey.abc", "0", "no_K_header"), ("latin1.abc", "-1", "decoded_latin1")}
  assert stats["unk"]["chars_replaced_by_policy"] == {"\\xf6": 1}


def test_duplicates_counted_and_dropped_only_with_dedup(tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  tunes = [_tune(i) for i in range(50)]
  (src / "a.abc").write_text("\n".join(tunes + tunes[:3] + [tunes[0]]))
  kept = corpus.build_corpus(tmp_path / "keep", source="abc_dir", input_dir=src, progress=False)
  assert (kept["exact_duplicates"], kept["tunes_kept"]) == (4, 54)
  assert not _rejects(tmp_path / "keep")
  dropped = corpus.build_corpus(tmp_path / "drop", source="abc_dir", input_dir=src, dedup=True,
                                progress=False)
  assert (dropped["exact_duplicates"], dropped["tunes_kept"]) == (4, 50)
  assert dropped["tunes_rejected"] == {"duplicate": 4}
  assert [r["tune_index"] for r in _rejects(tmp_path / "drop")] == ["50", "51", "52", "53"]
  assert sorted(sum(_split_tunes(tmp_path / "drop").values(), [])) == sorted(tunes)


def test_build_memory_does_not_grow_with_the_corpus(tmp_path, monkeypatch):
  """A Lakh-scale corpus (~41G characters) must not be held in memory: files stream, tunes spool.

  Python's own allocations (numpy's included) during a build of ~10 MB of ABC stay a fraction of
  it; building it in memory takes ~25x the input.
  """
  src = tmp_path / "in"
  src.mkdir()
  line = "|".join(["GABc defg"] * 8) + "|\n"
  for f in range(100):
    body = "\n".join(f"X:{t}\nT:File {f} tune {t}\nM:4/4\nK:G\n" + line * 50 for t in range(25))
    (src / f"f{f:03d}.abc").write_text(body)
  input_bytes = sum(p.stat().st_size for p in src.iterdir())
  monkeypatch.setattr(corpus._Spool, "CHUNK_CHARS", 1 << 14)
  corpus.build_corpus(tmp_path / "warm", source="abc_dir", input_dir=src, max_files=2,
                      progress=False)  # first-use imports and caches are not the build's memory
  tracemalloc.start()
  try:
    stats = corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=src, progress=False)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert stats["tunes_kept"] == 2500 and input_bytes > 9e6
  assert peak < input_bytes / 4, (peak, input_bytes)
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(corpus.OUTPUT_FILES)
  vocab = corpus.load_vocab(tmp_path / "out")
  for split in corpus.SPLITS:  # chunked writing: the token arrays still match the text exactly
    assert vocab.decode(corpus.load_split(tmp_path / "out", split)) == (
        (tmp_path / "out" / f"{split}.txt").read_text(encoding="utf-8"))


def test_read_tune_text_bounds_a_large_split_to_whole_tunes(tmp_path, abc_dir):
  out = tmp_path / "out"
  corpus.build_corpus(out, source="abc_dir", input_dir=abc_dir, progress=False)
  path = out / "train.txt"
  whole = path.read_text(encoding="utf-8")
  assert corpus.read_tune_text(path, 0) == (whole, len(whole.encode()))
  assert corpus.read_tune_text(path, len(whole))[0] == whole
  tunes = set(corpus.load_tunes(out, "train"))
  # Far below the file's size, and just below it (where repeats end the draw a little short).
  for limit in (4000, len(whole) - 1):
    part, size = corpus.read_tune_text(path, limit, seed=1)
    assert size == len(whole.encode()) and 0.9 * limit <= len(part) < limit + 100
    picked = abc_text.parse_tunes(part)
    assert set(picked) <= tunes and len(set(picked)) == len(picked)
    assert picked == sorted(picked, key=whole.index)  # in file order
    assert corpus.read_tune_text(path, limit, seed=1)[0] == part
  assert corpus.read_tune_text(path, 4000, seed=2)[0] != corpus.read_tune_text(path, 4000)[0]


def test_tune_around_finds_the_tune_at_every_offset(tmp_path):
  rng = np.random.default_rng(0)
  tunes = [f"X:{i}\nK:C\n{'a' * int(rng.integers(1, 30))}{UNK_CHAR * int(rng.integers(0, 3))}\n"
           for i in range(40)]
  path = tmp_path / "split.txt"
  path.write_text(abc_text.join_tunes(tunes), encoding="utf-8")
  data = path.read_bytes()
  with open(path, "rb") as f:
    for step in (1 << 16, 3, 2):  # reads far smaller than a tune: separators across reads
      for offset in range(len(data)):
        found = corpus._tune_around(f, offset, len(data), 10**6, step)
        if offset == len(data) - 1:  # the file's last blank line starts no tune
          assert found is None
          continue
        start, end = found
        assert start <= offset < end or (data[offset - 1:offset + 1] == b"\n\n" and start == offset + 1)
        assert data[start:end].decode("utf-8")[:-1] in tunes
        short = corpus._tune_around(f, offset, len(data), 12, step)
        assert short == (found if end - start <= 12 else None)


def test_sources_stream_files_one_at_a_time(tmp_path):
  _write_abc_dir(tmp_path / "in", 50, per_file=5)
  files, _ = sources.iter_source("abc_dir", input_dir=tmp_path / "in", progress=False)
  first = next(files)
  assert first.path == "part0/f00000.abc" and first.data.startswith(b"X:0\n")
  assert len(list(files)) == 9


def test_bad_input_dir_names_flag_and_folder(tmp_path):
  with pytest.raises(ValueError, match=r"--input_dir=.*missing.*does not exist"):
    corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=tmp_path / "missing")
  (tmp_path / "only_txt").mkdir()
  (tmp_path / "only_txt" / "a.txt").write_text("X:1\nK:C\n")
  with pytest.raises(ValueError, match=r"--input_dir=.*only_txt.*no files ending in \.abc"):
    corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=tmp_path / "only_txt")
  with pytest.raises(ValueError, match="--input_dir is required"):
    corpus.build_corpus(tmp_path / "out", source="abc_dir")
  with pytest.raises(ValueError, match="--source must be one of"):
    corpus.build_corpus(tmp_path / "out", source="lakh")


def test_bad_arguments_leave_an_existing_corpus_alone(tmp_path, abc_dir):
  out = tmp_path / "out"
  corpus.build_corpus(out, source="abc_dir", input_dir=abc_dir, progress=False)
  before = {p.name: p.read_bytes() for p in out.iterdir()}
  with pytest.raises(ValueError, match="does not exist"):
    corpus.build_corpus(out, source="abc_dir", input_dir=tmp_path / "typo", progress=False)
  with pytest.raises(ValueError, match="--source=music21 reads music21's own files"):
    corpus.build_corpus(out, input_dir=abc_dir, progress=False)  # forgot --source=abc_dir
  with pytest.raises(ValueError, match="split_fractions"):
    corpus.build_corpus(out, source="abc_dir", input_dir=abc_dir, split_fractions=(1, 1, 1))
  assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_small_corpus_still_has_val_and_test(tmp_path):
  stats = corpus.build_corpus(tmp_path / "out", source="abc_dir",
                              input_dir=_write_abc_dir(tmp_path / "in", 30), progress=False)
  assert {k: v["tunes"] for k, v in stats["splits"].items()} == {"train": 28, "val": 1, "test": 1}
  with pytest.raises(ValueError, match="only 2 tunes survived cleaning"):
    corpus.build_corpus(tmp_path / "two", source="abc_dir",
                        input_dir=_write_abc_dir(tmp_path / "in2", 2), progress=False)


def test_ensure_corpus_given_dir_must_be_prepared(tmp_path, abc_dir):
  with pytest.raises(FileNotFoundError, match=r"(?s)empty.*prepare_data --out_dir="):
    corpus.ensure_corpus(tmp_path / "empty")
  corpus.build_corpus(tmp_path / "ok", source="abc_dir", input_dir=abc_dir, progress=False)
  assert corpus.ensure_corpus(tmp_path / "ok") == tmp_path / "ok"
  (tmp_path / "ok" / "val.npy").unlink()
  with pytest.raises(FileNotFoundError, match="val.npy"):
    corpus.ensure_corpus(tmp_path / "ok")


def test_ensure_corpus_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv(corpus.DATA_DIR_ENV, str(tmp_path / "cache" / "music21"))

  def interrupted(out_dir, **kwargs):
    (pathlib.Path(out_dir) / "train.npy").write_bytes(b"partial")
    raise KeyboardInterrupt

  monkeypatch.setattr(corpus, "build_corpus", interrupted)
  with pytest.raises(KeyboardInterrupt):
    corpus.ensure_corpus()
  assert list((tmp_path / "cache").iterdir()) == []


def test_music21_corpus_figures_and_reuse(tmp_path, monkeypatch):
  """The whole embedded corpus builds in about 2 s, so the published figures are checked here."""
  monkeypatch.setenv(corpus.DATA_DIR_ENV, str(tmp_path / "music21"))
  assert corpus.default_data_dir() == tmp_path / "music21"
  data_dir = corpus.ensure_corpus()
  assert data_dir == tmp_path / "music21"
  assert [p.name for p in tmp_path.iterdir()] == ["music21"]  # the temporary sibling is gone
  stats = json.loads((data_dir / "stats.json").read_text())
  assert stats["files_read"] == 1146 and stats["files_rejected"] == {}
  assert stats["tunes_found"] == 12978
  assert stats["tunes_kept"] + sum(stats["tunes_rejected"].values()) == 12978
  assert sum(s["tunes"] for s in stats["splits"].values()) == stats["tunes_kept"]
  assert 4.2e6 < sum(s["chars"] for s in stats["splits"].values()) < 4.4e6
  assert 300 <= stats["tune_length_chars"]["p50"] <= 320
  assert stats["vocab_size"] <= 2 + 96  # printable ASCII + newline + EOT + UNK
  vocab = corpus.load_vocab(data_dir)
  assert vocab.decode(corpus.load_split(data_dir, "train")) == (
      (data_dir / "train.txt").read_text(encoding="utf-8"))

  def must_not_build(*args, **kwargs):
    raise AssertionError("ensure_corpus rebuilt an existing corpus")

  monkeypatch.setattr(corpus, "build_corpus", must_not_build)
  assert corpus.ensure_corpus() == data_dir


def test_prepare_data_entry_point(abc_dir, tmp_path):
  out = subprocess.run([sys.executable, "-m", "experiments.prepare_data", "--source=abc_dir",
                        f"--input_dir={abc_dir}", f"--out_dir={tmp_path / 'out'}", "--seed=3"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "500 found, 500 kept" in out.stdout
  assert json.loads((tmp_path / "out" / "stats.json").read_text())["seed"] == 3
  bad = subprocess.run([sys.executable, "-m", "experiments.prepare_data", "--source=abc_dir",
                        f"--input_dir={tmp_path / 'nowhere'}", f"--out_dir={tmp_path / 'x'}"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert bad.returncode != 0 and f"--input_dir={tmp_path / 'nowhere'}" in bad.stderr


def test_sources_list_only_matching_files(tmp_path):
  (tmp_path / "a" / "b").mkdir(parents=True)
  (tmp_path / "a" / "b" / "x.ABC").write_text("X:1\nK:C\n")
  (tmp_path / "y.abc").write_text("X:1\nK:C\n")
  (tmp_path / "z.abcd").write_text("X:1\nK:C\n")
  found = sources.find_files(tmp_path, sources.ABC_SUFFIXES)
  assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/x.ABC", "y.abc"]


def test_encodings_names_and_links_are_read_or_reported(tmp_path):
  import codecs
  import os
  src = tmp_path / "in"
  src.mkdir()
  two = _tune(1) + "\n" + _tune(2)
  (src / "bom8.abc").write_bytes(codecs.BOM_UTF8 + two.encode())
  (src / "cat.abc").write_bytes((codecs.BOM_UTF8 + _tune(3).encode() + b"\n") * 2)  # `cat` of two
  (src / "u16.abc").write_bytes(_tune(4).encode("utf-16"))
  (src / "bom_latin1.abc").write_bytes(codecs.BOM_UTF8 + _tune(8).replace("Tune", "T\xfcne").encode("latin-1"))
  (src / "header.abc").write_text("%abc-2.1\nA file header, not a tune\n\n" + _tune(5))
  with open(os.fsencode(src) + b"/caf\xe9.abc", "wb") as f:  # a file name that is not UTF-8
    f.write(_tune(6).replace("Tune", "Caf\xe9").encode("latin-1"))
  (tmp_path / "elsewhere").mkdir()
  (tmp_path / "elsewhere" / "linked.abc").write_text(_tune(7))
  (src / "link_dir").symlink_to(tmp_path / "elsewhere")
  (src / "link_dir_again").symlink_to(tmp_path / "elsewhere")  # the same folder, read once
  (src / "loop").symlink_to(src)  # a link back up the tree
  (src / "gone.abc").symlink_to(tmp_path / "nowhere.abc")
  stats = corpus.build_corpus(tmp_path / "out", source="abc_dir", input_dir=src, seed=0,
                              progress=False, split_fractions=(0.8, 0.1, 0.1))
  titles = sorted(line for s in corpus.SPLITS for t in corpus.load_tunes(tmp_path / "out", s)
                  for line in t.split("\n") if line.startswith("T:"))
  assert titles == sorted(["T:Caf" + UNK_CHAR + " 6", "T:T" + UNK_CHAR + "ne 8", "T:Tune 1",
                           "T:Tune 2", "T:Tune 3", "T:Tune 3", "T:Tune 4", "T:Tune 5", "T:Tune 7"])
  rows = {(r["path"], r["reason"]) for r in _rejects(tmp_path / "out")}
  assert ("gone.abc", "unreadable") in rows and ("header.abc", "preamble_dropped") in rows
  assert ("caf\\udce9.abc", "decoded_latin1") in rows  # the name escaped, not a crash
  assert stats["files_read"] == 8 and stats["files_rejected"] == {"unreadable": 1}


def test_out_dir_must_be_a_folder_other_than_the_input(tmp_path, abc_dir):
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(ValueError, match="--out_dir=.*a_file is a file"):
    corpus.build_corpus(tmp_path / "a_file", source="abc_dir", input_dir=abc_dir, progress=False)
  with pytest.raises(ValueError, match="is the --input_dir"):
    corpus.build_corpus(abc_dir, source="abc_dir", input_dir=abc_dir, progress=False)
  with pytest.raises(ValueError, match="--input_dir"):
    corpus.build_corpus(tmp_path / "new", source="abc_dir", input_dir=tmp_path / "nope", progress=False)
  assert not (tmp_path / "new").exists()  # a refused build leaves no folder behind


def test_the_walk_is_sorted_regular_files_and_stays_inside(tmp_path, monkeypatch):
  import os
  outside = tmp_path / "outside"
  outside.mkdir()
  (outside / "o.abc").write_text(_tune(1))
  root = tmp_path / "root"
  (root / "a" / "real").mkdir(parents=True)
  (root / "a" / "real" / "t.abc").write_text(_tune(2))
  (root / "z_link").symlink_to(root / "a" / "real")  # reached second: not read twice
  (root / "z_real").mkdir()
  (root / "z_real" / "u.abc").write_text(_tune(3))
  (root / "b_link").symlink_to(root / "z_real")  # reached first, in sorted order
  (root / "a" / "up").symlink_to(tmp_path)  # an ancestor: would pull in outside/
  os.mkfifo(root / "pipe.abc")  # not a regular file: reading it would hang
  expected = [root / "a" / "real" / "t.abc", root / "b_link" / "u.abc"]
  assert sources.find_files(root, (".abc",)) == expected
  listing = os.scandir

  class ReversedListing:  # a file system that lists names in another order
    def __init__(self, path):
      with listing(path) as entries:
        self.entries = sorted(entries, key=lambda e: e.name, reverse=True)

    def __iter__(self):
      return self

    def __next__(self):
      if not self.entries:
        raise StopIteration
      return self.entries.pop(0)

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

  monkeypatch.setattr(os, "scandir", ReversedListing)
  assert sources.find_files(root, (".abc",)) == expected  # whatever the listing order


_KEYS = ("G", "D", "Ador", "E Minor", "F", "Bb", "D mix", "C")


def _keyed_tune(i: int, key: str) -> str:
  notes = "abcdefg"
  return (f"X:{i}\nT:Keyed {i}\nM:6/8\nL:1/8\nK:{key}\n"
          f'|:"G"{notes[i % 7]}B^c d2{notes[(i // 7) % 7]}|=f{{g}}e[DA] B,2c\'|{i % 5 + 1}:|\n')


def test_transposed_copies_join_train_only(tmp_path):
  """Each train tune is followed by its 11 copies; val and test are as without augmentation, and
  no val/test tune reaches train in any key: neither its copies nor copies of another train tune
  that is the same melody in another key (such tunes themselves stay, as without copies)."""
  src = tmp_path / "in"
  src.mkdir()
  tunes = [_keyed_tune(i, _KEYS[i % len(_KEYS)]) for i in range(40)]
  # The same melodies a fourth higher, as other tunes: some copies of the train tunes equal them.
  tunes += [transposition.transpose_tune(t, 5).replace("X:", "X:10", 1) for t in tunes[:30]]
  tunes += ["X:98\nT:Pipes\nK:HP\nABc|\n", "X:99\nT:Unkeyed\nK:none\nABc|\n"]
  (src / "a.abc").write_text("\n".join(tunes))
  split_fractions = (0.7, 0.15, 0.15)
  plain = corpus.build_corpus(tmp_path / "plain", source="abc_dir", input_dir=src,
                              split_fractions=split_fractions, progress=False)
  assert "transpose" not in plain
  shifts = transposition.ALL_SHIFTS
  aug = corpus.build_corpus(tmp_path / "aug", source="abc_dir", input_dir=src, transpose=shifts,
                            split_fractions=split_fractions, progress=False)
  for name in ("val.txt", "test.txt"):
    assert (tmp_path / "aug" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
  plain_splits, aug_splits = _split_tunes(tmp_path / "plain"), _split_tunes(tmp_path / "aug")
  held_out = set(plain_splits["val"] + plain_splits["test"])
  train = aug_splits["train"]
  # Every train tune, then its copies: 12 tunes each, less the copies that were left out.
  untransposable = sum(("K:HP" in t or "K:none" in t) for t in plain_splits["train"])
  t_stats = aug["transpose"]
  # The split put some melodies in train and their fourth in val/test: no copies of those.
  related = t_stats["train_tunes_matching_val_test"]
  assert related >= 1 and t_stats["tunes_skipped"]["copy_matches_val_test"] == related
  assert t_stats["copies_skipped"]["copy_matches_val_test"] == 11 * related
  assert len(train) == 12 * len(plain_splits["train"]) - 11 * (untransposable + related)
  assert t_stats["shifts"] == list(shifts) and t_stats["train_tunes"] == len(plain_splits["train"])
  assert t_stats["copies_added"] == len(train) - len(plain_splits["train"])
  assert t_stats["tunes_transposed"] == len(plain_splits["train"]) - untransposable - related
  originals = set(plain_splits["train"])
  assert [t for t in train if t in originals] == plain_splits["train"]
  copies_in_train = {u.split("\n", 1)[1] for u in train if u not in originals}
  for t in held_out:  # no val/test tune among the copies, in any key
    copies, _ = transposition.transpositions(t, shifts)
    assert not {t.split("\n", 1)[1], *(c.split("\n", 1)[1] for c in copies.values())} & (
        copies_in_train)
  assert aug["splits"]["train"]["tunes"] == len(train)
  assert {k: v["tunes"] for k, v in aug["splits"].items() if k != "train"} == (
      {k: v["tunes"] for k, v in plain["splits"].items() if k != "train"})
  vocab = corpus.load_vocab(tmp_path / "aug")
  for split in corpus.SPLITS:  # val/test characters missing from train ("K:HP") are UNK
    text = (tmp_path / "aug" / f"{split}.txt").read_text(encoding="utf-8")
    assert vocab.decode(corpus.load_split(tmp_path / "aug", split)) == "".join(
        c if c in vocab.token_to_id or c == "\n" else UNK_CHAR for c in text)
  rows = [r for r in _rejects(tmp_path / "aug") if r["reason"].startswith("transpose_")]
  reasons = {r["reason"] for r in rows}
  assert {f"transpose_{r}" for r in t_stats["tunes_skipped"]} == reasons
  assert sum(r["reason"] == "transpose_copy_matches_val_test" for r in rows) == related
  assert not (tmp_path / "aug" / ".train.spool").exists()


def test_transpose_argument_is_checked_before_anything_is_removed(tmp_path, abc_dir):
  out = tmp_path / "out"
  corpus.build_corpus(out, source="abc_dir", input_dir=abc_dir, progress=False)
  before = {p.name: p.read_bytes() for p in out.iterdir()}
  for bad in ((0, 2), (2, 2), (1.5,)):
    with pytest.raises(ValueError, match="--transpose="):
      corpus.build_corpus(out, source="abc_dir", input_dir=abc_dir, transpose=bad, progress=False)
  assert {p.name: p.read_bytes() for p in out.iterdir()} == before

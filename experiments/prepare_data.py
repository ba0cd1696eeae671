"""Prepares a corpus folder: python -m experiments.prepare_data --source=... [--transpose=...].

Sources: music21's embedded ABC files (default); --source=abc_dir or midi_dir with --input_dir;
--source=thesession with --input_file, The Session's tunes file (csv/tunes.csv or json/tunes.json
of github.com/adactio/TheSession-data, downloaded once; see abcjax/data/thesession.py for how its
settings become tunes, and check its LICENSE.md, which restricts use with large language models).

--transpose adds transposed copies of the train tunes to the train split (val and test stay as
they are): --transpose=all for all 12 keys (shifts -5..+6), or semitone shifts such as
--transpose=-2,2,5. For the music21 corpus, --transpose=all gives ~12x the train characters.
"""

from __future__ import annotations

from absl import app, flags

from abcjax.data import corpus, sources, transpose
from experiments import cli

_SOURCE = flags.DEFINE_enum("source", "music21", sources.SOURCES, "Where the tunes come from.")
_INPUT_DIR = flags.DEFINE_string("input_dir", None, "Folder of .abc or .mid files (abc_dir, midi_dir).")
_INPUT_FILE = flags.DEFINE_string(
    "input_file", None, "The Session's tunes file, CSV or JSON (thesession): csv/tunes.csv or "
    "json/tunes.json of github.com/adactio/TheSession-data.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (default: the default corpus cache, "
                               f"${corpus.DATA_DIR_ENV} or ~/.cache/abcjax/music21).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the 98/1/1 train/val/test split.")
_DEDUP = flags.DEFINE_bool("dedup", False, "Drop exact duplicate tunes (always counted).")
_WORKERS = flags.DEFINE_integer("workers", None, "Parallel midi2abc runs (default: CPU count).")
_TIMEOUT_S = flags.DEFINE_float("timeout_s", 60.0, "Per-file midi2abc time limit in seconds.")
_MAX_FILES = flags.DEFINE_integer("max_files", None,
                                  "Use only the first N input files (thesession: N records).")
_TRANSPOSE = flags.DEFINE_string(
    "transpose", "none", "Transposed copies of each train tune added to the train split only: "
    "'none', 'all' (12 keys: shifts -5..6), or comma-separated semitone shifts such as -2,2,5. "
    "Tunes that cannot move (K:none, K:HP, percussion, keys past 7 accidentals) are counted in "
    "stats.json and rejects.tsv.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}: every option is a --flag")
  out_dir = _OUT_DIR.value or corpus.default_data_dir()
  stats = corpus.build_corpus(out_dir, source=_SOURCE.value, input_dir=_INPUT_DIR.value,
                              input_file=_INPUT_FILE.value, seed=_SEED.value, dedup=_DEDUP.value,
                              workers=_WORKERS.value, timeout_s=_TIMEOUT_S.value,
                              max_files=_MAX_FILES.value,
                              transpose=transpose.parse_shifts(_TRANSPOSE.value))
  splits = stats["splits"]
  print(f"corpus written to {out_dir}")
  print(f"files: {stats['files_read']} read, {stats['files_kept']} kept, rejected "
        f"{stats['files_rejected'] or 'none'}")
  print(f"tunes: {stats['tunes_found']} found, {stats['tunes_kept']} kept, rejected "
        f"{stats['tunes_rejected'] or 'none'}, exact duplicates {stats['exact_duplicates']}"
        f"{' (dropped)' if stats['dedup'] else ' (kept)'}")
  if "transpose" in stats:
    t = stats["transpose"]
    print(f"transposed: shifts {t['shifts']}, {t['tunes_transposed']} of {t['train_tunes']} train "
          f"tunes, {t['copies_added']} copies added; copies skipped "
          f"{t['copies_skipped'] or 'none'}")
  for name, s in splits.items():
    print(f"{name:>5}: {s['tunes']} tunes, {s['chars']:,} chars")
  unk = stats["unk"]
  print(f"vocab: {stats['vocab_size']} tokens; characters replaced by UNK: "
        f"{unk['chars_replaced_total']}; UNK tokens per split: {unk['unk_tokens_per_split']}"
        + (f" (val/test characters not in the train vocabulary: "
           f"{unk['val_test_chars_not_in_train_vocab']})"
           if unk["val_test_chars_not_in_train_vocab"] else ""))
  print(f"tune length (chars): {stats['tune_length_chars']}")
  print(f"time: {stats['elapsed_s']:.1f} s, {stats['mb_per_s']:.2f} MB/s")


if __name__ == "__main__":
  cli.run(main, unwind_sigterm=True)

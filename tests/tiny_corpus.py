"""A small synthetic ABC corpus that training tests build in a temporary folder."""

import pathlib

import numpy as np

from abcjax.data import corpus


def synthetic_tunes(count: int, seed: int = 0) -> list[str]:
  """Well-formed 4/4 tunes in G: eight bars of eighth notes drawn from a scale."""
  rng = np.random.default_rng(seed)
  notes = list("GABcdefg")
  tunes = []
  for i in range(count):
    bars = []
    for _ in range(8):
      bars.append("".join(rng.choice(notes, 8)))
    body = "|".join(bars[:4]) + "|\n" + "|".join(bars[4:]) + "|]\n"
    tunes.append(f"X:{i + 1}\nT:Tune {i + 1}\nM:4/4\nL:1/8\nK:G\n{body}")
  return tunes


def build_tiny_corpus(root: pathlib.Path, count: int = 300, seed: int = 0) -> pathlib.Path:
  """Writes the tunes as .abc files and prepares them as a corpus folder; returns that folder."""
  src = root / "abc"
  src.mkdir(parents=True, exist_ok=True)
  tunes = synthetic_tunes(count, seed)
  for start in range(0, count, 50):
    (src / f"part{start // 50}.abc").write_text("\n".join(tunes[start:start + 50]))
  out = root / "corpus"
  corpus.build_corpus(out, source="abc_dir", input_dir=src, seed=seed, progress=False)
  return out


def run_experiment(module: str, *flags: str, timeout: int = 400) -> str:
  """Runs `python -m experiments.<module> FLAGS` from the repo root as a user would; its stdout."""
  import subprocess
  import sys
  repo = pathlib.Path(__file__).resolve().parents[1]
  proc = subprocess.run([sys.executable, "-m", f"experiments.{module}", *flags], cwd=repo,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout

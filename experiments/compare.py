r"""Part 3: compare the GPT and LSTM sweeps of one work folder.

  python -m experiments.compare --workdir=runs/scaling
"""

from absl import app, flags

from abcjax.scaling import compare
from experiments import cli

WORKDIR = flags.DEFINE_string("workdir", "runs/scaling", "The scaling sweep's folder (holds gpt/ and lstm/).")
OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the comparison (default <workdir>/compare).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  compare.compare(WORKDIR.value, OUT_DIR.value)


if __name__ == "__main__":
  cli.run(main)

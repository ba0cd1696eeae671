"""Samples from a trained model written as ABC files: unconditional, and prompted by real tunes."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Any, Callable, Sequence

import numpy as np

from abcjax import atomic, checks
from abcjax.evaluation.abc_checker import check_tune
from abcjax.models.decode import KNOB_RANGES, generate

# What each SamplingConfig field allows, and how to say it; sample_eval checks its flags with these.
FIELD_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **KNOB_RANGES,
    "num_uncond": (lambda v: v >= 0, ">= 0"),
    "num_cond": (lambda v: v >= 0, ">= 0"),
    "max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "prompt_bars": (lambda v: v >= 0, ">= 0 (0: the header only)"),
}
SAMPLE_NAME = re.compile(r"(uncond|cond)_\d{3,}\.abc")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  num_uncond: int = 25
  num_cond: int = 25
  # The study sampled with top-k 5 at temperature 1.0; a lower temperature trades diversity for
  # validity (BUILD_NOTES.md, samples).
  temperature: float = 0.3
  top_k: int = 5
  top_p: float = 1.0
  seed: int = 0
  max_new_tokens: int = 1500
  # Conditional prompts: a test tune's header and its first prompt_bars bars.
  prompt_bars: int = 2

  def __post_init__(self):
    checks.require([(name, ok(getattr(self, name)), allowed, getattr(self, name))
                    for name, (ok, allowed) in FIELD_RANGES.items()])
    if self.num_uncond + self.num_cond < 1:
      raise ValueError("num_uncond + num_cond is 0: ask for at least one sample")


def conditional_prompt(tune: str, bars: int) -> str:
  """The header of a tune (through its K: line) and the first `bars` bars of its first body line."""
  lines = tune.splitlines(keepends=True)
  for i, line in enumerate(lines):
    if line.startswith("K:"):
      header, body = "".join(lines[: i + 1]), lines[i + 1:]
      break
  else:
    raise ValueError("a prompt tune needs a K: line")
  if not body or bars <= 0:
    return header
  first = body[0]
  cut, seen = len(first), 0
  for j, ch in enumerate(first):
    if ch == "|":
      seen += 1
      if seen == bars:
        cut = j + 1
        break
  return header + first[:cut]


def valid_prompt_tunes(tunes: Sequence[str]) -> tuple[list[str], dict[str, int]]:
  """The tunes that may prompt conditional samples, and the others counted by checker reason.

  A prompt copies a real tune's header and opening bars into the sample. A tune the checker rejects
  (1 of the 130 music21 test tunes: a tempo line without its Q:) would fail every sample it
  prompts whatever the model writes, so it is left out of the pool.
  """
  usable, skipped = [], {}
  for tune in tunes:
    result = check_tune(tune)
    if result.valid:
      usable.append(tune)
    else:
      skipped[result.reason] = skipped.get(result.reason, 0) + 1
  return usable, skipped


def write_samples(trained, out_dir: str | pathlib.Path, prompt_tunes: Sequence[str],
                  cfg: SamplingConfig) -> list[dict[str, Any]]:
  """Generates cfg.num_uncond + cfg.num_cond samples in one batch and writes them as .abc files.

  Returns one manifest entry per file (also written to samples.json): name, kind, prompt, tokens
  generated and whether the sample stopped at the end of its tune or ran into max_new_tokens.
  Samples an earlier call left in out_dir (uncond_NNN.abc, cond_NNN.abc) are removed first.
  """
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for stale in out_dir.iterdir():
    if SAMPLE_NAME.fullmatch(stale.name) and stale.is_file():
      stale.unlink()
  vocab = trained.vocab
  if cfg.num_cond and not prompt_tunes:
    raise ValueError("conditional samples need prompt tunes (the test split is empty)")
  rng = np.random.default_rng(cfg.seed)
  picks = rng.choice(len(prompt_tunes), cfg.num_cond, replace=cfg.num_cond > len(prompt_tunes)) \
      if cfg.num_cond else []
  cond_prompts = [conditional_prompt(prompt_tunes[i], cfg.prompt_bars) for i in picks]
  # Every sample starts right after an end-of-tune token, as tunes do in the training stream.
  prompts = ([np.array([vocab.eot_id])] * cfg.num_uncond
             + [np.concatenate([[vocab.eot_id], vocab.encode(p)]) for p in cond_prompts])
  outputs = generate(trained.model, trained.params, prompts, max_new_tokens=cfg.max_new_tokens,
                     temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, seed=cfg.seed,
                     stop_token=vocab.eot_id)
  manifest = []
  for i, ids in enumerate(outputs):
    kind = "uncond" if i < cfg.num_uncond else "cond"
    index = i if kind == "uncond" else i - cfg.num_uncond
    prompt = "" if kind == "uncond" else cond_prompts[index]
    text = prompt + vocab.decode(ids)
    if not text.endswith("\n"):
      text += "\n"
    name = f"{kind}_{index:03d}.abc"
    (out_dir / name).write_text(text, encoding="utf-8")
    # generate() leaves the stop token out and never samples past max_new_tokens, so a row that
    # stopped has fewer tokens: even one whose end token was its max_new_tokens-th.
    manifest.append({"file": name, "kind": kind, "prompt": prompt, "tokens": int(len(ids)),
                     "stopped": bool(len(ids) < cfg.max_new_tokens)})
  atomic.write_text(out_dir / "samples.json", json.dumps(
      {"sampling": dataclasses.asdict(cfg), "checkpoint_step": trained.step, "samples": manifest},
      indent=2) + "\n")
  return manifest

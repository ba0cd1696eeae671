"""Named recipes: the study's ("paper") and a scaled-down one for machines without a GPU ("cpu").

A preset gives the TrainConfig of one (arch, size); flags then override any field by name.
"""

from __future__ import annotations

from abcjax.train.config import TrainConfig

PRESETS = ("paper", "cpu")

# The study's recipe for every scaling run: 100M tokens, block 256, batch 64, AdamW 3e-4.
PAPER = TrainConfig(tokens=100_000_000, block_size=256, batch_size=64, lr=3e-4, weight_decay=0.1,
                    b1=0.9, b2=0.95, grad_clip=1.0, warmup_frac=0.05, schedule="cosine",
                    eval_every=1000, checkpoint_every=1000, log_every=100)

# The CPU preset keeps each family's layers and heads, shrinks the widths of a family by one factor
# (1/8 for the GPT, 1/4 for the LSTM: CPU_WIDTH_SCALE) and trains on a budget that the whole
# five-size GPT sweep fits in about 4-7 minutes on 2 cores. It also
# shortens the context to 64: at these widths attention over 256 positions, not the matmuls, is
# most of a step's cost on a CPU (4x fewer tokens/s measured), and the sweep needs the tokens more.
# Smaller widths get a higher learning rate (optimal AdamW rates fall roughly as 1/width).
CPU = PAPER.replace(tokens=1_000_000, batch_size=64, block_size=64, width_scale=0.125,
                    eval_every=100, checkpoint_every=100, log_every=10, warmup_frac=0.05)
# The LSTM table is 4-16x smaller than the GPT table to begin with, so its widths shrink less.
CPU_WIDTH_SCALE = {"gpt": 0.125, "lstm": 0.25}
CPU_LR = {
    "gpt": {"tiny": 6e-3, "small": 5e-3, "medium": 3.5e-3, "large": 2.5e-3, "xl": 2e-3},
    "lstm": {"tiny": 6e-3, "small": 5e-3, "medium": 4e-3, "large": 3e-3},
}

# The best model trains several epochs of a larger budget (the study: 5 epochs of 200M tokens).
BEST_PAPER = PAPER.replace(tokens=200_000_000, epochs=5.0, eval_every=2000, checkpoint_every=2000)
# On a CPU the best model trains for about 15 (LSTM) or 22 (GPT) minutes. The LSTM trains on
# windows of 512 characters (batch 32, so the same 16K tokens a step): an LSTM costs the same per
# token at any window length, and 512 holds a whole tune from its header (95% of tunes are shorter
# than 531 characters) as sampling does, carrying its state through the tune. Against windows of
# 256: val 0.989 vs 0.998, samples 96% valid vs 93% over seeds 0-4 / 0-2 (BUILD_NOTES.md).
BEST_CPU = {
    "gpt": CPU.replace(tokens=1_600_000, epochs=3.0, eval_every=200, checkpoint_every=200, log_every=20),
    "lstm": CPU.replace(tokens=4_000_000, epochs=8.0, block_size=512, batch_size=32,
                        eval_every=100, checkpoint_every=100, log_every=20),
}
BEST_CPU_LR = {"lstm": {"large": 4e-3}}
# The study's best model is GPT xl. Without a GPU the LSTM family is the better one (the CPU-preset
# comparison: lower validation loss at every size, 6x the tokens/s; BUILD_NOTES.md), so the CPU
# preset's best model is its largest LSTM.
BEST_DEFAULT = {"paper": ("gpt", "xl"), "cpu": ("lstm", "large")}


def preset_config(preset: str, arch: str, size: str, *, best_model: bool = False,
                  table: str = "A") -> TrainConfig:
  if preset not in PRESETS:
    raise ValueError(f"--preset must be one of {PRESETS}, got {preset!r}")
  if preset == "paper":
    base = BEST_PAPER if best_model else PAPER
    return base.replace(arch=arch, size=size, table=table)
  base = BEST_CPU[arch] if best_model else CPU
  lrs = BEST_CPU_LR if best_model and size in BEST_CPU_LR.get(arch, {}) else CPU_LR
  lr = lrs.get(arch, {}).get(size, base.lr)
  return base.replace(arch=arch, size=size, table=table, lr=lr,
                      width_scale=CPU_WIDTH_SCALE.get(arch, base.width_scale))

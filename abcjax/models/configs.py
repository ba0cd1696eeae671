"""What every model family's config shares, and the functions that work on any registered family.

Each family (gpt.py, lstm.py, gru.py) defines one frozen config class derived from `ModelConfig`
and registers it with its Flax module (registry.py). The class owns everything that is particular
to the family: its size tables, its parameter and FLOP counts, how its widths round when a preset
scales them, and its preset settings. Nothing outside the family's module branches on its name.

Table A is the first write-up's code: every size is exact and its losses are published. Table B is
the second write-up: it publishes GPT tiny/large/xl and LSTM large; the other sizes are ours, chosen
so that parameter counts step geometrically (see `TABLE_B_CHOICES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from abcjax import checks

TABLES = ("A", "B")
DTYPES = ("float32", "bfloat16")
CUSTOM_SIZE = "custom"
SHAPE_FIELDS = ("n_layer", "d_model", "n_head")

TABLE_B_CHOICES = """\
Table B publishes GPT tiny (3L/3H, ~1.4M), large (8L/12H, ~50M) and xl (12L/12H, ~107M), whose
widths 192/720/864 follow from the counts, and LSTM large (5 x 1024, ~42.2M). Our choices:
- GPT small and medium: the geometric steps between tiny (1.40M) and large (50.08M) are x3.29, giving
  targets 4.61M and 15.20M. With depth between tiny's 3 and large's 8 layers and head width 64 (as in
  tiny), the closest shapes are small 6L/4H/256 (4.82M, +4.5%) and medium 6L/7H/448 (14.63M, -3.7%).
- LSTM tiny, small, medium: anchored at GPT-B tiny's size (~1.4M) so both families start at the same
  N, and stepped geometrically (x3.11) to large; depth grows one layer per size (2, 3, 4, 5) towards
  large's 5 layers, widths rounded to multiples of 32: 2x288 (1.36M), 3x416 (4.21M), 4x640 (13.19M).
  The realised steps are x3.09, x3.14, x3.19.
- GRU (not in the study): the LSTM's tables, so the two recurrent families share shapes."""


@dataclasses.dataclass(frozen=True)
class CpuPreset:
  """How a family's sizes shrink for the laptop preset (abcjax.train.presets)."""

  lr: dict[str, float]                      # peak learning rate per size name
  width_scale: float = 1.0                  # every width of the size table times this...
  # ...unless the family gives its own laptop shape for the size name (the same for both tables).
  sizes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
  # Overrides of the CPU recipe for experiments.best_model, by config path ("data.tokens": ...),
  # and its learning rate per size where it differs from `lr`.
  best_model: dict[str, Any] = dataclasses.field(default_factory=dict)
  best_lr: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
  """One model: its family, shape and numerics. Written next to every run's results.

  Subclasses set `arch`, `SIZES` (table -> size -> shape), `PUBLISHED_PARAMS`, `CPU`, and implement
  `num_non_embedding_params`, `flops_per_token` and `width_unit`.
  """

  arch: ClassVar[str]
  SIZES: ClassVar[dict[str, dict[str, dict[str, int]]]]
  PUBLISHED_PARAMS: ClassVar[dict[str, dict[str, float]]] = {}
  CPU: ClassVar[CpuPreset]

  size: str = CUSTOM_SIZE   # a name from the family's SIZES[table], or "custom"
  table: str = "A"          # "A" | "B": which published size table the size name refers to
  vocab_size: int = 0       # characters in the vocabulary; 0 until the corpus is known (trainer)
  block_size: int = 256     # context length of training windows (GPT: learned positions)
  n_layer: int = 1          # stacked blocks or recurrent layers
  d_model: int = 64         # residual / embedding width; a recurrent family's hidden width
  dropout: float = 0.0      # dropout probability while training (where the family applies it)
  dtype: str = "float32"    # compute dtype; params stay float32, softmax/logits/loss float32
  # Hand-written backward passes (Dense weight gradient as one 2-D matmul; the LSTM recurrence),
  # measured faster on one CPU device. The same function either way (abcjax.cpu_tuning).
  cpu_backward: bool = False

  # -- construction -------------------------------------------------------------------------------

  @classmethod
  def size_names(cls, table: str = "A") -> list[str]:
    """Size names of the family in one table, smallest first."""
    checks.require([("table", table in cls.SIZES, f"one of {list(cls.SIZES)}", table)])
    return list(cls.SIZES[table])

  @classmethod
  def from_size(cls, size: str, table: str = "A", **fields: Any) -> "ModelConfig":
    """The config of a named size of the table, or of size "custom" with its shape in `fields`.

    Giving a named size another shape turns it into size "custom", so a run's output never claims
    a table size it did not train. (The cpu preset keeps the names for its laptop shapes: there
    a name is the size's place in the family's ladder, and the shape is in the run's config.)
    """
    names = cls.size_names(table)
    if size == CUSTOM_SIZE:
      shape = {}
    elif size in names:
      shape = dict(cls.SIZES[table][size])
      if any(k in shape and fields[k] != shape[k] for k in fields if k in SHAPE_FIELDS):
        size = CUSTOM_SIZE
    else:
      raise ValueError(f"unknown {cls.arch} size {size!r} in table {table}; valid: "
                       f"{names + [CUSTOM_SIZE]}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(f"{cls.arch} configs have no fields {unknown}; valid: {sorted(known)}")
    return cls(size=size, table=table, **{**shape, **fields})

  def scale_width(self, factor: float) -> "ModelConfig":
    """The same layers (and heads) with the width times `factor`, rounded to the family's unit."""
    if factor == 1.0:
      return self
    unit = self.width_unit()
    return dataclasses.replace(self, d_model=max(unit, int(round(self.d_model * factor / unit)) * unit))

  def replace(self, **changes: Any) -> "ModelConfig":
    """A copy with `changes`; another shape (n_layer, d_model, n_head) relabels it "custom"."""
    if any(k in SHAPE_FIELDS and v != getattr(self, k) for k, v in changes.items()):
      changes = {"size": CUSTOM_SIZE, **changes}
    return dataclasses.replace(self, **changes)

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises ValueError naming the first field whose value makes no sense."""
    checks.require([
        ("table", self.table in TABLES, f"one of {list(TABLES)}", self.table),
        ("dtype", self.dtype in DTYPES, f"one of {list(DTYPES)}", self.dtype),
        ("vocab_size", self.vocab_size >= 0, "0 (the corpus's) or more", self.vocab_size),
        ("block_size", self.block_size > 0, "a positive integer", self.block_size),
        ("n_layer", self.n_layer > 0, "a positive integer", self.n_layer),
        ("d_model", self.d_model > 0, "a positive integer", self.d_model),
        ("dropout", 0.0 <= self.dropout < 1.0, "in [0, 1)", self.dropout),
    ], prefix="model.")

  # -- counts -------------------------------------------------------------------------------------

  def width_unit(self) -> int:
    """Widths of this family are multiples of this (a scaled width rounds to it)."""
    raise NotImplementedError

  def num_non_embedding_params(self) -> int:
    """Parameters without the token (and, for the GPT, positional) embeddings."""
    raise NotImplementedError

  def num_embedding_params(self) -> int:
    """The token embedding, tied with the output head (counted once)."""
    return self.vocab_size * self.d_model

  def num_params(self) -> int:
    """Total parameters, counted analytically (tied head counted once)."""
    return self.num_non_embedding_params() + self.num_embedding_params()

  def flops_per_token(self) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), Kaplan et al. 2020 style:
    forward = 2 * N_non_emb (every weight: one multiply-add per token) + 2 * d * V (the tied output
    head), plus whatever the family adds (attention). Embedding look-ups, softmax and element-wise
    ops are not counted."""
    return float(3 * (2 * self.num_non_embedding_params() + 2 * self.d_model * self.vocab_size))

  # -- records ------------------------------------------------------------------------------------

  def to_dict(self) -> dict[str, Any]:
    """All fields plus "arch" (round-trips through `registry.config_from_dict`)."""
    return {"arch": self.arch, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecurrentConfig(ModelConfig):
  """A stack of gated recurrent layers (LSTM, GRU), PyTorch-style: per layer W_ih and W_hh of
  GATES*d^2 each and two bias vectors of GATES*d; final LayerNorm 2d. Subclasses set GATES."""

  GATES: ClassVar[int]

  unroll: int = 1  # time steps per nn.scan iteration; 1 was fastest on CPU

  def validate(self) -> None:
    super().validate()
    checks.require([("unroll", self.unroll > 0, "a positive integer", self.unroll)],
                   prefix="model.")

  def width_unit(self) -> int:
    return 8

  def num_non_embedding_params(self) -> int:
    d, g = self.d_model, self.GATES
    return self.n_layer * (2 * g * d * d + 2 * g * d) + 2 * d


def size_table_markdown(table: str, vocab_size: int = 99) -> str:
  """The documented size table of every registered family: shapes, parameters, FLOPs/token."""
  from abcjax.models import registry

  checks.require([("table", table in TABLES, f"one of {list(TABLES)}", table)])
  lines = [
      f"Size table {table} (vocab {vocab_size}, block 256; FLOPs = training fwd+bwd per token)",
      "",
      "| arch | size | layers | heads | width | params | non-emb params | FLOPs/token | published |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for arch in registry.names():
    cls = registry.config_class(arch)
    for size in cls.size_names(table):
      cfg = cls.from_size(size, table, vocab_size=vocab_size)
      published = cls.PUBLISHED_PARAMS.get(table, {}).get(size)
      # Exact published counts are ints; rounded ones (floats) keep their published digits.
      pub = ("(chosen)" if published is None else
             f"{published:,}" if isinstance(published, int) else f"{published / 1e6:g}M")
      heads = str(getattr(cfg, "n_head", "-"))
      lines.append(
          f"| {arch} | {size} | {cfg.n_layer} | {heads} | {cfg.d_model} | {cfg.num_params():,} | "
          f"{cfg.num_non_embedding_params():,} | {cfg.flops_per_token():.3e} | {pub} |")
  return "\n".join(lines)

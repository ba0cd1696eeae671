"""Model configs: the two published size tables, the config dataclass and the factory.

Table A is the first write-up's code: every size is exact and its losses are published. Table B is
the second write-up: it publishes GPT tiny/large/xl and LSTM large; the other sizes are ours, chosen
so that parameter counts step geometrically (see `TABLE_B_CHOICES`).

Parameterisation (it reproduces table A's published counts for a 99-character vocabulary):
  GPT:  token embedding V*d (tied with the output head, no output bias), learned positions block*d;
        per block: LayerNorm 2d, fused qkv 3d^2 and output projection d^2 (no attention biases),
        LayerNorm 2d, MLP d->4d->d with biases (8d^2 + 5d); final LayerNorm 2d.
        N = V*d + block*d + L*(12d^2 + 9d) + 2d, e.g. xl 100,067,136 (published 100.07M).
  LSTM: token embedding V*d (tied head, no output bias); per layer PyTorch-style W_ih 4d^2, W_hh 4d^2
        and two bias vectors b_ih, b_hh (8d); final LayerNorm 2d.
        N = V*d + L*(8d^2 + 8d) + 2d, which equals every published table-A count exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

ARCHS = ("gpt", "lstm")
TABLES = ("A", "B")
DTYPES = ("float32", "bfloat16")
# Attention kernels, all the same function: "xla" (einsum + mask over the whole L x L square, any
# device and dtype), "blocked" (einsums over the lower staircase of tiles only: a quarter less
# attention work at L = 256; the CPU default), "cudnn" (fused flash attention: NVIDIA GPUs, bfloat16, head width up to
# 128), "auto" (cudnn on NVIDIA GPUs in bfloat16, blocked on CPU, else xla).
ATTENTION_IMPLS = ("auto", "xla", "blocked", "cudnn")
CUSTOM_SIZE = "custom"


def _gpt(n_layer: int, n_head: int, d_model: int) -> dict[str, int]:
  return {"n_layer": n_layer, "d_model": d_model, "n_head": n_head}


def _lstm(n_layer: int, d_model: int) -> dict[str, int]:
  return {"n_layer": n_layer, "d_model": d_model, "n_head": 0}


# SIZE_TABLES[table][arch][size] -> {"n_layer", "d_model", "n_head"}.
SIZE_TABLES: dict[str, dict[str, dict[str, dict[str, int]]]] = {
    "A": {
        "gpt": {
            "tiny": _gpt(2, 6, 192),
            "small": _gpt(6, 8, 256),
            "medium": _gpt(8, 8, 448),
            "large": _gpt(10, 8, 640),
            "xl": _gpt(12, 8, 832),
        },
        "lstm": {
            "tiny": _lstm(1, 128),
            "small": _lstm(2, 256),
            "medium": _lstm(2, 384),
            "large": _lstm(3, 512),
        },
    },
    "B": {
        "gpt": {
            "tiny": _gpt(3, 3, 192),     # published: 3 layers, 3 heads, ~1.4M
            "small": _gpt(6, 4, 256),    # chosen: 4.82M
            "medium": _gpt(6, 7, 448),   # chosen: 14.63M
            "large": _gpt(8, 12, 720),   # published: 8 layers, 12 heads, ~50M
            "xl": _gpt(12, 12, 864),     # published: 12 layers, 12 heads, ~107M
        },
        "lstm": {
            "tiny": _lstm(2, 288),       # chosen: 1.36M
            "small": _lstm(3, 416),      # chosen: 4.21M
            "medium": _lstm(4, 640),     # chosen: 13.19M
            "large": _lstm(5, 1024),     # published: 5 layers, ~42.2M
        },
    },
}

# Published parameter counts (99-character vocabulary). Table A's are exact to the digits given;
# table B's are approximate ("about").
PUBLISHED_PARAMS: dict[str, dict[str, dict[str, float]]] = {
    "A": {
        "gpt": {"tiny": 0.96e6, "small": 4.82e6, "medium": 19.46e6, "large": 49.44e6,
                "xl": 100.07e6},
        "lstm": {"tiny": 145_024, "small": 1_078_528, "medium": 2_404_224, "large": 6_355_456},
    },
    "B": {
        "gpt": {"tiny": 1.4e6, "large": 50e6, "xl": 107e6},
        "lstm": {"large": 42.2e6},
    },
}

TABLE_B_CHOICES = """\
Table B publishes GPT tiny (3L/3H, ~1.4M), large (8L/12H, ~50M) and xl (12L/12H, ~107M), whose
widths 192/720/864 follow from the counts, and LSTM large (5 x 1024, ~42.2M). Our choices:
- GPT small and medium: the geometric steps between tiny (1.40M) and large (50.08M) are x3.29, giving
  targets 4.61M and 15.20M. With depth between tiny's 3 and large's 8 layers and head width 64 (as in
  tiny), the closest shapes are small 6L/4H/256 (4.82M, +4.5%) and medium 6L/7H/448 (14.63M, -3.7%).
- LSTM tiny, small, medium: anchored at GPT-B tiny's size (~1.4M) so both families start at the same
  N, and stepped geometrically (x3.11) to large; depth grows one layer per size (2, 3, 4, 5) towards
  large's 5 layers, widths rounded to multiples of 32: 2x288 (1.36M), 3x416 (4.21M), 4x640 (13.19M).
  The realised steps are x3.09, x3.14, x3.19."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
  """One model: architecture, shape, and numerics. Written next to every run's results."""

  arch: str                  # "gpt" | "lstm"
  size: str                  # a name from SIZE_TABLES, or "custom"
  table: str                 # "A" | "B": which published size table the size name refers to
  vocab_size: int            # characters in the vocabulary (99 in the first write-up)
  block_size: int = 256      # context length; GPT learned positions cover exactly this many
  n_layer: int               # Transformer blocks or stacked LSTM layers
  d_model: int               # residual / embedding width; the LSTM hidden width equals it
  n_head: int = 0            # attention heads (GPT only; 0 for the LSTM)
  dropout: float = 0.0       # GPT: attention-output, MLP and embedding dropout; LSTM: between layers
  dtype: str = "float32"     # compute dtype; params stay float32, softmax/logits/loss float32
  lstm_unroll: int = 1       # time steps per nn.scan iteration (LSTM only); 1 was fastest on CPU
  attention: str = "auto"    # GPT attention kernel, one of ATTENTION_IMPLS (same function, any kernel)
  cpu_backward: bool = False  # hand-written Dense/LSTM backward passes, faster on one CPU device; same function

  def __post_init__(self):
    if self.arch not in ARCHS:
      raise ValueError(f"unknown arch {self.arch!r}; valid: {list(ARCHS)}")
    if self.table not in TABLES:
      raise ValueError(f"unknown table {self.table!r}; valid: {list(TABLES)}")
    if self.dtype not in DTYPES:
      raise ValueError(f"unknown dtype {self.dtype!r}; valid: {list(DTYPES)}")
    if self.n_layer < 1 or self.d_model < 1 or self.vocab_size < 1 or self.block_size < 1:
      raise ValueError(f"n_layer, d_model, vocab_size and block_size must be positive: {self}")
    if self.arch == "gpt" and (self.n_head < 1 or self.d_model % self.n_head):
      raise ValueError(f"GPT needs n_head >= 1 dividing d_model, got {self.n_head}/{self.d_model}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
    if self.attention not in ATTENTION_IMPLS:
      raise ValueError(f"unknown attention {self.attention!r}; valid: {list(ATTENTION_IMPLS)}")

  def num_params(self) -> int:
    """Total parameters, counted analytically (tied head counted once)."""
    return self.num_non_embedding_params() + self._embedding_params()

  def _embedding_params(self) -> int:
    d, v = self.d_model, self.vocab_size
    if self.arch == "gpt":
      return v * d + self.block_size * d
    return v * d

  def num_non_embedding_params(self) -> int:
    """Parameters without the token (and, for the GPT, positional) embeddings."""
    d, n = self.d_model, self.n_layer
    if self.arch == "gpt":
      per_block = 12 * d * d + 9 * d  # qkv 3d^2 + proj d^2 + mlp 8d^2 + mlp biases 5d + 2 LN 4d
      return n * per_block + 2 * d
    per_layer = 8 * d * d + 8 * d      # W_ih, W_hh, b_ih, b_hh (input width = d in every layer)
    return n * per_layer + 2 * d

  def flops_per_token(self) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), Kaplan et al. 2020 style.

    forward = 2 * N_non_emb                    (every weight: one multiply-add per token)
            + 2 * d * V                        (the tied output head matmul)
            + GPT only: 2 * n_layer * block * d  (QK^T and AV, averaged over causal positions:
                                                 Kaplan's 2*n_layer*n_ctx*d_attn; PaLM's 12*L*d*T
                                                 training term counts the full square instead)
    training = 3 * forward. Embedding look-ups, softmax and element-wise ops are not counted.
    """
    forward = 2 * self.num_non_embedding_params() + 2 * self.d_model * self.vocab_size
    if self.arch == "gpt":
      forward += 2 * self.n_layer * self.block_size * self.d_model
    return float(3 * forward)

  def replace(self, **kw: Any) -> "ModelConfig":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict[str, Any]:
    """All fields (round-trips through `ModelConfig(**d)`)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})

  def summary(self) -> dict[str, Any]:
    """Fields plus derived counts, for run outputs (N and C for the scaling fits)."""
    return {**self.to_dict(), "num_params": self.num_params(),
            "num_non_embedding_params": self.num_non_embedding_params(),
            "flops_per_token": self.flops_per_token()}


def _check_table_arch(arch: str, table: str) -> None:
  if table not in SIZE_TABLES:
    raise ValueError(f"unknown size table {table!r}; valid: {list(SIZE_TABLES)}")
  if arch not in SIZE_TABLES[table]:
    raise ValueError(f"unknown arch {arch!r}; valid: {list(ARCHS)}")


def size_names(arch: str, table: str = "A") -> list[str]:
  """Size names of one family in one table, smallest first."""
  _check_table_arch(arch, table)
  return list(SIZE_TABLES[table][arch])


_SHAPE_FIELDS = ("n_layer", "d_model", "n_head")


def get_config(arch: str, size: str, *, vocab_size: int, table: str = "A", block_size: int = 256,
               dtype: str = "float32", dropout: float = 0.0, **overrides: Any) -> ModelConfig:
  """The config of a named size. `size="custom"` takes n_layer/d_model(/n_head) from overrides.

  Overriding a named size's shape (n_layer, d_model, n_head) turns it into size "custom", so a
  run's output never claims a table size it did not train.
  """
  _check_table_arch(arch, table)
  table_sizes = SIZE_TABLES[table][arch]
  if size == CUSTOM_SIZE:
    missing = [f for f in ("n_layer", "d_model") + (("n_head",) if arch == "gpt" else ())
               if f not in overrides]
    if missing:
      raise ValueError(f"size 'custom' needs overrides {missing}")
    shape: dict[str, Any] = {"n_head": 0}
  elif size in table_sizes:
    shape = dict(table_sizes[size])
  else:
    raise ValueError(f"unknown {arch} size {size!r} in table {table}; valid: "
                     f"{list(table_sizes) + [CUSTOM_SIZE]}")
  fields = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"unknown config fields {sorted(unknown)}; valid: {sorted(fields)}")
  if any(k in _SHAPE_FIELDS and overrides[k] != shape.get(k) for k in overrides):
    size = CUSTOM_SIZE
  kw = {**shape, "block_size": block_size, "dtype": dtype, "dropout": dropout, **overrides}
  return ModelConfig(arch=arch, size=size, table=table, vocab_size=vocab_size, **kw)


def _fmt_params(n: float) -> str:
  # Exact published counts are ints; rounded ones (floats) keep their published digits.
  return f"{n:,}" if isinstance(n, int) else f"{n / 1e6:g}M"


def size_table_markdown(table: str, vocab_size: int = 99) -> str:
  """The documented size table: shapes, total and non-embedding parameters, training FLOPs/token."""
  if table not in SIZE_TABLES:
    raise ValueError(f"unknown size table {table!r}; valid: {list(SIZE_TABLES)}")
  lines = [
      f"Size table {table} (vocab {vocab_size}, block 256; FLOPs = training fwd+bwd per token)",
      "",
      "| arch | size | layers | heads | width | params | non-emb params | FLOPs/token | published |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for arch in ARCHS:
    for size in size_names(arch, table):
      cfg = get_config(arch, size, vocab_size=vocab_size, table=table)
      published = PUBLISHED_PARAMS[table][arch].get(size)
      pub = _fmt_params(published) if published is not None else "(chosen)"
      heads = str(cfg.n_head) if arch == "gpt" else "-"
      lines.append(
          f"| {arch} | {size} | {cfg.n_layer} | {heads} | {cfg.d_model} | {cfg.num_params():,} | "
          f"{cfg.num_non_embedding_params():,} | {cfg.flops_per_token():.3e} | {pub} |")
  return "\n".join(lines)

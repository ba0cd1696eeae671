"""Named recipes: the study's ("paper", for GPUs) and a scaled-down one for a laptop's CPU ("cpu").

`make(preset, arch, size)` gives the whole Config of one size of one family; the family's config
class supplies its shape and its CPU settings (`ModelConfig.CPU`: width scale, learning rate per
size, best-model overrides). Flags then override any field by path (abcjax.train.config_flags).
"""

from __future__ import annotations

from abcjax.models import registry
from abcjax.train.config import Config, DataConfig, EvalConfig, OptimizerConfig, RunConfig, override

PRESETS = ("paper", "cpu")

# The study's recipe for every scaling run: 100M tokens, block 256, batch 64, AdamW 3e-4 with 5%
# warmup and cosine decay to a tenth.
PAPER = Config(model=registry.config_class("gpt")(),  # replaced per family and size
               opt=OptimizerConfig(lr=3e-4, weight_decay=0.1, b1=0.9, b2=0.95, grad_clip=1.0,
                                   warmup_frac=0.05, schedule="cosine"),
               data=DataConfig(tokens=100_000_000, batch_size=64),
               eval=EvalConfig(every=1000),
               run=RunConfig(checkpoint_every=1000, log_every=100, preset="paper"))
PAPER_BLOCK_SIZE = 256
# The study's 100M tokens are ~23 passes over the embedded corpus's 4.3M training characters; past a
# few passes the larger models overfit and the scaling curve flattens. The paper preset trains on
# at most this many passes over the corpus it is given (cap_to_corpus): enlarge the corpus
# (prepare_data --transpose=all, --source=thesession) to train on the study's full budget.
PAPER_MAX_PASSES = 4
# The best model trains several epochs of a larger budget (the study: 5 epochs of 200M tokens).
PAPER_BEST = {"data.tokens": 200_000_000, "data.epochs": 5.0, "eval.every": 2000,
              "run.checkpoint_every": 2000}

# The CPU preset trains laptop-sized models (each family's `CPU.sizes`, or its table's widths times
# `CPU.width_scale`) on 4M tokens each, in many small steps (batch 16 x 64 tokens: 3,906 AdamW
# steps), so that the models learn the music rather than leave the unigram plateau: the five-size
# GPT sweep takes ~12 minutes on 2 cores. Context 64: at these widths attention over 256
# positions, not the matmuls, is most of a step's cost on a CPU (4x fewer tokens/s measured).
CPU = PAPER.replace(data=DataConfig(tokens=4_000_000, batch_size=16),
                    eval=EvalConfig(every=500),
                    run=RunConfig(checkpoint_every=500, log_every=50, preset="cpu"))
CPU_BLOCK_SIZE = 64

# The study's best model is GPT xl. Without a GPU the LSTM family is the better one (the CPU-preset
# comparison: lower validation loss at every size, 6x the tokens/s), so the CPU preset's best model
# is its largest LSTM.
BEST_DEFAULT = {"paper": ("gpt", "xl"), "cpu": ("lstm", "large")}
# Compute dtype on accelerators: the GPT trains in bfloat16 there (float32 params, softmax, loss);
# the recurrent families keep float32 as the study did.
ACCELERATOR_DTYPE = {"gpt": "bfloat16"}


def resolve(preset: str, backend: str | None = None) -> str:
  """"auto" -> "paper" where JAX sees a GPU or TPU, else "cpu"; other names are checked."""
  if preset == "auto":
    if backend is None:
      import jax
      backend = jax.default_backend()
    return "paper" if backend in ("gpu", "tpu") else "cpu"
  if preset not in PRESETS:
    raise ValueError(f"preset must be one of {['auto', *PRESETS]}, got {preset!r}")
  return preset


def make(preset: str, arch: str, size: str, *, table: str = "A", best_model: bool = False,
         backend: str | None = None) -> Config:
  """The Config of one size of one family under a preset (see the module docstring)."""
  if backend is None:
    import jax
    backend = jax.default_backend()
  preset = resolve(preset, backend)
  cls = registry.config_class(arch)
  dtype = ACCELERATOR_DTYPE.get(arch, "float32") if backend in ("gpu", "tpu") else "float32"
  if preset == "paper":
    model = cls.from_size(size, table, block_size=PAPER_BLOCK_SIZE, dtype=dtype)
    cfg = PAPER.replace(model=model)
    return override(cfg, PAPER_BEST) if best_model else cfg
  cpu = cls.CPU
  if size in cpu.sizes:  # the family's own laptop shape for this size name
    model = cls.from_size(size, table, block_size=CPU_BLOCK_SIZE, dtype=dtype).replace(
        **cpu.sizes[size]).replace(size=size)
  else:
    model = cls.from_size(size, table, block_size=CPU_BLOCK_SIZE, dtype=dtype).scale_width(
        cpu.width_scale)
  cfg = CPU.replace(model=model)
  lr = cpu.lr.get(size, CPU.opt.lr)
  if best_model:
    return override(cfg, {**cpu.best_model, "opt.lr": cpu.best_lr.get(size, lr)})
  return override(cfg, {"opt.lr": lr})


def cap_to_corpus(cfg: Config, train_tokens: int,
                  max_passes: float = PAPER_MAX_PASSES) -> tuple[Config, str | None]:
  """`cfg` with its whole budget (tokens x epochs) cut to `max_passes` passes over a train split
  of `train_tokens`, and a note saying so (None when the budget fits)."""
  cap = int(max_passes * train_tokens)
  if cfg.total_tokens <= cap:
    return cfg, None
  epochs = cfg.data.epochs
  tokens = max(1, int(cap / epochs))
  per_epoch = f" ({tokens:,} tokens an epoch, {epochs:g} epochs)" if epochs != 1 else ""
  note = (f"note: the {cfg.run.preset} preset's {cfg.total_tokens:,} tokens would be "
          f"{cfg.total_tokens / max(train_tokens, 1):.1f} passes over this corpus's "
          f"{train_tokens:,} training tokens; training on {max_passes:g} passes{per_epoch} "
          "instead. Enlarge the corpus (prepare_data --transpose=all, or --source=thesession) for "
          "the full budget, or set it yourself with --config.data.tokens (scaling, best_model).")
  return override(cfg, {"data.tokens": tokens}), note

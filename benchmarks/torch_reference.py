"""PyTorch reference for abcjax's training throughput: the same GPT and LSTM, trained the same way.

`python -m experiments.benchmark --torch_python=PY` runs this file (flag --torch_reference) with an
interpreter that has torch, in a subprocess, alternating with its own measurement; abcjax never
imports torch. By hand:

  python benchmarks/torch_reference.py --arch gpt --layers 3 --heads 3 --d 192 --batch 64 --block 256
  python benchmarks/torch_reference.py --arch lstm --layers 2 --d 256

It trains on one fixed batch of random tokens (batch x (block + 1): inputs and next-token targets),
in float32 and eager mode as PyTorch users run it by default, and prints one JSON line with the
shape, "params", "threads", "torch_version", "step_s" (median of the timed steps) and
"tokens_per_s". The models follow abcjax/models/configs.py weight for weight, so "params" equals
`ModelConfig.num_params()`:
  GPT:  learned positions; pre-LayerNorm blocks with a fused qkv and an output projection without
        biases and a GELU (tanh) MLP with biases; final LayerNorm; head tied to the token embedding.
  LSTM: token embedding, nn.LSTM layers (W_ih, W_hh, b_ih, b_hh), final LayerNorm, tied head.
The optimizer is abcjax's: clipping by global norm, then AdamW with weight decay on matrices only.
The benchmark passes abcjax's settings for it; the defaults here are the same.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-5  # abcjax's LayerNorm epsilon


class CausalSelfAttention(nn.Module):

  def __init__(self, d_model: int, n_head: int, n_layer: int):
    super().__init__()
    self.n_head = n_head
    # No biases on the attention projections; one fused matmul for q, k and v.
    self.c_attn = nn.Linear(d_model, 3 * d_model, bias=False)
    self.c_proj = nn.Linear(d_model, d_model, bias=False)
    nn.init.normal_(self.c_attn.weight, std=0.02)
    nn.init.normal_(self.c_proj.weight, std=0.02 / math.sqrt(2 * n_layer))

  def forward(self, x_BxLxD: torch.Tensor) -> torch.Tensor:
    b, l, d = x_BxLxD.shape
    heads = lambda t: t.view(b, l, self.n_head, d // self.n_head).transpose(1, 2)
    q, k, v = (heads(t) for t in self.c_attn(x_BxLxD).split(d, dim=-1))
    y_BxHxLxK = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self.c_proj(y_BxHxLxK.transpose(1, 2).reshape(b, l, d))


class MLP(nn.Module):

  def __init__(self, d_model: int, n_layer: int):
    super().__init__()
    self.c_fc = nn.Linear(d_model, 4 * d_model)
    self.c_proj = nn.Linear(4 * d_model, d_model)
    nn.init.normal_(self.c_fc.weight, std=0.02)
    nn.init.normal_(self.c_proj.weight, std=0.02 / math.sqrt(2 * n_layer))
    nn.init.zeros_(self.c_fc.bias)
    nn.init.zeros_(self.c_proj.bias)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):

  def __init__(self, d_model: int, n_head: int, n_layer: int):
    super().__init__()
    self.ln_1 = nn.LayerNorm(d_model, eps=LN_EPS)
    self.attn = CausalSelfAttention(d_model, n_head, n_layer)
    self.ln_2 = nn.LayerNorm(d_model, eps=LN_EPS)
    self.mlp = MLP(d_model, n_layer)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.attn(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):

  def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, d_model: int):
    super().__init__()
    self.wte = nn.Parameter(torch.randn(vocab_size, d_model) * 0.02)
    self.wpe = nn.Parameter(torch.randn(block_size, d_model) * 0.02)
    self.blocks = nn.ModuleList(Block(d_model, n_head, n_layer) for _ in range(n_layer))
    self.ln_f = nn.LayerNorm(d_model, eps=LN_EPS)

  def forward(self, tokens_BxL: torch.Tensor) -> torch.Tensor:
    x_BxLxD = F.embedding(tokens_BxL, self.wte) + self.wpe[:tokens_BxL.shape[1]]
    for block in self.blocks:
      x_BxLxD = block(x_BxLxD)
    return F.linear(self.ln_f(x_BxLxD), self.wte)  # tied head, no bias


class LSTM(nn.Module):

  def __init__(self, vocab_size: int, n_layer: int, d_model: int):
    super().__init__()
    # Scale 1/sqrt(d) as abcjax: unit-scale logits from the tied head after the final LayerNorm.
    self.wte = nn.Parameter(torch.randn(vocab_size, d_model) / math.sqrt(d_model))
    self.lstm = nn.LSTM(d_model, d_model, n_layer, batch_first=True)
    self.ln_f = nn.LayerNorm(d_model, eps=LN_EPS)
    for i in range(n_layer):
      nn.init.normal_(getattr(self.lstm, f"weight_ih_l{i}"), std=1.0 / math.sqrt(d_model))
      nn.init.orthogonal_(getattr(self.lstm, f"weight_hh_l{i}"))
      nn.init.zeros_(getattr(self.lstm, f"bias_ih_l{i}"))
      b_hh = getattr(self.lstm, f"bias_hh_l{i}")
      with torch.no_grad():
        # Forget-gate bias 1 (gate order i, f, g, o), as abcjax initialises it.
        b_hh.zero_()
        b_hh[d_model:2 * d_model] = 1.0

  def forward(self, tokens_BxL: torch.Tensor) -> torch.Tensor:
    x_BxLxD, _ = self.lstm(F.embedding(tokens_BxL, self.wte))
    return F.linear(self.ln_f(x_BxLxD), self.wte)  # tied head, no bias


def build_model(args: argparse.Namespace) -> nn.Module:
  if args.arch == "gpt":
    return GPT(args.vocab, args.block, args.layers, args.heads, args.d)
  return LSTM(args.vocab, args.layers, args.d)


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.AdamW:
  """AdamW with weight decay on matrices only (ndim >= 2), as abcjax's optimizer."""
  params = list(model.parameters())
  groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": args.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
  return torch.optim.AdamW(groups, lr=args.lr, betas=(args.b1, args.b2), eps=args.eps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", choices=["gpt", "lstm"], required=True)
  parser.add_argument("--layers", type=int, required=True, help="Blocks or stacked LSTM layers.")
  parser.add_argument("--d", type=int, required=True, help="Width (the LSTM's hidden width).")
  parser.add_argument("--heads", type=int, default=0, help="Attention heads (GPT only).")
  parser.add_argument("--vocab", type=int, default=99, help="Vocabulary size.")
  parser.add_argument("--batch", type=int, default=64, help="Sequences per step.")
  parser.add_argument("--block", type=int, default=256, help="Sequence length.")
  parser.add_argument("--seconds", type=float, default=10.0, help="Seconds of timed steps.")
  parser.add_argument("--min_steps", type=int, default=3, help="Timed steps at least.")
  parser.add_argument("--warmup_steps", type=int, default=2, help="Untimed steps first.")
  parser.add_argument("--seed", type=int, default=0)
  # abcjax's OptimizerConfig defaults.
  parser.add_argument("--lr", type=float, default=3e-4)
  parser.add_argument("--b1", type=float, default=0.9)
  parser.add_argument("--b2", type=float, default=0.95)
  parser.add_argument("--eps", type=float, default=1e-8)
  parser.add_argument("--weight_decay", type=float, default=0.1)
  parser.add_argument("--grad_clip", type=float, default=1.0)
  args = parser.parse_args(argv)
  if min(args.layers, args.d, args.vocab, args.batch, args.block, args.min_steps) < 1:
    parser.error("--layers, --d, --vocab, --batch, --block and --min_steps must be 1 or more")
  if args.arch == "gpt" and (args.heads < 1 or args.d % args.heads):
    parser.error(f"the GPT needs --heads >= 1 dividing --d, got {args.heads} and {args.d}")
  return args


def main(argv: list[str] | None = None) -> None:
  args = parse_args(argv)
  torch.manual_seed(args.seed)
  model = build_model(args)
  opt = make_optimizer(model, args)
  tokens = torch.randint(0, args.vocab, (args.batch, args.block + 1))
  inputs, targets = tokens[:, :-1], tokens[:, 1:].reshape(-1)

  def train_step() -> float:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs).reshape(-1, args.vocab), targets)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    opt.step()
    return loss.item()

  for _ in range(args.warmup_steps):
    train_step()
  times, start = [], time.perf_counter()
  while len(times) < args.min_steps or time.perf_counter() - start < args.seconds:
    t0 = time.perf_counter()
    loss = train_step()
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  line = {
      "what": "train", "impl": f"torch-{torch.__version__}", "torch_version": torch.__version__,
      "arch": args.arch, "n_layer": args.layers, "d_model": args.d,
      "n_head": args.heads if args.arch == "gpt" else 0, "vocab_size": args.vocab,
      "batch": args.batch, "block": args.block, "dtype": "float32",
      "params": sum(p.numel() for p in model.parameters()),  # the tied table counted once
      "threads": torch.get_num_threads(), "steps": len(times), "step_s": step_s,
      "step_s_min": min(times), "step_s_max": max(times),
      "tokens_per_s": args.batch * args.block / step_s, "loss": loss,
      "optimizer": {k: getattr(args, k) for k in ("lr", "b1", "b2", "eps", "weight_decay",
                                                  "grad_clip")},
  }
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()

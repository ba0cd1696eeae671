"""grain loaders over a split's token array: random training windows, and whole-split evaluation.

Training batch b, row r (of the global batch) is the window starting at
  offset = hash(seed, b * global_batch + r) mod (len(tokens) - block_size),
a pure function of (seed, global window index). The grain iterator's state is therefore just the
next batch index, which restores exactly, and process p of P computes only its own rows.
"""

from __future__ import annotations

import math
import sys
from typing import Iterator

import grain
from absl import flags
import numpy as np

# Effectively infinite: the trainer sets the budget. (grain's range dataset is lazy.)
_NUM_BATCHES = sys.maxsize
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64's finaliser: a bijective, well-mixed hash of uint64 values (wraps mod 2**64)."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def window_offsets(seed: int, window_index: np.ndarray, num_offsets: int) -> np.ndarray:
  """Start offsets in [0, num_offsets) of the given global windows; pure in (seed, index)."""
  with np.errstate(over="ignore"):
    key = _mix64(np.asarray([seed], np.uint64) * _GOLDEN + _GOLDEN)
    h = _mix64(key ^ (np.asarray(window_index, np.uint64) * _GOLDEN))
  # The modulo bias is below num_offsets / 2**64: negligible for any corpus.
  return (h % np.uint64(num_offsets)).astype(np.int64)


class _CropBatch:
  """Maps a batch index to this process's rows of that global batch (int32, Bx(block+1))."""

  def __init__(self, tokens: np.ndarray, block_size: int, global_batch: int, seed: int,
               row_start: int, row_stop: int):
    self.tokens, self.block_size, self.global_batch, self.seed = tokens, block_size, global_batch, seed
    self.rows = np.arange(row_start, row_stop, dtype=np.uint64)
    self.columns = np.arange(block_size + 1)

  def __call__(self, batch_index: int) -> np.ndarray:
    windows = np.uint64(batch_index) * np.uint64(self.global_batch) + self.rows
    offsets = window_offsets(self.seed, windows, len(self.tokens) - self.block_size)
    return np.asarray(self.tokens[offsets[:, None] + self.columns], dtype=np.int32)

  def __getstate__(self):
    # A memory-mapped split travels to grain workers as its file name, not as a copy of the data.
    state = dict(self.__dict__)
    tokens = self.tokens
    if isinstance(tokens, np.memmap) and tokens.filename is not None and tokens.offset is not None:
      state["tokens"] = ("memmap", tokens.filename, tokens.dtype.str, tokens.shape, tokens.offset)
    return state

  def __setstate__(self, state):
    if isinstance(state["tokens"], tuple):
      _, filename, dtype, shape, offset = state["tokens"]
      state["tokens"] = np.memmap(filename, dtype=dtype, mode="r", shape=shape, offset=offset)
    self.__dict__.update(state)


def _check_process(process_index: int, process_count: int) -> None:
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index < process_count; got {process_index}, {process_count}")


def _check_sharding(batch: int, process_index: int, process_count: int, name: str) -> int:
  _check_process(process_index, process_count)
  if batch % process_count:
    raise ValueError(f"{name}={batch} is not divisible by process_count={process_count}")
  return batch // process_count


def train_iterator(tokens: np.ndarray, *, block_size: int, global_batch: int, seed: int,
                   process_index: int = 0, process_count: int = 1,
                   worker_count: int = 0) -> grain.DatasetIterator:
  """Endless batches of random training windows: int32 arrays (global_batch // P, block_size + 1).

  Windows are random crops with replacement. Process p gets rows [p*B/P, (p+1)*B/P) of every global
  batch, so P processes together see exactly the single-process batch. get_state() is a small
  JSON-serialisable dict; set_state() restores exactly. worker_count > 0 computes batches in grain
  worker processes (call it under a `__main__` guard); a thread is enough for this cheap gather.
  """
  tokens = tokens if isinstance(tokens, np.memmap) else np.asarray(tokens)
  if tokens.ndim != 1:
    raise ValueError(f"tokens must be 1-D; got shape {tokens.shape}")
  if len(tokens) < block_size + 1:
    raise ValueError(f"the split has {len(tokens)} tokens, fewer than block_size + 1 = "
                     f"{block_size + 1}: use a smaller block_size or a bigger split")
  local = _check_sharding(global_batch, process_index, process_count, "global_batch")
  crop = _CropBatch(tokens, block_size, global_batch, seed, process_index * local,
                    (process_index + 1) * local)
  dataset = grain.MapDataset.range(_NUM_BATCHES).map(crop)
  # A couple of threads keep ahead of the trainer; grain's default (16 threads, 500 batches) would
  # only compete with the model for CPU.
  iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
  if worker_count > 0:
    # grain's workers read absl flags; outside absl.app.run (pytest, notebooks) use the defaults.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return iter(iter_dataset)


def num_eval_targets(tokens: np.ndarray) -> int:
  """Every token after the first is predicted once."""
  return max(len(tokens) - 1, 0)


def eval_batches(tokens: np.ndarray, *, block_size: int, batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Walks a whole split in consecutive windows: each target token is weighted 1 exactly once.

  Window k holds tokens [k*block, k*block + block + 1): inputs are its first block tokens, targets
  the last block. Yields (tokens_Bx(block+1) int32, weights_Bxblock float32) with weight 0 on
  padding. batch_size is per process. Window k goes to process k % P; every process yields the same
  number of batches (padded with weight-0 rows) so collective evaluation never deadlocks.
  """
  _check_process(process_index, process_count)
  if block_size < 1 or batch_size < 1:
    raise ValueError(f"block_size and batch_size must be positive; got {block_size}, {batch_size}")
  tokens = np.asarray(tokens)
  n_targets = num_eval_targets(tokens)
  n_windows = math.ceil(n_targets / block_size)
  windows_per_process = math.ceil(n_windows / process_count)
  n_batches = math.ceil(windows_per_process / batch_size)
  columns = np.arange(block_size + 1)
  for b in range(n_batches):
    local = np.arange(b * batch_size, (b + 1) * batch_size)
    window = local * process_count + process_index
    positions = window[:, None] * block_size + columns  # token positions of each row
    valid = positions < len(tokens)
    batch = np.zeros(positions.shape, np.int32)
    batch[valid] = tokens[positions[valid]]
    # Target j of a row is position start + j + 1; it counts when it exists (padding rows too).
    weights = valid[:, 1:].astype(np.float32)
    yield batch, weights

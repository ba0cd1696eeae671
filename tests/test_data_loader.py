"""grain loaders: random training windows (determinism, restore, sharding) and whole-split eval."""

import itertools
import json

import numpy as np
import pytest

from abcjax.data import loader

# Token value == position, so a window shows where it was cut from.
TOKENS = np.arange(5000, dtype=np.int64)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_windows_are_contiguous_crops_of_the_split():
  tokens = TOKENS.astype(np.uint16)
  it = loader.train_iterator(tokens, block_size=16, global_batch=8, seed=0)
  batches = np.stack(_take(it, 50))
  assert batches.shape == (50, 8, 17) and batches.dtype == np.int32
  starts = batches[..., 0]
  np.testing.assert_array_equal(batches, starts[..., None] + np.arange(17))
  assert starts.min() >= 0 and starts.max() <= len(tokens) - 17
  # Random crops with replacement spread over the split rather than sweeping it in order.
  assert len(np.unique(starts)) > 300 and np.ptp(starts) > 4000


def test_same_seed_same_batches_other_seed_different():
  a = _take(loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=1), 5)
  b = _take(loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=1), 5)
  c = _take(loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=2), 5)
  np.testing.assert_array_equal(np.stack(a), np.stack(b))
  assert not np.array_equal(np.stack(a), np.stack(c))


def test_window_is_a_pure_function_of_seed_and_index():
  # Batch 3, row 2 of a global batch of 4 is global window 14.
  batch = _take(loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=5), 4)[3]
  (offset,) = loader.window_offsets(5, np.array([14]), len(TOKENS) - 8)
  np.testing.assert_array_equal(batch[2], TOKENS[offset:offset + 9])


def test_state_is_json_and_restores_exactly():
  it = loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=0)
  _take(it, 7)
  state = json.loads(json.dumps(it.get_state()))
  expected = _take(it, 5)
  restored = loader.train_iterator(TOKENS, block_size=8, global_batch=4, seed=0)
  _take(restored, 2)  # a restored iterator may have advanced already
  restored.set_state(state)
  np.testing.assert_array_equal(np.stack(_take(restored, 5)), np.stack(expected))


def test_two_processes_together_see_the_single_process_batch():
  single = _take(loader.train_iterator(TOKENS, block_size=8, global_batch=6, seed=3), 4)
  shards = [_take(loader.train_iterator(TOKENS, block_size=8, global_batch=6, seed=3,
                                        process_index=p, process_count=2), 4) for p in range(2)]
  for step in range(4):
    assert shards[0][step].shape == (3, 9)
    np.testing.assert_array_equal(np.concatenate([shards[0][step], shards[1][step]]), single[step])


def test_train_iterator_errors():
  with pytest.raises(ValueError, match="fewer than block_size"):
    loader.train_iterator(np.arange(8), block_size=8, global_batch=2, seed=0)
  with pytest.raises(ValueError, match="not divisible by process_count"):
    loader.train_iterator(TOKENS, block_size=8, global_batch=5, seed=0, process_count=2)


def test_worker_processes_give_the_same_batches():
  kwargs = dict(block_size=8, global_batch=4, seed=0)
  expected = _take(loader.train_iterator(TOKENS, **kwargs), 6)
  it = loader.train_iterator(TOKENS, worker_count=1, **kwargs)
  got = _take(it, 6)
  np.testing.assert_array_equal(np.stack(got), np.stack(expected))
  json.dumps(it.get_state())


@pytest.mark.parametrize("n,block,batch,processes", [
    (1000, 16, 4, 1), (1000, 16, 4, 2), (1001, 7, 3, 3), (17, 16, 2, 2), (2, 16, 1, 2)])
def test_eval_batches_cover_every_target_once(n, block, batch, processes):
  tokens = np.arange(n)
  per_process = [list(loader.eval_batches(tokens, block_size=block, batch_size=batch,
                                          process_index=p, process_count=processes))
                 for p in range(processes)]
  assert len({len(b) for b in per_process}) == 1  # same number of batches everywhere
  targets = []
  for x, w in itertools.chain(*per_process):
    assert x.shape == (batch, block + 1) and x.dtype == np.int32
    assert w.shape == (batch, block) and w.dtype == np.float32
    rows, cols = np.nonzero(w)
    np.testing.assert_array_equal(x[rows, cols + 1], x[rows, cols] + 1)  # input precedes target
    targets.extend(x[rows, cols + 1])
  assert sorted(targets) == list(range(1, n))
  assert loader.num_eval_targets(tokens) == n - 1

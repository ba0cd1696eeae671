"""generate(): determinism, sampling filters, stop condition, ragged prompts, cache == no cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abcjax.models import build_model, decode, generate, get_config, sample_logits

VOCAB = 20
NEW = 40  # one max_new_tokens for most tests, so compiled loops are shared


def tiny_model(arch: str, **kw):
  fields = {"vocab_size": VOCAB, "block_size": 64, "n_layer": 2, "d_model": 32,
            **({"n_head": 4} if arch == "gpt" else {}), **kw}
  cfg = get_config(arch, "custom", **fields)
  model = build_model(cfg)
  return model, model.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module", params=["gpt", "lstm", "gru"])
def model_and_params(request):
  return tiny_model(request.param)


# Ragged, and rows 0 and 3 share a prompt.
PROMPTS = [np.array([0]), np.array([0, 3, 4, 5, 6, 7, 8]), np.array([1, 2]), np.array([0])]


def test_fixed_seed_is_deterministic(model_and_params):
  model, params = model_and_params
  a = generate(model, params, PROMPTS, max_new_tokens=NEW, seed=3)
  b = generate(model, params, PROMPTS, max_new_tokens=NEW, seed=3)
  c = generate(model, params, PROMPTS, max_new_tokens=NEW, seed=4)
  assert [len(x) for x in a] == [NEW] * len(PROMPTS)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))
  assert all(x.dtype == np.int32 and x.min() >= 0 and x.max() < VOCAB for x in a)
  assert not np.array_equal(a[0], a[3])  # rows with the same prompt still sample differently


def test_stop_token_cuts_before_first_occurrence(model_and_params):
  model, params = model_and_params
  free = generate(model, params, PROMPTS, max_new_tokens=NEW, seed=5, temperature=2.0)
  stop = int(free[0][3])  # a token that occurs early in row 0
  stopped = generate(model, params, PROMPTS, max_new_tokens=NEW, seed=5, temperature=2.0,
                     stop_token=stop)
  for x, y in zip(free, stopped):
    hits = np.flatnonzero(x == stop)
    cut = hits[0] if len(hits) else len(x)
    np.testing.assert_array_equal(y, x[:cut])
    assert stop not in y
  assert len(stopped[0]) <= 3


def test_top_k_one_equals_greedy(model_and_params):
  model, params = model_and_params
  greedy = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.0)
  top1 = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=1.5, top_k=1, seed=9)
  tiny_p = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=1.0, top_p=1e-6)
  for g, k, p in zip(greedy, top1, tiny_p):
    np.testing.assert_array_equal(g, k)
    np.testing.assert_array_equal(g, p)


def generated_ranks(model, params, outs) -> list[np.ndarray]:
  """Rank of each generated token under the model's full-forward logits (0 = most likely)."""
  seqs = [np.concatenate([p, o]) for p, o in zip(PROMPTS, outs)]
  width = max(len(s) for s in seqs)
  padded = np.stack([np.pad(s, (0, width - len(s))) for s in seqs])  # causal: padding is harmless
  logits = np.asarray(jax.jit(model.apply)(params, jnp.asarray(padded)))
  ranks = []
  for row, (prompt, seq) in enumerate(zip(PROMPTS, seqs)):
    steps = np.arange(len(prompt) - 1, len(seq) - 1)
    chosen = logits[row, steps, seq[steps + 1]]
    ranks.append((logits[row, steps] > chosen[:, None]).sum(-1))
  return ranks


def test_sampled_tokens_are_among_the_top_k(model_and_params):
  model, params = model_and_params
  k = 3
  outs = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=5.0, top_k=k, seed=2)
  for out, ranks in zip(outs, generated_ranks(model, params, outs)):
    assert ranks.max() < k, ranks
    assert len(set(out.tolist())) > 1
  # without top-k, a hot temperature does pick tokens outside the top 3
  free = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=5.0, seed=2)
  assert sum(int((r >= k).sum()) for r in generated_ranks(model, params, free)) > 0


def test_ragged_batch_equals_one_by_one(model_and_params):
  model, params = model_and_params
  batched = generate(model, params, PROMPTS, max_new_tokens=NEW, temperature=0.0)
  for prompt, row in zip(PROMPTS, batched):
    alone = generate(model, params, [prompt], max_new_tokens=NEW, temperature=0.0)[0]
    np.testing.assert_array_equal(row, alone)


def test_cached_equals_uncached_sampling(model_and_params):
  model, params = model_and_params
  kw = dict(max_new_tokens=NEW, temperature=1.0, top_k=5, top_p=0.95, seed=11)
  cached = generate(model, params, PROMPTS, use_cache=True, **kw)
  uncached = generate(model, params, PROMPTS, use_cache=False, **kw)
  for x, y in zip(cached, uncached):
    np.testing.assert_array_equal(x, y)


def test_prompt_conditions_the_continuation(model_and_params):
  model, params = model_and_params
  a = generate(model, params, [np.array([0, 1, 2, 3])], max_new_tokens=NEW, temperature=0.0)[0]
  b = generate(model, params, [np.array([0, 9, 9, 9])], max_new_tokens=NEW, temperature=0.0)[0]
  assert not np.array_equal(a, b)


def test_gpt_generates_beyond_block_size():
  model, params = tiny_model("gpt", block_size=16)
  new = 100
  prompt = [np.array([0, 5, 6])]
  cached = generate(model, params, prompt, max_new_tokens=new, temperature=0.0)[0]
  uncached = generate(model, params, prompt, max_new_tokens=new, temperature=0.0,
                      use_cache=False)[0]
  assert len(cached) == new and len(uncached) == new
  # Identical while the context fits the block (3 prompt tokens + 13 generated = 16 positions).
  np.testing.assert_array_equal(cached[:14], uncached[:14])
  # Past the block the cached path continues from its re-prefilled window: check one refill
  # point against a full forward pass on that window (tokens 8..15 re-placed at positions 0..7).
  seq = np.concatenate([prompt[0], cached])
  window = seq[8:17]
  logits = jax.jit(model.apply)(params, jnp.asarray(window[None]))[0, -1]
  assert int(jnp.argmax(logits)) == seq[17]


def test_zero_new_tokens_and_bad_prompts():
  model, params = tiny_model("lstm")
  assert [len(x) for x in generate(model, params, PROMPTS, max_new_tokens=0)] == [0] * 4
  with pytest.raises(ValueError, match="at least one token"):
    generate(model, params, [np.array([], np.int32)], max_new_tokens=4)
  with pytest.raises(ValueError, match="prompt tokens"):
    generate(model, params, [np.array([VOCAB])], max_new_tokens=4)


@pytest.mark.parametrize("prompts", [np.array([0, 3, 4]), [0, 3, 4], [np.int32(0), np.int32(3)]],
                         ids=["ndarray", "list", "numpy_scalars"])
def test_one_dimensional_prompt_is_rejected(prompts):
  model, params = tiny_model("lstm")
  with pytest.raises(ValueError, match=r"list of prompts.*pass \[ids\]"):
    generate(model, params, prompts, max_new_tokens=4)


def test_a_ragged_object_array_of_prompts_is_a_list_of_prompts():
  model, params = tiny_model("lstm")
  ragged = np.empty(2, dtype=object)
  ragged[0], ragged[1] = np.array([1, 2, 3]), np.array([4])
  as_array = generate(model, params, ragged, max_new_tokens=4)
  as_list = generate(model, params, [np.array([1, 2, 3]), np.array([4])], max_new_tokens=4)
  assert [list(x) for x in as_array] == [list(x) for x in as_list]


@pytest.mark.parametrize("name, value", [
    ("max_new_tokens", 2.5), ("max_new_tokens", -1),
    ("temperature", -1.0), ("temperature", float("nan")), ("temperature", float("inf")),
    ("top_k", -3), ("top_k", 2.0),
    ("top_p", -1.0), ("top_p", 0.0), ("top_p", 2.0), ("top_p", float("nan")),
    ("seed", -1), ("seed", 2**40), ("seed", 1.5),
    ("stop_token", -1), ("stop_token", VOCAB),
])
def test_meaningless_knobs_are_rejected_by_name(name, value):
  model, params = tiny_model("lstm")
  kw = {"max_new_tokens": 4, name: value}
  with pytest.raises(ValueError, match=rf"^{name} must be .*(integer|number|in \().*got"):
    generate(model, params, PROMPTS, **kw)


def test_float_and_nested_prompt_ids_are_rejected():
  model, params = tiny_model("lstm")
  with pytest.raises(ValueError, match="integer ids"):
    generate(model, params, [np.array([1.0, 2.7])], max_new_tokens=4)
  with pytest.raises(ValueError, match="1-D"):
    generate(model, params, [np.array([[1, 2]])], max_new_tokens=4)


def test_nearby_lengths_share_one_compile(monkeypatch):
  traces = []
  traced_loop = decode._generate_loop

  def counting_loop(*args):
    traces.append(1)  # runs once per trace, i.e. once per compile of the sampling loop
    return traced_loop(*args)

  monkeypatch.setattr(decode, "_generate_loop", counting_loop)
  model, params = tiny_model("lstm", d_model=24)  # a config no other test compiles
  for new in (30, 35, 41, 50, 57):  # the 7-token prompt plus each length pads to 64
    outs = generate(model, params, PROMPTS, max_new_tokens=new, seed=1)
    assert [len(x) for x in outs] == [new] * len(PROMPTS)
  assert len(traces) == 1


def test_bucketed_buffer_samples_what_an_exact_buffer_does(model_and_params, monkeypatch):
  model, params = model_and_params
  for use_cache in (True, False):
    kw = dict(max_new_tokens=NEW, temperature=1.0, seed=6, use_cache=use_cache)
    bucketed = generate(model, params, PROMPTS, **kw)
    shorter = generate(model, params, PROMPTS, **{**kw, "max_new_tokens": NEW - 9})
    with monkeypatch.context() as patch:
      patch.setattr(decode, "_bucket", lambda n: n)  # a buffer of exactly prompt + new tokens
      exact = generate(model, params, PROMPTS, **kw)
    for b, s, e in zip(bucketed, shorter, exact):
      np.testing.assert_array_equal(b, e)
      np.testing.assert_array_equal(s, b[:NEW - 9])


def test_sample_logits_filters():
  logits = jnp.log(jnp.tile(jnp.array([[0.5, 0.3, 0.15, 0.05]]), (400, 1)))
  draw = jax.jit(sample_logits)
  key = jax.random.PRNGKey(0)
  nucleus = draw(logits, key, jnp.float32(1.0), jnp.int32(0), jnp.float32(0.7))
  assert set(np.asarray(nucleus).tolist()) == {0, 1}  # 0.5 + 0.3 is the first mass >= 0.7
  top3 = draw(logits, key, jnp.float32(1.0), jnp.int32(3), jnp.float32(1.0))
  assert set(np.asarray(top3).tolist()) == {0, 1, 2}
  unfiltered = draw(logits, key, jnp.float32(1.0), jnp.int32(0), jnp.float32(1.0))
  assert set(np.asarray(unfiltered).tolist()) == {0, 1, 2, 3}
  greedy = draw(logits, key, jnp.float32(0.0), jnp.int32(0), jnp.float32(1.0))
  assert set(np.asarray(greedy).tolist()) == {0}

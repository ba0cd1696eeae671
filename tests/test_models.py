"""Model families: shapes, causality, decoding against the full pass, size tables, counts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abcjax.models import (GPTConfig, LSTMConfig, ModelConfig, build_model, config_class,
                           config_from_dict, count_params, get_config, names, size_table_markdown)

VOCAB = 20
ARCHS = ["gpt", "lstm", "gru"]
PUBLISHED = ["gpt", "lstm"]  # the study's families, with published size tables


def size_names(arch, table="A"):
  return config_class(arch).size_names(table)


def tiny_config(arch: str, **kw) -> ModelConfig:
  """The default small size shrunk to D=32, 2 layers, block 64 (nanodo's test config)."""
  fields = {"vocab_size": VOCAB, "block_size": 64, "n_layer": 2, "d_model": 32,
            **({"n_head": 4} if arch == "gpt" else {}), **kw}
  return get_config(arch, "small", **fields)


@pytest.fixture(scope="module", params=ARCHS)
def model_and_params(request):
  model = build_model(tiny_config(request.param))
  return model, model.init(jax.random.PRNGKey(0))


def random_tokens(shape, seed=1):
  return jax.random.randint(jax.random.PRNGKey(seed), shape, 0, VOCAB)


@pytest.mark.parametrize("use_jit", [False, True])
def test_shapes_and_finite(model_and_params, use_jit):
  model, params = model_and_params
  tokens = random_tokens((3, 17))
  apply = jax.jit(model.apply) if use_jit else model.apply
  logits = apply(params, tokens)
  assert logits.shape == (3, 17, VOCAB)
  assert logits.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits)))
  assert float(jnp.std(logits)) > 0.0


def test_params_are_float32(model_and_params):
  _, params = model_and_params
  assert {x.dtype for x in jax.tree_util.tree_leaves(params)} == {jnp.dtype(jnp.float32)}


def test_causality(model_and_params):
  model, params = model_and_params
  tokens = random_tokens((2, 24))
  changed_at = 13
  edited = tokens.at[:, changed_at].set((tokens[:, changed_at] + 1) % VOCAB)
  apply = jax.jit(model.apply)
  before, after = apply(params, tokens), apply(params, edited)
  np.testing.assert_array_equal(before[:, :changed_at], after[:, :changed_at])
  assert float(jnp.max(jnp.abs(before[:, changed_at:] - after[:, changed_at:]))) > 1e-4


def test_decode_steps_match_full_forward(model_and_params):
  model, params = model_and_params
  tokens = random_tokens((3, 30))
  full = jax.jit(model.apply)(params, tokens)
  state = model.init_decode_state(3, 64)
  step = jax.jit(model.decode_step)
  stepped = []
  for t in range(tokens.shape[1]):
    logits, state = step(params, state, tokens[:, t])
    stepped.append(logits)
  np.testing.assert_allclose(np.stack(stepped, axis=1), full, atol=2e-5, rtol=1e-5)


def test_gpt_cache_refill_past_block_size():
  model = build_model(tiny_config("gpt", block_size=16))
  params = model.init(jax.random.PRNGKey(0))
  tokens = random_tokens((2, 40))
  state = model.init_decode_state(2, 40)
  step, apply = jax.jit(model.decode_step), jax.jit(model.apply)
  for t in range(tokens.shape[1]):
    logits, state = step(params, state, tokens[:, t])
    # Documented semantics: the cache holds block positions; when full it restarts from the last
    # block//2 tokens, so after a refill at step 16, 24, 32 the window starts 8 tokens back.
    start = 0 if t < 16 else 8 * ((t - 16) // 8) + 8
    # Pad the window to one width (causal, so padding after it is harmless): one compile.
    window = jnp.zeros((2, 16), jnp.int32).at[:, :t + 1 - start].set(tokens[:, start:t + 1])
    expected = apply(params, window)[:, t - start]
    np.testing.assert_allclose(logits, expected, atol=2e-5, rtol=1e-5, err_msg=f"step {t}")
  assert int(state["pos"]) == 40 - 32 + 8


def test_gpt_rejects_sequences_longer_than_block():
  model = build_model(tiny_config("gpt", block_size=16))
  params = model.init(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match="block_size"):
    model.apply(params, random_tokens((1, 17)))


@pytest.mark.parametrize("arch", ARCHS)
def test_bfloat16_close_to_float32(arch):
  cfg = tiny_config(arch)
  model32, model16 = build_model(cfg), build_model(cfg.replace(dtype="bfloat16"))
  params = model32.init(jax.random.PRNGKey(0))
  tokens = random_tokens((2, 32))
  logits32 = jax.jit(model32.apply)(params, tokens)
  logits16 = jax.jit(model16.apply)(params, tokens)
  assert logits16.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(logits16)))
  assert float(jnp.max(jnp.abs(logits16 - logits32))) < 0.1 * float(jnp.max(jnp.abs(logits32)))
  assert not np.array_equal(logits16, logits32)  # bf16 compute did happen
  state = model16.init_decode_state(2, 8)
  step_logits, _ = jax.jit(model16.decode_step)(params, state, tokens[:, 0])
  np.testing.assert_allclose(step_logits, logits16[:, 0], atol=0.05)


@pytest.mark.parametrize("arch", ARCHS)
def test_dropout_only_in_training(arch):
  model = build_model(tiny_config(arch, dropout=0.5))
  params = model.init(jax.random.PRNGKey(0))
  tokens = random_tokens((2, 16))
  apply = jax.jit(model.apply, static_argnames="train")
  eval_logits = apply(params, tokens)
  np.testing.assert_array_equal(eval_logits, apply(params, tokens))
  train_a = apply(params, tokens, train=True, dropout_rng=jax.random.PRNGKey(1))
  train_b = apply(params, tokens, train=True, dropout_rng=jax.random.PRNGKey(2))
  assert float(jnp.max(jnp.abs(train_a - eval_logits))) > 1e-3
  assert float(jnp.max(jnp.abs(train_a - train_b))) > 1e-3
  with pytest.raises(ValueError, match="dropout_rng"):
    model.apply(params, tokens, train=True)


@pytest.mark.parametrize("arch", ARCHS)
def test_num_params_equals_real_param_tree(arch):
  for cfg in [tiny_config(arch), tiny_config(arch, n_layer=3, d_model=48, vocab_size=99)]:
    model = build_model(cfg)
    assert count_params(model.init(jax.random.PRNGKey(0))) == cfg.num_params()


@pytest.mark.parametrize("table", ["A", "B"])
@pytest.mark.parametrize("arch", ARCHS)
def test_table_counts_match_param_shapes(arch, table):
  for size in size_names(arch, table):
    cfg = get_config(arch, size, vocab_size=99, table=table)
    shapes = jax.eval_shape(build_model(cfg).init, jax.random.PRNGKey(0))
    assert count_params(shapes) == cfg.num_params(), (arch, table, size)


@pytest.mark.parametrize("arch", PUBLISHED)
def test_table_a_counts_match_published_within_1_percent(arch):
  published = config_class(arch).PUBLISHED_PARAMS["A"]
  assert list(published) == size_names(arch, "A")
  for size, count in published.items():
    n = get_config(arch, size, vocab_size=99, table="A").num_params()
    assert abs(n - count) <= 0.01 * count, (size, n, count)
  if arch == "lstm":  # these four are published to the parameter
    assert [get_config("lstm", s, vocab_size=99).num_params() for s in published] == list(
        published.values())


@pytest.mark.parametrize("arch", PUBLISHED)
def test_table_b_published_sizes_within_5_percent(arch):
  published = config_class(arch).PUBLISHED_PARAMS["B"]
  assert published
  for size, count in published.items():
    n = get_config(arch, size, vocab_size=99, table="B").num_params()
    assert abs(n - count) <= 0.05 * count, (size, n, count)


@pytest.mark.parametrize("arch", PUBLISHED)
def test_table_b_steps_geometrically(arch):
  counts = [get_config(arch, s, vocab_size=99, table="B").num_params()
            for s in size_names(arch, "B")]
  ratios = np.array(counts[1:]) / np.array(counts[:-1])
  assert np.all(ratios > 1.0)
  # the chosen sizes (all but large->xl, fixed by the write-up) step within 20% of each other
  steps = ratios[:3]
  assert steps.max() / steps.min() < 1.2, ratios


def test_published_table_b_shapes():
  gpt = GPTConfig.SIZES["B"]
  assert (gpt["tiny"]["n_layer"], gpt["tiny"]["n_head"]) == (3, 3)
  assert (gpt["large"]["n_layer"], gpt["large"]["n_head"]) == (8, 12)
  assert (gpt["xl"]["n_layer"], gpt["xl"]["n_head"]) == (12, 12)
  assert LSTMConfig.SIZES["B"]["large"] == {"n_layer": 5, "d_model": 1024}


def test_flops_per_token_formula():
  cfg = get_config("gpt", "tiny", vocab_size=99)  # 2 layers, d 192, block 256
  d, n_layer, vocab, block = 192, 2, 99, 256
  non_emb = n_layer * (12 * d * d + 9 * d) + 2 * d
  assert cfg.num_non_embedding_params() == non_emb
  assert cfg.num_params() == non_emb + vocab * d + block * d
  assert cfg.flops_per_token() == 6 * non_emb + 6 * d * vocab + 6 * n_layer * block * d
  lstm = get_config("lstm", "small", vocab_size=99)
  assert lstm.flops_per_token() == 6 * lstm.num_non_embedding_params() + 6 * 256 * 99
  sizes = [get_config("gpt", s, vocab_size=99).flops_per_token() for s in size_names("gpt")]
  assert sizes == sorted(sizes)


def test_unknown_names_raise_value_error_naming_choices():
  with pytest.raises(ValueError, match="tiny"):
    get_config("gpt", "huge", vocab_size=99)
  with pytest.raises(ValueError, match="lstm"):
    get_config("rnn", "tiny", vocab_size=99)
  with pytest.raises(ValueError, match="'A', 'B'"):
    get_config("gpt", "tiny", vocab_size=99, table="C")
  with pytest.raises(ValueError, match="'A', 'B'"):
    size_names("gpt", "C")
  with pytest.raises(ValueError, match="xl"):
    get_config("lstm", "xl", vocab_size=99)  # four LSTM sizes only
  with pytest.raises(ValueError, match="gpt configs have no fields"):
    get_config("gpt", "tiny", vocab_size=99, n_heads=4)
  with pytest.raises(ValueError, match="dtype"):
    get_config("gpt", "tiny", vocab_size=99, dtype="float16")


def test_config_round_trip_and_custom():
  cfg = get_config("gpt", "large", vocab_size=99, table="B", dtype="bfloat16")
  assert (cfg.n_layer, cfg.n_head, cfg.d_model, cfg.table, cfg.size) == (8, 12, 720, "B", "large")
  assert config_from_dict(cfg.to_dict()) == cfg
  assert cfg.to_dict()["table"] == "B"
  assert cfg.replace(dropout=0.1).dropout == 0.1
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.n_layer = 3  # type: ignore[misc]
  assert get_config("gpt", "tiny", vocab_size=99, d_model=64, n_head=4).size == "custom"
  assert get_config("gpt", "tiny", vocab_size=99, n_layer=2).size == "tiny"  # same as the table
  assert cfg.replace(n_layer=4).size == "custom"  # another shape is not the table's size
  assert cfg.replace(dtype="float32").size == "large"
  custom = get_config("lstm", "custom", vocab_size=99, n_layer=2, d_model=64)
  assert custom.size == "custom" and not hasattr(custom, "n_head")
  with pytest.raises(ValueError, match="lstm configs have no fields"):
    get_config("lstm", "custom", vocab_size=99, n_layer=2, n_head=4)


def test_size_table_markdown():
  for table in ["A", "B"]:
    md = size_table_markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == sum(len(size_names(a, table)) for a in names()) == 13
    for arch in ARCHS:
      for size in size_names(arch, table):
        n = get_config(arch, size, vocab_size=99, table=table).num_params()
        assert any(f"| {arch} | {size} |" in r and f"{n:,}" in r for r in rows)
  assert "100,067,136" in size_table_markdown("A")
  assert "6,355,456" in size_table_markdown("A")


def test_attention_kernel_choice():
  from abcjax.models.gpt import attention_impl
  cfg = get_config("gpt", "tiny", vocab_size=11, block_size=8)
  assert cfg.attention == "auto"
  assert attention_impl(cfg) == "blocked"  # no GPU here: auto picks the CPU kernel
  with pytest.raises(ValueError, match="model.attention must be one of"):
    get_config("gpt", "tiny", vocab_size=11, attention="flash")
  cudnn = cfg.replace(attention="cudnn")
  model = build_model(cudnn)
  with pytest.raises(ValueError, match="attention='cudnn' needs an NVIDIA GPU"):
    model.init(jax.random.key(0))


@pytest.mark.parametrize("length,block", [(64, None), (256, 64), (48, 16), (7, None)])
def test_blocked_attention_equals_full_square(length, block):
  from abcjax.models.gpt import blocked_causal_attention, causal_attention
  keys = jax.random.split(jax.random.key(length), 4)
  q, k, v = (jax.random.normal(key, (2, length, 3, 16)) for key in keys[:3])
  cotangent = jax.random.normal(keys[3], q.shape)
  full = lambda q, k, v: causal_attention(q, k, v, "xla")
  blocked = lambda q, k, v: blocked_causal_attention(q, k, v, block)
  np.testing.assert_allclose(np.asarray(blocked(q, k, v)), np.asarray(full(q, k, v)),
                             rtol=1e-5, atol=1e-6)
  grads = [jax.grad(lambda *a: jnp.sum(f(*a) * cotangent), argnums=(0, 1, 2))(q, k, v)
           for f in (blocked, full)]
  for got, want in zip(*grads):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("head_dim", [60, 72])
def test_padded_head_width_attention_is_the_same_function(head_dim):
  # cuDNN needs head widths in multiples of 8 (table B large has 60): padding must not change
  # the result. Checked through the XLA kernel, which runs anywhere.
  from abcjax.models.gpt import causal_attention
  keys = jax.random.split(jax.random.key(head_dim), 3)
  q, k, v = (jax.random.normal(key, (2, 16, 3, head_dim)) for key in keys)
  plain = causal_attention(q, k, v, "xla")
  padded = causal_attention(q, k, v, "xla", head_multiple=32)
  assert padded.shape == plain.shape
  np.testing.assert_allclose(np.asarray(padded), np.asarray(plain), rtol=1e-5, atol=1e-6)


def test_one_hot_embedding_equals_gather_with_its_gradient():
  from abcjax.models.layers import embed
  table = jax.random.normal(jax.random.key(0), (13, 5))
  tokens = jax.random.randint(jax.random.key(1), (4, 7), 0, 13)
  weights = jax.random.normal(jax.random.key(2), (4, 7, 5))
  np.testing.assert_array_equal(np.asarray(embed(table, tokens, one_hot=True)),
                                np.asarray(embed(table, tokens, one_hot=False)))
  grad = lambda one_hot: jax.grad(lambda t: jnp.sum(embed(t, tokens, one_hot) * weights))(table)
  np.testing.assert_allclose(np.asarray(grad(True)), np.asarray(grad(False)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5)])
def test_flat_grad_matmul_equals_autodiff(shape):
  from abcjax.models.layers import flat_grad_dot_general
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), (5, 7))
  dy = jax.random.normal(jax.random.key(2), shape[:-1] + (7,))
  dims = (((x.ndim - 1,), (0,)), ((), ()))
  ref_y, ref_vjp = jax.vjp(lambda x, w: jax.lax.dot_general(x, w, dims), x, w)
  y, vjp = jax.vjp(lambda x, w: flat_grad_dot_general(x, w, dims), x, w)
  np.testing.assert_allclose(np.asarray(y), np.asarray(ref_y), rtol=1e-6, atol=1e-6)
  for got, want in zip(vjp(dy), ref_vjp(dy)):
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
  # Anything but the plain Dense contraction goes to lax.dot_general unchanged.
  wt = w.T
  other = (((x.ndim - 1,), (1,)), ((), ()))
  np.testing.assert_array_equal(np.asarray(flat_grad_dot_general(x, wt, other)),
                                np.asarray(jax.lax.dot_general(x, wt, other)))


def _lstm_loss_and_grads(config, tokens):
  model = build_model(config)
  params = model.init(jax.random.PRNGKey(0))
  loss = lambda p: jnp.mean(jax.nn.log_softmax(model.apply(p, tokens[:, :-1]))[..., 3]
                            * jnp.arange(tokens.shape[1] - 1))
  return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_lstm_manual_backward_equals_scan_autodiff(dtype):
  tokens = random_tokens((3, 17))
  results = {manual: _lstm_loss_and_grads(tiny_config("lstm", n_layer=3, dtype=dtype,
                                                      cpu_backward=manual), tokens)
             for manual in (True, False)}
  tol = 1e-5 if dtype == "float32" else 3e-2
  assert float(results[True][0]) == pytest.approx(float(results[False][0]), rel=tol)
  flat_manual = jax.tree_util.tree_leaves_with_path(results[True][1])
  flat_auto = jax.tree.leaves(results[False][1])
  for (path, got), want in zip(flat_manual, flat_auto):
    scale = float(jnp.max(jnp.abs(want))) + 1e-12
    err = float(jnp.max(jnp.abs(got.astype(jnp.float32) - want.astype(jnp.float32)))) / scale
    assert err < tol, (jax.tree_util.keystr(path), err)
    assert float(jnp.max(jnp.abs(want))) > 0, jax.tree_util.keystr(path)  # every weight is trained


def test_lstm_first_layer_table_projection_equals_per_token_projection():
  """(wte @ W_ih)[tokens], used when V < B*L, is the per-token projection wte[tokens] @ W_ih."""
  tokens = random_tokens((2, 9))
  config = tiny_config("lstm")
  assert config.vocab_size > tokens.size                 # 20 > 18: per-token path
  model = build_model(config)
  params = model.init(jax.random.PRNGKey(0))
  per_token = model.apply(params, tokens)
  many = jnp.tile(tokens, (3, 1))                        # 54 tokens > V: table path
  table = model.apply(params, many)[:2]
  np.testing.assert_allclose(np.asarray(table), np.asarray(per_token), rtol=1e-5, atol=1e-5)


def test_lstm_manual_backward_carries_the_state_gradients():
  """A layer from a random (c0, h0), with a loss on its outputs and on its final (c, h)."""
  from abcjax.models import lstm
  config = tiny_config("lstm")
  layer = lstm.LSTMLayer(config)
  xproj = jax.random.normal(jax.random.key(0), (7, 3, 4 * config.d_model))
  carry = tuple(jax.random.normal(jax.random.key(i), (3, config.d_model)) for i in (1, 2))
  params = layer.init(jax.random.key(3), xproj, carry)
  weights = [jax.random.normal(jax.random.key(4 + i), s)
             for i, s in enumerate([(7, 3, config.d_model), (3, config.d_model), (3, config.d_model)])]

  def loss(params, xproj, carry, manual):
    layer = lstm.LSTMLayer(config.replace(cpu_backward=manual))
    (c, h), hs = layer.apply(params, xproj, carry)
    return jnp.sum(hs * weights[0]) + jnp.sum(c * weights[1]) + jnp.sum(h * weights[2])

  grads = {manual: jax.grad(loss, argnums=(0, 1, 2))(params, xproj, carry, manual)
           for manual in (True, False)}
  for got, want in zip(jax.tree.leaves(grads[True]), jax.tree.leaves(grads[False])):
    assert got.dtype == want.dtype
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-6)
  d_params, d_xproj, d_carry = grads[False]
  for g in (d_params["params"]["hh"]["kernel"], d_xproj, *d_carry):
    assert float(jnp.max(jnp.abs(g))) > 0


def _custom_vjp_calls(config) -> int:
  """The functions with a custom VJP in the jaxpr of the model's forward pass."""
  model = build_model(config)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  return str(jax.make_jaxpr(lambda p: model.apply(p, random_tokens((2, 8))))(params)).count(
      "custom_vjp_call")


@pytest.mark.parametrize("arch", ARCHS)
def test_cpu_backward_is_opt_in(arch):
  """By default the models are differentiated by JAX itself, on every backend; the config's
  cpu_backward puts in the hand-written backward passes."""
  from abcjax.models.layers import dense_dot_general, flat_grad_dot_general
  assert dense_dot_general(False) is jax.lax.dot_general
  assert dense_dot_general(True) is flat_grad_dot_general
  config = tiny_config(arch)
  assert config.cpu_backward is False and config_from_dict(
      {k: v for k, v in config.to_dict().items() if k != "cpu_backward"}) == config
  assert _custom_vjp_calls(config) == 0
  # GPT: c_attn, attention c_proj, c_fc, mlp c_proj in each of the 2 blocks. LSTM: W_ih of each
  # of the 2 layers (the first one projects the table) and the recurrence of each layer. GRU: W_ih
  # of each layer.
  least = {"gpt": 8, "lstm": 4, "gru": 2}[arch]
  assert _custom_vjp_calls(config.replace(cpu_backward=True)) >= least


@pytest.mark.parametrize("arch", ARCHS)
def test_both_gradient_paths_agree_and_train_alike(arch):
  """cpu_backward=True and False: the same loss and gradients (float32), and one AdamW step
  leaves the same parameters."""
  from abcjax.train import step as step_lib
  from abcjax.train.config import OptimizerConfig
  from abcjax.train.optimizer import make_optimizer
  tokens = random_tokens((4, 33))
  tx = make_optimizer(OptimizerConfig(lr=1e-2, warmup_frac=0.0), total_steps=10)
  mesh = step_lib.make_mesh()
  grads, stepped = {}, {}
  for manual in (True, False):
    model = build_model(tiny_config(arch, cpu_backward=manual))
    state = step_lib.init_state(model, tx, jax.random.PRNGKey(0), mesh)
    loss = lambda p: step_lib.cross_entropy(model.apply(p, tokens[:, :-1]), tokens[:, 1:]).mean()
    grads[manual] = jax.jit(jax.value_and_grad(loss))(state.params)
    init = jax.tree.map(np.array, state.params)  # a copy (the step donates it); same either way
    step = step_lib.make_train_step(model, tx, mesh, jax.random.PRNGKey(1))
    stepped[manual] = jax.tree.map(np.asarray, step(state, step_lib.global_batch(tokens, mesh))[0])
  assert float(grads[True][0]) == pytest.approx(float(grads[False][0]), rel=1e-6)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads[True][1]),
                               jax.tree.leaves(grads[False][1])):
    assert float(jnp.max(jnp.abs(want))) > 0, jax.tree_util.keystr(path)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  for got, want, before in zip(jax.tree.leaves(stepped[True].params),
                               jax.tree.leaves(stepped[False].params), jax.tree.leaves(init)):
    assert np.abs(want - before).max() > 1e-3  # the step moved every parameter array
    # Adam's first step is about lr * g / |g|: small gradients' rounding shows up as a fraction of
    # lr (1e-2), so the bound is a thousandth of the step.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)

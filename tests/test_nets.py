"""Tests for jaxcond.nets: shapes, PyTorch init, jittable draws, taps, norms, errors.

Shape checks use `jax.eval_shape` (trace only, no XLA compile) so every registry name
is covered cheaply; numeric checks compile a representative subset on tiny batches.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import nets
from jaxcond.errors import ConfigError
from jaxcond.nets import cpu_conv, torch_init

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
TINY = (64, 64, 3)
BN_NAMES = {"convnet_bn", "convnet_aswish_bn", "alexnet_bn", "vgg11_bn", "resnet18_bn",
            "resnet18_bn_ap"}


def _abstract_forward(model, shape, batch=2, train=False, taps=False):
  """Shapes of (logits, batch_stats) and embed output, without compiling."""
  x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  variables = nets.variable_shapes(model, shape)

  def run(variables, x):
    return (nets.logits(model, variables, x, train=train),
            nets.embed(model, variables, x, train=train, taps=taps))

  return jax.eval_shape(run, variables, x)


def _images(seed, shape):
  """Standard-normal float32 test images from NumPy (no per-shape XLA compile)."""
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _jitted_init(name, shape):
  """(model, jitted key -> variables), compiled once per test session."""
  model = nets.get_model(name, num_classes=10, image_shape=shape)
  return model, jax.jit(lambda key: nets.init_variables(model, key, shape))


@functools.lru_cache(maxsize=None)
def _net(name, shape, seed=0):
  """(model, variables) drawn with the shared jitted init."""
  model, init = _jitted_init(name, shape)
  return model, init(jax.random.key(seed))


def test_model_names_match_design():
  expected = ("convnet", *(f"convnetd{d}" for d in range(1, 7)), "convnet_bn",
              "convnet_ln", "convnet_gn", "convnet_nn",
              *(f"convnetw{w}" for w in (32, 64, 128, 256)), "convnet_mp", "convnet_np",
              "convnet_as", "convnet_al", "convnet_aswish", "convnet_aswish_bn", "mlp",
              "lenet", "alexnet", "alexnet_bn", "vgg11", "vgg11_bn", "resnet18",
              "resnet18_bn", "resnet18_ap", "resnet18_bn_ap", "resnetap10")
  assert set(nets.MODEL_NAMES) == set(expected)
  assert len(nets.MODEL_NAMES) == len(expected)


@pytest.mark.parametrize("shape", [MNIST, CIFAR], ids=["28x28x1", "32x32x3"])
def test_output_shapes_every_model(shape):
  for name in nets.MODEL_NAMES:
    if name == "convnetd6":   # 32 / 2**6 < 1: rejected, see test_too_small_image
      continue
    model = nets.get_model(name, num_classes=7, image_shape=shape)
    variables = nets.variable_shapes(model, shape)
    x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
    out, stats = jax.eval_shape(
        lambda v, x: nets.logits(model, v, x, train=True), variables, x)
    assert out.shape == (3, 7), name
    assert (stats is not None) == (name in BN_NAMES), name
    assert (stats is None) or set(stats) == set(variables["batch_stats"]), name
    # the classifier is a Dense on the embedding (embed shapes: see the taps tests)
    classifier = variables["params"]["Dense_" + str(
        {"mlp": 2, "lenet": 2}.get(name, 0))]["kernel"]
    assert classifier.shape[1] == 7 and classifier.shape[0] > 0, name


@pytest.mark.parametrize("name,dim", [("convnetd4", 2048), ("resnet18", 512),
                                      ("resnet18_ap", 512 * 8 * 8), ("vgg11", 512 * 4),
                                      ("alexnet", 192 * 8 * 8), ("resnetap10", 512),
                                      ("convnetd6", 128)])
def test_output_shapes_64px(name, dim):
  model = nets.get_model(name, num_classes=200, image_shape=TINY)
  (out, _), feats = _abstract_forward(model, TINY)
  assert out.shape == (2, 200)
  assert feats.shape == (2, dim)


@pytest.mark.parametrize("shape,depth", [(CIFAR, 3), (MNIST, 3), (TINY, 4),
                                         ((128, 128, 3), 5)])
def test_convnet_feature_dim_is_2048(shape, depth):
  model = nets.get_model("convnet", num_classes=10, image_shape=shape, depth=depth)
  assert nets.feature_dim(model, shape) == 2048


@pytest.mark.parametrize("name,shape", [
    ("convnet_ln", MNIST), ("convnet_aswish_bn", CIFAR),
    ("mlp", MNIST), ("lenet", MNIST), ("alexnet_bn", MNIST), ("resnet18_bn", CIFAR),
    ("resnetap10", (64, 64, 3))])
def test_logits_finite(name, shape):
  """Compiled forward passes, one per module class / norm kind (every registry name is
  shape-checked by tracing above; compiling all of them would take minutes on CPU)."""
  model = nets.get_model(name, num_classes=10, image_shape=shape)
  has_bn = name in BN_NAMES

  @jax.jit
  def run(key, x):
    variables = nets.init_variables(model, key, shape)
    outs = [nets.logits(model, variables, x, train=True)[0]]
    if has_bn:
      outs.append(nets.logits(model, variables, x, train=False)[0])
    return outs

  x = _images(1, (2, *shape))
  for out in run(jax.random.key(0), x):
    assert out.shape == (2, 10)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.std(out)) > 0


def _check_uniform(samples, bound, what):
  samples = np.asarray(samples, np.float64).ravel()
  n = samples.size
  assert np.all(np.abs(samples) <= bound * (1 + 1e-6)), what
  assert np.max(np.abs(samples)) > 0.95 * bound, what        # fills the interval
  var = bound ** 2 / 3
  # sd of the sample variance of a uniform is var * sqrt(0.8 / n)
  assert abs(samples.var() - var) < max(0.03, 5 * math.sqrt(0.8 / n)) * var, what
  assert abs(samples.mean()) < 5 * math.sqrt(var / n), what


@pytest.mark.parametrize("name,shape", [("convnet", CIFAR), ("lenet", MNIST)])
def test_init_matches_pytorch_default(name, shape):
  """Weights and biases ~ U(±1/sqrt(fan_in)); norm scale 1 and shift 0."""
  _, init = _jitted_init(name, shape)
  draws = [init(jax.random.key(seed)) for seed in range(100, 124)]
  many = jax.tree.map(lambda *leaves: np.stack(leaves), *draws)
  checked = 0
  for module_name, module in many["params"].items():
    if "kernel" in module:
      fan_in = math.prod(module["kernel"].shape[1:-1])   # leading axis: keys
      bound = 1 / math.sqrt(fan_in)
      _check_uniform(module["kernel"], bound, f"{name}/{module_name}/kernel")
      _check_uniform(module["bias"], bound, f"{name}/{module_name}/bias")
      checked += 1
    else:
      np.testing.assert_array_equal(module["scale"], 1.0)
      np.testing.assert_array_equal(module["bias"], 0.0)
  assert checked >= 3


def test_flax_initializers_are_pytorch_default():
  """model.init (flax initializers) draws from the same distribution."""
  @jax.jit
  def draw(key):
    k1, k2 = jax.random.split(key)
    return (torch_init.torch_kernel_init(k1, (3, 3, 64, 128)),
            torch_init.torch_bias_init(576)(k2, (20000,)))

  kernel, bias = draw(jax.random.key(0, impl="rbg"))   # rbg: compiles fast on CPU
  _check_uniform(kernel, 1 / math.sqrt(3 * 3 * 64), "conv kernel")
  _check_uniform(bias, 1 / math.sqrt(576), "bias")


def test_bn_nets_have_unit_running_stats():
  _, variables = _net("convnet_bn", CIFAR)
  stats = variables["batch_stats"]
  assert len(stats) == 3
  for layer in stats.values():
    np.testing.assert_array_equal(layer["mean"], 0.0)
    np.testing.assert_array_equal(layer["var"], 1.0)


def test_jit_init_with_traced_key():
  model, init = _jitted_init("convnet", CIFAR)
  a, a_again, b = init(jax.random.key(0)), init(jax.random.key(0)), init(jax.random.key(1))
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  for x, y in zip(leaves_a, jax.tree.leaves(a_again)):
    np.testing.assert_array_equal(x, y)
  kernels = [(x, y) for x, y in zip(leaves_a, leaves_b) if x.ndim >= 2]
  assert len(kernels) == 4
  for x, y in kernels:
    assert not np.allclose(x, y)
  abstract = nets.variable_shapes(model, CIFAR)
  assert jax.tree.structure(a) == jax.tree.structure(abstract)
  assert all(x.dtype == jnp.float32 for x in leaves_a)
  # the nets compute different features
  x = _images(2, (2, *CIFAR))
  f = jax.jit(lambda v: nets.embed(model, v, x))
  assert not np.allclose(f(a), f(b))


@pytest.mark.parametrize("name,shape,conv_shapes", [
    ("convnet", CIFAR, [(32, 32, 128), (16, 16, 128), (8, 8, 128)]),
    ("convnet", MNIST, [(32, 32, 128), (16, 16, 128), (8, 8, 128)]),
    ("convnetd4", TINY, [(64, 64, 128), (32, 32, 128), (16, 16, 128), (8, 8, 128)]),
    ("convnet_np", CIFAR, [(32, 32, 128)] * 3),
    ("lenet", MNIST, [(28, 28, 6), (10, 10, 16)]),
    ("alexnet", CIFAR, [(32, 32, 128), (16, 16, 192), (8, 8, 256), (8, 8, 192),
                        (8, 8, 192)]),
    ("vgg11", MNIST, [(32, 32, 64), (16, 16, 128), (8, 8, 256), (8, 8, 256),
                      (4, 4, 512), (4, 4, 512), (2, 2, 512), (2, 2, 512)]),
    ("resnet18", CIFAR, [(32, 32, 64)] * 5 + [(16, 16, 128)] * 4 + [(8, 8, 256)] * 4
     + [(4, 4, 512)] * 4),
    ("resnet18_ap", CIFAR, [(32, 32, 64)] * 5 + [(32, 32, 128)] + [(16, 16, 128)] * 3
     + [(16, 16, 256)] + [(8, 8, 256)] * 3 + [(8, 8, 512)] + [(4, 4, 512)] * 3),
])
def test_taps_count_and_shapes(name, shape, conv_shapes):
  model = nets.get_model(name, num_classes=10, image_shape=shape)
  _, (feats, taps) = _abstract_forward(model, shape, batch=2, taps=True)
  assert feats.shape == (2, nets.feature_dim(model, shape))
  assert set(taps) == {"conv", "norm"}
  assert [t.shape[1:] for t in taps["conv"]] == conv_shapes
  assert [t.shape for t in taps["norm"]] == [t.shape for t in taps["conv"]]


def test_taps_off_returns_features_only():
  model = nets.get_model("convnetd1", num_classes=10, image_shape=CIFAR)
  _, feats = _abstract_forward(model, CIFAR, taps=False)
  assert isinstance(feats, jax.ShapeDtypeStruct)


def _numpy_instance_norm(x, eps=1e-5):
  x = np.asarray(x, np.float64)
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = x.var(axis=(1, 2), keepdims=True)
  return (x - mean) / np.sqrt(var + eps)


def test_instance_norm_matches_numpy():
  x = 3.0 + 2.0 * _images(0, (4, 6, 5, 8))
  layer = torch_init.InstanceNorm()
  params = jax.eval_shape(layer.init, jax.random.key(1), x)["params"]
  assert params["scale"].shape == params["bias"].shape == (8,)
  scale = np.linspace(0.5, 2.0, 8, dtype=np.float32)
  bias = np.linspace(-1.0, 1.0, 8, dtype=np.float32)
  out = jax.jit(layer.apply)({"params": {"scale": scale, "bias": bias}}, x)
  np.testing.assert_allclose(out, _numpy_instance_norm(x) * scale + bias,
                             rtol=1e-5, atol=1e-5)


def test_convnet_norm_taps_are_instance_normalised_conv_taps():
  model, variables = _net("convnet", CIFAR)
  x = _images(1, (3, *CIFAR))
  _, taps = jax.jit(lambda v, x: nets.embed(model, v, x, taps=True))(variables, x)
  for conv, norm in zip(taps["conv"], taps["norm"]):
    np.testing.assert_allclose(norm, _numpy_instance_norm(conv), rtol=1e-4, atol=1e-4)
  assert not np.allclose(taps["conv"][0], taps["norm"][0])


def _numpy_group_norm(x, groups, eps=1e-5):
  x = np.asarray(x, np.float64)
  n, h, w, c = x.shape
  g = x.reshape(n, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)


@pytest.mark.parametrize("norm,reference,affine_shape", [
    ("group", lambda y: _numpy_group_norm(y, 4), (8,)),
    ("layer", lambda y: _numpy_group_norm(y, 1), (8, 8, 8)),   # stats over (H, W, C)
    ("none", lambda y: y, None)])
def test_group_layer_and_no_norm(norm, reference, affine_shape):
  """GroupNorm(4, C); DM's LayerNorm([C, H, W]) = stats over (H, W, C) per sample with
  an elementwise affine; "none" leaves the conv output untouched."""
  shape = (8, 8, 3)
  model = nets.get_model("convnetd2", num_classes=10, image_shape=shape, width=8,
                         norm=norm)
  params = nets.variable_shapes(model, shape)["params"]
  norm_params = [v for k, v in params.items() if not k.startswith(("Conv", "Dense"))]
  if affine_shape is None:
    assert not norm_params
  else:
    assert len(norm_params) == 2 and norm_params[0]["scale"].shape == affine_shape
  x = 1.0 + _images(0, (3, *shape))
  run = jax.jit(lambda key, x: nets.embed(
      model, nets.init_variables(model, key, shape), x, taps=True))
  _, taps = run(jax.random.key(0), x)
  for conv, normed in zip(taps["conv"], taps["norm"]):
    np.testing.assert_allclose(normed, reference(conv), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,stem_kernel,first_map", [(64, 3, 64), (96, 3, 48),
                                                        (224, 7, 56)])
def test_resnetap10_idc_stem(size, stem_kernel, first_map):
  shape = (size, size, 3)
  model = nets.get_model("resnetap10", num_classes=10, image_shape=shape)
  params = nets.variable_shapes(model, shape)["params"]
  assert params["Conv_0"]["kernel"].shape == (stem_kernel, stem_kernel, 3, 64)
  assert "bias" not in params["Conv_0"]          # conv before a norm has no bias
  assert sorted(k for k in params if k.startswith("BasicBlock")) == [
      f"BasicBlock_{i}" for i in range(4)]
  _, (feats, taps) = _abstract_forward(model, shape, batch=1, taps=True)
  assert feats.shape == (1, 512)
  assert len(taps["conv"]) == 1 + 4 * 2
  assert taps["conv"][1].shape == (1, first_map, first_map, 64)
  assert taps["conv"][-1].shape == (1, first_map // 8, first_map // 8, 512)


def test_fold_classes_into_batch_is_exact_for_instance_norm():
  model, variables = _net("convnet", CIFAR)
  a = _images(1, (4, *CIFAR))
  b = 0.5 + _images(2, (2, *CIFAR))
  f = jax.jit(lambda x: nets.embed(model, variables, x, train=True))
  joint = f(jnp.concatenate([a, b]))
  np.testing.assert_allclose(joint, jnp.concatenate([f(a), f(b)]), rtol=1e-5, atol=1e-5)


def test_batch_norm_train_mode_uses_batch_statistics():
  model, variables = _net("convnet_bn", CIFAR)
  x = 1.0 + _images(1, (4, *CIFAR))

  @jax.jit
  def run(variables, x):
    feats, taps = nets.embed(model, variables, x, train=True, taps=True)
    out, stats = nets.logits(model, variables, x, train=True)
    eval_out, eval_stats = nets.logits(model, variables, x, train=False)
    return feats, taps, stats, eval_out, nets.embed(model, variables, x[:2], train=True)

  feats, taps, stats, eval_out, feats_half = run(variables, x)
  conv0 = np.asarray(taps["conv"][0], np.float64)
  norm0 = np.asarray(taps["norm"][0], np.float64)
  mean, var = conv0.mean(axis=(0, 1, 2)), conv0.var(axis=(0, 1, 2))
  np.testing.assert_allclose(norm0, (conv0 - mean) / np.sqrt(var + 1e-5), atol=1e-4)
  # torch momentum 0.1: running = 0.9 * old + 0.1 * batch (old mean 0, var 1)
  np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], 0.1 * mean, atol=1e-5)
  np.testing.assert_allclose(stats["BatchNorm_0"]["var"], 0.9 + 0.1 * var, rtol=1e-4)
  assert bool(jnp.all(jnp.isfinite(eval_out)))
  # batch statistics make BN features depend on the rest of the batch
  assert not np.allclose(feats[:2], feats_half, atol=1e-4)


def test_eval_mode_returns_no_stats_and_non_bn_returns_none():
  bn = nets.get_model("convnet_bn", num_classes=10, image_shape=CIFAR)
  (out, stats), _ = _abstract_forward(bn, CIFAR, train=False)
  assert stats is None
  inorm = nets.get_model("convnet", num_classes=10, image_shape=CIFAR)
  (out, stats), _ = _abstract_forward(inorm, CIFAR, train=True)
  assert stats is None


@pytest.mark.parametrize("name", ["convnet"])
def test_input_gradient_finite_and_nonzero(name):
  model, variables = _net(name, CIFAR)
  x = _images(1, (3, *CIFAR))

  @jax.jit
  def grad(x):
    real = jnp.mean(nets.embed(model, variables, -x, train=True), axis=0)

    def loss(x):
      feats = nets.embed(model, variables, x, train=True)
      return jnp.sum(jnp.square(jnp.mean(feats, axis=0) - jax.lax.stop_gradient(real)))

    return jax.grad(loss)(x)

  g = grad(x)
  assert g.shape == x.shape
  assert bool(jnp.all(jnp.isfinite(g)))
  assert float(jnp.max(jnp.abs(g))) > 0


def test_registry_is_case_insensitive_and_takes_overrides():
  model = nets.get_model("ConvNet_BN", num_classes=10, image_shape=CIFAR)
  assert model.norm == "batch"
  model = nets.get_model("convnet", num_classes=10, image_shape=CIFAR, depth=2,
                         width=64, norm="instancenorm", act="LeakyReLU", pool="max")
  assert (model.depth, model.width, model.norm, model.act, model.pool) == (
      2, 64, "instance", "leakyrelu", "max")
  assert nets.get_model("convnetw32", num_classes=10, image_shape=CIFAR).width == 32
  assert nets.get_model("convnetd5", num_classes=10, image_shape=CIFAR).depth == 5


def test_unknown_name_lists_valid_names():
  with pytest.raises(ConfigError, match="unknown model 'resnet50'.*convnet_bn.*resnetap10"):
    nets.get_model("resnet50", num_classes=10, image_shape=CIFAR)


@pytest.mark.parametrize("overrides,match", [
    ({"depth": 0}, "depth"), ({"depth": 2.5}, "depth"), ({"width": True}, "width"),
    ({"norm": "weird"}, "norm"), ({"act": "tanh"}, "act"), ({"pool": "min"}, "pool"),
    ({"dropout": 0.5}, "dropout"), ({"norm": "group", "width": 30}, "multiple of 4")])
def test_bad_overrides(overrides, match):
  with pytest.raises(ConfigError, match=match):
    nets.get_model("convnet", num_classes=10, image_shape=CIFAR, **overrides)


def test_bad_model_arguments():
  with pytest.raises(ConfigError, match="override 'depth'"):
    nets.get_model("resnet18", num_classes=10, image_shape=CIFAR, depth=3)
  with pytest.raises(ConfigError, match="num_classes"):
    nets.get_model("convnet", num_classes=0, image_shape=CIFAR)
  with pytest.raises(ConfigError, match="image_shape"):
    nets.get_model("convnet", num_classes=10, image_shape=(32, 32))


@pytest.mark.parametrize("name,shape", [("convnetd6", CIFAR), ("lenet", (8, 8, 1)),
                                        ("alexnet", (4, 4, 3))])
def test_too_small_image(name, shape):
  with pytest.raises(ConfigError, match=f"too small for model '{name}'"):
    nets.get_model(name, num_classes=10, image_shape=shape)


def test_bad_inputs_to_forward():
  model = nets.get_model("mlp", num_classes=10, image_shape=CIFAR)
  variables = nets.variable_shapes(model, CIFAR)
  with pytest.raises(ConfigError, match="taps"):
    jax.eval_shape(lambda v: nets.embed(model, v, jnp.zeros((2, *CIFAR)), taps=True),
                   variables)
  with pytest.raises(ConfigError, match=r"\[N, H, W, channels\]"):
    jax.eval_shape(lambda v: nets.embed(model, v, jnp.zeros(CIFAR)), variables)


@pytest.mark.parametrize("shape,kernel,stride,pad", [
    ((3, 9, 9, 1), (3, 3, 1, 4), 1, 3),     # MNIST first layer: im2col kernel gradient
    ((2, 8, 8, 3), (3, 3, 3, 5), 1, 1),
    ((2, 8, 8, 16), (3, 3, 16, 6), 2, 1),   # ResNet downsampling: per-tap matmuls
    ((2, 9, 9, 8), (1, 1, 8, 4), 2, 0),     # 1x1 shortcut
])
def test_conv2d_gradients_match_lax(shape, kernel, stride, pad):
  """The CPU conv's matmul kernel gradient and its input gradient equal lax's own."""
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel)
  padding = ((pad, pad), (pad, pad))

  def loss(conv_fn, x, w):
    y = conv_fn(x, w)
    return jnp.sum(jnp.sin(y) * y)

  ours = lambda x, w: cpu_conv.conv2d(x, w, (stride, stride), padding)
  lax_conv = lambda x, w: jax.lax.conv_general_dilated(
      x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      precision=jax.lax.Precision.HIGHEST)
  np.testing.assert_allclose(ours(x, w), lax_conv(x, w), rtol=1e-5, atol=1e-5)
  g_ours = jax.grad(functools.partial(loss, ours), argnums=(0, 1))(x, w)
  g_lax = jax.grad(functools.partial(loss, lax_conv), argnums=(0, 1))(x, w)
  for a, b in zip(g_ours, g_lax):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))
  x64 = np.asarray(x, np.float64)                # kernel gradient against float64 numpy
  y = np.asarray(lax_conv(x, w), np.float64)
  gy = np.sin(y) + y * np.cos(y)
  xp = np.pad(x64, ((0, 0), padding[0], padding[1], (0, 0)))
  ho, wo = y.shape[1:3]
  ref = np.zeros(kernel)
  for dy in range(kernel[0]):
    for dx in range(kernel[1]):
      view = xp[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride]
      ref[dy, dx] = np.einsum("nhwc,nhwd->cd", view, gy)
  np.testing.assert_allclose(g_ours[1], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_instance_normalize_gradient():
  """The closed-form instance-norm backward equals autodiff of the two-pass forward and a
  float64 NumPy finite difference; the forward is torch's GroupNorm(C, C) (eps 1e-5)."""
  x = 3.0 * jax.random.normal(jax.random.key(0), (2, 5, 4, 3)) + 1.0
  w = jax.random.normal(jax.random.key(1), x.shape)

  def plain(x, eps):
    m = jnp.mean(x, axis=(1, 2), keepdims=True)
    v = jnp.mean(jnp.square(x - m), axis=(1, 2), keepdims=True)
    return (x - m) / jnp.sqrt(v + eps)

  loss = lambda f, x: jnp.sum(jnp.tanh(f(x, 1e-5)) * w)
  np.testing.assert_allclose(torch_init.instance_normalize(x, 1e-5), plain(x, 1e-5),
                             rtol=1e-5, atol=1e-5)
  g = jax.grad(functools.partial(loss, torch_init.instance_normalize))(x)
  np.testing.assert_allclose(g, jax.grad(functools.partial(loss, plain))(x),
                             rtol=1e-4, atol=1e-5)

  x64, w64 = np.asarray(x, np.float64), np.asarray(w, np.float64)

  def loss64(v):
    m = v.mean(axis=(1, 2), keepdims=True)
    y = (v - m) / np.sqrt(((v - m) ** 2).mean(axis=(1, 2), keepdims=True) + 1e-5)
    return float(np.sum(np.tanh(y) * w64))

  for idx in [(0, 0, 0, 0), (1, 4, 3, 2), (0, 2, 1, 1)]:
    e = np.zeros_like(x64)
    e[idx] = 1e-6
    fd = (loss64(x64 + e) - loss64(x64 - e)) / 2e-6
    assert float(g[idx]) == pytest.approx(fd, rel=1e-3, abs=1e-4)

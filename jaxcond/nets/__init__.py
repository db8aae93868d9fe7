"""Random feature nets and evaluation architectures (DM, arXiv 2110.04181, and the DM
authors' networks.py; design in docs/design.md).

All nets are flax.linen modules on NHWC float32 images with PyTorch's default
initialisation (`torch_init`). The functional API below is what the rest of jaxcond
uses:

    model = get_model("convnet", num_classes=10, image_shape=(32, 32, 3))
    variables = init_variables(model, key, (32, 32, 3))   # jittable, key may be traced
    feats = embed(model, variables, x, train=True)          # [N, 2048]
    out, new_stats = logits(model, variables, x, train=True)

Condensation nets with BatchNorm run in train mode (batch statistics) like the
reference; `embed` then discards the statistic updates, `logits` returns them.
"""
from __future__ import annotations

import functools
import math
import operator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcond.errors import ConfigError
from jaxcond.nets import torch_init
from jaxcond.nets.classic import MLP, VGG, AlexNet, LeNet
from jaxcond.nets.convnet import ConvNet
from jaxcond.nets.resnet import ResNet

__all__ = ("MODEL_NAMES", "get_model", "init_variables", "embed", "logits",
           "feature_dim", "variable_shapes", "ConvNet", "MLP", "LeNet", "AlexNet",
           "VGG", "ResNet")

# ConvNet presets: DM's ConvNet{D*,W*,BN,LN,GN,NN,MP,NP,AS,AL,ASwish,ASwishBN}.
_CONVNET_PRESETS: dict[str, dict[str, Any]] = {
    "convnet": {},
    **{f"convnetd{d}": {"depth": d} for d in range(1, 7)},
    "convnet_bn": {"norm": "batch"},
    "convnet_ln": {"norm": "layer"},
    "convnet_gn": {"norm": "group"},
    "convnet_nn": {"norm": "none"},
    **{f"convnetw{w}": {"width": w} for w in (32, 64, 128, 256)},
    "convnet_mp": {"pool": "max"},
    "convnet_np": {"pool": "none"},
    "convnet_as": {"act": "sigmoid"},
    "convnet_al": {"act": "leakyrelu"},
    "convnet_aswish": {"act": "swish"},
    "convnet_aswish_bn": {"act": "swish", "norm": "batch"},
}

# name -> (builder, fixed kwargs, allowed override -> allowed values or None for int>=1)
_OTHER_NETS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "mlp": (MLP, {}, {}),
    "lenet": (LeNet, {}, {}),
    "alexnet": (AlexNet, {"norm": "none"}, {"norm": ("none", "batch")}),
    "alexnet_bn": (AlexNet, {"norm": "batch"}, {"norm": ("none", "batch")}),
    "vgg11": (VGG, {"norm": "instance"}, {"norm": ("instance", "batch", "none")}),
    "vgg11_bn": (VGG, {"norm": "batch"}, {"norm": ("instance", "batch", "none")}),
    "resnet18": (ResNet, {"norm": "instance"}, {"norm": ("instance", "batch", "none")}),
    "resnet18_bn": (ResNet, {"norm": "batch"}, {"norm": ("instance", "batch", "none")}),
    "resnet18_ap": (ResNet, {"norm": "instance", "avgpool_downsample": True,
                             "head": "flatten"},
                    {"norm": ("instance", "batch", "none")}),
    "resnet18_bn_ap": (ResNet, {"norm": "batch", "avgpool_downsample": True,
                                "head": "flatten"},
                       {"norm": ("instance", "batch", "none")}),
    "resnetap10": (ResNet, {"norm": "instance", "stage_sizes": (1, 1, 1, 1),
                            "avgpool_downsample": True, "stem": "idc", "head": "gap"},
                   {"norm": ("instance", "batch", "none")}),
}

MODEL_NAMES: tuple[str, ...] = tuple(_CONVNET_PRESETS) + tuple(_OTHER_NETS)

_CONVNET_OVERRIDES = {"depth": None, "width": None, "norm": torch_init.NORMS,
                      "act": torch_init.ACTIVATIONS, "pool": torch_init.POOLS}

# Spellings accepted for override values (DM's argparse strings and short forms).
_VALUE_ALIASES = {
    "instancenorm": "instance", "in": "instance", "batchnorm": "batch", "bn": "batch",
    "layernorm": "layer", "ln": "layer", "groupnorm": "group", "gn": "group",
    "nn": "none", "avgpooling": "avg", "ap": "avg", "maxpooling": "max", "mp": "max",
    "np": "none", "silu": "swish", "leaky_relu": "leakyrelu",
}


def _check_override(name: str, field: str, value, allowed):
  if allowed is None:   # positive integer field
    try:
      if isinstance(value, bool):
        raise TypeError
      value = operator.index(value)
    except TypeError:
      raise ConfigError(f"model {name!r}: {field} must be a positive integer, "
                        f"got {value!r}") from None
    if value < 1:
      raise ConfigError(f"model {name!r}: {field} must be >= 1, got {value}")
    return value
  key = str(value).lower()
  key = _VALUE_ALIASES.get(key, key)
  if key not in allowed:
    raise ConfigError(f"model {name!r}: {field}={value!r} is not one of {allowed}")
  return key


def _check_image_shape(image_shape) -> tuple[int, int, int]:
  try:
    shape = tuple(operator.index(s) for s in image_shape)
  except TypeError:
    raise ConfigError(f"image_shape must be (H, W, channels) integers, got "
                      f"{image_shape!r}") from None
  if len(shape) != 3 or min(shape) < 1:
    raise ConfigError(f"image_shape must be (H, W, channels) positive integers, got "
                      f"{image_shape!r}")
  return shape


def get_model(name: str, *, num_classes: int, image_shape, **overrides) -> nn.Module:
  """The registered net `name` (case-insensitive, see MODEL_NAMES).

  `overrides` set depth/width/norm/act/pool for the ConvNet family and norm for
  AlexNet/VGG/ResNets. Raises ConfigError for an unknown name or override, or when
  `image_shape` is too small for the net.
  """
  key = str(name).lower()
  if key not in MODEL_NAMES:
    raise ConfigError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
  try:
    if isinstance(num_classes, bool):
      raise TypeError
    count = operator.index(num_classes)
  except TypeError:
    count = 0
  if count < 1:
    raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
  num_classes = count
  image_shape = _check_image_shape(image_shape)

  if key in _CONVNET_PRESETS:
    builder, kwargs, allowed = ConvNet, dict(_CONVNET_PRESETS[key]), _CONVNET_OVERRIDES
  else:
    builder, kwargs, allowed = _OTHER_NETS[key]
    kwargs = dict(kwargs)
  for field, value in overrides.items():
    if field not in allowed:
      raise ConfigError(f"model {name!r} takes no override {field!r}; allowed: "
                        f"{tuple(allowed) or 'none'}")
    kwargs[field] = _check_override(key, field, value, allowed[field])
  if builder is ConvNet and kwargs.get("norm") == "group" and kwargs.get("width", 128) % 4:
    raise ConfigError(f"model {name!r}: group norm uses 4 groups, so width must be a "
                      f"multiple of 4, got {kwargs['width']}")
  model = builder(num_classes=num_classes, **kwargs)

  try:
    abstract = variable_shapes(model, image_shape)
  except ConfigError as err:
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"({err})") from None
  except Exception as err:  # shape errors surface from inside flax/lax as various types
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"({message})") from None
  if any(leaf.size == 0 for leaf in jax.tree.leaves(abstract)):
    raise ConfigError(f"image_shape {image_shape} is too small for model {name!r} "
                      f"(empty feature map)")
  return model


def _cached(fn):
  """lru_cache on (model, image_shape); falls back to no caching for unhashable models."""
  cached = functools.lru_cache(maxsize=256)(fn)

  @functools.wraps(fn)
  def wrapper(model, image_shape):
    image_shape = tuple(int(s) for s in image_shape)
    try:
      hash(model)
    except TypeError:   # unhashable module
      return fn(model, image_shape)
    return cached(model, image_shape)

  return wrapper


@_cached
def feature_dim(model: nn.Module, image_shape) -> int:
  """Embedding size d of `model` on images of `image_shape` (shape-only, no compute)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)

  def features(x):
    (feats, _), _ = model.init_with_output(jax.random.key(0), x, features_only=True)
    return feats

  return int(jax.eval_shape(features, x).shape[-1])


@_cached
def _abstract_variables(model: nn.Module, image_shape) -> dict:
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def variable_shapes(model: nn.Module, image_shape) -> dict:
  """Abstract (ShapeDtypeStruct) variable tree of `model` for `image_shape`.

  Traced once per (model, image_shape) and cached, so drawing a net inside a jitted
  step does not re-trace the flax init.
  """
  return jax.tree.map(lambda leaf: leaf, _abstract_variables(model, image_shape))


def init_variables(model: nn.Module, key: jax.Array, image_shape) -> dict:
  """Fresh PyTorch-default-initialised variables {"params"[, "batch_stats"]}.

  Jittable with a traced `key`, so a condensation step can draw its random net inside
  `jit` (docs/benchmarks.md). Same distribution as `model.init` (whose flax
  initializers are the torch ones of `torch_init`), but all weights come from ONE
  U(-1, 1) draw of the total parameter count, cut and scaled per leaf: every separate
  threefry call costs ~0.1-0.4 s of XLA compile time on CPU (per-leaf init of ResNet-18
  compiled in 16.5 s against 1.6 s; docs/benchmarks.md).

  Per module: `kernel` ~ U(±1/sqrt(fan_in)) with fan_in = prod(kernel.shape[:-1]) and
  its sibling `bias` ~ the same bound (torch Conv2d/Linear); norm `scale` = 1, norm
  `bias` = 0; BN running `mean` = 0, `var` = 1.
  """
  abstract = variable_shapes(model, image_shape)
  random_leaves = []   # (path, shape, bound)

  def visit(tree, path):
    fan_in = None
    if "kernel" in tree and not isinstance(tree["kernel"], dict):
      fan_in = math.prod(tree["kernel"].shape[:-1])
    for name, leaf in tree.items():
      if isinstance(leaf, dict):
        visit(leaf, path + (name,))
      elif fan_in is not None and name in ("kernel", "bias"):
        random_leaves.append((path + (name,), leaf.shape, 1.0 / math.sqrt(fan_in)))

  visit(abstract["params"], ("params",))
  total = sum(math.prod(shape) for _, shape, _ in random_leaves)
  flat = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
  drawn, offset = {}, 0
  for path, shape, bound in random_leaves:
    size = math.prod(shape)
    drawn[path] = flat[offset:offset + size].reshape(shape) * bound
    offset += size

  def fill(tree, path):
    out = {}
    for name, leaf in tree.items():
      p = path + (name,)
      if isinstance(leaf, dict):
        out[name] = fill(leaf, p)
      elif p in drawn:
        out[name] = drawn[p]
      elif name in ("scale", "var"):
        out[name] = jnp.ones(leaf.shape, leaf.dtype)
      elif name in ("bias", "mean"):
        out[name] = jnp.zeros(leaf.shape, leaf.dtype)
      else:
        raise NotImplementedError(f"init_variables: no PyTorch init rule for {p}")
    return out

  return {collection: fill(tree, (collection,)) for collection, tree in abstract.items()}


def _check_x(x):
  if jnp.ndim(x) != 4:
    raise ConfigError(f"x must be a batch of images [N, H, W, channels], got shape "
                      f"{jnp.shape(x)}")


def _apply(model, variables, x, train, features_only, collect_taps):
  """Forward pass; with BN in train mode, also returns the updated batch_stats."""
  _check_x(x)
  kwargs = dict(train=train, features_only=features_only, collect_taps=collect_taps)
  if train and "batch_stats" in variables:
    out, updates = model.apply(variables, x, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]
  return model.apply(variables, x, **kwargs), None


def embed(model: nn.Module, variables: dict, x: jax.Array, *, train: bool = False,
          taps: bool = False):
  """Features [N, d] (the classifier's input), or (feats, {"conv": [...], "norm": [...]}).

  train=True uses batch statistics in BN nets (as DM's condensation does) and discards
  the statistic updates. Taps are per-block NHWC maps for DDM style matching (arXiv 2412.04748);
  they are only built when asked for.
  """
  (feats, tap_maps), _ = _apply(model, variables, x, train, True, taps)
  return (feats, tap_maps) if taps else feats


def logits(model: nn.Module, variables: dict, x: jax.Array, *, train: bool = False):
  """(logits [N, K], new batch_stats when a BN net runs with train=True, else None)."""
  (out, _), new_stats = _apply(model, variables, x, train, False, False)
  return out, new_stats

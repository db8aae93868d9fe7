"""The functional API of the nets: variables, shapes, features and logits of a flax module.

Jittable (a key may be traced) and cached per (model, image_shape) where it traces, so a
condensation step can draw a fresh random net inside `jit` (DM, arXiv 2110.04181).
"""
from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcond.errors import ConfigError


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

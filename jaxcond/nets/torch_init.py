"""PyTorch-equivalent flax.linen layers: default init, norm eps and BN momentum.

DM, M3D and DDM embed data with *untrained* random networks, so the embedding
statistics depend on the initialisation (the DM authors' code uses PyTorch's defaults).
PyTorch's defaults are replicated here:

- Conv2d / Linear weight: `kaiming_uniform_(a=sqrt(5))`, i.e. U(-b, b) with
  b = gain * sqrt(3 / fan_in) = sqrt(1/3) * sqrt(3 / fan_in) = 1 / sqrt(fan_in);
- Conv2d / Linear bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the *weight's* fan_in
  (in_channels * kh * kw, or in_features);
- every norm layer: scale 1, shift 0, eps 1e-5 (flax defaults to 1e-6);
- BatchNorm2d momentum 0.1 = flax `momentum=0.9` (flax weights the old value).

Flax's `bias_init` only sees the bias shape, so `conv`/`dense` build the layer with a
bias initializer closed over the fan_in. Parameter names stay flax's (`kernel`, `bias`,
`scale`), layouts are NHWC / HWIO.

Known, documented difference: torch updates BN `running_var` with the *unbiased* batch
variance, flax with the biased one (a factor n/(n-1), < 0.4% at batch 256). It only
affects evaluation-time BN statistics, never the condensation embeddings (which use
batch statistics).
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcond.nets.cpu_conv import conv2d
from jaxcond.errors import ConfigError

EPS = 1e-5            # torch norm eps (GroupNorm, BatchNorm2d, LayerNorm)
BN_MOMENTUM = 0.9     # torch momentum 0.1, flax convention

NORMS = ("instance", "batch", "layer", "group", "none")
ACTIVATIONS = ("relu", "sigmoid", "leakyrelu", "swish")
POOLS = ("avg", "max", "none")


def uniform_bound(fan_in: int) -> float:
  """Half-width of PyTorch's default weight and bias distributions: 1/sqrt(fan_in)."""
  return 1.0 / math.sqrt(fan_in)


def torch_kernel_init(key, shape, dtype=jnp.float32):
  """U(±1/sqrt(fan_in)) for HWIO conv kernels and [in, out] dense kernels."""
  fan_in = math.prod(shape[:-1])
  bound = uniform_bound(fan_in)
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_bias_init(fan_in: int):
  """Bias initializer U(±1/sqrt(fan_in)); fan_in is the weight's, so it is closed over."""
  bound = uniform_bound(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _pair(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class Conv(nn.Module):
  """torch Conv2d: HWIO `kernel` and `bias` (flax's names), PyTorch default init."""
  features: int
  in_features: int
  kernel_size: tuple
  strides: tuple = (1, 1)
  padding: int = 1
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param("kernel", torch_kernel_init, (kh, kw, x.shape[-1], self.features),
                        jnp.float32)
    p = self.padding
    y = conv2d(x, kernel, self.strides, ((p, p), (p, p)))
    if self.use_bias:
      bias = self.param("bias", torch_bias_init(self.in_features * kh * kw),
                        (self.features,), jnp.float32)
      y = y + bias
    return y


def conv(features: int, in_features: int, kernel_size: int | Sequence[int] = 3, *,
         strides: int = 1, padding: int = 1, use_bias: bool = True,
         name: str | None = None) -> nn.Module:
  """A conv layer with torch's Conv2d init and explicit symmetric integer padding."""
  return Conv(features, in_features, _pair(kernel_size), _pair(strides), int(padding),
              use_bias, name=name)


def dense(features: int, in_features: int, *, use_bias: bool = True,
          name: str | None = None) -> nn.Dense:
  """nn.Dense with torch's Linear init."""
  return nn.Dense(features, use_bias=use_bias, kernel_init=torch_kernel_init,
                  bias_init=torch_bias_init(in_features), name=name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def instance_normalize(x, epsilon):
  """(x − mean) / sqrt(var + eps) over H, W per sample and channel (two-pass, biased)."""
  return _instance_normalize_fwd(x, epsilon)[0]


def _instance_normalize_fwd(x, epsilon):
  mean = jnp.mean(x, axis=(-3, -2), keepdims=True)
  centred = x - mean
  var = jnp.mean(jnp.square(centred), axis=(-3, -2), keepdims=True)
  rstd = jax.lax.rsqrt(var + epsilon)
  y = centred * rstd
  return y, (y, rstd)


def _instance_normalize_bwd(epsilon, res, g):
  # The closed form rstd·(g − E[g] − y·E[g·y]): two reductions and one elementwise pass,
  # where autodiff of the two-pass forward makes several passes over the largest
  # activations of the synthetic backward (docs/benchmarks.md).
  del epsilon
  y, rstd = res
  mean_g = jnp.mean(g, axis=(-3, -2), keepdims=True)
  mean_gy = jnp.mean(g * y, axis=(-3, -2), keepdims=True)
  return (rstd * (g - mean_g - y * mean_gy),)


instance_normalize.defvjp(_instance_normalize_fwd, _instance_normalize_bwd)


class InstanceNorm(nn.Module):
  """torch `GroupNorm(C, C)`: per-sample, per-channel normalisation over H, W.

  Two-pass variance (mean of squared deviations), biased, eps inside the sqrt, then a
  per-channel affine (scale 1, bias 0). Normalising each sample on its own is what makes
  folding classes into the batch axis exact (docs/design.md).
  """
  epsilon: float = EPS

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    y = instance_normalize(x, self.epsilon)
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    return y * scale + bias


def norm_layer(kind: str, train: bool, name: str | None = None):
  """The norm layer for `kind` in NORMS (torch eps/momentum); None for "none".

  - instance: GroupNorm(C, C) (InstanceNorm above);
  - group: GroupNorm(4, C);
  - layer: torch `LayerNorm([C, H, W], elementwise_affine=True)` as used by DM's ConvNet:
    statistics over (H, W, C) per sample, affine parameters of shape [H, W, C];
  - batch: BatchNorm2d; batch statistics when `train`, running averages otherwise.
  """
  if kind == "instance":
    return InstanceNorm(name=name)
  if kind == "group":
    return nn.GroupNorm(num_groups=4, epsilon=EPS, use_fast_variance=False, name=name)
  if kind == "layer":
    return nn.LayerNorm(epsilon=EPS, reduction_axes=(-3, -2, -1),
                        feature_axes=(-3, -2, -1), use_fast_variance=False, name=name)
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                        epsilon=EPS, use_fast_variance=False, name=name)
  if kind == "none":
    return None
  raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


def activation(kind: str):
  """relu, sigmoid, leakyrelu (slope 0.01 as torch), swish (x * sigmoid(x))."""
  if kind == "relu":
    return nn.relu
  if kind == "sigmoid":
    return nn.sigmoid
  if kind == "leakyrelu":
    return lambda x: nn.leaky_relu(x, negative_slope=0.01)
  if kind == "swish":
    return nn.swish
  raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def pool(x, kind: str, window: int = 2):
  """window x window pooling with stride = window, 'VALID' (torch floor semantics)."""
  if kind == "none":
    return x
  if kind not in ("avg", "max"):
    raise ValueError(f"unknown pooling {kind!r}; expected one of {POOLS}")
  if min(x.shape[-3:-1]) < window:
    raise ConfigError(f"a {x.shape[-3]}x{x.shape[-2]} feature map is too small for "
                      f"{window}x{window} pooling")
  pool_fn = nn.avg_pool if kind == "avg" else nn.max_pool
  return pool_fn(x, (window, window), strides=(window, window), padding="VALID")

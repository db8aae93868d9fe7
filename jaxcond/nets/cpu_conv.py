"""A 2-D convolution whose kernel gradient runs as matmuls on XLA:CPU.

Why: XLA:CPU lowers a convolution's kernel gradient to a convolution whose "batch" axis is
the image batch, which Eigen runs 2-35x slower than the same sums written as matmuls
(docs/benchmarks.md; up to ~100x inside loops, jax#12868). Condensation back-propagates
into the synthetic images through many random nets, so on the CPU test bench this is most
of a step. `conv2d` gives lax's values everywhere; only where `jaxcond.backend` says so
(the CPU backend) is the backward replaced, through a `jax.custom_vjp`. GPUs and TPUs use
XLA's own backward.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxcond import backend


_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _conv_forward(x, kernel, strides, padding):
  return jax.lax.conv_general_dilated(
      x, kernel, strides, padding, dimension_numbers=_DIMENSION_NUMBERS)


def _small_input(kernel_shape) -> bool:
  kh, kw, c, _ = kernel_shape
  return kh * kw * c <= 64


def _shifted_views(x, kernel_hw, strides, padding, out_hw):
  """The kh·kw strided views of the padded input that meet kernel tap (dy, dx)."""
  (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  return [xp[:, dy:dy + sh * (ho - 1) + 1:sh, dx:dx + sw * (wo - 1) + 1:sw]
          for dy in range(kh) for dx in range(kw)]


def _kernel_grad_by_matmul(x, g, kernel_shape, strides, padding):
  """dL/dkernel [kh, kw, c, d] as matmuls over the N·H·W axis.

  XLA:CPU lowers a conv's kernel gradient to a convolution whose "batch" is the
  image batch; Eigen runs that 2-35x slower than the equivalent matmuls (measured in
  docs/benchmarks.md, up to ~100x inside loops, jax#12868). Few input channels
  (first layers): one im2col matmul; otherwise one matmul per kernel tap, which never
  materialises the kh·kw-times larger patch tensor.
  """
  kh, kw, c, d = kernel_shape
  views = _shifted_views(x, (kh, kw), strides, padding, g.shape[1:3])
  g2 = g.reshape(-1, d)
  hi = jax.lax.Precision.HIGHEST
  if _small_input(kernel_shape):
    patches = jnp.stack(views, axis=3).reshape(-1, kh * kw * c)
    return jnp.dot(patches.T, g2, precision=hi).reshape(kernel_shape)
  taps = [jnp.dot(v.reshape(-1, c).T, g2, precision=hi) for v in views]
  return jnp.stack(taps).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_cpu(x, kernel, strides, padding):
  return _conv_forward(x, kernel, strides, padding)


def _conv_cpu_fwd(x, kernel, strides, padding):
  return _conv_forward(x, kernel, strides, padding), (x, kernel)


def _conv_cpu_bwd(strides, padding, res, g):
  x, kernel = res
  _, input_vjp = jax.vjp(lambda x_: _conv_forward(x_, kernel, strides, padding), x)
  (dx,) = input_vjp(g)
  dk = _kernel_grad_by_matmul(x, g, kernel.shape, strides, padding)
  return dx, dk.astype(kernel.dtype)


_conv_cpu.defvjp(_conv_cpu_fwd, _conv_cpu_bwd)


def conv2d(x, kernel, strides=(1, 1), padding=((1, 1), (1, 1))):
  """NHWC/HWIO convolution, symmetric integer padding. Same values as lax's everywhere;
  on the CPU backend the kernel gradient is computed as matmuls (`_kernel_grad_by_matmul`),
  elsewhere XLA's own backward is used."""
  strides = tuple(int(s) for s in strides)
  padding = tuple((int(a), int(b)) for a, b in padding)
  if backend.conv_grad_as_matmul():
    return _conv_cpu(x, kernel, strides, padding)
  return _conv_forward(x, kernel, strides, padding)

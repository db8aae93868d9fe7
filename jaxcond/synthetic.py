"""Synthetic-set parameterisation: initialisation, multi-formation decoding, pixel spaces.

Implements IDC's "multi-formation" (Kim et al. ICML 2022, arXiv 2205.14959; used by M3D as
"Factor & Up-sampling"), DM's initialisation and pixel spaces (the DM authors' code) and hard
labels (every decoded image keeps the label of its stored image).

- A stored image [H, W] with factor f is an f×f grid of cells of side ceil(H/f) × ceil(W/f);
  when H (or W) is not divisible by f the image is padded with 0.5 on the bottom (right).
  `decode` cuts the cells and upsamples each back to H×W with bilinear interpolation,
  torch `nn.Upsample(mode='bilinear')` semantics (align_corners=False, no antialias), which
  `jax.image.resize(..., 'bilinear', antialias=False)` reproduces for upsampling (tested
  against a NumPy reference).  Decoded order: for stored image k, its cells row-major
  (k·f² + r·f + c).  IDC orders cell-major (all images' cell (0, 0) first); the labels are
  identical within a class, so only the order differs.
- `init_images(method="mix")` is the inverse layout: ipc·f² real images per class, shrunk to
  the cell size with nearest neighbour (torch `F.interpolate` default: src = floor(dst·in/out)),
  tiled f×f row-major (image k·f² + r·f + c goes to cell (r, c)), cropped back to H×W.
- Pixel spaces: "normalized" (DM/DDM: optimised as (x - mean)/std, never clamped) and "unit"
  (M3D: [0, 1], clamped before every iteration, normalised at model input).  The 0.5 padding
  value is used as is in both spaces (the reference only pads in unit space).
- Clamping uses torch `clamp` gradient semantics (gradient 1 on the closed interval [0, 1],
  0 outside), not `jnp.clip`'s half gradient at the bounds.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcond.errors import ConfigError

METHODS = ("real", "noise", "mix")
SPACES = ("normalized", "unit")
PAD_VALUE = 0.5


def _check_space(space: str) -> str:
  if space not in SPACES:
    raise ConfigError(f"synthetic space {space!r} unknown (known: {', '.join(SPACES)})")
  return space


def _check_factor(factor) -> int:
  if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
    raise ConfigError(f"synthetic factor must be an integer >= 1, got {factor!r}")
  return int(factor)


def cell_size(size: int, factor: int) -> int:
  """Side of one multi-formation cell: ceil(size / factor)."""
  return -(-int(size) // _check_factor(factor))


def clip_unit(x):
  """Clip to [0, 1] with torch clamp gradients (1 on [0, 1] inclusive, 0 outside)."""
  return jnp.where((x >= 0.0) & (x <= 1.0), x, jnp.clip(x, 0.0, 1.0))


def clamp(x, space: str):
  """Projection applied to stored images before each iteration: identity or [0, 1] clip."""
  if _check_space(space) == "unit":
    return clip_unit(x)
  return x


def to_model_input(x, space: str, mean: Sequence[float], std: Sequence[float]):
  """Float32 network input: "normalized" as is; "unit" clipped to [0, 1] then (x - mean)/std."""
  x = jnp.asarray(x, jnp.float32)
  if _check_space(space) == "normalized":
    return x
  mean = jnp.asarray(mean, jnp.float32).reshape(-1)
  std = jnp.asarray(std, jnp.float32).reshape(-1)
  ch = x.shape[-1]
  if mean.shape[0] != ch or std.shape[0] != ch:
    raise ConfigError(f"to_model_input: mean/std have {mean.shape[0]}/{std.shape[0]} entries "
                      f"but images have {ch} channels")
  return (clip_unit(x) - mean) / std


def _pad_to_grid(x, factor: int):
  """Pads [..., H, W, ch] with 0.5 on the bottom/right up to factor·cell."""
  h, w = x.shape[-3], x.shape[-2]
  ph, pw = cell_size(h, factor) * factor - h, cell_size(w, factor) * factor - w
  if ph == 0 and pw == 0:
    return x
  pad = [(0, 0)] * (x.ndim - 3) + [(0, ph), (0, pw), (0, 0)]
  return jnp.pad(x, pad, constant_values=PAD_VALUE)


def split_cells(x, factor: int):
  """[..., N, H, W, ch] -> [..., N·f², ch_h, ch_w, ch] cells (0.5-padded), row-major per image."""
  factor = _check_factor(factor)
  x = _pad_to_grid(jnp.asarray(x), factor)
  *lead, n, hp, wp, c = x.shape
  sh, sw = hp // factor, wp // factor
  x = x.reshape(*lead, n, factor, sh, factor, sw, c)
  nd = len(lead)
  perm = list(range(nd)) + [nd + i for i in (0, 1, 3, 2, 4, 5)]
  x = x.transpose(perm)          # [..., N, f, f, sh, sw, ch]
  return x.reshape(*lead, n * factor * factor, sh, sw, c)


def tile(cells, factor: int, out_hw: tuple[int, int]):
  """Inverse of `split_cells`: [..., N·f², sh, sw, ch] -> [..., N, H, W, ch] (cropped to out_hw)."""
  factor = _check_factor(factor)
  cells = jnp.asarray(cells)
  *lead, m, sh, sw, c = cells.shape
  if m % (factor * factor):
    raise ConfigError(f"tile: {m} cells is not a multiple of factor²={factor * factor}")
  n = m // (factor * factor)
  x = cells.reshape(*lead, n, factor, factor, sh, sw, c)
  nd = len(lead)
  perm = list(range(nd)) + [nd + i for i in (0, 1, 3, 2, 4, 5)]
  x = x.transpose(perm).reshape(*lead, n, factor * sh, factor * sw, c)
  return x[..., :out_hw[0], :out_hw[1], :]


def resize_bilinear(x, out_hw: tuple[int, int]):
  """torch bilinear resize (align_corners=False, antialias off) of [..., H, W, ch]; upsampling."""
  x = jnp.asarray(x)
  shape = x.shape[:-3] + (int(out_hw[0]), int(out_hw[1])) + x.shape[-1:]
  return jax.image.resize(x, shape, "bilinear", antialias=False,
                          precision=jax.lax.Precision.HIGHEST)


def _nearest_index(in_size: int, out_size: int) -> np.ndarray:
  """torch F.interpolate(mode='nearest') source index: min(floor(dst·(in/out)), in - 1), float32."""
  scale = np.float32(in_size) / np.float32(out_size)
  src = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
  return np.minimum(src, in_size - 1)


def resize_nearest(x, out_hw: tuple[int, int]):
  """torch nearest resize of [..., H, W, ch] (the M3D/IDC 'mix' init downscaling)."""
  x = jnp.asarray(x)
  rows = _nearest_index(x.shape[-3], int(out_hw[0]))
  cols = _nearest_index(x.shape[-2], int(out_hw[1]))
  return jnp.take(jnp.take(x, rows, axis=-3), cols, axis=-2)


def decode(x, factor: int):
  """Multi-formation decoding (IDC): [..., N, H, W, ch] -> [..., N·f², H, W, ch]; f=1 identity."""
  factor = _check_factor(factor)
  x = jnp.asarray(x)
  if x.ndim < 4:
    raise ConfigError(f"decode: x must be [..., N, H, W, ch], got shape {tuple(x.shape)}")
  if factor == 1:
    return x
  return resize_bilinear(split_cells(x, factor), x.shape[-3:-1])


def encode_mix(images, factor: int, out_hw: tuple[int, int] | None = None):
  """'mix' layout: [..., N·f², H, W, ch] real images -> [..., N, H, W, ch] stored images.

  Each image is shrunk to the cell size by nearest neighbour and tiled f×f row-major.
  """
  factor = _check_factor(factor)
  images = jnp.asarray(images)
  h, w = images.shape[-3:-1] if out_hw is None else out_hw
  cells = resize_nearest(images, (cell_size(h, factor), cell_size(w, factor)))
  return tile(cells, factor, (h, w))


def _distinct_indices(key, class_ids, n: int, k: int):
  """[C, k] distinct indices in [0, n) per class; class key = fold_in(key, class id)."""
  def one(c):
    return jax.random.permutation(jax.random.fold_in(key, c), n)[:k]
  return jax.vmap(one)(class_ids)


def init_images(key, real, ipc: int, *, method: str = "real", factor: int = 1,
                space: str = "normalized", class_ids=None) -> jax.Array:
  """Initial synthetic set [C, ipc, H, W, ch] (DM and M3D authors' code).

  real: [C, n, H, W, ch] float images already in `space`.
  - "real": ipc distinct random real images of each class (DM; IDC/M3D "random").
  - "noise": N(0, 1) in "normalized" space; clip(N(0, 1)/4 + 0.5, 0, 1) in "unit" space.
  - "mix": ipc·f² distinct real images per class, nearest-shrunk to the cell and tiled f×f.
  class_ids: optional [C] global class ids folded into the per-class keys (default arange(C)),
  so a sharded caller draws what a single-device caller draws.
  """
  if method not in METHODS:
    raise ConfigError(f"synthetic init method {method!r} unknown (known: {', '.join(METHODS)})")
  _check_space(space)
  factor = _check_factor(factor)
  if isinstance(ipc, bool) or not isinstance(ipc, (int, np.integer)) or ipc < 1:
    raise ConfigError(f"ipc must be a positive integer, got {ipc!r}")
  ipc = int(ipc)
  real = jnp.asarray(real)
  if real.ndim != 5:
    raise ConfigError(f"init_images: real must be [C, n, H, W, ch], got shape {tuple(real.shape)}")
  num_classes, n, h, w, ch = real.shape
  if class_ids is None:
    class_ids = jnp.arange(num_classes)
  class_ids = jnp.asarray(class_ids)
  if class_ids.shape != (num_classes,):
    raise ConfigError(f"init_images: class_ids must have shape ({num_classes},), "
                      f"got {tuple(class_ids.shape)}")
  dtype = real.dtype if jnp.issubdtype(real.dtype, jnp.floating) else jnp.float32
  need = {"real": ipc, "mix": ipc * factor * factor, "noise": 0}[method]
  if n < need:
    raise ConfigError(f"init_images: method {method!r} with ipc={ipc}, factor={factor} needs "
                      f"{need} real images per class, got {n}")
  return _init_impl(key, real, class_ids, ipc=ipc, method=method, factor=factor,
                    space=space).astype(dtype)


@functools.partial(jax.jit, static_argnames=("ipc", "method", "factor", "space"))
def _init_impl(key, real, class_ids, *, ipc, method, factor, space):
  """Validated body of `init_images`, compiled once per shape (eager dispatch is slow)."""
  _, n, h, w, ch = real.shape
  if method == "noise":
    def one(c):
      return jax.random.normal(jax.random.fold_in(key, c), (ipc, h, w, ch), jnp.float32)
    z = jax.vmap(one)(class_ids)
    if space == "unit":
      z = jnp.clip(z / 4.0 + 0.5, 0.0, 1.0)
    return z
  need = ipc if method == "real" else ipc * factor * factor
  idx = _distinct_indices(key, class_ids, n, need)                     # [C, need]
  picked = jnp.take_along_axis(real, idx[:, :, None, None, None], axis=1)
  if method == "real":
    return picked
  return encode_mix(picked, factor, (h, w))

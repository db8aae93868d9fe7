"""Differentiable Siamese Augmentation (DSA) for NHWC image batches.

Implements DSA (Zhao & Bilen, "Dataset Condensation with Differentiable
Siamese Augmentation", ICML 2021, arXiv 2102.08259), in the two compositions the methods use:

- policy "dm"  (DM/DDM `DiffAugment`, aug_mode 'S'): each call picks ONE op group
  uniformly among the groups listed in the strategy and applies only that group;
- policy "idc" (IDC/M3D `DiffAug`): flip (if listed), then color (if listed), then
  exactly one op drawn among the listed crop/scale/rotate, then cutout (if listed).

Ops (defaults in `DSAParams`):
- flip: horizontal (width axis) with probability 0.5;
- scale: sx, sy ~ U[1/1.2, 1.2] independently; affine zoom, theta = [[sx, 0, 0], [0, sy, 0]];
- rotate: angle ~ U[-15°, 15°]; theta = [[cos a, -sin a, 0], [sin a, cos a, 0]].  With row 0 at
  the top of the picture, a positive angle turns the content COUNTER-clockwise: a = +90° on a
  square image equals `np.rot90(x, k=1, axes=(1, 2))` (tested);
- crop: integer shift (dy, dx) in [-s, s], s = int(0.125·size + 0.5) per axis;
  out[i, j] = x[i + dy, j + dx], 0 where that falls outside the image;
- cutout: square of side int(0.5·size + 0.5) zeroed; centre o uniform over the integers in
  [0, size + (1 - side mod 2)); rows o - side//2 .. o - side//2 + side - 1, clamped to the image;
- color: brightness x + (u - 0.5)·1.0, then saturation (x - m_c)·(2u) + m_c with m_c the
  per-pixel channel mean, then contrast (x - m)·(u + 0.5) + m with m the per-image mean
  (three independent u ~ U[0, 1]).

Scale and rotate build a torch-style `affine_grid` (align_corners=False: pixel centres at
(2i + 1)/size - 1) and sample it bilinearly with zero padding, like `grid_sample`; the sampler
is written with gathers, so it is differentiable w.r.t. the pixels.

Siamese mode draws ONE transform from the key (scalars, independent of the batch size N) and
applies it to every image, so `augment(k, real)`, `augment(k, syn)` and
`augment(k, concat([real, syn]))` agree exactly.  Per-sample mode (siamese=False, used when
training evaluation nets) draws one parameter set per image; the op group is still one per call.

Keys: every op draws from `fold_in(key, salt[op])` with a fixed salt per op, and the op choice
from `fold_in(key, 0)`, so the parameters of an op do not depend on which other ops are listed
or on the policy.  Choices made where the sources are silent (not stated in the papers or code):
- "translate" (IDC only, semantics not specified) is not supported: it raises ConfigError;
- an op listed twice raises ConfigError (DM would silently double its probability);
- strategies are case-insensitive; "", "none" and None mean identity;
- integer parameters (shifts, cutout centres, the op choice) are floor(u·n) of a uniform u,
  so each op costs one threefry draw (uniform over the n values up to float32 resolution).

Under `jax.vmap` over classes with per-class keys, `lax.switch` on a batched index lowers to
computing every listed branch and selecting; without vmap only the chosen op is computed.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxcond.errors import ConfigError

OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
POLICIES = ("dm", "idc")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"

# Fixed integers folded into the call key: one stream per op, never reordered.
_CHOICE_SALT = 0
_OP_SALT = {"flip": 1, "scale": 2, "rotate": 3, "crop": 4, "cutout": 5, "color": 6}
# IDC: the one op drawn after flip/color, in canonical order.
_IDC_SINGLE_OPS = ("crop", "scale", "rotate")


@dataclasses.dataclass(frozen=True)
class DSAParams:
  """Numeric DSA parameters (DM `ParamDiffAug`, IDC `DiffAug`; arXiv 2102.08259)."""
  flip: float = 0.5          # probability of a horizontal flip
  scale: float = 1.2         # sx, sy ~ U[1/scale, scale]
  rotate: float = 15.0       # degrees, angle ~ U[-rotate, rotate]
  crop: float = 0.125        # max shift = int(crop * size + 0.5) pixels
  cutout: float = 0.5        # side = int(cutout * size + 0.5) pixels
  brightness: float = 1.0    # x + (u - 0.5) * brightness
  saturation: float = 2.0    # factor u * saturation
  contrast: float = 0.5      # factor u + contrast

  def __post_init__(self):
    checks = {
        "flip": 0.0 <= self.flip <= 1.0,
        "scale": self.scale >= 1.0,
        "rotate": self.rotate >= 0.0,
        "crop": 0.0 <= self.crop <= 1.0,
        "cutout": 0.0 <= self.cutout <= 1.0,
        "brightness": self.brightness >= 0.0,
        "saturation": self.saturation >= 0.0,
        "contrast": self.contrast >= 0.0,
    }
    for name, ok in checks.items():
      value = getattr(self, name)
      if not (isinstance(value, (int, float)) and math.isfinite(value) and ok):
        raise ConfigError(f"DSAParams.{name}={value!r} is out of range")


def parse_strategy(strategy: str | None) -> tuple[str, ...]:
  """'color_crop_flip' -> ('color', 'crop', 'flip'); '', 'none', None -> ()."""
  if strategy is None:
    return ()
  if not isinstance(strategy, str):
    raise ConfigError(f"augment strategy must be a string, got {strategy!r}")
  s = strategy.strip().lower()
  if s in ("", "none"):
    return ()
  ops = tuple(s.split("_"))
  for op in ops:
    if op not in OPS:
      raise ConfigError(f"augment strategy {strategy!r}: unknown op {op!r} "
                        f"(known: {', '.join(OPS)})")
  dup = sorted({op for op in ops if ops.count(op) > 1})
  if dup:
    raise ConfigError(f"augment strategy {strategy!r}: op {dup[0]!r} listed twice")
  return ops


# ----------------------------------------------------------------------------- sampling


def _op_key(key, op: str):
  return jax.random.fold_in(key, _OP_SALT[op])


def _uniform_ints(u, lo: int, hi: int):
  """Integers uniform in [lo, hi) from u ~ U[0, 1) (one threefry draw serves several params)."""
  return jnp.clip(jnp.floor(u * (hi - lo)).astype(jnp.int32), 0, hi - lo - 1) + lo


def _choose(key, num: int):
  """Index of the one op (group) applied by this call: uniform over `num`."""
  return _uniform_ints(jax.random.uniform(jax.random.fold_in(key, _CHOICE_SALT)), 0, num)


def _shift_bound(ratio: float, size: int) -> int:
  return int(ratio * size + 0.5)


_NUM_DRAWS = {"flip": 1, "scale": 2, "rotate": 1, "crop": 2, "cutout": 2, "color": 3}


def _sample_op(op: str, key, shape: tuple, hw: tuple[int, int],
               p: DSAParams = DSAParams()) -> dict:
  """Draws the parameters of `op` with the given batch `shape` (() siamese, (N,) per sample).

  `key` is the call key; the op's own stream is `fold_in(key, salt[op])`, from which one
  uniform array [*shape, k] supplies the op's k parameters (integers by flooring).
  """
  if op not in _NUM_DRAWS:
    raise ConfigError(f"augment: unknown op {op!r} (known: {', '.join(OPS)})")
  u = jax.random.uniform(_op_key(key, op), tuple(shape) + (_NUM_DRAWS[op],))
  u = [u[..., i] for i in range(_NUM_DRAWS[op])]
  h, w = hw
  if op == "flip":
    return {"flip": u[0] < p.flip}
  if op == "scale":
    lo, hi = 1.0 / p.scale, p.scale
    return {"sx": u[0] * (hi - lo) + lo, "sy": u[1] * (hi - lo) + lo}
  if op == "rotate":
    return {"angle": (u[0] - 0.5) * 2.0 * p.rotate / 180.0 * math.pi}
  if op == "crop":
    sh, sw = _shift_bound(p.crop, h), _shift_bound(p.crop, w)
    return {"dy": _uniform_ints(u[0], -sh, sh + 1), "dx": _uniform_ints(u[1], -sw, sw + 1)}
  if op == "cutout":
    side_h, side_w = _shift_bound(p.cutout, h), _shift_bound(p.cutout, w)
    return {"oy": _uniform_ints(u[0], 0, h + (1 - side_h % 2)),
            "ox": _uniform_ints(u[1], 0, w + (1 - side_w % 2)),
            "side_h": side_h, "side_w": side_w}
  # color
  return {"brightness": u[0], "saturation": u[1], "contrast": u[2]}


# ----------------------------------------------------------------------------- ops


def _per_image(v):
  """Scalar (shared) parameters broadcast as is; [N] parameters become [N, 1, 1, 1]."""
  v = jnp.asarray(v)
  return v.reshape(v.shape + (1, 1, 1)) if v.ndim == 1 else v


def _map_images(fn: Callable, x, *params):
  """Applies fn(x[N, H, W, ch], *scalar_params) with shared or per-image [N] parameters."""
  if all(jnp.ndim(q) == 0 for q in params):
    return fn(x, *params)
  return jax.vmap(lambda xi, *qi: fn(xi[None], *qi)[0])(x, *params)


def _apply_flip(x, flip):
  """Horizontal flip (reverses the width axis) where `flip` is True."""
  return jnp.where(_per_image(flip), x[:, :, ::-1, :], x)


def _apply_color(x, brightness, saturation, contrast, p: DSAParams = DSAParams()):
  """Brightness, then saturation, then contrast (DSA rand_brightness/_saturation/_contrast)."""
  x = x + (_per_image(brightness) - 0.5) * p.brightness
  m = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - m) * (_per_image(saturation) * p.saturation) + m
  m = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - m) * (_per_image(contrast) + p.contrast) + m


def _shift_shared(x, dy, dx):
  h, w = x.shape[1], x.shape[2]
  rows = jnp.arange(h) + dy
  cols = jnp.arange(w) + dx
  x = jnp.take(x, jnp.clip(rows, 0, h - 1), axis=1)
  x = jnp.where(((rows >= 0) & (rows < h))[None, :, None, None], x, 0.0)
  x = jnp.take(x, jnp.clip(cols, 0, w - 1), axis=2)
  return jnp.where(((cols >= 0) & (cols < w))[None, None, :, None], x, 0.0)


def _apply_crop(x, dy, dx):
  """Integer translation: out[i, j] = x[i + dy, j + dx], zero outside the image."""
  return _map_images(_shift_shared, x, dy, dx)


def _apply_cutout(x, oy, ox, side_h: int, side_w: int):
  """Zeroes rows oy - side_h//2 .. +side_h-1 x cols ox - side_w//2 .. +side_w-1 (clamped)."""
  h, w = x.shape[1], x.shape[2]
  oy, ox = jnp.asarray(oy), jnp.asarray(ox)
  y0 = (oy - side_h // 2)[..., None]
  x0 = (ox - side_w // 2)[..., None]
  rows, cols = jnp.arange(h), jnp.arange(w)
  in_r = (rows >= y0) & (rows < y0 + side_h)      # [..., H]
  in_c = (cols >= x0) & (cols < x0 + side_w)      # [..., W]
  box = in_r[..., :, None] & in_c[..., None, :]   # [..., H, W]
  return jnp.where(box[..., None], 0.0, x)


def bilinear_taps(theta, h: int, w: int):
  """The 4 bilinear taps of torch affine_grid + grid_sample (zeros, align_corners=False)
  for one theta [2, 3] on an h×w image: [(flat source index [H, W] int32, weight [H, W])],
  weights zeroed where the tap falls outside the image."""
  theta = jnp.asarray(theta, jnp.float32)
  # Output pixel centres (2j + 1)/w - 1 kept as exact integers cx = 2j + 1 - w; the source
  # pixel coordinate ((g + 1)·w - 1)/2 of grid_sample is then expanded so that the identity
  # theta maps pixel j to exactly j (same maths as torch, less float32 rounding).
  cx = (2.0 * jnp.arange(w, dtype=jnp.float32) + 1.0 - w)[None, :]   # [1, W]
  cy = (2.0 * jnp.arange(h, dtype=jnp.float32) + 1.0 - h)[:, None]   # [H, 1]
  ix = (theta[0, 0] * cx + theta[0, 1] * (w / h) * cy + theta[0, 2] * w + (w - 1.0)) / 2.0
  iy = (theta[1, 0] * (h / w) * cx + theta[1, 1] * cy + theta[1, 2] * h + (h - 1.0)) / 2.0
  x0 = jnp.floor(ix)
  y0 = jnp.floor(iy)
  tx = ix - x0
  ty = iy - y0
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  taps = []
  for dy, dx, wgt in ((0, 0, (1 - ty) * (1 - tx)), (0, 1, (1 - ty) * tx),
                      (1, 0, ty * (1 - tx)), (1, 1, ty * tx)):
    yy, xx = y0 + dy, x0 + dx
    valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    idx = jnp.clip(yy, 0, h - 1) * w + jnp.clip(xx, 0, w - 1)
    taps.append((idx, jnp.where(valid, wgt, 0.0)))
  return taps


def _affine_shared(x, theta):
  """torch affine_grid + grid_sample(bilinear, zeros, align_corners=False), one theta [2, 3]."""
  n, h, w, c = x.shape
  flat = x.reshape(n, h * w, c)
  out = jnp.zeros(x.shape, jnp.promote_types(x.dtype, jnp.float32))
  for idx, wgt in bilinear_taps(theta, h, w):
    vals = jnp.take(flat, idx.reshape(-1), axis=1).reshape(n, h, w, c)
    out = out + vals * wgt[None, :, :, None]
  return out.astype(x.dtype)


def _scale_theta(sx, sy):
  z = jnp.zeros_like(sx)
  return jnp.stack([jnp.stack([sx, z, z]), jnp.stack([z, sy, z])])


def _rotate_theta(angle):
  c, s, z = jnp.cos(angle), jnp.sin(angle), jnp.zeros_like(angle)
  return jnp.stack([jnp.stack([c, -s, z]), jnp.stack([s, c, z])])


def _apply_scale(x, sx, sy):
  """Affine zoom: output point (u, v) samples the input at (sx·u, sy·v) (normalised coords)."""
  return _map_images(lambda xi, a, b: _affine_shared(xi, _scale_theta(a, b)), x,
                     jnp.asarray(sx, jnp.float32), jnp.asarray(sy, jnp.float32))


def _apply_rotate(x, angle):
  """Rotation by `angle` radians about the centre (positive = counter-clockwise on screen)."""
  return _map_images(lambda xi, a: _affine_shared(xi, _rotate_theta(a)), x,
                     jnp.asarray(angle, jnp.float32))


def _apply_op(op: str, x, prm: dict, p: DSAParams = DSAParams()):
  if op == "flip":
    return _apply_flip(x, prm["flip"])
  if op == "scale":
    return _apply_scale(x, prm["sx"], prm["sy"])
  if op == "rotate":
    return _apply_rotate(x, prm["angle"])
  if op == "crop":
    return _apply_crop(x, prm["dy"], prm["dx"])
  if op == "cutout":
    return _apply_cutout(x, prm["oy"], prm["ox"], prm["side_h"], prm["side_w"])
  if op == "color":
    return _apply_color(x, prm["brightness"], prm["saturation"], prm["contrast"], p)
  raise ConfigError(f"augment: unknown op {op!r} (known: {', '.join(OPS)})")


def _run_op(op: str, key, x, siamese: bool, p: DSAParams):
  """Samples `op`'s parameters from `key` and applies them to x [N, H, W, ch]."""
  shape = () if siamese else (x.shape[0],)
  return _apply_op(op, x, _sample_op(op, key, shape, x.shape[1:3], p), p).astype(x.dtype)


def _run_one_of(ops: tuple[str, ...], key, x, siamese: bool, p: DSAParams):
  """Applies exactly one of `ops`, chosen uniformly from the call key."""
  if not ops:
    return x
  branches = [functools.partial(_run_op, op, key, siamese=siamese, p=p) for op in ops]
  if len(branches) == 1:
    return branches[0](x)
  return jax.lax.switch(_choose(key, len(ops)), branches, x)


# ----------------------------------------------------------------------------- public


def augment(key, x, *, policy: str = "dm", strategy: str | None = DEFAULT_STRATEGY,
            siamese: bool = True, params: DSAParams = DSAParams()) -> jax.Array:
  """DSA on x [N, H, W, ch] (float); returns the same shape.  See the module docstring.

  `key` fixes the op choice and all parameters; with siamese=True the transform does not
  depend on N, so the same key gives the same transform to real and synthetic batches.
  """
  if policy not in POLICIES:
    raise ConfigError(f"augment policy {policy!r} unknown (known: {', '.join(POLICIES)})")
  if not isinstance(params, DSAParams):
    raise ConfigError(f"augment params must be a DSAParams, got {type(params).__name__}")
  ops = parse_strategy(strategy)
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ConfigError(f"augment: x must be [N, H, W, ch], got shape {tuple(x.shape)}")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ConfigError(f"augment: x must be floating point, got {x.dtype}")
  if not ops:
    return x
  siamese = bool(siamese)
  if policy == "dm":
    return _run_one_of(ops, key, x, siamese, params)
  # policy == "idc"
  if "flip" in ops:
    x = _run_op("flip", key, x, siamese, params)
  if "color" in ops:
    x = _run_op("color", key, x, siamese, params)
  x = _run_one_of(tuple(op for op in ops if op in _IDC_SINGLE_OPS), key, x, siamese, params)
  if "cutout" in ops:
    x = _run_op("cutout", key, x, siamese, params)
  return x

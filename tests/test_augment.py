"""Tests for jaxcond.augment (DSA, Zhao & Bilen, ICML 2021, arXiv 2102.08259): exact ops, siamese sharing, policies."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxcond import augment as A
from jaxcond.errors import ConfigError

P = A.DSAParams()
ALL = "color_crop_cutout_flip_scale_rotate"


def _img(n=4, h=8, w=8, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal((n, h, w, c)), jnp.float32)


@functools.partial(jax.jit, static_argnames=("policy", "strategy", "siamese"))
def _aug(key, x, policy="dm", strategy=ALL, siamese=True):
  return A.augment(key, x, policy=policy, strategy=strategy, siamese=siamese)


@functools.partial(jax.jit, static_argnames=("op", "siamese"))
def _run(key, x, op, siamese=True):
  return A._run_op(op, key, x, siamese, P)


_scale_j = jax.jit(A._apply_scale)
_rotate_j = jax.jit(A._apply_rotate)


def _np_affine(x, theta):
  """float64 reference of torch affine_grid + grid_sample(bilinear, zeros, align_corners=False)."""
  x = np.asarray(x, np.float64)
  n, h, w, c = x.shape
  out = np.zeros_like(x)
  for i in range(h):
    for j in range(w):
      u, v = (2 * j + 1) / w - 1, (2 * i + 1) / h - 1
      gx = theta[0][0] * u + theta[0][1] * v + theta[0][2]
      gy = theta[1][0] * u + theta[1][1] * v + theta[1][2]
      sx, sy = ((gx + 1) * w - 1) / 2, ((gy + 1) * h - 1) / 2
      x0, y0 = int(np.floor(sx)), int(np.floor(sy))
      for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
        if 0 <= yy < h and 0 <= xx < w:
          wgt = (1 - abs(sx - xx)) * (1 - abs(sy - yy))
          out[:, i, j] += wgt * x[:, yy, xx]
  return out


# ----------------------------------------------------------------------------- validation


def test_parse_strategy_and_errors():
  assert A.parse_strategy(ALL) == ("color", "crop", "cutout", "flip", "scale", "rotate")
  assert A.parse_strategy("Color_Crop") == ("color", "crop")
  assert A.parse_strategy("none") == A.parse_strategy("") == A.parse_strategy(None) == ()
  for bad in ("color_blur", "crop__flip", "translate", "crop_crop"):
    with pytest.raises(ConfigError, match="strategy"):
      A.parse_strategy(bad)
  x = _img()
  with pytest.raises(ConfigError, match="policy"):
    A.augment(jax.random.key(0), x, policy="dsa")
  with pytest.raises(ConfigError, match=r"\[N, H, W, ch\]"):
    A.augment(jax.random.key(0), x[0])
  with pytest.raises(ConfigError, match="DSAParams.scale"):
    A.DSAParams(scale=0.5)
  with pytest.raises(ConfigError, match="DSAParams.flip"):
    A.DSAParams(flip=1.5)


def test_none_strategy_is_identity():
  x = _img()
  for s in ("none", ""):
    np.testing.assert_array_equal(np.asarray(A.augment(jax.random.key(0), x, strategy=s)),
                                  np.asarray(x))


# ----------------------------------------------------------------------------- exact ops


def test_flip_exact():
  x = jnp.arange(2 * 3 * 5 * 2, dtype=jnp.float32).reshape(2, 3, 5, 2)
  np.testing.assert_array_equal(np.asarray(A._apply_flip(x, jnp.bool_(True))),
                                np.asarray(x)[:, :, ::-1, :])
  np.testing.assert_array_equal(np.asarray(A._apply_flip(x, jnp.bool_(False))), np.asarray(x))
  y = np.asarray(A._apply_flip(x, jnp.array([True, False])))       # per-sample
  np.testing.assert_array_equal(y[0], np.asarray(x)[0, :, ::-1])
  np.testing.assert_array_equal(y[1], np.asarray(x)[1])


def _np_shift(x, dy, dx):
  x = np.asarray(x)
  out = np.zeros_like(x)
  n, h, w, c = x.shape
  for i in range(h):
    for j in range(w):
      if 0 <= i + dy < h and 0 <= j + dx < w:
        out[:, i, j] = x[:, i + dy, j + dx]
  return out


@pytest.mark.parametrize("dy,dx", [(2, -3), (-4, 4), (0, 0), (-1, 0)])
def test_crop_exact(dy, dx):
  x = _img(2, 8, 10) + 10.0                          # no zeros in the content
  y = np.asarray(A._apply_crop(x, jnp.int32(dy), jnp.int32(dx)))
  np.testing.assert_array_equal(y, _np_shift(x, dy, dx))
  # vacated band is exactly zero, the rest is shifted content (never zero)
  h, w = 8, 10
  band = np.zeros((h, w), bool)
  band[h - dy:] = dy > 0
  band[:max(-dy, 0)] = True
  band[:, w - dx:] = band[:, w - dx:] | (dx > 0)
  band[:, :max(-dx, 0)] = True
  assert np.all(y[:, band] == 0) and np.all(y[:, ~band] != 0)
  np.testing.assert_array_equal(y[0, max(-dy, 0), max(-dx, 0)],
                                np.asarray(x)[0, max(dy, 0), max(dx, 0)])


def test_crop_per_sample_exact():
  x = _img(3, 8, 8) + 10.0
  dy, dx = jnp.array([1, -2, 0]), jnp.array([0, 3, -4])
  y = np.asarray(A._apply_crop(x, dy, dx))
  for i in range(3):
    np.testing.assert_array_equal(y[i:i + 1], _np_shift(x[i:i + 1], int(dy[i]), int(dx[i])))


def _np_cutout(x, oy, ox, side_h, side_w):
  """Literal torch semantics: indices o - side//2 + k, k < side, clamped, zeroed."""
  x = np.array(x)
  h, w = x.shape[1:3]
  rows = np.clip(oy - side_h // 2 + np.arange(side_h), 0, h - 1)
  cols = np.clip(ox - side_w // 2 + np.arange(side_w), 0, w - 1)
  x[:, rows[:, None], cols[None, :]] = 0
  return x


@pytest.mark.parametrize("h", [10, 8])                 # odd side 5, even side 4
def test_cutout_exact(h):
  x = _img(2, h, h) + 10.0
  side = int(0.5 * h + 0.5)
  for oy in range(0, h + (1 - side % 2)):
    for ox in (0, 3, h - 1 + (1 - side % 2)):
      y = np.asarray(A._apply_cutout(x, jnp.int32(oy), jnp.int32(ox), side, side))
      np.testing.assert_array_equal(y, _np_cutout(x, oy, ox, side, side))
  y = np.asarray(A._apply_cutout(x, jnp.int32(4), jnp.int32(5), side, side))
  box = y[0, :, :, 0] == 0
  r0, c0 = 4 - side // 2, 5 - side // 2                 # an interior box: full square
  assert box.sum() == side * side and box[r0:r0 + side, c0:c0 + side].all()
  np.testing.assert_array_equal(y[:, ~box], np.asarray(x)[:, ~box])


def test_scale_rotate_identity():
  for h, w in ((8, 8), (6, 10)):
    x = _img(2, h, w)
    np.testing.assert_allclose(np.asarray(_scale_j(x, 1.0, 1.0)), np.asarray(x), atol=1e-6)
    np.testing.assert_allclose(np.asarray(_rotate_j(x, 0.0)), np.asarray(x), atol=1e-6)


def test_rotate_90_matches_rot90_counterclockwise():
  x = _img(2, 8, 8)
  y = np.asarray(_rotate_j(x, np.pi / 2))
  ref = np.rot90(np.asarray(x), k=1, axes=(1, 2))     # positive angle = counter-clockwise
  np.testing.assert_allclose(y[:, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-5)
  np.testing.assert_allclose(y, ref, atol=1e-5)
  y = np.asarray(_rotate_j(x, -np.pi / 2))
  np.testing.assert_allclose(y, np.rot90(np.asarray(x), k=-1, axes=(1, 2)), atol=1e-5)


@pytest.mark.parametrize("op,prm", [("scale", (1.15, 0.87)), ("scale", (2.0, 0.5)),
                                    ("rotate", (0.2,)), ("rotate", (-0.26,))])
def test_affine_matches_numpy_grid_sample(op, prm):
  x = _img(2, 6, 10)
  if op == "scale":
    y = _scale_j(x, *prm)
    theta = [[prm[0], 0, 0], [0, prm[1], 0]]
  else:
    y = _rotate_j(x, *prm)
    a = prm[0]
    theta = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]]
  np.testing.assert_allclose(np.asarray(y), _np_affine(x, theta), atol=1e-5)


def test_color_exact():
  x = _img(2, 4, 4)
  b, s, c = 0.8, 0.3, 0.6
  y = np.asarray(A._apply_color(x, b, s, c))
  r = np.asarray(x, np.float64) + (b - 0.5) * 1.0
  m = r.mean(-1, keepdims=True)
  r = (r - m) * (s * 2.0) + m
  m = r.mean((1, 2, 3), keepdims=True)
  r = (r - m) * (c + 0.5) + m
  np.testing.assert_allclose(y, r, atol=1e-5)
  g = _img(2, 4, 4, c=1)                             # one channel: saturation is identity
  np.testing.assert_allclose(np.asarray(A._apply_color(g, 0.5, 0.0, 0.5)), np.asarray(g),
                             atol=1e-6)


# ----------------------------------------------------------------------------- siamese


def _check_siamese(fn):
  a, b = _img(4, 8, 8, seed=1), _img(4, 8, 8, seed=2)
  for i in range(3):
    k = jax.random.key(i)
    whole = np.asarray(fn(k, jnp.concatenate([a, b])))
    parts = np.concatenate([np.asarray(fn(k, a)), np.asarray(fn(k, b))])
    np.testing.assert_array_equal(whole, parts)
  # one transform for every image: identical inputs stay identical
  same = np.asarray(fn(jax.random.key(7), jnp.stack([a[0]] * 4)))
  assert all(np.array_equal(same[0], same[i]) for i in range(1, 4))


@pytest.mark.parametrize("op", A.OPS)
def test_siamese_concat_equals_parts_forced_op(op):
  _check_siamese(lambda k, x: _run(k, x, op))


@pytest.mark.parametrize("policy", A.POLICIES)
def test_siamese_concat_equals_parts_policy(policy):
  _check_siamese(lambda k, x: _aug(k, x, policy))


@jax.jit
def _grads_all_ops(key, x, wgt):
  """d/dx sum(w · op(x)) for every op (siamese), one compile."""
  return {op: jax.grad(lambda v: jnp.sum(A._run_op(op, key, v, True, P) * wgt))(x)
          for op in A.OPS}


def test_gradients_nonzero_every_op():
  x, wgt = _img(4, 8, 8), _img(4, 8, 8, seed=3)
  grads = _grads_all_ops(jax.random.key(3), x, wgt)
  assert len(grads) == len(A.OPS)
  for name, g in grads.items():
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0, name


def test_affine_gradients_match_finite_differences():
  x = _img(1, 5, 5, 1)
  check_grads(jax.jit(lambda v: A._apply_rotate(v, 0.3)), (x,), order=1, modes=("rev",),
              atol=1e-2, rtol=1e-2)


# ----------------------------------------------------------------------------- distributions


@jax.jit
def _all_draws(keys):
  return {op: jax.vmap(lambda k: A._sample_op(op, k, (), (32, 32), P))(keys) for op in A.OPS}


def test_parameter_ranges_over_many_keys():
  draws = _all_draws(jax.random.split(jax.random.key(0), 2000))
  _draws = lambda keys, op: draws[op]
  keys = None
  flip = np.asarray(_draws(keys, "flip")["flip"])
  assert 0.46 < flip.mean() < 0.54
  crop = {k: np.asarray(v) for k, v in _draws(keys, "crop").items()}
  s = int(0.125 * 32 + 0.5)
  for v in (crop["dy"], crop["dx"]):
    assert set(v.tolist()) == set(range(-s, s + 1))
  sc = _draws(keys, "scale")
  for v in (np.asarray(sc["sx"]), np.asarray(sc["sy"])):
    assert v.min() >= 1 / 1.2 - 1e-6 and v.max() <= 1.2 + 1e-6
    assert v.min() < 0.85 and v.max() > 1.18
  assert abs(np.corrcoef(np.asarray(sc["sx"]), np.asarray(sc["sy"]))[0, 1]) < 0.1   # independent
  ang = np.asarray(_draws(keys, "rotate")["angle"]) * 180 / np.pi
  assert ang.min() >= -15 - 1e-4 and ang.max() <= 15 + 1e-4 and ang.min() < -14 and ang.max() > 14
  cut = _draws(keys, "cutout")
  side = int(0.5 * 32 + 0.5)                            # 16, even -> centres in [0, 33)
  for v in (np.asarray(cut["oy"]), np.asarray(cut["ox"])):
    assert set(v.tolist()) == set(range(0, 32 + 1 - side % 2))
  col = _draws(keys, "color")
  for v in col.values():
    v = np.asarray(v)
    assert v.min() >= 0 and v.max() <= 1 and 0.45 < v.mean() < 0.55


def test_dm_op_group_frequencies_uniform():
  keys = jax.random.split(jax.random.key(1), 6000)
  idx = np.asarray(jax.jit(jax.vmap(lambda k: A._choose(k, 6)))(keys))
  freq = np.bincount(idx, minlength=6) / len(idx)
  np.testing.assert_allclose(freq, 1 / 6, atol=0.025)


def test_dm_policy_applies_exactly_the_chosen_op():
  x = _img(4, 8, 8)
  ops = A.parse_strategy(ALL)
  seen = set()
  for i in range(24):
    k = jax.random.key(100 + i)
    op = ops[int(A._choose(k, len(ops)))]
    seen.add(op)
    np.testing.assert_array_equal(np.asarray(_aug(k, x)), np.asarray(_run(k, x, op)))
  assert len(seen) >= 5


def test_idc_policy_composition():
  """flip and color and cutout on every call, exactly one of crop/scale/rotate in between."""
  x = _img(4, 8, 8) + 10.0
  side = int(0.5 * 8 + 0.5)
  chosen = []
  for i in range(16):
    k = jax.random.key(200 + i)
    y = np.asarray(_aug(k, x, "idc", ALL))
    ref = _run(k, x, "flip")
    ref = _run(k, ref, "color")
    op = ("crop", "scale", "rotate")[int(A._choose(k, 3))]
    chosen.append(op)
    ref = _run(k, _run(k, ref, op), "cutout")
    np.testing.assert_allclose(y, np.asarray(ref), atol=1e-6)
    # cutout always present: at least a side x side block of exact zeros in every image
    prm = A._sample_op("cutout", k, (), (8, 8), P)
    r0 = max(int(prm["oy"]) - side // 2, 0)
    c0 = max(int(prm["ox"]) - side // 2, 0)
    assert np.all(y[:, r0, c0] == 0)
  assert set(chosen) == {"crop", "scale", "rotate"}
  # color always applied (brightness/contrast shift the image), cutout always zeroes a box
  for i in range(8):
    y = np.asarray(_aug(jax.random.key(300 + i), x, "idc", "color_cutout"))
    assert np.count_nonzero(np.all(y == 0, axis=-1)) >= 1
    nz = np.all(y != 0, axis=-1)
    assert not np.allclose(y[nz], np.asarray(x)[nz])


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize("op", ["crop", "scale", "color", "cutout"])
def test_per_sample_mode_draws_per_image(op):
  x = jnp.stack([_img(1, 8, 8)[0]] * 4)
  k = jax.random.key(5)
  prm = A._sample_op(op, k, (4,), (8, 8), P)
  first = [v for v in prm.values() if jnp.ndim(v) == 1][0]
  assert len(set(np.asarray(first).tolist())) > 1
  y = np.asarray(_run(k, x, op, siamese=False))
  assert not all(np.array_equal(y[0], y[i]) for i in range(1, 4))
  np.testing.assert_allclose(y, np.asarray(jax.jit(A._apply_op, static_argnums=0)(op, x, prm)),
                             atol=1e-5)


@pytest.mark.parametrize("policy,siamese", [("dm", True)])
def test_vmap_over_classes_equals_loop(policy, siamese):
  C = 3
  x = jnp.stack([_img(4, 8, 8, seed=s) for s in range(C)])
  keys = jax.random.split(jax.random.key(9), C)
  fn = functools.partial(A.augment, policy=policy, strategy=ALL, siamese=siamese)
  got = np.asarray(jax.jit(jax.vmap(fn))(keys, x))
  for c in range(C):
    np.testing.assert_allclose(got[c], np.asarray(_aug(keys[c], x[c], policy, ALL, siamese)),
                               atol=1e-5)

"""Tests for jaxcond.synthetic: init, multi-formation decode (IDC, arXiv 2205.14959), pixel spaces."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcond import synthetic as S
from jaxcond.errors import ConfigError


def _np_bilinear_axis(a, axis, out):
  """torch bilinear (align_corners=False, no antialias) along one axis, float64."""
  n_in = a.shape[axis]
  scale = n_in / out
  src = np.maximum((np.arange(out) + 0.5) * scale - 0.5, 0.0)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, n_in - 1)
  lam = src - i0
  shape = [1] * a.ndim
  shape[axis] = out
  lam = lam.reshape(shape)
  return np.take(a, i0, axis=axis) * (1 - lam) + np.take(a, i1, axis=axis) * lam


def _np_bilinear(a, hw):
  a = np.asarray(a, np.float64)
  return _np_bilinear_axis(_np_bilinear_axis(a, -3, hw[0]), -2, hw[1])


def _quadrants(h=8, vals=(0.1, 0.7, 0.3, 0.9)):
  x = np.zeros((h, h, 3), np.float32)
  m = h // 2
  x[:m, :m], x[:m, m:], x[m:, :m], x[m:, m:] = vals
  return x


def test_decode_quadrants_exact_constants():
  x = _quadrants()[None, None]                       # [C=1, N=1, 8, 8, 3]
  d = np.asarray(S.decode(x, 2))
  assert d.shape == (1, 4, 8, 8, 3)
  for k, v in enumerate((0.1, 0.7, 0.3, 0.9)):       # row-major: TL, TR, BL, BR
    np.testing.assert_array_equal(d[0, k], np.full((8, 8, 3), v, np.float32))


def test_decode_factor1_identity_and_leading_dims():
  x = np.random.default_rng(0).random((2, 3, 4, 5, 6, 1), np.float32)
  np.testing.assert_array_equal(np.asarray(S.decode(x, 1)), x)
  d = S.decode(x, 2)
  assert d.shape == (2, 3, 16, 5, 6, 1)


def test_decode_order_row_major_per_stored_image():
  a, b = _quadrants(vals=(1, 2, 3, 4)), _quadrants(vals=(5, 6, 7, 8))
  d = np.asarray(S.decode(np.stack([a, b]), 2))
  assert d.shape == (8, 8, 8, 3)
  np.testing.assert_array_equal(d[:, 0, 0, 0], np.arange(1, 9, dtype=np.float32))


def test_mix_tile_decode_round_trip_constant_cells():
  rng = np.random.default_rng(1)
  vals = rng.random((2, 3 * 4)).astype(np.float32)           # C=2, ipc=3, f=2
  imgs = np.broadcast_to(vals[:, :, None, None, None], (2, 12, 16, 16, 3))
  stored = S.encode_mix(imgs, 2)
  assert stored.shape == (2, 3, 16, 16, 3)
  d = np.asarray(S.decode(stored, 2))
  assert d.shape == (2, 12, 16, 16, 3)
  np.testing.assert_allclose(d, imgs, rtol=0, atol=1e-6)
  # split_cells is the exact inverse of tile.
  cells = S.split_cells(stored, 2)
  np.testing.assert_array_equal(np.asarray(S.tile(cells, 2, (16, 16))), np.asarray(stored))


def test_padding_with_half_for_28_factor3():
  x = np.full((1, 28, 28, 1), 0.2, np.float32)
  assert S.cell_size(28, 3) == 10
  cells = np.asarray(S.split_cells(x, 3))
  assert cells.shape == (9, 10, 10, 1)
  for r in range(3):
    for c in range(3):
      cell = cells[r * 3 + c, ..., 0]
      expect = np.full((10, 10), 0.2, np.float32)
      if r == 2:
        expect[8:, :] = 0.5
      if c == 2:
        expect[:, 8:] = 0.5
      np.testing.assert_array_equal(cell, expect)
  d = np.asarray(S.decode(x, 3))
  assert d.shape == (9, 28, 28, 1)
  np.testing.assert_allclose(d[0], 0.2, atol=1e-6)
  np.testing.assert_allclose(d[8], _np_bilinear(cells[8], (28, 28)), atol=1e-6)
  assert d[8, -1, -1, 0] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("cell,out", [((10, 10), (28, 28)), ((16, 16), (32, 32)),
                                      ((11, 11), (32, 32)), ((7, 5), (21, 16)),
                                      ((3, 3), (3, 3))])
def test_bilinear_matches_numpy_reference(cell, out):
  a = np.random.default_rng(2).standard_normal((2,) + cell + (3,)).astype(np.float32)
  got = np.asarray(S.resize_bilinear(a, out))
  np.testing.assert_allclose(got, _np_bilinear(a, out), rtol=2e-6, atol=2e-6)


def test_decode_matches_numpy_reference_non_divisible():
  x = np.random.default_rng(3).random((2, 32, 32, 3)).astype(np.float32)
  d = np.asarray(S.decode(x, 3))                          # cell 11, padded to 33
  pad = np.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=0.5)
  k = 0
  for n in range(2):
    for r in range(3):
      for c in range(3):
        ref = _np_bilinear(pad[n, r * 11:(r + 1) * 11, c * 11:(c + 1) * 11], (32, 32))
        np.testing.assert_allclose(d[k], ref, atol=2e-6)
        k += 1


def test_nearest_index_torch_semantics():
  np.testing.assert_array_equal(S._nearest_index(28, 14), np.arange(14) * 2)
  np.testing.assert_array_equal(S._nearest_index(32, 11),
                                np.floor(np.arange(11) * np.float32(32 / 11)).astype(int))
  np.testing.assert_array_equal(S._nearest_index(5, 10), np.arange(10) // 2)


def test_init_real_distinct_images_of_right_class():
  C, n = 4, 9
  vals = (np.arange(C)[:, None] * 1000 + np.arange(n)[None]).astype(np.float32)
  real = np.broadcast_to(vals[:, :, None, None, None], (C, n, 4, 4, 1)).copy()
  out = np.asarray(S.init_images(jax.random.key(0), real, 5, method="real"))
  assert out.shape == (C, 5, 4, 4, 1)
  picked = out[:, :, 0, 0, 0].astype(int)
  for c in range(C):
    assert np.all(picked[c] // 1000 == c)
    assert len(set(picked[c] % 1000)) == 5
    # whole images are copied, not just one pixel
    np.testing.assert_array_equal(out[c], real[c, picked[c] % 1000])
  out2 = np.asarray(S.init_images(jax.random.key(0), real, 5, method="real"))
  np.testing.assert_array_equal(out, out2)
  out3 = np.asarray(S.init_images(jax.random.key(1), real, 5, method="real"))
  assert not np.array_equal(out, out3)
  # per-class keys come from the global class id: classes (2, 3) alone draw as in the full set
  sub = np.asarray(S.init_images(jax.random.key(0), real[2:], 5, method="real",
                                 class_ids=np.array([2, 3])))
  np.testing.assert_array_equal(sub, out[2:])


def test_init_mix_tiles_distinct_nearest_shrunk_images():
  C, n, f, ipc, H = 2, 20, 3, 2, 28
  rng = np.random.default_rng(4)
  real = rng.random((C, n, H, H, 1)).astype(np.float32)
  real[:, :, 0, 0, 0] = np.arange(C * n).reshape(C, n)     # tag each image in its (0, 0) pixel
  out = np.asarray(S.init_images(jax.random.key(5), real, ipc, method="mix", factor=f,
                                 space="unit"))
  assert out.shape == (C, ipc, H, H, 1)
  cell = 10
  idx = S._nearest_index(H, cell)
  assert idx[0] == 0
  for c in range(C):
    tags = out[c, :, ::cell, ::cell, 0].reshape(-1).astype(int)  # (0, 0) pixel of every cell
    assert len(set(tags)) == ipc * f * f
    assert np.all(tags // n == c)
    for k in range(ipc):
      for r in range(f):
        for q in range(f):
          tag = int(out[c, k, r * cell, q * cell, 0])
          src = real[c, tag - c * n]
          shrunk = src[idx][:, idx]
          got = out[c, k, r * cell:(r + 1) * cell, q * cell:(q + 1) * cell]
          np.testing.assert_array_equal(got, shrunk[:got.shape[0], :got.shape[1]])


def test_noise_stats_and_shapes():
  real = np.zeros((3, 1, 16, 16, 3), np.float32)
  z = np.asarray(S.init_images(jax.random.key(0), real, 10, method="noise"))
  assert z.shape == (3, 10, 16, 16, 3)
  assert abs(z.mean()) < 0.03 and abs(z.std() - 1.0) < 0.03
  u = np.asarray(S.init_images(jax.random.key(0), real, 10, method="noise", space="unit"))
  assert u.min() >= 0.0 and u.max() <= 1.0
  assert abs(u.mean() - 0.5) < 0.01
  assert 0.23 < u.std() < 0.25                      # N(0,1)/4 with ~4.6% clipped
  assert np.mean((u == 0.0) | (u == 1.0)) == pytest.approx(0.0455, abs=0.01)


@pytest.mark.parametrize("C,ipc,f", [(1, 1, 1), (2, 2, 3)])
def test_init_and_decode_shapes(C, ipc, f):
  real = np.random.default_rng(0).random((C, ipc * f * f, 12, 12, 3)).astype(np.float32)
  for method in ("real", "mix"):                   # "noise" shapes: test_noise_stats_and_shapes
    x = S.init_images(jax.random.key(0), real, ipc, method=method, factor=f, space="unit")
    assert x.shape == (C, ipc, 12, 12, 3)
    assert S.decode(x, f).shape == (C, ipc * f * f, 12, 12, 3)


def test_clamp_and_gradients():
  x = jnp.array([-0.5, 0.0, 0.25, 1.0, 1.5])
  np.testing.assert_array_equal(np.asarray(S.clamp(x, "unit")), [0.0, 0.0, 0.25, 1.0, 1.0])
  np.testing.assert_array_equal(np.asarray(S.clamp(x, "normalized")), np.asarray(x))
  g = jax.grad(lambda v: S.clamp(v, "unit").sum())(x)
  np.testing.assert_array_equal(np.asarray(g), [0.0, 1.0, 1.0, 1.0, 0.0])   # torch clamp grads


def test_to_model_input():
  x = jnp.full((2, 4, 4, 3), 0.5).at[0, 0, 0, 0].set(2.0)
  mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
  y = np.asarray(S.to_model_input(x, "unit", mean, std))
  assert y.dtype == np.float32
  np.testing.assert_allclose(y[1, 0, 0], [0.5, 0.0, -0.2], atol=1e-6)
  assert y[0, 0, 0, 0] == pytest.approx((1.0 - 0.4) / 0.2)          # clipped first
  z = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(S.to_model_input(z, "normalized", mean, std)), z)
  with pytest.raises(ConfigError, match="channels"):
    S.to_model_input(x, "unit", (0.5,), (0.5,))


def test_decode_jit_grad():
  x = jnp.asarray(np.random.default_rng(0).random((2, 1, 9, 9, 1)), jnp.float32)
  f = jax.jit(lambda v: S.decode(v, 2))
  np.testing.assert_allclose(np.asarray(f(x)), np.asarray(S.decode(x, 2)), atol=1e-6)
  g = jax.grad(lambda v: (S.decode(v, 2) ** 2).sum())(x)
  assert np.all(np.isfinite(np.asarray(g))) and np.abs(np.asarray(g)).min() > 0


def test_errors():
  real = np.zeros((2, 3, 8, 8, 1), np.float32)
  with pytest.raises(ConfigError, match="method"):
    S.init_images(jax.random.key(0), real, 1, method="kmeans")
  with pytest.raises(ConfigError, match="space"):
    S.init_images(jax.random.key(0), real, 1, space="pixels")
  with pytest.raises(ConfigError, match="factor"):
    S.init_images(jax.random.key(0), real, 1, factor=0)
  with pytest.raises(ConfigError, match="factor"):
    S.decode(real, 1.5)
  with pytest.raises(ConfigError, match="needs 4 real images"):
    S.init_images(jax.random.key(0), real, 4, method="real")
  with pytest.raises(ConfigError, match="needs 4 real images"):
    S.init_images(jax.random.key(0), real, 1, method="mix", factor=2)
  with pytest.raises(ConfigError, match="ipc"):
    S.init_images(jax.random.key(0), real, 0)
  with pytest.raises(ConfigError, match="space"):
    S.clamp(real, "rgb")

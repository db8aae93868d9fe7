"""jaxcond.mmd against an independent float64 NumPy reference (M3D, arXiv 2312.15927)."""
import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.distance import cdist

from jaxcond import mmd
from jaxcond.errors import ConfigError

M3D = (0.25, 0.5, 1.0, 2.0, 4.0)
# Jitted entry point for the value tests: one compile per shape instead of one per op.
jmmd2 = jax.jit(mmd.mmd2, static_argnames=(
    "kernel", "estimator", "multipliers", "bandwidths", "degree", "coef0"))


@functools.partial(jax.jit, static_argnames="estimators")
def all_variants(x, y, estimators=mmd.ESTIMATORS):
  """{(kernel, estimator): mmd2} in one compiled program."""
  return {(k, e): mmd.mmd2(x, y, kernel=k, estimator=e) for k in mmd.KERNELS for e in estimators}


# ----------------------------------------------------------------------------- reference


def ref_bandwidth(x, y):
  z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)])
  n = len(z)
  h = cdist(z, z, "sqeuclidean").sum() / (n * n - n) if n > 1 else 0.0
  return h if h > 0 else 1.0


def ref_mmd2(x, y, kernel="gaussian", estimator="biased", multipliers=M3D, bandwidths=None,
             degree=2, coef0=1.0, h=None):
  """Float64 MMD² of one pair of sets, straight from the definition (cdist, no centring)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  z = np.concatenate([x, y])
  n, m = len(x), len(y)
  if kernel == "gaussian":
    dist = cdist(z, z, "sqeuclidean")
    if bandwidths is None:
      h = ref_bandwidth(x, y) if h is None else h
      divisors = [mult * h for mult in multipliers]
    else:
      divisors = bandwidths
    k = sum(np.exp(-dist / b) for b in divisors)
  elif kernel == "linear":
    k = z @ z.T
  else:
    k = (z @ z.T + coef0) ** degree
  kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
  if estimator == "biased":
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()
  return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
          + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def ref_batched(x, y, **kw):
  out = np.zeros(x.shape[:-2])
  for idx in np.ndindex(*x.shape[:-2]):
    out[idx] = ref_mmd2(x[idx], y[idx], **kw)
  return out


def draw(rng, shape_x, shape_y, shift=0.3, scale=1.2, offset=0.0):
  """Two sets from different distributions (so MMD² is not ~0), rounded to float32."""
  x = rng.standard_normal(shape_x) + offset
  y = rng.standard_normal(shape_y) * scale + shift + offset
  return x.astype(np.float32), y.astype(np.float32)


# ----------------------------------------------------------------------------- values


SHAPES = [  # (x shape, y shape)
    ((7, 1), (5, 1)),
    ((33, 64), (20, 64)),
    ((10, 2048), (12, 2048)),
    ((2, 3, 6, 8), (2, 3, 4, 8)),  # leading batch axes
]


@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_matches_float64_reference(shapes):
  """Every kernel × estimator, relative error < 1e-4 (measured: ~2e-7 biased, <5e-5 unbiased)."""
  rng = np.random.default_rng(sum(map(sum, shapes)))
  x, y = draw(rng, *shapes)
  got = all_variants(x, y)
  for (kernel, estimator), value in got.items():
    value = np.asarray(value)
    assert value.shape == x.shape[:-2] and value.dtype == np.float32
    want = ref_batched(x, y, kernel=kernel, estimator=estimator)
    np.testing.assert_allclose(value, want, rtol=1e-4, err_msg=f"{kernel}/{estimator}")


def test_fixed_bandwidths_and_multipliers_match_reference():
  rng = np.random.default_rng(1)
  x, y = draw(rng, (12, 5), (7, 5))

  @jax.jit
  def variants(x, y):
    out = {}
    for est in mmd.ESTIMATORS:
      out["bandwidths", est] = mmd.mmd2(x, y, bandwidths=(10.0, 1.0, 0.2), estimator=est)
      out["multipliers", est] = mmd.mmd2(x, y, multipliers=(1.0, 3.0), estimator=est)
    out["poly3", "biased"] = mmd.mmd2(x, y, kernel="polynomial", degree=3, coef0=0.5)
    return out

  got = variants(x, y)
  for est in mmd.ESTIMATORS:
    want = ref_mmd2(x, y, bandwidths=(10.0, 1.0, 0.2), estimator=est)
    np.testing.assert_allclose(got["bandwidths", est], want, rtol=1e-4)
    np.testing.assert_allclose(got["multipliers", est],
                               ref_mmd2(x, y, multipliers=(1.0, 3.0), estimator=est), rtol=1e-4)
  want = ref_mmd2(x, y, "polynomial", degree=3, coef0=0.5)
  np.testing.assert_allclose(got["poly3", "biased"], want, rtol=1e-4)


def test_centering_helps_with_offset():
  """A large common offset (ReLU features) cancels in |x|²+|y|²−2x·y; pooled-mean centring fixes it.

  Without centring this case measured 3.6e-4 (biased) / 7.5e-3 (unbiased) relative error.
  """
  rng = np.random.default_rng(2)
  x, y = draw(rng, (64, 512), (20, 512), shift=0.05, scale=1.1, offset=30.0)
  both = jax.jit(lambda a, b: {e: mmd.mmd2(a, b, estimator=e) for e in mmd.ESTIMATORS})(x, y)
  for est in mmd.ESTIMATORS:
    got = float(both[est])
    want = ref_mmd2(x, y, estimator=est)
    assert abs(got - want) / abs(want) < 2e-5, (est, got, want)


def test_linear_biased_equals_dm_mean_embedding_distance():
  rng = np.random.default_rng(3)
  x, y = draw(rng, (4, 20, 32), (4, 6, 32))
  dm = np.sum((x.astype(np.float64).mean(-2) - y.astype(np.float64).mean(-2)) ** 2, -1)
  np.testing.assert_allclose(mmd.mmd2(x, y, kernel="linear"), dm, rtol=1e-5)


@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_mmd_of_set_with_itself_is_zero(kernel):
  rng = np.random.default_rng(4)
  x = rng.standard_normal((3, 17, 40)).astype(np.float32)
  got = np.asarray(jmmd2(x, x, kernel=kernel))
  scale = 1.0 if kernel == "gaussian" else float(np.max(np.abs(
      ref_mmd2(x[0], x[0][::-1] + 1, kernel=kernel))))
  assert np.all(np.abs(got) <= 1e-6 * max(scale, 1.0)), got


def test_symmetric():
  rng = np.random.default_rng(5)
  x, y = draw(rng, *SHAPES[-1])
  xy, yx = all_variants(x, y), all_variants(y, x)
  for key in xy:
    np.testing.assert_allclose(xy[key], yx[key], rtol=1e-5, atol=1e-7, err_msg=str(key))


@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_biased_is_nonnegative_on_many_draws(kernel):
  rng = np.random.default_rng(6)
  draws = 200
  x = rng.standard_normal((draws, 8, 6)).astype(np.float32)
  # Half of the y sets are tiny perturbations of x (MMD² ~ 0, where rounding could go < 0).
  noise = np.where(np.arange(draws)[:, None, None] < draws // 2, 1e-3, 1.0)
  y = (x[:, :5] + noise[:, :, :] * rng.standard_normal((draws, 5, 6))).astype(np.float32)
  got = np.asarray(jmmd2(x, y, kernel=kernel))
  assert got.shape == (draws,)
  assert np.all(np.isfinite(got))
  assert got.min() >= -1e-6, got.min()


def test_unbiased_can_be_negative_and_is_unbiased_in_mean():
  """U-statistic sanity: same distribution => mean over draws ~ 0 (and some draws < 0)."""
  rng = np.random.default_rng(7)
  x = rng.standard_normal((400, 6, 3)).astype(np.float32)
  y = rng.standard_normal((400, 5, 3)).astype(np.float32)
  both = jax.jit(lambda a, b: {e: mmd.mmd2(a, b, estimator=e) for e in mmd.ESTIMATORS})(x, y)
  u, v = np.asarray(both["unbiased"]), np.asarray(both["biased"])
  assert (u < 0).any()
  assert abs(u.mean()) < 3 * u.std() / np.sqrt(len(u))
  assert v.mean() > 5 * u.std() / np.sqrt(len(u))  # the V-statistic is biased upwards


# ----------------------------------------------------------------------------- edge cases


def test_single_sample_sets_biased():
  rng = np.random.default_rng(8)
  x, y = draw(rng, (1, 4), (6, 4))
  xy, yx = all_variants(x, y, estimators=("biased",)), all_variants(y, x, estimators=("biased",))
  for kernel in mmd.KERNELS:
    np.testing.assert_allclose(xy[kernel, "biased"], ref_mmd2(x, y, kernel), rtol=1e-4)
    np.testing.assert_allclose(yx[kernel, "biased"], ref_mmd2(y, x, kernel), rtol=1e-4)
  # 1 vs 1: adaptive h = d², so MMD² = 2·Σ_m (1 − exp(−1/m)) whatever the distance.
  const = 2 * sum(1 - np.exp(-1 / mult) for mult in M3D)
  one = np.zeros((3, 1, 3), np.float32)
  other = np.array([0.01, 1.0, 100.0], np.float32)[:, None, None] * np.ones((1, 1, 3), np.float32)
  np.testing.assert_allclose(jmmd2(one, other), [const] * 3, rtol=1e-5)
  # Coinciding points: h would be 0; defined as MMD² = 0, not NaN.
  same = jmmd2(one, one)
  assert np.all(np.asarray(same) == 0.0)
  grad = jax.grad(lambda a: jnp.sum(jmmd2(a, one)))(one)
  assert np.all(np.isfinite(grad))


def test_unbiased_needs_two_samples():
  with pytest.raises(ConfigError, match="unbiased"):
    mmd.mmd2(np.zeros((1, 3)), np.ones((4, 3)), estimator="unbiased")
  with pytest.raises(ConfigError, match="n=4, m=1"):
    mmd.mmd2(np.zeros((4, 3)), np.ones((1, 3)), estimator="unbiased")


@pytest.mark.parametrize("call, pattern", [
    (lambda: mmd.mmd2(np.zeros((4, 3)), np.zeros((4, 5))), "feature sizes differ"),
    (lambda: mmd.mmd2(np.zeros((2, 4, 3)), np.zeros((3, 4, 3))), "leading"),
    (lambda: mmd.mmd2(np.zeros((2, 4, 3)), np.zeros((4, 3))), "leading"),
    (lambda: mmd.mmd2(np.zeros(3), np.zeros(3)), r"\[\.\.\., n, d\]"),
    (lambda: mmd.mmd2(np.zeros((0, 3)), np.zeros((2, 3))), "empty"),
    (lambda: mmd.mmd2(np.zeros((2, 3)), np.zeros((2, 3)), kernel="rbf"), "unknown kernel"),
    (lambda: mmd.mmd2(np.zeros((2, 3)), np.zeros((2, 3)), estimator="mle"), "unknown estimator"),
    (lambda: mmd.mmd2(np.zeros((2, 3)), np.zeros((2, 3)), kernel="polynomial", degree=1.5),
     "degree"),
    (lambda: mmd.mmd2(np.zeros((2, 3)), np.zeros((2, 3)), bandwidths=(1.0, 0.0)), "positive"),
    (lambda: mmd.mmd2(np.zeros((2, 3)), np.zeros((2, 3)), multipliers=()), "empty"),
    (lambda: mmd.pairwise_sq_dists(np.zeros((2, 3)), np.zeros((2, 4))), "feature sizes"),
    (lambda: mmd.kernel_matrix(np.zeros((2, 3)), kernel="laplace"), "unknown kernel"),
])
def test_bad_input_raises_one_line_config_error(call, pattern):
  with pytest.raises(ConfigError, match=pattern) as err:
    call()
  assert isinstance(err.value, ValueError)
  assert "\n" not in str(err.value)


def test_shape_errors_raise_under_jit():
  f = jax.jit(mmd.mmd2)
  with pytest.raises(ConfigError, match="feature sizes differ"):
    f(jnp.zeros((4, 3)), jnp.zeros((4, 5)))


def test_bfloat16_inputs_are_upcast():
  rng = np.random.default_rng(9)
  x, y = draw(rng, (9, 16), (5, 16))
  xb, yb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(y, jnp.bfloat16)
  got = jmmd2(xb, yb)
  assert got.dtype == jnp.float32
  want = ref_mmd2(np.asarray(xb.astype(jnp.float32)), np.asarray(yb.astype(jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-4)


# --------------------------------------------------------------------- batching / transforms


def test_batched_equals_loop_jit_and_vmap():
  rng = np.random.default_rng(10)
  x, y = draw(rng, (5, 12, 7), (5, 8, 7))
  batched = all_variants(x, y)                           # broadcasting over the class axis
  vmapped = jax.jit(jax.vmap(all_variants))(x, y)
  loop = [all_variants(x[c], y[c]) for c in range(5)]    # one compile, 5 calls
  for key in batched:
    want = np.stack([item[key] for item in loop])
    np.testing.assert_allclose(batched[key], want, rtol=1e-5, atol=1e-6, err_msg=str(key))
    np.testing.assert_allclose(vmapped[key], want, rtol=1e-5, atol=1e-6, err_msg=str(key))


def test_bandwidth_is_per_leading_index():
  """Each class gets its own h: scaling one class's features must not change another's MMD²."""
  rng = np.random.default_rng(11)
  x, y = draw(rng, (2, 10, 4), (2, 6, 4))
  base = np.asarray(jmmd2(x, y))
  x2, y2 = x.copy(), y.copy()
  x2[1] *= 50
  y2[1] *= 50
  moved = np.asarray(jmmd2(x2, y2))
  assert moved[0] == base[0]
  np.testing.assert_allclose(moved[1], base[1], rtol=1e-4)  # scale-invariant with adaptive h


# ----------------------------------------------------------------------------- distances / kernels


def test_pairwise_sq_dists():
  rng = np.random.default_rng(12)
  x = (rng.standard_normal((3, 9, 20)) + 5).astype(np.float32)
  y = rng.standard_normal((3, 4, 20)).astype(np.float32)
  dxx = np.asarray(mmd.pairwise_sq_dists(x))
  assert dxx.shape == (3, 9, 9)
  assert np.all(np.diagonal(dxx, axis1=-2, axis2=-1) == 0.0)
  assert dxx.min() >= 0.0
  dxy = np.asarray(mmd.pairwise_sq_dists(x, y))
  for c in range(3):
    np.testing.assert_allclose(dxx[c], cdist(x[c].astype(np.float64), x[c], "sqeuclidean"),
                               rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dxy[c], cdist(x[c].astype(np.float64), y[c], "sqeuclidean"),
                               rtol=1e-4, atol=1e-3)
  # Identical rows: clamped at 0, never negative.
  same = mmd.pairwise_sq_dists(np.ones((3, 5), np.float32) * 1e3, np.ones((2, 5), np.float32) * 1e3)
  assert np.all(np.asarray(same) >= 0)


def test_kernel_matrix_and_bandwidth():
  rng = np.random.default_rng(13)
  x, y = draw(rng, (6, 5), (4, 5))

  @jax.jit
  def compute(x, y):
    return {
        "h": mmd.mean_heuristic_bandwidth(x, y),
        "pooled": mmd.kernel_matrix(jnp.concatenate([x, y])),
        "cross": mmd.kernel_matrix(x, y),
        "fixed_h": mmd.kernel_matrix(x, y, bandwidth=2.0),
        "self": mmd.kernel_matrix(x),
        "linear": mmd.kernel_matrix(x, kernel="linear"),
        "poly": mmd.kernel_matrix(x, y, kernel="polynomial"),
        # No gradient through the bandwidth (M3D reads h from `.data`).
        "dh": jax.grad(lambda a: mmd.mean_heuristic_bandwidth(a, y))(x),
    }

  got = compute(x, y)
  h = ref_bandwidth(x, y)
  np.testing.assert_allclose(got["h"], h, rtol=1e-5)
  z = np.concatenate([x, y]).astype(np.float64)
  dist = cdist(z, z, "sqeuclidean")
  want = sum(np.exp(-dist / (mult * h)) for mult in M3D)
  np.testing.assert_allclose(got["pooled"], want, rtol=1e-5)
  np.testing.assert_allclose(got["cross"], want[:6, 6:], rtol=1e-5)
  np.testing.assert_allclose(got["fixed_h"],
                             sum(np.exp(-dist[:6, 6:] / (2.0 * mult)) for mult in M3D), rtol=1e-5)
  np.testing.assert_allclose(got["linear"], z[:6] @ z[:6].T, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["poly"], (z[:6] @ z[6:].T + 1) ** 2, rtol=1e-5)
  assert np.all(np.diagonal(np.asarray(got["self"])) == len(M3D))
  assert np.all(np.asarray(got["dh"]) == 0)


# ----------------------------------------------------------------------------- gradients


GRAD_VARIANTS = [
    dict(kernel=k, estimator=e, **kw)
    for k, kw in (("linear", {}), ("polynomial", {"degree": 3, "coef0": 0.5}),
                  ("gaussian", {"bandwidths": (0.5, 2.0, 7.0)}))
    for e in mmd.ESTIMATORS]


def test_check_grads_float64():
  """check_grads (order 1, reverse mode) in float64 on every differentiable-everywhere variant.

  One compiled function: a weighted sum with distinct weights, so an error in any variant
  shows up. The adaptive gaussian is tested against frozen-h differences below instead,
  because numerical differentiation would also move h.
  """
  rng = np.random.default_rng(14)
  x, y = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)) + 0.5
  with jax.enable_x64(True):
    @jax.jit
    def f(a, b):
      return sum((i + 1) * mmd.mmd2(a, b, **kw) for i, kw in enumerate(GRAD_VARIANTS))

    assert f(jnp.asarray(x), jnp.asarray(y)).dtype == jnp.float64
    check_grads(f, (jnp.asarray(x), jnp.asarray(y)), order=1, modes=("rev",))


@pytest.mark.parametrize("estimator", mmd.ESTIMATORS)
def test_adaptive_gaussian_grad_matches_fd_with_frozen_bandwidth(estimator):
  """The float32 autodiff gradient equals float64 central differences with h held fixed."""
  rng = np.random.default_rng(15)
  x, y = draw(rng, (5, 3), (4, 3), shift=1.0, scale=2.0)
  h = ref_bandwidth(x, y)
  gx, gy = jax.jit(jax.grad(functools.partial(mmd.mmd2, estimator=estimator), argnums=(0, 1)))(x, y)

  def fd(fun, a, eps=1e-5):
    a = a.astype(np.float64)
    out = np.zeros_like(a)
    for idx in np.ndindex(*a.shape):
      e = np.zeros_like(a)
      e[idx] = eps
      out[idx] = (fun(a + e) - fun(a - e)) / (2 * eps)
    return out

  fdx = fd(lambda a: ref_mmd2(a, y, estimator=estimator, h=h), x)
  fdy = fd(lambda b: ref_mmd2(x, b, estimator=estimator, h=h), y)
  # measured error ~1e-7 of the gradient scale
  np.testing.assert_allclose(gx, fdx, rtol=1e-4, atol=1e-6 * np.abs(fdx).max())
  np.testing.assert_allclose(gy, fdy, rtol=1e-4, atol=1e-6 * np.abs(fdy).max())
  # ... and differs from differentiating through h (3e-2 to 0.14 of the scale here), so
  # the test tells the two apart.
  fdx_live = fd(lambda a: ref_mmd2(a, y, estimator=estimator), x)
  assert np.abs(fdx_live - fdx).max() > 1e-2 * np.abs(fdx).max()


def test_grads_finite_batched_all_kernels():
  rng = np.random.default_rng(16)
  x, y = draw(rng, (3, 10, 16), (3, 4, 16))
  for kernel in mmd.KERNELS:
    g = jax.jit(jax.grad(lambda b: jnp.sum(mmd.mmd2(x, b, kernel=kernel))))(jnp.asarray(y))
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


# ----------------------------------------------------------------------------- CF distance


def ref_cf(x, y, t, alpha=0.5, beta=None, normalize=True, floor=0.0):
  """Float64 NCFM CF distance of one pair of sets, with complex exponentials (paper Eq. 7/8)."""
  x, y, t = (np.asarray(a, np.float64) for a in (x, y, t))
  if normalize:
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-12)
  beta = 1.0 - alpha if beta is None else beta
  phi_x = np.exp(1j * x @ t.T).mean(0)
  phi_y = np.exp(1j * y @ t.T).mean(0)
  ax, ay = np.abs(phi_x), np.abs(phi_y)
  amp = (ax - ay) ** 2
  phase = 2 * (ax * ay - phi_x.real * phi_y.real - phi_x.imag * phi_y.imag)
  return np.mean(np.sqrt(alpha * amp + beta * np.maximum(phase, floor)))


def ref_cf_batched(x, y, t, **kw):
  out = np.zeros(x.shape[:-2])
  for idx in np.ndindex(*x.shape[:-2]):
    t_idx = t if t.ndim == 2 else t[idx]
    out[idx] = ref_cf(x[idx], y[idx], t_idx, **kw)
  return out


CF_WEIGHTS = {  # name: (cf_distance kwargs, ref_cf kwargs)
    "paper": ({}, {}),
    "paper_a03": ({"alpha": 0.3}, {"alpha": 0.3}),
    "released": ({"alpha": 0.5, "beta": 0.5, "phase_floor": 1e-12},
                 {"alpha": 0.5, "beta": 0.5, "floor": 1e-12}),
    "a08_b02_raw": ({"alpha": 0.8, "beta": 0.2, "normalize": False},
                    {"alpha": 0.8, "beta": 0.2, "normalize": False}),
}


@functools.partial(jax.jit, static_argnames=("chunks",))
def cf_variants(x, y, t, chunks=(None, None)):
  """{weighting: cf_distance} in one compiled program."""
  return {name: mmd.cf_distance(x, y, t, freq_chunk=chunks[0], sample_chunk=chunks[1], **kw)
          for name, (kw, _) in CF_WEIGHTS.items()}


CF_SHAPES = [  # (x shape, y shape, t shape)
    ((7, 3), (5, 3), (16, 3)),
    ((2, 33, 64), (2, 20, 64), (128, 64)),
    ((2, 3, 6, 8), (2, 3, 4, 8), (32, 8)),       # two leading axes, shared t
    ((3, 10, 5), (3, 4, 5), (3, 24, 5)),         # one set of frequencies per class
]


@pytest.mark.parametrize("shapes", CF_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}-{s[2]}")
def test_cf_distance_matches_float64_reference(shapes):
  """Both weightings (paper α/1−α, released α/β with the 1e-12 clamp), normalised or not."""
  rng = np.random.default_rng(sum(map(sum, shapes)))
  x, y = draw(rng, shapes[0], shapes[1], shift=0.5)
  t = rng.standard_normal(shapes[2]).astype(np.float32)
  got = cf_variants(x, y, t)
  for name, (_, ref_kw) in CF_WEIGHTS.items():
    value = np.asarray(got[name])
    assert value.shape == x.shape[:-2] and value.dtype == np.float32
    want = ref_cf_batched(x, y, t, **ref_kw)
    assert np.all(want > 1e-3)
    np.testing.assert_allclose(value, want, rtol=2e-5, err_msg=name)


def test_cf_distance_gradient_float64_check_grads():
  """Reverse-mode gradients against float64 finite differences (jax check_grads), x and y."""
  rng = np.random.default_rng(30)
  x, y = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 4, 3)) + 0.5
  t = rng.standard_normal((6, 3))
  with jax.enable_x64(True):
    @jax.jit
    def f(a, b):
      paper = mmd.cf_distance(a, b, jnp.asarray(t), alpha=0.3)
      released = mmd.cf_distance(a, b, jnp.asarray(t), alpha=0.5, beta=0.5, phase_floor=1e-12)
      raw = mmd.cf_distance(a, b, jnp.asarray(t), normalize=False, freq_chunk=4, sample_chunk=3)
      return jnp.sum(paper + 2 * released + 3 * raw)

    assert f(jnp.asarray(x), jnp.asarray(y)).dtype == jnp.float64
    check_grads(f, (jnp.asarray(x), jnp.asarray(y)), order=1, modes=("rev",))


@pytest.mark.parametrize("normalize", [True, False])
def test_cf_distance_float32_grad_matches_float64_differences(normalize):
  """The float32 autodiff gradient equals central differences of the NumPy float64 reference."""
  rng = np.random.default_rng(31)
  x, y = draw(rng, (6, 4), (5, 4), shift=0.7)
  t = rng.standard_normal((8, 4)).astype(np.float32)
  g = jax.jit(jax.grad(lambda b: mmd.cf_distance(x, b, t, normalize=normalize)))(y)
  fd = np.zeros(y.shape)
  y64, eps = y.astype(np.float64), 1e-6
  for idx in np.ndindex(*y.shape):
    e = np.zeros_like(y64)
    e[idx] = eps
    fd[idx] = (ref_cf(x, y64 + e, t, normalize=normalize)
               - ref_cf(x, y64 - e, t, normalize=normalize)) / (2 * eps)
  np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-5 * np.abs(fd).max())


def test_cf_distance_identical_sets_zero_with_finite_gradient():
  rng = np.random.default_rng(32)
  x = rng.standard_normal((3, 40, 16)).astype(np.float32)
  t = np.asarray(mmd.cf_frequencies(jax.random.key(0), 64, 16))
  jcf = jax.jit(mmd.cf_distance, static_argnames=("normalize", "phase_floor", "beta"))
  for normalize in (True, False):
    assert np.all(np.asarray(jcf(x, x.copy(), t, normalize=normalize)) == 0)
  # the released clamp: every frequency contributes sqrt(β·1e-12)
  np.testing.assert_allclose(jcf(x, x, t, beta=0.5, phase_floor=1e-12), np.sqrt(0.5e-12),
                             rtol=1e-5)
  # one side moving (x constant): finite and small (D is norm-like, not differentiable at 0)
  g_one = jax.jit(jax.grad(lambda b: jnp.sum(mmd.cf_distance(x, b, t))))(jnp.asarray(x))
  assert np.all(np.isfinite(g_one)) and np.abs(g_one).max() < 1e-2
  # both sides moving together: the distance stays 0, so does the gradient
  g_both = jax.jit(jax.grad(lambda a: jnp.sum(mmd.cf_distance(a, a, t))))(jnp.asarray(x))
  assert np.all(g_both == 0)
  # a zero feature vector (normalisation) and a zero frequency are finite too
  z = x.copy()
  z[:, 0] = 0.0
  t0 = t.copy()
  t0[0] = 0.0
  g_zero = jax.jit(jax.grad(lambda b: jnp.sum(mmd.cf_distance(x, b, t0))))(jnp.asarray(z))
  assert np.all(np.isfinite(g_zero))


def test_cf_distance_grows_with_mean_shift():
  """D(x, y + δ·u) increases with δ (same-sample shift: provable while |δ t·u| < π; and for
  an independent second sample), normalisation off so the shift is not projected away."""
  rng = np.random.default_rng(33)
  x = rng.standard_normal((200, 8)).astype(np.float32)
  y_ind = rng.standard_normal((150, 8)).astype(np.float32)
  u = np.eye(8, dtype=np.float32)[0]
  t = np.asarray(mmd.cf_frequencies(jax.random.key(1), 128, 8))
  shifts = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 1.5], np.float32)
  f = jax.jit(jax.vmap(lambda s, b: mmd.cf_distance(x, b + s * u, t, normalize=False),
                       in_axes=(0, None)))
  same, ind = np.asarray(f(shifts, x)), np.asarray(f(shifts, y_ind))
  assert same[0] < 1e-6 and np.all(np.diff(same) > 0), same
  assert np.all(np.diff(ind) > 0), ind
  # the paper's amplitude / phase split: a pure shift moves only the phase
  amp_only = np.asarray(jax.jit(lambda b: mmd.cf_distance(
      x, b, t, alpha=1.0, beta=0.0, normalize=False))(x + 0.5 * u))
  assert amp_only < 1e-5 < same[3]


CF_CHUNKS = ((1, 1), (5, 3), (40, 7), (64, 9), (7, None), (None, 5))


@functools.partial(jax.jit, static_argnames="weights")
def cf_values_and_grads(x, y, t, weights=("released",)):
  """{"chunks weighting": (value, (dx, dy))} for CF_CHUNKS and unchunked, one program."""
  out = {}
  for chunks in CF_CHUNKS + ((None, None),):
    for name in weights:
      kw = CF_WEIGHTS[name][0]
      fun = lambda a, b, kw=kw, c=chunks: jnp.sum(mmd.cf_distance(
          a, b, t, freq_chunk=c[0], sample_chunk=c[1], **kw) * jnp.arange(1.0, 4.0))
      out[f"{chunks} {name}"] = jax.value_and_grad(fun, argnums=(0, 1))(x, y)
  return out


def test_cf_distance_chunked_equals_unchunked():
  """Frequency and sample chunks that do and don't divide T=40, n=12, m=9 (and exceed them):
  same values and gradients up to float rounding, shared and per-class frequencies."""
  rng = np.random.default_rng(34)
  x, y = draw(rng, (3, 12, 6), (3, 9, 6), shift=0.4)
  for t in (rng.standard_normal((40, 6)).astype(np.float32),
            rng.standard_normal((3, 40, 6)).astype(np.float32)):
    got = cf_values_and_grads(x, y, t)
    for label, (value, grads) in got.items():
      want_value, want_grads = got[f"(None, None) {label.split()[-1]}"]
      np.testing.assert_allclose(value, want_value, rtol=1e-5, err_msg=label)
      for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * np.abs(w).max(), err_msg=label)


def test_cf_distance_has_no_n_by_m_intermediate():
  """No array in the forward or backward program is n×m (n=37, m=41 are distinct primes)."""
  x, y, t = jnp.ones((2, 37, 3)), jnp.zeros((2, 41, 3)), jnp.ones((5, 3))

  def shapes(jaxpr):
    for eqn in jaxpr.eqns:
      for var in eqn.outvars:
        yield getattr(var.aval, "shape", ())
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from shapes(sub)

  for fun in (mmd.cf_distance, jax.grad(lambda a, b, t: jnp.sum(mmd.cf_distance(a, b, t)))):
    jaxpr = jax.make_jaxpr(fun)(x, y, t).jaxpr
    assert not [s for s in shapes(jaxpr) if 37 in s and 41 in s]


def test_cf_distance_properties():
  rng = np.random.default_rng(35)
  x, y = draw(rng, (4, 10, 5), (4, 7, 5))
  t = rng.standard_normal((4, 16, 5)).astype(np.float32)
  jcf = jax.jit(mmd.cf_distance)
  base = np.asarray(jcf(x, y, t))
  np.testing.assert_allclose(jcf(y, x, t), base, rtol=1e-6)               # symmetric
  scales = rng.uniform(0.1, 10.0, (4, 10, 1)).astype(np.float32)
  np.testing.assert_allclose(jcf(x * scales, y, t), base, rtol=1e-5)     # per-sample scale
  perm = rng.permutation(10)
  np.testing.assert_allclose(jcf(x[:, perm], y, t), base, rtol=1e-5)     # a set: order-free
  looped = [jcf(x[c], y[c], t[c]) for c in range(4)]
  np.testing.assert_allclose(jax.vmap(mmd.cf_distance)(x, y, t), looped, rtol=1e-6)
  np.testing.assert_allclose(base, looped, rtol=1e-6)
  xb = jnp.asarray(x, jnp.bfloat16)
  assert mmd.cf_distance(xb, y, t).dtype == jnp.float32


def test_cf_frequencies():
  key = jax.random.key(7)
  t = mmd.cf_frequencies(key, 4096, 32, scale=2.5)
  assert t.shape == (4096, 32) and t.dtype == jnp.float32
  assert abs(float(jnp.std(t)) - 2.5) < 0.02 and abs(float(jnp.mean(t))) < 0.02
  np.testing.assert_array_equal(t, mmd.cf_frequencies(key, 4096, 32, scale=2.5))
  per_class = mmd.cf_frequencies(key, 8, 4, batch_shape=(3,))
  assert per_class.shape == (3, 8, 4)
  assert not np.allclose(per_class[0], per_class[1])


@pytest.mark.parametrize("call, pattern", [
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 5)), np.zeros((2, 3))),
     "feature sizes differ"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 5))), "d=5"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(3)), r"\[T, d\]"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((0, 3))), "T >= 1"),
    (lambda: mmd.cf_distance(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), np.zeros((3, 2, 3))),
     "leading axes of t"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 3)), alpha=1.5),
     "alpha must be in"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 3)), beta=-1.0),
     "beta must be >= 0"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 3)),
                             freq_chunk=0), "freq_chunk"),
    (lambda: mmd.cf_distance(np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 3)),
                             sample_chunk=True), "sample_chunk"),
    (lambda: mmd.cf_frequencies(jax.random.key(0), 0, 3), "num"),
    (lambda: mmd.cf_frequencies(jax.random.key(0), 4, 3, scale=0.0), "scale"),
])
def test_cf_bad_input_raises_one_line_config_error(call, pattern):
  with pytest.raises(ConfigError, match=pattern) as err:
    call()
  assert isinstance(err.value, ValueError)
  assert "\n" not in str(err.value)

"""jaxcond.objectives on crafted inputs and float64 references (DM arXiv 2110.04181, M3D
arXiv 2312.15927, DDM arXiv 2412.04748)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.distance import cdist

from jaxcond import mmd
from jaxcond import objectives as obj
from jaxcond.errors import ConfigError

EPS = 1e-5

# Jitted entry points for value tests: one compile per call site and shape instead of one
# per primitive (eager dispatch compiles every op separately). Error tests stay eager.
jdm = jax.jit(obj.dm_loss)
jm3d = jax.jit(obj.m3d_loss, static_argnames=("kernel", "estimator", "bandwidths"))
jstyle = jax.jit(obj.style_moments_loss, static_argnames=("mode", "relative", "ddof"))
jgram = jax.jit(obj.gram_loss)
jicd = jax.jit(obj.icd_loss, static_argnames="k")
jddm = jax.jit(obj.ddm_losses, static_argnames=(
    "mm_weight", "cm_weight", "icd_weight", "k", "style_mode", "style_relative"))
jmmd2 = jax.jit(mmd.mmd2, static_argnames=("estimator", "bandwidths"))
jlegacy = jax.jit(obj.legacy_style_accumulation, static_argnames="num_layers")


# ----------------------------------------------------------------------------- references


def ref_moments(f, ddof):
  """Channel-wise spatial mean / std of NHWC maps [..., h, w, c] (float64)."""
  flat = f.reshape(f.shape[:-3] + (-1, f.shape[-1])).astype(np.float64)
  hw = flat.shape[-2]
  mu = flat.mean(-2)
  var = ((flat - mu[..., None, :]) ** 2).sum(-2) / (hw - ddof) if hw > ddof else 0 * mu
  return mu, np.sqrt(var + EPS)


def ref_style(real_taps, syn_taps, mode="batchavg", relative=False):
  """Float64 L_MM per class, class by class with plain loops."""
  num_classes = real_taps[0].shape[0]
  out = np.zeros(num_classes)
  for c in range(num_classes):
    layers = []
    for r, s in zip(real_taps, syn_taps):
      r, s = r[c].astype(np.float64), s[c].astype(np.float64)
      if mode == "batchavg":
        mu_r, sd_r = ref_moments(r.mean(0), 1)
        mu_s, sd_s = ref_moments(s.mean(0), 1)
      else:
        mu_r, sd_r = (v.mean(0) for v in ref_moments(r, 0))
        mu_s, sd_s = (v.mean(0) for v in ref_moments(s, 0))

      def term(a, b):
        t = np.mean((a - b) ** 2)
        return t / (np.mean(b ** 2) + 1e-8) if relative else t

      layers.append(0.5 * (term(mu_s, mu_r) + term(sd_s, sd_r)))
    out[c] = np.mean(layers)
  return out


def ref_gram(real_taps, syn_taps):
  num_classes = real_taps[0].shape[0]
  out = np.zeros(num_classes)
  for c in range(num_classes):
    layers = []
    for r, s in zip(real_taps, syn_taps):
      grams = []
      for side in (r[c], s[c]):
        n, h, w, ch = side.shape
        per_sample = [f.reshape(h * w, ch).T.astype(np.float64) for f in side]  # ch × hw
        grams.append(np.mean([g @ g.T / (ch * h * w) for g in per_sample], axis=0))
      layers.append(np.sum((grams[1] - grams[0]) ** 2))
    out[c] = np.mean(layers)
  return out


def softmax64(v):
  e = np.exp(v - v.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def ref_icd(syn, k):
  """Float64 L_ICD per class: explicit kNN by sorting, self excluded."""
  out = np.zeros(syn.shape[0])
  for c, f in enumerate(syn.astype(np.float64)):
    dist = cdist(f, f, "sqeuclidean")
    np.fill_diagonal(dist, np.inf)
    kls = []
    for i in range(len(f)):
      nbrs = np.argsort(dist[i], kind="stable")[:k]
      p, q = softmax64(f[i]), softmax64(f[nbrs].mean(0))
      kls.append(np.sum(p * np.log(p / q)))
    out[c] = -np.mean(kls)
  return out


def random_taps(rng, num_classes, n, shapes):
  return [rng.standard_normal((num_classes, n) + s).astype(np.float32) for s in shapes]


TAP_SHAPES = [(8, 8, 4), (4, 4, 6), (1, 1, 3)]  # includes a 1×1 map


# ----------------------------------------------------------------------------- DM / M3D


def test_dm_loss_matches_numpy_and_m3d_linear():
  rng = np.random.default_rng(0)
  real = rng.standard_normal((4, 30, 16)).astype(np.float32)
  syn = (rng.standard_normal((4, 5, 16)) + 0.2).astype(np.float32)
  dm = jdm(real, syn)
  assert dm.shape == (4,) and dm.dtype == jnp.float32
  want = np.sum((real.astype(np.float64).mean(1) - syn.astype(np.float64).mean(1)) ** 2, -1)
  np.testing.assert_allclose(dm, want, rtol=1e-5)
  np.testing.assert_allclose(jm3d(real, syn, kernel="linear"), dm, rtol=1e-5)
  np.testing.assert_allclose(jm3d(real, syn), jmmd2(syn, real), rtol=1e-6)
  np.testing.assert_allclose(jm3d(real, syn, estimator="unbiased", bandwidths=(1.0,)),
                             jmmd2(real, syn, estimator="unbiased", bandwidths=(1.0,)), rtol=1e-5)


def test_dm_m3d_errors():
  with pytest.raises(ConfigError, match="real_feats.*syn_feats|feature sizes"):
    obj.dm_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 5)))
  with pytest.raises(ConfigError, match="leading"):
    obj.m3d_loss(np.zeros((2, 4, 3)), np.zeros((3, 4, 3)))


# ----------------------------------------------------------------------------- NCFM


def ref_ncfm(real, syn, t, alpha=0.5, beta=0.5, scale=300.0, floor=1e-12):
  """Float64 per-class NCFM loss in the released code's own arithmetic (cos/sin means, clamp)."""
  out = np.zeros(real.shape[0])
  for c in range(real.shape[0]):
    tc = np.asarray(t if t.ndim == 2 else t[c], np.float64)
    sides = []
    for f in (real[c], syn[c]):
      f = f.astype(np.float64)
      f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
      proj = tc @ f.T                                        # [T, n]
      re, im = np.cos(proj).mean(1), np.sin(proj).mean(1)
      sides.append((re, im, np.sqrt(re * re + im * im)))
    (re_r, im_r, nr), (re_s, im_s, ns) = sides
    amp = (nr - ns) ** 2
    pha = np.maximum(2 * (nr * ns - re_r * re_s - im_r * im_s), floor)
    out[c] = scale * np.mean(np.sqrt(alpha * amp + beta * pha))
  return out


jncfm = jax.jit(obj.ncfm_loss, static_argnames=(
    "alpha", "beta", "scale", "normalize", "phase_floor", "freq_chunk", "sample_chunk"))


def test_ncfm_loss_defaults_are_the_released_code():
  """alpha = beta = 0.5, x300, 1e-12 phase clamp, L2-normalised features; per class."""
  rng = np.random.default_rng(40)
  real = rng.standard_normal((3, 64, 32)).astype(np.float32)
  syn = (rng.standard_normal((3, 8, 32)) * 1.5 + 0.3).astype(np.float32)
  t = np.asarray(mmd.cf_frequencies(jax.random.key(0), 256, 32))
  got = jncfm(real, syn, t)
  assert got.shape == (3,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref_ncfm(real, syn, t), rtol=2e-5)
  t_per_class = np.asarray(mmd.cf_frequencies(jax.random.key(1), 64, 32, batch_shape=(3,)))
  np.testing.assert_allclose(jncfm(real, syn, t_per_class), ref_ncfm(real, syn, t_per_class),
                             rtol=2e-5)
  # the paper's Eq. 8 (beta = 1 - alpha, no scale, no clamp) is cf_distance itself
  paper = jncfm(real, syn, t, alpha=0.3, beta=None, scale=1.0, phase_floor=0.0)
  np.testing.assert_allclose(
      paper, jax.jit(mmd.cf_distance)(real, syn, t, alpha=0.3), rtol=1e-6)
  np.testing.assert_allclose(paper, ref_ncfm(real, syn, t, 0.3, 0.7, 1.0, 0.0), rtol=2e-5)
  chunked = jncfm(real, syn, t, freq_chunk=100, sample_chunk=24)
  np.testing.assert_allclose(chunked, got, rtol=1e-5)


def test_ncfm_loss_identical_sets_and_gradients():
  rng = np.random.default_rng(41)
  real = rng.standard_normal((2, 16, 12)).astype(np.float32)
  t = np.asarray(mmd.cf_frequencies(jax.random.key(2), 128, 12))
  # the released clamp leaves 300·sqrt(0.5·1e-12) ≈ 2.1e-4 per class; without it exactly 0
  np.testing.assert_allclose(jncfm(real, real.copy(), t), 300 * np.sqrt(0.5e-12), rtol=1e-5)
  assert np.all(np.asarray(jncfm(real, real.copy(), t, phase_floor=0.0)) == 0)
  syn = real[:, :4] + 0.1 * rng.standard_normal((2, 4, 12)).astype(np.float32)
  grad = jax.jit(jax.grad(lambda s: jnp.sum(obj.ncfm_loss(real, s, t))))
  g = grad(syn)
  assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
  g_same = grad(real)
  assert np.all(np.isfinite(g_same))
  # per-class independence: class 1's loss has no gradient w.r.t. class 0's images
  g1 = jax.jit(jax.grad(lambda s: obj.ncfm_loss(real, s, t)[1]))(syn)
  assert np.all(g1[0] == 0) and np.abs(g1[1]).max() > 0


def test_ncfm_loss_errors():
  t = np.zeros((4, 3))
  with pytest.raises(ConfigError, match="real_feats.*syn_feats|feature sizes"):
    obj.ncfm_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 5)), t)
  with pytest.raises(ConfigError, match="d=5"):
    obj.ncfm_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), np.zeros((4, 5)))
  with pytest.raises(ConfigError, match="scale must be >= 0"):
    obj.ncfm_loss(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)), t, scale=-1.0)


# ----------------------------------------------------------------------------- L_MM


def test_style_constant_maps_known_answer():
  """Constant maps: μ is the constant, σ = sqrt(0 + 1e-5) on both sides, so d = ½·mean_c (a−b)²."""
  real = np.full((2, 6, 4, 4, 3), 2.0, np.float32)
  syn = np.full((2, 3, 4, 4, 3), 0.5, np.float32)
  for mode in obj.STYLE_MODES:
    got = jstyle([real, real[:, :, :2, :2]], [syn, syn[:, :, :2, :2]], mode=mode)
    np.testing.assert_allclose(got, [0.5 * 1.5 ** 2] * 2, rtol=1e-6)
  # Identical maps: exactly zero.
  assert np.all(np.asarray(jstyle([real], [real])) == 0)


def test_style_hand_computed_small_map():
  """One class, one channel, maps [0, 2] (real) and [1, 1] (syn), 1×2 spatial."""
  real = np.array([0.0, 2.0], np.float32).reshape(1, 1, 1, 2, 1)
  syn = np.array([1.0, 1.0], np.float32).reshape(1, 1, 1, 2, 1)
  # batchavg: μ both 1; unbiased var 2 vs 0 -> σ sqrt(2 + 1e-5) vs sqrt(1e-5).
  want = 0.5 * (np.sqrt(2 + EPS) - np.sqrt(EPS)) ** 2
  np.testing.assert_allclose(jstyle([real], [syn]), [want], rtol=1e-6)
  # persample: population var 1 -> σ sqrt(1 + 1e-5).
  want = 0.5 * (np.sqrt(1 + EPS) - np.sqrt(EPS)) ** 2
  np.testing.assert_allclose(jstyle([real], [syn], mode="persample"), [want],
                             rtol=1e-6)
  # relative: each term divided by mean_c target² + 1e-8 (μ term is 0 here).
  want = 0.5 * (np.sqrt(1 + EPS) - np.sqrt(EPS)) ** 2 / (1 + EPS + 1e-8)
  np.testing.assert_allclose(
      jstyle([real], [syn], mode="persample", relative=True), [want], rtol=1e-6)


@pytest.mark.parametrize("mode", obj.STYLE_MODES)
@pytest.mark.parametrize("relative", [False, True])
def test_style_matches_float64_reference(mode, relative):
  rng = np.random.default_rng(1)
  real = random_taps(rng, 3, 16, TAP_SHAPES)
  syn = [(t[:, :4] * 1.5 + 0.3).astype(np.float32) for t in random_taps(rng, 3, 4, TAP_SHAPES)]
  got = jstyle(real, syn, mode=mode, relative=relative)
  assert got.shape == (3,)
  np.testing.assert_allclose(got, ref_style(real, syn, mode, relative), rtol=1e-5)


def test_style_one_by_one_map_batchavg_has_floor_sigma():
  """h·w = 1 with ddof 1 (torch: NaN) is defined as variance 0, so σ = sqrt(1e-5)."""
  real = np.full((1, 2, 1, 1, 2), 3.0, np.float32)
  syn = np.zeros((1, 2, 1, 1, 2), np.float32)
  got = jstyle([real], [syn])
  np.testing.assert_allclose(got, [0.5 * 9.0], rtol=1e-6)


def test_relative_style_is_scale_invariant():
  rng = np.random.default_rng(2)
  real = random_taps(rng, 2, 8, TAP_SHAPES[:2])
  syn = random_taps(rng, 2, 3, TAP_SHAPES[:2])
  base = jstyle(real, syn, mode="persample", relative=True)
  scaled = jstyle([100 * t for t in real], [100 * t for t in syn],
                                  mode="persample", relative=True)
  np.testing.assert_allclose(scaled, base, rtol=1e-3)
  absolute = jstyle(real, syn, mode="persample")
  absolute_scaled = jstyle([100 * t for t in real], [100 * t for t in syn],
                                           mode="persample")
  np.testing.assert_allclose(absolute_scaled, 1e4 * np.asarray(absolute), rtol=1e-2)


# ----------------------------------------------------------------------------- L_CM


def test_gram_known_map():
  """1×1 map with channels (1, 2): G = [[1, 2], [2, 4]] / (2·1·1); vs zeros Σ G² = 25/4."""
  syn = np.array([1.0, 2.0], np.float32).reshape(1, 1, 1, 1, 2)
  real = np.zeros((1, 5, 1, 1, 2), np.float32)
  np.testing.assert_allclose(jgram([real], [syn]), [25 / 4], rtol=1e-6)
  # Batch average: samples (1, 2) and (0, 0) -> mean Gram halves -> loss / 4.
  syn2 = np.stack([syn[0, 0], np.zeros_like(syn[0, 0])])[None]
  np.testing.assert_allclose(jgram([real], [syn2]), [25 / 16], rtol=1e-6)
  # Two layers: the mean over layers.
  np.testing.assert_allclose(jgram([real, real], [syn, syn2]), [(25 / 4 + 25 / 16) / 2],
                             rtol=1e-6)


def test_gram_matches_float64_reference():
  rng = np.random.default_rng(3)
  real = random_taps(rng, 3, 10, TAP_SHAPES)
  syn = random_taps(rng, 3, 4, TAP_SHAPES)
  np.testing.assert_allclose(jgram(real, syn), ref_gram(real, syn), rtol=1e-5)


@pytest.mark.parametrize("call, pattern", [
    (lambda: obj.gram_loss([np.zeros((2, 3, 4, 4, 5))], []), "empty"),
    (lambda: obj.gram_loss([np.zeros((2, 3, 4, 4, 5))] * 2, [np.zeros((2, 3, 4, 4, 5))]),
     "2 layers"),
    (lambda: obj.style_moments_loss([np.zeros((2, 3, 4, 4, 5))], [np.zeros((2, 3, 4, 4, 6))]),
     "channel"),
    (lambda: obj.style_moments_loss([np.zeros((2, 3, 4, 4, 5))], [np.zeros((3, 3, 4, 4, 5))]),
     "class axis"),
    (lambda: obj.style_moments_loss([np.zeros((3, 4, 4, 5))], [np.zeros((3, 4, 4, 5))]),
     r"\[C, n, h, w, c\]"),
    (lambda: obj.style_moments_loss([np.zeros((1, 1, 2, 2, 1))], [np.zeros((1, 1, 2, 2, 1))],
                                    mode="mean"), "unknown mode"),
    (lambda: obj.style_moments_loss(None, None), "real_taps is None"),
    (lambda: obj.gram_loss([np.zeros((2, 3, 4, 4, 5)), np.zeros((3, 3, 2, 2, 5))],
                           [np.zeros((2, 3, 4, 4, 5)), np.zeros((3, 3, 2, 2, 5))]),
     "layer 1 has 3"),
    (lambda: obj.ddm_losses(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)),
                            [np.zeros((3, 4, 2, 2, 5))], [np.zeros((3, 4, 2, 2, 5))]),
     "class axis"),
])
def test_tap_errors(call, pattern):
  with pytest.raises(ConfigError, match=pattern) as err:
    call()
  assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- L_ICD


def test_icd_two_sample_class_known_answer():
  """m = 2, k = 1: each sample's neighbour is the other -> L = −½[KL(p0‖p1) + KL(p1‖p0)]."""
  f = np.array([[[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]]], np.float32)
  p0, p1 = softmax64(f[0, 0].astype(np.float64)), softmax64(f[0, 1].astype(np.float64))
  want = -0.5 * (np.sum(p0 * np.log(p0 / p1)) + np.sum(p1 * np.log(p1 / p0)))
  np.testing.assert_allclose(jicd(f, 1), [want], rtol=1e-6)


def test_icd_obvious_neighbours_and_duplicates():
  """Points a, a (duplicate), b: a's neighbour is the other a (KL 0), b's neighbour is an a.

  Dropping the first of top-(k+1) could keep a sample as its own neighbour; self is
  excluded explicitly here, and the answer does not depend on it for the duplicates.
  """
  a = np.array([0.0, 1.0, 0.0, 0.0])
  b = np.array([5.0, 0.0, 0.0, 1.0])
  f = np.stack([a, a, b])[None].astype(np.float32)
  pb, pa = softmax64(b), softmax64(a)
  want = -np.sum(pb * np.log(pb / pa)) / 3
  np.testing.assert_allclose(jicd(f, 1), [want], rtol=1e-6)
  # On a line 0, 1, 10 (k=1): neighbours 1, 0, 1.
  line = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]], np.float32)[None]
  p = [softmax64(v.astype(np.float64)) for v in line[0]]
  kl = lambda u, v: np.sum(u * np.log(u / v))
  want = -(kl(p[0], p[1]) + kl(p[1], p[0]) + kl(p[2], p[1])) / 3
  np.testing.assert_allclose(jicd(line, 1), [want], rtol=1e-6)


def test_icd_matches_float64_reference():
  rng = np.random.default_rng(4)
  syn = rng.standard_normal((3, 10, 64)).astype(np.float32)
  for k in (1, 2, 5):
    np.testing.assert_allclose(jicd(syn, k), ref_icd(syn, k), rtol=1e-5)


def test_icd_gradient_flows_through_sample_and_neighbours():
  rng = np.random.default_rng(5)
  syn = rng.standard_normal((2, 6, 5))
  with jax.enable_x64(True):
    f = jax.jit(functools.partial(obj.icd_loss, k=2))
    check_grads(f, (jnp.asarray(syn),), order=1, modes=("rev",))
  # A sample that is nobody's neighbour still gets gradient through its own f_i;
  # a sample that is only a neighbour gets gradient through the neighbour means.
  far = np.array([[[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [9.0, 9.0]]], np.float32)
  g = np.asarray(jax.grad(lambda v: jnp.sum(jicd(v, 1)))(far))
  assert np.all(np.abs(g).sum(-1) > 0)


def test_icd_k_rule_and_errors():
  assert [obj.icd_k(i) for i in (2, 3, 5, 7, 10, 13, 20, 50, 100)] == [1, 1, 1, 1, 2, 3, 4, 10, 20]
  with pytest.raises(ConfigError, match="ipc >= 2"):
    obj.icd_k(1)
  with pytest.raises(ConfigError, match="integer"):
    obj.icd_k(10.0)
  with pytest.raises(ConfigError, match="k\\+1=3"):
    obj.icd_loss(np.zeros((2, 2, 4)), 2)
  with pytest.raises(ConfigError, match="k must be"):
    obj.icd_loss(np.zeros((2, 4, 4)), 0)


# ----------------------------------------------------------------------------- DDM total


def ddm_inputs(rng, num_classes=3, n=12, ipc=5, d=32):
  real = rng.standard_normal((num_classes, n, d)).astype(np.float32)
  syn = (rng.standard_normal((num_classes, ipc, d)) + 0.1).astype(np.float32)
  real_taps = random_taps(rng, num_classes, n, TAP_SHAPES[:2])
  syn_taps = random_taps(rng, num_classes, ipc, TAP_SHAPES[:2])
  return real, syn, real_taps, syn_taps


def test_ddm_losses_terms_and_total():
  rng = np.random.default_rng(6)
  real, syn, real_taps, syn_taps = ddm_inputs(rng)
  out = jddm(real, syn, real_taps, syn_taps, cm_weight=3.0)
  assert set(out) == {"dm", "mm", "cm", "icd", "total"}
  assert all(v.shape == (3,) for v in out.values())
  np.testing.assert_allclose(out["dm"], jdm(real, syn), rtol=1e-6)
  np.testing.assert_allclose(out["mm"], ref_style(real_taps, syn_taps), rtol=1e-5)
  np.testing.assert_allclose(out["cm"], ref_gram(real_taps, syn_taps), rtol=1e-5)
  np.testing.assert_allclose(out["icd"], ref_icd(syn, obj.icd_k(5)), rtol=1e-5)
  want = out["dm"] + 1e4 * out["mm"] + 3.0 * out["cm"] + 10.0 * out["icd"]
  np.testing.assert_allclose(out["total"], want, rtol=1e-6)
  # Defaults = the "paper" config: cm off (zeros), k = icd_k(ipc), batchavg.
  default = jddm(real, syn, real_taps, syn_taps)
  assert np.all(np.asarray(default["cm"]) == 0)
  np.testing.assert_allclose(default["total"],
                             out["dm"] + 1e4 * out["mm"] + 10.0 * out["icd"], rtol=1e-6)
  persample = jddm(real, syn, real_taps, syn_taps, style_mode="persample",
                             style_relative=True, k=3)
  np.testing.assert_allclose(persample["mm"], ref_style(real_taps, syn_taps, "persample", True),
                             rtol=1e-5)
  np.testing.assert_allclose(persample["icd"], ref_icd(syn, 3), rtol=1e-5)


def test_ddm_zero_weights_skip_terms():
  rng = np.random.default_rng(7)
  real, syn, _, _ = ddm_inputs(rng, ipc=1)
  out = jddm(real, syn, None, None, mm_weight=0, cm_weight=0, icd_weight=0)
  for name in ("mm", "cm", "icd"):
    assert np.all(np.asarray(out[name]) == 0)
  np.testing.assert_allclose(out["total"], out["dm"], rtol=0)
  with pytest.raises(ConfigError, match="icd_weight=0"):
    obj.ddm_losses(real, syn, None, None, mm_weight=0)      # ipc = 1 with ICD on
  with pytest.raises(ConfigError, match="real_taps is None"):
    obj.ddm_losses(real, syn, None, None, icd_weight=0)     # MM on without taps


def test_ddm_per_class_independence():
  rng = np.random.default_rng(8)
  real, syn, real_taps, syn_taps = ddm_inputs(rng)
  kw = dict(cm_weight=1.0)
  base = jddm(real, syn, real_taps, syn_taps, **kw)
  real2, syn2 = real.copy(), syn.copy()
  real2[1] = rng.standard_normal(real2[1].shape) * 3
  syn2[1] = rng.standard_normal(syn2[1].shape) * 3
  real_taps2 = [t.copy() for t in real_taps]
  syn_taps2 = [t.copy() for t in syn_taps]
  for t in real_taps2 + syn_taps2:
    t[1] = 5 * t[1] + 1
  moved = jddm(real2, syn2, real_taps2, syn_taps2, **kw)
  for name in base:
    np.testing.assert_array_equal(np.asarray(moved[name])[[0, 2]], np.asarray(base[name])[[0, 2]])
    assert np.asarray(moved[name])[1] != np.asarray(base[name])[1], name
  m3d_base = jm3d(real, syn)
  m3d_moved = jm3d(real2, syn2)
  np.testing.assert_array_equal(np.asarray(m3d_moved)[[0, 2]], np.asarray(m3d_base)[[0, 2]])


def test_ddm_gradients_wrt_synthetic_inputs_under_jit():
  rng = np.random.default_rng(9)
  real, syn, real_taps, syn_taps = ddm_inputs(rng)

  @jax.jit
  def total(syn, syn_taps):
    out = jddm(real, syn, real_taps, syn_taps, cm_weight=1.0)
    return jnp.sum(out["total"]), out

  (value, out), (g_feats, g_taps) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
      syn, syn_taps)
  assert np.isfinite(float(value))
  np.testing.assert_allclose(out["mm"], ref_style(real_taps, syn_taps), rtol=1e-5)
  for g in [g_feats] + list(g_taps):
    g = np.asarray(g)
    assert np.all(np.isfinite(g))
    assert np.all(np.abs(g).reshape(g.shape[0], -1).max(-1) > 0)  # every class gets gradient


# ----------------------------------------------------------------------------- legacy accumulator


def test_legacy_style_accumulation_crafted():
  """S_c = S_{c−1}/L + s_c: with s = (1, 2, 3), L = 3 -> (1, 2 + 1/3, 3 + 2/3 + 1/9)."""
  got = jlegacy(jnp.array([1.0, 2.0, 3.0]), 3)
  np.testing.assert_allclose(got, [1.0, 7 / 3, 34 / 9], rtol=1e-6)
  # L = 1: no damping, the running sum.
  np.testing.assert_allclose(jlegacy(jnp.array([1.0, 2.0, 3.0]), 1),
                             [1.0, 3.0, 6.0], rtol=1e-6)
  # Direct simulation of the Dec-2024 loop: acc += Σ_l d_l; acc /= L; loss += acc.
  rng = np.random.default_rng(10)
  per_layer = rng.uniform(size=(6, 3))           # [C, L] per-layer distances d_l(c)
  acc, added = 0.0, []
  for c in range(6):
    acc = (acc + per_layer[c].sum()) / 3
    added.append(acc)
  got = jlegacy(per_layer.mean(1), 3)
  np.testing.assert_allclose(got, added, rtol=1e-5)
  assert float(jnp.sum(got)) > per_layer.mean(1).sum()   # earlier classes re-counted
  with pytest.raises(ConfigError, match="num_layers"):
    obj.legacy_style_accumulation(jnp.ones(3), 0)

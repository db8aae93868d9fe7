"""Squared maximum mean discrepancy (MMD²) between two feature sets.

Implements the M3D objective (M3D, Zhang et al. AAAI 2024, arXiv 2312.15927):

    MMD²(X, Y) = mean_{a,b∈X} k(a,b) + mean_{a,b∈Y} k(a,b) − 2·mean_{a∈X, b∈Y} k(a,b)

with M3D's default kernel, a sum of five RBFs with a data-adaptive bandwidth,

    k(a,b) = Σ_{m ∈ {1/4, 1/2, 1, 2, 4}} exp(−‖a−b‖² / (m·h)),
    h = Σ_{p,q} ‖z_p − z_q‖² / (N² − N)  over the pooled z = [X; Y], N = n + m,

where h carries no gradient (M3D reads it from `.data`). With the linear kernel the
biased MMD² is DM's loss ‖mean(X) − mean(Y)‖² (DM, arXiv 2110.04181), which is how
`objectives.dm_loss` and `objectives.m3d_loss` are tied together in the tests.

Numerics (timings in docs/benchmarks.md): squared distances use the matmul identity
|x|² + |y|² − 2·x·yᵀ with `Precision.HIGHEST`, clamped at 0, with an exact-zero diagonal
for x against itself. For shift-invariant kernels (gaussian, linear) the pooled mean is
subtracted first: distances and MMD² are unchanged, but the identity no longer cancels
large common offsets (measured in tests/test_mmd.py::test_centering_helps_with_offset).

Inputs are promoted to at least float32 (bf16 / f16 / int features are upcast); float64
is kept only when the caller enabled x64 (used by the float64 gradient checks).
All functions accept leading batch axes `[..., n, d]` by broadcasting (no Python loops),
so `mmd2` of `[C, n, d]` against `[C, m, d]` gives `[C]`, one value per class.

`cf_distance` is NCFM's characteristic-function discrepancy (Wang et al. CVPR 2025, arXiv
2502.20653): per frequency t the amplitude and phase differences of the two empirical
characteristic functions, square-rooted and averaged over frequencies. It needs cos/sin of
the projections `[..., n, T]` only (memory linear in n + m, no n×m matrix); see its docstring.
"""
import numbers
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

from jaxcond.errors import ConfigError

KERNELS = ("linear", "gaussian", "polynomial")
ESTIMATORS = ("biased", "unbiased")
# M3D's RBF(n_kernels=5, mul_factor=2.0): multipliers 2**(k - 2), k = 0..4.
M3D_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
NORMALIZE_EPS = 1e-12   # torch F.normalize: f / max(‖f‖, eps), as NCFM normalises features

_HIGHEST = jax.lax.Precision.HIGHEST

Array = jax.Array
Floats = Union[float, Sequence[float], Array]


# ----------------------------------------------------------------------------- checks


def _as_float(a, fn: str, name: str) -> Array:
  """Array with a floating dtype of at least float32 (bf16/int are upcast)."""
  a = jnp.asarray(a)
  if not (jnp.issubdtype(a.dtype, jnp.floating) or jnp.issubdtype(a.dtype, jnp.integer)
          or a.dtype == jnp.bool_):
    raise ConfigError(f"{fn}: {name} must be a real array, got dtype {a.dtype}")
  return a.astype(jnp.result_type(a.dtype, jnp.float32))


def _check_set(a: Array, fn: str, name: str) -> None:
  if a.ndim < 2:
    raise ConfigError(
        f"{fn}: {name} must have shape [..., n, d] (a set of n feature vectors), got {a.shape}")
  if a.shape[-2] < 1:
    raise ConfigError(f"{fn}: {name} is an empty set (shape {a.shape}); need n >= 1")


def check_feature_pair(x, y, fn: str, names=("x", "y")):
  """Validates two feature sets `[..., n, d]`, `[..., m, d]` and casts them to float.

  Shapes are static, so the checks also run (once, at trace time) under jit and vmap.
  Raises ConfigError with a one-line message naming the mismatching axis.
  """
  x = _as_float(x, fn, names[0])
  y = _as_float(y, fn, names[1])
  _check_set(x, fn, names[0])
  _check_set(y, fn, names[1])
  if x.shape[-1] != y.shape[-1]:
    raise ConfigError(
        f"{fn}: feature sizes differ: {names[0]} {x.shape} has d={x.shape[-1]}, "
        f"{names[1]} {y.shape} has d={y.shape[-1]}")
  if x.shape[:-2] != y.shape[:-2]:
    raise ConfigError(
        f"{fn}: leading (batch/class) axes differ: {names[0]} {x.shape} vs {names[1]} {y.shape}; "
        "expected [..., n, d] and [..., m, d] with the same '...'")
  dtype = jnp.result_type(x.dtype, y.dtype)
  return x.astype(dtype), y.astype(dtype)


def _check_choice(value, choices, fn: str, field: str) -> None:
  if not isinstance(value, str) or value not in choices:
    raise ConfigError(f"{fn}: unknown {field} {value!r}; expected one of {choices}")


def _positive_values(values, fn: str, field: str) -> tuple:
  """Tuple of positive scalars (Python numbers are checked; traced values pass through)."""
  if isinstance(values, numbers.Real) or (hasattr(values, "ndim") and values.ndim == 0):
    values = (values,)
  values = tuple(values)
  if not values:
    raise ConfigError(f"{fn}: {field} must not be empty")
  for v in values:
    if isinstance(v, numbers.Real) and not v > 0:
      raise ConfigError(f"{fn}: {field} must be positive, got {values}")
  return values


def _check_poly(degree, fn: str) -> None:
  if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree < 1:
    raise ConfigError(f"{fn}: polynomial degree must be an integer >= 1, got {degree!r}")


# ----------------------------------------------------------------------------- building blocks


def _gram(x: Array, y: Array) -> Array:
  return jnp.einsum("...nd,...md->...nm", x, y, precision=_HIGHEST)


def _sq_norms(x: Array) -> Array:
  return jnp.sum(x * x, axis=-1)


def _sq_dists(x: Array, y: Optional[Array]) -> Array:
  """Unchecked core of `pairwise_sq_dists`."""
  if y is None:
    sq = _sq_norms(x)
    d2 = jnp.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * _gram(x, x), 0.0)
    n = x.shape[-2]
    return jnp.where(jnp.eye(n, dtype=bool), jnp.zeros((), d2.dtype), d2)
  d2 = _sq_norms(x)[..., :, None] + _sq_norms(y)[..., None, :] - 2.0 * _gram(x, y)
  return jnp.maximum(d2, 0.0)


def pairwise_sq_dists(x, y=None) -> Array:
  """Squared Euclidean distances `[..., n, d]`, `[..., m, d]` -> `[..., n, m]`.

  Matmul identity |x|² + |y|² − 2·x·yᵀ (70× faster than broadcasting on CPU),
  `Precision.HIGHEST`, clamped at 0. With `y=None` the result is x against itself with
  an exactly-zero diagonal (torch's cdist² is only ≈ 0 there).
  """
  if y is None:
    x = _as_float(x, "pairwise_sq_dists", "x")
    _check_set(x, "pairwise_sq_dists", "x")
    return _sq_dists(x, None)
  x, y = check_feature_pair(x, y, "pairwise_sq_dists")
  return _sq_dists(x, y)


def _pooled_mean(x: Array, y: Optional[Array]) -> Array:
  """Mean of the pooled set [x; y] per leading index, `[..., 1, d]`, without gradient.

  Used only for shift-invariant quantities: the function value does not depend on the
  shift, so freezing it leaves the gradient exact and saves a backward pass.
  """
  total = jnp.sum(x, axis=-2, keepdims=True)
  count = x.shape[-2]
  if y is not None:
    total = total + jnp.sum(y, axis=-2, keepdims=True)
    count += y.shape[-2]
  return jax.lax.stop_gradient(total / count)


def _mean_offdiag(total: Array, count: int) -> Array:
  """h = total / (N² − N) under stop_gradient; h = 1 when it is 0 (all points equal).

  The fallback only matters when every pooled point coincides (or N = 1): then all
  distances are 0, every kernel value is exp(0) = 1 and MMD² = 0 instead of NaN.
  """
  pairs = count * count - count
  h = total / pairs if pairs > 0 else jnp.zeros_like(total)
  h = jax.lax.stop_gradient(h)
  return jnp.where(h > 0, h, jnp.ones_like(h))


def mean_heuristic_bandwidth(x, y=None) -> Array:
  """M3D's bandwidth h: mean off-diagonal squared distance of the pooled [x; y], `[...]`.

  Carries no gradient (as in the M3D authors' code); replaced by 1 when all points coincide.
  """
  if y is None:
    x = _as_float(x, "mean_heuristic_bandwidth", "x")
    _check_set(x, "mean_heuristic_bandwidth", "x")
    z = x
  else:
    x, y = check_feature_pair(x, y, "mean_heuristic_bandwidth")
    z = jnp.concatenate([x, y], axis=-2)
  z = z - _pooled_mean(z, None)
  return _mean_offdiag(jnp.sum(_sq_dists(z, None), axis=(-2, -1)), z.shape[-2])


def _divisors(h: Optional[Array], multipliers, bandwidths) -> list:
  """The RBF divisors: fixed `bandwidths`, else multipliers·h (h: `[...]`)."""
  if bandwidths is not None:
    return [jnp.asarray(b) for b in bandwidths]
  return [m * h for m in multipliers]


def _sum_rbf(d2: Array, divisors: list) -> Array:
  out = jnp.zeros_like(d2)
  for div in divisors:
    div = jnp.asarray(div, d2.dtype)
    out = out + jnp.exp(-d2 / div[..., None, None])
  return out


def _poly(g: Array, degree: int, coef0) -> Array:
  return jax.lax.integer_pow(g + coef0, degree)


def kernel_matrix(x, y=None, *, kernel: str = "gaussian", bandwidth=None,
                  multipliers: Floats = M3D_MULTIPLIERS, bandwidths: Optional[Floats] = None,
                  degree: int = 2, coef0: float = 1.0) -> Array:
  """Kernel matrix `[..., n, m]` (x against itself when `y` is None).

  gaussian: Σ_j exp(−d²/div_j) with div_j = `bandwidths[j]` if given, else multipliers[j]·h,
  where h = `bandwidth` (`[...]` or scalar) or, if None, M3D's mean-heuristic h of the pooled
  [x; y] (no gradient). linear: x·yᵀ. polynomial: (x·yᵀ + coef0)^degree (M3D's
  'polinominal' is degree 2, coef0 1).
  """
  fn = "kernel_matrix"
  _check_choice(kernel, KERNELS, fn, "kernel")
  if y is None:
    x = _as_float(x, fn, "x")
    _check_set(x, fn, "x")
  else:
    x, y = check_feature_pair(x, y, fn)
  if kernel == "linear":
    return _gram(x, x if y is None else y)
  if kernel == "polynomial":
    _check_poly(degree, fn)
    return _poly(_gram(x, x if y is None else y), degree, coef0)
  multipliers = _positive_values(multipliers, fn, "multipliers")
  if bandwidths is not None:
    bandwidths = _positive_values(bandwidths, fn, "bandwidths")
  center = _pooled_mean(x, y)
  x = x - center
  y = None if y is None else y - center
  d2 = _sq_dists(x, y)
  h = None
  if bandwidths is None:
    if bandwidth is not None:
      h = jnp.asarray(bandwidth, d2.dtype)
    else:
      h = mean_heuristic_bandwidth(x, y)
  return _sum_rbf(d2, _divisors(h, multipliers, bandwidths))


# ----------------------------------------------------------------------------- MMD²


def _block_mean(k: Array) -> Array:
  """Mean over the last two axes, rows first (a two-level sum rounds less than one flat sum)."""
  return jnp.mean(jnp.mean(k, axis=-1), axis=-1)


def _offdiag_mean(k: Array) -> Array:
  n = k.shape[-1]
  off = jnp.sum(jnp.sum(k, axis=-1), axis=-1) - jnp.trace(k, axis1=-2, axis2=-1)
  return off / (n * (n - 1))


def _combine(kxx: Array, kyy: Array, kxy: Array, estimator: str) -> Array:
  """MMD² from the three kernel blocks.

  biased (V-statistic, M3D): plain block means, diagonals included.
  unbiased (U-statistic): within-set means over the n(n−1) off-diagonal pairs; the cross
  term keeps all n·m pairs (the standard two-sample U-statistic for n ≠ m).

  A constant c = mean(kxy) (no gradient) is subtracted from every block first. Its weights
  sum to 1 + 1 − 2 = 0 in both estimators, so value and gradient are unchanged, but the
  three means become O(MMD²) instead of O(kernel value): the final float32 cancellation
  then loses ~30× less (measured against float64, gaussian, n=64, m=50, MMD² ≈ 0.1:
  absolute error 1e-6 with flat means -> 3e-8 with row-first means of the shifted blocks).
  """
  c = jax.lax.stop_gradient(_block_mean(kxy))[..., None, None]
  kxx, kyy, kxy = kxx - c, kyy - c, kxy - c
  if estimator == "biased":
    return _block_mean(kxx) + _block_mean(kyy) - 2.0 * _block_mean(kxy)
  return _offdiag_mean(kxx) + _offdiag_mean(kyy) - 2.0 * _block_mean(kxy)


def mmd2(x, y, *, kernel: str = "gaussian", estimator: str = "biased",
         multipliers: Floats = M3D_MULTIPLIERS, bandwidths: Optional[Floats] = None,
         degree: int = 2, coef0: float = 1.0) -> Array:
  """Squared MMD between the sets x `[..., n, d]` and y `[..., m, d]` -> `[...]`.

  kernel: "gaussian" (M3D default: Σ over `multipliers` m of exp(−d²/(m·h)), h = mean
    off-diagonal d² of the pooled [x; y] per leading index, under stop_gradient; or
    fixed divisors `bandwidths=(b1, b2, ...)`, Σ_j exp(−d²/b_j), replacing m·h — e.g.
    M3D's misnamed 'laplace' kernel is bandwidths=(10, 1, 0.2)), "linear" (biased MMD²
    = ‖mean(x) − mean(y)‖², DM's loss, computed in that closed form), "polynomial"
    ((x·y + coef0)^degree).
  estimator: "biased" (V-statistic, what M3D uses; always >= 0 for these kernels up to
    rounding) or "unbiased" (U-statistic; can be negative; needs n >= 2 and m >= 2).

  n = 1 or m = 1 is allowed with the biased estimator: that set's within-block mean is
  the single self-similarity k(a, a) (the number of RBFs for gaussian). With 1 vs 1
  points the adaptive gaussian h equals their squared distance, so MMD² is the constant
  2·Σ_m (1 − exp(−1/m)) whenever the points differ (the value carries no distance
  information, but the gradient w.r.t. x, with h frozen, does), and 0 when they coincide.
  """
  fn = "mmd2"
  _check_choice(kernel, KERNELS, fn, "kernel")
  _check_choice(estimator, ESTIMATORS, fn, "estimator")
  x, y = check_feature_pair(x, y, fn)
  n, m = x.shape[-2], y.shape[-2]
  if estimator == "unbiased" and (n < 2 or m < 2):
    raise ConfigError(
        f"mmd2: the unbiased estimator needs at least 2 samples per set, got n={n}, m={m}; "
        "use estimator='biased'")
  if kernel == "polynomial":
    _check_poly(degree, fn)
    return _combine(_poly(_gram(x, x), degree, coef0), _poly(_gram(y, y), degree, coef0),
                    _poly(_gram(x, y), degree, coef0), estimator)
  if kernel == "linear" and estimator == "biased":
    diff = jnp.mean(x, axis=-2) - jnp.mean(y, axis=-2)
    return jnp.sum(diff * diff, axis=-1)
  # Shift-invariant kernels: centre on the pooled mean (exact, better conditioned).
  center = _pooled_mean(x, y)
  x, y = x - center, y - center
  if kernel == "linear":
    return _combine(_gram(x, x), _gram(y, y), _gram(x, y), estimator)
  multipliers = _positive_values(multipliers, fn, "multipliers")
  if bandwidths is not None:
    bandwidths = _positive_values(bandwidths, fn, "bandwidths")
  dxx, dyy, dxy = _sq_dists(x, None), _sq_dists(y, None), _sq_dists(x, y)
  h = None
  if bandwidths is None:
    axes = (-2, -1)
    total = jnp.sum(dxx, axes) + jnp.sum(dyy, axes) + 2.0 * jnp.sum(dxy, axes)
    h = _mean_offdiag(total, n + m)
  divisors = _divisors(h, multipliers, bandwidths)
  return _combine(_sum_rbf(dxx, divisors), _sum_rbf(dyy, divisors), _sum_rbf(dxy, divisors),
                  estimator)


# ----------------------------------------------------------------------------- CF distance


@jax.custom_jvp
def _safe_sqrt(z: Array) -> Array:
  """sqrt(max(z, 0)) with derivative 1/(2·sqrt z) for z > 0 and 0 where the value is 0.

  The plain sqrt has an infinite derivative at 0 (NaN after the chain rule with a zero
  tangent); 0 is a valid subgradient there, and the value stays exact (no epsilon added).
  """
  return jnp.sqrt(jnp.maximum(z, 0.0))


@_safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
  (z,), (dz,) = primals, tangents
  y = _safe_sqrt(z)
  positive = y > 0
  dy = jnp.where(positive, dz / (2.0 * jnp.where(positive, y, 1.0)), jnp.zeros_like(dz))
  return y, dy


def _l2_normalize(f: Array) -> Array:
  """f / max(‖f‖₂, 1e-12) along the feature axis (torch F.normalize; finite gradient at 0)."""
  norm = _safe_sqrt(jnp.sum(f * f, axis=-1, keepdims=True))
  return f / jnp.maximum(norm, NORMALIZE_EPS)


def _check_chunk(value, fn: str, field: str) -> None:
  if value is None:
    return
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ConfigError(f"{fn}: {field} must be None or an integer >= 1, got {value!r}")


def _check_weight(value, fn: str, field: str) -> None:
  if isinstance(value, numbers.Real) and not value >= 0:
    raise ConfigError(f"{fn}: {field} must be >= 0, got {value!r}")


def _cf_sums(f: Array, t: Array):
  """Σ_j cos(t·f_j) and Σ_j sin(t·f_j): f `[..., n, d]`, t `[..., T, d]` -> two `[..., T]`."""
  proj = jnp.einsum("...nd,...td->...nt", f, t, precision=_HIGHEST)
  return jnp.sum(jnp.cos(proj), axis=-2), jnp.sum(jnp.sin(proj), axis=-2)


def _chunks(a: Array, size: int):
  """Splits axis -2 of `a` into `[q, ..., size, d]` full chunks (scan axis first) and a tail."""
  n = a.shape[-2]
  q = n // size
  main = a[..., :q * size, :].reshape(a.shape[:-2] + (q, size, a.shape[-1]))
  tail = a[..., q * size:, :] if n % size else None
  return jnp.moveaxis(main, -3, 0), tail


def _ecf(f: Array, t: Array, sample_chunk: Optional[int]):
  """Empirical CF (Re, Im) = mean_j (cos, sin)(t·f_j), each `[..., T]`.

  With `sample_chunk` the samples are summed `sample_chunk` at a time in a rematerialised
  scan, so neither the forward nor the backward pass holds more than `[..., chunk, T]`.
  """
  n = f.shape[-2]
  if sample_chunk is None or sample_chunk >= n:
    re, im = _cf_sums(f, t)
  else:
    main, tail = _chunks(f, sample_chunk)

    @jax.checkpoint
    def body(carry, f_chunk):
      re, im = _cf_sums(f_chunk, t)
      return (carry[0] + re, carry[1] + im), None

    shape = jnp.broadcast_shapes(f.shape[:-2], t.shape[:-2]) + (t.shape[-2],)
    zeros = jnp.zeros(shape, jnp.result_type(f.dtype, t.dtype))
    (re, im), _ = jax.lax.scan(body, (zeros, zeros), main)
    if tail is not None:
      re_tail, im_tail = _cf_sums(tail, t)
      re, im = re + re_tail, im + im_tail
  return re / n, im / n


def _cf_per_frequency(x, y, t, alpha, beta, phase_floor, sample_chunk) -> Array:
  """sqrt(α·amp + β·max(phase, floor)) per frequency, `[..., T]`.

  amp = (|Φx| − |Φy|)², phase = 2(|Φx||Φy| − Re Φx Re Φy − Im Φx Im Φy), computed as
  |Φx − Φy|² − amp (equal by |Φx − Φy|² = |Φx|² + |Φy|² − 2 Re Φx Φ̄y). That form has
  rounding error O(eps·|Φx − Φy|²), i.e. relative to the distance itself, where the
  textbook form loses O(eps·|Φx||Φy|): for two equal sets (n = 256, T = 1024, float32) the
  textbook form measured D ≈ 6.5e-5 (phase terms up to 1.8e-7 under the sqrt), this one 0.
  """
  re_x, im_x = _ecf(x, t, sample_chunk)
  re_y, im_y = _ecf(y, t, sample_chunk)
  amp = jnp.square(_safe_sqrt(re_x * re_x + im_x * im_x) - _safe_sqrt(re_y * re_y + im_y * im_y))
  chord = jnp.square(re_x - re_y) + jnp.square(im_x - im_y)
  phase = chord - amp
  floor = jnp.asarray(phase_floor, phase.dtype)
  phase = jnp.where(phase > floor, phase, floor)   # torch clamp(min=floor): no gradient below
  return _safe_sqrt(alpha * amp + beta * phase)


def cf_distance(x, y, t, *, alpha=0.5, beta=None, normalize: bool = True,
                phase_floor: float = 0.0, freq_chunk: Optional[int] = None,
                sample_chunk: Optional[int] = None) -> Array:
  """NCFM's characteristic-function discrepancy per leading index (arXiv 2502.20653, Eq. 8).

  x `[..., n, d]`, y `[..., m, d]` (e.g. real and synthetic features per class), frequencies
  t `[T, d]` shared by all leading indices or `[..., T, d]` (one set per class, broadcast
  against x's leading axes) -> `[...]`:

      Φ(t) = mean_j exp(i t·f_j)                (empirical characteristic function)
      amp(t) = (|Φx| − |Φy|)²
      phase(t) = 2 (|Φx||Φy| − Re Φx Re Φy − Im Φx Im Φy) = 2 |Φx||Φy| (1 − cos Δarg)
      D = mean_t sqrt(α · amp + β · max(phase, floor))

  Paper form: β = 1 − α (`beta=None`, the default), floor 0. Released NCFM code
  (gszfwsb/NCFM `NCFM/NCFM.py`): independent `alpha=0.5, beta=0.5` (the same numbers at
  α = 0.5), the phase term clamped at `phase_floor=1e-12`, and the ×300 of its `match_loss`
  applied outside (`objectives.ncfm_loss`, not here). Symmetric in x and y.

  normalize: L2-normalise every feature vector first (f / max(‖f‖, 1e-12), what NCFM's
    `match_loss` does); then t·f ~ N(0, s²) for t ~ N(0, s² I), whatever d.
  Numerics: float32 (float64 kept under x64), `Precision.HIGHEST` projections; cos/sin of
    `[..., n, T]`, never an n×m matrix. The phase term is evaluated in a cancellation-safe
    form (`_cf_per_frequency`): identical sets give exactly 0 (with floor 0). Every sqrt is
    a safe sqrt (exact value; derivative 0 where the value is 0, no epsilon), so gradients
    stay finite at identical sets, where D is not differentiable (it behaves like a norm).
    NCFM's code gets the same safety from its 1e-12 clamp instead.
  freq_chunk / sample_chunk: evaluate `freq_chunk` frequencies and `sample_chunk` samples at
    a time (rematerialised `lax.scan`, forward and backward; sizes need not divide T, n, m):
    the largest temporary drops from `[..., n, T]` to `[..., sample_chunk, freq_chunk]`; the
    result changes only by float rounding of the sums.
  """
  fn = "cf_distance"
  x, y = check_feature_pair(x, y, fn)
  t = _as_float(t, fn, "t")
  if t.ndim < 2 or t.shape[-2] < 1:
    raise ConfigError(
        f"{fn}: frequencies t must have shape [T, d] or [..., T, d] with T >= 1, got {t.shape}")
  d = x.shape[-1]
  if t.shape[-1] != d:
    raise ConfigError(
        f"{fn}: frequencies t {t.shape} have d={t.shape[-1]} but the features have d={d}")
  try:
    lead = jnp.broadcast_shapes(x.shape[:-2], t.shape[:-2])
  except ValueError:
    lead = None
  if lead != x.shape[:-2]:
    raise ConfigError(
        f"{fn}: leading axes of t {t.shape} do not broadcast to those of x {x.shape}")
  if beta is None:
    if isinstance(alpha, numbers.Real) and not 0 <= alpha <= 1:
      raise ConfigError(f"{fn}: alpha must be in [0, 1] when beta=None (beta = 1 - alpha), "
                        f"got {alpha!r}")
    beta = 1.0 - alpha
  _check_weight(alpha, fn, "alpha")
  _check_weight(beta, fn, "beta")
  _check_weight(phase_floor, fn, "phase_floor")
  _check_chunk(freq_chunk, fn, "freq_chunk")
  _check_chunk(sample_chunk, fn, "sample_chunk")
  dtype = jnp.result_type(x.dtype, t.dtype)
  x, y, t = x.astype(dtype), y.astype(dtype), t.astype(dtype)
  if normalize:
    x, y = _l2_normalize(x), _l2_normalize(y)

  def per_frequency(t_part):
    return _cf_per_frequency(x, y, t_part, alpha, beta, phase_floor, sample_chunk)

  num_freqs = t.shape[-2]
  if freq_chunk is None or freq_chunk >= num_freqs:
    return jnp.mean(per_frequency(t), axis=-1)
  main, tail = _chunks(t, freq_chunk)

  @jax.checkpoint
  def body(total, t_chunk):
    return total + jnp.sum(per_frequency(t_chunk), axis=-1), None

  total, _ = jax.lax.scan(body, jnp.zeros(lead, dtype), main)
  if tail is not None:
    total = total + jnp.sum(per_frequency(tail), axis=-1)
  return total / num_freqs


def cf_frequencies(key, num: int, dim: int, *, scale=1.0, batch_shape=(),
                   dtype=jnp.float32) -> Array:
  """Frequencies t ~ N(0, scale² I): `batch_shape + (num, dim)`.

  NCFM's released code draws `torch.randn(num_freqs, d)` (scale 1, num_freqs 4096 in every
  config; the paper says 1024) afresh for every class at every step, applied to
  L2-normalised features. `batch_shape=(C,)` gives one independent set per class.
  """
  fn = "cf_frequencies"
  for value, field in ((num, "num"), (dim, "dim")):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
      raise ConfigError(f"{fn}: {field} must be an integer >= 1, got {value!r}")
  if isinstance(scale, numbers.Real) and not scale > 0:
    raise ConfigError(f"{fn}: scale must be positive, got {scale!r}")
  shape = tuple(batch_shape) + (num, dim)
  return scale * jax.random.normal(key, shape, dtype)

"""Per-class condensation objectives: DM, M3D, NCFM and DDM's style / diversity terms.

Every loss returns one value per class, shape `[C]` (or the leading axes of its inputs);
callers sum over classes (DM sums, never averages) and mask padded classes.

- `dm_loss`:   DM, arXiv 2110.04181: ‖mean_i ψ(x_i) − mean_j ψ(s_j)‖²₂ (linear-kernel MMD²).
- `m3d_loss`:  M3D, arXiv 2312.15927:  biased MMD² with the 5-RBF mean-heuristic kernel.
- `ncfm_loss`: NCFM, arXiv 2502.20653: 300 × the characteristic-function distance
  `mmd.cf_distance` of L2-normalised features (the released code's form).
- DDM (Rahimi Malakshan et al., WACV 2025, arXiv 2412.04748):
  `style_moments_loss` = L_MM, `gram_loss` = L_CM, `icd_loss` = L_ICD,
  combined by `ddm_losses` as  L = L_MMD + mm_weight·L_MM + cm_weight·L_CM + icd_weight·L_ICD.

The style accumulator bug of the DDM authors' Dec-2024 code is NOT reproduced:
here each class contributes its own L_MM exactly once. `legacy_style_accumulation` rebuilds
the buggy per-class amounts from correct per-class values, for comparison only.
"""
import numbers
from typing import Optional

import jax
import jax.numpy as jnp

from jaxcond import mmd
from jaxcond.errors import ConfigError

Array = jax.Array

STYLE_MODES = ("batchavg", "persample")
STYLE_EPS = 1e-5        # inside the sqrt of the spatial variance (DDM calc_mean_std)
RELATIVE_EPS = 1e-8     # denominator guard of the relative style terms (DDM re-release)
NCFM_SCALE = 300.0      # NCFM match_loss: 300 * CF loss (released code; not in the paper)
NCFM_PHASE_FLOOR = 1e-12  # NCFM CFLossFunc: phase term clamp(min=1e-12)
_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- DM / M3D / NCFM


def dm_loss(real_feats, syn_feats) -> Array:
  """DM's per-class loss ‖mean(real) − mean(syn)‖², summed over features.

  real_feats `[C, n, d]`, syn_feats `[C, m, d]` -> `[C]`. Equals `mmd2(..., kernel="linear")`
  (biased); real features should be detached by the caller.
  """
  real, syn = mmd.check_feature_pair(real_feats, syn_feats, "dm_loss", ("real_feats", "syn_feats"))
  diff = jnp.mean(real, axis=-2) - jnp.mean(syn, axis=-2)
  return jnp.sum(diff * diff, axis=-1)


def m3d_loss(real_feats, syn_feats, *, kernel: str = "gaussian", **mmd_kw) -> Array:
  """M3D's per-class loss: biased MMD² between real `[C, n, d]` and syn `[C, m, d]` -> `[C]`.

  M3D's default is the gaussian 5-RBF kernel with the pooled mean-heuristic bandwidth
  (no gradient through it). `mmd_kw` goes to `jaxcond.mmd.mmd2` (estimator, multipliers,
  bandwidths, degree, coef0); the estimator defaults to M3D's biased V-statistic.
  """
  real, syn = mmd.check_feature_pair(real_feats, syn_feats, "m3d_loss", ("real_feats", "syn_feats"))
  return mmd.mmd2(syn, real, kernel=kernel, **mmd_kw)   # M3D passes (syn, real); symmetric


def ncfm_loss(real_feats, syn_feats, t, *, alpha=0.5, beta=0.5, scale=NCFM_SCALE,
              normalize: bool = True, phase_floor: float = NCFM_PHASE_FLOOR,
              freq_chunk: Optional[int] = None, sample_chunk: Optional[int] = None) -> Array:
  """NCFM's per-class matching loss (Wang et al. CVPR 2025, arXiv 2502.20653) -> `[C]`.

  scale · `mmd.cf_distance(real, syn, t)` on L2-normalised features, real `[C, n, d]`,
  syn `[C, m, d]`, frequencies t `[T, d]` or `[C, T, d]` (`mmd.cf_frequencies`).
  Defaults are the released code (gszfwsb/NCFM `NCFM/NCFM.py`, every config): α = β = 0.5,
  ×300, phase term clamped at 1e-12 (which adds at most scale·sqrt(β·1e-12) ≈ 2.1e-4 per
  class). The paper's Eq. 8 is `beta=None` (β = 1 − α), `scale=1`, `phase_floor=0`.
  Real features should be detached by the caller (NCFM computes them under no_grad).
  """
  if isinstance(scale, numbers.Real) and not scale >= 0:
    raise ConfigError(f"ncfm_loss: scale must be >= 0, got {scale!r}")
  real, syn = mmd.check_feature_pair(real_feats, syn_feats, "ncfm_loss",
                                     ("real_feats", "syn_feats"))
  return scale * mmd.cf_distance(real, syn, t, alpha=alpha, beta=beta, normalize=normalize,
                                 phase_floor=phase_floor, freq_chunk=freq_chunk,
                                 sample_chunk=sample_chunk)


# ----------------------------------------------------------------------------- DDM style


def _as_layers(taps, fn: str, name: str) -> list:
  if taps is None:
    raise ConfigError(f"{fn}: {name} is None; pass a list of per-layer [C, n, h, w, c] maps")
  if hasattr(taps, "ndim"):
    taps = [taps]
  taps = list(taps)
  if not taps:
    raise ConfigError(f"{fn}: {name} is an empty list of layers")
  return taps


def _check_taps(real_taps, syn_taps, fn: str):
  """Validates two per-layer lists of `[C, n, h, w, c]` NHWC maps; returns float arrays."""
  real_taps = _as_layers(real_taps, fn, "real_taps")
  syn_taps = _as_layers(syn_taps, fn, "syn_taps")
  if len(real_taps) != len(syn_taps):
    raise ConfigError(
        f"{fn}: real_taps has {len(real_taps)} layers but syn_taps has {len(syn_taps)}")
  out = []
  for layer, (r, s) in enumerate(zip(real_taps, syn_taps)):
    r = mmd._as_float(r, fn, f"real_taps[{layer}]")
    s = mmd._as_float(s, fn, f"syn_taps[{layer}]")
    for a, name in ((r, "real_taps"), (s, "syn_taps")):
      if a.ndim != 5 or min(a.shape[1:]) < 1:
        raise ConfigError(
            f"{fn}: {name}[{layer}] must have shape [C, n, h, w, c] (NHWC maps per class), "
            f"got {a.shape}")
    if r.shape[0] != s.shape[0] or r.shape[-1] != s.shape[-1]:
      raise ConfigError(
          f"{fn}: layer {layer}: class axis or channel count differ: real {r.shape} vs "
          f"syn {s.shape}")
    if out and r.shape[0] != out[0][0].shape[0]:
      raise ConfigError(
          f"{fn}: layer {layer} has {r.shape[0]} classes but layer 0 has {out[0][0].shape[0]}")
    dtype = jnp.result_type(r.dtype, s.dtype)
    out.append((r.astype(dtype), s.astype(dtype)))
  return out


def _spatial_moments(f: Array, ddof: int):
  """Channel-wise spatial mean and std of NHWC maps `[..., h, w, c]` -> two `[..., c]`.

  σ = sqrt(var + 1e-5) with var the spatial variance with `ddof` (1 = torch's unbiased
  default used by DDM's batchavg). When h·w ≤ ddof (e.g. a 1×1 map with ddof = 1, where
  torch would give NaN) the variance is defined as 0, so σ = sqrt(1e-5).
  """
  hw = f.shape[-3] * f.shape[-2]
  flat = f.reshape(f.shape[:-3] + (hw, f.shape[-1]))
  mu = jnp.mean(flat, axis=-2)
  if hw - ddof > 0:
    var = jnp.sum(jnp.square(flat - mu[..., None, :]), axis=-2) / (hw - ddof)
  else:
    var = jnp.zeros_like(mu)
  return mu, jnp.sqrt(var + STYLE_EPS)


def _sq_term(syn: Array, real: Array, relative: bool) -> Array:
  """mean_c (syn − real)², or divided by mean_c real² + 1e-8 (real under stop_gradient)."""
  num = jnp.mean(jnp.square(syn - real), axis=-1)
  if not relative:
    return num
  den = jnp.mean(jnp.square(jax.lax.stop_gradient(real)), axis=-1) + RELATIVE_EPS
  return num / den


def style_moments_loss(real_taps, syn_taps, *, mode: str = "batchavg", relative: bool = False,
                       ddof: Optional[int] = None) -> Array:
  """DDM's moments-matching style loss L_MM per class (arXiv 2412.04748) -> `[C]`.

  real_taps / syn_taps: lists (one entry per layer) of NHWC maps `[C, n, h, w, c]` /
  `[C, m, h, w, c]`. For each layer l, with μ, σ the channel-wise spatial mean and
  σ = sqrt(spatial variance + 1e-5):
    d_l = ½·[ mean_c (μ_s − μ_r)² + mean_c (σ_s − σ_r)² ]
  and L_MM = mean_l d_l.
  mode "batchavg" (Dec-2024 code, DDM "paper" config): average the maps over the batch
    first, then μ, σ of that average map, variance with ddof = 1 (torch's unbiased var).
  mode "persample" (DDM re-release default): μ, σ of every sample, then averaged over the
    batch; the variance uses ddof = 0 there, as in the re-release's `style_vector`.
  `ddof` overrides that per-mode default.
  relative: each of the two terms is divided by the mean square of its real target,
    term = mean_c (s − r)² / (mean_c r² + 1e-8), with r under stop_gradient (the
    re-release's `relative_style`; makes the loss invariant to the feature scale).
  """
  fn = "style_moments_loss"
  mmd._check_choice(mode, STYLE_MODES, fn, "mode")
  if ddof is None:
    ddof = 1 if mode == "batchavg" else 0
  if isinstance(ddof, bool) or not isinstance(ddof, numbers.Integral) or ddof < 0:
    raise ConfigError(f"{fn}: ddof must be a non-negative integer, got {ddof!r}")
  per_layer = []
  for real, syn in _check_taps(real_taps, syn_taps, fn):
    if mode == "batchavg":
      mu_r, sd_r = _spatial_moments(jnp.mean(real, axis=1), ddof)
      mu_s, sd_s = _spatial_moments(jnp.mean(syn, axis=1), ddof)
    else:
      mu_r, sd_r = (jnp.mean(v, axis=1) for v in _spatial_moments(real, ddof))
      mu_s, sd_s = (jnp.mean(v, axis=1) for v in _spatial_moments(syn, ddof))
    per_layer.append(0.5 * (_sq_term(mu_s, mu_r, relative) + _sq_term(sd_s, sd_r, relative)))
  return jnp.mean(jnp.stack(per_layer), axis=0)


def _mean_gram(f: Array) -> Array:
  """Batch mean of per-sample normalised Grams FᵀF/(c·h·w): `[C, n, h, w, c]` -> `[C, c, c]`.

  Σ_i F_iᵀF_i is one matmul over the stacked (sample, position) rows.
  """
  num_classes, n, h, w, c = f.shape
  rows = f.reshape(num_classes, n * h * w, c)
  gram = jnp.einsum("kpc,kpd->kcd", rows, rows, precision=_HIGHEST)
  return gram / (n * c * h * w)


def gram_loss(real_taps, syn_taps) -> Array:
  """DDM's correlation-matching style loss L_CM per class (arXiv 2412.04748) -> `[C]`.

  Per sample G = FᵀF/(c·h·w) (c×c, F the h·w×c map), averaged over the batch on each side;
  d_l = ‖G_syn − G_real‖²_F (sum of squares, torch MSELoss(reduction='sum')); L_CM = mean_l d_l.
  """
  per_layer = []
  for real, syn in _check_taps(real_taps, syn_taps, "gram_loss"):
    diff = _mean_gram(syn) - _mean_gram(real)
    per_layer.append(jnp.sum(jnp.square(diff), axis=(-2, -1)))
  return jnp.mean(jnp.stack(per_layer), axis=0)


def legacy_style_accumulation(per_class_style, num_layers: int) -> Array:
  """Per-class amounts the Dec-2024 DDM code adds for style, for comparison only.

  That code keeps one accumulator S across the class loop: S ← (S + Σ_l d_l(c)) / L and adds
  S after every class. With s_c = L_MM(c) = (1/L)·Σ_l d_l(c) (what `style_moments_loss`
  returns) this is S_c = S_{c−1}/L + s_c, i.e. S_c = Σ_{j≤c} s_j·L^{−(c−j)}: earlier classes
  are re-counted with geometric damping. Returns `[C]` = (S_c); its sum, times the style
  weight, is the legacy style loss. Class order = the order of `per_class_style`.
  """
  if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or num_layers < 1:
    raise ConfigError(
        f"legacy_style_accumulation: num_layers must be an integer >= 1, got {num_layers!r}")
  s = jnp.asarray(per_class_style)
  s = s.astype(jnp.result_type(s.dtype, jnp.float32))
  if s.ndim != 1:
    raise ConfigError(
        f"legacy_style_accumulation: per_class_style must be 1-D [C], got shape {s.shape}")

  def step(acc, s_c):
    acc = acc / num_layers + s_c
    return acc, acc

  _, out = jax.lax.scan(step, jnp.zeros((), s.dtype), s)
  return out


# ----------------------------------------------------------------------------- DDM diversity


def icd_k(ipc: int) -> int:
  """The kNN size of L_ICD: round(0.2·ipc) clipped to [1, ipc − 1] (DDM re-release).

  0.2·ipc is never exactly x.5 for integer ipc, so the rounding mode does not matter.
  ICD is undefined below ipc = 2 (no other same-class sample): ConfigError.
  """
  if isinstance(ipc, bool) or not isinstance(ipc, numbers.Integral):
    raise ConfigError(f"icd_k: ipc must be an integer, got {ipc!r}")
  if ipc < 2:
    raise ConfigError(
        f"icd_k: intra-class diversity needs ipc >= 2 (got ipc={ipc}); set icd_weight=0")
  return int(min(max(round(0.2 * ipc), 1), ipc - 1))


def icd_loss(syn_feats, k: int) -> Array:
  """DDM's intra-class diversity loss L_ICD per class (paper/KL form) -> `[C]`.

  syn_feats `[C, m, d]`. For each sample f_i: its k nearest *other* samples of the same
  class (squared Euclidean distance, self excluded by an infinite diagonal, indices from
  top_k under stop_gradient), m_i = their mean, p = softmax(f_i), q = softmax(m_i) over
  features, KL_i = Σ_d p·log(p/q); L_ICD = −(1/m)·Σ_i KL_i (minimising it maximises the KL).
  Gradients flow through f_i and through m_i. Needs m >= k + 1, else ConfigError.
  Self is excluded explicitly rather than by dropping the first of top-(k+1), which could
  drop an exact duplicate instead of the sample itself.
  """
  fn = "icd_loss"
  f = mmd._as_float(syn_feats, fn, "syn_feats")
  mmd._check_set(f, fn, "syn_feats")
  m = f.shape[-2]
  if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
    raise ConfigError(f"{fn}: k must be an integer >= 1, got {k!r}")
  if m < k + 1:
    raise ConfigError(
        f"{fn}: k={k} neighbours need at least k+1={k + 1} synthetic samples per class, got {m}")
  centred = jax.lax.stop_gradient(f - jnp.mean(f, axis=-2, keepdims=True))  # same distances
  d2 = mmd.pairwise_sq_dists(centred)
  d2 = jnp.where(jnp.eye(m, dtype=bool), jnp.inf, d2)
  _, idx = jax.lax.top_k(-d2, k)                                  # [..., m, k]
  weights = jnp.sum(jax.nn.one_hot(idx, m, dtype=f.dtype), axis=-2) / k   # [..., m, m]
  neighbour_mean = jnp.einsum("...ij,...jd->...id", weights, f, precision=_HIGHEST)
  log_p = jax.nn.log_softmax(f, axis=-1)
  log_q = jax.nn.log_softmax(neighbour_mean, axis=-1)
  kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)         # [..., m]
  return -jnp.mean(kl, axis=-1)


# ----------------------------------------------------------------------------- DDM total


def _is_zero(weight) -> bool:
  return isinstance(weight, numbers.Real) and weight == 0


def ddm_losses(real_feats, syn_feats, real_taps=None, syn_taps=None, *,
               mm_weight: float = 1e4, cm_weight: float = 0.0, icd_weight: float = 10.0,
               k: Optional[int] = None, style_mode: str = "batchavg",
               style_relative: bool = False) -> dict:
  """All DDM terms per class (arXiv 2412.04748): {"dm", "mm", "cm", "icd", "total"}, each `[C]`.

  total = dm + mm_weight·mm + cm_weight·cm + icd_weight·icd. The other entries are the
  unweighted per-class terms; a term whose weight is the Python number 0 is not computed
  and reported as zeros (its taps may then be None). Defaults are DDM-rel's "paper" config
  (`configs/paper/_base.yaml`): L_MMD + 1e4·L_MM + 10·L_ICD(kl), batchavg moments,
  k = icd_k(ipc), correlation matching off (the paper's objective includes L_CM: set cm_weight;
  the README runs used style_ratio 1e4). The paper's own α, β, λ, k are not stated.
  The DDM-2024 style accumulator bug is not reproduced (see `legacy_style_accumulation`).
  """
  dm = dm_loss(real_feats, syn_feats)
  zeros = jnp.zeros_like(dm)
  mm = zeros if _is_zero(mm_weight) else style_moments_loss(
      real_taps, syn_taps, mode=style_mode, relative=style_relative)
  cm = zeros if _is_zero(cm_weight) else gram_loss(real_taps, syn_taps)
  if _is_zero(icd_weight):
    icd = zeros
  else:
    ipc = jnp.shape(syn_feats)[-2]
    icd = icd_loss(syn_feats, icd_k(ipc) if k is None else k)
  for name, term in (("mm", mm), ("cm", cm), ("icd", icd)):
    if term.shape != dm.shape:
      raise ConfigError(
          f"ddm_losses: the {name} term has per-class shape {term.shape} but dm has "
          f"{dm.shape}; taps and features must share the class axis")
  total = dm + mm_weight * mm + cm_weight * cm + icd_weight * icd
  return {"dm": dm, "mm": mm, "cm": cm, "icd": icd, "total": total}

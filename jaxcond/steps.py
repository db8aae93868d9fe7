"""One condensation iteration of DM / M3D / DDM / NCFM as a pure, jittable function.

Data path (docs/design.md "Keys"; DM, M3D, DDM and NCFM authors' code):

  keys (seed, step) ─► random ConvNet (fresh every step; M3D: key of step // ipm), or
                    │  one net of the trained pool, blended: l·θ_init + (1 − l)·θ_final
                    ├► real batch per class (sampled in the jit from the class bank)
                    ├► one siamese augmentation per class (key folded with the global class id)
                    └► NCFM: frequencies t per class; calibration: one augmentation per class
  synthetic ─► decode (factor) ─► subsample ≤ batch_syn_max ─► normalise ─► augment ─┐
  real uint8 ─► normalise ─────────────────────────────────────────────► augment ─┴► embed
  (classes folded into the batch axis, ONE shared net) ─► per-class objective [C]
  ─► masked sum ─► grad w.r.t. synthetic pixels (real features under stop_gradient)
  ─► SGD with momentum ─► new state

Objectives: DM (arXiv 2110.04181, ‖mean φ(real) − mean φ(syn)‖² per class, summed), M3D
(arXiv 2312.15927, biased MMD² with the multi-bandwidth gaussian kernel), DDM
(arXiv 2412.04748, "paper" objective L_MMD + mm·L_MM + cm·L_CM + icd·L_ICD), NCFM
(arXiv 2502.20653, `objectives.ncfm_loss`: the characteristic-function distance of
L2-normalised features at `num_freqs` frequencies t ~ N(0, I), drawn per class per step).

Trained feature nets (`pool_size` > 0; DANCE arXiv 2406.01063, NCFM): the step receives the
pool's initial and final weights, stacked over its nets, as an ARGUMENT (`make_step`), and
each step picks one net i and l ~ U(0, 1) from the key (seed, step // ipm, POOL) and embeds
with θ = l·θ_init[i] + (1 − l)·θ_final[i] ("params" only; other collections from final).
Calibration (`calib_weight` > 0, with a pool only): + weight · CE(f_final[i](A'(syn_c)), c)
per class, the synthetic images seen by the pool net's FINAL weights (eval mode) under their
own augmentation A' (key CALIB per class), NCFM's `compute_loss.py`.

Stepping. DM/DDM (and M3D `step_mode="joint"`) take one SGD step on the summed loss; NCFM
one AdamW step on it (`optimizer="adamw"`; its released code steps once per class: see
docs/condense.md "NCFM" for why a joint step is used here).
M3D as published (`step_mode="per_class"`) steps once per class inside the class loop,
with one momentum buffer for the whole synthetic tensor. Because SGD+momentum is elementwise
and class c's loss only has gradient on class c's pixels, the C sequential steps decouple:
at its turn (position p = its global class id) class c's pixels have received p
momentum-only steps,

    buf_p = μ^p·buf,   x_p = x − lr·buf·(μ + μ² + … + μ^p),

its gradient g is taken at x_p, then buf' = μ·buf_p + g, x' = x_p − lr·buf', followed by
C−1−p momentum-only steps. `step_mode="per_class"` evaluates that closed form for all
classes in parallel (so it shards like the joint mode); `m3d_sequential_step` is the literal
`lax.scan` over classes that the tests compare it with.

M3D pixels live in [0, 1] and are clamped once per iteration before the class loop; inside
the iteration they are normalised *without* clipping, as the reference does (it clamps only
`data` at the start of an iteration), so pixels that drift past a bound keep their gradient.

Padded dummy classes (class id −1) are masked out of the loss and their gradient is zeroed,
so they never change and never contribute, whatever the device count.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxcond import augment as augment_lib
from jaxcond import mmd
from jaxcond import nets
from jaxcond import objectives
from jaxcond import rng
from jaxcond import synthetic
from jaxcond.data import bank as data_bank

State = dict  # {"syn": [C, ipc, H, W, ch] float32, "opt": optax state}
Pool = dict   # {"init": variables, "final": variables}, every leaf stacked [pool_size, ...]

FREQ_BLOCK = 256   # NCFM frequencies are drawn in blocks of this many (one key per block)


@dataclasses.dataclass(frozen=True)
class StepSettings:
  """Everything a step needs, as plain hashable values (built by `jaxcond.configs`)."""
  method: str                      # dm | m3d | ddm | ncfm
  seed: int
  num_classes: int                 # real classes (without padding)
  image_shape: tuple               # (H, W, ch)
  mean: tuple
  std: tuple
  ipc: int
  batch_real: int
  model_name: str = "convnet"
  model_overrides: tuple = ()      # sorted (field, value) pairs for nets.get_model
  factor: int = 1
  space: str = "normalized"        # normalized | unit
  lr: float = 1.0
  momentum: float = 0.5
  optimizer: str = "sgd"           # sgd | adamw (NCFM)
  weight_decay: float = 0.0        # sgd: + wd·x in the gradient (torch); adamw: decoupled
  plateau_patience: int = 0        # > 0: lr × plateau_factor after that many flat steps
  plateau_factor: float = 0.5
  batch_syn_max: int = 0           # 0 = every decoded image
  aug_policy: str = "dm"           # dm | idc | none
  aug_strategy: str = augment_lib.DEFAULT_STRATEGY
  kernel: str = "gaussian"         # M3D kernel
  estimator: str = "biased"        # M3D MMD² estimator: biased | unbiased (jaxcond.mmd)
  ipm: int = 1                     # iterations per random model (M3D: 5)
  step_mode: str = "joint"         # joint | per_class
  mm_weight: float = 1e4
  cm_weight: float = 0.0
  icd_weight: float = 10.0
  style_mode: str = "batchavg"
  style_tap: str = "norm"
  icd_k: int = 0                   # 0 = objectives.icd_k(ipc)
  num_freqs: int = 4096            # NCFM frequencies per class per step
  cf_alpha: float = 0.5
  cf_beta: float = 0.5
  cf_scale: float = objectives.NCFM_SCALE
  pool_size: int = 0               # trained nets in the pool argument; 0 = random nets
  calib_weight: float = 0.0        # with a pool: calibration cross-entropy weight
  pool_blend: str = "uniform"      # uniform (l ~ U(0, 1)) | final (l = 0) | init (l = 1)
  # Memory / speed layout, chosen by `jaxcond.plan` (never changes the maths):
  real_chunk: int = 0              # real images per class per scan iteration (0 = all)
  real_cpg: int = 0                # classes per device per real iteration (0 = all local)
  syn_cpg: int = 0                 # classes per device per synthetic gradient group (0 = all)
  syn_unroll: bool = False         # unroll the group scan (CPU speed preference, few groups)
  freq_chunk: int = 0              # NCFM: frequencies per scan iteration (0 = all at once)
  sample_chunk: int = 0            # NCFM: samples per scan iteration of the CF sums (0 = all)

  @property
  def syn_per_class(self) -> int:
    """Synthetic images per class that enter the network each step."""
    n = self.ipc * self.factor ** 2
    return min(n, self.batch_syn_max) if self.batch_syn_max else n

  @property
  def uses_taps(self) -> bool:
    return self.method == "ddm" and (self.mm_weight > 0 or self.cm_weight > 0)

  @property
  def uses_pool(self) -> bool:
    return self.pool_size > 0

  @property
  def uses_calib(self) -> bool:
    """Calibration needs a trained net: without a pool the weight is not read."""
    return self.uses_pool and self.calib_weight > 0


def make_model(s: StepSettings):
  return nets.get_model(s.model_name, num_classes=s.num_classes, image_shape=s.image_shape,
                        **dict(s.model_overrides))


def plateau_after_step(factor: float, patience: int) -> optax.GradientTransformationExtraArgs:
  """torch's ReduceLROnPlateau (mode min, relative threshold 1e-4, stepped after the update
  on the step's loss) as an optax transform scaling the updates: `update(..., value=loss)`.

  optax.contrib.reduce_on_plateau decides on `value` first and scales the SAME update; torch
  steps the optimiser with the current lr and reduces it for the next one, and only once
  the bad steps EXCEED `patience`. So this applies the scale held before the call and
  passes patience + 1 (it reduces when the count reaches its patience).
  """
  inner = optax.contrib.reduce_on_plateau(factor=factor, patience=patience + 1)

  def update(updates, state, params=None, *, value, **extra):
    del extra
    _, new_state = inner.update(updates, state, params, value=value)
    return jax.tree.map(lambda g: state.scale * g, updates), new_state

  return optax.GradientTransformationExtraArgs(inner.init, update)


def optimizer(s: StepSettings) -> optax.GradientTransformation:
  """The pixels' optimiser.

  sgd: heavy-ball momentum, PyTorch semantics (buf = μ·buf + g; x −= lr·buf), with
  `weight_decay` > 0 added to the gradient first (torch SGD). adamw: torch AdamW
  (β = 0.9, 0.999, ε = 1e-8, decoupled decay x −= lr·wd·x). `plateau_patience` > 0 chains
  `plateau_after_step` (NCFM: ×0.5 after 500 steps without a lower loss).
  """
  if s.optimizer == "adamw":
    tx = optax.adamw(s.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=s.weight_decay)
  else:
    tx = optax.sgd(s.lr, momentum=s.momentum if s.momentum > 0 else None)
    if s.weight_decay > 0:
      tx = optax.chain(optax.add_decayed_weights(s.weight_decay), tx)
  if s.plateau_patience > 0:
    tx = optax.chain(tx, plateau_after_step(s.plateau_factor, s.plateau_patience))
  return tx


def init_state(s: StepSettings, syn: jax.Array) -> State:
  return {"syn": syn, "opt": optimizer(s).init(syn)}


def _momentum_buffer(opt_state):
  """The SGD trace (momentum buffer) inside optax.sgd's state, or None without momentum."""
  for part in opt_state:
    if isinstance(part, optax.TraceState):
      return part.trace
  return None


def _replace_momentum_buffer(opt_state, new_trace):
  return tuple(part._replace(trace=new_trace) if isinstance(part, optax.TraceState) else part
               for part in opt_state)


# ------------------------------------------------------------------------------ pieces

def _safe_ids(class_ids):
  """Dummy slots (-1) reuse id 0 for key derivation; their results are masked anyway."""
  return jnp.maximum(class_ids, 0)


def _normalize_pixels(x, s: StepSettings):
  """Optimisation space -> network input. Unit space: (x − mean)/std without clipping
  (the clamp happens once per iteration on the stored pixels, as in M3D's code)."""
  if s.space == "normalized":
    return x
  mean = jnp.asarray(s.mean, jnp.float32)
  std = jnp.asarray(s.std, jnp.float32)
  return (x - mean) / std


def normalize_real(real_u8, s: StepSettings):
  """uint8 [..., H, W, ch] -> normalised float32 ((x/255 − mean)/std, `data.normalize`)."""
  return data_bank.normalize(real_u8, s.mean, s.std)


def synthetic_batch(syn, class_ids, step, s: StepSettings):
  """Stored images [C, ipc, ...] -> network-input images [C, m, ...] for this step:
  decode (factor), subsample to ≤ batch_syn_max per class (key per global class id),
  normalise."""
  x = synthetic.decode(syn, s.factor) if s.factor > 1 else syn
  n = x.shape[1]
  m = s.syn_per_class
  if m < n:
    keys = rng.class_keys(rng.step_key(s.seed, step, rng.SYN_SUBSET), _safe_ids(class_ids))
    idx = jax.vmap(lambda k: jax.random.permutation(k, n)[:m])(keys)
    x = jnp.take_along_axis(x, idx[:, :, None, None, None], axis=1)
  return _normalize_pixels(x, s)


def _augment(x, keys, s: StepSettings):
  """Siamese DSA per class: one transform per class key, shared by real and synthetic."""
  if s.aug_policy == "none" or s.aug_strategy in ("", "none"):
    return x
  fn = functools.partial(augment_lib.augment, policy=s.aug_policy, strategy=s.aug_strategy,
                         siamese=True)
  return jax.vmap(fn)(keys, x)


def _constrain(x, sharding_fn):
  return x if sharding_fn is None else jax.lax.with_sharding_constraint(x, sharding_fn(x.ndim))


def _embed(model, variables, x, s: StepSettings, sharding_fn):
  """[C, n, H, W, ch] -> feats [C, n, d] (+ taps [C, n, h, w, c] per block) with the classes
  folded into the batch axis of ONE forward of the shared net."""
  c_all, n = x.shape[:2]
  # Batch-norm statistics span the batch, so the padded dummy classes must not enter it:
  # only the real classes (the first num_classes slots) go through the net, and the
  # dummies get zero features (they are masked out of the loss anyway).
  c = s.num_classes if ("batch_stats" in variables and c_all > s.num_classes) else c_all
  flat = x[:c].reshape((c * n,) + x.shape[2:])

  def unfold(t):
    t = t.reshape((c, n) + t.shape[1:])
    if c < c_all:
      t = jnp.concatenate([t, jnp.zeros((c_all - c,) + t.shape[1:], t.dtype)])
    return _constrain(t, sharding_fn)

  if s.uses_taps:
    feats, taps = nets.embed(model, variables, flat, train=True, taps=True)
    taps = [unfold(t) for t in taps[s.style_tap]]
  else:
    feats, taps = nets.embed(model, variables, flat, train=True), None
  return unfold(feats.reshape(c * n, -1)), taps


def frequencies(keys, first, count: int, dim: int):
  """Blocks first .. first + count − 1 of every class's NCFM frequencies: `[C, count·
  FREQ_BLOCK, dim]`, t ~ N(0, I) (`mmd.cf_frequencies`).

  Class c's t is the concatenation of blocks 0, 1, ... (block b drawn from
  fold_in(keys[c], b)), cut to `num_freqs`: a chunk of whole blocks can be drawn inside the
  loop that uses it, and the chunk size (`freq_chunk`, chosen by the planner) changes no
  frequency.
  """
  def block(b):
    return jax.vmap(lambda k: mmd.cf_frequencies(jax.random.fold_in(k, b), FREQ_BLOCK,
                                                 dim))(keys)
  t = jax.vmap(block)(first + jnp.arange(count))          # [count, C, FREQ_BLOCK, dim]
  t = jnp.moveaxis(t, 0, 1)
  return t.reshape((t.shape[0], count * FREQ_BLOCK, dim))


def ncfm_objective(real_feats, syn_feats, class_ids, step, s: StepSettings):
  """NCFM's per-class loss `[C]` (`objectives.ncfm_loss`) at `num_freqs` frequencies per
  class drawn from (seed, step, FREQ, global class id); NCFM draws fresh t per class per
  iteration (released code, `NCFM/NCFM.py`).

  With `freq_chunk` the frequencies are taken `freq_chunk` at a time (a multiple of
  FREQ_BLOCK) in a rematerialised `lax.scan` that also draws them, so neither t `[C, T, d]`
  nor the projections `[C, n, T]` are ever whole; the result changes only by the rounding
  of the sums. `sample_chunk` bounds the sample axis inside each (mmd.cf_distance).
  """
  keys = rng.class_keys(rng.step_key(s.seed, step, rng.FREQ), _safe_ids(class_ids))
  dim, num = real_feats.shape[-1], s.num_freqs
  loss = functools.partial(objectives.ncfm_loss, real_feats, syn_feats, alpha=s.cf_alpha,
                           beta=s.cf_beta, scale=s.cf_scale,
                           sample_chunk=s.sample_chunk or None)

  blocks = lambda n: -(-n // FREQ_BLOCK)      # blocks holding n frequencies
  k = s.freq_chunk // FREQ_BLOCK if 0 < s.freq_chunk < num else 0
  if not k:
    return loss(frequencies(keys, 0, blocks(num), dim)[:, :num])
  chunk = k * FREQ_BLOCK
  full, rest = divmod(num, chunk)

  @jax.checkpoint
  def body(total, j):
    return total + loss(frequencies(keys, j * k, k, dim)) * chunk, None

  total, _ = jax.lax.scan(body, jnp.zeros(real_feats.shape[:1], jnp.float32),
                          jnp.arange(full))
  if rest:
    t = frequencies(keys, full * k, blocks(rest), dim)[:, :rest]
    total = total + loss(t) * rest
  return total / num


def _objective_terms(real_feats, syn_feats, real_taps, syn_taps, s: StepSettings,
                     class_ids=None, step=None):
  """(per-class objective [C], dict of per-class terms [C] for logging).

  DDM terms are logged unweighted (dm, mm, cm, icd); the objective is
  dm + mm_weight·mm + cm_weight·cm + icd_weight·icd (`objectives.ddm_losses`). NCFM draws
  its frequencies from `class_ids` and `step`.
  """
  if s.method == "ncfm":
    loss = ncfm_objective(real_feats, syn_feats, class_ids, step, s)
    return loss, {"ncfm": loss}
  if s.method == "dm":
    loss = objectives.dm_loss(real_feats, syn_feats)
    return loss, {"dm": loss}
  if s.method == "m3d":
    loss = objectives.m3d_loss(real_feats, syn_feats, kernel=s.kernel, estimator=s.estimator)
    return loss, {"mmd": loss}
  icd_weight = s.icd_weight if s.ipc > 1 else 0.0
  k = (s.icd_k or objectives.icd_k(s.ipc)) if icd_weight else None
  if not s.uses_taps:
    real_taps, syn_taps = None, None
  terms = dict(objectives.ddm_losses(
      real_feats, syn_feats, real_taps, syn_taps, mm_weight=s.mm_weight,
      cm_weight=s.cm_weight, icd_weight=icd_weight, k=k, style_mode=s.style_mode))
  total = terms.pop("total")
  for name, weight in (("mm", s.mm_weight), ("cm", s.cm_weight), ("icd", icd_weight)):
    if not weight:
      terms.pop(name)
  return total, terms


def random_net_variables(model, step, s: StepSettings):
  """Fresh PyTorch-init net; DM/DDM: new every step; M3D: new every `ipm` steps."""
  key = rng.step_key(s.seed, step // s.ipm, rng.NET)
  return nets.init_variables(model, key, s.image_shape)


def pool_choice(step, s: StepSettings):
  """(net index i, interpolation l) of `step`: key (seed, step // ipm, POOL). l ~ U(0, 1)
  (DANCE's and NCFM's blend of initial and final weights), or, to take the blend apart,
  0 (`pool.blend=final`: the trained nets as they are) or 1 (`init`: their untrained
  initialisations, a pool of random nets)."""
  k_net, k_mix = jax.random.split(rng.step_key(s.seed, step // s.ipm, rng.POOL))
  l = {"uniform": jax.random.uniform(k_mix, ()), "final": jnp.float32(0.0),
       "init": jnp.float32(1.0)}[s.pool_blend]
  return jax.random.randint(k_net, (), 0, s.pool_size), l


def pool_net_variables(pool: Pool, step, s: StepSettings):
  """(variables to embed with, the same net's final variables) for `step`: θ = l·θ_init +
  (1 − l)·θ_final of net i (`pool_choice`) on "params" (DANCE, NCFM: `parameters()` only;
  other collections, e.g. BN statistics, from the final weights)."""
  i, l = pool_choice(step, s)
  pick = lambda tree: jax.tree.map(lambda a: a[i], tree)
  init, final = pick(pool["init"]), pick(pool["final"])
  params = jax.tree.map(lambda a, b: l * a + (1.0 - l) * b, init["params"], final["params"])
  return {**final, "params": params}, final


def pool_shapes(model, s: StepSettings) -> Pool:
  """ShapeDtypeStructs of the pool argument (no sharding): `[pool_size, ...]` per leaf."""
  one = nets.variable_shapes(model, s.image_shape)
  stack = lambda a: jax.ShapeDtypeStruct((s.pool_size,) + tuple(a.shape), a.dtype)
  return {"init": jax.tree.map(stack, one), "final": jax.tree.map(stack, one)}


def calibration_loss(model, final, x, class_ids, step, s: StepSettings):
  """Per-class calibration `[C]`: mean cross-entropy of the class's synthetic images x
  `[C, m, ...]` (network input) under the pool net's final weights, after their own
  augmentation (key CALIB per class, one transform per class as NCFM's batch DiffAug); eval
  mode (a BN net uses its running statistics)."""
  keys = rng.class_keys(rng.step_key(s.seed, step, rng.CALIB), _safe_ids(class_ids))
  x = _augment(x, keys, s)
  c, m = x.shape[:2]
  logits, _ = nets.logits(model, final, x.reshape((c * m,) + x.shape[2:]), train=False)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32).reshape(c, m, -1), axis=-1)
  labels = jnp.broadcast_to(_safe_ids(class_ids)[:, None, None], (c, m, 1))
  return -jnp.mean(jnp.take_along_axis(logp, labels, axis=-1)[..., 0], axis=-1)


# ------------------------------------------------------------------------------ class groups
#
# The class axis C is sharded over `shards` devices (jaxcond.parallel): device d holds the
# contiguous block [d·L, (d+1)·L). A loop over class groups must keep every device busy on
# its own classes, so a group takes `cpg` classes from EVERY device's block:
#   [C, ...] -> [shards, L, ...] -> (pad L to G·cpg) -> [shards, G, cpg, ...]
#            -> [G, shards·cpg, ...]   (the loop axis first; axis 1 stays class-sharded)
# Every reshape/transpose moves only unsharded axes, so no data crosses devices. Padding
# slots get class id −1 and are masked like the parallel padding. Per-class keys fold the
# global class id (rng.class_keys), so the grouping changes no value, only float rounding
# of the sums.

def _shards(sharding_fn) -> int:
  return 1 if sharding_fn is None else int(sharding_fn(1).mesh.size)


def _group_constrain(x, sharding_fn):
  """Constrains a group-layout array [G, shards·cpg, ...] to be sharded on axis 1."""
  if sharding_fn is None:
    return x
  base = sharding_fn(x.ndim - 1)
  spec = jax.sharding.PartitionSpec(None, *base.spec)
  return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(base.mesh, spec))


def num_groups(local: int, cpg: int) -> int:
  """Groups per device for `local` classes per device in groups of `cpg` (0 = all)."""
  return 1 if cpg <= 0 or cpg >= local else -(-local // cpg)


def to_groups(x, shards: int, cpg: int, sharding_fn=None, fill=0):
  """[C, ...] -> [G, shards·cpg, ...] (see above); `cpg` ≥ 1."""
  local = x.shape[0] // shards
  g = num_groups(local, cpg)
  cpg = min(cpg, local)
  x = x.reshape((shards, local) + x.shape[1:])
  if g * cpg > local:
    pad = [(0, 0), (0, g * cpg - local)] + [(0, 0)] * (x.ndim - 2)
    x = jnp.pad(x, pad, constant_values=fill)
  x = jnp.swapaxes(x.reshape((shards, g, cpg) + x.shape[2:]), 0, 1)
  return _group_constrain(x.reshape((g, shards * cpg) + x.shape[3:]), sharding_fn)


def from_groups(y, shards: int, local: int, sharding_fn=None):
  """[G, shards·cpg, ...] -> [shards·local, ...] (inverse of `to_groups`, drops padding)."""
  g, width = y.shape[:2]
  cpg = width // shards
  y = jnp.swapaxes(y.reshape((g, shards, cpg) + y.shape[2:]), 0, 1)
  y = y.reshape((shards, g * cpg) + y.shape[3:])[:, :local]
  return _constrain(y.reshape((shards * local,) + y.shape[2:]), sharding_fn)


def reduces_real_taps(s: StepSettings) -> bool:
  """DDM's batchavg moments (cm off) need only the batch-mean tap map of the real side:
  the real taps are then streamed into `[C, 1, h, w, c]` means instead of being kept."""
  return s.uses_taps and s.style_mode == "batchavg" and s.cm_weight == 0


def real_features(model, variables, real_u8, class_ids, step, s: StepSettings,
                  sharding_fn=None):
  """Augmented real features (no gradient): feats [C, B, d], taps or None.

  Streamed in chunks of `real_cpg` classes (per device) × `real_chunk` images per class
  through `lax.scan`, so the peak activation memory is one chunk's whatever the class
  count (and on CPU ~160-image convolutions are faster than one 2560-image batch,
  docs/benchmarks.md). The siamese DSA transform depends only on the class key and the
  norms are per sample, so chunking changes no feature. With `reduces_real_taps` the taps
  come back as batch means [C, 1, h, w, c] (summed chunk by chunk).
  """
  c, b = real_u8.shape[:2]
  shards = _shards(sharding_fn)
  local = c // shards
  k = s.real_chunk if 0 < s.real_chunk < b else b
  if b % k:
    raise ValueError(f"real_chunk {k} does not divide batch_real {b}")
  cpg = s.real_cpg if 0 < s.real_cpg < local else local
  reduce = reduces_real_taps(s)

  def chunk_features(u8, ids):            # [Cg, k, ...] -> feats [Cg, k, d], taps
    aug_keys = rng.class_keys(rng.step_key(s.seed, step, rng.AUG), _safe_ids(ids))
    real = _constrain(normalize_real(u8, s), sharding_fn)
    feats, taps = _embed(model, variables, _augment(real, aug_keys, s), s, sharding_fn)
    if reduce:
      taps = [_constrain(jnp.mean(t, axis=1, keepdims=True), sharding_fn) for t in taps]
    return feats, taps

  if k == b and cpg == local:
    feats, taps = chunk_features(real_u8, class_ids)
    return jax.lax.stop_gradient((feats, taps))

  n_chunks = b // k

  def group_features(u8, ids):            # one class group: [Cg, b, ...]
    if n_chunks == 1:
      return chunk_features(u8, ids)
    cg = u8.shape[0]
    chunks = jnp.swapaxes(u8.reshape((cg, n_chunks, k) + u8.shape[2:]), 0, 1)

    def body(tap_sum, chunk):
      feats, taps = chunk_features(chunk, ids)
      if reduce:
        return [a + t / n_chunks for a, t in zip(tap_sum, taps)], (feats, None)
      return tap_sum, (feats, taps)

    tap_sum = None
    if reduce:
      shapes = jax.eval_shape(chunk_features, chunks[0], ids)[1]
      tap_sum = [jnp.zeros(t.shape, t.dtype) for t in shapes]
    tap_sum, (feats, taps) = jax.lax.scan(body, tap_sum, chunks)
    unchunk = lambda t: _constrain(
        jnp.swapaxes(t, 0, 1).reshape((cg, b) + t.shape[3:]), sharding_fn)
    feats = unchunk(feats)
    taps = tap_sum if reduce else (None if taps is None else [unchunk(t) for t in taps])
    return feats, taps

  if cpg == local:
    feats, taps = group_features(real_u8, class_ids)
  else:
    u8_g = to_groups(real_u8, shards, cpg, sharding_fn)
    ids_g = to_groups(class_ids, shards, cpg, sharding_fn, fill=-1)
    feats, taps = jax.lax.map(lambda a: group_features(*a), (u8_g, ids_g))
    back = lambda t: from_groups(t, shards, local, sharding_fn)
    feats = back(feats)
    taps = None if taps is None else [back(t) for t in taps]
  return jax.lax.stop_gradient((feats, taps))


def class_losses(model, variables, syn, real_feats, real_taps, class_ids, step,
                 s: StepSettings, sharding_fn=None, final=None):
  """(per-class objective [C], per-class terms) for stored synthetic images `syn`;
  `final`: the pool net's final variables (calibration, when `s.uses_calib`)."""
  aug_keys = rng.class_keys(rng.step_key(s.seed, step, rng.AUG), _safe_ids(class_ids))
  x0 = _constrain(synthetic_batch(syn, class_ids, step, s), sharding_fn)
  x = _augment(x0, aug_keys, s)
  syn_feats, syn_taps = _embed(model, variables, x, s, sharding_fn)
  total, terms = _objective_terms(real_feats, syn_feats, real_taps, syn_taps, s, class_ids,
                                  step)
  if s.uses_calib and final is not None:
    calib = calibration_loss(model, final, x0, class_ids, step, s)
    total = total + s.calib_weight * calib
    terms = {**terms, "calib": calib}
  return total, terms


def _masked_sum(per_class, valid):
  return jnp.sum(jnp.where(valid, per_class, 0.0))


def _geometric(mu: float, n):
  """μ + μ² + … + μ^n for integer array n ≥ 0 (0 when n = 0 or μ = 0)."""
  n = n.astype(jnp.float32)
  if mu == 0.0:
    return jnp.zeros_like(n)
  return mu * (1.0 - mu ** n) / (1.0 - mu)


# ------------------------------------------------------------------------------ the step

def grouped_value_and_grad(vg: Callable, syn, real_feats, real_taps, class_ids,
                           s: StepSettings, sharding_fn=None):
  """((loss, term sums), gradient w.r.t. `syn`) of `vg(syn, feats, taps, ids)` summed over
  class groups of `s.syn_cpg` classes per device.

  The objective is a sum of per-class terms and each class's term sees only its own
  synthetic images, so the gradient is taken class group by class group in a lax.scan:
  peak memory is one group's forward/backward whatever the class count, and compile time
  does not grow with the number of groups. The same values (float rounding of the sums
  aside). `syn_unroll` (CPU preference, few groups) unrolls it: XLA:CPU ran unrolled
  ~50-image groups faster than one large batch or a loop (docs/benchmarks.md).
  """
  c = syn.shape[0]
  shards = _shards(sharding_fn)
  local = c // shards
  if num_groups(local, s.syn_cpg) == 1:
    return vg(syn, real_feats, real_taps, class_ids)
  grp = lambda a, fill=0: to_groups(a, shards, s.syn_cpg, sharding_fn, fill)
  xs = (grp(syn), grp(real_feats), None if real_taps is None else [grp(t) for t in real_taps],
        grp(class_ids, -1))

  def body(carry, x):
    (loss_g, sums_g), grad_g = vg(*x)
    loss, sums = carry
    return (loss + loss_g, jax.tree.map(jnp.add, sums, sums_g)), grad_g

  shapes = jax.eval_shape(lambda x: vg(*x)[0], jax.tree.map(lambda a: a[0], xs))
  zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
  g = xs[0].shape[0]
  (loss, sums), grads = jax.lax.scan(body, zero, xs, unroll=g if s.syn_unroll else 1)
  return (loss, sums), from_groups(grads, shards, local, sharding_fn)


def _joint_update(opt, state, syn0, vmask, loss_and_grad, s: StepSettings):
  """One optimiser step on the summed loss: ((loss, sums), new pixels, optimiser state)."""
  (loss, sums), grad = loss_and_grad(syn0)
  grad = jnp.where(vmask, grad, 0.0)
  if s.plateau_patience > 0:   # torch steps its plateau scheduler on the mean loss
    updates, opt_state = opt.update(grad, state["opt"], syn0,
                                    value=loss / jnp.float32(s.num_classes))
  else:
    updates, opt_state = opt.update(grad, state["opt"], syn0)
  new_syn = optax.apply_updates(syn0, updates)
  if s.optimizer != "sgd" or s.weight_decay > 0:   # decay must not move padded slots
    new_syn = jnp.where(vmask, new_syn, syn0)
  return (loss, sums), new_syn, opt_state


def _per_class_update(state, syn0, vmask, class_ids, loss_and_grad, s: StepSettings):
  """M3D's one SGD step per class in closed form (module docstring): ((loss, sums), new
  pixels, optimiser state)."""
  bshape = vmask.shape
  buf = _momentum_buffer(state["opt"])
  mu, lr = s.momentum, s.lr
  # p = the class's slot (its turn in the sweep over classes), not its class id:
  # a bank of a class subset (continual learning) has ids beyond num_classes.
  pos = jnp.minimum(jnp.arange(class_ids.shape[0], dtype=jnp.int32), s.num_classes - 1)
  before = _geometric(mu, pos).reshape(bshape)           # p momentum-only steps
  after = _geometric(mu, s.num_classes - 1 - pos).reshape(bshape)
  if buf is None:                                         # momentum 0: plain SGD
    x_turn = syn0
  else:
    x_turn = syn0 - lr * before * buf
  (loss, sums), grad = loss_and_grad(x_turn)
  grad = jnp.where(vmask, grad, 0.0)
  if buf is None:
    return (loss, sums), x_turn - lr * grad, state["opt"]
  decay_turn = (mu ** pos.astype(jnp.float32)).reshape(bshape)
  buf_turn = mu * decay_turn * buf + grad               # μ^(p+1)·buf + g
  x_after = x_turn - lr * buf_turn
  new_syn = x_after - lr * after * buf_turn
  decay_after = (mu ** (s.num_classes - 1 - pos).astype(jnp.float32)).reshape(bshape)
  new_buf = decay_after * buf_turn
  new_syn = jnp.where(vmask, new_syn, syn0)
  new_buf = jnp.where(vmask, new_buf, buf)
  return (loss, sums), new_syn, _replace_momentum_buffer(state["opt"], new_buf)


def make_step(s: StepSettings, sharding_fn: Callable[[int], Any] | None = None,
              model=None) -> Callable:
  """`step_fn(state, real_u8 [C, B, H, W, ch], class_ids [C], step) -> (state, metrics)`;
  with a pool (`s.pool_size` > 0) `step_fn(state, real_u8, class_ids, pool, step)`, the
  pool's weights (`Pool`, replicated) an argument like the data, never a constant.

  `sharding_fn(ndim)` (optional) returns the class sharding used to constrain the
  class-leading intermediates; metrics are scalars: `loss` (mean over real classes of the
  per-class objective) and `loss/<term>`.
  """
  model = model if model is not None else make_model(s)
  opt = optimizer(s)
  per_class = s.method == "m3d" and s.step_mode == "per_class"

  def step_fn(state, real_u8, class_ids, step, pool=None):
    valid = class_ids >= 0
    if s.uses_pool:
      variables, final = pool_net_variables(pool, step, s)
    else:
      variables, final = random_net_variables(model, step, s), None
    syn0 = synthetic.clamp(state["syn"], s.space)   # M3D: clamp once per iteration
    real_feats, real_taps = real_features(model, variables, real_u8, class_ids, step, s,
                                          sharding_fn)

    def group_loss(syn, feats, taps, ids):
      per_class_total, terms = class_losses(model, variables, syn, feats, taps, ids, step,
                                            s, sharding_fn, final)
      ok = ids >= 0
      sums = {k: _masked_sum(v, ok) for k, v in terms.items()}
      return _masked_sum(per_class_total, ok), sums

    vg = jax.value_and_grad(group_loss, has_aux=True)
    loss_and_grad = lambda syn: grouped_value_and_grad(vg, syn, real_feats, real_taps,
                                                       class_ids, s, sharding_fn)
    vmask = valid.reshape((-1,) + (1,) * (syn0.ndim - 1))
    if per_class:
      (loss, sums), new_syn, opt_state = _per_class_update(state, syn0, vmask, class_ids,
                                                           loss_and_grad, s)
    else:
      (loss, sums), new_syn, opt_state = _joint_update(opt, state, syn0, vmask,
                                                       loss_and_grad, s)
    n = jnp.float32(s.num_classes)
    metrics = {"loss": loss / n, **{f"loss/{k}": v / n for k, v in sums.items()},
               "finite": jnp.all(jnp.isfinite(new_syn))}
    return {"syn": new_syn, "opt": opt_state}, metrics

  if s.uses_pool:
    return lambda state, real_u8, class_ids, pool, step: step_fn(state, real_u8, class_ids,
                                                                 step, pool)
  return lambda state, real_u8, class_ids, step: step_fn(state, real_u8, class_ids, step)


def make_bank_step(s: StepSettings, sample_real: Callable, sharding_fn=None,
                   model=None) -> Callable:
  """`fn(state, bank, step)` (with a pool `fn(state, bank, pool, step)`): samples the real
  batch from the class bank inside the same jit (`sample_real(bank, key, batch)`), then runs
  `make_step`'s step."""
  step_fn = make_step(s, sharding_fn, model)

  def bank_step(state, bank, *pool_and_step):
    *pool, step = pool_and_step
    real = sample_real(bank, rng.step_key(s.seed, step, rng.REAL), s.batch_real)
    return step_fn(state, real, bank.class_ids, *pool, step)

  return bank_step


def m3d_sequential_step(s: StepSettings, model=None) -> Callable:
  """Literal M3D iteration (the M3D authors' code): `lax.scan` over classes, each class's loss
  back-propagated and the optimiser stepped inside the loop with shared momentum state.

  Reference for tests (unsharded; C forwards of one class each):
  `fn(state, real_u8, class_ids, step) -> state`; classes take their turns in slot order.
  """
  model = model if model is not None else make_model(s)
  opt = optimizer(s)

  def fn(state, real_u8, class_ids, step):
    variables = random_net_variables(model, step, s)
    syn = synthetic.clamp(state["syn"], s.space)
    real_feats, real_taps = real_features(model, variables, real_u8, class_ids, step, s)

    def one_class(carry, p):
      syn, opt_state = carry

      def loss_p(syn_p):
        sl = lambda a: jax.lax.dynamic_slice_in_dim(a, p, 1, axis=0)
        taps = None if real_taps is None else [sl(t) for t in real_taps]
        total, _ = class_losses(model, variables, syn_p, sl(real_feats), taps,
                                sl(class_ids), step, s)
        return total[0]

      g_p = jax.grad(loss_p)(jax.lax.dynamic_slice_in_dim(syn, p, 1, axis=0))
      grad = jax.lax.dynamic_update_slice_in_dim(jnp.zeros_like(syn), g_p, p, axis=0)
      updates, opt_state = opt.update(grad, opt_state, syn)
      return (optax.apply_updates(syn, updates), opt_state), None

    (syn, opt_state), _ = jax.lax.scan(one_class, (syn, state["opt"]),
                                       jnp.arange(s.num_classes))
    return {"syn": syn, "opt": opt_state}

  return fn


def init_count(s: StepSettings, init: str) -> int:
  """Real images per class that `init` needs: ipc·f² (mix), ipc (real), 1 (noise)."""
  return s.ipc * s.factor ** 2 if init == "mix" else (s.ipc if init == "real" else 1)


def init_from_real(s: StepSettings, init: str) -> Callable:
  """`fn(real_u8 [C, n, H, W, ch], class_ids [C]) -> syn [C, ipc, H, W, ch]` in the
  optimisation space (`synthetic.init_images`, per-class keys from the global class id)."""
  factor = s.factor if init == "mix" else 1

  def fn(real_u8, class_ids):
    key = rng.step_key(s.seed, 0, rng.INIT)
    if s.space == "unit":
      real = real_u8.astype(jnp.float32) / 255.0
    else:
      real = normalize_real(real_u8, s)
    syn = synthetic.init_images(jax.random.fold_in(key, 1), real, s.ipc, method=init,
                                factor=factor, space=s.space, class_ids=_safe_ids(class_ids))
    return jnp.where((class_ids >= 0).reshape((-1,) + (1,) * 4), syn, 0.0)

  return fn


def init_synthetic(s: StepSettings, init: str, sample_real: Callable) -> Callable:
  """`fn(bank) -> syn [C, ipc, H, W, ch]`: `init_count` random real images per class from
  the bank (key INIT, folded per global class id), then `init_from_real`."""
  n = init_count(s, init)
  from_real = init_from_real(s, init)

  def fn(bank):
    key = rng.step_key(s.seed, 0, rng.INIT)
    return from_real(sample_real(bank, jax.random.fold_in(key, 0), n), bank.class_ids)

  return fn


def export_images(syn, s: StepSettings):
  """Stored pixels -> (normalised stored images, normalised decoded images or None).

  Unit-space pixels are clipped to [0, 1] first (the clamp M3D applies before each
  iteration), then normalised: synthetic.npz always holds normalised images.
  """
  syn = jnp.asarray(syn, jnp.float32)
  if s.space == "unit":
    syn = jnp.clip(syn, 0.0, 1.0)
  x = _normalize_pixels(syn, s)
  if s.factor == 1:
    return x, None
  return x, _normalize_pixels(synthetic.decode(syn, s.factor), s)


def display_images(syn, s: StepSettings):
  """Stored pixels -> [0, 1] images for PNG grids."""
  syn = jnp.asarray(syn, jnp.float32)
  if s.space == "unit":
    return jnp.clip(syn, 0.0, 1.0)
  return jnp.clip(syn * jnp.asarray(s.std, jnp.float32) + jnp.asarray(s.mean, jnp.float32),
                  0.0, 1.0)


def images_per_step(s: StepSettings) -> int:
  """Images through the network per step (real + synthetic, all classes)."""
  return s.num_classes * (s.batch_real + s.syn_per_class)

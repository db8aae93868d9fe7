"""Train-from-scratch evaluation of a condensed (or coreset) training set (methods.md §5).

A set is scored by the test accuracy of fresh networks trained on it with hard labels.
Two protocols are implemented, each as an `EvalSettings` object (no scattered code paths):

`dm` (DM / DDM `utils.evaluate_synset`, §5.1):
  SGD lr 0.01, momentum 0.9, weight decay 5e-4 added to the gradient (torch's coupled L2),
  batch 256 shuffled (last partial batch kept), cross-entropy. `epochs` = 1000 counted as the
  reference counts them: passes 0..1000 inclusive, i.e. 1001 passes. After pass index
  epochs//2 + 1 (= 501) the LR is multiplied by 0.1 once and the optimiser is re-created, so
  the momentum buffer is zero at the start of pass epochs//2 + 2. Every batch gets DSA with
  the dataset's strategy, policy "dm" (one op group per batch, per-sample parameters).
  Reported: test accuracy after the last pass.

`idc` (IDC / M3D `train.train`, §5.2):
  the decoded multi-formation set; per-batch IDC-DSA (policy "idc", per-sample parameters,
  default strategy `color_crop_flip_scale_rotate` as in the M3D README eval command), then
  CutMix with probability `mix_p` (λ ~ Beta(β, β); box as IDC's `rand_bbox`; partner = a
  uniform random permutation of the batch, which is what IDC's `random_indices(target,
  nclass)` returns with its default intraclass=False: it takes the labels but ignores them);
  loss = r·CE(y) + (1 − r)·CE(y_partner) with r the kept area. SGD as above, batch 64,
  `epochs` passes with MultiStep decay ×0.2 at epochs 2E//3 and 5E//6 (0-based pass index
  >= milestone, i.e. torch's scheduler stepped after each epoch); no momentum reset.
  Test accuracy after every `eval_every_epochs` passes and at the end. Reported: the last
  accuracy, and the best over those checkpoints, which is SELECTED ON THE TEST SET (as IDC and
  M3D report "Best"); results label it so.

Throughput: the N networks of one evaluation (different seeds) train together in jitted
programs over a leading network axis. On accelerators (loop="device", vectorize="vmap") the
whole training is ONE jitted program: `vmap` over the networks, `lax.scan` over the batches
of a pass and `lax.fori_loop` over passes. XLA:CPU runs convolution weight gradients ~100x
slower inside loops (jax#12868) and vmapped (grouped) convolutions several times slower, so
on CPU the default is loop="host" (one jitted call per SGD step, all networks in it) with
vectorize="unroll" (the networks as independent copies in that program). With several
devices the network axis is split over a 1-D mesh (axis "nets") with `jax.shard_map` under
`jit`; networks are padded to a multiple of the devices used and the padding is dropped.
Net i always draws from `fold_in(fold_in(step_key(seed, 0, EVAL), i), ...)`, so results do
not depend on N, the device count, the loop or the vectorisation (tested). Test accuracy is
computed in fixed-size batches.

Choices where the sources are silent (NOT FOUND):
- when a synthetic.npz carries `x_decoded`, both protocols train on it (a multi-formation set
  only means something decoded); for digit datasets (mnist, svhn, digits) the default DSA
  strategy drops `flip` under both protocols (DM README rule);
- std is the population std (ddof=0, numpy's default, as the DM code reports); accuracies are
  percentages.

CLI: `python -m jaxcond.evaluate --config experiments/<file>.py[:arg] --workdir DIR
(--synthetic PATH | --baseline random|herding|kcenter) [--models a,b,...]`; see docs/evaluate.md.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import sys
import time
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcond import rng
from jaxcond.errors import ConfigError, DataError, JaxcondError

PROTOCOLS = ("dm", "idc")
DM_STRATEGY = "color_crop_cutout_flip_scale_rotate"
IDC_STRATEGY = "color_crop_flip_scale_rotate"
DIGIT_DATASETS = ("mnist", "svhn", "digits")
NET_AXIS = "nets"
VECTORIZE = ("vmap", "map", "unroll")
LOOPS = ("device", "host")

# Key purposes folded into the evaluation key (fixed integers, never reordered).
_NET_INIT = 0
_NET_TRAIN = 1
_BASELINE_SUBSET = 2
_BASELINE_FEATURES = 3

def default_strategy(protocol: str, dataset: str | None = None) -> str:
  """The protocol's DSA strategy, without `flip` for digit datasets (DM README)."""
  return _protocol_defaults(protocol, dataset)["strategy"]


def _protocol_defaults(protocol: str, dataset: str | None = None) -> dict:
  from jaxcond import configs  # pylint: disable=g-import-not-at-top
  return configs.eval_protocol_defaults(protocol, _canonical(dataset) if dataset else None)


def _canonical(name: str) -> str:
  try:
    from jaxcond.data import registry
    return registry.canonical_name(name)
  except (ImportError, ConfigError):
    return str(name).strip().lower()


def _as_int(field: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ConfigError(f"eval.{field} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def _as_float(field: str, value, lo: float, hi: float, *, lo_open=False, hi_open=False):
  if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
    raise ConfigError(f"eval.{field} must be a number, got {value!r}")
  value = float(value)
  bad = (not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo)
         or (hi_open and value == hi))
  if bad:
    lb, hb = "(" if lo_open else "[", ")" if hi_open else "]"
    raise ConfigError(f"eval.{field} must be in {lb}{lo}, {hi}{hb}, got {value!r}")
  return value


def _model_tuple(models) -> tuple[str, ...]:
  if models is None:
    return ()
  if isinstance(models, str):
    models = [m for m in models.replace(" ", "").split(",") if m]
  try:
    names = tuple(str(m).strip().lower() for m in models)
  except TypeError:
    raise ConfigError(f"eval.models must be a list of model names, got {models!r}") from None
  if any(not n for n in names):
    raise ConfigError(f"eval.models has an empty name: {models!r}")
  return names


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """One evaluation protocol with its knobs (module docstring; methods.md §5).

  `epochs` follows each reference's own count: dm trains epochs + 1 passes, idc `epochs`.
  `models` is the cross-architecture pool (empty = only `model`). `eval_every_epochs` > 0
  adds test checkpoints every that many passes (the idc "best" is taken over them).
  """
  protocol: str = "dm"
  model: str = "convnet"
  models: tuple = ()
  num_nets: int = 5
  epochs: int = 1000
  batch_size: int = 256
  lr: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 5e-4
  strategy: str = DM_STRATEGY
  mix_p: float = 0.0
  beta: float = 1.0
  eval_every_epochs: int = 0
  seed: int = 0

  def __post_init__(self):
    if self.protocol not in PROTOCOLS:
      raise ConfigError(f"eval.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
    if not isinstance(self.model, str) or not self.model.strip():
      raise ConfigError(f"eval.model must be a model name, got {self.model!r}")
    set_ = functools.partial(object.__setattr__, self)
    set_("model", self.model.strip().lower())
    set_("models", _model_tuple(self.models))
    set_("num_nets", _as_int("num_nets", self.num_nets, 1))
    set_("epochs", _as_int("epochs", self.epochs, 1))
    set_("batch_size", _as_int("batch_size", self.batch_size, 1))
    set_("lr", _as_float("lr", self.lr, 0.0, math.inf, lo_open=True))
    set_("momentum", _as_float("momentum", self.momentum, 0.0, 1.0, hi_open=True))
    set_("weight_decay", _as_float("weight_decay", self.weight_decay, 0.0, math.inf))
    set_("mix_p", _as_float("mix_p", self.mix_p, 0.0, 1.0))
    set_("beta", _as_float("beta", self.beta, 0.0, math.inf, lo_open=True))
    set_("eval_every_epochs", _as_int("eval_every_epochs", self.eval_every_epochs, 0))
    set_("seed", _as_int("seed", self.seed, 0))
    if self.strategy is None:
      set_("strategy", "none")
    if not isinstance(self.strategy, str):
      raise ConfigError(f"eval.strategy must be a string, got {self.strategy!r}")
    from jaxcond import augment
    augment.parse_strategy(self.strategy)   # raises ConfigError on unknown ops
    if self.protocol == "dm" and self.mix_p > 0:
      raise ConfigError(f"eval.mix_p={self.mix_p}: the dm protocol has no CutMix "
                        "(use protocol 'idc' or mix_p=0)")

  # ------------------------------------------------------------------ constructors
  @classmethod
  def for_protocol(cls, protocol: str, **overrides) -> "EvalSettings":
    """The reference settings of `protocol` ("dm" | "idc"), then `overrides`.

    `dataset=` (not a field) picks the dataset's default DSA strategy.
    """
    if protocol not in PROTOCOLS:
      raise ConfigError(f"eval.protocol must be one of {PROTOCOLS}, got {protocol!r}")
    dataset = overrides.pop("dataset", None)
    fields = dict(_protocol_defaults(protocol, dataset), protocol=protocol)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ConfigError(f"eval: unknown field(s) {sorted(unknown)}")
    fields.update(overrides)
    return cls(**fields)

  @classmethod
  def from_config(cls, eval_cfg, *, dataset: str | None = None) -> "EvalSettings":
    """From a `config.eval` block (ConfigDict or mapping).

    Missing fields take the protocol's defaults; `strategy` "" or "auto" means the protocol
    default for `dataset`; fields that are not settings (e.g. `every`) are ignored, and so is
    `eval_every_epochs` under dm (DM tests only after the last pass).
    """
    if eval_cfg is None:
      return cls.for_protocol("dm", dataset=dataset)
    src = eval_cfg.to_dict() if hasattr(eval_cfg, "to_dict") else dict(eval_cfg)
    protocol = src.get("protocol", "dm")
    names = {f.name for f in dataclasses.fields(cls)} - {"protocol"}
    overrides = {k: v for k, v in src.items() if k in names and v is not None}
    if str(overrides.get("strategy", "auto")).strip().lower() in ("", "auto"):
      overrides.pop("strategy", None)
    if protocol == "dm":
      # DM tests once, after the last pass; CutMix and checkpoints are idc knobs that a
      # shared config block may still carry (a dm config with mix_p > 0 is an error).
      overrides.pop("eval_every_epochs", None)
      if not overrides.get("mix_p"):
        overrides.pop("mix_p", None)
    return cls.for_protocol(protocol, dataset=dataset, **overrides)

  # ------------------------------------------------------------------ schedule
  @property
  def pool(self) -> tuple[str, ...]:
    """Architectures evaluated: `models` if given, else (`model`,)."""
    return self.models or (self.model,)

  @property
  def augment_policy(self) -> str:
    return self.protocol      # "dm" -> DM DiffAugment, "idc" -> IDC DiffAug

  @property
  def passes(self) -> int:
    """Training passes over the set: dm counts epochs 0..E inclusive, idc 1..E."""
    return self.epochs + 1 if self.protocol == "dm" else self.epochs

  @property
  def milestones(self) -> tuple[int, ...]:
    """0-based pass indices from which the LR is reduced (each one multiplies once)."""
    if self.protocol == "dm":
      return (self.epochs // 2 + 2,)
    return (2 * self.epochs // 3, 5 * self.epochs // 6)

  @property
  def gamma(self) -> float:
    return 0.1 if self.protocol == "dm" else 0.2

  def lr_at(self, epoch):
    """Learning rate of 0-based pass `epoch`: lr · gamma^(#milestones <= epoch).

    dm: ×0.1 from pass E//2 + 2 (the optimiser is re-created after pass E//2 + 1);
    idc: MultiStepLR([2E//3, 5E//6], 0.2) stepped after each epoch. Python ints give Python
    floats (exact tests); traced ints give float32.
    """
    if isinstance(epoch, (int, np.integer)):
      return self.lr * self.gamma ** sum(int(epoch) >= m for m in self.milestones)
    count = sum((epoch >= m).astype(jnp.int32) for m in self.milestones)
    return jnp.float32(self.lr) * jnp.float32(self.gamma) ** count

  def resets_momentum_at(self, epoch):
    """Whether the momentum buffer is zeroed at the start of pass `epoch` (dm only)."""
    if self.protocol != "dm":
      return False
    return epoch == self.milestones[0]

  def checkpoint_passes(self) -> tuple[int, ...]:
    """Numbers of completed passes after which test accuracy is measured (last one = end)."""
    every = self.eval_every_epochs
    marks = [p for p in range(1, self.passes + 1) if every and p % every == 0]
    if not marks or marks[-1] != self.passes:
      marks.append(self.passes)
    return tuple(marks)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["models"] = list(self.models)
    d["passes"] = self.passes
    d["lr_milestones"] = list(self.milestones)
    d["lr_gamma"] = self.gamma
    d["augment_policy"] = self.augment_policy
    return d


# ---------------------------------------------------------------------------- networks


class NetFns(NamedTuple):
  """A network as two pure functions (what training needs from jaxcond.nets).

  init(key) -> variables {"params"[, "batch_stats"]};
  apply(variables, x, train) -> (logits [N, K], new batch_stats or None).
  """
  init: Callable
  apply: Callable


@functools.lru_cache(maxsize=64)
def registry_net(name: str, *, num_classes: int, image_shape: tuple) -> NetFns:
  """NetFns for a `jaxcond.nets` registry name (cached, so jitted programs are reused)."""
  from jaxcond import nets
  image_shape = tuple(int(s) for s in image_shape)
  model = nets.get_model(name, num_classes=num_classes, image_shape=image_shape)

  def init(key):
    return nets.init_variables(model, key, image_shape)

  def apply(variables, x, train):
    return nets.logits(model, variables, x, train=train)

  return NetFns(init, apply)


# ---------------------------------------------------------------------------- training


def sgd_update(params, momentum_buf, grads, *, lr, momentum: float, weight_decay: float):
  """One torch.optim.SGD step (dampening 0, no Nesterov, coupled L2 on every parameter):
  d = g + wd·p;  buf = momentum·buf + d;  p = p − lr·buf.  Returns (params, buf)."""
  def one(p, b, g):
    d = g + weight_decay * p
    b = momentum * b + d
    return p - lr * b, b
  flat = jax.tree.map(one, params, momentum_buf, grads)
  new_params = jax.tree.map(lambda t: t[0], flat, is_leaf=lambda t: isinstance(t, tuple))
  new_buf = jax.tree.map(lambda t: t[1], flat, is_leaf=lambda t: isinstance(t, tuple))
  return new_params, new_buf


def cross_entropy(logits, labels):
  """Mean softmax cross-entropy with integer labels (torch nn.CrossEntropyLoss)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))


def cutmix_box(hw: tuple[int, int], lam, cy, cx):
  """IDC `rand_bbox` on an H×W image: cut = int(size·sqrt(1 − λ)) per axis, centre (cy, cx),
  box [cy − cut_h//2, cy + cut_h//2) × [cx − cut_w//2, cx + cut_w//2) clipped to the image.
  Returns int32 (r1, c1, r2, c2)."""
  h, w = hw
  cut_rat = jnp.sqrt(1.0 - jnp.asarray(lam, jnp.float32))
  cut_h = jnp.floor(h * cut_rat).astype(jnp.int32)
  cut_w = jnp.floor(w * cut_rat).astype(jnp.int32)
  cy = jnp.asarray(cy, jnp.int32)
  cx = jnp.asarray(cx, jnp.int32)
  r1 = jnp.clip(cy - cut_h // 2, 0, h)
  r2 = jnp.clip(cy + cut_h // 2, 0, h)
  c1 = jnp.clip(cx - cut_w // 2, 0, w)
  c2 = jnp.clip(cx + cut_w // 2, 0, w)
  return r1, c1, r2, c2


def paste_box(x, partner, box):
  """x [N, H, W, ch] with box pixels taken from x[partner]; returns (mixed, kept ratio r)."""
  h, w = x.shape[1:3]
  r1, c1, r2, c2 = box
  rows = jnp.arange(h)
  cols = jnp.arange(w)
  inside = (((rows >= r1) & (rows < r2))[:, None] & ((cols >= c1) & (cols < c2))[None, :])
  mixed = jnp.where(inside[None, :, :, None], x[partner], x)
  ratio = 1.0 - jnp.asarray((r2 - r1) * (c2 - c1), jnp.float32) / (h * w)
  return mixed, ratio


def cutmix(key, x, y, *, mix_p: float, beta: float):
  """IDC CutMix on one batch: with probability mix_p, λ ~ Beta(β, β), one box for the batch,
  partner = random permutation. Returns (x, y_partner, r); r = 1 (x unchanged) when skipped."""
  k_coin, k_lam, k_perm, k_cy, k_cx = jax.random.split(key, 5)
  n, h, w = x.shape[:3]
  lam = jax.random.beta(k_lam, beta, beta)
  partner = jax.random.permutation(k_perm, n)
  box = cutmix_box((h, w), lam, jax.random.randint(k_cy, (), 0, h),
                   jax.random.randint(k_cx, (), 0, w))
  mixed, ratio = paste_box(x, partner, box)
  apply = jax.random.uniform(k_coin) < mix_p
  return (jnp.where(apply, mixed, x), y[partner],
          jnp.where(apply, ratio, jnp.float32(1.0)))


def init_state(net: NetFns, key) -> dict:
  """{"params", "momentum" (zeros), ["batch_stats"]} for one network."""
  variables = net.init(key)
  state = {"params": variables["params"],
           "momentum": jax.tree.map(jnp.zeros_like, variables["params"])}
  if "batch_stats" in variables:
    state["batch_stats"] = variables["batch_stats"]
  return state


def _variables(state):
  v = {"params": state["params"]}
  if "batch_stats" in state:
    v["batch_stats"] = state["batch_stats"]
  return v


def train_step(net: NetFns, settings: EvalSettings, state, xb, yb, key, lr):
  """One SGD step on one batch: DSA (per sample) -> [CutMix] -> CE -> torch SGD."""
  from jaxcond import augment
  k_aug, k_mix = jax.random.split(key)
  xb = augment.augment(k_aug, xb, policy=settings.augment_policy, strategy=settings.strategy,
                       siamese=False)
  if settings.mix_p > 0:
    xb, yb_partner, ratio = cutmix(k_mix, xb, yb, mix_p=settings.mix_p, beta=settings.beta)
  else:
    yb_partner, ratio = yb, jnp.float32(1.0)

  def loss_fn(params):
    out, new_stats = net.apply(_variables({**state, "params": params}), xb, True)
    loss = ratio * cross_entropy(out, yb)
    if settings.mix_p > 0:
      loss = loss + (1.0 - ratio) * cross_entropy(out, yb_partner)
    return loss, new_stats

  (_, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
  params, buf = sgd_update(state["params"], state["momentum"], grads, lr=lr,
                           momentum=settings.momentum, weight_decay=settings.weight_decay)
  new_state = {**state, "params": params, "momentum": buf}
  if "batch_stats" in state and new_stats is not None:
    new_state["batch_stats"] = new_stats
  return new_state


def steps_per_pass(n: int, batch_size: int) -> int:
  return -(-n // batch_size)


def _pass_order(key, epoch, n: int):
  """(permutation of the pass, key of its steps): fold_in(key, epoch) split in two."""
  k_perm, k_step = jax.random.split(jax.random.fold_in(key, epoch))
  return jax.random.permutation(k_perm, n), k_step


def _maybe_reset(settings: EvalSettings, state, reset):
  return {**state, "momentum": jax.tree.map(
      lambda b: jnp.where(reset, jnp.zeros_like(b), b), state["momentum"])}


def train_pass(net: NetFns, settings: EvalSettings, state, x, y, key, epoch):
  """One shuffled pass over (x, y): full batches under `lax.scan`, then the partial last
  batch at its own size (torch DataLoader, drop_last=False), so BN statistics are exact."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0]
  batch = min(settings.batch_size, n)
  n_full, rem = divmod(n, batch)
  lr = settings.lr_at(epoch)
  state = _maybe_reset(settings, state, settings.resets_momentum_at(epoch))
  perm, k_step = _pass_order(key, epoch, n)

  def body(st, inp):
    i, idx = inp
    return train_step(net, settings, st, x[idx], y[idx], jax.random.fold_in(k_step, i), lr), None

  if n_full:
    idx = perm[:n_full * batch].reshape(n_full, batch)
    state, _ = jax.lax.scan(body, state, (jnp.arange(n_full), idx))
  if rem:
    idx = perm[n_full * batch:]
    state = train_step(net, settings, state, x[idx], y[idx],
                       jax.random.fold_in(k_step, n_full), lr)
  return state


def train_passes(net: NetFns, settings: EvalSettings, state, key, x, y, start, stop):
  """Passes [start, stop) of one network (fori_loop; start/stop may be traced)."""
  return jax.lax.fori_loop(
      start, stop, lambda e, st: train_pass(net, settings, st, x, y, key, e), state)


def train_batch(net: NetFns, settings: EvalSettings, state, key, x, y, epoch, i, size: int):
  """Step i of pass `epoch` alone (host loop): the same batch, key, LR and momentum reset as
  step i of `train_pass`, so both loops give the same networks."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0]
  batch = min(settings.batch_size, n)
  perm, k_step = _pass_order(key, epoch, n)
  idx = jax.lax.dynamic_slice(perm, (i * batch,), (size,))
  state = _maybe_reset(settings, state,
                       jnp.logical_and(settings.resets_momentum_at(epoch), i == 0))
  return train_step(net, settings, state, x[idx], y[idx], jax.random.fold_in(k_step, i),
                    settings.lr_at(epoch))


def count_correct(net: NetFns, state, xb, yb, mb):
  """Correct predictions (eval mode: BN running stats) over test batches [nb, tb, ...]."""
  variables = _variables(state)

  def one(args):
    x, y, m = args
    out, _ = net.apply(variables, x, False)
    return jnp.sum((jnp.argmax(out, -1) == y) & m)

  return jnp.sum(jax.lax.map(one, (xb, yb, mb)))


def net_layout(num_nets: int, num_devices: int | None = None) -> tuple[int, int]:
  """(devices used, networks per device): fewest networks per device, then fewest devices."""
  d = jax.device_count() if num_devices is None else num_devices
  per_dev = -(-num_nets // max(1, min(d, num_nets)))
  return -(-num_nets // per_dev), per_dev


def _over_nets(fn, in_axes, vectorize):
  """fn applied over the leading network axis of the arguments whose in_axes is 0.

  vmap: batched (conv weights become grouped convolutions); map: lax.map, one net at a
  time in a loop; unroll: a Python loop inside the traced program (independent copies).
  """
  if vectorize == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def pick(args, batched):
    it = iter(batched)
    return [next(it) if ax == 0 else a for a, ax in zip(args, in_axes)]

  def over(*args):
    batched = [a for a, ax in zip(args, in_axes) if ax == 0]
    if vectorize == "map":
      return jax.lax.map(lambda b: fn(*pick(args, b)), batched)
    num = jax.tree.leaves(batched)[0].shape[0]
    outs = [fn(*pick(args, jax.tree.map(lambda a, j=j: a[j], batched))) for j in range(num)]
    return jax.tree.map(lambda *o: jnp.stack(o), *outs)

  return over


def default_execution() -> tuple[str, str]:
  """(loop, vectorize) for this backend.

  XLA:CPU runs convolution weight-gradients ~100x slower inside while loops (jax#12868;
  measured here: 33 s vs 0.36 s for a 128->128 3x3 conv on 16x16) and grouped (vmapped)
  convolutions ~4x slower than separate ones, so on CPU the passes are driven from the host
  (one jitted call per SGD step for all networks) with the networks unrolled; accelerators
  run everything in one jitted fori_loop with the networks vmapped.
  """
  from jaxcond import backend  # pylint: disable=g-import-not-at-top
  return backend.eval_execution()


@functools.lru_cache(maxsize=32)
def _programs(net: NetFns, settings: EvalSettings, per_net_data: bool, n_dev: int,
              vectorize: str, n_train: int):
  """Jitted init / device-loop train / host-loop steps / test, over the network axis,
  split over a 1-D "nets" mesh with shard_map when n_dev > 1."""
  d = 0 if per_net_data else None
  batch = min(settings.batch_size, n_train)
  rem = n_train % batch
  fns = {
      "init": (jax.vmap(functools.partial(init_state, net)), (0,)),
      "train": (_over_nets(functools.partial(train_passes, net, settings),
                           (0, 0, d, d, None, None), vectorize), (0, 0, d, d, None, None)),
      "step": (_over_nets(lambda st, k, x, y, e, i: train_batch(net, settings, st, k, x, y, e,
                                                                 i, batch),
                          (0, 0, d, d, None, None), vectorize), (0, 0, d, d, None, None)),
      "test": (_over_nets(functools.partial(count_correct, net), (0, None, None, None),
                          vectorize), (0, None, None, None)),
  }
  if rem:
    fns["step_rem"] = (_over_nets(
        lambda st, k, x, y, e, i: train_batch(net, settings, st, k, x, y, e, i, rem),
        (0, 0, d, d, None, None), vectorize), (0, 0, d, d, None, None))
  out = {}
  for name, (fn, axes) in fns.items():
    if n_dev > 1:
      mesh = Mesh(np.asarray(jax.devices()[:n_dev]), (NET_AXIS,))
      specs = tuple(P(NET_AXIS) if a == 0 else P() for a in axes)
      fn = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(NET_AXIS),
                         check_vma=False)
    donate = (0,) if name in ("train", "step", "step_rem") else ()
    out[name] = jax.jit(fn, donate_argnums=donate)
  return out


def net_keys(seed: int, net_ids: Sequence[int]):
  """Per-network base keys: fold_in(step_key(seed, 0, EVAL), i)."""
  base = rng.step_key(seed, 0, rng.EVAL)
  return jnp.stack([jax.random.fold_in(base, int(i)) for i in net_ids])


def _test_batches(x_test, y_test, test_batch_size: int):
  n = x_test.shape[0]
  tb = min(test_batch_size, n)
  nb = -(-n // tb)
  pad = nb * tb - n
  x = np.concatenate([x_test, np.zeros((pad, *x_test.shape[1:]), x_test.dtype)])
  y = np.concatenate([y_test, np.zeros((pad,), y_test.dtype)])
  m = np.arange(nb * tb) < n
  return (x.reshape(nb, tb, *x_test.shape[1:]), y.reshape(nb, tb), m.reshape(nb, tb))


def train_and_test(net: NetFns, x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                   seed: int, net_ids: Sequence[int] | None = None,
                   test_batch_size: int = 500, vectorize: str | None = None,
                   loop: str | None = None, num_devices: int | None = None,
                   return_states: bool = False, progress: Callable[[str], None] | None = None,
                   progress_every_s: float = 30.0) -> dict:
  """Trains the networks `net_ids` (default 0..num_nets-1) and tests them at every checkpoint.

  x_train [n, H, W, ch] is shared by all networks; [num_nets, n, H, W, ch] (with y_train
  [num_nets, n]) gives each network its own set. `loop` ("device" | "host") and `vectorize`
  ("vmap" | "map" | "unroll") default to `default_execution()`; all choices train the same
  networks. Returns {"checkpoint_passes": [...], "checkpoint_accuracies": [[% per net] per
  checkpoint], "wall_seconds", "devices", "loop", "vectorize"[, "states"]}.
  `progress(line)` hears about the passes done every `progress_every_s` seconds.
  """
  d_loop, d_vec = default_execution()
  loop, vectorize = loop or d_loop, vectorize or d_vec
  if vectorize not in VECTORIZE:
    raise ConfigError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")
  if loop not in LOOPS:
    raise ConfigError(f"loop must be one of {LOOPS}, got {loop!r}")
  net_ids = list(range(settings.num_nets)) if net_ids is None else [int(i) for i in net_ids]
  num = len(net_ids)
  per_net_data = np.ndim(x_train) == 5
  n_dev, per_dev = net_layout(num, num_devices)
  padded = n_dev * per_dev
  ids = net_ids + [max(net_ids) + 1 + k for k in range(padded - num)]
  keys = net_keys(seed, ids)
  init_keys = jax.vmap(lambda k: jax.random.fold_in(k, _NET_INIT))(keys)
  train_keys = jax.vmap(lambda k: jax.random.fold_in(k, _NET_TRAIN))(keys)

  x_train = np.asarray(x_train, np.float32)
  y_train = np.asarray(y_train, np.int32)
  if per_net_data and padded > num:
    x_train = np.concatenate([x_train, *[x_train[-1:]] * (padded - num)])
    y_train = np.concatenate([y_train, *[y_train[-1:]] * (padded - num)])
  n_train = x_train.shape[-4]
  xb, yb, mb = _test_batches(np.asarray(x_test, np.float32), np.asarray(y_test, np.int32),
                             test_batch_size)

  if n_dev > 1:
    mesh = Mesh(np.asarray(jax.devices()[:n_dev]), (NET_AXIS,))
    put_nets = functools.partial(jax.device_put, device=NamedSharding(mesh, P(NET_AXIS)))
    put_rep = functools.partial(jax.device_put, device=NamedSharding(mesh, P()))
  else:
    put_nets = put_rep = jnp.asarray
  prog = _programs(net, settings, per_net_data, n_dev, vectorize, n_train)
  data = put_nets if per_net_data else put_rep
  x_dev, y_dev = data(x_train), data(y_train)
  xb, yb, mb = put_rep(xb), put_rep(yb), put_rep(mb)
  batch = min(settings.batch_size, n_train)
  n_full, rem = divmod(n_train, batch)

  clock = time.perf_counter
  start_time = clock()
  states = prog["init"](put_nets(init_keys))
  train_keys = put_nets(train_keys)
  done = 0
  accs = []
  train_s = test_s = 0.0
  first_step_s = None
  last_report = clock()

  def report(passes_done):
    nonlocal last_report
    if progress is None or clock() - last_report < progress_every_s:
      return
    jax.block_until_ready(states)       # dispatch runs ahead: time what has finished
    now = clock()
    last_report = now
    rate = (now - start_time) / max(passes_done, 1)
    progress(f"pass {passes_done}/{settings.passes}  {now - start_time:.0f} s  "
             f"ETA {rate * (settings.passes - passes_done):.0f} s")

  for mark in settings.checkpoint_passes():
    t0 = clock()
    if loop == "device":
      states = prog["train"](states, train_keys, x_dev, y_dev, jnp.int32(done), jnp.int32(mark))
    else:
      for epoch in range(done, mark):
        e = jnp.int32(epoch)
        for i in range(n_full + (rem > 0)):
          fn = prog["step"] if i < n_full else prog["step_rem"]
          states = fn(states, train_keys, x_dev, y_dev, e, jnp.int32(i))
          if first_step_s is None:   # compilation + one step, for throughput reports
            jax.block_until_ready(states)
            first_step_s = clock() - t0
        report(epoch + 1)
    jax.block_until_ready(states)
    t1 = clock()
    train_s += t1 - t0
    done = mark
    correct = np.asarray(prog["test"](states, xb, yb, mb))[:num]
    test_s += clock() - t1
    accs.append((100.0 * correct / x_test.shape[0]).tolist())
    if loop == "device":
      report(mark)
  out = {"checkpoint_passes": list(settings.checkpoint_passes()),
         "checkpoint_accuracies": accs,
         "wall_seconds": clock() - start_time, "train_seconds": train_s,
         "test_seconds": test_s, "first_step_seconds": first_step_s,
         "steps": settings.passes * (n_full + (rem > 0)),
         "devices": n_dev, "loop": loop, "vectorize": vectorize}
  if return_states:
    out["states"] = jax.tree.map(lambda a: np.asarray(a)[:num], states)
  return out


# ---------------------------------------------------------------------------- public API


def _check_arrays(x_train, y_train, x_test, y_test, num_classes: int, num_nets: int):
  x_train, y_train = np.asarray(x_train), np.asarray(y_train)
  x_test, y_test = np.asarray(x_test), np.asarray(y_test)
  per_net = x_train.ndim == 5
  if x_train.ndim not in (4, 5) or x_test.ndim != 4:
    raise DataError(f"evaluate: images must be [N, H, W, ch] (train may be [nets, N, H, W, "
                    f"ch]), got train {x_train.shape} and test {x_test.shape}")
  if x_train.shape[-3:] != x_test.shape[-3:]:
    raise DataError(f"evaluate: train images {x_train.shape[-3:]} and test images "
                    f"{x_test.shape[-3:]} differ in shape")
  if y_train.shape != x_train.shape[:-3] or y_test.shape != x_test.shape[:1]:
    raise DataError(f"evaluate: labels {y_train.shape}/{y_test.shape} do not match images "
                    f"{x_train.shape[:-3]}/{x_test.shape[:1]}")
  if per_net and x_train.shape[0] != num_nets:
    raise DataError(f"evaluate: per-network training sets for {x_train.shape[0]} networks, "
                    f"but num_nets={num_nets}")
  for name, y in (("train", y_train), ("test", y_test)):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise DataError(f"evaluate: {name} labels outside [0, {num_classes})")
  if x_train.shape[-4] == 0 or x_test.shape[0] == 0:
    raise DataError("evaluate: empty training or test set")


def _mean_std(values) -> tuple[float, float]:
  a = np.asarray(values, np.float64)
  return float(a.mean()), float(a.std())


def summarize(run: dict, settings: EvalSettings, model: str, num_train: int,
              measured_on: str = "test") -> dict:
  """The result dict of one architecture (keys documented in docs/evaluate.md).

  measured_on: what x_test was (`test_split_name`), so that accuracies measured on a train
  holdout, and checkpoints selected on it, never read as test numbers."""
  last = run["checkpoint_accuracies"][-1]
  mean, std = _mean_std(last)
  res = {
      "accuracies": last, "mean": mean, "std": std,
      "protocol": settings.protocol, "model": model, "num_nets": len(last),
      "accuracy_unit": "percent", "selection": "last epoch",
      "checkpoint_passes": run["checkpoint_passes"],
      "checkpoint_accuracies": run["checkpoint_accuracies"],
      "train_images_per_net": num_train, "passes": settings.passes,
      "steps_per_pass": steps_per_pass(num_train, settings.batch_size),
      "wall_seconds": run["wall_seconds"], "train_seconds": run.get("train_seconds"),
      "test_seconds": run.get("test_seconds"),
      "first_step_seconds": run.get("first_step_seconds"), "devices": run["devices"],
      "loop": run["loop"], "vectorize": run["vectorize"], "measured_on": measured_on,
  }
  if settings.protocol == "idc":
    best = np.max(np.asarray(run["checkpoint_accuracies"]), axis=0).tolist()
    res["best_accuracies"] = best
    res["best_mean"], res["best_std"] = _mean_std(best)
    passes = run["checkpoint_passes"]
    res["best_selection"] = (
        f"max over test checkpoints after passes {passes}: selected on the test set"
        if measured_on == "test" else
        f"max over checkpoints after passes {passes}: selected on {measured_on}")
  return res


def evaluate_arrays(x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                    num_classes: int, seed: int, model: str | None = None,
                    net: NetFns | None = None, test_batch_size: int = 500,
                    vectorize: str | None = None, loop: str | None = None,
                    progress: Callable[[str], None] | None = None,
                    measured_on: str = "test") -> dict:
  """Trains settings.num_nets fresh `model` nets (default settings.model) on (x_train,
  y_train) under `settings.protocol` and tests them on (x_test, y_test).

  Images are float32 normalised NHWC; labels int32. x_train may carry a leading network axis
  (one training set per network). Returns dict(accuracies, mean, std, protocol, model,
  num_nets, ...; idc adds best_accuracies, best_mean, best_std, best_selection).
  """
  _check_arrays(x_train, y_train, x_test, y_test, num_classes, settings.num_nets)
  model = (model or settings.model).lower()
  if net is None:
    net = registry_net(model, num_classes=num_classes,
                       image_shape=tuple(int(s) for s in np.shape(x_test)[1:]))
  run = train_and_test(net, x_train, y_train, x_test, y_test, settings=settings, seed=seed,
                       test_batch_size=test_batch_size, vectorize=vectorize, loop=loop,
                       progress=progress)
  return summarize(run, settings, model, int(np.shape(x_train)[-4]), measured_on)


def evaluate_pool(x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                  num_classes: int, seed: int, log: Callable | None = None,
                  **kwargs) -> dict[str, dict]:
  """evaluate_arrays for every architecture of settings.pool (same seeds); {model: result}.
  `log` hears progress lines and, for a pool of several models, each model's summary."""
  out = {}
  for name in settings.pool:
    out[name] = evaluate_arrays(
        x_train, y_train, x_test, y_test, settings=settings, num_classes=num_classes,
        seed=seed, model=name, progress=(lambda s, n=name: log(f"{n}: {s}")) if log else None,
        **kwargs)
    if log and len(settings.pool) > 1:
      log(summary_line(out[name]))
  return out


def summary_line(res: dict, source: str = "") -> str:
  where = res.get("measured_on", "test")
  s = (f"{res['protocol']} {res['model']} x{res['num_nets']}"
       f"{' on ' + source if source else ''}: {res['mean']:.2f} ± {res['std']:.2f} % (last)")
  if "best_mean" in res:
    s += f", best {res['best_mean']:.2f} ± {res['best_std']:.2f} % (selected on {where}"
    s += " set)" if where == "test" else ")"
  if where != "test":
    s += f" [measured on {where}]"
  return s + f" [{res['wall_seconds']:.0f} s]"


def pool_table(results: dict[str, dict]) -> str:
  """Markdown table of a cross-architecture run."""
  where = next(iter(results.values())).get("measured_on", "test")
  rows = [f"| model | protocol | nets | last acc (%) | best acc (%, selected on {where}) "
          "| wall (s) |", "|---|---|---|---|---|---|"]
  for name, r in results.items():
    best = f"{r['best_mean']:.2f} ± {r['best_std']:.2f}" if "best_mean" in r else "–"
    rows.append(f"| {name} | {r['protocol']} | {r['num_nets']} | {r['mean']:.2f} ± "
                f"{r['std']:.2f} | {best} | {r['wall_seconds']:.0f} |")
  return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------- files


def load_synthetic(path, *, num_classes: int, image_shape: Sequence[int],
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   dataset: str | None = None) -> dict:
  """Reads and checks a synthetic.npz (docs/design.md): returns dict(x, y, decoded, meta).

  Uses x_decoded / y_decoded when present. DataError (one line, naming the file) when the
  file is missing or unreadable, a key is missing, shapes or labels do not fit the dataset,
  or its normalisation / dataset name differs from the config's.
  """
  p = pathlib.Path(path)
  if not p.is_file():
    raise DataError(f"{p}: synthetic set not found")
  try:
    with np.load(p, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except Exception as err:  # zipfile / pickle / value errors of a corrupt file
    raise DataError(f"{p}: not a readable .npz ({type(err).__name__}: {err})") from None
  for k in ("x", "y"):
    if k not in arrays:
      raise DataError(f"{p}: missing array {k!r} (has {sorted(arrays)})")
  decoded = "x_decoded" in arrays
  if decoded and "y_decoded" not in arrays:
    raise DataError(f"{p}: has 'x_decoded' but no 'y_decoded'")
  x = arrays["x_decoded"] if decoded else arrays["x"]
  y = arrays["y_decoded"] if decoded else arrays["y"]
  xname = "x_decoded" if decoded else "x"
  image_shape = tuple(int(s) for s in image_shape)
  if x.ndim != 4 or tuple(x.shape[1:]) != image_shape:
    raise DataError(f"{p}: {xname} has shape {x.shape}, expected [N, *{image_shape}] for "
                    f"this dataset")
  if y.ndim != 1 or y.shape[0] != x.shape[0]:
    raise DataError(f"{p}: labels shape {y.shape} does not match {xname} {x.shape}")
  if not np.issubdtype(y.dtype, np.integer):
    raise DataError(f"{p}: labels must be integers, got {y.dtype}")
  if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
    raise DataError(f"{p}: {xname} must be finite floats")
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise DataError(f"{p}: labels span [{y.min()}, {y.max()}], outside the dataset's "
                    f"{num_classes} classes")
  missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
  if missing:
    raise DataError(f"{p}: no images for class(es) {missing[:10]} of {num_classes}")
  for key, ref in (("mean", mean), ("std", std)):
    if ref is not None and key in arrays:
      got = np.asarray(arrays[key], np.float64).reshape(-1)
      if got.shape != (len(ref),) or not np.allclose(got, ref, atol=1e-4):
        raise DataError(f"{p}: normalisation {key} {got.tolist()} differs from the dataset's "
                        f"{list(ref)} (set made for another dataset?)")
  if dataset is not None and "dataset" in arrays:
    got = str(arrays["dataset"])
    if got and _canonical(got) != _canonical(dataset):
      raise DataError(f"{p}: made for dataset {got!r}, config says {dataset!r}")
  meta = {k: (arrays[k].item() if arrays[k].ndim == 0 else arrays[k].tolist())
          for k in ("factor", "space", "method", "dataset") if k in arrays}
  return {"x": x.astype(np.float32), "y": y.astype(np.int32), "decoded": decoded,
          "stored_images": int(arrays["x"].shape[0]), "meta": meta}


def versions() -> dict:
  import flax
  import jaxlib
  import jaxcond
  import optax
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "numpy": np.__version__, "jaxcond": jaxcond.__version__,
          "python": sys.version.split()[0], "backend": jax.default_backend()}


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating,)):
    return float(obj)
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if obj is None or isinstance(obj, (str, int, float, bool)):
    return obj
  return str(obj)


def write_results(workdir, record: dict) -> pathlib.Path:
  out = pathlib.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  path = out / "results.json"
  tmp = out / "results.json.tmp"
  tmp.write_text(json.dumps(_jsonable(record), indent=2, sort_keys=False) + "\n")
  os.replace(tmp, path)
  return path


# ---------------------------------------------------------------------------- entry point


def _cfg_get(cfg, dotted: str, default=None):
  cur = cfg
  for part in dotted.split("."):
    if cur is None:
      return default
    try:
      cur = cur[part] if isinstance(cur, dict) else getattr(cur, part)
    except (KeyError, AttributeError):
      return default
  return default if cur is None else cur


def _dataset_fields(config):
  name = _cfg_get(config, "dataset.name") or _cfg_get(config, "data.name")
  if not name:
    raise ConfigError("dataset.name: missing from the config")
  section = "dataset" if _cfg_get(config, "dataset.name") else "data"
  res = _cfg_get(config, f"{section}.resolution", 0) or None
  return dict(name=name, source=_cfg_get(config, f"{section}.source", "auto") or "auto",
              path=_cfg_get(config, f"{section}.path", "") or None, resolution=res,
              holdout=int(_cfg_get(config, f"{section}.holdout", 0)))


def test_split_name(holdout: int) -> str:
  """What the accuracies were measured on, for results files and summary lines."""
  return f"train holdout ({holdout}/class)" if holdout else "test"


def _default_loader(ds: dict):
  from jaxcond import data

  def load(split):
    return data.load_split(ds["name"], split, source=ds["source"], path=ds["path"],
                           resolution=ds["resolution"], holdout=ds["holdout"])
  return load


def _normalize(images, mean, std):
  x = np.asarray(images, np.float32) / 255.0
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def run(config, *, workdir, synthetic: str | None = None, baseline: str | None = None,
        models: Sequence[str] | str | None = None, feature_net: str = "convnet",
        test_batch_size: int = 500, vectorize: str | None = None, loop: str | None = None,
        loader: Callable | None = None,
        info=None, log: Callable = print, command: str | None = None) -> dict:
  """`python -m jaxcond.evaluate` as a function: evaluates a synthetic.npz or a baseline
  under config.eval and writes workdir/results.json; returns the record.

  loader(split) -> (uint8 images, int labels) and info (DatasetInfo) default to jaxcond.data
  (tests inject small fakes).
  """
  from jaxcond import baselines
  if (synthetic is None) == (baseline is None):
    raise ConfigError("give exactly one of --synthetic PATH or --baseline "
                      f"{'|'.join(baselines.BASELINES)}")
  if baseline is not None and baseline not in baselines.BASELINES:
    raise ConfigError(f"--baseline {baseline!r} unknown (known: {', '.join(baselines.BASELINES)})")
  ds = _dataset_fields(config)
  if info is None:
    from jaxcond.data import registry
    info = registry.get_info(ds["name"], resolution=ds["resolution"])
  settings = EvalSettings.from_config(_cfg_get(config, "eval"), dataset=ds["name"])
  if models:
    settings = dataclasses.replace(settings, models=_model_tuple(models))
  from jaxcond import nets
  for name in settings.pool + ((feature_net,) if baseline in ("herding", "kcenter") else ()):
    if name not in nets.MODEL_NAMES:
      raise ConfigError(f"eval.models: unknown model {name!r}; valid names: "
                        f"{', '.join(nets.MODEL_NAMES)}")
  num_classes = int(info.num_classes)
  image_shape = tuple(int(s) for s in info.image_shape)
  ipc = _cfg_get(config, "ipc")
  load = loader or _default_loader(ds)

  if synthetic is not None:
    syn = load_synthetic(synthetic, num_classes=num_classes, image_shape=image_shape,
                         mean=info.mean, std=info.std, dataset=ds["name"])
    x_train, y_train = syn["x"], syn["y"]
    source = {"kind": "synthetic", "path": str(synthetic), "decoded": syn["decoded"],
              "stored_images": syn["stored_images"], **syn["meta"]}
  else:
    if ipc is None:
      raise ConfigError("ipc: missing from the config (needed for --baseline)")
    real_x, real_y = load("train")
    real_x = _normalize(real_x, info.mean, info.std)
    real_y = np.asarray(real_y, np.int32)
    base = rng.step_key(settings.seed, 0, rng.EVAL)
    if baseline == "random":
      subsets = [baselines.select("random", real_y, num_classes, ipc,
                                  key=jax.random.fold_in(
                                      jax.random.fold_in(base, _BASELINE_SUBSET), i))
                 for i in range(settings.num_nets)]
      x_train = np.stack([real_x[s] for s in subsets])
      y_train = np.stack([real_y[s] for s in subsets])
      picked = [s.tolist() for s in subsets]
    else:
      fkey = jax.random.fold_in(base, _BASELINE_FEATURES)
      log(f"baseline {baseline}: embedding {real_x.shape[0]} training images with a random "
          f"{feature_net}")
      feats = baselines.random_net_features(feature_net, fkey, real_x, num_classes=num_classes)
      idx = baselines.select(baseline, real_y, num_classes, ipc, key=fkey, features=feats)
      x_train, y_train = real_x[idx], real_y[idx]
      picked = idx.tolist()
    source = {"kind": "baseline", "baseline": baseline, "ipc": int(ipc),
              "per_net_subsets": baseline == "random",
              "feature_net": None if baseline == "random" else feature_net,
              "indices": picked}

  test_x, test_y = load("test")
  x_test = _normalize(test_x, info.mean, info.std)
  y_test = np.asarray(test_y, np.int32)
  label = (pathlib.Path(synthetic).name if synthetic else f"{baseline} baseline")
  results = evaluate_pool(x_train, y_train, x_test, y_test, settings=settings,
                          num_classes=num_classes, seed=settings.seed,
                          test_batch_size=test_batch_size, vectorize=vectorize, loop=loop,
                          log=lambda s: log(f"  {s}"),
                          measured_on=test_split_name(ds["holdout"]))
  first = results[settings.pool[0]]
  record = {
      "accuracies": first["accuracies"], "mean": first["mean"], "std": first["std"],
      "protocol": settings.protocol, "architecture": first["model"],
      "num_nets": first["num_nets"], "accuracy_unit": "percent",
      "selection": first["selection"],
      **{k: first[k] for k in ("best_accuracies", "best_mean", "best_std", "best_selection")
         if k in first},
      "dataset": info.name, "ipc": ipc, "source": source,
      "measured_on": first["measured_on"], "num_test": int(len(y_test)),
      "settings": settings.to_dict(), "results": results,
      "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
      "versions": versions(), "command": command,
  }
  path = write_results(workdir, record)
  if len(results) > 1:
    table = pool_table(results)
    (pathlib.Path(workdir) / "cross_arch.md").write_text(table)
    log(table)
  log(f"evaluate: {summary_line(first, label)} -> {path}")
  return record


def main(argv: Sequence[str] | None = None) -> int:
  """CLI; returns the exit status (2 with a one-line message on bad input)."""
  from absl import flags
  from ml_collections import config_flags
  argv = list(sys.argv if argv is None else argv)
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "experiments/<file>.py[:arg]",
                                  flag_values=fv, lock_config=True)
  flags.DEFINE_string("workdir", None, "output folder (results.json)", flag_values=fv)
  flags.DEFINE_string("synthetic", None, "synthetic.npz to evaluate", flag_values=fv)
  flags.DEFINE_enum("baseline", None, ["random", "herding", "kcenter"],
                    "coreset baseline instead of a synthetic set", flag_values=fv)
  flags.DEFINE_list("models", None, "architecture pool (overrides config.eval.models)",
                    flag_values=fv)
  flags.DEFINE_string("feature_net", "convnet", "random net whose features herding/kcenter use",
                      flag_values=fv)
  flags.DEFINE_integer("test_batch_size", 500, "test images per forward pass", flag_values=fv)
  flags.DEFINE_enum("vectorize", None, list(VECTORIZE),
                    "networks on one device: vmap | map | unroll (default: per backend)",
                    flag_values=fv)
  flags.DEFINE_enum("loop", None, list(LOOPS),
                    "training loop: device (fori_loop in jit) | host (default: per backend)",
                    flag_values=fv)
  try:
    fv(argv)
  except flags.Error as err:
    print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  except Exception as err:  # config file import errors surface here as various types
    print(f"error: --config: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
          file=sys.stderr)
    return 2
  if fv.config is None:
    print("error: --config is required", file=sys.stderr)
    return 2
  if not fv.workdir:
    print("error: --workdir is required", file=sys.stderr)
    return 2
  try:
    run(fv.config, workdir=fv.workdir, synthetic=fv.synthetic, baseline=fv.baseline,
        models=fv.models, feature_net=fv.feature_net, test_batch_size=fv.test_batch_size,
        vectorize=fv.vectorize, loop=fv.loop, log=functools.partial(print, flush=True),
        command=" ".join(["python -m jaxcond.evaluate", *argv[1:]]))
  except JaxcondError as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

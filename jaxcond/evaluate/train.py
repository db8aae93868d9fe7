"""Training primitives of evaluation: networks as pure functions, torch-style SGD and
AdamW, cross-entropy, IDC CutMix (arXiv 2205.14959), one step / one pass / passes of one
network, and rematerialisation of a network's residual blocks.

Everything here is for ONE network; `execution` runs many networks together. `shard`
(optional, every step function) constrains the batch the step gathers to the mesh's data
axis: under `jit` the batch axis stays logical, so the maths is the one-device maths and
XLA inserts the reductions (the loss mean, BatchNorm's batch statistics, the gradient).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxcond import augment, nets
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.nets.resnet import BasicBlock

# Modules whose __call__ `remat_blocks` checkpoints: the residual blocks of jaxcond.nets.
REMAT_BLOCKS = (BasicBlock,)
ADAM_B2, ADAM_EPS = 0.999, 1e-8      # torch.optim.AdamW defaults (NCFM passes neither)
_IN_REMAT = contextvars.ContextVar("jaxcond_eval_in_remat", default=False)


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
  image_shape = tuple(int(s) for s in image_shape)
  model = nets.get_model(name, num_classes=num_classes, image_shape=image_shape)

  def init(key):
    return nets.init_variables(model, key, image_shape)

  def apply(variables, x, train):
    return nets.logits(model, variables, x, train=train)

  return NetFns(init, apply)


@contextlib.contextmanager
def remat_blocks(skip: int = 0):
  """While active, every residual block (`REMAT_BLOCKS`) a flax module calls runs under
  `nn.remat` (`jax.checkpoint`): the forward keeps only each block's input, the backward
  recomputes the block's activations. Same values (tested); less memory for one more
  forward. `skip` leaves the first `skip` blocks as they are (the planner measures the
  recomputation peak with it). A flax method interceptor, so no net is edited."""
  seen = [0]

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name != "__call__" or not isinstance(module, REMAT_BLOCKS)
        or _IN_REMAT.get() or module.is_initializing()):
      return next_fun(*args, **kwargs)
    seen[0] += 1
    if seen[0] <= skip:
      return next_fun(*args, **kwargs)

    def body(mdl, *a):
      token = _IN_REMAT.set(True)     # the block's own call goes through the interceptor
      try:
        return mdl(*a, **kwargs)
      finally:
        _IN_REMAT.reset(token)

    return nn.remat(body)(module, *args)

  with nn.intercept_methods(interceptor):
    yield


@functools.lru_cache(maxsize=64)
def remat_net(net: NetFns) -> NetFns:
  """`net` with its residual blocks rematerialised in training (`remat_blocks`)."""
  def apply(variables, x, train):
    if not train:
      return net.apply(variables, x, train)
    with remat_blocks():
      return net.apply(variables, x, train)

  return NetFns(net.init, apply)


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


def adamw(settings: EvalSettings) -> optax.GradientTransformation:
  """torch.optim.AdamW as `optax.adamw` at learning rate 1: the update it returns is
  −(m̂ / (sqrt(v̂) + eps) + wd·p), which `adamw_update` scales by the pass's LR, so
  p ← p − lr·wd·p − lr·m̂ / (sqrt(v̂) + eps), torch's step (decay decoupled, on every
  parameter). beta1 is `settings.momentum`, beta2 0.999, eps 1e-8 (torch's defaults)."""
  return optax.adamw(learning_rate=1.0, b1=settings.momentum, b2=ADAM_B2, eps=ADAM_EPS,
                     weight_decay=settings.weight_decay)


def adamw_update(settings: EvalSettings, params, opt_state, grads, *, lr):
  """One torch AdamW step at learning rate `lr`; returns (params, opt_state)."""
  updates, opt_state = adamw(settings).update(grads, opt_state, params)
  return jax.tree.map(lambda p, u: p + lr * u, params, updates), opt_state


def init_state(net: NetFns, key, optimizer: str = "sgd") -> dict:
  """{"params", "momentum" (zeros; sgd) or "opt" (optax AdamW state: step count and both
  moments at zero; adamw), ["batch_stats"]} for one network."""
  variables = net.init(key)
  state = {"params": variables["params"]}
  if optimizer == "adamw":    # the state's structure does not depend on the hyperparameters
    state["opt"] = optax.adamw(learning_rate=1.0).init(variables["params"])
  else:
    state["momentum"] = jax.tree.map(jnp.zeros_like, variables["params"])
  if "batch_stats" in variables:
    state["batch_stats"] = variables["batch_stats"]
  return state


def _variables(state):
  v = {"params": state["params"]}
  if "batch_stats" in state:
    v["batch_stats"] = state["batch_stats"]
  return v


def loss_and_grads(net: NetFns, settings: EvalSettings, state, xb, yb, key, shard=None):
  """(loss, new batch_stats or None, gradients) of one step's batch: [shard] -> DSA (per
  sample) -> [CutMix] -> cross-entropy, the gradient w.r.t. the parameters."""
  if shard is not None:
    xb, yb = shard(xb), shard(yb)
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

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
  return loss, new_stats, grads


def train_step(net: NetFns, settings: EvalSettings, state, xb, yb, key, lr, shard=None):
  """One step on one batch (`loss_and_grads`), then torch SGD (or AdamW under ncfm)."""
  _, new_stats, grads = loss_and_grads(net, settings, state, xb, yb, key, shard)
  if "opt" in state:
    params, opt = adamw_update(settings, state["params"], state["opt"], grads, lr=lr)
    new_state = {**state, "params": params, "opt": opt}
  else:
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
  if "momentum" not in state:           # AdamW (ncfm): the optimiser is never re-created
    return state
  return {**state, "momentum": jax.tree.map(
      lambda b: jnp.where(reset, jnp.zeros_like(b), b), state["momentum"])}


def train_pass(net: NetFns, settings: EvalSettings, state, x, y, key, epoch, *,
               n: int | None = None, shard=None):
  """One shuffled pass over (x, y): full batches under `lax.scan`, then the partial last
  batch at its own size (torch DataLoader, drop_last=False), so BN statistics are exact.
  `n`: the real images (x may carry padding rows after them, never drawn)."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0] if n is None else int(n)
  batch = min(settings.batch_size, n)
  n_full, rem = divmod(n, batch)
  lr = settings.lr_at(epoch)
  state = _maybe_reset(settings, state, settings.resets_momentum_at(epoch))
  perm, k_step = _pass_order(key, epoch, n)

  def body(st, inp):
    i, idx = inp
    return train_step(net, settings, st, x[idx], y[idx], jax.random.fold_in(k_step, i), lr,
                      shard), None

  if n_full:
    idx = perm[:n_full * batch].reshape(n_full, batch)
    state, _ = jax.lax.scan(body, state, (jnp.arange(n_full), idx))
  if rem:
    idx = perm[n_full * batch:]
    state = train_step(net, settings, state, x[idx], y[idx],
                       jax.random.fold_in(k_step, n_full), lr, shard)
  return state


def train_passes(net: NetFns, settings: EvalSettings, state, key, x, y, start, stop, *,
                 n: int | None = None, shard=None):
  """Passes [start, stop) of one network (fori_loop; start/stop may be traced)."""
  return jax.lax.fori_loop(
      start, stop,
      lambda e, st: train_pass(net, settings, st, x, y, key, e, n=n, shard=shard), state)


def batch_at(settings: EvalSettings, key, x, y, epoch, i, size: int, n: int | None = None):
  """(images, labels, step key) of step i of pass `epoch` (what `train_pass` draws)."""
  x, y = jnp.asarray(x), jnp.asarray(y)
  n = x.shape[0] if n is None else int(n)
  batch = min(settings.batch_size, n)
  perm, k_step = _pass_order(key, epoch, n)
  idx = jax.lax.dynamic_slice(perm, (i * batch,), (size,))
  return x[idx], y[idx], jax.random.fold_in(k_step, i)


def train_batch(net: NetFns, settings: EvalSettings, state, key, x, y, epoch, i, size: int, *,
                n: int | None = None, shard=None):
  """Step i of pass `epoch` alone (host loop): the same batch, key, LR and momentum reset as
  step i of `train_pass`, so both loops give the same networks."""
  xb, yb, k = batch_at(settings, key, x, y, epoch, i, size, n)
  state = _maybe_reset(settings, state,
                       jnp.logical_and(settings.resets_momentum_at(epoch), i == 0))
  return train_step(net, settings, state, xb, yb, k, settings.lr_at(epoch), shard)


def count_correct(net: NetFns, state, xb, yb, mb):
  """Correct predictions (eval mode: BN running stats) over test batches [nb, tb, ...]."""
  variables = _variables(state)

  def one(args):
    x, y, m = args
    out, _ = net.apply(variables, x, False)
    return jnp.sum((jnp.argmax(out, -1) == y) & m)

  return jnp.sum(jax.lax.map(one, (xb, yb, mb)))

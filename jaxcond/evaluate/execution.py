"""Running the N networks of one evaluation together (docs/evaluate.md, "Execution").

The networks (different seeds) train in jitted programs over a leading network axis. On
accelerators (loop="device", vectorize="vmap") training runs as `vmap` over the networks,
`lax.scan` over the batches of a pass and `lax.fori_loop` over passes, in segments of a few
passes so that progress is printed on every backend. XLA:CPU runs convolution weight
gradients ~100x slower inside loops (jax#12868) and vmapped (grouped) convolutions several
times slower, so on CPU the default is loop="host" (one jitted call per SGD step, all
networks in it) with vectorize="unroll". The choice is `backend.eval_execution()`. With
several devices the network axis is split over a 1-D mesh ("nets") with `jax.shard_map`;
networks are padded to a multiple of the devices used and the padding is dropped.
Net i always draws from `fold_in(fold_in(step_key(seed, 0, EVAL), i), ...)`, so results do
not depend on N, the device count, the loop or the vectorisation (tested).
"""
from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcond import rng
from jaxcond.errors import ConfigError
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.evaluate.train import (NetFns, count_correct, init_state, train_batch,
                                    train_passes)

NET_AXIS = "nets"
VECTORIZE = ("vmap", "map", "unroll")
LOOPS = ("device", "host")
PROGRESS_SEGMENTS = 10      # device loop: at least this many progress points per training

# Key purposes folded into a network's key (fixed integers, never reordered).
_NET_INIT = 0
_NET_TRAIN = 1


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


def progress_line(passes_done: int, passes: int, elapsed_s: float) -> str:
  """`pass 120/1001  12.0s  ETA 1m28s`: the one progress style of evaluation (plain lines)."""
  from jaxcond.report import format_duration  # pylint: disable=g-import-not-at-top
  rate = elapsed_s / max(passes_done, 1)
  return (f"pass {passes_done}/{passes}  {format_duration(elapsed_s)}  "
          f"ETA {format_duration(rate * (passes - passes_done))}")


def train_and_test(net: NetFns, x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                   seed: int, net_ids: Sequence[int] | None = None,
                   test_batch_size: int = 500, vectorize: str | None = None,
                   loop: str | None = None, num_devices: int | None = None,
                   return_states: bool = False, progress: Callable[[str], None] | None = None,
                   progress_every_s: float = 10.0) -> dict:
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
    progress(progress_line(passes_done, settings.passes, now - start_time))

  seg = max(1, -(-settings.passes // PROGRESS_SEGMENTS))
  for mark in settings.checkpoint_passes():
    t0 = clock()
    if loop == "device":
      # Segments of `seg` passes (one compiled program, traced bounds), so that a long
      # training on an accelerator reports progress like the host loop does.
      while done < mark:
        stop = min(mark, (done // seg + 1) * seg)
        states = prog["train"](states, train_keys, x_dev, y_dev, jnp.int32(done),
                               jnp.int32(stop))
        if first_step_s is None:
          jax.block_until_ready(states)
          first_step_s = clock() - t0
        done = stop
        report(done)
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
  out = {"checkpoint_passes": list(settings.checkpoint_passes()),
         "checkpoint_accuracies": accs,
         "wall_seconds": clock() - start_time, "train_seconds": train_s,
         "test_seconds": test_s, "first_step_seconds": first_step_s,
         "steps": settings.passes * (n_full + (rem > 0)),
         "devices": n_dev, "loop": loop, "vectorize": vectorize}
  if return_states:
    out["states"] = jax.tree.map(lambda a: np.asarray(a)[:num], states)
  return out

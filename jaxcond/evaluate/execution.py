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

import dataclasses
import functools
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxcond import backend, rng
from jaxcond import progress as progress_lib   # `progress` is train_and_test's callback
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


def _execution(loop: str | None, vectorize: str | None) -> tuple[str, str]:
  """(loop, vectorize): the given ones, else `default_execution()`'s; checked."""
  d_loop, d_vec = default_execution()
  loop, vectorize = loop or d_loop, vectorize or d_vec
  if vectorize not in VECTORIZE:
    raise ConfigError(f"vectorize must be one of {VECTORIZE}, got {vectorize!r}")
  if loop not in LOOPS:
    raise ConfigError(f"loop must be one of {LOOPS}, got {loop!r}")
  return loop, vectorize


def _init_and_train_keys(seed: int, net_ids: list[int], padded: int):
  """Per-network (init keys, training keys); padding networks get the ids after the last."""
  ids = net_ids + [max(net_ids) + 1 + k for k in range(padded - len(net_ids))]
  keys = net_keys(seed, ids)
  return (jax.vmap(lambda k: jax.random.fold_in(k, _NET_INIT))(keys),
          jax.vmap(lambda k: jax.random.fold_in(k, _NET_TRAIN))(keys))


def _training_arrays(x_train, y_train, per_net_data: bool, extra: int):
  """float32 images, int32 labels; per-network sets padded with copies of the last one."""
  x_train = np.asarray(x_train, np.float32)
  y_train = np.asarray(y_train, np.int32)
  if per_net_data and extra > 0:
    x_train = np.concatenate([x_train, *[x_train[-1:]] * extra])
    y_train = np.concatenate([y_train, *[y_train[-1:]] * extra])
  return x_train, y_train


def _placement(n_dev: int):
  """(put split over the network axis, put replicated) for `n_dev` devices."""
  if n_dev > 1:
    mesh = Mesh(np.asarray(jax.devices()[:n_dev]), (NET_AXIS,))
    put_nets = functools.partial(jax.device_put, device=NamedSharding(mesh, P(NET_AXIS)))
    put_rep = functools.partial(jax.device_put, device=NamedSharding(mesh, P()))
    return put_nets, put_rep
  return jnp.asarray, jnp.asarray


@dataclasses.dataclass
class _Timing:
  """Timings of one training and its rate-limited progress lines (`progress.passes_line`)."""
  log: Callable[[str], None] | None
  every_s: float
  passes: int
  clock: Callable[[], float] = time.perf_counter
  start: float = 0.0
  last: float = 0.0
  first_step_s: float | None = None

  def first_step(self, states, t0: float) -> None:
    """Compilation + one step (once), for throughput reports."""
    if self.first_step_s is None:
      jax.block_until_ready(states)
      self.first_step_s = self.clock() - t0

  def report(self, passes_done: int, states) -> None:
    if self.log is None or self.clock() - self.last < self.every_s:
      return
    jax.block_until_ready(states)       # dispatch runs ahead: time what has finished
    now = self.clock()
    self.last = now
    self.log(progress_lib.passes_line(passes_done, self.passes, now - self.start))


def _train_device(prog, states, keys, x, y, done: int, mark: int, seg: int,
                  timing: _Timing, t0: float):
  """Passes [done, mark) in segments of `seg` passes (one compiled program, traced bounds),
  so that a long training on an accelerator reports progress like the host loop does."""
  while done < mark:
    stop = min(mark, (done // seg + 1) * seg)
    states = prog["train"](states, keys, x, y, jnp.int32(done), jnp.int32(stop))
    timing.first_step(states, t0)
    done = stop
    timing.report(done, states)
  return states


def _train_host(prog, states, keys, x, y, done: int, mark: int, n_full: int, rem: int,
                timing: _Timing, t0: float):
  """Passes [done, mark), one jitted call per SGD step (all networks in it)."""
  for epoch in range(done, mark):
    e = jnp.int32(epoch)
    for i in range(n_full + (rem > 0)):
      fn = prog["step"] if i < n_full else prog["step_rem"]
      states = fn(states, keys, x, y, e, jnp.int32(i))
      timing.first_step(states, t0)
    timing.report(epoch + 1, states)
  return states


def _train_and_score(loop: str, prog, states, keys, x, y, tests, settings: EvalSettings,
                     n_train: int, num: int, num_test: int, timing: _Timing):
  """Trains to every checkpoint and tests there: (states, [% per net] per checkpoint,
  training seconds, testing seconds)."""
  batch = min(settings.batch_size, n_train)
  n_full, rem = divmod(n_train, batch)
  seg = max(1, -(-settings.passes // PROGRESS_SEGMENTS))
  done, accs, train_s, test_s = 0, [], 0.0, 0.0
  for mark in settings.checkpoint_passes():
    t0 = timing.clock()
    if loop == "device":
      states = _train_device(prog, states, keys, x, y, done, mark, seg, timing, t0)
    else:
      states = _train_host(prog, states, keys, x, y, done, mark, n_full, rem, timing, t0)
    jax.block_until_ready(states)
    t1 = timing.clock()
    train_s += t1 - t0
    done = mark
    correct = np.asarray(prog["test"](states, *tests))[:num]
    test_s += timing.clock() - t1
    accs.append((100.0 * correct / num_test).tolist())
  return states, accs, train_s, test_s


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
  loop, vectorize = _execution(loop, vectorize)
  net_ids = list(range(settings.num_nets)) if net_ids is None else [int(i) for i in net_ids]
  num = len(net_ids)
  per_net_data = np.ndim(x_train) == 5
  n_dev, per_dev = net_layout(num, num_devices)
  init_keys, train_keys = _init_and_train_keys(seed, net_ids, n_dev * per_dev)
  x_train, y_train = _training_arrays(x_train, y_train, per_net_data, n_dev * per_dev - num)
  n_train = x_train.shape[-4]
  tests = _test_batches(np.asarray(x_test, np.float32), np.asarray(y_test, np.int32),
                        test_batch_size)
  put_nets, put_rep = _placement(n_dev)
  prog = _programs(net, settings, per_net_data, n_dev, vectorize, n_train)
  data = put_nets if per_net_data else put_rep
  x_dev, y_dev = data(x_train), data(y_train)
  tests = tuple(put_rep(a) for a in tests)

  timing = _Timing(progress, progress_every_s, settings.passes)
  timing.start = timing.clock()
  states = prog["init"](put_nets(init_keys))
  train_keys = put_nets(train_keys)
  timing.last = timing.clock()
  states, accs, train_s, test_s = _train_and_score(
      loop, prog, states, train_keys, x_dev, y_dev, tests, settings, n_train, num,
      x_test.shape[0], timing)
  batch = min(settings.batch_size, n_train)
  out = {"checkpoint_passes": list(settings.checkpoint_passes()),
         "checkpoint_accuracies": accs,
         "wall_seconds": timing.clock() - timing.start, "train_seconds": train_s,
         "test_seconds": test_s, "first_step_seconds": timing.first_step_s,
         "steps": settings.passes * -(-n_train // batch),
         "devices": n_dev, "loop": loop, "vectorize": vectorize}
  if return_states:
    out["states"] = jax.tree.map(lambda a: np.asarray(a)[:num], states)
  return out

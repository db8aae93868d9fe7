"""Running the N networks of one evaluation together (docs/evaluate.md, "Execution").

The networks (different seeds) train in jitted programs over a leading network axis. On
accelerators (loop="device", vectorize="vmap") training runs as `vmap` over the networks,
`lax.scan` over the batches of a pass and `lax.fori_loop` over passes, in segments of a few
passes so that progress is printed on every backend. XLA:CPU runs convolution weight
gradients ~100x slower inside loops (jax#12868) and vmapped (grouped) convolutions several
times slower, so on CPU the default is loop="host" (one jitted call per SGD step, all
networks in it) with vectorize="unroll". The choice is `backend.eval_execution()`.

Devices: a 2-D mesh ("nets", "data") of `Layout.nets` × `Layout.data` devices. The network
axis is split over "nets" (networks padded to a multiple of it, the padding dropped). With
data = 1 that is `jax.shard_map`, each device training its own networks. With data > 1 the
programs are `jit` with `NamedSharding`s: the training set is sharded over "data" (each
host holds its shard), every step's batch is constrained to P("data"), the batch axis stays
logical, and XLA inserts the reductions: the loss mean, the gradient, and BatchNorm's batch
statistics, which are therefore those of the protocol's whole batch (global, as on one
device), not per device. The result is the one-device maths up to float rounding (tested).
Net i always draws from `fold_in(fold_in(step_key(seed, 0, EVAL), i), ...)`, so results do
not depend on N, the layout, the loop or the vectorisation (tested).
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

from jaxcond import backend, parallel, rng, synthetic_io
from jaxcond import progress as progress_lib   # `progress` is train_and_test's callback
from jaxcond.errors import ConfigError
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.evaluate.train import (NetFns, count_correct, init_state, remat_net, train_batch,
                                    train_passes)

NET_AXIS = "nets"
DATA_AXIS = "data"
VECTORIZE = ("vmap", "map", "unroll")
LOOPS = ("device", "host")
PROGRESS_SEGMENTS = 10      # device loop: at least this many progress points per training
MIN_SHARD = 16              # accelerator default: no data split below 16 images per device

# Key purposes folded into a network's key (fixed integers, never reordered).
_NET_INIT = 0
_NET_TRAIN = 1


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one evaluation uses the devices: `nets` devices on the network axis × `data`
  devices on the batch axis; `remat`: the networks' residual blocks rematerialised."""
  nets: int = 1
  data: int = 1
  remat: bool = False

  def __post_init__(self):
    if self.nets < 1 or self.data < 1:
      raise ConfigError(f"layout: nets and data axes must be >= 1, got {self.nets}x{self.data}")

  @property
  def devices(self) -> int:
    return self.nets * self.data

  def nets_per_device(self, num_nets: int) -> int:
    return -(-num_nets // self.nets)

  def describe(self) -> str:
    return (f"nets axis {self.nets} x data axis {self.data}"
            f"{', residual blocks rematerialised' if self.remat else ''}")


def net_layout(num_nets: int, num_devices: int | None = None) -> tuple[int, int]:
  """(devices used, networks per device): fewest networks per device, then fewest devices."""
  d = jax.device_count() if num_devices is None else num_devices
  per_dev = -(-num_nets // max(1, min(d, num_nets)))
  return -(-num_nets // per_dev), per_dev


def data_split(batch: int, room: int, min_shard: int = MIN_SHARD) -> int:
  """Devices for the data axis: the most (<= room) that divide `batch` into shards of at
  least `min_shard` images (1 when none does)."""
  fits = [b for b in range(1, max(1, room) + 1)
          if batch % b == 0 and (b == 1 or batch // b >= min_shard)]
  return max(fits)


def default_layout(num_nets: int, batch: int, num_devices: int | None = None,
                   policy: str | None = None) -> Layout:
  """The layout without a memory plan (`evaluate.plan` checks memory and may change it).

  The network axis first (independent networks need no communication): `net_layout`. On
  accelerators the devices left over split each network's batch (`data_split`): one
  ResNet-18 on 8 chips trains on the data axis, 5 ConvNets on 8 chips on the nets axis. On
  CPU only the network axis (the host loop runs one step per call; splitting a batch over
  fake devices only adds copies). A multi-process run always spans every device."""
  d = jax.device_count() if num_devices is None else int(num_devices)
  policy = policy or backend.policy()
  if jax.process_count() > 1:
    if num_devices not in (None, 0, jax.device_count()):
      raise ConfigError("num_devices: must be 0 (all devices) in a multi-process run")
    a = max(k for k in range(1, d + 1) if d % k == 0 and k <= max(1, num_nets))
    return Layout(a, d // a)
  a, _ = net_layout(num_nets, d)
  b = data_split(batch, d // a) if policy == "accelerator" else 1
  return Layout(a, b)


def check_layout(layout: Layout) -> Layout:
  if layout.devices > jax.device_count():
    raise ConfigError(f"layout {layout.nets}x{layout.data}: needs {layout.devices} devices, "
                      f"{jax.device_count()} available")
  if jax.process_count() > 1 and layout.devices != jax.device_count():
    raise ConfigError(f"layout {layout.nets}x{layout.data}: a multi-process run must use "
                      f"every device ({jax.device_count()})")
  return layout


def eval_mesh(layout: Layout) -> Mesh:
  """The ("nets", "data") mesh of `layout` over the first nets × data devices (ordered by
  process, so each host's devices hold a contiguous block of the data axis)."""
  devices = np.asarray(jax.devices()[:layout.devices]).reshape(layout.nets, layout.data)
  return Mesh(devices, (NET_AXIS, DATA_AXIS))


def _over_nets(fn, in_axes, vectorize, spmd_axis_name=None):
  """fn applied over the leading network axis of the arguments whose in_axes is 0.

  vmap: batched (conv weights become grouped convolutions); map: lax.map, one net at a
  time in a loop; unroll: a Python loop inside the traced program (independent copies).
  """
  if vectorize == "vmap":
    return jax.vmap(fn, in_axes=in_axes, spmd_axis_name=spmd_axis_name)

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


def data_specs(layout: Layout, per_net_data: bool) -> dict:
  """PartitionSpecs of the arrays a program takes: training images / labels (sharded over
  the data axis when it has devices), network-axis arrays, test batches [nb, tb, ...]."""
  data = DATA_AXIS if layout.data > 1 else None
  train = P(NET_AXIS, data) if per_net_data else P(data)
  return {"train": train, "nets": P(NET_AXIS), "test": P(None, data), "rep": P()}


@functools.lru_cache(maxsize=32)
def _programs(net: NetFns, settings: EvalSettings, per_net_data: bool, layout: Layout,
              vectorize: str, n_train: int, policy: str = "cpu"):
  """Jitted init / device-loop train / host-loop steps / test, over the network axis, on
  the ("nets", "data") mesh of `layout` (module docstring). `policy` is part of the cache
  key: the nets read the backend policy when they are traced."""
  del policy
  if layout.remat:
    net = remat_net(net)
  d = 0 if per_net_data else None
  batch = min(settings.batch_size, n_train)
  rem = n_train % batch
  mesh = eval_mesh(layout) if layout.devices > 1 else None
  split = layout.data > 1
  shard = None
  if split:
    shard = functools.partial(jax.lax.with_sharding_constraint,
                              shardings=NamedSharding(mesh, P(DATA_AXIS)))
  spmd = NET_AXIS if split else None
  extra = dict(n=n_train, shard=shard)
  fns = {
      "init": (jax.vmap(functools.partial(init_state, net, optimizer=settings.optimizer),
                        spmd_axis_name=spmd), (0,)),
      "train": (_over_nets(functools.partial(train_passes, net, settings, **extra),
                           (0, 0, d, d, None, None), vectorize, spmd), (0, 0, d, d, None, None)),
      "step": (_over_nets(lambda st, k, x, y, e, i: train_batch(net, settings, st, k, x, y, e,
                                                                 i, batch, **extra),
                          (0, 0, d, d, None, None), vectorize, spmd), (0, 0, d, d, None, None)),
      "test": (_over_nets(functools.partial(count_correct, net), (0, None, None, None),
                          vectorize, spmd), (0, None, None, None)),
  }
  if rem:
    fns["step_rem"] = (_over_nets(
        lambda st, k, x, y, e, i: train_batch(net, settings, st, k, x, y, e, i, rem, **extra),
        (0, 0, d, d, None, None), vectorize, spmd), (0, 0, d, d, None, None))
  out = {}
  for name, (fn, axes) in fns.items():
    donate = (0,) if name in ("train", "step", "step_rem") else ()
    if split:
      out[name] = jax.jit(fn, donate_argnums=donate,
                          out_shardings=NamedSharding(mesh, P(NET_AXIS)))
      continue
    if mesh is not None:
      specs = tuple(P(NET_AXIS) if a == 0 else P() for a in axes)
      fn = jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(NET_AXIS),
                         check_vma=False)
    out[name] = jax.jit(fn, donate_argnums=donate)
  return out


def net_keys(seed: int, net_ids: Sequence[int]):
  """Per-network base keys: fold_in(step_key(seed, 0, EVAL), i)."""
  base = rng.step_key(seed, 0, rng.EVAL)
  return jnp.stack([jax.random.fold_in(base, int(i)) for i in net_ids])


def test_batches(x_test, y_test, test_batch_size: int, multiple: int = 1):
  """Test images as [nb, tb, ...] batches (tb a multiple of `multiple`, the data axis),
  the last one padded, with a mask of the real images."""
  n = x_test.shape[0]
  tb = min(test_batch_size, n)
  tb = -(-tb // multiple) * multiple
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


def _training_arrays(x_train, y_train, per_net_data: bool, extra: int, multiple: int = 1):
  """float32 images, int32 labels; per-network sets padded with copies of the last one;
  the image axis zero-padded to a multiple of `multiple` (the data axis: the padding rows
  are never drawn, `train_pass` shuffles the real `n` only)."""
  x_train = np.asarray(x_train, np.float32)
  y_train = np.asarray(y_train, np.int32)
  if per_net_data and extra > 0:
    x_train = np.concatenate([x_train, *[x_train[-1:]] * extra])
    y_train = np.concatenate([y_train, *[y_train[-1:]] * extra])
  n = x_train.shape[-4]
  pad = -(-n // multiple) * multiple - n
  if pad:
    axis = 1 if per_net_data else 0
    widths = [(0, 0)] * x_train.ndim
    widths[axis] = (0, pad)
    x_train = np.pad(x_train, widths)
    y_train = np.pad(y_train, widths[:y_train.ndim])
  return x_train, y_train


def put(x, sharding: NamedSharding | None):
  """A host array on the devices of `sharding` (None: the default device). Every process
  passes the same array and transfers only the shards its own devices hold, so with several
  hosts each host holds its shard of the training set."""
  if sharding is None:
    return jnp.asarray(x)
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_keys(keys, sharding: NamedSharding | None):
  """Typed PRNG keys [nets] split like `put` (their uint32 data travels)."""
  if sharding is None:
    return keys
  data = np.asarray(jax.random.key_data(keys))
  spec = P(*sharding.spec, *([None] * (data.ndim - len(sharding.spec))))
  return jax.random.wrap_key_data(put(data, NamedSharding(sharding.mesh, spec)))


def _placement(layout: Layout, per_net_data: bool):
  """{"train", "nets", "test", "rep"} -> NamedSharding (None on one device)."""
  if layout.devices == 1:
    return dict.fromkeys(("train", "nets", "test", "rep"))
  mesh = eval_mesh(layout)
  return {k: NamedSharding(mesh, spec) for k, spec in data_specs(layout, per_net_data).items()}


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
    correct = parallel.to_host(prog["test"](states, *tests))[:num]
    test_s += timing.clock() - t1
    accs.append((100.0 * correct / num_test).tolist())
  return states, accs, train_s, test_s


def train_and_test(net: NetFns, x_train, y_train, x_test, y_test, *, settings: EvalSettings,
                   seed: int, net_ids: Sequence[int] | None = None,
                   test_batch_size: int = 500, vectorize: str | None = None,
                   loop: str | None = None, num_devices: int | None = None,
                   layout: Layout | None = None, return_states: bool = False,
                   progress: Callable[[str], None] | None = None,
                   progress_every_s: float = 10.0) -> dict:
  """Trains the networks `net_ids` (default 0..num_nets-1) and tests them at every checkpoint.

  x_train [n, H, W, ch] is shared by all networks; [num_nets, n, H, W, ch] (with y_train
  [num_nets, n]) gives each network its own set. Images must be normalised floats,
  (pixels/255 − mean)/std; raw pixels are refused with one line (`check_normalized`). `loop` ("device" | "host") and `vectorize`
  ("vmap" | "map" | "unroll") default to `default_execution()`; `layout` (devices on the
  nets and data axes, remat) to `default_layout(..., num_devices)`; all choices train the
  same networks. Returns {"checkpoint_passes": [...], "checkpoint_accuracies": [[% per
  net] per checkpoint], "wall_seconds", "devices", "layout", "loop", "vectorize"[,
  "states"]}. `progress(line)` hears about the passes done every `progress_every_s` s.
  """
  synthetic_io.check_normalized(x_train, "evaluate: training images")
  synthetic_io.check_normalized(x_test, "evaluate: test images")
  loop, vectorize = _execution(loop, vectorize)
  net_ids = list(range(settings.num_nets)) if net_ids is None else [int(i) for i in net_ids]
  num = len(net_ids)
  per_net_data = np.ndim(x_train) == 5
  n_real = int(np.shape(x_train)[-4])
  if layout is None:
    layout = default_layout(num, min(settings.batch_size, n_real), num_devices)
  layout = check_layout(layout)
  padded = layout.nets * layout.nets_per_device(num)
  init_keys, train_keys = _init_and_train_keys(seed, net_ids, padded)
  x_train, y_train = _training_arrays(x_train, y_train, per_net_data, padded - num,
                                      layout.data)
  tests = test_batches(np.asarray(x_test, np.float32), np.asarray(y_test, np.int32),
                       test_batch_size, layout.data)
  place = _placement(layout, per_net_data)
  prog = _programs(net, settings, per_net_data, layout, vectorize, n_real, backend.policy())
  x_dev, y_dev = put(x_train, place["train"]), put(y_train, place["train"])
  tests = tuple(put(a, place["test"]) for a in tests)

  timing = _Timing(progress, progress_every_s, settings.passes)
  timing.start = timing.clock()
  states = prog["init"](put_keys(init_keys, place["nets"]))
  train_keys = put_keys(train_keys, place["nets"])
  timing.last = timing.clock()
  states, accs, train_s, test_s = _train_and_score(
      loop, prog, states, train_keys, x_dev, y_dev, tests, settings, n_real, num,
      x_test.shape[0], timing)
  batch = min(settings.batch_size, n_real)
  out = {"checkpoint_passes": list(settings.checkpoint_passes()),
         "checkpoint_accuracies": accs,
         "wall_seconds": timing.clock() - timing.start, "train_seconds": train_s,
         "test_seconds": test_s, "first_step_seconds": timing.first_step_s,
         "steps": settings.passes * -(-n_real // batch),
         "devices": layout.devices,
         "layout": {"nets": layout.nets, "data": layout.data, "remat": layout.remat},
         "loop": loop, "vectorize": vectorize}
  if return_states:
    out["states"] = jax.tree.map(lambda a: parallel.to_host(a)[:num], states)
  return out

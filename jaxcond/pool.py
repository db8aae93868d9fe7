"""`python -m jaxcond.pool`: train a pool of feature nets for condensation (DANCE, arXiv
2406.01063; NCFM, arXiv 2502.20653).

    python -m jaxcond.pool --config experiments/cifar10.py --workdir runs/c10_pool
    python -m jaxcond.condense --config experiments/cifar10.py:method=ncfm,ipc=10 \\
        --workdir runs/c10_ncfm_10 --config.pool.path=runs/c10_pool

Trains `pool.size` copies of the condensation net (`model.*`, ConvNet-3 for CIFAR) on the
real training split and writes each net's initial weights (right after construction,
PyTorch's default init: `nets.init_variables`) and final weights (after `pool.epochs`) with
orbax, then `pool.json` (`jaxcond.pool_files`: settings, per-net accuracies, content hash).
The same as a library call: `jaxcond.pool.run(config, workdir)`.

Training (NCFM `pretrain/pretrain_script.py`, DANCE `pretrain.py`): SGD lr `pool.lr` 0.01,
momentum 0.9, weight decay 5e-4 in the gradient (torch), lr × `pool.gamma` 0.2 from each of
`pool.milestones` (epochs 40 and 50 of 60), batches of `pool.batch_size` (NCFM 128, DANCE
64), per-sample IDC DSA `pool.strategy` ("color_crop") then CutMix with probability
`pool.mix_p` 0.5, λ ~ Beta(1, 1) (`jaxcond.evaluate`'s primitives). An epoch is
ceil(N / batch) steps; each step every net draws its own batch uniformly WITH replacement
from the N training images (key (pool.seed, step, net)); the references shuffle.

The nets train together: their weights are stacked `[nets, ...]` and sharded over the
devices (the mesh's one axis); each device vmaps a train step over its nets (in groups of
`pool.nets_per_group`, planned from the memory budget like condensation). The training set
stays where condensation keeps it, the class-sharded uint8 bank (`realdata`), which is
what scales to ImageNet (a replicated bank would not fit). Every device draws every net's
image indices from the same keys, gathers the ones of its own classes (zeros elsewhere),
and one reduce-scatter over the nets axis hands each device its nets' batches: the bank
never moves, only the batch (nets × batch images) crosses the devices once per step.
The net count is padded to a multiple of the devices (the padding nets train and are
dropped). Checkpoints (orbax) of the stacked state every epoch; a resumed run continues
exactly (every draw is a function of the step); a workdir made with other settings is
refused (`files.check_same_record`). A progress line every `log_every` steps and at each
epoch's end (the epoch's mean loss and training accuracy over the nets, on augmented and
mixed batches); the manifest adds each net's test accuracy (the holdout with
`dataset.holdout`). `dataset.streaming` is not supported.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxcond import augment, benchlib, checkpoint, cli, condense, configs, data, evaluate
from jaxcond import files, nets, parallel, pool_files, preemption, progress, realdata, rng
from jaxcond import steps, tblog
from jaxcond import plan as plan_lib
from jaxcond import workdir as workdir_lib
from jaxcond.data import registry
from jaxcond.errors import ConfigError

AXIS = parallel.AXIS


@dataclasses.dataclass(frozen=True)
class PoolSettings:
  """The pool block of a config (`pool.*`), what the nets' training depends on."""
  size: int
  epochs: int
  batch_size: int
  lr: float
  momentum: float
  weight_decay: float
  milestones: tuple
  gamma: float
  strategy: str
  mix_p: float
  beta: float
  seed: int
  nets_per_group: int = 0      # layout only (0 = planned)

  @classmethod
  def from_config(cls, c) -> "PoolSettings":
    rows = {f.name: f for f in configs.FIELDS}
    v = {f.name: rows[f"pool.{f.name}"].plain(c.pool[f.name]) for f in dataclasses.fields(cls)}
    v["milestones"] = tuple(int(m) for m in c.pool.milestones)
    return cls(**v)

  def record(self) -> dict:
    """What a pool depends on (settings.json, the manifest): everything but the layout."""
    d = dataclasses.asdict(self)
    d.pop("nets_per_group")
    d["milestones"] = list(self.milestones)
    return d

  def lr_at(self, epoch):
    """lr · gamma^(#milestones <= epoch) for a traced 0-based epoch."""
    count = sum((epoch >= m).astype(jnp.int32) for m in self.milestones)
    return jnp.float32(self.lr) * jnp.float32(self.gamma) ** count


@dataclasses.dataclass
class Job:
  """What the stages share: settings, the net, the mesh, the files, the layout."""
  config: Any
  ps: PoolSettings
  s: steps.StepSettings          # the condensation settings (model, mean, std)
  info: registry.DatasetInfo
  mesh: Any
  model: Any
  workdir: str
  printer: progress.Printer
  record: dict
  padded: int                    # nets, padded to a multiple of the devices
  group: int = 0                 # nets vmapped together per device (planned)
  stop: preemption.Preemption = dataclasses.field(default_factory=preemption.Preemption)
  tb: tblog.Writer = dataclasses.field(default_factory=lambda: tblog.Writer(None))
  metrics: Any = None            # progress.JsonlWriter of WORKDIR/metrics.jsonl

  @property
  def local(self) -> int:
    return self.padded // self.mesh.size

  @property
  def is_main(self) -> bool:
    return jax.process_index() == 0


# ----------------------------------------------------------------------------- the run

STARTING = ("preempted while starting (no training step run yet): nothing to save; re-run "
            "the same command to resume")


def run(config, workdir: str, *, log=None,
        stop: preemption.Preemption | None = None) -> dict:
  """Trains the pool of `config` into `workdir` (resuming); returns the manifest.

  Like `jaxcond.condense.run`: one run per workdir (a lock), and SIGTERM or a first
  Ctrl-C (`stop`, `jaxcond.preemption`) stops after the current chunk of steps with a
  checkpoint (PreemptedError; re-running the same command resumes).
  """
  job = setup(config, workdir, log=log)

  def locked(stop):
    job.stop = stop
    with stop.immediate(STARTING):
      claim_workdir(job)
    return _train_pool(job)

  return workdir_lib.run_locked(job.workdir, locked, stop=stop, starting=STARTING,
                                warn=lambda line: job.printer(line, force=True))


def claim_workdir(job: Job) -> None:
  """Writes the settings record into the workdir, or refuses one made with other settings
  (one line per differing field); called under the workdir's lock."""
  if job.is_main:
    files.check_same_record(os.path.join(job.workdir, "settings.json"), job.record)
  parallel.sync("jaxcond_pool_workdir")


def _train_pool(job: Job) -> dict:
  """`run` after the lock: data, plan, state (init or resume), the steps, the files."""
  config = job.config
  manifest_path = os.path.join(job.workdir, pool_files.MANIFEST)
  if os.path.exists(manifest_path):
    job.printer(f"pool: {job.workdir} is complete ({job.ps.size} nets)", force=True)
    return pool_files.read_manifest(job.workdir)
  job.tb = tblog.for_workdir(job.workdir, bool(config.tensorboard), is_main=job.is_main)
  job.stop.cleanups.append(job.tb.close)
  job.metrics = progress.JsonlWriter(os.path.join(job.workdir, "metrics.jsonl"),
                                     enabled=job.is_main)
  with job.stop.immediate(STARTING):
    source = realdata.open_source(configs.DataSettings.from_config(config), job.info, job.s,
                                job.mesh, check_counts=lambda counts: _check_counts(counts))
    counts = np.asarray(source.counts)
    spe = steps_per_epoch(int(counts.sum()), job.ps.batch_size)
    total = spe * job.ps.epochs
    plan_nets(job, depth=int(source.bank.per_class))
    fn = build_train(job, spe)
  ckpt = checkpoint.Checkpointer(os.path.join(job.workdir, "checkpoints"), max_to_keep=2)
  t0 = time.perf_counter()
  try:
    with job.stop.immediate(STARTING):
      state, start = init_or_resume(job, ckpt)
    if job.is_main:
      progress.truncate_jsonl(job.metrics.path, max_step=start)
    state = train(job, fn, ckpt, state, start, total, spe, source.bank, counts)
  finally:
    source.close()
    ckpt.close()
    job.tb.close()
  return finish(job, state, spe, int(counts.sum()), time.perf_counter() - t0)


def setup(config, workdir: str, *, log=None) -> Job:
  """Validates the config and the workdir (refusing other settings) before any data."""
  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  condense.check_workdir(workdir)
  configs.validate(config)
  if config.dataset.streaming:
    raise ConfigError("dataset.streaming: the pool trains from the class bank on the "
                      "devices; set dataset.streaming=False")
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  s = configs.step_settings(config, info)
  ps = PoolSettings.from_config(config)
  mesh = parallel.make_mesh(int(config.num_devices) or None)
  record = {"dataset": configs.dataset_record(config),
            "model": configs.model_record(config, info), "pool": ps.record()}
  workdir = os.path.abspath(workdir)
  if config.tensorboard:
    tblog.require()      # before any work: a one-line error when the writer is missing
  if jax.process_index() == 0:
    files.makedirs(workdir)
  padded = -(-ps.size // mesh.size) * mesh.size
  printer = progress.Printer(quiet=bool(config.quiet), enabled=jax.process_index() == 0,
                             stream=log)
  return Job(config=config, ps=ps, s=s, info=info, mesh=mesh, model=steps.make_model(s),
             workdir=workdir, printer=printer, record=record, padded=padded)


def _check_counts(counts) -> None:
  if int(np.min(counts)) < 1:
    raise ConfigError(f"dataset.name: class {int(np.argmin(counts))} has no training images")


def steps_per_epoch(num_train: int, batch: int) -> int:
  return -(-int(num_train) // int(batch))


# ----------------------------------------------------------------------------- one step

def _net_keys(ps: PoolSettings, step, ids):
  """(data key, training key) per net id: fold_in((pool.seed, step, POOL_TRAIN), net)."""
  base = rng.step_key(ps.seed, step, rng.POOL_TRAIN)
  keys = jax.vmap(lambda n: jax.random.fold_in(base, n))(ids)
  return (jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys),
          jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))


def sample_indices(ps: PoolSettings, step, padded: int, ends):
  """(class slot, index in the class) `[nets, batch]` of every net's batch at `step`:
  uniform over the N training images (`ends`: cumulative class counts)."""
  k_data, _ = _net_keys(ps, step, jnp.arange(padded))
  total = ends[-1]
  flat = jax.vmap(lambda k: jax.random.randint(k, (ps.batch_size,), 0, total))(k_data)
  cls = jnp.searchsorted(ends, flat, side="right").astype(jnp.int32)
  starts = jnp.concatenate([jnp.zeros((1,), ends.dtype), ends[:-1]])
  return cls, (flat - starts[cls]).astype(jnp.int32)


def net_step(job: Job, state, x_u8, y, key, lr):
  """One SGD step of one net: normalise -> per-sample IDC DSA -> CutMix -> CE -> torch
  SGD (`evaluate.train`'s primitives). Returns (state, loss, correct)."""
  ps, s = job.ps, job.s
  k_aug, k_mix = jax.random.split(key)
  x = data.normalize(x_u8, s.mean, s.std)
  x = augment.augment(k_aug, x, policy="idc", strategy=ps.strategy, siamese=False)
  if ps.mix_p > 0:
    x, y2, r = evaluate.cutmix(k_mix, x, y, mix_p=ps.mix_p, beta=ps.beta)
  else:
    y2, r = y, jnp.float32(1.0)
  others = {k: v for k, v in state.items() if k == "batch_stats"}

  def loss_fn(params):
    out, stats = nets.logits(job.model, {**others, "params": params}, x, train=True)
    loss = r * evaluate.cross_entropy(out, y) + (1.0 - r) * evaluate.cross_entropy(out, y2)
    return loss, (out, stats)

  (loss, (out, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
  params, buf = evaluate.sgd_update(state["params"], state["momentum"], grads, lr=lr,
                                    momentum=ps.momentum, weight_decay=ps.weight_decay)
  new = {**state, "params": params, "momentum": buf}
  if "batch_stats" in state and stats is not None:
    new["batch_stats"] = stats
  return new, loss, jnp.sum(jnp.argmax(out, -1) == y).astype(jnp.int32)


def build_train(job: Job, spe: int) -> Callable:
  """`fn(state, images, ends, start, stop) -> state`: steps [start, stop) of every net
  (`lax.fori_loop`), sharded over the nets axis. `state` holds the nets' variables and
  momentum `[nets, ...]` and this epoch's summed loss / correct / seen per net."""
  ps, mesh, local, padded = job.ps, job.mesh, job.local, job.padded
  group = job.group or local
  groups = -(-local // group)

  def shard_fn(state, images, ends, start, stop):
    d = jax.lax.axis_index(AXIS)
    slots = images.shape[0]                # this device's class slots
    ids = d * local + jnp.arange(local)

    def body(i, st):
      cls, j = sample_indices(ps, i, padded, ends)
      mine = (cls >= d * slots) & (cls < (d + 1) * slots)
      lc = jnp.clip(cls - d * slots, 0, slots - 1)
      x = images[lc, jnp.clip(j, 0, images.shape[1] - 1)]
      x = jnp.where(mine[..., None, None, None], x, jnp.zeros((), x.dtype))
      x = jax.lax.psum_scatter(x, AXIS, scatter_dimension=0, tiled=True)   # [local, B, ...]
      y = jax.lax.dynamic_slice_in_dim(cls, d * local, local)
      _, k_train = _net_keys(ps, i, ids)
      lr = ps.lr_at(i // spe)
      fresh = (i % spe) == 0
      st = {**st, **{k: jnp.where(fresh, jnp.zeros_like(st[k]), st[k])
                     for k in ("loss", "correct", "seen")}}
      nets_state = {k: v for k, v in st.items() if k not in ("loss", "correct", "seen")}
      one = jax.vmap(lambda a, xb, yb, kb: net_step(job, a, xb, yb, kb, lr))
      if groups == 1:
        new, loss, correct = one(nets_state, x, y, k_train)
      else:
        pad = groups * group - local
        def grp(a):
          if pad:
            a = jnp.concatenate([a, a[:pad]])
          return a.reshape((groups, group) + a.shape[1:])
        ungrp = lambda a: a.reshape((groups * group,) + a.shape[2:])[:local]
        new, loss, correct = jax.lax.map(
            lambda t: one(*t), jax.tree.map(grp, (nets_state, x, y, k_train)))
        new, loss, correct = jax.tree.map(ungrp, (new, loss, correct))
      return {**new, "loss": st["loss"] + loss, "correct": st["correct"] + correct,
              "seen": st["seen"] + ps.batch_size}

    return jax.lax.fori_loop(start, stop, body, state)

  sharded = jax.shard_map(shard_fn, mesh=mesh,
                          in_specs=(P(AXIS), P(AXIS), P(), P(), P()), out_specs=P(AXIS))
  return jax.jit(sharded, donate_argnums=(0,))


def init_state(job: Job):
  """Every (padded) net's initial variables, momentum zero, epoch sums zero: sharded over
  the nets axis. Net i's init key is (pool.seed, i, POOL_INIT)."""
  shape = job.s.image_shape

  def make():
    keys = jax.vmap(lambda i: rng.step_key(job.ps.seed, i, rng.POOL_INIT))(
        jnp.arange(job.padded))
    v = jax.vmap(lambda k: nets.init_variables(job.model, k, shape))(keys)
    st = {**v, "momentum": jax.tree.map(jnp.zeros_like, v["params"])}
    st["loss"] = jnp.zeros((job.padded,), jnp.float32)
    st["correct"] = jnp.zeros((job.padded,), jnp.int32)
    st["seen"] = jnp.zeros((job.padded,), jnp.int32)
    return st

  return jax.jit(make, out_shardings=_nets_sharding(job.mesh))()


def _nets_sharding(mesh):
  return jax.sharding.NamedSharding(mesh, P(AXIS))


def abstract_state(job: Job):
  sh = _nets_sharding(job.mesh)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                      jax.eval_shape(lambda: init_state_shapes(job)))


def init_state_shapes(job: Job):
  one = nets.variable_shapes(job.model, job.s.image_shape)
  stack = lambda a: jnp.zeros((job.padded,) + tuple(a.shape), a.dtype)
  v = jax.tree.map(stack, one)
  return {**v, "momentum": jax.tree.map(jnp.zeros_like, v["params"]),
          "loss": jnp.zeros((job.padded,), jnp.float32),
          "correct": jnp.zeros((job.padded,), jnp.int32),
          "seen": jnp.zeros((job.padded,), jnp.int32)}


# ----------------------------------------------------------------------------- memory

def plan_nets(job: Job, depth: int) -> dict:
  """Chooses `job.group` (nets vmapped together per device) under the memory budget: the
  train call compiled from shapes (`benchlib.compile_stats`), halving the group until it
  fits. Prints the plan; returns its summary. One-line ConfigError when one net does not."""
  budget = plan_lib.budget_bytes(job.config)
  target = int(plan_lib.SAFETY * budget)
  c_pad = parallel.padded_num_classes(job.info.num_classes, job.mesh)
  hwc = tuple(int(v) for v in job.info.image_shape)
  images = jax.ShapeDtypeStruct((c_pad, depth) + hwc, jnp.uint8,
                                sharding=parallel.class_sharding(job.mesh, 5))
  rep = parallel.replicated(job.mesh)
  ends = jax.ShapeDtypeStruct((c_pad,), jnp.int32, sharding=rep)
  i32 = jax.ShapeDtypeStruct((), jnp.int32, sharding=rep)
  fixed = job.ps.nets_per_group > 0
  group = min(job.ps.nets_per_group, job.local) if fixed else job.local
  compiles = 0
  while True:
    job.group = group
    _, st = benchlib.compile_stats(build_train(job, 1), abstract_state(job), images, ends,
                                   i32, i32)
    compiles += 1
    used = (st.get("argument_size_in_bytes", 0) + st.get("output_size_in_bytes", 0)
            + st.get("temp_size_in_bytes", 0) - st.get("alias_size_in_bytes", 0))
    if used <= target or fixed or group == 1:
      break
    group = max(1, group // 2)
  fits = used <= budget
  summary = {"fits": fits, "devices": job.mesh.size, "nets": job.ps.size,
             "padded_nets": job.padded, "nets_per_device": job.local,
             "nets_per_group": group, "per_device_bytes": int(used), "budget_bytes": budget,
             "bank_bytes": int(images.size // job.mesh.size),
             "temp_bytes": st.get("temp_size_in_bytes"), "compiles": compiles,
             "batch_size": job.ps.batch_size}
  gib = lambda b: f"{b / plan_lib.GIB:.2f} GiB"
  job.printer(f"pool memory plan, per device ({job.mesh.size} device(s), {job.local} net(s) "
              f"each, {group} trained side by side): bank shard "
              f"{gib(summary['bank_bytes'])}, total {gib(used)} of {gib(budget)}: "
              f"{'fits' if fits else 'DOES NOT FIT'}")
  if not fits:
    raise ConfigError(f"memory_budget_gb: training {group} net(s) per device at batch "
                      f"{job.ps.batch_size} needs {gib(used)} per device, over the "
                      f"{gib(budget)} budget; lower pool.batch_size or pool.nets_per_group, "
                      f"use more devices, or raise memory_budget_gb")
  return summary


# ----------------------------------------------------------------------------- stages

def init_or_resume(job: Job, ckpt: checkpoint.Checkpointer):
  """(state, first step): the latest checkpoint, else fresh nets (their initial weights
  written to POOL/nets/<i>/init first)."""
  start = ckpt.latest_step() or 0
  if start:
    meta = ckpt.restore_meta(start)
    if pool_files.jsonable(meta.get("record")) != pool_files.jsonable(job.record):
      raise ConfigError(f"pool: {job.workdir}/checkpoints were made with other settings; "
                        f"use another --workdir")
    state, _ = ckpt.restore(start, abstract_state(job))
    job.printer(f"resuming the pool from step {start}", force=True)
    return state, start
  state = init_state(job)
  host = jax.tree.map(parallel.to_host, state)
  if job.is_main:
    for i in range(job.ps.size):
      pool_files.save_net(job.workdir, i, "init", _net(host, i))
  return state, 0


def _net(host_state, i: int) -> dict:
  """Net i's variables (params [+ batch_stats]) from the stacked host state."""
  return {k: jax.tree.map(lambda a: a[i], v) for k, v in host_state.items()
          if k in ("params", "batch_stats")}


def train(job: Job, fn, ckpt, state, start: int, total: int, spe: int, bank, counts):
  """Steps [start, total): log lines every `log_every` steps and at each epoch's end, a
  checkpoint at each epoch's end (and the last step)."""
  c_pad = parallel.padded_num_classes(job.info.num_classes, job.mesh)
  ends = np.zeros((c_pad,), np.int32)
  ends[:len(counts)] = np.cumsum(counts)
  ends[len(counts):] = ends[len(counts) - 1]
  ends = jax.device_put(ends, parallel.replicated(job.mesh))
  images = bank.images
  log_every = max(1, int(job.config.log_every))
  step, timer = start, progress.Timer()
  per_step = job.padded * job.ps.batch_size
  if start < total:
    job.printer(f"pool: training {job.ps.size} {job.s.model_name} net(s) on "
                f"{job.info.name} ({int(np.sum(counts))} images), {job.ps.epochs} epoch(s) "
                f"of {spe} step(s), batch {job.ps.batch_size}; {job.mesh.size} device(s)")
  while step < total:
    epoch_end = (step // spe + 1) * spe
    stop = min(epoch_end, step + log_every, total)
    state = fn(state, images, ends, jnp.int32(step), jnp.int32(stop))
    done, step = stop - step, stop
    record = _progress_record(job, state, step, spe, timer, done, per_step)
    job.metrics.write(record)
    job.tb.scalars(step, record)      # the same values as metrics.jsonl
    job.printer(_progress_line(job, record, step, spe, total))
    saved = step % spe == 0 or step == total
    if saved:
      _save(job, ckpt, step, state)
    if step < total and job.stop.should_stop(step):
      if not saved:
        _save(job, ckpt, step, state)
      ckpt.wait()
      raise job.stop.error(f"preempted at step {step}: checkpoint written to "
                           f"{ckpt.directory}; re-run the same command to resume")
  ckpt.wait()
  return state


def _save(job: Job, ckpt, step: int, state) -> None:
  ckpt.save(step, state, {"step": step, "record": job.record, "versions": condense.versions()})


def _progress_record(job, state, step, spe, timer, done, per_step) -> dict:
  """The metrics.jsonl record of one log interval: the epoch so far, averaged over the nets
  (training batches, augmented and mixed), and the speed (timed once the steps are done:
  the jitted chunk returns before it has run)."""
  loss, correct, seen = (np.asarray(parallel.to_host(state[k]))[:job.ps.size]
                         for k in ("loss", "correct", "seen"))
  dt = timer.lap()
  n_steps = np.maximum(seen // job.ps.batch_size, 1)
  acc = 100.0 * correct / np.maximum(seen, 1)
  return {"step": step, "epoch": -(-step // spe), "loss": float(np.mean(loss / n_steps)),
          "train_accuracy": float(np.mean(acc)), "train_accuracy_min": float(np.min(acc)),
          "train_accuracy_max": float(np.max(acc)), "steps_in_interval": done,
          "step_time_s": dt / max(done, 1), "images_per_s": done * per_step / max(dt, 1e-9)}


def _progress_line(job, record, step, spe, total) -> str:
  """`epoch 3/60 [step 120/391]  loss 1.52  train acc 45.20% (min 44.0, max 46.1) ...`."""
  epoch, within = record["epoch"], step - (record["epoch"] - 1) * spe
  where = f" [step {within}/{spe}]" if within < spe else ""
  eta = (total - step) * record["step_time_s"]
  return (f"epoch {epoch:>{len(str(job.ps.epochs))}d}/{job.ps.epochs}{where}  loss "
          f"{record['loss']:.4f}  train acc {record['train_accuracy']:.2f}% "
          f"(min {record['train_accuracy_min']:.2f}, max {record['train_accuracy_max']:.2f})"
          f"  {record['images_per_s']:,.0f} img/s  ETA {progress.format_duration(eta)}")


def test_accuracy(job: Job, host_state) -> list[float] | None:
  """Each net's accuracy on the test split (the holdout with `dataset.holdout`); None in a
  multi-process run (the split is not loaded there)."""
  if jax.process_count() > 1:
    return None
  ds = configs.DataSettings.from_config(job.config)
  x, y = evaluate.load_test_split(ds, job.info)
  variables = {k: jax.tree.map(lambda a: jnp.asarray(a[:job.ps.size]), v)
               for k, v in host_state.items() if k in ("params", "batch_stats")}

  @jax.jit
  def correct(v, xb, yb):
    out = jax.vmap(lambda w: nets.logits(job.model, w, xb, train=False)[0])(v)
    return jnp.sum(jnp.argmax(out, -1) == yb[None], axis=-1)

  total = np.zeros((job.ps.size,), np.int64)
  batch = 500
  for i in range(0, len(y), batch):
    xb, yb = x[i:i + batch], y[i:i + batch]
    if len(yb) < batch:   # one compiled shape: pad the last batch, count only real rows
      pad = batch - len(yb)
      xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
      yb = np.concatenate([yb, np.full((pad,), -1, yb.dtype)])
    total += np.asarray(correct(variables, xb, yb))
  return [float(100.0 * t / max(len(y), 1)) for t in total]


def finish(job: Job, state, spe: int, num_train: int, seconds: float) -> dict:
  """Writes every net's final weights, then the manifest (last: a pool without it is
  unfinished); returns the manifest."""
  host = jax.tree.map(parallel.to_host, state)
  n = job.ps.size
  seen = np.maximum(host["seen"][:n], 1)
  train_acc = [float(v) for v in 100.0 * host["correct"][:n] / seen]
  test_acc = test_accuracy(job, host)
  record = None
  if job.is_main:
    finals = [_net(host, i) for i in range(n)]
    for i, v in enumerate(finals):
      pool_files.save_net(job.workdir, i, "final", v)
    inits = [pool_files.load_net(job.workdir, i, "init") for i in range(n)]
    record = {
        "size": n, "model": job.record["model"], "dataset": job.record["dataset"],
        "settings": job.record["pool"], "num_train": num_train, "steps_per_epoch": spe,
        "train_accuracy": train_acc, "test_accuracy": test_acc,
        "content_hash": pool_files.content_hash(inits, finals),
        "nets": [os.path.relpath(os.path.dirname(pool_files.net_dir(job.workdir, i, "init")),
                                 job.workdir) for i in range(n)],
        "seconds": seconds, "versions": condense.versions()}
    pool_files.write_manifest(job.workdir, record)
  parallel.sync("jaxcond_pool_done")
  mean = lambda v: float(np.mean(v)) if v else float("nan")
  job.printer(f"done: {n} nets in {job.workdir}; final train accuracy {mean(train_acc):.2f}%"
              + (f", test accuracy {mean(test_acc):.2f}% (min {min(test_acc):.2f}, max "
                 f"{max(test_acc):.2f})" if test_acc else ""), force=True)
  return record if record is not None else pool_files.read_manifest(job.workdir)


def run_plan(config, devices: int = 0) -> dict:
  """`--plan`: the pool's memory plan from shapes only (the bank's depth from the
  registry, no data read); returns the summary (printed as the last line, JSON)."""
  configs.validate(config)
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  s = configs.step_settings(config, info)
  ps = PoolSettings.from_config(config)
  mesh = parallel.make_mesh(devices or int(config.num_devices) or None)
  padded = -(-ps.size // mesh.size) * mesh.size
  job = Job(config=config, ps=ps, s=s, info=info, mesh=mesh, model=steps.make_model(s),
            workdir="", printer=progress.Printer(), record={}, padded=padded)
  depth = int(info.max_per_class or 2 * ps.batch_size)
  try:
    return plan_nets(job, depth)
  except ConfigError as err:
    return {"fits": False, "note": str(err)}


# ----------------------------------------------------------------------------- CLI

PROGRAM = cli.Program(
    name="pool",
    summary="Train a pool of feature nets (initial + final weights) for condensation with "
            "--config.pool.path (DANCE, NCFM).",
    examples=("python -m jaxcond.pool --config experiments/cifar10.py --workdir runs/c10_pool",
              "python -m jaxcond.pool --config experiments/quickstart.py --workdir "
              "runs/digits_pool --config.pool.size=4 --config.pool.epochs=2"),
    flags=cli.DISTRIBUTED_FLAGS + cli.plan_flags("the pool's memory plan"),
    workdir_unless=("plan",), workdir_help="the pool's folder (what pool.path names)")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.pool`; exit status as every program's (cli)."""
  def go(a: cli.Args):
    if a.flags.plan:
      plan_lib.setup_fake_devices(a.flags.devices)
      print(json.dumps(run_plan(a.config, a.flags.devices or 0)), flush=True)
      return
    preemption.install_early(STARTING)
    cli.start_distributed(a.flags)
    run(a.config, a.workdir, stop=preemption.Preemption(command_line=True))
  return cli.main(PROGRAM, go, argv)


if __name__ == "__main__":
  sys.exit(main())

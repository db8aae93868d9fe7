"""`python -m jaxcond.condense`: condense a dataset with DM, M3D, DDM or NCFM.

    python -m jaxcond.condense --config experiments/quickstart.py --workdir runs/quickstart
    python -m jaxcond.condense --config experiments/cifar10.py:method=m3d,ipc=10 \\
        --workdir runs/c10_m3d_10 --config.steps=2000

The same as a library call (notebooks): `jaxcond.condense.run(config, workdir)`. A run is
a sequence of stages, each a function of this module a notebook can call on its own:

  settings  `setup`: validate the config (one-line ConfigError naming the field), freeze it
            into settings, make the 1-D device mesh over classes (`jaxcond.parallel`);
            read the trained feature nets of `pool.path` (`jaxcond.pool_files`: their
            content hash joins the trajectory);
  plan      `plan_step`: chunk sizes from the memory budget, checked by compiling the step
            from shapes only, before any data is read (`jaxcond.plan`);
  real data `open_real_data`: the class bank, or the stream (`jaxcond.realdata`), each
            process loading only its own classes; the pool's weights join the step's
            arguments after the data (`realdata.WithPool`);
  state     `init_or_resume`: the latest checkpoint in `DIR/checkpoints`, else a new set;
  step      `compile_step`: the planned step (compiled once, while planning, when it can);
  loop      `train`: `steps` updates, logging, checkpoints (orbax, async), grids and
            in-loop evaluations (`jaxcond.evaluate`) along the way (`Loop`);
  outputs   `finish`: `DIR/synthetic.npz`, a PNG grid, the final evaluation, report.html.

The objective of each method is documented in `jaxcond.steps` (DM, arXiv 2110.04181;
M3D, arXiv 2312.15927; DDM, arXiv 2412.04748; NCFM, arXiv 2502.20653). `condense_classes`
condenses a subset of classes held in memory: the entry point of `jaxcond.continual` and
`jaxcond.nas`.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.metadata
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax

import jaxcond
from jaxcond import checkpoint, cli, configs, data, evaluate, files, grids, parallel, pool_files
from jaxcond import preemption, progress, realdata, report, steps, synthetic_io, tblog
from jaxcond import plan as plan_lib
from jaxcond import workdir as workdir_lib
from jaxcond.data import registry
from jaxcond.errors import ConfigError, DataError, JaxcondError


class DivergedError(JaxcondError):
  """The loss (or the synthetic set) became NaN/Inf; the last good checkpoint is kept."""


@dataclasses.dataclass(frozen=True)
class Paths:
  """The files of a workdir (docs/condense.md "Outputs")."""
  workdir: str
  config: str
  metrics: str
  eval: str
  checkpoints: str
  images: str
  synthetic: str
  final_png: str

  @classmethod
  def of(cls, workdir: str) -> "Paths":
    workdir = files.absolute(workdir)       # a local folder or a bucket URL (jaxcond.files)
    at = lambda name: files.join(workdir, name)
    return cls(workdir, at("config.json"), at("metrics.jsonl"), at("eval.jsonl"),
               at("checkpoints"), at("images"), at("synthetic.npz"), at("synthetic.png"))

  @property
  def damaged(self) -> str:
    """Where checkpoints that no longer restore are moved (never deleted)."""
    return files.join(self.workdir, "damaged_checkpoints")


@dataclasses.dataclass
class Run:
  """What every stage reads: the frozen settings, the dataset, the mesh and the files.

  config: the ConfigDict (only planned from and written to config.json); s: the step's
  settings (chunks filled in by `plan_step`); r / d / e: run, data and evaluation settings
  (e None without evaluation).
  """
  config: Any
  s: steps.StepSettings
  r: configs.RunSettings
  d: configs.DataSettings
  e: Any
  info: registry.DatasetInfo
  mesh: Any
  paths: Paths
  printer: progress.Printer
  t_start: float
  model: Any = None
  t_data: float = 0.0     # seconds to load the real data (open_real_data)
  pool: Any = None        # trained feature nets (host arrays, `pool_files.load`) or None
  pool_manifest: dict | None = None
  tb: tblog.Writer = dataclasses.field(default_factory=lambda: tblog.Writer(None))

  @property
  def is_main(self) -> bool:
    return jax.process_index() == 0

  @property
  def num_classes(self) -> int:
    return self.info.num_classes

  @property
  def c_pad(self) -> int:
    return parallel.padded_num_classes(self.num_classes, self.mesh)


# ----------------------------------------------------------------------------- the run

def run(config, workdir: str, *, log=None,
        stop: preemption.Preemption | None = None) -> dict[str, Any]:
  """Condenses `config.dataset` into `workdir` (resuming if it holds checkpoints).

  Returns a summary dict: steps, final loss, paths, evaluation result (or None).
  Raises ConfigError / DataError for bad input, DivergedError when the loss goes NaN/Inf,
  files.StorageError when the workdir refuses a write, and preemption.PreemptedError
  after SIGTERM or a first Ctrl-C (checkpoint written; docs/condense.md "Faults and
  preemption"). `stop`: the signal handling (default `preemption.Preemption()`: a second
  Ctrl-C raises KeyboardInterrupt; the command line's ends the process at once).
  """
  ctx = setup(config, workdir, log=log)
  try:
    return workdir_lib.run_locked(ctx.paths.workdir, lambda stop: _stages(ctx, stop),
                                  stop=stop, starting=STARTING,
                                  warn=lambda line: ctx.printer(line, force=True))
  finally:
    ctx.tb.close()


STARTING = ("preempted while starting (no step run yet): nothing to save; re-run the same "
            "command to resume")


def _stages(ctx: Run, stop: preemption.Preemption) -> dict[str, Any]:
  """`run` after the lock: the stages, each with what a signal does there."""
  ctx.tb = tblog.for_workdir(ctx.paths.workdir, ctx.r.tensorboard, is_main=ctx.is_main)
  stop.cleanups.append(ctx.tb.close)
  with stop.immediate(STARTING):
    planned = plan_step(ctx)
    source = open_real_data(ctx)
  ckpt = checkpoint.Checkpointer(ctx.paths.checkpoints, max_to_keep=ctx.r.keep_checkpoints)
  loop, start, ok = None, 0, False
  try:
    with stop.immediate(STARTING):
      state, start = init_or_resume(ctx, ckpt, source)
      compiled, t_compile = compile_step(ctx, planned, source, state, start)
    loop = Loop(ctx, ckpt, start, stop)
    state = train(ctx, loop, compiled, source, state, start)
    ok = True
  except files.StorageError as err:
    if loop is not None:
      try:
        loop.wait()             # a checkpoint save still running may complete
      except files.StorageError:
        pass
    raise files.StorageError(storage_line(ctx, err, loop.confirmed if loop else start)) from None
  finally:
    source.close()
    try:
      ckpt.close()
    except files.StorageError as err:
      if ok:     # otherwise the error already on its way says more
        raise files.StorageError(storage_line(ctx, err, loop.confirmed)) from None
  done = (f"preempted after the last step ({ctx.r.steps}): its checkpoint is in "
          f"{ctx.paths.checkpoints}; re-run the same command to write the outputs")
  try:
    with stop.immediate(done):
      return finish(ctx, state, loop, t_compile)
  except files.StorageError as err:
    raise files.StorageError(f"workdir {ctx.paths.workdir}: {err}; the checkpoint of step "
                             f"{ctx.r.steps} is intact: free space (or restore access) and "
                             f"re-run the same command to write the outputs") from None


def storage_line(ctx: Run, err: files.StorageError, good: int) -> str:
  """The one line of a write the storage refused before the outputs: the workdir, the
  cause, and the checkpoint (step `good`, 0: none) that is still there to resume from."""
  kept = (f"the checkpoint of step {good} is intact: free space (or restore access) and "
          f"re-run the same command to resume" if good else
          "no checkpoint was written before it: free space (or restore access) and re-run "
          "the same command")
  return f"workdir {ctx.paths.workdir}: {err}; {kept}"


def setup(config, workdir: str, *, log=None) -> Run:
  """Validates `config` (nothing read, nothing compiled) and freezes it into settings."""
  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  check_workdir(workdir)
  configs.validate(config)
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  configs.validate_known_counts(config, info)   # before the plan compiles anything
  pool, manifest = load_pool(config, info)
  extra = {"pool.content_hash": manifest["content_hash"]} if manifest else None
  r = configs.RunSettings.from_config(config, extra)
  if r.tensorboard:
    tblog.require()      # before any work: a one-line error when the writer is missing
  mesh = parallel.make_mesh(r.num_devices)
  s = configs.step_settings(config, info, pool_size=int(manifest["size"]) if manifest else 0)
  ctx = Run(config=config, s=s, r=r, d=configs.DataSettings.from_config(config),
            e=evaluate.EvalSettings.from_config(config) if r.eval_num_nets else None,
            info=info, mesh=mesh, paths=Paths.of(workdir),
            printer=progress.Printer(quiet=r.quiet, enabled=jax.process_index() == 0,
                                     stream=log),
            t_start=time.perf_counter(), model=steps.make_model(s), pool=pool,
            pool_manifest=manifest)
  if manifest:
    ctx.printer(f"feature nets: {manifest['size']} trained {manifest['model']['name']} from "
                f"{config.pool.path} (content hash {manifest['content_hash'][:16]})"
                + (f", calibration weight {s.calib_weight:g}" if s.uses_calib else ""))
  elif s.calib_weight > 0:
    ctx.printer(f"calib.weight {s.calib_weight:g} is not used: calibration needs trained "
                f"nets (pool.path); each step draws a random net")
  return ctx


def load_pool(config, info) -> tuple[Any, dict | None]:
  """(stacked host arrays, manifest) of `pool.path`, checked against this run's net and
  training images (`pool_files.load`), or (None, None) without a pool."""
  path = config.pool.path
  if not path:
    return None, None
  pool, manifest = pool_files.load(path, model=configs.model_record(config, info))
  want = configs.dataset_record(config)
  got = manifest.get("dataset", {})
  diff = [k for k in want if got.get(k) != want[k]]
  if diff:
    k = diff[0]
    raise ConfigError(f"pool.path: {path} was trained with dataset.{k}={got.get(k)!r}, this "
                      f"run has {want[k]!r} (train a pool on this run's training images)")
  return pool, manifest


def plan_step(ctx: Run) -> plan_lib.Plan:
  """Chunk sizes from the memory budget, checked by compiling the step from shapes only:
  a config that cannot fit fails here, before any data is read (`jaxcond.plan`)."""
  s = ctx.s
  depth = int(ctx.info.max_per_class or 2 * max(s.batch_real, s.ipc * s.factor ** 2))
  planned = plan_lib.make_plan(ctx.config, s, ctx.mesh, depth=depth,
                               streaming=ctx.d.streaming, log=ctx.printer)
  ctx.s = planned.settings
  return planned


def open_real_data(ctx: Run) -> realdata.RealSource:
  """The bank or the stream (`realdata.open_source`), then the workdir's folders."""
  t0 = time.perf_counter()
  check = lambda counts: configs.validate_counts(ctx.config, counts, ctx.info.class_names)
  source = realdata.open_source(ctx.d, ctx.info, ctx.s, ctx.mesh, check_counts=check)
  if ctx.pool is not None:
    source = realdata.WithPool(source, realdata.place_pool(ctx.pool, ctx.mesh))
  ctx.t_data = time.perf_counter() - t0
  if ctx.is_main:
    files.makedirs(ctx.paths.images)
  parallel.sync("jaxcond_workdir")
  return source


def init_or_resume(ctx: Run, ckpt: checkpoint.Checkpointer, source: realdata.RealSource):
  """(state, start step): the latest checkpoint if there is one, else a new synthetic set
  (`synthetic.init` images from the real data); writes DIR/config.json."""
  state, start = resume(ctx, ckpt)
  if start:
    ctx.printer(f"resuming from {ctx.paths.checkpoints} at step {start}", force=True)
    if ctx.is_main:
      progress.truncate_jsonl(ctx.paths.metrics, max_step=start)
      progress.truncate_jsonl(ctx.paths.eval, max_step=start)
  else:
    if ctx.is_main:
      for p in (ctx.paths.metrics, ctx.paths.eval):
        files.remove(p)
    syn = source.initial_synthetic(ctx.s, ctx.r.init, parallel.class_sharding(ctx.mesh, 5))
    state = jax.jit(lambda x: steps.init_state(ctx.s, x),
                    out_shardings=plan_lib.state_shardings(ctx.s, ctx.mesh))(syn)
  if ctx.is_main:
    write_config_json(ctx, start, source.identity)
  return state, start


def resume(ctx: Run, ckpt: checkpoint.Checkpointer):
  """(state, step) of the newest checkpoint that restores, or (None, 0) without any.

  A checkpoint that does not restore (truncated or corrupt files, missing or garbled
  metadata, arrays that do not match their checksums) is moved to DIR/damaged_checkpoints
  with one warning line naming it and why, and the next older one is tried; every process
  must restore a step for it to count. None restoring is a one-line DataError (nothing is
  moved then). A checkpoint made with another trajectory is a ConfigError, not damage.
  """
  found = ckpt.all_steps()
  damaged = []
  for step in reversed(found):
    why = ""
    try:
      state = restore(ctx, ckpt, step)
    except ConfigError:
      raise
    except Exception as err:  # pylint: disable=broad-except  (whatever orbax raises)
      state, why = None, checkpoint.damage_reason(err)
    oks = parallel.host_allgather(np.int32(not why)).reshape(-1)
    if oks.all():
      break
    damaged.append((step, why or "it does not restore on another process"))
  else:
    if found:
      step, why = damaged[0]
      raise DataError(
          f"checkpoints: none of the {len(found)} checkpoint(s) in {ctx.paths.checkpoints} "
          f"restores (newest, step {step}: {why}); move them away to start again, or use "
          f"another --workdir")
    return None, 0
  if damaged:
    if ctx.is_main:
      for bad, why in damaged:
        dest = ckpt.move_aside(bad, ctx.paths.damaged)
        ctx.printer(f"warning: checkpoint step {bad} in {ctx.paths.checkpoints} is damaged "
                    f"({why}); moved to {dest}; resuming from step {step}", force=True)
    parallel.sync("jaxcond_damaged_moved")
    ckpt.reload()
  return state, step


def restore(ctx: Run, ckpt: checkpoint.Checkpointer, step: int):
  """The state of checkpoint `step`, checked against this run's trajectory and placed on
  this mesh (re-padded when it was made with another device count)."""
  check_resume(ckpt.restore_meta(step), ctx.r, ctx.paths.workdir, step)
  abstract = jax.eval_shape(
      lambda: steps.init_state(ctx.s, jnp.zeros((ctx.c_pad, ctx.s.ipc)
                                                + tuple(ctx.info.image_shape))))
  abstract = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                          abstract, plan_lib.state_shardings(ctx.s, ctx.mesh))
  if [tuple(a.shape) for a in jax.tree.leaves(abstract)] != ckpt.saved_shapes(step):
    return restore_repadded(ckpt, step, abstract, ctx.num_classes)
  return ckpt.restore(step, abstract)[0]


def compile_step(ctx: Run, planned: plan_lib.Plan, source: realdata.RealSource, state,
                 start: int):
  """(the compiled step `fn(state, *real_args, step)`, compile seconds). The plan compiled
  this program from shapes; when the arguments match, it is reused, not compiled again."""
  s, r = ctx.s, ctx.r
  if start < r.steps:   # the first compile is a silent minute on small CPUs
    ctx.printer(f"compiling the {s.method} step ({ctx.num_classes} classes, data loaded in "
                f"{ctx.t_data:.1f}s) ...")
  t0 = time.perf_counter()
  compiled = None
  if start < r.steps:
    args = (state, *source.arg_specs(s), jnp.int32(start))
    compiled = planned.executable_for(*args) or plan_lib.build_step(
        s, ctx.mesh, streaming=source.streaming, model=ctx.model).lower(*args).compile()
  t_compile = time.perf_counter() - t0
  if compiled is not None and compiled is planned.stats.get("compiled"):
    t_compile += planned.compile_s      # compiled once, while planning
  ctx.printer(f"{s.method} on {ctx.info.name}: {ctx.num_classes} classes x ipc {s.ipc} "
              f"(factor {s.factor}), {r.steps} steps, {ctx.mesh.size} device(s) "
              f"[{jax.devices()[0].platform}], {jax.process_count()} process(es); "
              f"data {ctx.t_data:.1f}s, compile {t_compile:.1f}s")
  return compiled, t_compile


def train(ctx: Run, loop: "Loop", compiled, source: realdata.RealSource, state, start: int):
  """Runs steps `start .. steps - 1`: one update each, then whatever is due (a log line, a
  checkpoint, a grid, an in-loop evaluation); ends with a checkpoint of the last step."""
  r = ctx.r
  if start == 0:   # every process takes part in the gather; process 0 writes
    save_grid(ctx, state, "init.png", f"initial set ({r.init})", 0)
  source.start(start, r.steps)
  step = start
  if step < r.steps and loop.stop.should_stop(step):
    loop.preempt(step, state)
  previous = None
  while step < r.steps:
    state, m = compiled(state, *source.step_args(step), jnp.int32(step))
    step += 1
    loop.pending.append((step - 1, m))   # loss of the state before update `step`
    if previous is not None:   # at most one step queued behind this one: a stop is quick
      previous.block_until_ready()
    previous = m["loss"]
    if step % r.log_every == 0 or step == r.steps:
      loop.flush(step)
    if r.checkpoint_every and step % r.checkpoint_every == 0 and step < r.steps:
      loop.save(step, state)
    elif r.image_every and step % r.image_every == 0:
      save_grid(ctx, state, f"step_{step:07d}.png", f"step {step}", step)
    if r.eval_every and ctx.e is not None and step % r.eval_every == 0 and step < r.steps:
      loop.check()
      if loop.stop.active and not loop.stop.multi:
        # a stop during the evaluation (minutes) then loses nothing: the step is saved
        loop.save_now(step, state)
      with loop.stop.immediate(
          f"preempted at step {step} during its evaluation: checkpoint written to "
          f"{ctx.paths.checkpoints}; re-run the same command to resume"):
        in_loop_eval(ctx, state, step, loop)
    if step < r.steps and loop.stop.should_stop(step):
      loop.preempt(step, state)
  loop.flush(step)
  if not loop.ckpt.all_steps() or loop.ckpt.latest_step() != step:
    loop.save(step, state)
  loop.wait()
  return state


def finish(ctx: Run, state, loop: "Loop", t_compile: float) -> dict[str, Any]:
  """Writes synthetic.npz and its grid, the final evaluation and report.html."""
  step = ctx.r.steps
  x_host = parallel.to_host(state["syn"])[:ctx.num_classes]
  out = export(ctx, x_host, step)
  done = [rec for rec in (progress.read_jsonl(ctx.paths.eval)
                          if files.exists(ctx.paths.eval) else [])
          if rec.get("step") == step]
  result = None
  if done:
    result = done[-1]
  elif ctx.e is not None:
    result = in_loop_eval(ctx, state, step, loop, x_host=x_host)
  parallel.sync("jaxcond_done")
  if ctx.is_main:
    write_report(ctx.paths.workdir, ctx.printer)
  ctx.printer(f"done: {step} steps in "
              f"{progress.format_duration(time.perf_counter() - ctx.t_start)}; "
              f"{ctx.paths.synthetic}", force=not ctx.r.quiet)
  return {"step": step, "loss": loop.last_loss, "workdir": ctx.paths.workdir,
          "synthetic": out, "eval": result, "compile_s": t_compile,
          "num_devices": ctx.mesh.size}


# ----------------------------------------------------------------------------- the loop

class Loop:
  """The loop's bookkeeping: metrics still on the device, the NaN/Inf check, one log line
  per interval (metrics.jsonl and the terminal), checkpoints and evaluation records."""

  def __init__(self, ctx: Run, ckpt: checkpoint.Checkpointer, start: int,
               stop: preemption.Preemption | None = None):
    self.ctx, self.ckpt = ctx, ckpt
    self.stop = stop or preemption.Preemption()   # not entered: never asks to stop
    self.pending: list = []        # (step, metrics on the device) not yet logged
    self.last_good = start         # newest checkpoint step (0: none)
    self.confirmed = start         # newest checkpoint known to be on disk
    self._unconfirmed: int | None = None
    self.interval_start = start
    self.last_loss = float("nan")
    self.timer = progress.Timer()
    self.metrics_log = progress.JsonlWriter(ctx.paths.metrics, enabled=ctx.is_main)
    self.eval_log = progress.JsonlWriter(ctx.paths.eval, enabled=ctx.is_main)
    self.eval_cache: dict[str, Any] = {}
    self.per_step_images = steps.images_per_step(ctx.s)

  def check(self) -> None:
    """Fetches the pending metrics to the host (blocks) and stops on a NaN/Inf loss."""
    self.pending = [(step, {k: np.asarray(jax.device_get(v)) for k, v in m.items()})
                    for step, m in self.pending]
    bad = next(((step, m) for step, m in self.pending
                if not np.isfinite(m["loss"]) or not bool(m["finite"])), None)
    if bad is None:
      return
    self.ckpt.wait()
    bstep, m = bad
    what = (f"loss is {float(m['loss'])}" if not np.isfinite(m["loss"])
            else "the synthetic set has non-finite pixels")
    if self.last_good:
      kept = f"Last good checkpoint: step {self.last_good} in {self.ctx.paths.checkpoints}"
    else:
      kept = "No checkpoint was written before it (nothing to resume from)"
    raise DivergedError(f"step {bstep}: {what}; stopping (try a smaller synthetic.lr). {kept}")

  def flush(self, step_now: int) -> None:
    """Checks the pending metrics and logs one line (JSONL + terminal) for them."""
    if not self.pending:
      return
    self.check()
    fetched, self.pending = self.pending, []
    dt = self.timer.lap()
    n = step_now - self.interval_start
    self.interval_start = step_now
    step_time = dt / max(n, 1)
    mean = {k: float(np.mean([m[k] for _, m in fetched])) for k in fetched[-1][1]
            if k.startswith("loss")}
    self.last_loss = mean["loss"]
    ips = self.per_step_images / step_time
    record = {"step": step_now, **mean, "steps_in_interval": n, "step_time_s": step_time,
              "images_per_s": ips}
    self.metrics_log.write(record)
    self.ctx.tb.scalars(step_now, record)     # the same values as metrics.jsonl
    terms = {k.split("/", 1)[1]: v for k, v in mean.items() if "/" in k}
    steps_total = self.ctx.r.steps
    self.ctx.printer(progress.progress_line(step_now, steps_total, mean["loss"], ips,
                                          step_time * (steps_total - step_now), terms))

  def save(self, step_now: int, state, *, grid: bool = True) -> None:
    """Checks the metrics, then an asynchronous checkpoint and the step's grid."""
    self.check()
    r = self.ctx.r
    self.wait()                 # the previous save (orbax runs one at a time anyway)
    self.ckpt.save(step_now, state, {"step": step_now, "config_hash": r.config_hash,
                                     "trajectory": dict(r.trajectory),
                                     "versions": versions()})
    self._unconfirmed = self.last_good = step_now
    if grid:
      save_grid(self.ctx, state, f"step_{step_now:07d}.png", f"step {step_now}", step_now)

  def wait(self) -> None:
    """Waits for the running checkpoint save (StorageError if the storage refused it)."""
    self.ckpt.wait()
    if self._unconfirmed is not None:
      self.confirmed, self._unconfirmed = self._unconfirmed, None

  def save_now(self, step_now: int, state) -> None:
    """The checkpoint of `step_now` on disk before going on (written unless it is the
    last one saved; no grid), for a stop that may come next."""
    if self.last_good != step_now:
      self.save(step_now, state, grid=False)
    self.wait()

  def preempt(self, step_now: int, state) -> None:
    """Stops after `step_now` on a signal (`jaxcond.preemption`): logs the steps since the
    last line, writes the checkpoint (no grid: the machine has seconds left), waits for
    it, and raises PreemptedError with the one line to print."""
    self.flush(step_now)
    self.save_now(step_now, state)
    where = self.ctx.paths.checkpoints
    if step_now == 0:
      line = "preempted at step 0: nothing to save; re-run the same command to start"
    else:
      line = (f"preempted at step {step_now}: checkpoint written to {where}; re-run the "
              f"same command to resume")
    raise self.stop.error(line)


# ----------------------------------------------------------------------------- pieces

def check_workdir(workdir: str) -> None:
  """One-line ConfigError before any data is read: `workdir` must be (or be creatable
  as) a writable folder."""
  if files.is_remote(workdir):
    return      # a bucket: the lock and the shared-workdir check write there first
  p = os.path.abspath(os.fspath(workdir))
  if os.path.exists(p) and not os.path.isdir(p):
    raise ConfigError(f"workdir: {p} is a file, not a folder; pass a folder for the outputs")
  probe = p
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe):
    raise ConfigError(f"workdir: cannot create {p}: {probe} is a file")
  if not os.access(probe, os.W_OK | os.X_OK):
    what = "is not writable" if probe == p else f"cannot be created ({probe} is not writable)"
    raise ConfigError(f"workdir: {p} {what}")


def check_resume(meta: dict, r: configs.RunSettings, workdir: str, step: int) -> None:
  """ConfigError unless checkpoint `step` (its `meta`) was made with this run's trajectory."""
  saved = meta.get("trajectory", {})
  now = dict(r.trajectory)
  diff = configs.differing_fields(json.loads(json.dumps(saved)), json.loads(json.dumps(now)))
  if diff:
    f = diff[0]
    raise ConfigError(
        f"{f}: {workdir} holds a checkpoint (step {step}) made with {f}={saved.get(f)!r}, "
        f"not {now.get(f)!r}; use another --workdir or delete {workdir}/checkpoints")
  if step > r.steps:
    raise ConfigError(f"steps: {workdir}/checkpoints is already at step {step} > "
                      f"steps={r.steps}; use another --workdir")


def restore_repadded(ckpt, step, abstract, num_classes):
  """Restores a checkpoint made with another padded class count (another device count)."""
  if jax.process_count() > 1:
    raise ConfigError("num_devices: this checkpoint was made with another number of devices; "
                      "resume it with the same device count in a multi-process run")
  saved_shapes = ckpt.saved_shapes(step)
  leaves, treedef = jax.tree.flatten(abstract)
  if len(leaves) != len(saved_shapes):
    raise ConfigError(f"checkpoint step {step}: its state has {len(saved_shapes)} arrays, "
                      f"this config needs {len(leaves)}")
  rep = parallel.replicated(parallel.make_mesh(1))
  saved_abstract = jax.tree.unflatten(treedef, [
      jax.ShapeDtypeStruct(shp, a.dtype, sharding=rep) for a, shp in zip(leaves, saved_shapes)])
  state, _ = ckpt.restore(step, saved_abstract)

  def repad(x, target):
    if not target.shape:       # a scalar of the optimiser state (Adam's count, plateau)
      return jax.device_put(np.asarray(jax.device_get(x)), target.sharding)
    x = np.asarray(jax.device_get(x))[:num_classes]
    pad = np.zeros((target.shape[0] - num_classes,) + x.shape[1:], x.dtype)
    return jax.device_put(np.concatenate([x, pad]), target.sharding)

  return jax.tree.map(repad, state, abstract)


def versions() -> dict[str, str]:
  """Library versions recorded with every checkpoint and in config.json."""
  return {"jaxcond": jaxcond.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "optax": optax.__version__,
          "orbax": importlib.metadata.version("orbax-checkpoint"), "numpy": np.__version__,
          "python": platform.python_version()}


def synthetic_set(x_host, s: steps.StepSettings, info, steps_done: int):
  """The condensed set as a `synthetic_io.SyntheticSet` (the one file format, also what the
  grids draw): the jitted `steps.export_images` decodes and normalises, synthetic_io lays
  it out."""
  x_norm, x_dec = steps.export_images(x_host, s)
  names = info.class_names or tuple(str(c) for c in range(x_host.shape[0]))
  return synthetic_io.make(np.asarray(x_norm), None if x_dec is None else np.asarray(x_dec),
                           mean=info.mean, std=info.std, dataset=info.name, method=s.method,
                           space=s.space, factor=s.factor, steps=steps_done, seed=s.seed,
                           class_names=names)


def save_grid(ctx: Run, state, name: str, what: str, step: int) -> None:
  """DIR/images/NAME: a labelled grid of the current set (every process gathers, the first
  writes)."""
  x = parallel.to_host(state["syn"])[:ctx.num_classes]
  if ctx.is_main:
    sset = synthetic_set(x, ctx.s, ctx.info, step)
    paths = grids.save_set_grid(files.join(ctx.paths.images, name), sset,
                                title=grids.set_title(sset, what))
    ctx.tb.png("synthetic", step, paths[0])   # the PNG just written, as TensorBoard shows it


def export(ctx: Run, x_host, steps_done: int) -> str:
  """Writes synthetic.npz (`jaxcond.synthetic_io` format) and the final PNG grid."""
  if not ctx.is_main:
    return ctx.paths.synthetic
  sset = synthetic_set(x_host, ctx.s, ctx.info, steps_done)
  synthetic_io.save(ctx.paths.synthetic, sset)
  grids.save_set_grid(ctx.paths.final_png, sset,
                       title=grids.set_title(sset, f"final, step {steps_done}"))
  return ctx.paths.synthetic


def in_loop_eval(ctx: Run, state, step: int, loop: Loop, x_host=None):
  """Scores the current set with `evaluate.evaluate_set` (what `python -m jaxcond.evaluate`
  calls), appends its record (+ step, decoded) to DIR/eval.jsonl and returns it."""
  cache = loop.eval_cache
  if jax.process_count() > 1:
    # jaxcond.evaluate lays its networks over jax.devices(), which spans every process;
    # evaluate the exported set afterwards with `python -m jaxcond.evaluate` instead.
    if not cache.get("warned"):
      ctx.printer("evaluation skipped in a multi-process run: run `python -m jaxcond.evaluate "
                  "--synthetic DIR/synthetic.npz` on one host", force=True)
      cache["warned"] = True
    return None
  if x_host is None:
    x_host = parallel.to_host(state["syn"])[:ctx.num_classes]
  if "test" not in cache:
    cache["test"] = evaluate.load_test_split(ctx.d, ctx.info)
  x_test, y_test = cache["test"]
  sset = synthetic_set(x_host, ctx.s, ctx.info, step)
  rec, _ = evaluate.evaluate_set(sset.x, sset.y, x_test, y_test, settings=ctx.e,
                                 num_classes=ctx.num_classes,
                                 measured_on=evaluate.test_split_name(int(ctx.d.holdout)),
                                 log=lambda line: ctx.printer(f"  eval {line}"))
  record = {"step": step, **rec, "decoded": sset.decoded}
  loop.eval_log.write(record)
  ctx.tb.scalars(step, {"accuracy": rec["mean"], "accuracy_std": rec["std"]}, prefix="eval/")
  ctx.printer(f"eval @ step {step}: {evaluate.summary_line(rec)}", force=True)
  return record


def write_config_json(ctx: Run, start: int, identity: str = "") -> None:
  """DIR/config.json: the config, its hash, the dataset, versions, devices, the command."""
  info = ctx.info
  pool = ctx.pool_manifest
  files.write_json(ctx.paths.config, {
      "config": configs.to_jsonable(ctx.config),
      "config_hash": ctx.r.config_hash,
      "pool": None if pool is None else {
          "path": os.path.abspath(ctx.config.pool.path), "size": pool["size"],
          "content_hash": pool["content_hash"], "train_accuracy": pool.get("train_accuracy"),
          "test_accuracy": pool.get("test_accuracy")},
      "dataset_info": {"name": info.name, "num_classes": info.num_classes,
                       "image_shape": list(info.image_shape), "mean": list(info.mean),
                       "std": list(info.std)},
      "versions": versions(),
      "devices": [str(d) for d in ctx.mesh.devices.flat],
      "platform": jax.devices()[0].platform,
      "process_count": jax.process_count(),
      "resumed_from_step": start,
      "data_load_s": ctx.t_data,
      "dataset_identity": identity,
      "command": " ".join(sys.argv) if sys.argv else "",
  })


def write_report(workdir: str, printer) -> None:
  """WORKDIR/report.html at the end of a run; a report problem never loses a finished run."""
  try:
    printer(f"report: {report.write(workdir)}")
  except Exception as err:  # pylint: disable=broad-except
    printer(f"report not written ({type(err).__name__}: {err}); the run's outputs are "
            f"complete; retry with python -m jaxcond.report {workdir}", force=True)


# ----------------------------------------------------------------------------- subsets

def classes_config(config, method: str):
  """The condense config of `method` inside a program config (continual, nas: a `methods`
  block of condense configs), with the program's dataset, ipc and model copied in."""
  if method not in config.methods:
    raise ConfigError(f"methods.{method}: missing (memories list {method!r})")
  c = copy.deepcopy(config.methods[method])
  c.dataset = copy.deepcopy(config.dataset)
  c.ipc = int(config.ipc)
  c.model = copy.deepcopy(config.model)
  return c


def condense_classes(cfg, info, images, labels, classes, *, seed: int,
                     log: Callable | None = None) -> tuple[np.ndarray, dict]:
  """Condenses the real images of `classes` (global ids) with `cfg` (a condense config:
  method, ipc, steps, ...) -> (normalised images [k·n, H, W, ch] class-major, info dict).

  The same settings (`configs.step_settings`), initialisation and jitted bank step as
  `run`, on an unsharded bank of these classes only, with no checkpoints (the caller's
  result files are the unit of resumption). Decoded images for factor > 1 (M3D).
  """
  classes = [int(c) for c in classes]
  configs.validate(cfg)
  if cfg.pool.path:
    raise ConfigError("pool.path: trained feature nets are for whole-dataset runs "
                      "(python -m jaxcond.condense); condensing a class subset uses random nets")
  configs.validate_shapes(cfg, info.image_shape)
  counts = np.bincount(labels, minlength=info.num_classes)[classes]
  configs.validate_counts(cfg, counts, [info.class_names[c] for c in classes]
                          if info.class_names else None)
  s = dataclasses.replace(configs.step_settings(cfg, info), num_classes=len(classes),
                          seed=int(seed))
  bank = data.build_bank(images, labels, info.num_classes, classes=classes)
  t0 = time.perf_counter()
  init_fn, step_fn = _subset_fns(s, cfg.synthetic.init)
  state = steps.init_state(s, init_fn(bank))
  losses = []
  for i in range(int(cfg.steps)):
    state, m = step_fn(state, bank, jnp.int32(i))
    if (i + 1) % max(int(cfg.log_every), 1) == 0 or i + 1 == cfg.steps:
      losses.append(float(m["loss"]))
      if not np.isfinite(losses[-1]):
        raise JaxcondError(f"{s.method}: loss became {losses[-1]} at step {i} while "
                           f"condensing classes {classes}; try a smaller synthetic.lr")
      if log:
        log(f"{s.method} classes {classes}: step {i + 1}/{cfg.steps} loss {losses[-1]:.4g}")
  x_norm, x_dec = steps.export_images(state["syn"], s)
  x = np.asarray(x_dec if x_dec is not None else x_norm, np.float32)
  x = x.reshape((-1,) + tuple(info.image_shape))
  return x, {"seconds": time.perf_counter() - t0, "steps": int(cfg.steps),
             "final_loss": losses[-1] if losses else None, "stored_ipc": s.ipc,
             "factor": s.factor}


@functools.lru_cache(maxsize=16)
def _subset_fns(s: steps.StepSettings, init: str):
  """Jitted (init, step) of settings `s`, kept so that calls with the same settings (the
  steps of one continual-learning order) compile once."""
  model = steps.make_model(s)
  return (jax.jit(steps.init_synthetic(s, init, data.sample_real)),
          jax.jit(steps.make_bank_step(s, data.sample_real, None, model), donate_argnums=(0,)))


# ----------------------------------------------------------------------------- CLI

PROGRAM = cli.Program(
    name="condense",
    summary="Condense a dataset with DM, M3D, DDM or NCFM into DIR/synthetic.npz (resumes "
            "from DIR/checkpoints).",
    examples=("python -m jaxcond.condense --config experiments/quickstart.py "
              "--workdir runs/quickstart",
              "python -m jaxcond.condense --config experiments/cifar10.py:method=m3d,ipc=10 "
              "--workdir runs/c10_m3d_10 --config.steps=2000"),
    flags=cli.DISTRIBUTED_FLAGS + cli.plan_flags("the memory plan (jaxcond.plan)"),
    workdir_unless=("plan",))


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.condense`; exit status 0 done, 2 bad input, 1 diverged or a write
  the storage refused, 3 preempted (checkpoint written; cli)."""
  def go(a: cli.Args):
    if not a.flags.plan:
      preemption.install_early(STARTING)
    if a.flags.plan:
      plan_lib.setup_fake_devices(a.flags.devices)
      print(json.dumps(plan_lib.run_plan(a.config, a.flags.devices or 0)), flush=True)
      return
    cli.start_distributed(a.flags)
    run(a.config, a.workdir, stop=preemption.Preemption(command_line=True))
  return cli.main(PROGRAM, go, argv)


if __name__ == "__main__":
  sys.exit(main())

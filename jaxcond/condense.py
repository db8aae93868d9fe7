"""`python -m jaxcond.condense`: condense a dataset with DM, M3D or DDM.

    python -m jaxcond.condense --config experiments/quickstart.py --workdir runs/quickstart
    python -m jaxcond.condense --config experiments/cifar10.py:method=m3d,ipc=10 \\
        --workdir runs/c10_m3d_10 --r.steps=2000

The same as a library call (notebooks): `jaxcond.condense.run(config, workdir)`.

What a run does (docs/condense.md has the details and the output formats):
1. validates the config (one-line ConfigError naming the field, before any compilation);
2. loads the training split (each process only its own classes) into a class bank sharded
   over a 1-D device mesh (`jaxcond.parallel`);
3. resumes from the latest checkpoint in `DIR/checkpoints` when there is one, else
   initialises the synthetic set;
4. runs the jitted step (`jaxcond.steps`) `steps` times, logging, checkpointing (orbax,
   async) and evaluating (`jaxcond.evaluate`) along the way;
5. writes `DIR/synthetic.npz`, a PNG grid and the final evaluation.
The objective of each method is documented in `jaxcond.steps` (DM, arXiv 2110.04181;
M3D, arXiv 2312.15927; DDM, arXiv 2412.04748).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np

from jaxcond import cli, configs, files
from jaxcond.errors import ConfigError, JaxcondError


_INIT_STREAM_STEP = 2**31 - 1   # streaming: the step index whose draw initialises the set


class DivergedError(JaxcondError):
  """The loss (or the synthetic set) became NaN/Inf; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------- helpers

def _workdir_paths(workdir: str) -> dict[str, str]:
  return {
      "config": os.path.join(workdir, "config.json"),
      "metrics": os.path.join(workdir, "metrics.jsonl"),
      "eval": os.path.join(workdir, "eval.jsonl"),
      "checkpoints": os.path.join(workdir, "checkpoints"),
      "images": os.path.join(workdir, "images"),
      "synthetic": os.path.join(workdir, "synthetic.npz"),
      "final_png": os.path.join(workdir, "synthetic.png"),
  }


def _versions() -> dict[str, str]:
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jaxlib  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  import jaxcond  # pylint: disable=g-import-not-at-top
  return {"jaxcond": jaxcond.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "optax": optax.__version__,
          "orbax": getattr(ocp, "__version__", "?"), "numpy": np.__version__,
          "python": platform.python_version()}


def _data():
  from jaxcond import data  # pylint: disable=g-import-not-at-top
  return data


def _load_split(ds, split: str, classes=None):
  """ds: `configs.DataSettings`."""
  return _data().split_loader(ds)(split, classes)


def _global_counts(labels, info, local_ids) -> np.ndarray:
  """Training images per class, combined over processes (each loads only its classes)."""
  from jaxcond import parallel  # pylint: disable=g-import-not-at-top
  counts = np.bincount(labels, minlength=info.num_classes).astype(np.int64)
  mine = np.zeros_like(counts)
  mine[local_ids] = counts[local_ids]
  return parallel.host_allgather(mine).sum(axis=0)


def _check_resume(meta: dict, r, workdir: str, step: int) -> None:
  """r: `configs.RunSettings` (its trajectory is what a resumed run must match)."""
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


def _fetch_metrics(pending: list) -> list[tuple[int, dict]]:
  import jax  # pylint: disable=g-import-not-at-top
  out = []
  for step, m in pending:
    out.append((step, {k: np.asarray(jax.device_get(v)) for k, v in m.items()}))
  return out


def _first_bad(fetched: list[tuple[int, dict]]):
  for step, m in fetched:
    if not np.isfinite(m["loss"]) or not bool(m["finite"]):
      return step, m
  return None


# ----------------------------------------------------------------------------- the run

def run(config, workdir: str, *, log=None) -> dict[str, Any]:
  """Condenses `config.dataset` into `workdir` (resuming if it holds checkpoints).

  Returns a summary dict: steps, final loss, paths, evaluation result (or None).
  Raises ConfigError / DataError for bad input, DivergedError when the loss goes NaN/Inf.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxcond import checkpoint, parallel, report, steps  # pylint: disable=g-import-not-at-top
  from jaxcond import plan as plan_lib  # pylint: disable=g-import-not-at-top
  from jaxcond.data import registry  # pylint: disable=g-import-not-at-top

  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  check_workdir(workdir)
  configs.validate(config)
  info = registry.get_info(config.dataset.name,
                           resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  # Past this block the run reads frozen settings, not the ConfigDict (which is only
  # planned from and written to DIR/config.json).
  s = configs.step_settings(config, info)
  r = configs.RunSettings.from_config(config)
  d = configs.DataSettings.from_config(config)
  e = _eval_settings(config) if r.eval_num_nets else None
  model = steps.make_model(s)

  multiprocess = jax.process_count() > 1
  is_main = jax.process_index() == 0
  mesh = parallel.make_mesh(r.num_devices)
  num_classes = info.num_classes
  c_pad = parallel.padded_num_classes(num_classes, mesh)
  local_ids = parallel.local_classes(num_classes, mesh)
  printer = report.Printer(quiet=r.quiet, enabled=is_main, stream=log)
  # Chunk sizes from the memory budget, checked by compiling the step from shapes only:
  # a config that cannot fit fails here, before any data is read (jaxcond.plan).
  planned = plan_lib.make_plan(
      config, s, mesh, depth=int(info.max_per_class or 2 * max(s.batch_real, s.ipc * s.factor ** 2)),
      streaming=d.streaming, log=printer)
  s = planned.settings

  t_start = time.perf_counter()
  data = _data()
  # which files these are (MNIST vs Fashion-MNIST...), before loading
  identity = data.dataset_identity(d.name, "train", source=d.source or "auto",
                                   path=d.path or None, resolution=d.resolution or None)
  sharding5 = parallel.class_sharding(mesh, 5)
  bank = index = None
  if d.streaming:
    # Real batches are read from disk every step (jaxcond.data.ClassStream, grain); the
    # index only lists files, and each process reads only the classes of its slots.
    index = data.make_index(d.name, "train", source=d.source or "auto",
                            path=d.path or None, resolution=d.resolution or None)
    counts = np.asarray(index.counts)
    configs.validate_counts(config, counts, info.class_names)
  else:
    images, labels = _load_split(d, "train", local_ids if multiprocess else None)
    counts = _global_counts(labels, info, local_ids)
    configs.validate_counts(config, counts, info.class_names)
    # Slot i of the padded class axis holds class i; dummy slots (-1) come last. Each
    # process supplies only the classes on its own devices.
    bank = data.build_bank(images, labels, num_classes, pad_to=c_pad, sharding=sharding5)
    del images
  t_data = time.perf_counter() - t_start

  workdir = os.path.abspath(workdir)
  paths = _workdir_paths(workdir)
  if is_main:
    os.makedirs(paths["images"], exist_ok=True)
  parallel.sync("jaxcond_workdir")

  sharding = lambda ndim: parallel.class_sharding(mesh, ndim)
  syn_sharding = sharding(5)
  state_shardings = plan_lib.state_shardings(s, mesh)
  ckpt = checkpoint.Checkpointer(paths["checkpoints"], max_to_keep=r.keep_checkpoints)
  stream = None
  try:
    start = ckpt.latest_step() or 0
    state = None
    if start:
      meta = ckpt.restore_meta(start)
      _check_resume(meta, r, workdir, start)
      abstract = jax.eval_shape(
          lambda: steps.init_state(s, jnp.zeros((c_pad, s.ipc) + tuple(info.image_shape))))
      abstract = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                              abstract, state_shardings)
      saved = ckpt.saved_shapes(start)
      if [tuple(a.shape) for a in jax.tree.leaves(abstract)] != saved:
        state = _restore_repadded(ckpt, start, abstract, s, mesh, num_classes)
      else:
        state, _ = ckpt.restore(start, abstract)
      printer(f"resuming from {paths['checkpoints']} at step {start}", force=True)
      if is_main:
        report.truncate_jsonl(paths["metrics"], max_step=start)
        report.truncate_jsonl(paths["eval"], max_step=start)
    else:
      if is_main:
        for p in (paths["metrics"], paths["eval"]):
          if os.path.exists(p):
            os.remove(p)
      if bank is not None:
        init_fn = jax.jit(steps.init_synthetic(s, r.init, data.sample_real),
                          out_shardings=syn_sharding)
        syn = init_fn(bank)
      else:
        init_stream = data.ClassStream(index, batch=steps.init_count(s, r.init),
                                       seed=s.seed, pad_to=c_pad, sharding=sharding5)
        # A step index no training step uses, so the init images are an independent draw.
        real0 = init_stream.batch_at(_INIT_STREAM_STEP)
        real0 = parallel.global_from_local(real0, mesh, (c_pad,) + real0.shape[1:])
        ids = init_stream.device_fields()[1]
        syn = jax.jit(steps.init_from_real(s, r.init),
                      out_shardings=syn_sharding)(real0, ids)
      state = jax.jit(lambda x: steps.init_state(s, x), out_shardings=state_shardings)(syn)

    if is_main:
      _write_config_json(paths["config"], config, info, mesh, start, t_data,
                         identity=identity)

    if start < r.steps:   # the first compile is a silent minute on small CPUs
      printer(f"compiling the {s.method} step ({num_classes} classes, data loaded in "
              f"{t_data:.1f}s) ...")
    t0 = time.perf_counter()
    if bank is not None:
      compiled = None
      if start < r.steps:   # the plan compiled this program from shapes: reuse it
        args = (state, bank, jnp.int32(start))
        compiled = planned.executable_for(*args) or \
            plan_lib.build_step(s, mesh, model=model).lower(*args).compile()
      advance = lambda state, step: compiled(state, bank, jnp.int32(step))
    else:
      stream = data.ClassStream(index, batch=s.batch_real, seed=s.seed, pad_to=c_pad,
                                sharding=sharding5, start_step=start,
                                num_steps=max(r.steps - start, 1))
      stream_ids = stream.device_fields()[1]
      real_spec = jax.ShapeDtypeStruct((c_pad, s.batch_real) + tuple(info.image_shape),
                                       jnp.uint8, sharding=sharding5)
      compiled = None
      if start < r.steps:
        args = (state, real_spec, stream_ids, jnp.int32(start))
        compiled = planned.executable_for(*args) or plan_lib.build_step(
            s, mesh, streaming=True, model=model).lower(*args).compile()
      batches = iter(stream) if start < r.steps else None

      def advance(state, step):
        got, real = next(batches)
        if got != step:
          raise RuntimeError(f"stream yielded step {got}, expected {step}")
        return compiled(state, real, stream_ids, jnp.int32(step))
    t_compile = time.perf_counter() - t0
    if compiled is not None and compiled is planned.stats.get("compiled"):
      t_compile += planned.compile_s      # compiled once, while planning
    printer(f"{s.method} on {info.name}: {num_classes} classes x ipc {s.ipc} "
            f"(factor {s.factor}), {r.steps} steps, {mesh.size} device(s) "
            f"[{jax.devices()[0].platform}], {jax.process_count()} process(es); "
            f"data {t_data:.1f}s, compile {t_compile:.1f}s")

    metrics_log = report.JsonlWriter(paths["metrics"], enabled=is_main)
    eval_log = report.JsonlWriter(paths["eval"], enabled=is_main)
    per_step_images = steps.images_per_step(s)
    eval_cache: dict[str, Any] = {}
    pending: list = []
    last_good = start
    timer = report.Timer()
    interval_start = start
    last_loss = float("nan")

    def check() -> None:
      """Fetches pending metrics to the host (blocks) and stops on a NaN/Inf loss."""
      nonlocal pending
      pending = _fetch_metrics(pending)
      bad = _first_bad(pending)
      if bad is not None:
        ckpt.wait()
        bstep, m = bad
        what = (f"loss is {float(m['loss'])}" if not np.isfinite(m["loss"])
                else "the synthetic set has non-finite pixels")
        if last_good:
          kept = f"Last good checkpoint: step {last_good} in {paths['checkpoints']}"
        else:
          kept = "No checkpoint was written before it (nothing to resume from)"
        raise DivergedError(
            f"step {bstep}: {what}; stopping (try a smaller synthetic.lr). {kept}")

    def flush(step_now: int) -> None:
      """Checks the pending metrics and logs one line (JSONL + terminal) for them."""
      nonlocal pending, interval_start, last_loss
      if not pending:
        return
      check()
      fetched, pending = pending, []
      dt = timer.lap()
      n = step_now - interval_start
      interval_start = step_now
      step_time = dt / max(n, 1)
      mean = {k: float(np.mean([m[k] for _, m in fetched])) for k in fetched[-1][1]
              if k.startswith("loss")}
      last_loss = mean["loss"]
      ips = per_step_images / step_time
      record = {"step": step_now, **mean, "steps_in_interval": n,
                "step_time_s": step_time, "images_per_s": ips}
      metrics_log.write(record)
      terms = {k.split("/", 1)[1]: v for k, v in mean.items() if "/" in k}
      printer(report.progress_line(step_now, r.steps, mean["loss"], ips,
                                   step_time * (r.steps - step_now), terms))

    def save(step_now: int) -> None:
      nonlocal last_good
      check()
      ckpt.save(step_now, state, {"step": step_now, "config_hash": r.config_hash,
                                  "trajectory": dict(r.trajectory),
                                  "versions": _versions()})
      last_good = step_now
      _save_grid(os.path.join(paths["images"], f"step_{step_now:07d}.png"), state["syn"], s,
                 info, is_main, step_now, f"step {step_now}")

    if start == 0:   # every process takes part in the gather; process 0 writes
      _save_grid(os.path.join(paths["images"], "init.png"), state["syn"], s, info, is_main, 0,
                 f"initial set ({r.init})")

    step = start
    while step < r.steps:
      state, m = advance(state, step)
      step += 1
      pending.append((step - 1, m))   # loss of the state before update `step`
      if step % r.log_every == 0 or step == r.steps:
        flush(step)
      if r.checkpoint_every and step % r.checkpoint_every == 0 and \
          step < r.steps:
        save(step)
      elif r.image_every and step % r.image_every == 0:
        _save_grid(os.path.join(paths["images"], f"step_{step:07d}.png"), state["syn"], s,
                   info, is_main, step, f"step {step}")
      if r.eval_every and e is not None and step % r.eval_every == 0 and step < r.steps:
        check()
        _in_loop_eval(e, d, s, info, state, step, eval_cache, eval_log, printer)
    flush(step)
    if not ckpt.all_steps() or ckpt.latest_step() != step:
      save(step)
    ckpt.wait()
  finally:
    if stream is not None:
      stream.close()
    ckpt.close()

  x_host = parallel.to_host(state["syn"])[:num_classes]
  out = _export(paths, x_host, s, info, r.steps, is_main)
  result = None
  done = [r for r in (report.read_jsonl(paths["eval"]) if os.path.exists(paths["eval"])
                      else []) if r.get("step") == step]
  if done:
    result = done[-1]
  elif e is not None:
    result = _in_loop_eval(e, d, s, info, state, step, eval_cache, eval_log, printer,
                           x_host=x_host)
  parallel.sync("jaxcond_done")
  if is_main:
    _write_report(workdir, printer)
  printer(f"done: {step} steps in {report.format_duration(time.perf_counter() - t_start)}; "
          f"{paths['synthetic']}", force=not r.quiet)
  return {"step": step, "loss": last_loss, "workdir": workdir, "synthetic": out,
          "eval": result, "compile_s": t_compile, "num_devices": mesh.size}


def check_workdir(workdir: str) -> None:
  """One-line ConfigError before any data is read: `workdir` must be (or be creatable
  as) a writable folder."""
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


def _write_report(workdir: str, printer) -> None:
  """WORKDIR/report.html at the end of a run; a report problem never loses a finished run."""
  try:
    from jaxcond import report  # pylint: disable=g-import-not-at-top
    printer(f"report: {report.write(workdir)}")
  except Exception as err:  # pylint: disable=broad-except
    printer(f"report not written ({type(err).__name__}: {err}); the run's outputs are "
            f"complete; retry with python -m jaxcond.report {workdir}", force=True)


def _restore_repadded(ckpt, step, abstract, s, mesh, num_classes):
  """Restores a checkpoint made with another padded class count (another device count)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcond import parallel  # pylint: disable=g-import-not-at-top
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
    x = np.asarray(jax.device_get(x))[:num_classes]
    pad = np.zeros((target.shape[0] - num_classes,) + x.shape[1:], x.dtype)
    return jax.device_put(np.concatenate([x, pad]), target.sharding)

  return jax.tree.map(repad, state, abstract)


def _save_grid(path, syn, s, info, is_main, step: int, what: str) -> None:
  """Labelled grid of the current set (`report.save_set_grid`, the one grid drawer)."""
  from jaxcond import parallel, report  # pylint: disable=g-import-not-at-top
  x = parallel.to_host(syn)[:s.num_classes]
  if is_main:
    sset = _synthetic_set(x, s, info, step)
    report.save_set_grid(path, sset, title=report.set_title(sset, what))


def _synthetic_set(x_host, s, info, steps_done: int):
  """The condensed set as a `synthetic_io.SyntheticSet` (the one file format, also what the
  grids draw): the jitted `steps.export_images` decodes and normalises, synthetic_io lays
  it out."""
  from jaxcond import steps, synthetic_io  # pylint: disable=g-import-not-at-top
  x_norm, x_dec = steps.export_images(x_host, s)
  names = info.class_names or tuple(str(c) for c in range(x_host.shape[0]))
  return synthetic_io.make(np.asarray(x_norm), None if x_dec is None else np.asarray(x_dec),
                           mean=info.mean, std=info.std, dataset=info.name, method=s.method,
                           space=s.space, factor=s.factor, steps=steps_done, seed=s.seed,
                           class_names=names)


def _export(paths, x_host, s, info, steps_done: int, is_main) -> str:
  """Writes synthetic.npz (`jaxcond.synthetic_io` format) and the final PNG grid."""
  from jaxcond import report, synthetic_io  # pylint: disable=g-import-not-at-top
  if not is_main:
    return paths["synthetic"]
  sset = _synthetic_set(x_host, s, info, steps_done)
  synthetic_io.save(paths["synthetic"], sset)
  report.save_set_grid(paths["final_png"], sset,
                       title=report.set_title(sset, f"final, step {steps_done}"))
  return paths["synthetic"]


def _eval_settings(config):
  from jaxcond import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.EvalSettings.from_config(config)


def _in_loop_eval(e, d, s, info, state, step, cache, eval_log, printer, x_host=None):
  """e: `evaluate.EvalSettings`, d: `configs.DataSettings`. Scores the current set with `jaxcond.evaluate.evaluate_set` (what `python -m
  jaxcond.evaluate` calls), appends its record (+ step, decoded) to DIR/eval.jsonl and
  returns it."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcond import evaluate, parallel  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    # jaxcond.evaluate lays its networks over jax.devices(), which spans every process;
    # evaluate the exported set afterwards with `python -m jaxcond.evaluate` instead.
    if not cache.get("warned"):
      printer("evaluation skipped in a multi-process run: run `python -m jaxcond.evaluate "
              "--synthetic DIR/synthetic.npz` on one host", force=True)
      cache["warned"] = True
    return None
  if x_host is None:
    x_host = parallel.to_host(state["syn"])[:s.num_classes]
  if "test" not in cache:
    cache["test"] = evaluate.load_test_split(d, info)
  x_test, y_test = cache["test"]
  sset = _synthetic_set(x_host, s, info, step)
  rec, _ = evaluate.evaluate_set(sset.x, sset.y, x_test, y_test, settings=e,
                                 num_classes=s.num_classes,
                                 measured_on=evaluate.test_split_name(
                                     int(d.holdout)),
                                 log=lambda line: printer(f"  eval {line}"))
  record = {"step": step, **rec, "decoded": sset.decoded}
  eval_log.write(record)
  printer(f"eval @ step {step}: {evaluate.summary_line(rec)}", force=True)
  return record


def _write_config_json(path, config, info, mesh, start, t_data, identity="") -> None:
  import jax  # pylint: disable=g-import-not-at-top
  record = {
      "config": configs.to_jsonable(config),
      "config_hash": configs.config_hash(config),
      "dataset_info": {"name": info.name, "num_classes": info.num_classes,
                       "image_shape": list(info.image_shape), "mean": list(info.mean),
                       "std": list(info.std)},
      "versions": _versions(),
      "devices": [str(d) for d in mesh.devices.flat],
      "platform": jax.devices()[0].platform,
      "process_count": jax.process_count(),
      "resumed_from_step": start,
      "data_load_s": t_data,
      "dataset_identity": identity,
      "command": " ".join(sys.argv) if sys.argv else "",
  }
  files.write_json(path, record)


# ----------------------------------------------------------------------------- CLI

PROGRAM = cli.Program(
    name="condense",
    summary="Condense a dataset with DM, M3D or DDM into DIR/synthetic.npz (resumes from "
            "DIR/checkpoints).",
    examples=("python -m jaxcond.condense --config experiments/quickstart.py "
              "--workdir runs/quickstart",
              "python -m jaxcond.condense --config experiments/cifar10.py:method=m3d,ipc=10 "
              "--workdir runs/c10_m3d_10 --r.steps=2000"),
    flags=(
        cli.flag("coordinator_address", "host:port of process 0 for a multi-process run "
                 "(or env JAX_COORDINATOR_ADDRESS)"),
        cli.flag("num_processes", "processes in a multi-process run", type=int),
        cli.flag("process_id", "this process's index", type=int),
        cli.flag("local_device_ids", "local device ids for this process (comma-separated)"),
        cli.flag("plan", "print the memory plan from shapes only (no data is read, no "
                 "--workdir needed) and exit; the last line is JSON (jaxcond.plan)",
                 action="store_true"),
        cli.flag("devices", "with --plan: plan for this many devices (fake CPU devices "
                 "here; 0 = the devices present)", type=int, default=0),
    ),
    workdir="optional")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.condense`; exit status 0 done, 2 bad input, 1 diverged (cli)."""
  def go(a: cli.Args):
    if a.flags.plan:
      from jaxcond import plan  # pylint: disable=g-import-not-at-top
      plan.setup_fake_devices(a.flags.devices)
      print(json.dumps(plan.run_plan(a.config, a.flags.devices or 0)), flush=True)
      return
    if not a.workdir:
      raise ConfigError("--workdir: required (the output folder; only --plan runs without)")
    from jaxcond import parallel  # pylint: disable=g-import-not-at-top
    f = a.flags
    ids = [int(i) for i in f.local_device_ids.split(",")] if f.local_device_ids else None
    parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id, ids)
    run(a.config, a.workdir)
  return cli.main(PROGRAM, go, argv)


if __name__ == "__main__":
  sys.exit(main())

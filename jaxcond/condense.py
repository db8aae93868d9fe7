"""`python -m jaxcond.condense`: condense a dataset with DM, M3D or DDM.

    python -m jaxcond.condense --config experiments/quickstart.py --workdir runs/quickstart
    python -m jaxcond.condense --config experiments/cifar10.py:method=m3d,ipc=10 \\
        --workdir runs/c10_m3d_10 --config.steps=2000

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
The objective of each method is documented in `jaxcond.steps` (methods.md §2.1, §3.1, §4).
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from typing import Any, Sequence

import numpy as np

from jaxcond import configs
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


def _load_split(config, split: str, classes=None):
  ds = config.dataset
  return _data().load_split(ds.name, split, source=ds.source or "auto", path=ds.path or None,
                            resolution=ds.resolution or None, holdout=int(ds.holdout),
                            classes=None if classes is None else [int(c) for c in classes])


def _global_counts(labels, info, local_ids) -> np.ndarray:
  """Training images per class, combined over processes (each loads only its classes)."""
  from jaxcond import parallel  # pylint: disable=g-import-not-at-top
  counts = np.bincount(labels, minlength=info.num_classes).astype(np.int64)
  mine = np.zeros_like(counts)
  mine[local_ids] = counts[local_ids]
  return parallel.host_allgather(mine).sum(axis=0)


def _check_resume(meta: dict, config, workdir: str, step: int) -> None:
  saved = meta.get("trajectory", {})
  now = configs.trajectory_dict(config)
  diff = configs.differing_fields(json.loads(json.dumps(saved)), json.loads(json.dumps(now)))
  if diff:
    f = diff[0]
    raise ConfigError(
        f"{f}: {workdir} holds a checkpoint (step {step}) made with {f}={saved.get(f)!r}, "
        f"not {now.get(f)!r}; use another --workdir or delete {workdir}/checkpoints")
  if step > config.steps:
    raise ConfigError(f"steps: {workdir}/checkpoints is already at step {step} > "
                      f"steps={config.steps}; use another --workdir")


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
  configs.validate(config)
  info = registry.get_info(config.dataset.name,
                           resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  s = configs.step_settings(config, info)
  model = steps.make_model(s)

  multiprocess = jax.process_count() > 1
  is_main = jax.process_index() == 0
  mesh = parallel.make_mesh(config.num_devices)
  num_classes = info.num_classes
  c_pad = parallel.padded_num_classes(num_classes, mesh)
  local_ids = parallel.local_classes(num_classes, mesh)
  printer = report.Printer(quiet=config.quiet, enabled=is_main, stream=log)
  # Chunk sizes from the memory budget, checked by compiling the step from shapes only:
  # a config that cannot fit fails here, before any data is read (jaxcond.plan).
  planned = plan_lib.make_plan(
      config, s, mesh, depth=int(info.max_per_class or 2 * max(s.batch_real, s.ipc * s.factor ** 2)),
      streaming=bool(config.dataset.streaming), log=printer)
  s = planned.settings

  t_start = time.perf_counter()
  data = _data()
  sharding5 = parallel.class_sharding(mesh, 5)
  bank = index = None
  if config.dataset.streaming:
    # Real batches are read from disk every step (jaxcond.data.ClassStream, grain); the
    # index only lists files, and each process reads only the classes of its slots.
    ds = config.dataset
    index = data.make_index(ds.name, "train", source=ds.source or "auto",
                            path=ds.path or None, resolution=ds.resolution or None)
    counts = np.asarray(index.counts)
    configs.validate_counts(config, counts, info.class_names)
  else:
    images, labels = _load_split(config, "train", local_ids if multiprocess else None)
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
  ckpt = checkpoint.Checkpointer(paths["checkpoints"], max_to_keep=config.keep_checkpoints)
  stream = None
  try:
    start = ckpt.latest_step() or 0
    state = None
    if start:
      meta = ckpt.restore_meta(start)
      _check_resume(meta, config, workdir, start)
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
        init_fn = jax.jit(steps.init_synthetic(s, config.synthetic.init, data.sample_real),
                          out_shardings=syn_sharding)
        syn = init_fn(bank)
      else:
        init_stream = data.ClassStream(index, batch=steps.init_count(s, config.synthetic.init),
                                       seed=s.seed, pad_to=c_pad, sharding=sharding5)
        # A step index no training step uses, so the init images are an independent draw.
        real0 = init_stream.batch_at(_INIT_STREAM_STEP)
        real0 = parallel.global_from_local(real0, mesh, (c_pad,) + real0.shape[1:])
        ids = init_stream.device_fields()[1]
        syn = jax.jit(steps.init_from_real(s, config.synthetic.init),
                      out_shardings=syn_sharding)(real0, ids)
      state = jax.jit(lambda x: steps.init_state(s, x), out_shardings=state_shardings)(syn)

    if is_main:
      _write_config_json(paths["config"], config, info, mesh, start, t_data)

    t0 = time.perf_counter()
    if bank is not None:
      jitted = plan_lib.build_step(s, mesh, model=model)
      compiled = jitted.lower(state, bank, jnp.int32(start)).compile() \
          if start < config.steps else None
      advance = lambda state, step: compiled(state, bank, jnp.int32(step))
    else:
      stream = data.ClassStream(index, batch=s.batch_real, seed=s.seed, pad_to=c_pad,
                                sharding=sharding5, start_step=start,
                                num_steps=max(config.steps - start, 1))
      stream_ids = stream.device_fields()[1]
      jitted = plan_lib.build_step(s, mesh, streaming=True, model=model)
      real_spec = jax.ShapeDtypeStruct((c_pad, s.batch_real) + tuple(info.image_shape),
                                       jnp.uint8, sharding=sharding5)
      compiled = jitted.lower(state, real_spec, stream_ids, jnp.int32(start)).compile() \
          if start < config.steps else None
      batches = iter(stream) if start < config.steps else None

      def advance(state, step):
        got, real = next(batches)
        if got != step:
          raise RuntimeError(f"stream yielded step {got}, expected {step}")
        return compiled(state, real, stream_ids, jnp.int32(step))
    t_compile = time.perf_counter() - t0
    printer(f"{s.method} on {info.name}: {num_classes} classes x ipc {s.ipc} "
            f"(factor {s.factor}), {config.steps} steps, {mesh.size} device(s) "
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
        raise DivergedError(
            f"step {bstep}: {what}; stopping (try a smaller synthetic.lr). Last good "
            f"checkpoint: step {last_good} in {paths['checkpoints']}")

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
      printer(report.progress_line(step_now, config.steps, mean["loss"], ips,
                                   step_time * (config.steps - step_now), terms))

    def save(step_now: int) -> None:
      nonlocal last_good
      check()
      ckpt.save(step_now, state, {"step": step_now, "config_hash": configs.config_hash(config),
                                  "trajectory": configs.trajectory_dict(config),
                                  "versions": _versions()})
      last_good = step_now
      _save_grid(os.path.join(paths["images"], f"step_{step_now:07d}.png"), state["syn"], s,
                 is_main)

    if start == 0:   # every process takes part in the gather; process 0 writes
      _save_grid(os.path.join(paths["images"], "init.png"), state["syn"], s, is_main)

    step = start
    while step < config.steps:
      state, m = advance(state, step)
      step += 1
      pending.append((step - 1, m))   # loss of the state before update `step`
      if step % config.log_every == 0 or step == config.steps:
        flush(step)
      if config.checkpoint_every and step % config.checkpoint_every == 0 and \
          step < config.steps:
        save(step)
      elif config.image_every and step % config.image_every == 0:
        _save_grid(os.path.join(paths["images"], f"step_{step:07d}.png"), state["syn"], s,
                   is_main)
      if config.eval.every and config.eval.num_nets and step % config.eval.every == 0 and \
          step < config.steps:
        check()
        _in_loop_eval(config, s, info, state, step, eval_cache, eval_log, printer)
    flush(step)
    if not ckpt.all_steps() or ckpt.latest_step() != step:
      save(step)
    ckpt.wait()
  finally:
    if stream is not None:
      stream.close()
    ckpt.close()

  x_host = parallel.to_host(state["syn"])[:num_classes]
  out = _export(paths, x_host, s, info, config, is_main)
  result = None
  done = [r for r in (report.read_jsonl(paths["eval"]) if os.path.exists(paths["eval"])
                      else []) if r.get("step") == step]
  if done:
    result = done[-1]
  elif config.eval.num_nets:
    result = _in_loop_eval(config, s, info, state, step, eval_cache, eval_log, printer,
                           x_host=x_host)
  parallel.sync("jaxcond_done")
  printer(f"done: {step} steps in {report.format_duration(time.perf_counter() - t_start)}; "
          f"{paths['synthetic']}", force=not config.quiet)
  return {"step": step, "loss": last_loss, "workdir": workdir, "synthetic": out,
          "eval": result, "compile_s": t_compile, "num_devices": mesh.size}


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


def _save_grid(path, syn, s, is_main) -> None:
  from jaxcond import parallel, report, steps  # pylint: disable=g-import-not-at-top
  x = parallel.to_host(syn)[:s.num_classes]
  if is_main:
    report.save_grid(path, np.asarray(steps.display_images(x, s)))


def _export(paths, x_host, s, info, config, is_main) -> str:
  """Writes synthetic.npz (docs/design.md format) and the final PNG grid."""
  from jaxcond import report, steps  # pylint: disable=g-import-not-at-top
  if not is_main:
    return paths["synthetic"]
  x_norm, x_dec = steps.export_images(x_host, s)
  c, ipc = x_host.shape[:2]
  hwc = tuple(info.image_shape)
  arrays = {
      "x": np.asarray(x_norm, np.float32).reshape((c * ipc,) + hwc),
      "y": np.repeat(np.arange(c, dtype=np.int32), ipc),
      "mean": np.asarray(info.mean, np.float32), "std": np.asarray(info.std, np.float32),
      "factor": np.int64(s.factor), "space": np.str_(s.space),
      "method": np.str_(s.method), "dataset": np.str_(info.name),
      "ipc": np.int64(s.ipc), "steps": np.int64(config.steps), "seed": np.int64(s.seed),
  }
  if x_dec is not None:
    n_dec = x_dec.shape[1]
    arrays["x_decoded"] = np.asarray(x_dec, np.float32).reshape((c * n_dec,) + hwc)
    arrays["y_decoded"] = np.repeat(np.arange(c, dtype=np.int32), n_dec)
  tmp = paths["synthetic"] + ".tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, paths["synthetic"])
  report.save_grid(paths["final_png"], np.asarray(steps.display_images(x_host, s)))
  return paths["synthetic"]


def _in_loop_eval(config, s, info, state, step, cache, eval_log, printer, x_host=None):
  """Trains `eval.num_nets` fresh nets on the current set (`jaxcond.evaluate`), appends
  the result to DIR/eval.jsonl and returns it."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcond import parallel, steps  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    # jaxcond.evaluate lays its networks over jax.devices(), which spans every process;
    # evaluate the exported set afterwards with `python -m jaxcond.evaluate` instead.
    if not cache.get("warned"):
      printer("evaluation skipped in a multi-process run: run `python -m jaxcond.evaluate "
              "--synthetic DIR/synthetic.npz` on one host", force=True)
      cache["warned"] = True
    return None
  try:
    from jaxcond import evaluate  # pylint: disable=g-import-not-at-top
  except ImportError:
    printer("evaluation skipped: jaxcond.evaluate is not available", force=True)
    return None
  if x_host is None:
    x_host = parallel.to_host(state["syn"])[:s.num_classes]
  if "test" not in cache:
    xt, yt = _load_split(config, "test")
    xt = (xt.astype(np.float32) / 255.0 - np.asarray(info.mean, np.float32)) / \
        np.asarray(info.std, np.float32)
    cache["test"] = (xt, np.asarray(yt, np.int32))
  x_test, y_test = cache["test"]
  x_norm, x_dec = steps.export_images(x_host, s)
  x_train = np.asarray(x_dec if x_dec is not None else x_norm, np.float32)
  c, n = x_train.shape[:2]
  x_train = x_train.reshape((c * n,) + x_train.shape[2:])
  y_train = np.repeat(np.arange(c, dtype=np.int32), n)
  settings = evaluate.EvalSettings.from_config(config.eval, dataset=info.name)
  t0 = time.perf_counter()
  results = evaluate.evaluate_pool(x_train, y_train, x_test, y_test, settings=settings,
                                   num_classes=s.num_classes, seed=settings.seed,
                                   log=lambda line: printer(f"  eval {line}"),
                                   measured_on=evaluate.test_split_name(
                                       int(config.dataset.holdout)))
  first = results[settings.pool[0]]
  record = {"step": step, "mean": first["mean"], "std": first["std"],
            "accuracies": first["accuracies"], "protocol": settings.protocol,
            "model": first["model"], "num_nets": first["num_nets"],
            "decoded": x_dec is not None, "wall_s": time.perf_counter() - t0,
            "measured_on": first["measured_on"]}
  for k in ("best_mean", "best_std", "best_accuracies"):
    if k in first:
      record[k] = first[k]
  if len(results) > 1:
    record["pool"] = {k: {"mean": v["mean"], "std": v["std"]} for k, v in results.items()}
  eval_log.write(record)
  line = evaluate.summary_line(first)
  printer(f"eval @ step {step}: {line}", force=True)
  return record


def _write_config_json(path, config, info, mesh, start, t_data) -> None:
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
      "command": " ".join(sys.argv) if sys.argv else "",
  }
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  os.replace(tmp, path)


# ----------------------------------------------------------------------------- CLI

def _parse_flags(argv: Sequence[str]):
  """absl + ml_collections flags in a private FlagValues (importing this module defines
  no global flags); errors become one-line ConfigErrors."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  config_flag = config_flags.DEFINE_config_file(
      "config", None, "experiments/<file>.py[:arg] with get_config(arg).", flag_values=fv,
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Output directory (resumes if it has checkpoints).",
                      flag_values=fv)
  flags.DEFINE_string("coordinator_address", None,
                      "host:port of process 0 for a multi-process run "
                      "(or env JAX_COORDINATOR_ADDRESS).", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.",
                       flag_values=fv)
  flags.DEFINE_integer("process_id", None, "This process's index.", flag_values=fv)
  flags.DEFINE_list("local_device_ids", None, "Local device ids for this process.",
                    flag_values=fv)
  flags.DEFINE_bool("plan", False, "Print the memory plan from shapes only (no data read) "
                    "and exit; last line JSON (jaxcond.plan.run_plan).", flag_values=fv)
  flags.DEFINE_integer("devices", None, "With --plan: plan for this many fake CPU devices.",
                       flag_values=fv)

  config_arg = None
  for i, a in enumerate(argv[1:], 1):
    if a.startswith("--config="):
      config_arg = a.split("=", 1)[1]
    elif a == "--config" and i + 1 < len(argv):
      config_arg = argv[i + 1]
  if config_arg is None:
    raise ConfigError("--config: required (e.g. --config experiments/quickstart.py)")
  config_file = config_arg.split(":", 1)[0]
  if not os.path.isfile(config_file):
    raise ConfigError(f"--config: file {config_file!r} not found")
  try:
    fv(list(argv))
  except flags.Error as err:
    cause = _jaxcond_cause(err)
    if cause is not None:       # get_config(arg) raised a ConfigError: show it as is
      raise cause from None
    raise ConfigError(_flag_error_line(str(err), argv)) from None
  except (AttributeError, KeyError, TypeError) as err:
    raise ConfigError(_override_error_line(err, argv)) from None
  try:
    config = config_flag.value
    if config is None:
      raise ConfigError("--config: get_config returned None")
    _ = config.method
  except JaxcondError:
    raise
  except Exception as err:  # errors raised while importing / calling get_config
    raise ConfigError(f"--config {config_arg}: {type(err).__name__}: {err}") from None
  if not fv.workdir and not fv.plan:
    raise ConfigError("--workdir: required (output directory)")
  _warn_stale_defaults(config_arg, argv, config)
  return fv, config


def _warn_stale_defaults(config_arg: str, argv, config) -> None:
  """One stderr line when `--config.ipc` / `--config.method` left other fields at the
  defaults of the arg's ipc / method (they are set when get_config builds the config)."""
  overridden = {f for f in map(_override_field, argv[1:]) if f}
  if not {"ipc", "method"} & overridden:
    return
  file, _, arg = config_arg.partition(":")
  try:
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.spec_from_file_location("_jaxcond_config_file", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stale = configs.stale_defaults(module.get_config, arg or None, config, overridden)
  except Exception:  # pylint: disable=broad-except
    return           # a guard only: the run's own validation reports real config errors
  if stale:
    fields = "; ".join(f"{k} stays {v!r} (default there: {d!r})" for k, v, d in stale[:4])
    fields += f"; and {len(stale) - 4} more" if len(stale) > 4 else ""
    which = ",".join(f"{k}={config[k]}" for k in ("method", "ipc") if k in overridden)
    print(f"warning: --config.ipc/--config.method change the config after its defaults were "
          f"set: {fields}. Put {which} in the config arg ({file}:...,{which}) to get them, "
          f"or set those fields explicitly.", file=sys.stderr, flush=True)


def _jaxcond_cause(err):
  """The ConfigError/DataError that get_config raised, if `err` (a flags.Error) wraps one.

  ml_collections formats the original traceback into the flag error's message, so the
  exception is recovered from its last `jaxcond.errors.<Name>: <message>` line.
  """
  import re  # pylint: disable=g-import-not-at-top
  from jaxcond import errors  # pylint: disable=g-import-not-at-top
  seen = set()
  while err is not None and id(err) not in seen:
    if isinstance(err, JaxcondError):
      return err
    seen.add(id(err))
    found = re.findall(r"jaxcond\.errors\.(\w+): (.*)", str(err))
    if found:
      name, msg = found[-1]
      return getattr(errors, name, ConfigError)(msg.strip())
    err = err.__cause__ or err.__context__
  return None


def _override_field(arg: str) -> str | None:
  """`--config.synthetic.lr=1` -> `synthetic.lr`; None for any other argument."""
  return arg[len("--config."):].split("=", 1)[0] if arg.startswith("--config.") else None


def _override_error_line(err, argv) -> str:
  schema = configs._flat(configs.base_config())  # pylint: disable=protected-access
  for a in argv:
    field = _override_field(a)
    if field is not None and field not in schema:
      return f"{field}: unknown config field (from {a.split('=', 1)[0]})" + \
          configs._suggest(field, schema)  # pylint: disable=protected-access
  return f"--config override: {type(err).__name__}: {err}"


def _flag_error_line(msg: str, argv) -> str:
  msg = msg.strip().splitlines()[0]
  if msg.startswith("flag --config."):
    field = msg[len("flag --config."):].split("=", 1)[0]
    return f"{field}: {msg}"
  if "Unknown command line flag" in msg or "unknown" in msg.lower():
    return f"command line: {msg}"
  return msg


def main(argv: Sequence[str] | None = None) -> int:
  """CLI entry point; returns the exit status (2 for bad input, 1 for a diverged run)."""
  argv = list(sys.argv if argv is None else argv)
  try:
    fv, config = _parse_flags(argv)
    if fv.plan:
      from jaxcond import plan  # pylint: disable=g-import-not-at-top
      plan.setup_fake_devices(fv.devices)
      print(json.dumps(plan.run_plan(config, fv.devices or 0)), flush=True)
      return 0
    from jaxcond import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(
        fv.coordinator_address, fv.num_processes, fv.process_id,
        [int(i) for i in fv.local_device_ids] if fv.local_device_ids else None)
    run(config, fv.workdir)
  except DivergedError as err:
    print(f"DivergedError: {err}", file=sys.stderr, flush=True)
    return 1
  except JaxcondError as err:
    print(f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())

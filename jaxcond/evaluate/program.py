"""`python -m jaxcond.evaluate`: score a synthetic.npz (or a coreset baseline) under the
config's evaluation protocol and write DIR/results.json (docs/evaluate.md).

    python -m jaxcond.evaluate --config experiments/cifar10.py:method=dm,ipc=10 \\
        --workdir runs/c10_dm_10/eval --synthetic runs/c10_dm_10/synthetic.npz
    python -m jaxcond.evaluate --config experiments/cifar10.py:ipc=10 --workdir runs/rand \\
        --baseline random

The same as a library call: `jaxcond.evaluate.run(config, workdir=..., synthetic=...)`.
`--plan [--devices N]` prints the memory plan and FLOPs from shapes only (`evaluate.plan`);
`--coordinator_address/--num_processes/--process_id` run one process per host, as condense.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Callable, Sequence

import jax
import numpy as np

from jaxcond import baselines, cli, configs, data, files, nets, parallel, preemption
from jaxcond import plan as cplan
from jaxcond import synthetic_io
from jaxcond import workdir as workdir_lib
from jaxcond.errors import ConfigError
from jaxcond.evaluate import plan as plan_lib
from jaxcond.evaluate import pool as pool_lib
from jaxcond.evaluate import results as results_lib
from jaxcond.evaluate.execution import LOOPS, VECTORIZE
from jaxcond.evaluate.protocols import PROTOCOLS, EvalSettings, model_tuple, test_split_name


def _default_loader(ds):
  """ds: `configs.DataSettings`."""
  return data.split_loader(ds)


def load_test_split(ds, info, loader=None):
  """(normalised float32 test images, int32 labels) of `ds` (`configs.DataSettings`): the
  split every evaluation scores on (the train holdout when `holdout` > 0)."""
  x, y = (loader or _default_loader(ds))("test")
  return synthetic_io.normalize_uint8(x, info.mean, info.std), np.asarray(y, np.int32)


def _training_set(synthetic: str | None, baseline: str | None, *, info, ds, ipc: int,
                  settings: EvalSettings, feature_net: str, load: Callable, log: Callable):
  """(x_train, y_train, source record): the synthetic set, read and checked against the
  dataset, or the baseline's subsets of the real training split."""
  num_classes = int(info.num_classes)
  if synthetic is not None:
    sset = synthetic_io.load(synthetic, num_classes=num_classes, image_shape=info.image_shape,
                             mean=info.mean, std=info.std, dataset=ds.name)
    source = {"kind": "synthetic", "path": str(synthetic), "decoded": sset.decoded,
              "stored_images": int(sset.stored.shape[0]), "factor": sset.factor,
              "space": sset.space, "method": sset.method, "dataset": sset.dataset}
    return sset.x, sset.y, source
  real_x, real_y = load("train")
  log(f"baseline {baseline}: {len(real_y)} training images")
  return baselines.training_sets(
      baseline, synthetic_io.normalize_uint8(real_x, info.mean, info.std),
      np.asarray(real_y, np.int32), num_classes, ipc, num_nets=settings.num_nets,
      seed=settings.seed, feature_net=feature_net, log=log)


def protocol_settings(settings: EvalSettings, protocol: str, dataset: str,
                      overrides: dict | None = None) -> EvalSettings:
  """`settings` moved to `protocol`'s reference values (its schedule, optimiser, batch,
  augmentation, checkpoints; `configs.EVAL_PROTOCOL_DEFAULTS`), keeping the networks
  (model, pool, count, seed); `overrides` (eval fields given explicitly) win. How an ncfm
  set is also scored under dm: `--protocol dm`."""
  names = {f.name for f in dataclasses.fields(EvalSettings)} - {"protocol"}
  keep = {k: getattr(settings, k) for k in ("model", "models", "num_nets", "seed")}
  explicit = {k: v for k, v in (overrides or {}).items() if k in names}
  return EvalSettings.for_protocol(protocol, dataset=dataset, **{**keep, **explicit})


def run(config, *, workdir, synthetic: str | None = None, baseline: str | None = None,
        models: Sequence[str] | str | None = None, feature_net: str = "convnet",
        test_batch_size: int = 500, vectorize: str | None = None, loop: str | None = None,
        data_axis: int = 0, remat: str = "auto", protocol: str | None = None,
        eval_overrides: dict | None = None,
        loader: Callable | None = None, info=None, log: Callable = print,
        command: str | None = None) -> dict:
  """Evaluates a synthetic.npz or a baseline under config.eval, writes workdir/results.json
  and returns the record (`results.record` schema plus source, config, versions).

  The synthetic file is read and checked first (one-line DataError naming it), before any
  dataset is loaded. loader(split) -> (uint8 images, labels) and info (DatasetInfo) default
  to jaxcond.data (tests inject small fakes). `data_axis` / `remat` / `memory_budget_gb`
  (the config's) drive the device layout (`evaluate.plan.choose`). `protocol` scores under
  that protocol's reference values instead of the config's eval block (`protocol_settings`;
  `eval_overrides` {field: value} still win). In a multi-process run every process runs
  this; the first one prints and writes results.json.
  """
  main_process = jax.process_index() == 0
  if not main_process:
    log = lambda *_: None
  if (synthetic is None) == (baseline is None):
    raise ConfigError("give exactly one of --synthetic PATH or --baseline "
                      f"{'|'.join(baselines.BASELINES)}")
  if baseline is not None and baseline not in baselines.BASELINES:
    raise ConfigError(f"--baseline: {baseline!r} unknown (known: "
                      f"{', '.join(baselines.BASELINES)})")
  configs.validate(config)
  if info is None:
    info = data.registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  settings = EvalSettings.from_config(config)
  ds = configs.DataSettings.from_config(config)
  if protocol:
    settings = protocol_settings(settings, protocol, ds.name, eval_overrides)
  if models:
    settings = dataclasses.replace(settings, models=model_tuple(models))
  for name in settings.pool + ((feature_net,) if baseline in ("herding", "kcenter") else ()):
    if name not in nets.MODEL_NAMES:
      raise ConfigError(f"eval.models: unknown model {name!r}; valid names: "
                        f"{', '.join(nets.MODEL_NAMES)}")
  num_classes = int(info.num_classes)
  load = loader or _default_loader(ds)
  x_train, y_train, source = _training_set(synthetic, baseline, info=info, ds=ds,
                                           ipc=config.ipc, settings=settings,
                                           feature_net=feature_net, load=load, log=log)
  x_test, y_test = load_test_split(ds, info, load)
  label = pathlib.Path(synthetic).name if synthetic else f"{baseline} baseline"
  rec, results = pool_lib.evaluate_set(
      x_train, y_train, x_test, y_test, settings=settings, num_classes=num_classes,
      measured_on=test_split_name(ds.holdout),
      test_batch_size=test_batch_size, vectorize=vectorize, loop=loop,
      data_axis=data_axis, remat=remat, memory_budget_gb=float(config.memory_budget_gb),
      log=lambda s: log(f"  {s}"))
  record = {**rec, "dataset": info.name, "ipc": config.ipc, "source": source,
            "num_test": int(len(y_test)), "settings": settings.to_dict(), "results": results,
            "config": config.to_dict(), "versions": results_lib.versions(),
            "command": command, "process_count": jax.process_count()}
  if not main_process:
    parallel.sync("evaluate_written")
    return record
  path = results_lib.write_results(workdir, record)
  if len(results) > 1:
    table = results_lib.pool_table(results)
    files.write_text(files.join(workdir, "cross_arch.md"), table)
    log(table)
  log(f"evaluate: {results_lib.summary_line(results[settings.pool[0]], label)} -> {path}")
  parallel.sync("evaluate_written")
  return record


PROGRAM = cli.Program(
    name="evaluate",
    summary="Train fresh networks on a synthetic set (or a coreset baseline) and report "
            "their test accuracy (results.json).",
    examples=("python -m jaxcond.evaluate --config experiments/quickstart.py "
              "--workdir runs/quickstart/eval --synthetic runs/quickstart/synthetic.npz",
              "python -m jaxcond.evaluate --config experiments/quickstart.py "
              "--workdir runs/random --baseline random"),
    flags=(
        cli.flag("synthetic", "synthetic.npz to evaluate", metavar="PATH"),
        cli.flag("baseline", "coreset baseline instead of a synthetic set",
                 choices=("random", "herding", "kcenter")),
        cli.flag("models", "architecture pool, comma-separated (overrides eval.models)"),
        cli.flag("feature_net", "random net whose features herding/kcenter use",
                 default="convnet"),
        cli.flag("test_batch_size", "test images per forward pass", type=int, default=500),
        cli.flag("vectorize", "networks on one device (default: per backend)",
                 choices=VECTORIZE),
        cli.flag("loop", "training loop (default: per backend)", choices=LOOPS),
        cli.flag("protocol", "score under this protocol's reference values instead of the "
                 "config's eval block (--config.eval.* given here still win)",
                 choices=PROTOCOLS),
        cli.flag("data_axis", "devices that split each network's batch (the mesh's data "
                 "axis; 0 = the memory plan's choice)", type=int, default=0),
        cli.flag("remat", "rematerialise the networks' residual blocks (auto = when the "
                 "memory plan needs it)", choices=plan_lib.REMAT, default="auto"),
        *cli.plan_flags("the memory plan and FLOPs (jaxcond.evaluate.plan)"),
        *cli.DISTRIBUTED_FLAGS,
    ),
    workdir_unless=("plan",))


def _eval_overrides(a: cli.Args) -> dict:
  """{eval field: value} of the `--config.eval.*` overrides on the command line."""
  values = configs.flat(a.config)
  return {field[len("eval."):]: values[field] for field, _ in a.overrides
          if field.startswith("eval.") and field in values}


STOPPED = ("preempted: an evaluation keeps nothing half way; re-run the same command to "
           "evaluate again")


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.evaluate`; returns the exit status (cli docstring)."""
  def go(a: cli.Args):
    f = a.flags
    if f.plan:
      cplan.setup_fake_devices(f.devices)
      out = plan_lib.run_plan(a.config, f.devices or 0, data_axis=f.data_axis, remat=f.remat,
                              models=model_tuple(f.models) if f.models else None,
                              test_batch_size=f.test_batch_size,
                              log=functools.partial(print, flush=True))
      print(json.dumps(out), flush=True)
      return
    cli.start_distributed(f)
    # One results.json at the end and nothing to keep half way: SIGTERM / Ctrl-C stop at
    # once (status 3) and a re-run starts again (jaxcond.preemption, docs/condense.md).
    def evaluate(stop):
      with stop.immediate(STOPPED):
        run(a.config, workdir=a.workdir, synthetic=f.synthetic, baseline=f.baseline,
            models=f.models, feature_net=f.feature_net, test_batch_size=f.test_batch_size,
            vectorize=f.vectorize, loop=f.loop, data_axis=f.data_axis, remat=f.remat,
            protocol=f.protocol, eval_overrides=_eval_overrides(a),
            log=functools.partial(print, flush=True), command=a.command)

    workdir_lib.run_locked(a.workdir, evaluate, stop=preemption.Preemption(command_line=True),
                           starting=STOPPED, command=a.command)
  return cli.main(PROGRAM, go, argv)

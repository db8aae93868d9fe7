"""`python -m jaxcond.bench`: throughput of the condensation step (and of evaluation).

    python -m jaxcond.bench --config experiments/cifar10.py:method=dm,ipc=10 --fake-data
    python -m jaxcond.bench --config experiments/cifar10.py --method dm,m3d --ipc 1,10,50 \\
        --fake-data --workload reference
    python -m jaxcond.bench --sweep classes --classes 10,100,1000 --fake-data

For every case (config × method × IPC × device count) it compiles the jitted step that
`jaxcond.condense` runs (`steps.make_bank_step`: real batch sampled from the device bank,
fresh random ConvNet, siamese DSA, embed, objective, SGD update; state donated) and reports:

- `median_step_s` (with `min_step_s`, `max_step_s`) over `--repeats` (>= 10 by default)
  blocked steps after `--warmup` steps; `compile_s` separately;
- `images_per_s`: real + synthetic images embedded per second,
  classes × (batch_real + decoded synthetic per class) / median;
- `flops_per_step` from XLA's cost analysis of the compiled step (`flops_xla`), or the
  ConvNet convolution count `flops_model` (forward of real + synthetic, backward of
  synthetic to the pixels) when that is > 10 % larger: XLA counts a while-loop body
  (lax.map / scan) once (`flops_source` says which); `fraction_of_peak` =
  flops_per_step / median / matmul peak, where the float32 matmul peak (`peak_gflops`,
  `--peak-n` square operands) is measured in the same run;
- `peak_bytes`: the device allocator's high-water mark where the backend reports it
  (GPU/TPU), else XLA's `memory_analysis` estimate (arguments + outputs + temporaries);
- `other_procs_cores` and `loadavg`: how busy the machine was (shared machines);
- with `--eval`: `eval_nets_per_hour`, networks trained per hour under the dm protocol
  (1001 passes) on an IPC-10 set of the config's shape (`jaxcond.evaluate`).

Output: the Markdown table of all cases, then one JSON line per case on stdout; the LAST
line is therefore always a JSON object with `median_step_s`. Progress goes to stderr.

`--fake-data` fills the bank with random uint8 images of the dataset's shape (per class
`fold_in(key, class_id)`, so every device count sees the same data): no download needed.
`--workload reference` turns any method into the workload of the PyTorch reference
iteration (a tuned DM-code PyTorch step, see docs/benchmarks.md): batch_real 256, IPC images per class
(factor 1, no subsampling), one siamese DSA op group per class (dm policy, full strategy),
a fresh network every step (ipm 1), normalised pixels; the M3D stepping mode is kept
(`m3d.step_mode`, joint or per_class).

`--sweep classes` measures the cost structure: the step for 10, 100, 1000 classes of random
data at a small resolution/width/batch (flags `--sweep-*`, stated in the output), reporting
seconds per embedded image and bytes per class, which should both be flat.

The code is device-agnostic: it runs on whatever `jax.devices()` holds (`--platform` to
force one); `--cpu-devices N` fakes N CPU devices to exercise the sharded step.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxcond import benchlib, cli, configs, evaluate, parallel, realdata, steps
from jaxcond import plan as plan_lib
from jaxcond.data import ClassBank, registry
from jaxcond.errors import ConfigError, JaxcondError

EVAL_PASSES_DM = 1001           # the dm protocol's passes (epochs 0..1000)

TABLE_COLUMNS = ["case", "devices", "median_step_s", "min_step_s", "max_step_s", "compile_s",
                 "images_per_s", "gflops_per_step", "fraction_of_peak", "peak_mib",
                 "other_procs_cores"]
SWEEP_COLUMNS = ["classes", "images_per_step", "median_step_s", "us_per_image",
                 "peak_mib", "bytes_per_class", "compile_s"]


# ----------------------------------------------------------------------------- configs

def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _set_overrides(sets: Sequence[str]) -> list[tuple[str, str]]:
  """`--set field=value` (bench's older spelling of `--config.field=value`) -> overrides."""
  out = []
  for item in sets:
    key, sep, value = item.partition("=")
    if not sep:
      raise ConfigError(f"--set: expected field=value, got {item!r}")
    out.append((key.strip(), value.strip()))
  return out


def build_config(spec: str, *, method: str | None = None, ipc: int | None = None,
                 sets: Sequence[str] = (), workload: str = "config", overrides=()):
  """`file.py[:arg]` -> validated ConfigDict, with method/ipc put into the arg string
  (so the method's defaults apply), then the `--config.<field>` / `--set field=value`
  overrides (`jaxcond.cli`), then the workload."""
  updates = {k: v for k, v in (("method", method), ("ipc", ipc)) if v is not None}
  config = cli.load_config(spec, [*overrides, *_set_overrides(sets)], arg_updates=updates)
  apply_workload(config, workload)
  configs.validate(config)
  return config


def apply_workload(config, workload: str) -> None:
  """`reference`: the PyTorch reference iteration's workload (module docstring)."""
  if workload == "config":
    return
  if workload != "reference":
    raise ConfigError(f"--workload: unknown value {workload!r} (choose from config, reference)")
  config.batch_real = 256
  config.synthetic.factor = 1
  config.synthetic.init = "real"
  config.synthetic.space = "normalized"
  config.synthetic.batch_syn_max = 0
  config.augment.policy = "dm"
  config.augment.strategy = configs.FULL_STRATEGY
  config.m3d.ipm = 1


def case_name(config, workload: str) -> str:
  name = f"{config.dataset.name} {config.method} ipc{config.ipc}"
  if config.method == "m3d":
    name += f" {config.m3d.step_mode}"
  if workload != "config":
    name += f" [{workload}]"
  return name


# ----------------------------------------------------------------------------- data

def fake_bank(num_classes: int, slots: int, per_class: int, image_shape, mesh=None,
              seed: int = 0):
  """Random uint8 `ClassBank` [slots, per_class, H, W, ch]; class c's images come from
  numpy's generator seeded by (seed, c), so they do not depend on the padding or the
  device count. Built shard by shard on the host (no compilation, host memory of one
  shard at a time)."""
  ids = np.full((slots,), -1, np.int32)
  ids[:num_classes] = np.arange(num_classes, dtype=np.int32)
  counts = np.where(ids >= 0, per_class, 0).astype(np.int32)
  shape = (slots, per_class) + tuple(int(v) for v in image_shape)

  def block(index):
    rows = range(slots)[index[0]]
    out = np.zeros((len(rows),) + shape[1:], np.uint8)
    for j, c in enumerate(rows):
      if ids[c] >= 0:
        out[j] = np.random.default_rng((seed, int(c))).integers(0, 256, shape[1:], np.uint8)
    return out[(slice(None),) + tuple(index[1:])]

  if mesh is None:
    return ClassBank(images=jnp.asarray(block((slice(None),) * 5)),
                     counts=jnp.asarray(counts), class_ids=jnp.asarray(ids))
  images = jax.make_array_from_callback(shape, parallel.class_sharding(mesh, 5), block)
  put = lambda a: jax.device_put(a, parallel.class_sharding(mesh, 1))
  return ClassBank(images=images, counts=put(counts), class_ids=put(ids))


def data_source(config, info, s, mesh, *, fake_data: bool, depth: int):
  """The step's real data: a fake bank (`fake_bank`), or the config's dataset through
  `jaxcond.realdata` (needs the data; docs/data.md), its counts checked like a run's."""
  if fake_data:
    c_pad = parallel.padded_num_classes(s.num_classes, mesh)
    bank = fake_bank(s.num_classes, c_pad, depth, s.image_shape, mesh)
    return realdata.BankSource(bank, np.full((s.num_classes,), depth))
  check = lambda counts: configs.validate_counts(config, counts, info.class_names)
  return realdata.open_source(configs.DataSettings.from_config(config), info, s, mesh,
                              check_counts=check)


def fake_per_class(s, init: str) -> int:
  """Bank depth for fake data: enough for the real batch and the initialisation, x2 so the
  sampling without replacement has something to choose from."""
  need = s.ipc * s.factor ** 2 if init == "mix" else s.ipc
  return 2 * max(s.batch_real, need)


# ----------------------------------------------------------------------------- one case

def measure_step(config, *, num_devices: int = 0, repeats: int = 10, warmup: int = 2,
                 fake_data: bool = True, peak_gflops: float | None = None,
                 settings_override: dict | None = None, per_class: int | None = None,
                 log=_log) -> dict:
  """Compiles and times the condensation step of `config` (see the module docstring).

  `settings_override` replaces fields of the `StepSettings` (the class sweep changes
  num_classes / image_shape there); `per_class` sets the fake bank depth.
  Returns one flat JSON-able dict (the documented keys).
  """

  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  s = configs.step_settings(config, info)
  if settings_override:
    s = dataclasses.replace(s, **settings_override)
  mesh = parallel.make_mesh(num_devices or config.num_devices or None)
  c_pad = parallel.padded_num_classes(s.num_classes, mesh)
  depth = (per_class or fake_per_class(s, config.synthetic.init)) if fake_data else \
      int(info.max_per_class or fake_per_class(s, config.synthetic.init))
  # The chunks from the memory budget; the plan compiles the step from shapes, and with fake
  # data (the same shardings) its executable is the one timed below.
  streaming = not fake_data and bool(config.dataset.streaming)
  planned = plan_lib.make_plan(config, s, mesh, depth=depth, streaming=streaming, log=log)
  s = planned.settings

  if settings_override and not fake_data:
    raise ConfigError("--sweep needs --fake-data (it changes the number of classes)")
  t0 = time.perf_counter()
  source = data_source(config, info, s, mesh, fake_data=fake_data, depth=depth)
  jax.block_until_ready([a for a in jax.tree.leaves(source.arg_specs(s))
                         if isinstance(a, jax.Array)])
  t_data = time.perf_counter() - t0

  syn = source.initial_synthetic(s, config.synthetic.init, parallel.class_sharding(mesh, 5))
  state = jax.jit(lambda x: steps.init_state(s, x),
                  out_shardings=plan_lib.state_shardings(s, mesh))(syn)
  args = (state, *source.arg_specs(s), jnp.int32(0))
  if planned.executable_for(*args) is not None:
    compiled, cstats = planned.stats["compiled"], planned.stats
  else:
    compiled, cstats = benchlib.compile_stats(
        plan_lib.build_step(s, mesh, streaming=source.streaming), *args)
  log(f"  compiled in {cstats['compile_s']:.1f}s; timing {repeats} steps "
      f"after {max(1, warmup)} warm-up")

  source.start(0, max(1, warmup) + repeats)

  def run(state, i):
    return compiled(state, *source.step_args(i), jnp.int32(i))

  try:
    state, t, first = benchlib.time_steps(run, state, repeats=repeats, warmup=warmup)
  finally:
    source.close()
  device_peak = benchlib.device_peak_bytes()
  images = steps.images_per_step(s)
  flops_xla, flops_model = cstats.get("flops"), plan_lib.convnet_flops(s)
  flops, flops_source = plan_lib.step_flops(s, flops_xla)
  out = {
      "dataset": info.name, "method": s.method, "ipc": s.ipc,
      "step_mode": s.step_mode if s.method == "m3d" else None,
      "num_classes": s.num_classes, "image_shape": list(s.image_shape),
      "model": s.model_name, "model_overrides": dict(s.model_overrides),
      "batch_real": s.batch_real, "syn_per_class": s.syn_per_class, "factor": s.factor,
      "aug": f"{s.aug_policy}:{s.aug_strategy}", "devices": mesh.size,
      "padded_classes": c_pad, "fake_data": bool(fake_data),
      "median_step_s": t["median_s"], "min_step_s": t["min_s"], "max_step_s": t["max_s"],
      "repeats": t["repeats"], "warmup": t["warmup"], "times_s": t["times_s"],
      "compile_s": cstats["compile_s"], "data_s": t_data,
      "images_per_step": images, "images_per_s": images / t["median_s"],
      "flops_per_step": flops, "flops_source": flops_source, "flops_xla": flops_xla,
      "flops_model": flops_model,
      "peak_gflops": peak_gflops,
      "fraction_of_peak": benchlib.fraction_of_peak(flops, t["median_s"], peak_gflops),
      "peak_bytes": device_peak if device_peak else cstats.get("peak_estimate_bytes"),
      "peak_bytes_source": "memory_stats" if device_peak else "memory_analysis",
      "temp_bytes": cstats.get("temp_size_in_bytes"),
      "argument_bytes": cstats.get("argument_size_in_bytes"),
      "cpu_s_per_step": t["cpu_s_per_step"], "other_procs_cores": t["other_procs_cores"],
      "plan": planned.summary(), "real_chunk": s.real_chunk, "real_cpg": s.real_cpg,
      "syn_cpg": s.syn_cpg,
      "loss_first": float(first["loss"]),
  }
  return out


# ----------------------------------------------------------------------------- evaluation

def measure_eval(config, *, ipc: int = 10, num_nets: int | None = None, passes: int = 4,
                 log=_log) -> dict:
  """Networks trained per hour under the dm protocol on an IPC-`ipc` set of random images
  of the config's shape: trains `num_nets` nets for `passes` passes (compiled by a first
  call, timed on a second), then scales to the protocol's 1001 passes."""
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  nets_n = num_nets or max(1, int(config.eval.num_nets))
  try:
    settings = evaluate.EvalSettings.for_protocol(
        "dm", dataset=info.name, model=config.eval.model, num_nets=nets_n,
        epochs=max(1, passes - 1))
    rs = np.random.default_rng(0)
    n = info.num_classes * ipc
    x = rs.standard_normal((n,) + tuple(info.image_shape)).astype(np.float32)
    y = np.repeat(np.arange(info.num_classes, dtype=np.int32), ipc)
    xt = rs.standard_normal((info.num_classes * 10,) + tuple(info.image_shape)).astype(
        np.float32)
    yt = np.repeat(np.arange(info.num_classes, dtype=np.int32), 10)
    net = evaluate.registry_net(settings.model, num_classes=info.num_classes,
                                image_shape=tuple(info.image_shape))
    t0 = time.perf_counter()
    evaluate.train_and_test(net, x, y, xt, yt, settings=settings, seed=0)
    first = time.perf_counter() - t0
    run = evaluate.train_and_test(net, x, y, xt, yt, settings=settings, seed=0)
  except JaxcondError:
    raise
  except Exception as err:  # pylint: disable=broad-except  (module still in progress)
    return {"eval_error": f"{type(err).__name__}: {err}"}
  wall = run["wall_seconds"]
  per_pass = wall / settings.passes
  log(f"  eval: {nets_n} nets x {settings.passes} passes in {wall:.2f}s "
      f"(first call incl. compile {first:.1f}s)")
  return {"eval_model": settings.model, "eval_ipc": ipc, "eval_nets": nets_n,
          "eval_passes_timed": settings.passes, "eval_wall_s": wall,
          "eval_compile_s": max(first - wall, 0.0),
          "eval_s_per_net": per_pass * EVAL_PASSES_DM / nets_n,
          "eval_nets_per_hour": 3600.0 * nets_n / (per_pass * EVAL_PASSES_DM)}


# ----------------------------------------------------------------------------- sweep

def sweep_classes(config, classes: Sequence[int], *, resolution: int, width: int,
                  batch_real: int, num_devices: int = 0, repeats: int = 10, warmup: int = 2,
                  peak_gflops: float | None = None, log=_log) -> list[dict]:
  """Step time and memory for each class count (random data; module docstring)."""
  ch = 3
  rows = []
  for c in classes:
    override = {"num_classes": int(c), "image_shape": (resolution, resolution, ch),
                "batch_real": batch_real,
                "model_overrides": tuple(sorted({**dict(_overrides(config)),
                                                 "width": width}.items()))}
    log(f"sweep: {c} classes at {resolution}x{resolution}x{ch}, width {width}, "
        f"batch_real {batch_real}, {config.method} ipc {config.ipc}")
    r = measure_step(config, num_devices=num_devices, repeats=repeats, warmup=warmup,
                     fake_data=True, peak_gflops=peak_gflops, settings_override=override,
                     log=log)
    r["sweep"] = "classes"
    r["classes"] = int(c)
    r["us_per_image"] = 1e6 * r["median_step_s"] / r["images_per_step"]
    r["bytes_per_class"] = (r["peak_bytes"] / c) if r["peak_bytes"] else None
    rows.append(r)
  if len(rows) >= 2 and rows[0]["peak_bytes"] and rows[-1]["peak_bytes"]:
    slope = ((rows[-1]["peak_bytes"] - rows[0]["peak_bytes"])
             / (rows[-1]["classes"] - rows[0]["classes"]))
    tslope = ((rows[-1]["median_step_s"] - rows[0]["median_step_s"])
              / (rows[-1]["images_per_step"] - rows[0]["images_per_step"]))
    for r in rows:
      r["marginal_bytes_per_class"] = slope
      r["marginal_us_per_image"] = 1e6 * tslope
  return rows


def _overrides(config) -> dict:
  return configs.model_overrides(config)


# ----------------------------------------------------------------------------- CLI

def _int_list(text: str, flag: str) -> list[int]:
  try:
    out = [int(v) for v in str(text).split(",") if v.strip()]
  except ValueError:
    raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
  if not out or min(out) < 0:
    raise ConfigError(f"{flag}: expected non-negative integers, got {text!r}")
  return out


PROGRAM = cli.Program(
    name="bench",
    summary="Throughput of the condensation step (and of evaluation): a Markdown table, then "
            "one JSON line per case (the last line is always JSON).",
    examples=("python -m jaxcond.bench --config experiments/cifar10.py:method=dm,ipc=10 "
              "--fake-data",
              "python -m jaxcond.bench --config experiments/cifar10.py --method dm,m3d "
              "--ipc 1,10,50 --fake-data --workload reference",
              "python -m jaxcond.bench --sweep classes --classes 10,100,1000 --fake-data"),
    config="optional (default for --sweep: CIFAR-10 dm)", workdir="none", load=False,
    flags=(
        cli.flag("method", "comma-separated methods (dm,m3d,ddm)"),
        cli.flag("ipc", "comma-separated IPCs"),
        cli.flag("set", "config override, repeatable (the same as --config.FIELD=VALUE)",
                 action="append", default=[], metavar="FIELD=VALUE"),
        cli.flag("workload", "config: the config's step; reference: the PyTorch reference "
                 "iteration's workload", default="config", choices=("config", "reference")),
        cli.flag("fake-data", "random uint8 bank (offline)", action="store_true"),
        cli.flag("num-devices", "comma-separated device counts (0 = config.num_devices or all)",
                 default="0"),
        cli.flag("cpu-devices", "fake this many CPU devices (before JAX starts)", type=int,
                 default=0),
        cli.flag("platform", "force a JAX platform (cpu, gpu, tpu)"),
        cli.flag("repeats", "timed steps per case", type=int, default=10),
        cli.flag("warmup", "untimed steps before them", type=int, default=2),
        cli.flag("peak-n", "matmul size for the peak measurement (0 = skip)", type=int,
                 default=4096),
        cli.flag("eval", "also measure evaluation throughput", action="store_true"),
        cli.flag("eval-nets", "0 = config.eval.num_nets", type=int, default=0),
        cli.flag("eval-passes", "passes timed for --eval", type=int, default=4),
        cli.flag("sweep", "measure the cost structure over class counts", choices=("classes",)),
        cli.flag("classes", "class counts of --sweep classes", default="10,100,1000"),
        cli.flag("sweep-res", "--sweep image resolution", type=int, default=16),
        cli.flag("sweep-width", "--sweep net width", type=int, default=32),
        cli.flag("sweep-batch-real", "--sweep real images per class", type=int, default=16),
        cli.flag("markdown", "also write the table to this file"),
        cli.flag("jsonl", "also append the JSON lines to this file"),
    ))


def _namespace(a: "cli.Args"):
  """cli.Args -> the argparse namespace the cases are built from (`config` is the FILE[:ARG]
  string, `overrides` the --config.FIELD=VALUE pairs)."""
  args = a.flags
  args.config, args.overrides, args.command = a.config_arg, a.overrides, a.command
  if args.repeats < 1:
    raise ConfigError(f"--repeats: must be >= 1, got {args.repeats}")
  if args.warmup < 0:
    raise ConfigError(f"--warmup: must be >= 0, got {args.warmup}")
  if args.config is None and args.sweep is None:
    raise ConfigError("--config: required (e.g. --config experiments/cifar10.py:method=dm,ipc=10)")
  return args


def parse_args(argv: Sequence[str]):
  """The bench command line (without the program name) -> namespace (`_namespace`)."""
  a = cli.parse(PROGRAM, argv)
  return None if a is None else _namespace(a)


def _setup_jax(args) -> None:
  if args.platform:
    jax.config.update("jax_platforms", args.platform)
  if args.cpu_devices:
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)


def _row(r: dict) -> dict:
  peak = r.get("peak_bytes")
  return {**r, "case": r.get("case"), "devices": r.get("devices"),
          "gflops_per_step": (r["flops_per_step"] / 1e9) if r.get("flops_per_step") else None,
          "peak_mib": peak / 2 ** 20 if peak else None}


def _case_configs(args) -> list:
  """All (config, device count) cases, built and validated before anything compiles."""
  devices = _int_list(args.num_devices, "--num-devices")
  if args.sweep == "classes":
    if "," in (args.method or "") or "," in (args.ipc or ""):
      raise ConfigError("--sweep takes one --method and one --ipc")
    if args.config is None:
      config = configs.method_config("cifar10", method=args.method or "dm",
                                     ipc=int(args.ipc) if args.ipc else 1)
      cli.apply_overrides(config, [*args.overrides, *_set_overrides(args.set)])
      apply_workload(config, args.workload)
      configs.validate(config)
    else:
      config = build_config(args.config, sets=args.set, workload=args.workload,
                            method=args.method, ipc=int(args.ipc) if args.ipc else None,
                            overrides=args.overrides)
    return [(config, devices[0])]
  methods = args.method.split(",") if args.method else [None]
  ipcs = _int_list(args.ipc, "--ipc") if args.ipc else [None]
  return [(build_config(args.config, method=m, ipc=i, sets=args.set, workload=args.workload,
                        overrides=args.overrides), nd)
          for m in methods for i in ipcs for nd in devices]


def run(args) -> list[dict]:
  """Measures every case of the parsed command line `args` (`parse_args`); returns rows."""
  _setup_jax(args)
  cases = _case_configs(args)
  machine = benchlib.machine_info()
  _log(f"machine: {machine}")
  peak = None
  if args.peak_n:
    pk = benchlib.matmul_peak(args.peak_n)
    peak = pk["gflops"]
    _log(f"matmul peak: {peak:.1f} GFLOP/s (float32, {args.peak_n}^2)")
  results = []
  if args.sweep == "classes":
    config, nd = cases[0]
    rows = sweep_classes(config, _int_list(args.classes, "--classes"),
                         resolution=args.sweep_res, width=args.sweep_width,
                         batch_real=args.sweep_batch_real, num_devices=nd,
                         repeats=args.repeats, warmup=args.warmup, peak_gflops=peak)
    for r in rows:
      r["case"] = (f"{r['classes']} classes {r['method']} ipc{r['ipc']} "
                   f"{args.sweep_res}px w{args.sweep_width} b{args.sweep_batch_real}")
      r["machine"] = machine
      results.append(r)
    table = benchlib.markdown_table([_row(r) for r in results], SWEEP_COLUMNS)
  else:
    for config, nd in cases:
      name = case_name(config, args.workload)
      _log(f"case: {name} on {nd or 'all'} device(s)")
      r = measure_step(config, num_devices=nd, repeats=args.repeats, warmup=args.warmup,
                       fake_data=args.fake_data, peak_gflops=peak)
      r["case"] = name
      r["workload"] = args.workload
      r["sets"] = list(args.set)
      if args.eval:
        r.update(measure_eval(config, num_nets=args.eval_nets or None,
                              passes=args.eval_passes))
      r["machine"] = machine
      results.append(r)
    cols = TABLE_COLUMNS + (["eval_nets_per_hour"] if args.eval else [])
    table = benchlib.markdown_table([_row(r) for r in results], cols)
  print(table, flush=True)
  lines = [json.dumps(r, default=_json_default) for r in results]
  if args.markdown:
    with open(args.markdown, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  if args.jsonl:
    with open(args.jsonl, "a", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
  for line in lines:
    print(line, flush=True)
  return results


def _json_default(x):
  try:
    return float(x)
  except (TypeError, ValueError):
    return str(x)


def main(argv: Sequence[str] | None = None) -> int:
  """`python -m jaxcond.bench`; exit status and error line as every program (jaxcond.cli)."""
  return cli.main(PROGRAM, lambda a: run(_namespace(a)), argv)


if __name__ == "__main__":
  sys.exit(main())

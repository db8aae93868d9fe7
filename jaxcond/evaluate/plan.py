"""The memory plan of an evaluation: how the networks use the devices, checked by XLA from
shapes only, and the FLOPs of a step, an epoch and a run (docs/evaluate.md, "Memory plan").

The evaluation's protocol (batch, schedule, augmentation) is never changed to fit memory.
What the planner may change, in this order, stopping at the first that fits the per-device
budget (`memory_budget_gb`; 0 = the device's own limit, `jaxcond.plan.budget_bytes`):

1. the layout's default (`execution.default_layout`): networks on the "nets" axis first,
   the devices left over split each network's batch on the "data" axis (accelerators);
2. the layout with the least per-device work, ceil(K / nets) × ceil(batch / data);
3. the same with `vectorize="map"` (one network's activations at a time on a device);
4. every device on the data axis with `map`: the fewest images' activations per device;
5. the last of these with the networks' residual blocks rematerialised
   (`train.remat_blocks`; nets without residual blocks stop at 4).

Each candidate's device-loop training program is compiled on `jax.ShapeDtypeStruct`s (no
data, no accelerator: `--plan --devices N` uses N fake CPU devices) and XLA's
`memory_analysis()` of the partitioned program gives its bytes per device; the test batches
that stay on the device are added. XLA:CPU's buffer assignment does not model
rematerialisation (it schedules the recomputation early; measured: no saving even for a
chain of dense layers), so on CPU step 4 is an estimate: the compiled figure minus the
residuals JAX no longer keeps for the backward pass (measured on the traced program), plus
one block's recomputation (the first block, the largest in every jaxcond ResNet). On an
accelerator the remat program itself is compiled.

FLOPs: XLA's cost analysis of one training step of ONE network at the protocol's batch on
one device (augmentation, CutMix, forward, backward, optimiser; no loops, so nothing is
counted once for many iterations), times the networks; per epoch = that × images / batch
(the partial last batch pro rata); per run = per epoch × passes. Test passes are not
counted (one forward of the test set per checkpoint). `python -m jaxcond.evaluate --plan`.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import time
import types
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcond import backend, benchlib, configs
from jaxcond import plan as cplan
from jaxcond.data import registry
from jaxcond.errors import ConfigError
from jaxcond.evaluate.execution import (Layout, _placement, _programs, default_layout,
                                        net_keys, net_layout)
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.evaluate.train import NetFns, registry_net, remat_blocks

GIB = cplan.GIB
SAFETY = cplan.SAFETY       # plan to this fraction of the budget (allocator slack)
REMAT = ("auto", "on", "off")


def budget_bytes(memory_budget_gb: float) -> int:
  """Per-device budget: `memory_budget_gb` GiB, else the device's limit (as condense)."""
  return cplan.budget_bytes(types.SimpleNamespace(memory_budget_gb=float(memory_budget_gb)))


def _nbytes(tree) -> int:
  return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize
                 for a in jax.tree.leaves(tree) if hasattr(a, "dtype")
                 and not jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)))


# ------------------------------------------------------------------------------ candidates

def least_work_layout(num_nets: int, batch: int, devices: int) -> Layout:
  """The layout with the least per-device work ceil(K / nets) × ceil(batch / data) (ties:
  more devices on the nets axis, then fewer devices): what fits when the default does not."""
  best = None
  for a in range(1, min(num_nets, devices) + 1):
    if net_layout(num_nets, a)[0] != a:
      continue               # a would leave a nets-axis device without networks
    for b in range(1, devices // a + 1):
      key = (-(-num_nets // a) * -(-batch // b), -a, a * b)
      if best is None or key < best[0]:
        best = (key, Layout(a, b))
  return best[1]


def candidates(num_nets: int, batch: int, devices: int, *, data_axis: int = 0,
               remat: str = "auto", vectorize: str = "vmap", blocks: bool = False,
               policy: str = "accelerator") -> list[tuple[Layout, str]]:
  """(layout, vectorize) in the planner's order (module docstring), without repeats."""
  if remat not in REMAT:
    raise ConfigError(f"--remat: must be one of {REMAT}, got {remat!r}")
  if remat == "on" and not blocks:
    raise ConfigError("--remat on: this network has no residual blocks to rematerialise "
                      "(only the ResNets have)")
  if data_axis:
    if data_axis < 1 or data_axis > devices:
      raise ConfigError(f"--data_axis: {data_axis} devices requested, {devices} available")
    layouts = [Layout(net_layout(num_nets, devices // data_axis)[0], data_axis)]
  else:
    layouts = [default_layout(num_nets, batch, devices, policy),
               least_work_layout(num_nets, batch, devices)]
  out = [(lay, vectorize) for lay in layouts]
  if not data_axis:
    last = out[-1][0]
    if vectorize == "vmap" and last.nets_per_device(num_nets) > 1:
      out.append((last, "map"))
    out.append((Layout(1, devices), "map" if num_nets > 1 else vectorize))
  if remat == "on":
    out = [(dataclasses.replace(lay, remat=True), vec) for lay, vec in out]
  elif remat == "auto" and blocks:
    out.append((dataclasses.replace(out[-1][0], remat=True), out[-1][1]))
  seen, uniq = set(), []
  for c in out:
    if c not in seen:
      seen.add(c)
      uniq.append(c)
  return uniq


# ------------------------------------------------------------------------------ compiles

def _abstract(prog, layout: Layout, per_net_data: bool, settings: EvalSettings,
              num_nets: int, n_train: int, image_shape) -> tuple:
  """ShapeDtypeStructs (with the layout's shardings) of the device-loop `train` program."""
  place = _placement(layout, per_net_data)
  padded = layout.nets * layout.nets_per_device(num_nets)
  keys = net_keys(settings.seed, range(padded))
  states = jax.eval_shape(prog["init"], keys)
  n_pad = -(-n_train // layout.data) * layout.data
  lead = (padded, n_pad) if per_net_data else (n_pad,)

  def sds(shape, dtype, where):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=place[where])

  states = jax.tree.map(lambda a: sds(a.shape, a.dtype, "nets"), states)
  keys = sds(keys.shape, keys.dtype, "nets")
  x = sds(lead + tuple(image_shape), jnp.float32, "train")
  y = sds(lead, jnp.int32, "train")
  i32 = jax.ShapeDtypeStruct((), jnp.int32)
  return states, keys, x, y, i32, i32


def _compile(net: NetFns, settings: EvalSettings, layout: Layout, vectorize: str,
             per_net_data: bool, num_nets: int, n_train: int, image_shape) -> dict:
  """Memory (per device) of the device-loop training program of `layout`, from shapes."""
  s = dataclasses.replace(settings, num_nets=num_nets)
  prog = _programs(net, s, per_net_data, layout, vectorize, n_train, backend.policy())
  args = _abstract(prog, layout, per_net_data, s, num_nets, n_train, image_shape)
  _, st = benchlib.compile_stats(prog["train"], *args)
  st["per_device_bytes"] = (st.get("argument_size_in_bytes", 0)
                            + st.get("output_size_in_bytes", 0)
                            + st.get("temp_size_in_bytes", 0)
                            - st.get("alias_size_in_bytes", 0))
  st["state_bytes"] = _nbytes(args[0]) // layout.nets
  st["training_set_bytes"] = _nbytes(args[2:4]) // layout.data // (
      layout.nets if per_net_data else 1)
  return st


def net_has_blocks(net: NetFns, image_shape) -> bool:
  """Whether `net` calls residual blocks that `remat_blocks` rematerialises (traced once,
  shapes only)."""
  variables = jax.eval_shape(net.init, jax.random.key(0))
  x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  plain = jax.make_jaxpr(lambda v, x: net.apply(v, x, True)[0])(variables, x)
  with remat_blocks():
    wrapped = jax.make_jaxpr(lambda v, x: net.apply(v, x, True)[0])(variables, x)
  return "remat" in str(wrapped) and "remat" not in str(plain)


def residual_bytes(net: NetFns, batch: int, image_shape, skip: int | None) -> int:
  """Bytes JAX keeps from one network's training forward for its backward pass (the vjp's
  residuals, from the traced program: no compile) at `batch` images; `skip` = None: no
  remat, k: every residual block but the first k rematerialised."""
  variables = jax.eval_shape(net.init, jax.random.key(0))
  x = jax.ShapeDtypeStruct((batch,) + tuple(image_shape), jnp.float32)

  def residuals(v, x):
    def f(params):
      if skip is None:
        return net.apply({**v, "params": params}, x, True)[0]
      with remat_blocks(skip):
        return net.apply({**v, "params": params}, x, True)[0]
    return jax.vjp(f, v["params"])[1]

  return _nbytes(jax.eval_shape(residuals, variables, x))


def step_flops(net: NetFns, settings: EvalSettings, n_train: int, image_shape) -> float | None:
  """XLA's FLOPs of one training step of one network at the full batch on one device."""
  s = dataclasses.replace(settings, num_nets=1)
  prog = _programs(net, s, False, Layout(), "vmap", n_train, backend.policy())
  keys = net_keys(s.seed, [0])
  states = jax.eval_shape(prog["init"], keys)
  x = jax.ShapeDtypeStruct((n_train,) + tuple(image_shape), jnp.float32)
  y = jax.ShapeDtypeStruct((n_train,), jnp.int32)
  i32 = jax.ShapeDtypeStruct((), jnp.int32)
  _, st = benchlib.compile_stats(prog["step"], states, keys, x, y, i32, i32)
  return st.get("flops")


# ------------------------------------------------------------------------------ the plan

@dataclasses.dataclass
class EvalPlan:
  """The chosen way to run one architecture's evaluation and what it needs per device."""
  model: str
  settings: EvalSettings
  num_nets: int
  num_train: int
  num_test: int
  image_shape: tuple
  devices: int
  layout: Layout
  vectorize: str
  budget_bytes: int
  stats: dict                     # `_compile` of the chosen program
  test_set_bytes: int             # per device
  per_device_bytes: int
  fits: bool
  estimated: bool                 # remat figure estimated (module docstring)
  policy: str
  compiles: int
  plan_s: float
  tried: list                     # [(layout text, vectorize, per-device bytes, estimated)]
  flops_per_step: float | None = None
  note: str = ""

  @property
  def batch(self) -> int:
    return min(self.settings.batch_size, self.num_train)

  @property
  def steps_per_epoch(self) -> float:
    return self.num_train / self.batch

  @property
  def flops_per_epoch(self) -> float | None:
    return None if self.flops_per_step is None else self.flops_per_step * self.steps_per_epoch

  @property
  def flops_per_run(self) -> float | None:
    f = self.flops_per_epoch
    return None if f is None else f * self.settings.passes

  def lines(self) -> list[str]:
    st, lay = self.stats, self.layout
    gib = lambda b: f"{b / GIB:8.2f} GiB"
    per_dev_batch = -(-self.batch // lay.data)
    out = [
        f"evaluation memory plan, per device ({lay.devices} of {self.devices} device(s): "
        f"{lay.describe()}; {self.policy} policy):",
        f"  training set shard     {gib(st['training_set_bytes'])}",
        f"  test set shard         {gib(self.test_set_bytes)}",
        f"  params + optimiser     {gib(st['state_bytes'])}",
        f"  step temporaries       {gib(st.get('temp_size_in_bytes', 0))}",
        f"  total                  {gib(self.per_device_bytes)} of {gib(self.budget_bytes)}"
        f" budget: {'fits' if self.fits else 'DOES NOT FIT'}"
        f"{' (estimated, see note)' if self.estimated else ''}",
        f"  split: {self.model} x{self.num_nets} ({self.settings.protocol} protocol), "
        f"{lay.nets_per_device(self.num_nets)} network(s) per device, batch {self.batch} = "
        f"{lay.data} x {per_dev_batch} image(s); vectorize {self.vectorize}, remat "
        f"{'on' if lay.remat else 'off'}",
    ]
    if self.flops_per_step is not None:
      out.append(f"  flops: {self.flops_per_step:.3e} per step ({self.num_nets} network(s)), "
                 f"{self.flops_per_epoch:.3e} per epoch ({self.steps_per_epoch:.1f} steps), "
                 f"{self.flops_per_run:.3e} per run ({self.settings.passes} passes)")
    if self.note:
      out.append(f"  note: {self.note}")
    return out

  def summary(self) -> dict:
    st, lay = self.stats, self.layout
    return {"fits": bool(self.fits), "model": self.model, "protocol": self.settings.protocol,
            "num_nets": self.num_nets, "num_train": self.num_train, "num_test": self.num_test,
            "image_shape": list(self.image_shape), "batch_size": self.batch,
            "passes": self.settings.passes, "devices": self.devices,
            "nets_axis": lay.nets, "data_axis": lay.data, "remat": lay.remat,
            "nets_per_device": lay.nets_per_device(self.num_nets),
            "batch_per_device": -(-self.batch // lay.data), "vectorize": self.vectorize,
            "per_device_bytes": int(self.per_device_bytes), "budget_bytes": self.budget_bytes,
            "estimated": self.estimated,
            "temp_bytes": st.get("temp_size_in_bytes"),
            "argument_bytes": st.get("argument_size_in_bytes"),
            "training_set_bytes": st["training_set_bytes"],
            "test_set_bytes": self.test_set_bytes, "state_bytes": st["state_bytes"],
            "flops_per_step": self.flops_per_step, "flops_source": "xla_cost_analysis",
            "steps_per_epoch": self.steps_per_epoch, "flops_per_epoch": self.flops_per_epoch,
            "flops_per_run": self.flops_per_run, "compile_s": st.get("compile_s"),
            "plan_s": self.plan_s, "compiles": self.compiles, "policy": self.policy,
            "tried": self.tried, "note": self.note}


def _test_bytes(num_test: int, image_shape, test_batch_size: int, data: int) -> int:
  """Bytes per device of the test batches (`execution.test_batches`, sharded on data)."""
  if not num_test:
    return 0
  tb = min(test_batch_size, num_test)
  tb = -(-tb // data) * data
  nb = -(-num_test // tb)
  return nb * (tb // data) * (int(np.prod(image_shape)) * 4 + 4 + 1)


def plan_evaluation(settings: EvalSettings, *, num_classes: int, image_shape, num_train: int,
                    num_test: int = 0, model: str | None = None, net: NetFns | None = None,
                    num_nets: int | None = None, devices: int | None = None,
                    budget: int | None = None, memory_budget_gb: float = 0.0,
                    data_axis: int = 0, remat: str = "auto", vectorize: str = "vmap",
                    per_net_data: bool = False, test_batch_size: int = 500,
                    flops: bool = True, log: Callable[[str], None] | None = None) -> EvalPlan:
  """The first candidate (`candidates`) whose program fits SAFETY × the budget, else the
  smallest one with `fits` telling whether it is within the budget at all (module
  docstring). `devices`: how many of `jax.devices()` the evaluation may use (None = all)."""
  t0 = time.perf_counter()
  model = (model or settings.model).lower()
  image_shape = tuple(int(s) for s in image_shape)
  if net is None:
    net = registry_net(model, num_classes=num_classes, image_shape=image_shape)
  num_nets = int(num_nets or settings.num_nets)
  devices = int(devices or jax.device_count())
  budget = int(budget if budget is not None else budget_bytes(memory_budget_gb))
  batch = min(settings.batch_size, int(num_train))
  policy = backend.policy()
  blocks = remat != "off" and net_has_blocks(net, image_shape)
  cands = candidates(num_nets, batch, devices, data_axis=data_axis, remat=remat,
                     vectorize=vectorize, blocks=blocks, policy=policy)
  estimate = jax.default_backend() == "cpu"
  tried, compiles, chosen, last = [], 0, None, None
  for layout, vec in cands:
    est = estimate and layout.remat
    if est:   # the same program without remat, minus what remat no longer keeps
      base = dataclasses.replace(layout, remat=False)
      if last is None or last[0] != (base, vec):
        last = ((base, vec), _compile(net, settings, base, vec, per_net_data, num_nets,
                                      int(num_train), image_shape))
        compiles += 1
      st = dict(last[1])
      per_dev_batch = -(-batch // layout.data)
      live = layout.nets_per_device(num_nets) if vec != "map" else 1
      saving = (residual_bytes(net, per_dev_batch, image_shape, None)
                - residual_bytes(net, per_dev_batch, image_shape, 1))
      st["remat_saving_bytes"] = int(live * max(0, saving))
      st["per_device_bytes"] = st["per_device_bytes"] - st["remat_saving_bytes"]
    else:
      st = _compile(net, settings, layout, vec, per_net_data, num_nets, int(num_train),
                    image_shape)
      compiles += 1
      last = ((layout, vec), st)
    test_b = _test_bytes(num_test, image_shape, test_batch_size, layout.data)
    total = int(st["per_device_bytes"] + test_b)
    tried.append([f"{layout.nets}x{layout.data}{' remat' if layout.remat else ''}", vec,
                  total, est])
    chosen = (layout, vec, st, test_b, total, est)
    if total <= SAFETY * budget:
      break
  layout, vec, st, test_b, total, est = chosen
  fits = total <= budget
  note = ""
  if est:
    note = (f"remat figure estimated: XLA:CPU does not model rematerialisation; compiled "
            f"without it minus {st['remat_saving_bytes'] / GIB:.2f} GiB of residuals it "
            f"no longer keeps")
  if not fits:
    note = (f"memory_budget_gb: the evaluation needs {total / GIB:.2f} GiB per device with "
            f"the smallest split tried, over the {budget / GIB:.2f} GiB budget; use more "
            f"devices, fewer networks at a time (eval.num_nets), a lower "
            f"dataset.resolution, or raise memory_budget_gb; a smaller eval.batch_size "
            f"fits too but changes the protocol" + (f" ({note})" if note else ""))
  elif total > SAFETY * budget:
    note = "within the budget but above its safety margin" + (f"; {note}" if note else "")
  plan = EvalPlan(model=model, settings=dataclasses.replace(settings, num_nets=num_nets),
                  num_nets=num_nets, num_train=int(num_train), num_test=int(num_test),
                  image_shape=image_shape, devices=devices, layout=layout, vectorize=vec,
                  budget_bytes=budget, stats=st, test_set_bytes=test_b,
                  per_device_bytes=total, fits=fits, estimated=est, policy=policy,
                  compiles=compiles, plan_s=0.0, tried=tried, note=note)
  if flops:
    plan.flops_per_step = step_flops(net, settings, int(num_train), image_shape)
    if plan.flops_per_step is not None:
      plan.flops_per_step *= num_nets
    plan.compiles += 1
  plan.plan_s = time.perf_counter() - t0
  if log is not None:
    for line in plan.lines():
      log(line)
  return plan


@functools.lru_cache(maxsize=32)
def _cached_plan(settings, model, net, num_classes, image_shape, num_train, num_test,
                 num_nets, devices, budget, data_axis, remat, vectorize, per_net_data,
                 test_batch_size, policy):
  del policy    # part of the key: the programs differ per policy
  return plan_evaluation(settings, num_classes=num_classes, image_shape=image_shape,
                         num_train=num_train, num_test=num_test, model=model, net=net,
                         num_nets=num_nets, devices=devices, budget=budget,
                         data_axis=data_axis, remat=remat, vectorize=vectorize,
                         per_net_data=per_net_data, test_batch_size=test_batch_size,
                         flops=False)


def choose(settings: EvalSettings, *, model: str, net: NetFns, num_classes: int, image_shape,
           num_train: int, num_test: int, num_nets: int, per_net_data: bool = False,
           num_devices: int | None = None, memory_budget_gb: float = 0.0,
           data_axis: int = 0, remat: str = "auto", vectorize: str | None = None,
           test_batch_size: int = 500,
           log: Callable[[str], None] | None = None) -> tuple[Layout, str | None]:
  """(layout, vectorize or None = the backend's) for one evaluation run.

  CPU policy: no compile, today's choices (`default_layout`; `data_axis` / remat "on" when
  asked for). Accelerator policy: `plan_evaluation` (cached per shapes, so condense's
  in-loop evaluations plan once), its block logged; ConfigError when nothing fits."""
  if remat not in REMAT:
    raise ConfigError(f"--remat: must be one of {REMAT}, got {remat!r}")
  devices = int(num_devices or jax.device_count())
  batch = min(settings.batch_size, int(num_train))
  if backend.policy() == "cpu":
    on = remat == "on"
    if on and not net_has_blocks(net, image_shape):
      raise ConfigError(f"--remat on: {model} has no residual blocks to rematerialise "
                        "(only the ResNets have)")
    if data_axis:
      cand = candidates(num_nets, batch, devices, data_axis=data_axis, remat="off",
                        policy="cpu")[0][0]
    else:
      cand = default_layout(num_nets, batch, num_devices, "cpu")
    return dataclasses.replace(cand, remat=on), vectorize
  plan = _cached_plan(settings, model, net, num_classes, tuple(int(s) for s in image_shape),
                      int(num_train), int(num_test), int(num_nets), devices,
                      budget_bytes(memory_budget_gb), int(data_axis), remat,
                      vectorize or "vmap", bool(per_net_data), int(test_batch_size),
                      backend.policy())
  if log is not None:
    for line in plan.lines():
      log(line)
  if not plan.fits:
    raise ConfigError(plan.note)
  return plan.layout, plan.vectorize


# ------------------------------------------------------------------------------ --plan

def run_plan(config, devices: int = 0, *, data_axis: int = 0, remat: str = "auto",
             models=None, test_batch_size: int = 500,
             log: Callable[[str], None] = print) -> dict:
  """`python -m jaxcond.evaluate --plan`: the plan of every architecture of the config's
  pool from shapes only (the dataset's shape, classes and test size from the registry;
  the training set = classes × ipc × factor² images, the decoded set the protocols train
  on). Prints each block; returns the first architecture's `EvalPlan.summary()` (with the
  others under "pool")."""
  configs.validate(config)
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  settings = EvalSettings.from_config(config)
  if models:
    settings = dataclasses.replace(settings, models=tuple(models))
  factor = int(config.synthetic.factor)
  num_train = int(info.num_classes) * int(config.ipc) * factor * factor
  num_test = int(config.dataset.holdout) * int(info.num_classes) or int(info.num_test or 0)
  # The accelerator policy unless JAXCOND_BACKEND_POLICY=cpu: a plan is how an evaluation
  # is checked for a GPU/TPU before paying for one (as `condense --plan`).
  policy = "cpu" if os.environ.get("JAXCOND_BACKEND_POLICY") == "cpu" else "accelerator"
  n_dev = devices or config.num_devices or jax.device_count()
  out = []
  with backend.force(policy):
    for name in settings.pool:
      plan = plan_evaluation(settings, num_classes=int(info.num_classes),
                             image_shape=info.image_shape, num_train=num_train,
                             num_test=num_test, model=name, devices=n_dev,
                             memory_budget_gb=float(config.memory_budget_gb),
                             data_axis=data_axis, remat=remat,
                             test_batch_size=test_batch_size, log=log)
      out.append(plan.summary())
  first = dict(out[0])
  if len(out) > 1:
    first["pool"] = out[1:]
  return first


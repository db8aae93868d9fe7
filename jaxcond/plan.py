"""The memory plan of the condensation step: chunk sizes from a budget, checked by XLA.

The step (jaxcond.steps) streams the real side in chunks (`real_cpg` classes per device ×
`real_chunk` images per class per scan iteration) and takes the synthetic gradient class
group by class group (`syn_cpg` classes per device per group). None of this changes the
maths; it bounds the activation memory. This module chooses those sizes:

1. a preference: on CPU the speed choices measured on a 2-core machine (~160 real images
   per iteration, ~50 synthetic 32×32 images per group, unrolled when there are few groups;
   docs/benchmarks.md); on accelerators one chunk (largest batches); explicit config values
   (`real_chunk` / `syn_chunk` > 0, or 0 = off) win over both;
2. the budget: `memory_budget_gb` per device, or (0) the device's own limit
   (`memory_stats()["bytes_limit"]` on GPU/TPU, host memory / local devices on CPU);
3. the check: the step is compiled from shapes only (`jax.ShapeDtypeStruct`, so no data is
   needed) and its `memory_analysis()` gives arguments + outputs + temporaries per device.
   If the preference does not fit, the per-image activation bytes of the real forward and
   of the synthetic forward+backward are measured on two tiny compiles each, the largest
   chunks that fit are taken, and one more compile verifies them (shrinking if not).

`make_plan` returns the settings with the chunks filled in and a report (`Plan.lines()`:
one block per device; `Plan.summary()`: the JSON of `--plan`). When nothing fits it raises
ConfigError with one line saying what to change. `build_step` is the one jitted sharded step
that `jaxcond.condense`, `jaxcond.bench` and `--plan` all use.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcond import backend, benchlib, configs, data, nets, parallel, pool_files, steps
from jaxcond.data import registry
from jaxcond.errors import ConfigError

GIB = 2 ** 30
CPU_REAL_IMAGES = 160     # real images per device per scan iteration (CPU preference)
SYN_CHUNK_CPU = 50        # synthetic 32×32 images per gradient group (CPU preference)
CPU_MAX_UNROLL = 32       # CPU: unroll the group scan up to this many groups
SAFETY = 0.85             # plan to this fraction of the budget (allocator slack)


def _platform() -> str:
  """The policy whose preferences apply: 'cpu' or 'accelerator' (`jaxcond.backend`, where
  `backend.force(...)` or `JAXCOND_BACKEND_POLICY` override it, e.g. for tests)."""
  return backend.policy()


def budget_bytes(config, policy: str | None = None) -> int:
  """Per-device memory budget: `memory_budget_gb` GiB, else the device's limit."""
  gb = float(config.memory_budget_gb)
  if gb > 0:
    return int(gb * GIB)
  dev = jax.local_devices()[0]
  limit = backend.device_memory_bytes(dev) or 16 * GIB
  if dev.platform == "cpu":     # the (fake) CPU devices share the host's memory
    limit //= max(1, jax.local_device_count())
  return int(limit)


# ------------------------------------------------------------------------------ preferences

def cpu_real_chunk(batch_real: int, local_classes: int, images: int = CPU_REAL_IMAGES) -> int:
  """Real images per class per iteration so one iteration holds about `images` images
  (a divisor of batch_real): the CPU speed choice (docs/benchmarks.md)."""
  target = max(1, images // max(1, local_classes))
  return max(d for d in range(1, min(target, batch_real) + 1) if batch_real % d == 0)


def cpu_syn_images(image_shape) -> int:
  """Synthetic images per group on CPU: ~50 of 32×32, as many of the same total area at
  other sizes (the gain is the activations fitting the cache, so tiny images take one)."""
  h, w = int(image_shape[0]), int(image_shape[1])
  return max(1, round(SYN_CHUNK_CPU * 32 * 32 / (h * w)))


def real_layout(images: int, batch_real: int, local: int) -> tuple[int, int]:
  """(real_chunk, real_cpg) for about `images` real images per device per iteration."""
  if images >= local * batch_real:
    return 0, 0
  if images >= local:
    return cpu_real_chunk(batch_real, local, images), 0
  k = max(d for d in range(1, min(images, batch_real) + 1) if batch_real % d == 0)
  return k, max(1, images // k)


def real_images(s, local: int) -> int:
  k = s.real_chunk or s.batch_real
  return (s.real_cpg or local) * k


def syn_images(s, local: int) -> int:
  return (s.syn_cpg or local) * s.syn_per_class


def with_layout(s, local: int, real: int, syn: int, policy: str):
  """Settings with the chunks for about `real` / `syn` images per device per iteration."""
  k, rcpg = real_layout(real, s.batch_real, local)
  scpg = max(1, syn // max(1, s.syn_per_class))
  scpg = 0 if scpg >= local else scpg
  groups = steps.num_groups(local, scpg)
  unroll = policy == "cpu" and 1 < groups <= CPU_MAX_UNROLL
  return dataclasses.replace(s, real_chunk=k, real_cpg=rcpg, syn_cpg=scpg, syn_unroll=unroll)


def preferred(config, s, local: int, policy: str) -> tuple[int, int, bool, bool]:
  """(real images, synthetic images, real fixed?, synthetic fixed?) per device per
  iteration before the budget: explicit config values, else the policy's preference."""
  full_real, full_syn = local * s.batch_real, local * s.syn_per_class
  rc, sc = int(config.real_chunk), int(config.syn_chunk)
  if rc == 0:
    real, real_fixed = full_real, True
  elif rc > 0:
    real, real_fixed = local * rc, True
  else:
    real, real_fixed = (CPU_REAL_IMAGES if policy == "cpu" else full_real), False
    if policy == "cpu":
      real = local * cpu_real_chunk(s.batch_real, local)
  if sc == 0:
    syn, syn_fixed = full_syn, True
  elif sc > 0:
    syn, syn_fixed = sc, True
  else:
    syn, syn_fixed = (cpu_syn_images(s.image_shape) if policy == "cpu" else full_syn), False
  return min(real, full_real), min(max(syn, s.syn_per_class), full_syn), real_fixed, syn_fixed


# ------------------------------------------------------------------------------ the step

def state_shardings(s, mesh):
  """The state's shardings: per-pixel leaves (the synthetic set, momentum / Adam moments)
  class-sharded like the set, scalars (Adam's count, the plateau state) replicated."""
  syn = parallel.class_sharding(mesh, 5)
  rep = parallel.replicated(mesh)
  opt = jax.eval_shape(lambda: steps.optimizer(s).init(jnp.zeros((1,) * 5)))
  return {"syn": syn, "opt": jax.tree.map(lambda a: syn if a.ndim == 5 else rep, opt)}


def opt_copies(s) -> int:
  """Per-pixel arrays in the optimiser state: 0 (plain SGD), 1 (momentum), 2 (Adam)."""
  opt = jax.eval_shape(lambda: steps.optimizer(s).init(jnp.zeros((1,) * 5)))
  return sum(1 for a in jax.tree.leaves(opt) if a.ndim == 5)


def pool_args(s, mesh, model=None):
  """ShapeDtypeStructs of the pool argument, replicated on every device (`steps.Pool`)."""
  model = model if model is not None else steps.make_model(s)
  rep = parallel.replicated(mesh)
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
                      steps.pool_shapes(model, s))


def pool_bytes(s) -> int:
  """Bytes of the pool argument (initial + final weights of every net), per device."""
  if not s.uses_pool:
    return 0
  shapes = steps.pool_shapes(steps.make_model(s), s)
  return int(sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(shapes)))


def build_step(s, mesh, *, streaming: bool = False, model=None):
  """The jitted, sharded condensation step that condense, bench and `--plan` run.

  Bank mode: `fn(state, bank, step)` samples the real batch from the class bank inside the
  jit; streaming: `fn(state, real_u8, class_ids, step)`. With a pool (`s.pool_size` > 0)
  its weights come before `step`: `fn(state, bank, pool, step)`, replicated. State donated,
  outputs sharded.
  """
  sharding = lambda ndim: parallel.class_sharding(mesh, ndim)
  out = (state_shardings(s, mesh), parallel.replicated(mesh))
  if streaming:
    fn = steps.make_step(s, sharding, model)
  else:
    fn = steps.make_bank_step(s, data.sample_real, sharding, model)
  return jax.jit(fn, donate_argnums=(0,), out_shardings=out)


def abstract_args(s, mesh, *, depth: int, streaming: bool = False) -> tuple:
  """ShapeDtypeStructs (with shardings) of the step's arguments: no data needed."""
  c_pad = parallel.padded_num_classes(s.num_classes, mesh)
  hwc = tuple(int(v) for v in s.image_shape)
  shard = lambda nd: parallel.class_sharding(mesh, nd)
  state = jax.eval_shape(lambda: steps.init_state(s, jnp.zeros((c_pad, s.ipc) + hwc)))
  state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                       state, state_shardings(s, mesh))
  ids = jax.ShapeDtypeStruct((c_pad,), jnp.int32, sharding=shard(1))
  step = jax.ShapeDtypeStruct((), jnp.int32)
  pool = (pool_args(s, mesh),) if s.uses_pool else ()
  if streaming:
    real = jax.ShapeDtypeStruct((c_pad, s.batch_real) + hwc, jnp.uint8, sharding=shard(5))
    return (state, real, ids, *pool, step)
  bank = data.ClassBank(images=jax.ShapeDtypeStruct((c_pad, depth) + hwc, jnp.uint8,
                                               sharding=shard(5)),
                   counts=ids, class_ids=ids)
  return (state, bank, *pool, step)


def compile_stats(s, mesh, *, depth: int, streaming: bool = False) -> dict:
  """Compiles the step from shapes; memory per device and FLOPs from XLA."""
  jitted = build_step(s, mesh, streaming=streaming)
  args = abstract_args(s, mesh, depth=depth, streaming=streaming)
  compiled, st = benchlib.compile_stats(jitted, *args)
  st["per_device_bytes"] = (st.get("argument_size_in_bytes", 0)
                            + st.get("output_size_in_bytes", 0)
                            + st.get("temp_size_in_bytes", 0)
                            - st.get("alias_size_in_bytes", 0))
  st["compiled"] = compiled
  st["abstract_args"] = args
  return st


def _same_signature(args, abstract) -> bool:
  """Whether concrete `args` have the shapes, dtypes and shardings `abstract` was compiled
  for (a sharding-less leaf, e.g. the step scalar, matches any)."""
  a, b = jax.tree.leaves(args), jax.tree.leaves(abstract)
  if jax.tree.structure(args) != jax.tree.structure(abstract):
    return False
  for x, y in zip(a, b):
    if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype:
      return False
    sx, sy = getattr(x, "sharding", None), getattr(y, "sharding", None)
    if sx is not None and sy is not None and x.ndim and \
        not sx.is_equivalent_to(sy, x.ndim):
      return False
  return True


def _piece_slopes(s) -> dict:
  """Temporary bytes per real image (forward) and per synthetic image (forward + backward
  to the pixels), from two tiny single-device compiles of each piece, and the per-class
  sizes of what the real side keeps (features, tap means)."""
  model = steps.make_model(s)
  one = dataclasses.replace(s, real_chunk=0, real_cpg=0, syn_cpg=0, syn_unroll=False)
  hwc = tuple(int(v) for v in s.image_shape)

  def temp(fn, *args):
    return benchlib.compile_stats(jax.jit(fn), *args)[1].get("temp_size_in_bytes", 0)

  def real_fn(u8, ids):
    v = steps.random_net_variables(model, 0, one)
    return steps.real_features(model, v, u8, ids, 0, one)

  def real_at(n):
    return temp(real_fn, jax.ShapeDtypeStruct((n, 1) + hwc, jnp.uint8),
                jax.ShapeDtypeStruct((n,), jnp.int32))

  spc = s.syn_per_class
  probe = jax.eval_shape(real_fn, jax.ShapeDtypeStruct((1, 1) + hwc, jnp.uint8),
                         jax.ShapeDtypeStruct((1,), jnp.int32))
  feat_dim = int(probe[0].shape[-1])
  tap_elems = 0 if probe[1] is None else sum(
      int(np.prod(t.shape[2:])) * (1 if steps.reduces_real_taps(s) else s.batch_real)
      for t in probe[1])

  def syn_fn(syn, feats, taps, ids):
    def loss(x):
      v = steps.random_net_variables(model, 0, one)
      total, _ = steps.class_losses(model, v, x, feats, taps, ids, 0, one,
                                    final=v if one.uses_calib else None)
      return jnp.sum(total)
    return jax.grad(loss)(syn)

  def syn_at(n):
    feats = jax.ShapeDtypeStruct((n, s.batch_real, feat_dim), jnp.float32)
    taps = None
    if probe[1] is not None:
      taps = [jax.ShapeDtypeStruct((n,) + t.shape[1:], t.dtype) for t in probe[1]]
    return temp(syn_fn, jax.ShapeDtypeStruct((n, s.ipc) + hwc, jnp.float32), feats, taps,
                jax.ShapeDtypeStruct((n,), jnp.int32))

  return {"real": max(1.0, (real_at(16) - real_at(8)) / 8.0),
          "syn": max(1.0, (syn_at(2) - syn_at(1)) / float(spc)),
          "feat_dim": feat_dim, "tap_elems": tap_elems}


# ------------------------------------------------------------------------------ FLOPs

def convnet_flops(s) -> float | None:
  """Convolution FLOPs of one step for the ConvNet family (None for other nets).

  Per image and block: 2·H·W·C_in·C_out·9 multiply-adds (output size, padding 1; 3 for a
  1-channel first layer). Real images: forward only (no gradient). Synthetic: forward plus
  the backward to the pixels (≈ 1 forward per conv; no weight gradients are needed since
  the net is constant). Norm, pooling, augmentation and the objective are not counted.
  """
  if not s.model_name.startswith("convnet"):
    return None
  model = nets.get_model(s.model_name, num_classes=s.num_classes, image_shape=s.image_shape,
                         **dict(s.model_overrides))
  h, w, cin = s.image_shape
  per_image = 0.0
  for d in range(model.depth):
    pad = 3 if (cin == 1 and d == 0) else 1
    h, w = h + 2 * pad - 2, w + 2 * pad - 2
    c_in = cin if d == 0 else model.width
    per_image += 2.0 * h * w * c_in * model.width * 9
    if model.pool != "none":
      h, w = h // 2, w // 2
  # the backward of the first conv to the pixels is as costly as its forward
  return s.num_classes * per_image * (s.batch_real + 2 * s.syn_per_class)


def step_flops(s, xla_flops: float | None) -> tuple[float | None, str]:
  """(FLOPs per step, source): XLA's cost analysis, or the ConvNet convolution count when
  that is > 10 % larger (XLA counts the body of a while loop, lax.map / scan, once, and
  the chunked step loops)."""
  model = convnet_flops(s)
  if model and (not xla_flops or model > 1.1 * xla_flops):
    return model, "convnet_model"
  return xla_flops, "xla_cost_analysis"


# ------------------------------------------------------------------------------ the plan

@dataclasses.dataclass
class Plan:
  settings: Any            # StepSettings with the chunks chosen
  devices: int
  local_classes: int
  budget_bytes: int
  stats: dict              # compile_stats of the chosen step
  bank_bytes: int
  state_bytes: int
  fits: bool
  policy: str
  compile_s: float         # compile time of the chosen step
  plan_s: float            # all compiles of the planning
  compiles: int
  note: str = ""
  steps: int = 0           # condensation steps of the run (config.steps): FLOPs per run
  pool_bytes: int = 0      # the pool argument (replicated), part of the arguments

  def executable_for(self, *args):
    """The step the plan compiled, if `args` match the shapes it was compiled for (then
    the run does not compile the same program a second time); else None."""
    compiled, abstract = self.stats.get("compiled"), self.stats.get("abstract_args")
    if compiled is None or abstract is None or not _same_signature(args, abstract):
      return None
    return compiled

  @property
  def per_device_bytes(self) -> int:
    return int(self.stats["per_device_bytes"])

  def chunks_line(self) -> str:
    s, local = self.settings, self.local_classes
    k = s.real_chunk or s.batch_real
    rcpg = s.real_cpg or local
    r_iters = steps.num_groups(local, rcpg) * (s.batch_real // k)
    g = steps.num_groups(local, s.syn_cpg)
    line = (f"real {rcpg} class(es) x {k} image(s) per iteration ({r_iters} iteration(s)); "
            f"synthetic {s.syn_cpg or local} class(es) x {s.syn_per_class} image(s) per "
            f"group ({g} group(s){', unrolled' if s.syn_unroll else ''})")
    if s.method == "ncfm" and (s.freq_chunk or s.sample_chunk):
      line += (f"; NCFM {s.freq_chunk or s.num_freqs} frequencies"
               + (f" x {s.sample_chunk} samples" if s.sample_chunk else "") + " per iteration")
    return line

  def lines(self, note: bool = True) -> list[str]:
    st = self.stats
    gib = lambda b: f"{b / GIB:8.2f} GiB"
    temp = st.get("temp_size_in_bytes", 0)
    pool = [f"  feature-net pool       {gib(self.pool_bytes)} ({self.settings.pool_size} "
            f"nets, initial + final weights, replicated)"] if self.pool_bytes else []
    return [
        f"memory plan, per device ({self.devices} device(s), {self.local_classes} class "
        f"slot(s) each, {self.policy} policy):",
        f"  bank shard             {gib(self.bank_bytes)}",
        f"  synthetic + optimiser  {gib(self.state_bytes)}",
        *pool,
        f"  step temporaries       {gib(temp)}",
        f"  total                  {gib(self.per_device_bytes)} of {gib(self.budget_bytes)}"
        f" budget: {'fits' if self.fits else 'DOES NOT FIT'}",
        f"  chunks: {self.chunks_line()}",
    ] + self.flops_lines() + ([f"  note: {self.note}"] if note and self.note else [])

  def flops_lines(self) -> list[str]:
    flops, source = self.flops()
    if not flops:
      return []
    return [f"  flops: {flops:.3e} per step ({source}), {flops * self.steps:.3e} per run "
            f"({self.steps} steps)"]

  def flops(self) -> tuple[float | None, str]:
    """FLOPs per step and where the count comes from (`step_flops`)."""
    return step_flops(self.settings, self.stats.get("flops"))

  def summary(self) -> dict:
    s = self.settings
    flops, source = self.flops()
    return {"fits": bool(self.fits), "devices": self.devices,
            "per_device_bytes": self.per_device_bytes, "budget_bytes": self.budget_bytes,
            "flops_per_step": flops, "flops_source": source,
            "flops_per_run": flops * self.steps if flops else None, "steps": self.steps,
            "compile_s": self.compile_s,
            "plan_s": self.plan_s, "compiles": self.compiles,
            "temp_bytes": self.stats.get("temp_size_in_bytes"),
            "argument_bytes": self.stats.get("argument_size_in_bytes"),
            "bank_bytes": self.bank_bytes, "state_bytes": self.state_bytes,
            "real_chunk": s.real_chunk, "real_cpg": s.real_cpg, "syn_cpg": s.syn_cpg,
            "syn_unroll": s.syn_unroll, "local_classes": self.local_classes,
            "policy": self.policy, "method": s.method, "ipc": s.ipc,
            "num_classes": s.num_classes, "image_shape": list(s.image_shape),
            "note": self.note}


def cf_chunks(s) -> list[tuple[int, int]]:
  """NCFM's (freq_chunk, sample_chunk) to try, largest first: frequency chunks of
  FREQ_BLOCK·2^k below `num_freqs`, then sample chunks (256, 64) at the smallest."""
  sizes, f = [], steps.FREQ_BLOCK
  while f < s.num_freqs:
    sizes.insert(0, f)
    f *= 2
  n = s.batch_real + s.syn_per_class
  smallest = sizes[-1] if sizes else 0
  return [(f, 0) for f in sizes] + [(smallest, k) for k in (256, 64) if k < n]


def _advice(s, config, devices) -> str:
  return (f"reduce ipc ({s.ipc}) or batch_real ({s.batch_real}), lower "
          f"dataset.resolution, use more devices (now {devices}), set "
          f"dataset.streaming=True (no bank on the device), or raise memory_budget_gb")


def make_plan(config, s, mesh, *, depth: int, streaming: bool = False,
              policy: str | None = None, strict: bool = True,
              log: Callable[[str], None] | None = None) -> Plan:
  """Chooses the chunks of `s` for `mesh` under the budget (module docstring).

  depth: bank depth (largest class; ignored when streaming). strict: raise ConfigError
  when nothing fits (else return the smallest plan with fits=False, for `--plan`).
  """
  policy = policy or _platform()
  t_all = time.perf_counter()
  devices = mesh.size
  c_pad = parallel.padded_num_classes(s.num_classes, mesh)
  local = c_pad // devices
  budget = budget_bytes(config)
  target = int(SAFETY * budget)
  hwc = 1
  for v in s.image_shape:
    hwc *= int(v)
  bank_bytes = 0 if streaming else local * depth * hwc
  state_bytes = local * s.ipc * hwc * 4 * (1 + opt_copies(s))
  nets_bytes = pool_bytes(s)
  bn = configs.uses_batch_norm(config)
  compiles = 0

  def check(candidate):
    nonlocal compiles
    compiles += 1
    return compile_stats(candidate, mesh, depth=depth, streaming=streaming)

  real, syn, real_fixed, syn_fixed = preferred(config, s, local, policy)
  if bn:   # batch statistics span the whole batch: no chunks (configs.validate refuses them)
    real, syn, real_fixed, syn_fixed = local * s.batch_real, local * s.syn_per_class, True, True
  cand = with_layout(s, local, real, syn, policy)
  note = ""
  sl = None

  def layout(r, y):
    """Real / synthetic images per chunk; a side fixed by the config keeps its value."""
    return with_layout(s, local, real if real_fixed else r, syn if syn_fixed else y, policy)

  chunks = lambda c: (c.real_chunk, c.real_cpg, c.syn_cpg)
  smallest = layout(1, s.syn_per_class)   # the least memory the step can be made to need

  def fixed_bytes():
    """What does not scale with the chunks: arguments (bank shard, state), the sampled real
    batch, the real features and tap means, the gradient and the new state."""
    return (bank_bytes + 3 * state_bytes + nets_bytes + local * s.batch_real * hwc
            + 4 * local * (s.batch_real * sl["feat_dim"] + sl["tap_elems"]))

  if policy != "cpu" and not (real_fixed and syn_fixed):
    # Accelerators: predict from the per-image slopes before compiling the big program.
    sl = _piece_slopes(cand)
    compiles += 4
    room = target - fixed_bytes()
    if room > 0:
      cand = layout(max(1, min(real, int(room / sl["real"]))),
                    max(s.syn_per_class, min(syn, int(room / sl["syn"]))))
    else:   # the fixed part alone is over: report the smallest chunks, the true minimum
      cand = smallest
  st = check(cand)
  if st["per_device_bytes"] > target and not (real_fixed and syn_fixed):
    # The compiled program is the truth: scale the chunks by the ratio of the room to the
    # activation part it measured (total minus the fixed part), and verify again.
    if sl is None:
      sl = _piece_slopes(cand)
      compiles += 4
    fixed = fixed_bytes()
    if target <= fixed and chunks(smallest) != chunks(cand):
      cand, st = smallest, check(smallest)
    for _ in range(4):
      act = max(1, st["per_device_bytes"] - fixed)
      f = 0.9 * (target - fixed) / act
      if target <= fixed or f >= 1:
        break
      new = layout(max(1, int(real_images(cand, local) * f)),
                   max(s.syn_per_class, int(syn_images(cand, local) * f)))
      if chunks(new) == chunks(cand):
        break
      cand, st = new, check(new)
      if st["per_device_bytes"] <= target:
        break
  if s.method == "ncfm" and st["per_device_bytes"] > target:
    cand, st = _cf_chunked(s, cand, st, check, target)
  fits = st["per_device_bytes"] <= budget
  if st["per_device_bytes"] > target and fits:
    note = "within the budget but above its safety margin"
  plan = Plan(settings=cand, devices=devices, local_classes=local, budget_bytes=budget,
              stats=st, bank_bytes=bank_bytes, state_bytes=state_bytes, fits=fits,
              policy=policy, compile_s=st["compile_s"],
              plan_s=time.perf_counter() - t_all, compiles=compiles, note=note,
              steps=int(config.steps), pool_bytes=nets_bytes)
  return _report(plan, s, config, bn, strict, log)


def _cf_chunked(s, cand, st, check, target):
  """NCFM's objective holds [classes, samples, frequencies] projections per group: chunk
  the frequencies (then the samples) when the smallest class layout is still over."""
  for fc, sc in cf_chunks(s):
    cand = dataclasses.replace(cand, freq_chunk=fc, sample_chunk=sc)
    st = check(cand)
    if st["per_device_bytes"] <= target:
      break
  return cand, st


def _report(plan: "Plan", s, config, bn: bool, strict: bool, log) -> "Plan":
  """The no-fit note, the printed block (a strict run's error line says the note: it is
  printed once) and, strict, the ConfigError of a plan that does not fit."""
  if not plan.fits:
    plan.note = _no_fit_message(plan, s, config, bn)
  if log is not None:
    for line in plan.lines(note=plan.fits or not strict):
      log(line)
  if strict and not plan.fits:
    raise ConfigError(plan.note)
  return plan


def _no_fit_message(plan: "Plan", s, config, bn: bool) -> str:
  """The one line of a plan that does not fit: what it needs, what dominates, what to do."""
  why = ("batch-norm nets take the whole batch at once, so nothing can be chunked; "
         if bn else "")
  held = plan.bank_bytes + plan.state_bytes
  if held > plan.budget_bytes:
    why += (f"the bank shard ({_size(plan.bank_bytes)}) and the synthetic set with its "
            f"optimiser state ({_size(plan.state_bytes)}) alone exceed it; ")
  return (f"memory_budget_gb: the step needs {_size(plan.per_device_bytes)} per device with "
          f"the smallest chunks, over the {_size(plan.budget_bytes)} budget; "
          f"{why}{_advice(s, config, plan.devices)}")


def _size(b: float) -> str:
  for unit, scale in (("GiB", GIB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
    if b >= scale:
      return f"{b / scale:.1f} {unit}"
  return f"{int(b)} bytes"


def setup_fake_devices(devices: int | None) -> None:
  """`--plan --devices N`: N fake CPU devices (must run before JAX's backend starts)."""
  if not devices:
    return
  if devices < 1:
    raise ConfigError(f"--devices: must be >= 1, got {devices}")
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", int(devices))


def run_plan(config, devices: int = 0, *, log: Callable[[str], None] = print) -> dict:
  """`--plan`: the plan of `config` from shapes only (no data is read; the dataset's shape
  and classes come from the registry). Prints the plan block; returns `Plan.summary()`.
  With `pool.path` the pool's size comes from its manifest, or from `pool.size` when the
  path holds no pool yet (a pool is planned from its shapes, like the data)."""
  configs.validate(config)
  info = registry.get_info(config.dataset.name, resolution=config.dataset.resolution or None)
  configs.validate_shapes(config, info.image_shape)
  s = configs.step_settings(config, info, pool_size=pool_files.planned_size(
      config.pool.path, config.pool.size))
  mesh = parallel.make_mesh(devices or config.num_devices or None)
  depth = int(info.max_per_class or 2 * max(s.batch_real, s.ipc * s.factor ** 2))
  # The accelerator policy (largest chunks that fit) unless JAXCOND_BACKEND_POLICY=cpu: a
  # plan is how a config is checked for a GPU/TPU before paying for one.
  policy = "cpu" if os.environ.get("JAXCOND_BACKEND_POLICY") == "cpu" else "accelerator"
  plan = make_plan(config, s, mesh, depth=depth, streaming=bool(config.dataset.streaming),
                   policy=policy, strict=False, log=log)
  return plan.summary()

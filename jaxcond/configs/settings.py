"""A validated config -> the small frozen settings the library takes (no ConfigDict past here).

`step_settings(c, info)` -> `jaxcond.steps.StepSettings` for the condensation step.
"""
from __future__ import annotations

from typing import Any

import ml_collections

from jaxcond.configs.checks import check_strategy
from jaxcond.configs.validate import uses_batch_norm


def model_overrides(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """Non-default `model.*` fields as `nets.get_model` overrides."""
  out = {}
  for f in ("depth", "width"):
    if c.model[f]:
      out[f] = int(c.model[f])
  for f in ("norm", "act", "pool"):
    if c.model[f]:
      out[f] = str(c.model[f])
  return out


def step_settings(c: ml_collections.ConfigDict, info) -> "Any":
  """Config + `DatasetInfo` -> `jaxcond.steps.StepSettings` (plain, hashable, frozen)."""
  from jaxcond import steps  # pylint: disable=g-import-not-at-top
  method = c.method.lower()
  return steps.StepSettings(
      method=method,
      seed=int(c.seed),
      num_classes=int(info.num_classes),
      image_shape=tuple(int(s) for s in info.image_shape),
      mean=tuple(float(m) for m in info.mean),
      std=tuple(float(s) for s in info.std),
      ipc=int(c.ipc),
      batch_real=int(c.batch_real),
      model_name=c.model.name.lower(),
      model_overrides=tuple(sorted(model_overrides(c).items())),
      factor=int(c.synthetic.factor),
      space=c.synthetic.space.lower(),
      lr=float(c.synthetic.lr),
      momentum=float(c.synthetic.momentum),
      batch_syn_max=int(c.synthetic.batch_syn_max),
      aug_policy=c.augment.policy.lower(),
      aug_strategy=check_strategy("augment.strategy", c.augment.strategy),
      kernel=c.m3d.kernel.lower(),
      ipm=int(c.m3d.ipm) if method == "m3d" else 1,
      step_mode=c.m3d.step_mode.lower() if method == "m3d" else "joint",
      mm_weight=float(c.ddm.mm_weight),
      cm_weight=float(c.ddm.cm_weight),
      icd_weight=float(c.ddm.icd_weight),
      style_mode=c.ddm.style_mode.lower(),
      style_tap=c.ddm.style_tap.lower(),
      icd_k=int(c.ddm.k),
      real_chunk=resolve_real_chunk(c, info),
      syn_chunk=resolve_syn_chunk(c, info),
  )


# ---------------------------------------------------------------------------------------
# Chunk resolution (CPU speed knobs). MOVING to the memory planner (issue 13, `plan.py`):
# delete this section at that merge and import the planner's versions in `step_settings`.

def _resolve_chunk(c: ml_collections.ConfigDict, field: str, auto_on_cpu) -> int:
  """A CPU speed knob: 0 = off, > 0 as given, -1 = `auto_on_cpu()` on CPU and off on
  accelerators. Batch-norm nets always get 0: their statistics span the whole batch."""
  k = int(c[field])
  if k == 0 or uses_batch_norm(c):
    return 0
  if k > 0:
    return k
  import jax  # pylint: disable=g-import-not-at-top
  return auto_on_cpu() if jax.default_backend() == "cpu" else 0


def resolve_real_chunk(c: ml_collections.ConfigDict, info) -> int:
  """`real_chunk` auto: about 160 real images per lax.map iteration on CPU (fastest of those
  measured, docs/benchmarks.md)."""
  def auto():
    b = int(c.batch_real)
    target = max(1, 160 // max(1, int(info.num_classes)))
    return max(d for d in range(1, min(target, b) + 1) if b % d == 0)
  return _resolve_chunk(c, "real_chunk", auto)


SYN_CHUNK_CPU = 50   # images per group at 32x32, scaled by the image area


def resolve_syn_chunk(c: ml_collections.ConfigDict, info) -> int:
  """`syn_chunk` auto: gradient groups of about 50 synthetic 32×32 images on CPU (as many
  images of the same total area at other sizes; whole classes, `steps.classes_per_group`),
  measured faster than one large batch (docs/benchmarks.md): the gain is the activations
  fitting the cache, so small images need no groups."""
  h, w = (int(v) for v in info.image_shape[:2])
  return _resolve_chunk(c, "syn_chunk",
                        lambda: max(1, round(SYN_CHUNK_CPU * 32 * 32 / (h * w))))

"""A validated config -> the small frozen settings the library takes (no ConfigDict past here).

- `DataSettings.from_config(c)`: which real data to read (`dataset.*`);
- `RunSettings.from_config(c)`: the run loop's bookkeeping (steps, checkpoints, logging,
  devices, in-loop evaluation cadence) and the run's identity (hash, trajectory);
- `step_settings(c, info)` -> `jaxcond.steps.StepSettings`: the condensation step.
The evaluation side is `evaluate.EvalSettings.from_config(c.eval, dataset=...)`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from jaxcond.configs import schema
from jaxcond.configs.checks import check_strategy


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """Which real data a program reads (the `dataset` block)."""
  name: str
  source: str = "auto"
  path: str = ""                 # "" = $JAXCOND_DATA_DIR/<name>
  resolution: int = 0            # 0 = native / registry default
  streaming: bool = False
  holdout: int = 0               # > 0: last n train images/class are the test set

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict) -> "DataSettings":
    d = c.dataset
    return cls(name=str(d.name), source=str(d.source or "auto"), path=str(d.path),
               resolution=int(d.resolution), streaming=bool(d.streaming),
               holdout=int(d.holdout))


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The condensation loop's bookkeeping and the run's identity.

  `trajectory` / `config_hash` are what a resumed run must match (`schema.trajectory_dict`).
  """
  steps: int
  checkpoint_every: int = 1000   # 0 = only at the end
  keep_checkpoints: int = 3
  image_every: int = 0
  log_every: int = 100
  num_devices: int = 0           # 0 = all
  quiet: bool = False
  eval_every: int = 0            # steps between in-loop evaluations; 0 = at the end only
  eval_num_nets: int = 0         # 0 = no evaluation
  init: str = "real"             # synthetic.init: how the set starts (real / mix / noise)
  config_hash: str = ""
  trajectory: tuple = ()         # sorted (field, value) pairs

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict) -> "RunSettings":
    return cls(steps=int(c.steps), checkpoint_every=int(c.checkpoint_every),
               keep_checkpoints=int(c.keep_checkpoints), image_every=int(c.image_every),
               log_every=int(c.log_every), num_devices=int(c.num_devices),
               quiet=bool(c.quiet), eval_every=int(c.eval.every),
               eval_num_nets=int(c.eval.num_nets), init=str(c.synthetic.init),
               config_hash=schema.config_hash(c),
               trajectory=tuple(schema.trajectory_dict(c).items()))


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
      estimator=c.m3d.estimator.lower(),
      ipm=int(c.m3d.ipm) if method == "m3d" else 1,
      step_mode=c.m3d.step_mode.lower() if method == "m3d" else "joint",
      mm_weight=float(c.ddm.mm_weight),
      cm_weight=float(c.ddm.cm_weight),
      icd_weight=float(c.ddm.icd_weight),
      style_mode=c.ddm.style_mode.lower(),
      style_tap=c.ddm.style_tap.lower(),
      icd_k=int(c.ddm.k),
  )   # chunk sizes (real_chunk, real_cpg, syn_cpg): chosen by jaxcond.plan

"""A validated config -> the small frozen settings the library takes (no ConfigDict past here).

- `DataSettings.from_config(c)`: which real data to read (`dataset.*`);
- `RunSettings.from_config(c)`: the run loop's bookkeeping (steps, checkpoints, logging,
  devices, in-loop evaluation cadence) and the run's identity (hash, trajectory);
- `step_settings(c, info)` -> `jaxcond.steps.StepSettings`: the condensation step.
The evaluation side is `evaluate.EvalSettings.from_config(c.eval, dataset=...)`.
Each attribute is read as its field's row says (`schema.Field.plain`): its type, a choice
lower-cased; the maps below name the field an attribute comes from where the names differ.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from jaxcond import steps
from jaxcond.configs import schema
from jaxcond.configs.checks import check_strategy

_DEFAULT = schema.flat(schema.base_config())


def _read(c: ml_collections.ConfigDict, fields: dict[str, str]) -> dict[str, Any]:
  """{attribute: dotted field} -> {attribute: the field's value as its row's type}."""
  out = {}
  for attr, dotted in fields.items():
    out[attr] = schema.BY_NAME[dotted].plain(schema.get_field(c, dotted))
  return out


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """Which real data a program reads: the `dataset` block, field for field."""
  name: str
  source: str = _DEFAULT["dataset.source"]
  path: str = _DEFAULT["dataset.path"]
  resolution: int = _DEFAULT["dataset.resolution"]
  streaming: bool = _DEFAULT["dataset.streaming"]
  holdout: int = _DEFAULT["dataset.holdout"]
  jpeg_draft: bool = _DEFAULT["dataset.jpeg_draft"]

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict) -> "DataSettings":
    v = _read(c, {f.name: f"dataset.{f.name}" for f in dataclasses.fields(cls)})
    return cls(**{**v, "source": v["source"] or "auto"})


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The condensation loop's bookkeeping and the run's identity.

  `trajectory` / `config_hash` are what a resumed run must match (`schema.trajectory_dict`).
  """
  steps: int
  checkpoint_every: int = _DEFAULT["checkpoint_every"]
  keep_checkpoints: int = _DEFAULT["keep_checkpoints"]
  image_every: int = _DEFAULT["image_every"]
  log_every: int = _DEFAULT["log_every"]
  num_devices: int = _DEFAULT["num_devices"]
  quiet: bool = _DEFAULT["quiet"]
  tensorboard: bool = _DEFAULT["tensorboard"]
  eval_every: int = _DEFAULT["eval.every"]
  eval_num_nets: int = 0         # 0 = no evaluation
  init: str = _DEFAULT["synthetic.init"]
  config_hash: str = ""
  trajectory: tuple = ()         # sorted (field, value) pairs

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict,
                  extra: dict[str, Any] | None = None) -> "RunSettings":
    """`extra`: trajectory entries from outside the config (`pool.content_hash`: what a
    pool holds, read from its manifest), part of the hash and of the resume check."""
    traj = {**schema.trajectory_dict(c), **(extra or {})}
    own = {"init": str(c.synthetic.init),   # as given, not lower-cased
           "config_hash": schema.config_hash(c, extra),
           "trajectory": tuple(sorted(traj.items()))}
    renamed = {"eval_every": "eval.every", "eval_num_nets": "eval.num_nets"}
    return cls(**own, **_read(c, {f.name: renamed.get(f.name, f.name)
                                  for f in dataclasses.fields(cls) if f.name not in own}))


def model_overrides(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """Non-default `model.*` fields (0 / "" = the net's own) as `nets.get_model` overrides."""
  return {f.leaf: f.plain(c.model[f.leaf]) for f in schema.block("model")
          if f.leaf != "name" and c.model[f.leaf]}


def model_record(c: ml_collections.ConfigDict, info) -> dict[str, Any]:
  """The condensation net as a pool's manifest records it (what a pool must match)."""
  return {"name": str(c.model.name).lower(),
          "overrides": dict(sorted(model_overrides(c).items())),
          "num_classes": int(info.num_classes),
          "image_shape": [int(v) for v in info.image_shape]}


def dataset_record(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The training images as a pool's manifest records them (what a pool must match: a pool
  trained on a run's holdout images would leak them)."""
  d = DataSettings.from_config(c)
  return {"name": d.name, "resolution": d.resolution, "holdout": d.holdout,
          "jpeg_draft": d.jpeg_draft}


# StepSettings attribute -> config field, read as the field's row says.
_STEP_FIELDS = {
    "method": "method", "seed": "seed", "ipc": "ipc", "batch_real": "batch_real",
    "model_name": "model.name", "factor": "synthetic.factor", "space": "synthetic.space",
    "lr": "synthetic.lr", "momentum": "synthetic.momentum",
    "batch_syn_max": "synthetic.batch_syn_max", "aug_policy": "augment.policy",
    "kernel": "m3d.kernel", "estimator": "m3d.estimator", "mm_weight": "ddm.mm_weight",
    "cm_weight": "ddm.cm_weight", "icd_weight": "ddm.icd_weight",
    "style_mode": "ddm.style_mode", "style_tap": "ddm.style_tap", "icd_k": "ddm.k",
    "optimizer": "synthetic.optimizer", "weight_decay": "synthetic.weight_decay",
    "plateau_patience": "synthetic.plateau_patience",
    "plateau_factor": "synthetic.plateau_factor", "num_freqs": "ncfm.num_freqs",
    "cf_alpha": "ncfm.alpha", "cf_beta": "ncfm.beta", "cf_scale": "ncfm.scale",
    "calib_weight": "calib.weight", "pool_blend": "pool.blend",
}


def step_settings(c: ml_collections.ConfigDict, info, *,
                  pool_size: int = 0) -> steps.StepSettings:
  """Config + `DatasetInfo` -> `steps.StepSettings` (plain, hashable, frozen).

  `pool_size`: nets in the pool the step receives (`pool.path`, read by `jaxcond.condense`
  from the pool's manifest); 0 = a fresh random net every step, and no calibration.
  """
  v = _read(c, _STEP_FIELDS)
  m3d = v["method"] == "m3d"
  return steps.StepSettings(
      **v,
      pool_size=int(pool_size),
      num_classes=int(info.num_classes),
      image_shape=tuple(int(s) for s in info.image_shape),
      mean=tuple(float(m) for m in info.mean),
      std=tuple(float(s) for s in info.std),
      model_overrides=tuple(sorted(model_overrides(c).items())),
      aug_strategy=check_strategy("augment.strategy", c.augment.strategy),
      ipm=int(c.m3d.ipm) if m3d else 1,                       # the other methods: one net
      step_mode=c.m3d.step_mode.lower() if m3d else "joint",
  )   # chunk sizes (real_chunk, real_cpg, syn_cpg): chosen by jaxcond.plan

"""Evaluation protocols as small frozen settings (docs/evaluate.md, "Protocols").

A set is scored by the test accuracy of fresh networks trained on it with hard labels.

`dm` (DM / DDM `utils.evaluate_synset`, arXiv 2110.04181): SGD lr 0.01, momentum 0.9, weight
  decay 5e-4 added to the gradient (torch's coupled L2), batch 256 shuffled (last partial
  batch kept), cross-entropy. `epochs` = 1000 counted as the reference counts them: passes
  0..1000 inclusive (1001 passes). After pass epochs//2 + 1 the LR is multiplied by 0.1 once
  and the optimiser is re-created, so the momentum buffer is zero at the start of pass
  epochs//2 + 2. Every batch gets DSA (policy "dm", per-sample parameters). Reported: test
  accuracy after the last pass.

`idc` (IDC / M3D `train.train`, arXiv 2205.14959 / 2312.15927): the decoded multi-formation
  set; per-batch IDC-DSA, then CutMix with probability `mix_p` (λ ~ Beta(β, β), IDC's
  `rand_bbox`, partner = a uniform permutation of the batch); loss r·CE(y) + (1 − r)·CE(y').
  SGD as above, batch 64, `epochs` passes with MultiStep ×0.2 at 2E//3 and 5E//6; no momentum
  reset. Test accuracy every `eval_every_epochs` passes and at the end; "best" is the max
  over those checkpoints, SELECTED ON THE TEST SET (as IDC and M3D report it); results say so.

`ncfm` (NCFM `condenser/evaluate.py`, arXiv 2502.20653, released code): the idc data path
  (decoded set, per-sample IDC-DSA, CutMix p 0.5) with AdamW (lr 1e-3, weight decay 0.01
  decoupled as torch's AdamW, betas (`momentum`, 0.999), eps 1e-8), batch 128, 2000 epochs,
  MultiStep ×0.5 at E//5, 2E//5, 3E//5, 4E//5; test every 100 passes; reported: the BEST
  checkpoint, selected on the test set (labelled so). Such protocols inflate accuracy
  (DD-Ranking, arXiv 2505.13300): report ncfm rows under dm as well.

The protocols' names, strategies and default values live in `configs.methods`
(`EVAL_PROTOCOLS`, `EVAL_PROTOCOL_DEFAULTS`: one table, with the reason for the idc batch
of 64); the names below are theirs. `EvalSettings.from_config(config)` is the only place a
config becomes evaluation settings; it reads the same schema as condensation (the config's
`eval` and `dataset` blocks), which `configs.validate` checks.
"""
from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from jaxcond import augment
from jaxcond.configs import methods
from jaxcond.data import registry
from jaxcond.errors import ConfigError

PROTOCOLS = methods.EVAL_PROTOCOLS
DM_STRATEGY = methods.FULL_STRATEGY
IDC_STRATEGY = methods.EVAL_PROTOCOL_DEFAULTS["idc"]["strategy"]
DIGIT_DATASETS = methods.DIGIT_DATASETS


def canonical_dataset(name: str) -> str:
  try:
    return registry.canonical_name(name)
  except ConfigError:
    return str(name).strip().lower()


def protocol_defaults(protocol: str, dataset: str | None = None) -> dict:
  return methods.eval_protocol_defaults(protocol,
                                        canonical_dataset(dataset) if dataset else None)


def default_strategy(protocol: str, dataset: str | None = None) -> str:
  """The protocol's DSA strategy, without `flip` for digit datasets (DM README)."""
  return protocol_defaults(protocol, dataset)["strategy"]


def test_split_name(holdout: int) -> str:
  """What the accuracies were measured on, for results files and summary lines."""
  return f"train holdout ({holdout}/class)" if holdout else "test"


def model_tuple(models) -> tuple[str, ...]:
  """"a, b" / ["a", "b"] -> ("a", "b") (lower case)."""
  if models is None:
    return ()
  if isinstance(models, str):
    models = [m for m in models.replace(" ", "").split(",") if m]
  names = tuple(str(m).strip().lower() for m in models)
  if any(not n for n in names):
    raise ConfigError(f"eval.models: has an empty name: {models!r}")
  return names


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """One evaluation protocol with its knobs (module docstring).

  `epochs` follows each reference's own count: dm trains epochs + 1 passes, idc `epochs`.
  `models` is the cross-architecture pool (empty = only `model`). `eval_every_epochs` > 0
  adds test checkpoints every that many passes (the idc "best" is taken over them).
  Field ranges are checked by `configs.validate`; here only what evaluation itself needs.
  """
  protocol: str = "dm"
  model: str = "convnet"
  models: tuple = ()
  num_nets: int = 5
  epochs: int = 1000
  batch_size: int = 256
  lr: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 5e-4
  strategy: str = DM_STRATEGY
  mix_p: float = 0.0
  beta: float = 1.0
  eval_every_epochs: int = 0
  seed: int = 0

  def __post_init__(self):
    if self.protocol not in PROTOCOLS:
      raise ConfigError(f"eval.protocol: must be one of {PROTOCOLS}, got {self.protocol!r}")
    if not isinstance(self.model, str) or not self.model.strip():
      raise ConfigError(f"eval.model: expected a model name, got {self.model!r}")
    if isinstance(self.num_nets, bool) or not isinstance(self.num_nets, (int, np.integer)) \
        or self.num_nets < 1:
      raise ConfigError(f"eval.num_nets: evaluation needs >= 1 network, got {self.num_nets!r}")
    set_ = functools.partial(object.__setattr__, self)
    set_("model", self.model.strip().lower())
    set_("models", model_tuple(self.models))
    for f in ("num_nets", "epochs", "batch_size", "eval_every_epochs", "seed"):
      set_(f, int(getattr(self, f)))
    for f in ("lr", "momentum", "weight_decay", "mix_p", "beta"):
      set_(f, float(getattr(self, f)))
    set_("strategy", "none" if self.strategy in (None, "") else self.strategy)
    augment.parse_strategy(self.strategy)   # ConfigError on unknown ops
    if self.protocol == "dm" and self.mix_p > 0:
      raise ConfigError(f"eval.mix_p: {self.mix_p} under the dm protocol, which has no "
                        "CutMix (use protocol 'idc' or mix_p=0)")

  @classmethod
  def for_protocol(cls, protocol: str, **overrides) -> "EvalSettings":
    """The reference settings of `protocol` ("dm" | "idc" | "ncfm"), then `overrides`.
    `dataset=` (not a field) picks the dataset's default DSA strategy."""
    if protocol not in PROTOCOLS:
      raise ConfigError(f"eval.protocol: must be one of {PROTOCOLS}, got {protocol!r}")
    dataset = overrides.pop("dataset", None)
    fields = dict(protocol_defaults(protocol, dataset), protocol=protocol)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ConfigError(f"eval: unknown field(s) {sorted(unknown)}")
    fields.update(overrides)
    return cls(**fields)

  @classmethod
  def from_config(cls, config) -> "EvalSettings":
    """From a full (validated) config: its `eval` block, and `dataset.name` for the
    protocol's dataset-dependent default. `eval.every` is condensation's, not a setting;
    under dm `eval_every_epochs` is ignored (DM tests once, after the last pass)."""
    if not (hasattr(config, "eval") and hasattr(config, "dataset")):
      raise ConfigError("EvalSettings.from_config: expected the full config (its `eval` and "
                        f"`dataset` blocks), got {type(config).__name__}")
    src = config.eval.to_dict()
    names = {f.name for f in dataclasses.fields(cls)} - {"protocol"}
    overrides = {k: v for k, v in src.items() if k in names}
    if src["protocol"] == "dm":
      overrides.pop("eval_every_epochs", None)
      if not overrides.get("mix_p"):
        overrides.pop("mix_p", None)
    return cls.for_protocol(src["protocol"], dataset=config.dataset.name, **overrides)

  # ------------------------------------------------------------------ schedule
  @property
  def pool(self) -> tuple[str, ...]:
    """Architectures evaluated: `models` if given, else (`model`,)."""
    return self.models or (self.model,)

  @property
  def augment_policy(self) -> str:
    """"dm" -> DM DiffAugment; idc and ncfm -> IDC DiffAug (NCFM's `utils/diffaug.py`)."""
    return "dm" if self.protocol == "dm" else "idc"

  @property
  def optimizer(self) -> str:
    """"adamw" under ncfm (torch AdamW), else "sgd" (torch SGD, coupled L2)."""
    return "adamw" if self.protocol == "ncfm" else "sgd"

  @property
  def reports_best(self) -> bool:
    """Whether the protocol's papers report the best test checkpoint (idc, ncfm)."""
    return self.protocol in ("idc", "ncfm")

  @property
  def passes(self) -> int:
    """Training passes over the set: dm counts epochs 0..E inclusive, idc / ncfm 1..E."""
    return self.epochs + 1 if self.protocol == "dm" else self.epochs

  @property
  def milestones(self) -> tuple[int, ...]:
    """0-based pass indices from which the LR is reduced (each one multiplies once)."""
    if self.protocol == "dm":
      return (self.epochs // 2 + 2,)
    if self.protocol == "ncfm":
      return tuple(k * self.epochs // 5 for k in range(1, 5))
    return (2 * self.epochs // 3, 5 * self.epochs // 6)

  @property
  def gamma(self) -> float:
    return {"dm": 0.1, "idc": 0.2, "ncfm": 0.5}[self.protocol]

  def lr_at(self, epoch):
    """Learning rate of 0-based pass `epoch`: lr · gamma^(#milestones <= epoch). Python ints
    give Python floats (exact tests); traced ints give float32."""
    if isinstance(epoch, (int, np.integer)):
      return self.lr * self.gamma ** sum(int(epoch) >= m for m in self.milestones)
    count = sum((epoch >= m).astype(jnp.int32) for m in self.milestones)
    return jnp.float32(self.lr) * jnp.float32(self.gamma) ** count

  def resets_momentum_at(self, epoch):
    """Whether the momentum buffer is zeroed at the start of pass `epoch` (dm only)."""
    if self.protocol != "dm":
      return False
    return epoch == self.milestones[0]

  def checkpoint_passes(self) -> tuple[int, ...]:
    """Numbers of completed passes after which test accuracy is measured (last one = end)."""
    every = self.eval_every_epochs
    marks = [p for p in range(1, self.passes + 1) if every and p % every == 0]
    if not marks or marks[-1] != self.passes:
      marks.append(self.passes)
    return tuple(marks)

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["models"] = list(self.models)
    d["passes"] = self.passes
    d["lr_milestones"] = list(self.milestones)
    d["lr_gamma"] = self.gamma
    d["augment_policy"] = self.augment_policy
    d["optimizer"] = self.optimizer
    return d

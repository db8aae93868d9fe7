"""Every config check, one entry point for every program.

`validate(c)` checks the schema, each field against its row in `schema.FIELDS` and the
cross-field rules (no data, nothing compiles);
`validate(c, image_shape=...)` adds the checks that need the dataset's image shape and
`validate(c, counts=..., class_names=...)` those that need the per-class training counts
(after loading, before compiling). Each failure is one `ConfigError` line naming the field.
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from jaxcond.configs import schema
from jaxcond.configs.checks import suggest
from jaxcond.errors import ConfigError


def validate(c: ml_collections.ConfigDict, *, image_shape: Sequence[int] | None = None,
             counts: Sequence[int] | None = None,
             class_names: Sequence[str] | None = None) -> None:
  """All checks the given facts allow; raises ConfigError naming the field."""
  validate_static(c)
  if image_shape is not None:
    validate_shapes(c, image_shape)
  if counts is not None:
    validate_counts(c, counts, class_names)


def validate_static(c: ml_collections.ConfigDict) -> None:
  """Schema, each field's domain, then the rules that tie fields together (no data)."""
  given = schema.flat(c)
  for key in given:
    if key not in schema.BY_NAME:
      raise ConfigError(f"{key}: unknown config field{suggest(key, schema.BY_NAME)}")
  for f in schema.FIELDS:
    if f.name not in given:
      raise ConfigError(f"{f.name}: missing config field")
  for f in schema.FIELDS:
    f.check(given[f.name])
  _check_combinations(c)


def _check_combinations(c: ml_collections.ConfigDict) -> None:
  """The cross-field rules, each a one-line error naming the field to change."""
  if c.dataset.holdout and c.dataset.streaming:
    raise ConfigError("dataset.holdout: not supported with dataset.streaming=True (the stream "
                      "reads the whole train split); use the in-memory bank to tune")

  for field, half in (("real_chunk", "real"), ("syn_chunk", "synthetic")):
    if c[field] > 0 and uses_batch_norm(c):
      raise ConfigError(f"{field}: a batch-norm net needs the whole {half} batch at once; "
                        f"set {field}=0 (or -1)")
  if c.real_chunk > 0 and c.batch_real % c.real_chunk:
    raise ConfigError(f"real_chunk: {c.real_chunk} does not divide batch_real "
                      f"{c.batch_real}")

  if c.method == "m3d" and c.m3d.estimator.lower() == "unbiased":
    n_syn = c.ipc * c.synthetic.factor ** 2
    n_syn = min(n_syn, c.synthetic.batch_syn_max) if c.synthetic.batch_syn_max else n_syn
    if n_syn < 2 or c.batch_real < 2:
      raise ConfigError(f"m3d.estimator: 'unbiased' needs >= 2 synthetic and real images per "
                        f"class each step (has {n_syn} and {c.batch_real}); use 'biased'")

  if c.method == "m3d" and c.m3d.step_mode.lower() == "per_class":
    # The per-class closed form (jaxcond.steps) is plain SGD with momentum's.
    for field, plain in (("synthetic.optimizer", c.synthetic.optimizer.lower() == "sgd"),
                         ("synthetic.weight_decay", c.synthetic.weight_decay == 0),
                         ("synthetic.plateau_patience", c.synthetic.plateau_patience == 0)):
      if not plain:
        raise ConfigError(f"{field}: m3d.step_mode='per_class' is the closed form of plain "
                          f"SGD with momentum; set m3d.step_mode='joint' or reset {field}")

  d = c.ddm
  if c.method == "ddm" and d.icd_weight > 0:
    if c.ipc < 2:
      raise ConfigError(f"ddm.icd_weight: the ICD term needs ipc >= 2 (ipc is {c.ipc}); "
                        "set ddm.icd_weight=0")
    if d.k and d.k > c.ipc - 1:
      raise ConfigError(f"ddm.k: {d.k} neighbours need ipc >= {d.k + 1} (ipc is {c.ipc})")


def validate_shapes(c: ml_collections.ConfigDict, image_shape) -> None:
  """Checks that need the dataset's image shape (still no data): the factor fits."""
  h, w = image_shape[0], image_shape[1]
  f = c.synthetic.factor
  if f > 1 and -(-min(h, w) // f) < 2:
    raise ConfigError(f"synthetic.factor: {f} does not fit {h}x{w} images (each of the "
                      f"{f}x{f} cells would be smaller than 2 pixels)")


def validate_counts(c: ml_collections.ConfigDict, counts, class_names=None, *,
                    name: str | None = None) -> None:
  """Checks that need the per-class training counts (after loading, before compiling).
  `name`: how the error names the smallest class (default "class i (its name)")."""
  counts = [int(n) for n in counts]
  smallest = min(counts)
  which = counts.index(smallest)
  if name is None:
    name = f"class {which}" + (f" ({class_names[which]})" if class_names else "")
  if smallest == 0:
    raise ConfigError(f"dataset.name: {name} has no training images")
  if c.ipc > smallest:
    raise ConfigError(f"ipc: {c.ipc} images per class is larger than {name}, which has "
                      f"{smallest} training images")
  need = c.ipc * c.synthetic.factor ** 2 if c.synthetic.init == "mix" else c.ipc
  if c.synthetic.init in ("real", "mix") and need > smallest:
    raise ConfigError(f"ipc: init {c.synthetic.init!r} needs ipc*factor^2 = {need} real "
                      f"images per class but {name} has {smallest}")
  if c.batch_real > smallest:
    raise ConfigError(f"batch_real: {c.batch_real} is larger than {name}, which has "
                      f"{smallest} training images")


def validate_known_counts(c: ml_collections.ConfigDict, info) -> None:
  """The count checks on the registry's smallest class (`DatasetInfo.min_per_class` of the
  standard train split, less `dataset.holdout`), so that an impossible ipc or batch_real
  stops before the plan compiles anything; the loaded counts are checked again later."""
  if info.min_per_class:
    smallest = max(int(info.min_per_class) - int(c.dataset.holdout), 0)
    validate_counts(c, [smallest], name=f"the smallest class of the standard {info.name} "
                                        f"train split")


def uses_batch_norm(c: ml_collections.ConfigDict) -> bool:
  """Whether the condensation net normalises over the batch (then nothing is chunked)."""
  name = c.model.name.lower()
  norm = (c.model.norm or "").lower()
  return norm in ("batch", "bn", "batchnorm") or (not norm and "bn" in name.split("_"))

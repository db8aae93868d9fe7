"""Every config check, one entry point for every program.

`validate(c)` checks the schema, types and ranges (no data, nothing compiles);
`validate(c, image_shape=...)` adds the checks that need the dataset's image shape and
`validate(c, counts=..., class_names=...)` those that need the per-class training counts
(after loading, before compiling). Each failure is one `ConfigError` line naming the field.
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from jaxcond.configs import schema
from jaxcond.configs.checks import (check_bool, check_choice, check_float, check_int,
                                    check_str, check_strategy, suggest)
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
  """Schema, types, ranges and cross-field rules (no data, no compilation)."""
  known = schema.flat(schema.base_config())
  given = schema.flat(c)
  for key in given:
    if key not in known:
      raise ConfigError(f"{key}: unknown config field{suggest(key, known)}")
  for key in known:
    if key not in given:
      raise ConfigError(f"{key}: missing config field")
  check_choice("method", c.method, schema.METHODS)
  check_int("ipc", c.ipc, lo=1)
  check_int("steps", c.steps, lo=0)
  check_int("seed", c.seed, lo=0, hi=2**31 - 1)
  check_int("checkpoint_every", c.checkpoint_every, lo=0)
  check_int("keep_checkpoints", c.keep_checkpoints, lo=1)
  check_int("image_every", c.image_every, lo=0)
  check_int("batch_real", c.batch_real, lo=1)
  check_int("log_every", c.log_every, lo=1)
  check_int("num_devices", c.num_devices, lo=0)
  check_float("memory_budget_gb", c.memory_budget_gb, lo=0.0)
  check_bool("quiet", c.quiet)
  _check_dataset(c.dataset)

  from jaxcond import nets  # pylint: disable=g-import-not-at-top
  check_choice("model.name", c.model.name, nets.MODEL_NAMES)
  check_int("model.depth", c.model.depth, lo=0, hi=12)
  check_int("model.width", c.model.width, lo=0)
  for f in ("norm", "act", "pool"):
    check_str(f"model.{f}", c.model[f])

  s = c.synthetic
  check_choice("synthetic.init", s.init, schema.INITS)
  check_choice("synthetic.space", s.space, schema.SPACES)
  check_int("synthetic.factor", s.factor, lo=1)
  check_float("synthetic.lr", s.lr, lo=0.0, lo_open=True)
  check_float("synthetic.momentum", s.momentum, lo=0.0, hi=1.0, hi_open=True)
  check_int("synthetic.batch_syn_max", s.batch_syn_max, lo=0)

  for field, half in (("real_chunk", "real"), ("syn_chunk", "synthetic")):
    check_int(field, c[field], lo=-1)
    if c[field] > 0 and uses_batch_norm(c):
      raise ConfigError(f"{field}: a batch-norm net needs the whole {half} batch at once; "
                        f"set {field}=0 (or -1)")
  if c.real_chunk > 0 and c.batch_real % c.real_chunk:
    raise ConfigError(f"real_chunk: {c.real_chunk} does not divide batch_real "
                      f"{c.batch_real}")

  check_choice("augment.policy", c.augment.policy, schema.POLICIES)
  check_strategy("augment.strategy", c.augment.strategy)

  check_choice("m3d.kernel", c.m3d.kernel, schema.KERNELS)
  check_choice("m3d.estimator", c.m3d.estimator, schema.ESTIMATORS)
  if c.method == "m3d" and c.m3d.estimator.lower() == "unbiased":
    n_syn = c.ipc * c.synthetic.factor ** 2
    n_syn = min(n_syn, c.synthetic.batch_syn_max) if c.synthetic.batch_syn_max else n_syn
    if n_syn < 2 or c.batch_real < 2:
      raise ConfigError(f"m3d.estimator: 'unbiased' needs >= 2 synthetic and real images per "
                        f"class each step (has {n_syn} and {c.batch_real}); use 'biased'")
  check_int("m3d.ipm", c.m3d.ipm, lo=1)
  check_choice("m3d.step_mode", c.m3d.step_mode, schema.STEP_MODES)

  d = c.ddm
  check_float("ddm.mm_weight", d.mm_weight, lo=0.0)
  check_float("ddm.cm_weight", d.cm_weight, lo=0.0)
  check_float("ddm.icd_weight", d.icd_weight, lo=0.0)
  check_choice("ddm.style_mode", d.style_mode, schema.STYLE_MODES)
  check_choice("ddm.style_tap", d.style_tap, schema.STYLE_TAPS)
  check_int("ddm.k", d.k, lo=0)
  if c.method == "ddm" and d.icd_weight > 0:
    if c.ipc < 2:
      raise ConfigError(f"ddm.icd_weight: the ICD term needs ipc >= 2 (ipc is {c.ipc}); "
                        "set ddm.icd_weight=0")
    if d.k and d.k > c.ipc - 1:
      raise ConfigError(f"ddm.k: {d.k} neighbours need ipc >= {d.k + 1} (ipc is {c.ipc})")

  _check_eval(c.eval, nets.MODEL_NAMES)


def _check_dataset(ds) -> None:
  from jaxcond.data import registry  # pylint: disable=g-import-not-at-top
  check_str("dataset.name", ds.name, "a dataset name")
  try:
    registry.canonical_name(ds.name)
  except ConfigError:
    raise ConfigError(f"dataset.name: unknown dataset {ds.name!r} (known: "
                      f"{', '.join(registry.DATASET_NAMES)})"
                      f"{suggest(ds.name.lower(), registry.DATASET_NAMES)}") from None
  check_str("dataset.source", ds.source)
  check_str("dataset.path", ds.path)
  check_int("dataset.resolution", ds.resolution, lo=0)
  check_bool("dataset.streaming", ds.streaming)
  check_int("dataset.holdout", ds.holdout, lo=0)
  if ds.holdout and ds.streaming:
    raise ConfigError("dataset.holdout: not supported with dataset.streaming=True (the stream "
                      "reads the whole train split); use the in-memory bank to tune")


def _check_eval(e, model_names) -> None:
  check_choice("eval.protocol", e.protocol, schema.EVAL_PROTOCOLS)
  check_choice("eval.model", e.model, model_names)
  if not isinstance(e.models, (tuple, list)):
    raise ConfigError(f"eval.models: expected a tuple of model names, got {e.models!r}")
  for m in e.models:
    check_choice("eval.models", m, model_names)
  check_int("eval.num_nets", e.num_nets, lo=0)
  check_int("eval.epochs", e.epochs, lo=1)
  check_int("eval.batch_size", e.batch_size, lo=1)
  check_float("eval.lr", e.lr, lo=0.0, lo_open=True)
  check_float("eval.momentum", e.momentum, lo=0.0, hi=1.0, hi_open=True)
  check_float("eval.weight_decay", e.weight_decay, lo=0.0)
  check_strategy("eval.strategy", e.strategy)
  check_float("eval.mix_p", e.mix_p, lo=0.0, hi=1.0)
  check_float("eval.beta", e.beta, lo=0.0, lo_open=True)
  check_int("eval.eval_every_epochs", e.eval_every_epochs, lo=1)
  check_int("eval.seed", e.seed, lo=0)
  check_int("eval.every", e.every, lo=0)


def validate_shapes(c: ml_collections.ConfigDict, image_shape) -> None:
  """Checks that need the dataset's image shape (still no data): the factor fits."""
  h, w = image_shape[0], image_shape[1]
  f = c.synthetic.factor
  if f > 1 and -(-min(h, w) // f) < 2:
    raise ConfigError(f"synthetic.factor: {f} does not fit {h}x{w} images (each of the "
                      f"{f}x{f} cells would be smaller than 2 pixels)")


def validate_counts(c: ml_collections.ConfigDict, counts, class_names=None) -> None:
  """Checks that need the per-class training counts (after loading, before compiling)."""
  counts = [int(n) for n in counts]
  smallest = min(counts)
  which = counts.index(smallest)
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


def uses_batch_norm(c: ml_collections.ConfigDict) -> bool:
  """Whether the condensation net normalises over the batch (then nothing is chunked)."""
  name = c.model.name.lower()
  norm = (c.model.norm or "").lower()
  return norm in ("batch", "bn", "batchnorm") or (not norm and "bn" in name.split("_"))

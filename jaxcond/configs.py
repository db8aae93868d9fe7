"""Condensation configs: the schema, per-method paper defaults, arg strings, validation.

ConfigDicts stop at the entry points: `experiments/<dataset>.py:get_config(arg)` builds one
with `make_config`, `jaxcond.condense` validates it here (`validate`, before any data is
touched or anything compiles) and turns it into plain frozen settings for `jaxcond.steps`.

Arg strings are big_vision style: comma-separated `key=value` pairs and bare flags,
`"method=m3d,ipc=10"`, `"method=dm,ipc=1,runlocal"`, `"synthetic.lr=10"`.

Per-method defaults (methods.md §2.3, §3.4, §4; choices for NOT FOUND items are marked):
- dm:  SGD lr 1 (10 for ipc >= 100 on CIFAR-10), momentum 0.5, init real, normalised pixels,
       batch_real 256, 20000 steps, DSA `dm` policy with the full strategy (no flip for
       MNIST/SVHN), fresh random ConvNet every step, one joint step per iteration.
- m3d: pixels in [0,1] (`unit`), factor 2, init mix, IDC policy `color_crop_cutout`,
       gaussian kernel, ipm 5, batch_real 128, batch_syn_max 200, momentum 0.5, per-class
       stepping (faithful). CHOICES (M3D's configs are NOT FOUND): lr min(ipc, 10) (the
       M3D-lineage YAMLs, DIDD-ASU, use lr_img 10; the MMD gradient of one image scales as
       1/(images per class), and lr 10 ruins IPC-1 sets while lr 1 wins on a validation
       split, docs/results.md) and 5000 iterations (the released code's cfg default `niter`).
- ddm: DM + style moments (mm_weight 1e4, batchavg, taps after the norm) + ICD (weight 10,
       k = round(0.2·ipc)), correlation term off (the re-release's "paper" config, §4.4).
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import json
from typing import Any

import ml_collections

from jaxcond.errors import ConfigError

METHODS = ("dm", "m3d", "ddm")
INITS = ("real", "noise", "mix")
SPACES = ("normalized", "unit")
POLICIES = ("dm", "idc", "none")
AUG_OPS = ("color", "crop", "cutout", "flip", "scale", "rotate")
KERNELS = ("linear", "gaussian", "polynomial")
STEP_MODES = ("per_class", "joint")
STYLE_MODES = ("batchavg", "persample")
STYLE_TAPS = ("norm", "conv")
EVAL_PROTOCOLS = ("dm", "idc")

FULL_STRATEGY = "color_crop_cutout_flip_scale_rotate"
NO_FLIP_STRATEGY = "color_crop_cutout_scale_rotate"
DIGIT_DATASETS = ("mnist", "svhn", "digits")   # DM README: drop flip for digits

# Fields that do not change the trajectory of the synthetic set: a checkpoint made with
# different values of these may be resumed (e.g. more `steps`, another device count; the
# chunk sizes and the device count change only float rounding).
NON_TRAJECTORY_FIELDS = (
    "steps", "checkpoint_every", "keep_checkpoints", "log_every", "quiet", "num_devices",
    "real_chunk", "syn_chunk", "memory_budget_gb", "image_every", "dataset.source", "dataset.path", "eval",
)


def base_config() -> ml_collections.ConfigDict:
  """The full schema with DM defaults; every experiment config starts from this."""
  c = ml_collections.ConfigDict()
  c.method = "dm"
  c.ipc = 10
  c.steps = 20000
  c.seed = 0
  c.checkpoint_every = 1000      # 0 = only at the end
  c.keep_checkpoints = 3
  c.image_every = 0              # PNG grid every n steps besides checkpoints (0 = no extra)

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "cifar10"
  c.dataset.source = "auto"
  c.dataset.path = ""
  c.dataset.resolution = 0       # 0 = native / registry default
  c.dataset.streaming = False    # True: read real batches from disk each step (grain)
  c.dataset.holdout = 0          # >0: hold out the last n train images/class as the test set

  c.model = ml_collections.ConfigDict()
  c.model.name = "convnet"
  c.model.depth = 0              # 0 = the named net's own value
  c.model.width = 0
  c.model.norm = ""
  c.model.act = ""
  c.model.pool = ""

  c.batch_real = 256
  c.real_chunk = -1              # real images/class per lax.map step; 0 = all, -1 = auto
  c.syn_chunk = -1               # synthetic images per gradient group; 0 = one, -1 = auto
  c.log_every = 100
  c.num_devices = 0              # 0 = all devices
  c.memory_budget_gb = 0.0       # per device, GiB; 0 = the device's own limit (jaxcond.plan)
  c.quiet = False

  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.init = "real"
  c.synthetic.factor = 1
  c.synthetic.space = "normalized"
  c.synthetic.lr = 1.0
  c.synthetic.momentum = 0.5
  c.synthetic.batch_syn_max = 0  # 0 = use every (decoded) synthetic image each step

  c.augment = ml_collections.ConfigDict()
  c.augment.policy = "dm"
  c.augment.strategy = FULL_STRATEGY

  c.m3d = ml_collections.ConfigDict()
  c.m3d.kernel = "gaussian"
  c.m3d.ipm = 5
  c.m3d.step_mode = "per_class"

  c.ddm = ml_collections.ConfigDict()
  c.ddm.mm_weight = 1e4
  c.ddm.cm_weight = 0.0
  c.ddm.icd_weight = 10.0
  c.ddm.style_mode = "batchavg"
  c.ddm.style_tap = "norm"
  c.ddm.k = 0                    # 0 = round(0.2 * ipc) clipped to [1, ipc - 1]

  c.eval = ml_collections.ConfigDict()
  c.eval.protocol = "dm"
  c.eval.model = "convnet"
  c.eval.models = ()
  c.eval.num_nets = 5
  c.eval.epochs = 1000
  c.eval.batch_size = 256
  c.eval.lr = 0.01
  c.eval.momentum = 0.9
  c.eval.weight_decay = 5e-4
  c.eval.strategy = FULL_STRATEGY
  c.eval.mix_p = 0.0
  c.eval.beta = 1.0
  c.eval.eval_every_epochs = 500
  c.eval.seed = 0
  c.eval.every = 0               # condensation steps between in-loop evals; 0 = end only
  return c


# ----------------------------------------------------------------------------- arg strings

def parse_arg(arg: str | None) -> dict[str, Any]:
  """`"method=m3d,ipc=10,runlocal"` -> {"method": "m3d", "ipc": 10, "runlocal": True}.

  Values are Python literals when they parse as one (`10`, `1e4`, `True`, `(1, 2)`),
  otherwise strings. A bare word is a flag set to True.
  """
  out: dict[str, Any] = {}
  if not arg:
    return out
  for part in _split_top_level(arg):
    part = part.strip()
    if not part:
      continue
    if "=" in part:
      key, value = part.split("=", 1)
      key = key.strip()
      if not key:
        raise ConfigError(f"config arg: empty key in {part!r}")
      out[key] = _literal(value.strip())
    else:
      out[part] = True
  return out


def _split_top_level(s: str) -> list[str]:
  """Splits on commas that are not inside brackets/parentheses/quotes."""
  parts, depth, quote, cur = [], 0, None, []
  for ch in s:
    if quote:
      cur.append(ch)
      if ch == quote:
        quote = None
      continue
    if ch in "\"'":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      parts.append("".join(cur))
      cur = []
      continue
    cur.append(ch)
  parts.append("".join(cur))
  return parts


def _literal(value: str):
  try:
    return ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return value


# ------------------------------------------------------------------------- method defaults

def m3d_default_lr(ipc: int) -> float:
  """M3D's synthetic lr: 10 from IPC 10 on (DIDD-ASU's lr_img), `ipc` below.

  The per-image MMD gradient shrinks as 1/(synthetic images per class), so a fixed lr takes
  ten times larger pixel steps at IPC 1 than at IPC 10; lr 10 made IPC-1 sets worse than
  their initialisation. IPC 1 -> lr 1 was chosen on a validation split (train holdout
  1000/class, Fashion-MNIST and MNIST, lr 10 / 1 / 0.1; docs/results.md); the same split
  keeps lr 10 at IPC 10 (Fashion-MNIST). IPC 2-9 follow the scaling, untested.
  """
  return float(min(int(ipc), 10))


def apply_method_defaults(c: ml_collections.ConfigDict, method: str) -> None:
  """Sets the paper defaults of `method` for `c.dataset.name` and `c.ipc` (module doc)."""
  method = check_choice("method", method, METHODS)
  c.method = method
  dataset = c.dataset.name
  digits = dataset in DIGIT_DATASETS
  if method in ("dm", "ddm"):
    c.synthetic.init = "real"
    c.synthetic.factor = 1
    c.synthetic.space = "normalized"
    c.synthetic.lr = 10.0 if (dataset == "cifar10" and c.ipc >= 100) else 1.0
    c.synthetic.momentum = 0.5
    c.synthetic.batch_syn_max = 0
    c.batch_real = 256
    c.steps = 20000
    c.augment.policy = "dm"
    c.augment.strategy = NO_FLIP_STRATEGY if digits else FULL_STRATEGY
    # DM protocol (§5.1): 1000 epochs, batch 256, lr 0.01, same DSA strategy, last epoch.
    c.eval.protocol = "dm"
    c.eval.epochs = 1000
    c.eval.batch_size = 256
    c.eval.lr = 0.01
    c.eval.strategy = c.augment.strategy
    c.eval.mix_p = 0.0
    if method == "ddm":
      c.ddm.mm_weight = 1e4
      c.ddm.cm_weight = 0.0
      c.ddm.icd_weight = 10.0 if c.ipc >= 2 else 0.0   # ICD is undefined at ipc 1 (§4.4)
      c.ddm.style_mode = "batchavg"
      c.ddm.style_tap = "norm"
      c.ddm.k = 0
  else:  # m3d (§3.4)
    c.synthetic.init = "mix"
    c.synthetic.factor = 2
    c.synthetic.space = "unit"
    c.synthetic.lr = m3d_default_lr(c.ipc)   # CHOICE: NOT FOUND for the paper
    c.synthetic.momentum = 0.5
    c.synthetic.batch_syn_max = 200
    c.batch_real = 128
    c.steps = 5000                   # CHOICE: M3D cfg default niter
    c.augment.policy = "idc"
    c.augment.strategy = "color_crop_cutout"
    c.m3d.kernel = "gaussian"
    c.m3d.ipm = 5
    c.m3d.step_mode = "per_class"
    # IDC protocol (§5.2, IDC README command): 1000 epochs, batch 64, CutMix p 0.5,
    # strategy without cutout, best-of-checkpoints every 500 epochs.
    c.eval.protocol = "idc"
    c.eval.epochs = 1000
    c.eval.batch_size = 64
    c.eval.lr = 0.01
    c.eval.strategy = "color_crop_flip_scale_rotate"
    c.eval.mix_p = 0.5
    c.eval.eval_every_epochs = 500
    if dataset in ("mnist", "digits"):   # IDC: MNIST with factor > 1 -> color_crop, no CutMix
      c.eval.strategy = "color_crop"
      c.eval.mix_p = 0.0


def apply_runlocal(c: ml_collections.ConfigDict) -> None:
  """Shrinks a config for a CPU smoke run (seconds to a minute, not paper fidelity)."""
  c.steps = 20
  c.checkpoint_every = 10
  c.log_every = 5
  c.batch_real = min(c.batch_real, 16)
  c.model.width = 32
  c.synthetic.batch_syn_max = min(c.synthetic.batch_syn_max or 64, 64)
  c.eval.num_nets = 1
  c.eval.epochs = 20
  c.eval.batch_size = min(c.eval.batch_size, 64)
  c.eval.eval_every_epochs = 10
  c.eval.every = 0


def make_config(dataset: str, arg: str | None, *, model: str | dict = "convnet",
                ipc_default: int = 10, method_default: str = "dm",
                hook=None) -> ml_collections.ConfigDict:
  """Builds a dataset config from an arg string (what experiment files call).

  Recognised arg keys: `method`, `ipc`, `runlocal`, and any dotted config field
  (`synthetic.lr=10`, `steps=500`), applied last. `model` is the condensation (and
  evaluation) net name, or a dict method -> name. `hook(config)` runs after the method
  defaults for dataset-specific changes.
  """
  args = parse_arg(arg)
  c = base_config()
  c.dataset.name = dataset
  ipc = args.pop("ipc", ipc_default)
  if isinstance(ipc, bool) or not isinstance(ipc, int):
    raise ConfigError(f"ipc: expected an integer, got {ipc!r}")
  c.ipc = ipc
  method = args.pop("method", method_default)
  runlocal = bool(args.pop("runlocal", False))
  apply_method_defaults(c, method)
  name = model[c.method] if isinstance(model, dict) else model
  c.model.name = name
  c.eval.model = name
  if hook is not None:
    hook(c)
  if runlocal:
    apply_runlocal(c)
  for key, value in args.items():
    set_field(c, key, value, source="config arg")
  return c


def pop_arg(arg: str | None, key: str, default=None) -> tuple[Any, str]:
  """(value of `key` in the arg string or `default`, the arg string without it)."""
  args = parse_arg(arg)
  value = args.pop(key, default)
  rest = ",".join(k if v is True else f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                  for k, v in args.items())
  return value, rest


def set_field(c: ml_collections.ConfigDict, dotted: str, value, *, source: str) -> None:
  """Sets an existing field, coercing ints to floats where the schema wants a float."""
  schema = _flat(base_config())
  if dotted not in schema:
    raise ConfigError(f"{dotted}: unknown config field ({source}){_suggest(dotted, schema)}")
  want = schema[dotted]
  if isinstance(want, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(want, tuple) and isinstance(value, (list, str)):
    value = tuple(value) if isinstance(value, list) else (value,)
  node = c
  *parents, leaf = dotted.split(".")
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = value


# ------------------------------------------------------------------------------ validation

def stale_defaults(get_config, arg: str | None, config, overridden) -> list[tuple]:
  """Fields that still hold the defaults of another `ipc` / `method`.

  `--config.ipc=1` changes ipc after `get_config(arg)` set the ipc-dependent defaults (M3D's
  lr, DM's CIFAR-10 lr at ipc >= 100, DDM's ICD weight) for the arg's ipc. Rebuilds the
  config with those values in the arg and returns (field, value, default there) for every
  field that differs and was not itself overridden.
  """
  changed = [k for k in ("ipc", "method") if k in overridden]
  if not changed:
    return []
  extra = ",".join(f"{k}={config[k]}" for k in changed)
  ref = _flat(get_config(f"{arg},{extra}" if arg else extra))
  now = _flat(config)
  return [(k, now[k], v) for k, v in ref.items()
          if k not in overridden and k in now and now[k] != v]


def _flat(d, prefix: str = "") -> dict[str, Any]:
  if isinstance(d, ml_collections.ConfigDict):
    d = d.to_dict()
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flat(v, key + "."))
    else:
      out[key] = v
  return out


def _suggest(name: str, choices) -> str:
  close = difflib.get_close_matches(name, list(choices), n=1)
  return f"; did you mean {close[0]!r}?" if close else ""


def check_choice(field: str, value, choices) -> str:
  if not isinstance(value, str) or value.lower() not in choices:
    raise ConfigError(f"{field}: unknown value {value!r} (choose from "
                      f"{', '.join(choices)}){_suggest(str(value), choices)}")
  return value.lower()


def _check_int(field, value, *, lo=None, hi=None):
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f"{field}: expected an integer, got {value!r}")
  if lo is not None and value < lo:
    raise ConfigError(f"{field}: must be >= {lo}, got {value}")
  if hi is not None and value > hi:
    raise ConfigError(f"{field}: must be <= {hi}, got {value}")
  return value


def _check_float(field, value, *, lo=None, hi=None, lo_open=False, hi_open=False):
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{field}: expected a number, got {value!r}")
  value = float(value)
  if value != value:
    raise ConfigError(f"{field}: must be a number, got nan")
  if lo is not None and (value <= lo if lo_open else value < lo):
    raise ConfigError(f"{field}: must be {'>' if lo_open else '>='} {lo}, got {value}")
  if hi is not None and (value >= hi if hi_open else value > hi):
    raise ConfigError(f"{field}: must be {'<' if hi_open else '<='} {hi}, got {value}")
  return value


def check_strategy(field: str, strategy) -> str:
  if not isinstance(strategy, str):
    raise ConfigError(f"{field}: expected a string like {FULL_STRATEGY!r}, got {strategy!r}")
  if strategy in ("", "none"):
    return "none"
  for op in strategy.split("_"):
    if op not in AUG_OPS:
      raise ConfigError(f"{field}: unknown augmentation {op!r} in {strategy!r} (ops: "
                        f"{', '.join(AUG_OPS)}){_suggest(op, AUG_OPS)}")
  return strategy


def validate(c: ml_collections.ConfigDict) -> None:
  """Static checks (no data, no compilation); raises ConfigError naming the field."""
  schema = _flat(base_config())
  given = _flat(c)
  for key in given:
    if key not in schema:
      raise ConfigError(f"{key}: unknown config field{_suggest(key, schema)}")
  for key in schema:
    if key not in given:
      raise ConfigError(f"{key}: missing config field")
  check_choice("method", c.method, METHODS)
  _check_int("ipc", c.ipc, lo=1)
  _check_int("steps", c.steps, lo=0)
  _check_int("seed", c.seed, lo=0, hi=2**31 - 1)
  _check_int("checkpoint_every", c.checkpoint_every, lo=0)
  _check_int("keep_checkpoints", c.keep_checkpoints, lo=1)
  _check_int("image_every", c.image_every, lo=0)
  _check_int("batch_real", c.batch_real, lo=1)
  _check_int("log_every", c.log_every, lo=1)
  _check_int("num_devices", c.num_devices, lo=0)
  _check_float("memory_budget_gb", c.memory_budget_gb, lo=0.0)
  if not isinstance(c.quiet, bool):
    raise ConfigError(f"quiet: expected True/False, got {c.quiet!r}")

  from jaxcond.data import registry  # pylint: disable=g-import-not-at-top
  if not isinstance(c.dataset.name, str):
    raise ConfigError(f"dataset.name: expected a dataset name, got {c.dataset.name!r}")
  try:
    registry.canonical_name(c.dataset.name)
  except ConfigError:
    raise ConfigError(f"dataset.name: unknown dataset {c.dataset.name!r} (known: "
                      f"{', '.join(registry.DATASET_NAMES)})"
                      f"{_suggest(c.dataset.name.lower(), registry.DATASET_NAMES)}") from None
  if not isinstance(c.dataset.source, str):
    raise ConfigError(f"dataset.source: expected a string, got {c.dataset.source!r}")
  if not isinstance(c.dataset.path, str):
    raise ConfigError(f"dataset.path: expected a string, got {c.dataset.path!r}")
  _check_int("dataset.resolution", c.dataset.resolution, lo=0)
  if not isinstance(c.dataset.streaming, bool):
    raise ConfigError(f"dataset.streaming: expected True/False, got {c.dataset.streaming!r}")
  _check_int("dataset.holdout", c.dataset.holdout, lo=0)
  if c.dataset.holdout and c.dataset.streaming:
    raise ConfigError("dataset.holdout: not supported with dataset.streaming=True (the stream "
                      "reads the whole train split); use the in-memory bank to tune")

  from jaxcond import nets  # pylint: disable=g-import-not-at-top
  check_choice("model.name", c.model.name, nets.MODEL_NAMES)
  _check_int("model.depth", c.model.depth, lo=0, hi=12)
  _check_int("model.width", c.model.width, lo=0)
  for f in ("norm", "act", "pool"):
    if not isinstance(c.model[f], str):
      raise ConfigError(f"model.{f}: expected a string, got {c.model[f]!r}")

  s = c.synthetic
  check_choice("synthetic.init", s.init, INITS)
  check_choice("synthetic.space", s.space, SPACES)
  _check_int("synthetic.factor", s.factor, lo=1)
  _check_float("synthetic.lr", s.lr, lo=0.0, lo_open=True)
  _check_float("synthetic.momentum", s.momentum, lo=0.0, hi=1.0, hi_open=True)
  _check_int("synthetic.batch_syn_max", s.batch_syn_max, lo=0)

  for field, half in (("real_chunk", "real"), ("syn_chunk", "synthetic")):
    _check_int(field, c[field], lo=-1)
    if c[field] > 0 and _uses_batch_norm(c):
      raise ConfigError(f"{field}: a batch-norm net needs the whole {half} batch at once; "
                        f"set {field}=0 (or -1)")
  if c.real_chunk > 0 and c.batch_real % c.real_chunk:
    raise ConfigError(f"real_chunk: {c.real_chunk} does not divide batch_real "
                      f"{c.batch_real}")

  check_choice("augment.policy", c.augment.policy, POLICIES)
  check_strategy("augment.strategy", c.augment.strategy)

  check_choice("m3d.kernel", c.m3d.kernel, KERNELS)
  _check_int("m3d.ipm", c.m3d.ipm, lo=1)
  check_choice("m3d.step_mode", c.m3d.step_mode, STEP_MODES)

  d = c.ddm
  _check_float("ddm.mm_weight", d.mm_weight, lo=0.0)
  _check_float("ddm.cm_weight", d.cm_weight, lo=0.0)
  _check_float("ddm.icd_weight", d.icd_weight, lo=0.0)
  check_choice("ddm.style_mode", d.style_mode, STYLE_MODES)
  check_choice("ddm.style_tap", d.style_tap, STYLE_TAPS)
  _check_int("ddm.k", d.k, lo=0)
  if c.method == "ddm" and d.icd_weight > 0:
    if c.ipc < 2:
      raise ConfigError(f"ddm.icd_weight: the ICD term needs ipc >= 2 (ipc is {c.ipc}); "
                        "set ddm.icd_weight=0")
    if d.k and d.k > c.ipc - 1:
      raise ConfigError(f"ddm.k: {d.k} neighbours need ipc >= {d.k + 1} (ipc is {c.ipc})")

  e = c.eval
  check_choice("eval.protocol", e.protocol, EVAL_PROTOCOLS)
  check_choice("eval.model", e.model, nets.MODEL_NAMES)
  if not isinstance(e.models, (tuple, list)):
    raise ConfigError(f"eval.models: expected a tuple of model names, got {e.models!r}")
  for m in e.models:
    check_choice("eval.models", m, nets.MODEL_NAMES)
  _check_int("eval.num_nets", e.num_nets, lo=0)
  _check_int("eval.epochs", e.epochs, lo=1)
  _check_int("eval.batch_size", e.batch_size, lo=1)
  _check_float("eval.lr", e.lr, lo=0.0, lo_open=True)
  _check_float("eval.momentum", e.momentum, lo=0.0, hi=1.0, hi_open=True)
  _check_float("eval.weight_decay", e.weight_decay, lo=0.0)
  check_strategy("eval.strategy", e.strategy)
  _check_float("eval.mix_p", e.mix_p, lo=0.0, hi=1.0)
  _check_float("eval.beta", e.beta, lo=0.0, lo_open=True)
  _check_int("eval.eval_every_epochs", e.eval_every_epochs, lo=1)
  _check_int("eval.seed", e.seed, lo=0)
  _check_int("eval.every", e.every, lo=0)


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


# ---------------------------------------------------------------------- identity and hashing

def trajectory_dict(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields that determine the synthetic set step by step (checkpoint compatibility)."""
  flat = _flat(c)
  return {k: v for k, v in sorted(flat.items())
          if not any(k == f or k.startswith(f + ".") for f in NON_TRAJECTORY_FIELDS)}


def config_hash(c: ml_collections.ConfigDict) -> str:
  blob = json.dumps(_jsonable(trajectory_dict(c)), sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(x):
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x


def differing_fields(a: dict, b: dict) -> list[str]:
  keys = sorted(set(a) | set(b))
  return [k for k in keys if _jsonable(a.get(k)) != _jsonable(b.get(k))]


# ---------------------------------------------------------------------------- plain settings

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
  )   # chunk sizes (real_chunk, real_cpg, syn_cpg): chosen by jaxcond.plan


def _uses_batch_norm(c: ml_collections.ConfigDict) -> bool:
  name = c.model.name.lower()
  norm = (c.model.norm or "").lower()
  return norm in ("batch", "bn", "batchnorm") or (not norm and "bn" in name.split("_"))


def to_jsonable(c: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(c.to_json_best_effort())

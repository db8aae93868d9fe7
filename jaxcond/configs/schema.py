"""The config schema: every field with a one-line meaning, setting fields, and identity.

`base_config()` is the full schema; its method-owned values (marked "method") are DM's,
filled in from `configs.methods` (their only home). `trajectory_dict` / `config_hash` say
which fields a resumed run must match (`NON_TRAJECTORY_FIELDS` may differ).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import ml_collections

from jaxcond.configs import methods
from jaxcond.configs.checks import suggest
from jaxcond.errors import ConfigError

# Field domains (validated in `configs.validate`).
METHODS = methods.METHODS
EVAL_PROTOCOLS = methods.EVAL_PROTOCOLS
INITS = ("real", "noise", "mix")
SPACES = ("normalized", "unit")
POLICIES = ("dm", "idc", "none")
KERNELS = ("linear", "gaussian", "polynomial")
ESTIMATORS = ("biased", "unbiased")            # jaxcond.mmd.ESTIMATORS
STEP_MODES = ("per_class", "joint")
STYLE_MODES = ("batchavg", "persample")
STYLE_TAPS = ("norm", "conv")

# Fields that do not change the trajectory of the synthetic set: a checkpoint made with
# different values of these may be resumed (e.g. more `steps`, another device count; the
# chunk sizes and the device count change only float rounding).
NON_TRAJECTORY_FIELDS = (
    "steps", "checkpoint_every", "keep_checkpoints", "log_every", "quiet", "num_devices",
    "real_chunk", "syn_chunk", "memory_budget_gb", "image_every", "dataset.source",
    "dataset.path", "eval",
)


def base_config() -> ml_collections.ConfigDict:
  """The full schema with DM's defaults; every experiment config starts from this.

  Fields marked "method" get their value from `methods.method_defaults` (DM here); the
  placeholders below only fix their types.
  """
  c = ml_collections.ConfigDict()
  c.method = "dm"                # dm | m3d | ddm
  c.ipc = 10                     # synthetic images per class
  c.steps = 0                    # method: condensation iterations
  c.seed = 0                     # every random draw derives from it (rng.step_key)
  c.checkpoint_every = 1000      # steps between checkpoints; 0 = only at the end
  c.keep_checkpoints = 3         # newest checkpoints kept on disk
  c.image_every = 0              # PNG grid every n steps besides checkpoints (0 = no extra)

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = "cifar10"     # a data.registry name
  c.dataset.source = "auto"      # auto | files | tfds | ... (data.load_split)
  c.dataset.path = ""            # "" = $JAXCOND_DATA_DIR/<name>
  c.dataset.resolution = 0       # 0 = native / registry default
  c.dataset.streaming = False    # True: read real batches from disk each step (grain)
  c.dataset.holdout = 0          # >0: hold out the last n train images/class as the test set

  c.model = ml_collections.ConfigDict()
  c.model.name = "convnet"       # condensation net, a nets.MODEL_NAMES entry
  c.model.depth = 0              # 0 = the named net's own value
  c.model.width = 0              # 0 = the named net's own value
  c.model.norm = ""              # "" = the named net's own value
  c.model.act = ""
  c.model.pool = ""

  c.batch_real = 0               # method: real images per class per step
  c.real_chunk = -1              # real images/class per lax.map step; 0 = all, -1 = auto
  c.syn_chunk = -1               # synthetic images per gradient group; 0 = one, -1 = auto
  c.log_every = 100              # steps between log lines
  c.num_devices = 0              # 0 = all devices
  c.memory_budget_gb = 0.0       # per device, GiB; 0 = the device's own limit (jaxcond.plan)
  c.quiet = False                # no progress lines

  c.synthetic = ml_collections.ConfigDict()
  c.synthetic.init = ""          # method: real | noise | mix (IDC's factor² real crops)
  c.synthetic.factor = 0         # method: multi-formation factor (IDC); 1 = off
  c.synthetic.space = ""         # method: pixels optimised as normalized | unit ([0, 1])
  c.synthetic.lr = 0.0           # method: SGD learning rate on the pixels
  c.synthetic.momentum = 0.0     # method: SGD momentum
  c.synthetic.batch_syn_max = 0  # method: decoded images/class per step; 0 = all

  c.augment = ml_collections.ConfigDict()
  c.augment.policy = ""          # method: dm (DSA, one op group) | idc | none
  c.augment.strategy = ""        # method: DSA ops joined by "_"

  c.m3d = ml_collections.ConfigDict()
  c.m3d.kernel = ""              # method: MMD kernel, linear | gaussian | polynomial
  c.m3d.estimator = "biased"     # MMD² estimator: biased (M3D, V-statistic) | unbiased
  c.m3d.ipm = 0                  # method: random nets per iteration
  c.m3d.step_mode = ""           # method: per_class (M3D code) | joint

  c.ddm = ml_collections.ConfigDict()
  c.ddm.mm_weight = 0.0          # method: style (mean/var) moments weight
  c.ddm.cm_weight = 0.0          # method: correlation (Gram) term weight
  c.ddm.icd_weight = 0.0         # method: intra-class diversity weight
  c.ddm.style_mode = ""          # method: batchavg | persample
  c.ddm.style_tap = ""           # method: moments after each block's norm | conv
  c.ddm.k = 0                    # method: ICD neighbours; 0 = round(0.2 * ipc) in [1, ipc-1]

  c.eval = ml_collections.ConfigDict()
  c.eval.protocol = ""           # method: dm | idc (methods.EVAL_PROTOCOL_DEFAULTS)
  c.eval.model = "convnet"       # net trained on the synthetic set
  c.eval.models = ()             # cross-architecture pool; () = only `model`
  c.eval.num_nets = 5            # nets trained from scratch (mean ± std)
  c.eval.epochs = 0              # method (protocol): training epochs
  c.eval.batch_size = 0          # method (protocol)
  c.eval.lr = 0.0                # method (protocol)
  c.eval.momentum = 0.0          # method (protocol)
  c.eval.weight_decay = 0.0      # method (protocol)
  c.eval.strategy = ""           # method (protocol): DSA strategy while training
  c.eval.mix_p = 0.0             # method (protocol): CutMix probability
  c.eval.beta = 0.0              # method (protocol): CutMix Beta(β, β)
  c.eval.eval_every_epochs = 0   # idc: test every n epochs, best counts (dm ignores it)
  c.eval.seed = 0                # evaluation seed (independent of `seed`)
  c.eval.every = 0               # condensation steps between in-loop evals; 0 = end only

  # DM's values for its own fields, M3D's and DDM's for theirs, idc's checkpoint interval
  # (validation wants >= 1 even where dm ignores it).
  methods.apply_method_defaults(c, "dm")
  for table, block in ((methods.M3D, "m3d."), (methods.DDM, "ddm.")):
    for dotted, value in table.items():
      if dotted.startswith(block):
        _assign(c, dotted, value)
  c.eval.eval_every_epochs = methods.EVAL_PROTOCOL_DEFAULTS["idc"]["eval_every_epochs"]
  return c


def flat(d, prefix: str = "") -> dict[str, Any]:
  """A (nested) ConfigDict or dict -> {"dotted.name": value}."""
  if isinstance(d, ml_collections.ConfigDict):
    d = d.to_dict()
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(flat(v, key + "."))
    else:
      out[key] = v
  return out


def _assign(c, dotted: str, value) -> None:
  *parents, leaf = dotted.split(".")
  node = c
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = value


def set_field(c: ml_collections.ConfigDict, dotted: str, value, *, source: str) -> None:
  """Sets an existing field, coercing ints to floats where the schema wants a float."""
  schema = flat(base_config())
  if dotted not in schema:
    raise ConfigError(f"{dotted}: unknown config field ({source}){suggest(dotted, schema)}")
  want = schema[dotted]
  if isinstance(want, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(want, tuple) and isinstance(value, (list, str)):
    value = tuple(value) if isinstance(value, list) else (value,)
  _assign(c, dotted, value)


# ---------------------------------------------------------------------- identity and hashing

def trajectory_dict(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields that determine the synthetic set step by step (checkpoint compatibility)."""
  return {k: v for k, v in sorted(flat(c).items())
          if not any(k == f or k.startswith(f + ".") for f in NON_TRAJECTORY_FIELDS)}


def config_hash(c: ml_collections.ConfigDict) -> str:
  """16 hex digits of the trajectory fields' sha256 (a checkpoint's identity)."""
  blob = json.dumps(_jsonable(trajectory_dict(c)), sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable(x):
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  return x


def differing_fields(a: dict, b: dict) -> list[str]:
  """Keys whose values differ between two trajectory dicts (tuples == lists)."""
  keys = sorted(set(a) | set(b))
  return [k for k in keys if _jsonable(a.get(k)) != _jsonable(b.get(k))]


def to_jsonable(c: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(c.to_json_best_effort())

"""The config schema: every field once, as a row of `FIELDS` (name, default, domain, meaning).

`base_config()` is built from the rows; a row whose default is `METHOD` gets its value from
`configs.methods` (its only home: DM's here, M3D's and DDM's in their own blocks).
`configs.validate` checks each row's domain, `configs.settings` reads fields as their rows'
types, and `trajectory_dict` / `config_hash` leave out the rows a resumed run may change
(`trajectory=False`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import ml_collections

from jaxcond import nets
from jaxcond.configs import methods
from jaxcond.configs.checks import (Bool, Choice, ChoiceTuple, DatasetName, Float, Int,
                                    IntTuple, Str, Strategy, suggest)
from jaxcond.errors import ConfigError

# Field domains.
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
BLENDS = ("uniform", "final", "init")          # pool.blend (steps.pool_choice)
OPTIMIZERS = ("sgd", "adamw")

METHOD = "<method>"   # a row's default: the method's value, from `configs.methods`


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field. `trajectory=False`: the synthetic set does not depend on it, so a
  checkpoint made with another value may be resumed (more `steps`, another device count;
  chunk sizes and devices change only float rounding)."""
  name: str             # dotted: "synthetic.lr"
  default: Any          # METHOD: filled in from configs.methods
  domain: Any           # a configs.checks domain: Int(lo=1), Choice(INITS), ...
  meaning: str
  trajectory: bool = True

  @property
  def leaf(self) -> str:
    return self.name.rpartition(".")[2]

  @property
  def type(self) -> type:
    return self.domain.type

  def check(self, value):
    return self.domain.check(self.name, value)

  def plain(self, value):
    """The value as a program reads it: its Python type, a choice lower-cased."""
    value = self.type(value)
    return value.lower() if isinstance(self.domain, Choice) else value


_MODEL = Choice(nets.MODEL_NAMES)
_OWN = "0 / \"\" = the named net's own value"

FIELDS = (
    Field("method", "dm", Choice(METHODS), "dm | m3d | ddm | ncfm"),
    Field("ipc", 10, Int(lo=1), "synthetic images per class"),
    Field("steps", METHOD, Int(lo=0), "condensation iterations", trajectory=False),
    Field("seed", 0, Int(lo=0, hi=2**31 - 1), "every random draw derives from it (rng)"),
    Field("checkpoint_every", 1000, Int(lo=0), "steps between checkpoints; 0 = only at the end",
          trajectory=False),
    Field("keep_checkpoints", 3, Int(lo=1), "newest checkpoints kept on disk", trajectory=False),
    Field("image_every", 0, Int(lo=0), "PNG grid every n steps besides checkpoints; 0 = none",
          trajectory=False),

    Field("dataset.name", "cifar10", DatasetName(), "a data.registry name"),
    Field("dataset.source", "auto", Str(), "auto | files | tfds | ... (data.load_split)",
          trajectory=False),
    Field("dataset.path", "", Str(), "\"\" = $JAXCOND_DATA_DIR/<name>", trajectory=False),
    Field("dataset.resolution", 0, Int(lo=0), "0 = native / registry default"),
    Field("dataset.streaming", False, Bool(), "read real batches from disk each step (grain)"),
    Field("dataset.holdout", 0, Int(lo=0), "> 0: the last n train images/class are the test set"),
    Field("dataset.jpeg_draft", True, Bool(),
          "JPEGs decode scaled down in the DCT domain (Pillow draft) before the resize"),

    Field("model.name", "convnet", _MODEL, "condensation net"),
    Field("model.depth", 0, Int(lo=0, hi=12), _OWN),
    Field("model.width", 0, Int(lo=0), _OWN),
    Field("model.norm", "", Str(), _OWN),
    Field("model.act", "", Str(), _OWN),
    Field("model.pool", "", Str(), _OWN),

    Field("batch_real", METHOD, Int(lo=1), "real images per class per step"),
    Field("real_chunk", -1, Int(lo=-1), "real images/class per lax.map step; 0 = all, -1 = auto",
          trajectory=False),
    Field("syn_chunk", -1, Int(lo=-1), "synthetic images per gradient group; 0 = one, -1 = auto",
          trajectory=False),
    Field("log_every", 100, Int(lo=1), "steps between log lines", trajectory=False),
    Field("num_devices", 0, Int(lo=0), "0 = all devices", trajectory=False),
    Field("memory_budget_gb", 0.0, Float(lo=0.0),
          "per device, GiB; 0 = the device's own limit (jaxcond.plan)", trajectory=False),
    Field("quiet", False, Bool(), "no progress lines", trajectory=False),
    Field("tensorboard", False, Bool(), "TensorBoard event files in WORKDIR/tensorboard/ "
          "(pip install jaxcond[tensorboard])", trajectory=False),

    Field("synthetic.init", METHOD, Choice(INITS), "real | noise | mix (IDC's factor² crops)"),
    Field("synthetic.factor", METHOD, Int(lo=1), "multi-formation factor (IDC); 1 = off"),
    Field("synthetic.space", METHOD, Choice(SPACES), "pixels optimised as normalized | unit"),
    Field("synthetic.optimizer", METHOD, Choice(OPTIMIZERS),
          "sgd (momentum; DM, M3D, DDM) | adamw (NCFM)"),
    Field("synthetic.lr", METHOD, Float(lo=0.0, lo_open=True), "learning rate on the pixels"),
    Field("synthetic.momentum", METHOD, Float(lo=0.0, hi=1.0, hi_open=True), "SGD momentum"),
    Field("synthetic.weight_decay", METHOD, Float(lo=0.0),
          "sgd: L2 added to the gradient (torch); adamw: decoupled"),
    Field("synthetic.plateau_patience", METHOD, Int(lo=0),
          "lr x plateau_factor after this many steps without a lower loss; 0 = off"),
    Field("synthetic.plateau_factor", 0.5, Float(lo=0.0, hi=1.0, lo_open=True, hi_open=True),
          "lr factor on a plateau (NCFM: 0.5)"),
    Field("synthetic.batch_syn_max", METHOD, Int(lo=0), "decoded images/class per step; 0 = all"),

    Field("augment.policy", METHOD, Choice(POLICIES), "dm (DSA, one op group) | idc | none"),
    Field("augment.strategy", METHOD, Strategy(), "DSA ops joined by \"_\""),

    Field("m3d.kernel", METHOD, Choice(KERNELS), "MMD kernel"),
    Field("m3d.estimator", "biased", Choice(ESTIMATORS), "MMD² estimator (M3D: biased)"),
    Field("m3d.ipm", METHOD, Int(lo=1), "random nets per iteration"),
    Field("m3d.step_mode", METHOD, Choice(STEP_MODES), "per_class (M3D code) | joint"),

    Field("ddm.mm_weight", METHOD, Float(lo=0.0), "style (mean/var) moments weight"),
    Field("ddm.cm_weight", METHOD, Float(lo=0.0), "correlation (Gram) term weight"),
    Field("ddm.icd_weight", METHOD, Float(lo=0.0), "intra-class diversity weight"),
    Field("ddm.style_mode", METHOD, Choice(STYLE_MODES), "batchavg | persample"),
    Field("ddm.style_tap", METHOD, Choice(STYLE_TAPS), "moments after each block's norm | conv"),
    Field("ddm.k", METHOD, Int(lo=0), "ICD neighbours; 0 = round(0.2 * ipc) in [1, ipc - 1]"),

    Field("ncfm.num_freqs", METHOD, Int(lo=1), "frequencies t ~ N(0, I) per class per step"),
    Field("ncfm.alpha", METHOD, Float(lo=0.0), "amplitude term weight"),
    Field("ncfm.beta", METHOD, Float(lo=0.0), "phase term weight"),
    Field("ncfm.scale", METHOD, Float(lo=0.0, lo_open=True), "loss factor (NCFM code: 300)"),

    # Trained feature nets (jaxcond.pool; DANCE arXiv 2406.01063, NCFM arXiv 2502.20653).
    # Condensation reads pool.path (its content hash joins the trajectory) and calib.weight;
    # the other pool.* fields are the pool program's training settings.
    Field("pool.path", "", Str(), "trained nets (python -m jaxcond.pool); \"\" = random nets"),
    Field("pool.blend", "uniform", Choice(BLENDS), "each step's net: init·l + final·(1-l) "
          "with l ~ U(0, 1) (uniform: DANCE, NCFM) | the final weights | the initial ones"),
    Field("pool.size", 20, Int(lo=1), "nets to train (--plan without a pool: its size)",
          trajectory=False),
    Field("pool.epochs", 60, Int(lo=1), "training epochs of each net", trajectory=False),
    Field("pool.batch_size", 128, Int(lo=1), "training batch of each net", trajectory=False),
    Field("pool.lr", 0.01, Float(lo=0.0, lo_open=True), "SGD learning rate", trajectory=False),
    Field("pool.momentum", 0.9, Float(lo=0.0, hi=1.0, hi_open=True), "SGD momentum",
          trajectory=False),
    Field("pool.weight_decay", 5e-4, Float(lo=0.0), "SGD weight decay (torch: in the gradient)",
          trajectory=False),
    Field("pool.milestones", (40, 50), IntTuple(lo=1, what="epochs"),
          "epochs from which the lr is multiplied by pool.gamma", trajectory=False),
    Field("pool.gamma", 0.2, Float(lo=0.0, hi=1.0, lo_open=True), "lr factor at a milestone",
          trajectory=False),
    Field("pool.strategy", "color_crop", Strategy(), "per-sample IDC DSA while training",
          trajectory=False),
    Field("pool.mix_p", 0.5, Float(lo=0.0, hi=1.0), "CutMix probability", trajectory=False),
    Field("pool.beta", 1.0, Float(lo=0.0, lo_open=True), "CutMix Beta(β, β)", trajectory=False),
    Field("pool.seed", 0, Int(lo=0, hi=2**31 - 1), "seed of the pool's inits and batches",
          trajectory=False),
    Field("pool.nets_per_group", 0, Int(lo=0),
          "nets trained side by side per device; 0 = planned from the budget", trajectory=False),
    Field("calib.weight", METHOD, Float(lo=0.0),
          "cross-entropy of the synthetic set under the pool net's final weights; 0 = off"),

    # Evaluation (methods.EVAL_PROTOCOL_DEFAULTS): none of it changes the synthetic set.
    Field("eval.protocol", METHOD, Choice(EVAL_PROTOCOLS), "dm | idc | ncfm", trajectory=False),
    Field("eval.model", "convnet", _MODEL, "net trained on the synthetic set", trajectory=False),
    Field("eval.models", (), ChoiceTuple(nets.MODEL_NAMES, "model names"),
          "cross-architecture pool; () = only `model`", trajectory=False),
    Field("eval.num_nets", 5, Int(lo=0), "nets trained from scratch (mean ± std)",
          trajectory=False),
    Field("eval.epochs", METHOD, Int(lo=1), "training epochs", trajectory=False),
    Field("eval.batch_size", METHOD, Int(lo=1), "training batch", trajectory=False),
    Field("eval.lr", METHOD, Float(lo=0.0, lo_open=True), "SGD learning rate", trajectory=False),
    Field("eval.momentum", METHOD, Float(lo=0.0, hi=1.0, hi_open=True), "SGD momentum",
          trajectory=False),
    Field("eval.weight_decay", METHOD, Float(lo=0.0), "SGD weight decay", trajectory=False),
    Field("eval.strategy", METHOD, Strategy(), "DSA strategy while training", trajectory=False),
    Field("eval.mix_p", METHOD, Float(lo=0.0, hi=1.0), "CutMix probability", trajectory=False),
    Field("eval.beta", METHOD, Float(lo=0.0, lo_open=True), "CutMix Beta(β, β)",
          trajectory=False),
    Field("eval.eval_every_epochs", METHOD, Int(lo=1),
          "idc: test every n epochs, best counts (dm ignores it)", trajectory=False),
    Field("eval.seed", 0, Int(lo=0), "evaluation seed (independent of `seed`)",
          trajectory=False),
    Field("eval.every", 0, Int(lo=0), "condensation steps between in-loop evals; 0 = end only",
          trajectory=False),
)
BY_NAME = {f.name: f for f in FIELDS}
NON_TRAJECTORY_FIELDS = tuple(f.name for f in FIELDS if not f.trajectory)


def block(name: str) -> tuple[Field, ...]:
  """The rows of one block (`"dataset"`), in schema order."""
  return tuple(f for f in FIELDS if f.name.startswith(name + "."))


def base_config() -> ml_collections.ConfigDict:
  """The full schema with DM's defaults; every experiment config starts from this."""
  c = ml_collections.ConfigDict()
  for f in FIELDS:
    *parents, leaf = f.name.split(".")
    node = c
    for p in parents:
      if p not in node:
        node[p] = ml_collections.ConfigDict()
      node = node[p]
    node[leaf] = f.type() if f.default is METHOD else f.default   # METHOD: a typed 0 / ""

  # DM's values for its own fields, M3D's, DDM's and NCFM's for theirs, idc's checkpoint
  # interval (validation wants >= 1 even where dm ignores it).
  methods.apply_method_defaults(c, "dm")
  for table, prefix in ((methods.M3D, "m3d."), (methods.DDM, "ddm."),
                        (methods.NCFM, "ncfm.")):
    for dotted, value in table.items():
      if dotted.startswith(prefix):
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


def get_field(c, dotted: str):
  """`c.a.b` for "a.b"."""
  for part in dotted.split("."):
    c = c[part]
  return c


def _assign(c, dotted: str, value) -> None:
  parent, _, leaf = dotted.rpartition(".")
  node = get_field(c, parent) if parent else c
  with node.ignore_type():
    node[leaf] = value


def set_field(c: ml_collections.ConfigDict, dotted: str, value, *, source: str) -> None:
  """Sets an existing field, coercing ints to floats where the schema wants a float."""
  if dotted not in BY_NAME:
    raise ConfigError(f"{dotted}: unknown config field ({source}){suggest(dotted, BY_NAME)}")
  want = BY_NAME[dotted].type
  if want is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if want is tuple and isinstance(value, (list, str)):
    value = tuple(value) if isinstance(value, list) else (value,)
  _assign(c, dotted, value)


# ---------------------------------------------------------------------- identity and hashing

def trajectory_dict(c: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields that determine the synthetic set step by step (checkpoint compatibility)."""
  return {k: v for k, v in sorted(flat(c).items()) if k not in NON_TRAJECTORY_FIELDS}


def config_hash(c: ml_collections.ConfigDict, extra: dict | None = None) -> str:
  """16 hex digits of the trajectory fields' sha256 (a checkpoint's identity). `extra`:
  entries that join the trajectory from outside the config (a pool's content hash)."""
  blob = json.dumps(_jsonable({**trajectory_dict(c), **(extra or {})}), sort_keys=True)
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

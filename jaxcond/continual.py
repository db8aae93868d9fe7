"""`python -m jaxcond.continual`: class-incremental learning with a condensed memory.

    python -m jaxcond.continual --config experiments/continual.py:fashion_mnist --workdir runs/cl

The DM paper's first application (Zhao & Bilen, WACV 2023, arXiv 2110.04181, §5 "continual
learning"; the DM authors' CL_DM.py): the classes arrive in S steps; at each step the real images of
the NEW classes are condensed into `ipc` images per class and added to a memory, and a
network is trained FROM SCRATCH on the whole memory so far (GDumb, Prabhu et al. ECCV 2020)
and tested on every class seen so far. Class orders are seeded permutations (the paper uses
5 orders, seeds 0-4).

Memories (all under the same orders, evaluation protocol and evaluation seeds):
- dm / m3d / ddm: condensed per step from the new classes only, by the jitted step of
  `jaxcond.steps` with the settings `jaxcond.configs` makes for `jaxcond.condense`
  (`condense_classes`); DM and DDM condense each class independently (the authors' answer
  in the DM repository's issue #17), so a step's memory does not depend on the others;
- random: `ipc` random real images per new class;
- herding: herding selection (Welling 2009) on random-ConvNet features, per new class.

Resume: each (order, step, memory) writes `DIR/order<o>/step<t>/<memory>.npz` (the new
classes' part of the memory) and `<memory>.json` (its evaluation); anything already on
disk is loaded, not recomputed. Outputs: `DIR/results.json` (`accuracy`: memory -> mean
over orders per step; `accuracy_per_order` beside it), `DIR/results.md`, `DIR/accuracy.png`.

Choices (NOT FOUND in the sources): the network keeps a head over all classes of the
dataset (labels are global ids; classes not yet seen never appear as targets, which for
cross-entropy training from scratch on the memory is what a head over the seen classes
does); the test set of a step is every test image of the seen classes; the condensation
seed of order o is `seed + 1000·o` at every step (so its steps share the random networks
of iteration i, as the classes of one joint `jaxcond.condense` run do, and compile once;
per-class draws fold in the global class id), the random / herding seed of (o, t) is
`seed + 1000·o + t`, and the evaluation seed `eval.seed + 1000·o + t`, the same for every
memory.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from jaxcond import files, synthetic_io
from jaxcond.errors import ConfigError, DataError, JaxcondError

CONDENSED = ("dm", "m3d", "ddm")
SELECTED = ("random", "herding")
MEMORIES = CONDENSED + SELECTED
_ORDER_PURPOSE = 16       # fold-in constants of this module's keys (never reordered)
_RANDOM_PURPOSE = 17
_HERDING_PURPOSE = 18


@dataclasses.dataclass(frozen=True)
class ContinualSettings:
  """The protocol (module docstring): steps, class orders, memories, memory size."""
  num_classes: int
  num_steps: int
  orders: tuple = (0, 1, 2, 3, 4)
  memories: tuple = MEMORIES
  ipc: int = 20
  seed: int = 0
  feature_net: str = "convnet"

  def __post_init__(self):
    if not isinstance(self.num_steps, int) or not 1 <= self.num_steps <= self.num_classes:
      raise ConfigError(f"continual.num_steps: expected 1..{self.num_classes} (classes), "
                        f"got {self.num_steps!r}")
    if not self.orders or len(set(self.orders)) != len(self.orders) or \
        any(not isinstance(o, int) or o < 0 for o in self.orders):
      raise ConfigError(f"continual.orders: expected distinct non-negative seeds, "
                        f"got {self.orders!r}")
    bad = [m for m in self.memories if m not in MEMORIES]
    if not self.memories or bad or len(set(self.memories)) != len(self.memories):
      raise ConfigError(f"continual.memories: expected distinct names from {MEMORIES}, "
                        f"got {self.memories!r}")
    if not isinstance(self.ipc, int) or self.ipc < 1:
      raise ConfigError(f"ipc: expected a positive int, got {self.ipc!r}")


# ----------------------------------------------------------------------------- protocol

def class_order(seed: int, num_classes: int) -> np.ndarray:
  """The seeded class permutation of one order (a jax key from `seed`)."""
  import jax  # pylint: disable=g-import-not-at-top
  key = jax.random.fold_in(jax.random.key(int(seed)), _ORDER_PURPOSE)
  return np.asarray(jax.random.permutation(key, num_classes), np.int64)


def split_classes(order: Sequence[int], num_steps: int) -> list[np.ndarray]:
  """`order` cut into `num_steps` consecutive groups (sizes differ by at most one, larger
  first), e.g. 10 classes in 5 steps -> 5 groups of 2; 100 in 10 -> 10 groups of 10."""
  order = np.asarray(order, np.int64)
  if not 1 <= num_steps <= len(order):
    raise ConfigError(f"continual.num_steps: {num_steps} steps for {len(order)} classes")
  return [np.asarray(g, np.int64) for g in np.array_split(order, num_steps)]


class Memory:
  """A growing memory of (images, global labels); `add` appends one step's part."""

  def __init__(self):
    self.parts: list[tuple[np.ndarray, np.ndarray]] = []

  def add(self, x: np.ndarray, y: np.ndarray) -> None:
    if len(x) != len(y):
      raise DataError(f"memory: {len(y)} labels for {len(x)} images")
    self.parts.append((np.asarray(x, np.float32), np.asarray(y, np.int32)))

  @property
  def classes(self) -> np.ndarray:
    return np.unique(np.concatenate([y for _, y in self.parts])) if self.parts else \
        np.zeros((0,), np.int32)

  def arrays(self) -> tuple[np.ndarray, np.ndarray]:
    """The union of every step's part (what GDumb retrains on)."""
    return (np.concatenate([x for x, _ in self.parts]),
            np.concatenate([y for _, y in self.parts]))


def seen_test(x_test, y_test, classes) -> tuple[np.ndarray, np.ndarray]:
  """The test images of the classes seen so far."""
  keep = np.isin(y_test, np.asarray(classes))
  return x_test[keep], y_test[keep]


def gdumb_eval(memory: Memory, x_test, y_test, *, settings, num_classes: int, seed: int,
               net=None, log: Callable | None = None) -> dict:
  """GDumb step: fresh nets trained from scratch on the whole memory, tested on the seen
  classes (`jaxcond.evaluate.evaluate_arrays`, the configured protocol)."""
  from jaxcond import evaluate  # pylint: disable=g-import-not-at-top
  x, y = memory.arrays()
  xt, yt = seen_test(x_test, y_test, memory.classes)
  res = evaluate.evaluate_arrays(x, y, xt, yt, settings=settings, num_classes=num_classes,
                                 seed=seed, net=net, progress=log)
  return {"mean": res["mean"], "std": res["std"], "accuracies": res["accuracies"],
          "num_train": int(len(y)), "num_test": int(len(yt)),
          "classes": [int(c) for c in memory.classes], "wall_s": res["wall_seconds"]}


# ----------------------------------------------------------------------------- memories

def condense_classes(cfg, info, images, labels, classes, *, seed: int,
                     log: Callable | None = None) -> tuple[np.ndarray, dict]:
  """Condenses the real images of `classes` (global ids) with `cfg` (a `jaxcond.condense`
  config: method, ipc, steps, ...) -> (normalised images [k·n, H, W, ch] class-major,
  info dict). The same settings (`configs.step_settings`), initialisation and jitted bank
  step as `jaxcond.condense.run`, on a bank of these classes only; no checkpoints inside
  (the step's memory is the unit of resumption). Decoded images for factor > 1 (M3D)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxcond import configs, data, steps  # pylint: disable=g-import-not-at-top
  classes = [int(c) for c in classes]
  configs.validate(cfg)
  configs.validate_shapes(cfg, info.image_shape)
  counts = np.bincount(labels, minlength=info.num_classes)[classes]
  configs.validate_counts(cfg, counts, [info.class_names[c] for c in classes]
                          if info.class_names else None)
  s = dataclasses.replace(configs.step_settings(cfg, info), num_classes=len(classes),
                          seed=int(seed))
  bank = data.build_bank(images, labels, info.num_classes, classes=classes)
  t0 = time.perf_counter()
  init_fn, step_fn = _condense_fns(s, cfg.synthetic.init)
  state = steps.init_state(s, init_fn(bank))
  losses = []
  for i in range(int(cfg.steps)):
    state, m = step_fn(state, bank, jnp.int32(i))
    if (i + 1) % max(int(cfg.log_every), 1) == 0 or i + 1 == cfg.steps:
      losses.append(float(m["loss"]))
      if not np.isfinite(losses[-1]):
        raise JaxcondError(f"{s.method}: loss became {losses[-1]} at step {i} while "
                           f"condensing classes {classes}; try a smaller synthetic.lr")
      if log:
        log(f"{s.method} classes {classes}: step {i + 1}/{cfg.steps} loss {losses[-1]:.4g}")
  x_norm, x_dec = steps.export_images(state["syn"], s)
  x = np.asarray(x_dec if x_dec is not None else x_norm, np.float32)
  x = x.reshape((-1,) + tuple(info.image_shape))
  return x, {"seconds": time.perf_counter() - t0, "steps": int(cfg.steps),
             "final_loss": losses[-1] if losses else None, "stored_ipc": s.ipc,
             "factor": s.factor}


@functools.lru_cache(maxsize=16)
def _condense_fns(s, init: str):
  """Jitted (init, step) of settings `s`, kept so that the steps of one order (same
  settings, same number of new classes) compile once."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcond import data, steps  # pylint: disable=g-import-not-at-top
  model = steps.make_model(s)
  return (jax.jit(steps.init_synthetic(s, init, data.sample_real)),
          jax.jit(steps.make_bank_step(s, data.sample_real, None, model), donate_argnums=(0,)))


def select_classes(method: str, x_norm, labels, classes, ipc: int, *, key,
                   feature_net: str = "convnet", num_classes: int) -> np.ndarray:
  """random / herding memory of `classes`: indices into x_norm, class-major."""
  from jaxcond import baselines  # pylint: disable=g-import-not-at-top
  classes = [int(c) for c in classes]
  idx_all = np.flatnonzero(np.isin(labels, classes))
  # class-major in the order of `classes`
  rank = {c: i for i, c in enumerate(classes)}
  local = np.asarray([rank[int(c)] for c in labels[idx_all]], np.int64)
  feats = None
  if method == "herding":
    feats = baselines.random_net_features(feature_net, key, x_norm[idx_all],
                                          num_classes=num_classes)
  picked = baselines.select(method, local, len(classes), ipc, key=key, features=feats)
  return idx_all[picked]


# ----------------------------------------------------------------------------- the run

def _paths(workdir, order, step, memory):
  d = os.path.join(workdir, f"order{order}", f"step{step}")
  return d, os.path.join(d, f"{memory}.npz"), os.path.join(d, f"{memory}.json")


def settings_from_config(config, num_classes: int) -> ContinualSettings:
  cl = config.continual
  return ContinualSettings(
      num_classes=num_classes, num_steps=int(cl.num_steps),
      orders=tuple(int(o) for o in cl.orders), memories=tuple(str(m) for m in cl.memories),
      ipc=int(config.ipc), seed=int(config.seed), feature_net=str(cl.feature_net))


def method_config(config, method: str):
  """The condense config of `method`, with the run's dataset, ipc and model copied in."""
  if method not in config.methods:
    raise ConfigError(f"methods.{method}: missing (memories list {method!r})")
  import copy  # pylint: disable=g-import-not-at-top
  c = copy.deepcopy(config.methods[method])
  c.dataset = copy.deepcopy(config.dataset)
  c.ipc = int(config.ipc)
  c.model = copy.deepcopy(config.model)
  return c


def run(config, workdir: str, *, log: Callable | None = print, loader=None, info=None
        ) -> dict[str, Any]:
  """The continual-learning experiment of `config` into `workdir` (resuming); returns
  the results dict also written to `workdir/results.json`.

  loader(split) -> (uint8 images, labels) and info (DatasetInfo) default to jaxcond.data.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxcond import evaluate, rng  # pylint: disable=g-import-not-at-top
  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  log = log or (lambda _: None)
  ds = config.dataset
  if info is None:
    from jaxcond.data import registry  # pylint: disable=g-import-not-at-top
    info = registry.get_info(ds.name, resolution=ds.resolution or None)
  s = settings_from_config(config, info.num_classes)
  esettings = evaluate.EvalSettings.from_config(config)
  mcfgs = {m: method_config(config, m) for m in s.memories if m in CONDENSED}
  from jaxcond import configs  # pylint: disable=g-import-not-at-top
  for m, c in mcfgs.items():
    configs.validate(c)
  if loader is None:
    from jaxcond import data  # pylint: disable=g-import-not-at-top
    loader = data.split_loader(ds)
  x_tr, y_tr = loader("train")
  y_tr = np.asarray(y_tr, np.int64)
  x_te, y_te = loader("test")
  x_te = synthetic_io.normalize_uint8(x_te, info.mean, info.std)
  y_te = np.asarray(y_te, np.int32)
  x_tr_norm = (synthetic_io.normalize_uint8(x_tr, info.mean, info.std)
               if set(s.memories) & set(SELECTED) else None)
  os.makedirs(workdir, exist_ok=True)
  from jaxcond import nas  # pylint: disable=g-import-not-at-top
  # Orders and memories are independent (their own files), so they are not part of the
  # protocol: they may run in separate processes on one workdir, or a few memories first,
  # and then one run lists them all.
  nas.check_same_search(os.path.join(workdir, "protocol.json"), {
      "settings": {k: v for k, v in dataclasses.asdict(s).items()
                   if k not in ("orders", "memories")},
      "eval": esettings.to_dict(), "dataset": info.name,
      "condense": {m: configs.to_jsonable(method_config(config, m)) for m in CONDENSED
                   if m in config.methods}})
  t_start = time.perf_counter()

  groups_of = {o: split_classes(class_order(o, info.num_classes), s.num_steps)
               for o in s.orders}
  per_order: dict[str, list[list[float]]] = {m: [] for m in s.memories}
  per_order_std: dict[str, list[list[float]]] = {m: [] for m in s.memories}
  cost: dict[str, float] = {m: 0.0 for m in s.memories}
  eval_s = 0.0
  for oi, o in enumerate(s.orders):
    groups = groups_of[o]
    log(f"order {o}: " + " | ".join(",".join(map(str, g)) for g in groups))
    for m in s.memories:
      memory = Memory()
      accs, stds = [], []
      for t, new in enumerate(groups):
        d, npz, js = _paths(workdir, o, t, m)
        os.makedirs(d, exist_ok=True)
        if os.path.exists(npz):
          with np.load(npz) as f:
            x_new, y_new = f["x"], f["y"]
        else:
          seed = s.seed + 1000 * o + t
          if m in CONDENSED:   # one seed per order: the random nets of a joint run
            seed = s.seed + 1000 * o
            x_new, meta = condense_classes(mcfgs[m], info, x_tr, y_tr, new, seed=seed,
                                           log=None)
            per = len(x_new) // len(new)
            y_new = np.repeat(np.asarray(new, np.int32), per)
          else:
            key = jax.random.fold_in(rng.seed_key(seed),
                                     _RANDOM_PURPOSE if m == "random" else _HERDING_PURPOSE)
            t0 = time.perf_counter()
            idx = select_classes(m, x_tr_norm, y_tr, new, s.ipc, key=key,
                                 feature_net=s.feature_net, num_classes=info.num_classes)
            x_new, y_new = x_tr_norm[idx], y_tr[idx].astype(np.int32)
            meta = {"seconds": time.perf_counter() - t0, "indices": idx.tolist()}
          tmp = npz + ".tmp.npz"
          np.savez(tmp, x=x_new, y=y_new, classes=np.asarray(new), meta=json.dumps(meta))
          os.replace(tmp, npz)
        with np.load(npz) as f:
          cost[m] += float(json.loads(str(f["meta"])).get("seconds", 0.0))
        memory.add(x_new, y_new)
        if os.path.exists(js):
          with open(js, encoding="utf-8") as f:
            res = json.load(f)
        else:
          res = gdumb_eval(memory, x_te, y_te, settings=esettings,
                           num_classes=info.num_classes, seed=esettings.seed + 1000 * o + t)
          files.write_json(js, res, indent=1)
        eval_s += float(res.get("wall_s", 0.0))
        accs.append(res["mean"])
        stds.append(res["std"])
        log(f"order {o} step {t + 1}/{s.num_steps} {m}: {len(memory.classes)} classes, "
            f"{res['num_train']} images -> {res['mean']:.2f} ± {res['std']:.2f} %")
      per_order[m].append(accs)
      per_order_std[m].append(stds)

  classes_seen = [int(sum(len(g) for g in groups_of[s.orders[0]][:t + 1]))
                  for t in range(s.num_steps)]
  results = {
      "accuracy": {m: np.mean(per_order[m], axis=0).tolist() for m in s.memories},
      "accuracy_std_over_orders": {m: np.std(per_order[m], axis=0).tolist()
                                   for m in s.memories},
      "accuracy_per_order": {m: {str(o): per_order[m][i] for i, o in enumerate(s.orders)}
                             for m in s.memories},
      "classes_seen": classes_seen,
      "orders": {str(o): [g.tolist() for g in groups_of[o]] for o in s.orders},
      "memory_seconds": cost, "eval_seconds_this_run": eval_s,
      "wall_seconds_this_run": time.perf_counter() - t_start,
      "dataset": info.name, "ipc": s.ipc, "num_steps": s.num_steps,
      "eval": esettings.to_dict(), "accuracy_unit": "percent",
      "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
  }
  files.write_json(os.path.join(workdir, "results.json"), results, indent=1)
  table = results_table(results)
  with open(os.path.join(workdir, "results.md"), "w", encoding="utf-8") as f:
    f.write(table)
  plot(results, os.path.join(workdir, "accuracy.png"))
  log(table)
  return results


def results_table(results: dict) -> str:
  """Markdown: one row per memory, one column per step (mean ± std over orders)."""
  seen = results["classes_seen"]
  head = "| memory | " + " | ".join(f"{n} classes" for n in seen) + " |\n"
  head += "|---|" + "---|" * len(seen) + "\n"
  rows = []
  for m, accs in results["accuracy"].items():
    sd = results["accuracy_std_over_orders"][m]
    rows.append(f"| {m} | " + " | ".join(f"{a:.2f} ± {e:.2f}" for a, e in zip(accs, sd))
                + " |")
  n = len(next(iter(results["accuracy_per_order"].values())))
  return head + "\n".join(rows) + f"\n\nTest accuracy (%) on the classes seen so far, " \
      f"mean ± std over {n} class orders.\n"


def plot(results: dict, path: str) -> str:
  """Accuracy against the number of classes seen, one curve per memory (PNG)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
  seen = results["classes_seen"]
  for m, accs in results["accuracy"].items():
    sd = np.asarray(results["accuracy_std_over_orders"][m])
    ax.errorbar(seen, accs, yerr=sd, marker="o", capsize=2, label=m)
  ax.set_xlabel("classes seen")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"class-incremental {results['dataset']}, {results['ipc']} img/class")
  ax.set_xticks(seen)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------- CLI

PROGRAM_SUMMARY = ("Class-incremental learning with a condensed memory (DM paper, arXiv "
                   "2110.04181): condense each step's new classes, retrain from scratch on the "
                   "memory (GDumb), test on every class seen.")


def main(argv=None) -> int:
  """`python -m jaxcond.continual --config experiments/continual.py:ARG --workdir DIR`."""
  from jaxcond import cli  # pylint: disable=g-import-not-at-top
  program = cli.Program(
      "continual", PROGRAM_SUMMARY,
      examples=("python -m jaxcond.continual --config experiments/continual.py:runlocal "
                "--workdir runs/cl_local",))
  return cli.main(program, lambda a: run(a.config, a.workdir), argv)


if __name__ == "__main__":
  sys.exit(main())

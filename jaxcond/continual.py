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
disk is loaded, not recomputed. SIGTERM or a first Ctrl-C (`jaxcond.preemption`) lets the
(order, step, memory) being computed finish and write its files, then stops with one line
and exit status 3; re-running the same command resumes and gives the same results.json.
A run locks its workdir for its orders and memories (`DIR/lock.<orders>.<memories>.json`,
`jaxcond.workdir`): other orders or memories may run in other processes on the same
workdir, the same ones may not. Outputs: `DIR/results.json` (`accuracy`: memory -> mean
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
import json
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

import jax

from jaxcond import baselines, cli, condense, configs, data, evaluate, files, preemption, rng
from jaxcond import synthetic_io, tblog
from jaxcond import workdir as workdir_lib
from jaxcond.data import registry
from jaxcond.errors import ConfigError, DataError

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
  x, y = memory.arrays()
  xt, yt = seen_test(x_test, y_test, memory.classes)
  res = evaluate.evaluate_arrays(x, y, xt, yt, settings=settings, num_classes=num_classes,
                                 seed=seed, net=net, progress=log)
  return {"mean": res["mean"], "std": res["std"], "accuracies": res["accuracies"],
          "num_train": int(len(y)), "num_test": int(len(yt)),
          "classes": [int(c) for c in memory.classes], "wall_s": res["wall_seconds"]}


# ----------------------------------------------------------------------------- memories

def select_classes(method: str, x_norm, labels, classes, ipc: int, *, key,
                   feature_net: str = "convnet", num_classes: int) -> np.ndarray:
  """random / herding memory of `classes`: indices into x_norm, class-major."""
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


def make_part(m: str, new, o: int, t: int, s: ContinualSettings, splits: "Splits",
              mcfgs: dict) -> dict:
  """The memory `m` of the new classes of (order o, step t): arrays for its .npz file."""
  seed = s.seed + 1000 * o + t
  if m in CONDENSED:   # one seed per order: the random nets of a joint run
    x_new, meta = condense.condense_classes(mcfgs[m], splits.info, splits.x_train,
                                            splits.y_train, new, seed=s.seed + 1000 * o)
    y_new = np.repeat(np.asarray(new, np.int32), len(x_new) // len(new))
  else:
    key = jax.random.fold_in(rng.seed_key(seed),
                             _RANDOM_PURPOSE if m == "random" else _HERDING_PURPOSE)
    t0 = time.perf_counter()
    idx = select_classes(m, splits.x_train_norm, splits.y_train, new, s.ipc, key=key,
                         feature_net=s.feature_net, num_classes=splits.info.num_classes)
    x_new, y_new = splits.x_train_norm[idx], splits.y_train[idx].astype(np.int32)
    meta = {"seconds": time.perf_counter() - t0, "indices": idx.tolist()}
  return {"x": x_new, "y": y_new, "classes": np.asarray(new), "meta": json.dumps(meta)}


# ----------------------------------------------------------------------------- the run

def _paths(workdir, order, step, memory):
  d = files.join(workdir, f"order{order}", f"step{step}")
  return d, files.join(d, f"{memory}.npz"), files.join(d, f"{memory}.json")


def settings_from_config(config, num_classes: int) -> ContinualSettings:
  cl = config.continual
  return ContinualSettings(
      num_classes=num_classes, num_steps=int(cl.num_steps),
      orders=tuple(int(o) for o in cl.orders), memories=tuple(str(m) for m in cl.memories),
      ipc=int(config.ipc), seed=int(config.seed), feature_net=str(cl.feature_net))


@dataclasses.dataclass
class Splits:
  """The real data of the protocol: uint8 train images and labels (condensed memories),
  normalised train images (selected memories), the normalised test split."""
  info: Any
  x_train: np.ndarray
  y_train: np.ndarray
  x_train_norm: np.ndarray | None
  x_test: np.ndarray
  y_test: np.ndarray


def load_splits(config, info, loader, need_norm: bool) -> Splits:
  loader = loader or data.split_loader(config.dataset)
  x_tr, y_tr = loader("train")
  x_te, y_te = loader("test")
  norm = lambda x: synthetic_io.normalize_uint8(x, info.mean, info.std)
  return Splits(info, x_tr, np.asarray(y_tr, np.int64), norm(x_tr) if need_norm else None,
                norm(x_te), np.asarray(y_te, np.int32))


def run_memory(m: str, o: int, groups, s: ContinualSettings, splits: Splits, mcfgs, esettings,
               workdir: str, log: Callable, stop: preemption.Preemption | None = None,
               tb: tblog.Writer | None = None) -> tuple[list, list, float, float]:
  """One memory along one class order: (accuracy per step, std per step, seconds to make
  the memory, evaluation seconds). Every (step, memory) is read back when on disk; before
  computing one that is not, a requested stop (`stop`) ends the run."""
  memory = Memory()
  accs, stds, cost, eval_s = [], [], 0.0, 0.0
  for t, new in enumerate(groups):
    _, npz, js = _paths(workdir, o, t, m)
    if stop is not None and not (files.exists(npz) and files.exists(js)):
      stop.between(f"preempted before order {o} step {t + 1}/{s.num_steps} {m}: every "
                   f"finished result is in {workdir}; re-run the same command to resume")
    part = files.cached_npz(npz, lambda: make_part(m, new, o, t, s, splits, mcfgs))
    cost += float(json.loads(str(part["meta"])).get("seconds", 0.0))
    memory.add(part["x"], part["y"])
    res = files.cached_json(js, lambda: gdumb_eval(
        memory, splits.x_test, splits.y_test, settings=esettings,
        num_classes=splits.info.num_classes, seed=esettings.seed + 1000 * o + t))
    eval_s += float(res.get("wall_s", 0.0))
    accs.append(res["mean"])
    stds.append(res["std"])
    log(f"order {o} step {t + 1}/{s.num_steps} {m}: {len(memory.classes)} classes, "
        f"{res['num_train']} images -> {res['mean']:.2f} ± {res['std']:.2f} %")
    if tb is not None:   # the accuracy the result file holds, against the classes seen
      tb.scalars(len(memory.classes), {f"{m}/order{o}": res["mean"]}, prefix="accuracy/")
  return accs, stds, cost, eval_s


def run(config, workdir: str, *, log: Callable | None = print, loader=None, info=None,
        stop: preemption.Preemption | None = None) -> dict[str, Any]:
  """The continual-learning experiment of `config` into `workdir` (resuming); returns
  the results dict also written to `workdir/results.json`.

  loader(split) -> (uint8 images, labels) and info (DatasetInfo) default to jaxcond.data.
  stop: the signal handling (module docstring; default `preemption.Preemption()`).
  """
  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  log = log or (lambda _: None)
  ds = config.dataset
  info = info or registry.get_info(ds.name, resolution=ds.resolution or None)
  s = settings_from_config(config, info.num_classes)
  esettings = evaluate.EvalSettings.from_config(config)
  mcfgs = {m: condense.classes_config(config, m) for m in s.memories if m in CONDENSED}
  for c in mcfgs.values():
    configs.validate(c)
  if config.get("tensorboard", False):
    tblog.require()      # before any work: a one-line error when the writer is missing
  name = (f"orders-{'-'.join(str(o) for o in s.orders)}."
          f"memories-{'-'.join(s.memories)}")
  return workdir_lib.run_locked(
      workdir, lambda stop: _experiment(config, workdir, log, loader, info, s, esettings,
                                        mcfgs, stop), stop=stop, name=name, warn=log)


def _experiment(config, workdir, log, loader, info, s: ContinualSettings, esettings, mcfgs,
                stop: preemption.Preemption) -> dict[str, Any]:
  """`run` once its workdir is locked."""
  tb = tblog.for_workdir(workdir, bool(config.get("tensorboard", False)))
  stop.cleanups.append(tb.close)
  with stop.immediate(preemption.LOADING_DATA):
    splits = load_splits(config, info, loader, bool(set(s.memories) & set(SELECTED)))
  # Orders and memories are independent (their own files), so they are not part of the
  # protocol: they may run in separate processes on one workdir, or a few memories first,
  # and then one run lists them all.
  files.check_same_record(files.join(workdir, "protocol.json"), {
      "settings": {k: v for k, v in dataclasses.asdict(s).items()
                   if k not in ("orders", "memories")},
      "eval": esettings.to_dict(), "dataset": info.name,
      "condense": {m: configs.to_jsonable(condense.classes_config(config, m))
                   for m in CONDENSED if m in config.methods}})
  t_start = time.perf_counter()
  groups_of = {o: split_classes(class_order(o, info.num_classes), s.num_steps)
               for o in s.orders}
  per_order = {m: [] for m in s.memories}
  cost = {m: 0.0 for m in s.memories}
  eval_s = 0.0
  for o in s.orders:
    log(f"order {o}: " + " | ".join(",".join(map(str, g)) for g in groups_of[o]))
    for m in s.memories:
      accs, stds, secs, e_s = run_memory(m, o, groups_of[o], s, splits, mcfgs, esettings,
                                         workdir, log, stop, tb)
      per_order[m].append(accs)
      cost[m] += secs
      eval_s += e_s
  results = summarize(config, s, info, groups_of, per_order, esettings, cost=cost,
                      eval_s=eval_s, wall_s=time.perf_counter() - t_start)
  table = results_table(results)
  files.write_results(workdir, results, table)
  plot(results, files.join(workdir, "accuracy.png"))
  tb.close()
  log(table)
  return results


def summarize(config, s: ContinualSettings, info, groups_of, per_order, esettings, *,
              cost, eval_s, wall_s) -> dict:
  """The results.json record: mean / std over orders per step, per-order curves, costs."""
  classes_seen = [int(sum(len(g) for g in groups_of[s.orders[0]][:t + 1]))
                  for t in range(s.num_steps)]
  return {
      "accuracy": {m: np.mean(per_order[m], axis=0).tolist() for m in s.memories},
      "accuracy_std_over_orders": {m: np.std(per_order[m], axis=0).tolist()
                                   for m in s.memories},
      "accuracy_per_order": {m: {str(o): per_order[m][i] for i, o in enumerate(s.orders)}
                             for m in s.memories},
      "classes_seen": classes_seen,
      "orders": {str(o): [g.tolist() for g in groups_of[o]] for o in s.orders},
      "memory_seconds": cost, "eval_seconds_this_run": eval_s,
      "wall_seconds_this_run": wall_s,
      "dataset": info.name, "ipc": s.ipc, "num_steps": s.num_steps,
      "eval": esettings.to_dict(), "accuracy_unit": "percent",
      "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
  }


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
  import matplotlib  # pylint: disable=g-import-not-at-top  (optional extra)
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
  with files.atomic_write(path) as f:
    fig.savefig(f, format="png")
  plt.close(fig)
  return path


# ----------------------------------------------------------------------------- CLI

PROGRAM_SUMMARY = ("Class-incremental learning with a condensed memory (DM paper, arXiv "
                   "2110.04181): condense each step's new classes, retrain from scratch on the "
                   "memory (GDumb), test on every class seen.")


PROGRAM = cli.Program(
    "continual", PROGRAM_SUMMARY,
    examples=("python -m jaxcond.continual --config experiments/continual.py:runlocal "
              "--workdir runs/cl_local",))


def main(argv=None) -> int:
  """`python -m jaxcond.continual --config experiments/continual.py:ARG --workdir DIR`."""
  return cli.main(PROGRAM, lambda a: run(a.config, a.workdir,
                                         stop=preemption.Preemption(command_line=True)), argv)


if __name__ == "__main__":
  sys.exit(main())

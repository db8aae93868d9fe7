"""`python -m jaxcond.nas`: rank architectures on a cheap proxy set (DC / DM papers' NAS).

    python -m jaxcond.nas --config experiments/nas.py:runlocal --workdir runs/nas_local
    python -m jaxcond.nas --config experiments/nas.py:fashion_mnist --workdir runs/nas_fmnist

The DM paper's second application (Zhao & Bilen, WACV 2023, arXiv 2110.04181, §5 "neural
architecture search"), after DC (Zhao et al., ICLR 2021, arXiv 2006.05929, §3.3): a grid of
ConvNet variants over depth, width, activation, normalisation and pooling (the papers' 720
= depth {1,2,3,4} x width {32,64,128,256} x act {sigmoid, relu, leakyrelu} x norm {none,
batch, layer, instance, group} x pool {none, max, avg}) is trained on a PROXY set and on
the whole training set; a good proxy ranks the architectures as the whole set does.

Proxies (each trained from scratch with the same evaluation protocol as `jaxcond.evaluate`):
- `dm` (or `m3d`, `ddm`): a set condensed from the training set by that method
  (`jaxcond.continual.condense_classes`, the jitted step of `jaxcond.condense`);
- `random`: a seeded random subset of the same size (images per class);
- `early`: a short run (`nas.early_epochs`) on the whole training set (early stopping).
The target is `whole`: `nas.whole_epochs` on the whole training set.

Reported (results.json): `spearman` (proxy -> Spearman rank correlation with the whole-set
accuracy over all architectures), `kendall` (Kendall tau-b) beside it, both again over the
top `nas.top_fraction` of architectures by whole-set accuracy (at least 3), the
architecture each proxy ranks first and its whole-set accuracy (and its rank there), the
seconds each proxy costs (condensation + training of every architecture), and
`architectures`: name -> {proxy: mean accuracy}.

Resume: every (architecture, proxy) writes `DIR/archs/<arch>/<proxy>.json` when it
finishes and is never retrained; the proxy sets are saved in `DIR/proxies/`. SIGTERM or a
first Ctrl-C (`jaxcond.preemption`) lets the proxy set or (architecture, proxy) being
computed finish and write its file, then stops with one line and exit status 3;
re-running the same command resumes and gives the same results.json. A run locks its
workdir (`DIR/lock.json`; `DIR/lock.shard-i-of-n.json` for a `nas.shard`, so shards
share a workdir and the same shard twice does not).
The `num_nets` networks of one architecture (different seeds) train together, vmapped or
unrolled as `jaxcond.evaluate.train_and_test` does on this backend; architectures (which
differ in shape) train one after another.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

import jax

from jaxcond import cli, condense, configs, data, evaluate, files, nets, preemption, rng
from jaxcond import synthetic_io, tblog
from jaxcond import workdir as workdir_lib
from jaxcond.data import registry
from jaxcond.errors import ConfigError

PAPER_GRID = {"depth": (1, 2, 3, 4), "width": (32, 64, 128, 256),
              "act": ("sigmoid", "relu", "leakyrelu"),
              "norm": ("none", "batch", "layer", "instance", "group"),
              "pool": ("none", "max", "avg")}
_SUBSET_PURPOSE = 21      # fold-in constants of this module's keys (never reordered)
_TEST_PURPOSE = 22
_RANDOM_PROXY_PURPOSE = 23


@dataclasses.dataclass(frozen=True, order=True)
class Arch:
  """One ConvNet variant of the grid (`jaxcond.nets.ConvNet` fields)."""
  depth: int
  width: int
  act: str
  norm: str
  pool: str

  @property
  def name(self) -> str:
    return f"d{self.depth}_w{self.width}_{self.act}_{self.norm}_{self.pool}"


def grid(depths, widths, acts, norms, pools) -> list[Arch]:
  """Every combination, in a fixed order (depth slowest)."""
  return [Arch(int(d), int(w), str(a), str(n), str(p))
          for d, w, a, n, p in itertools.product(depths, widths, acts, norms, pools)]


@functools.lru_cache(maxsize=None)
def arch_net(arch: Arch, num_classes: int, image_shape: tuple):
  """`jaxcond.evaluate.NetFns` of `arch` (cached: one object per arch, so the evaluator's
  jitted programs are reused across proxies)."""
  model = nets.get_model("convnet", num_classes=num_classes, image_shape=image_shape,
                         depth=arch.depth, width=arch.width, act=arch.act, norm=arch.norm,
                         pool=arch.pool)
  return evaluate.NetFns(lambda key: nets.init_variables(model, key, image_shape),
                         lambda v, x, train: nets.logits(model, v, x, train=train))


# ----------------------------------------------------------------------------- statistics

def rankdata(a) -> np.ndarray:
  """Ranks 1..n with ties given their average rank (scipy.stats.rankdata 'average')."""
  a = np.asarray(a, np.float64)
  order = np.argsort(a, kind="mergesort")
  ranks = np.empty(len(a), np.float64)
  sorted_a = a[order]
  i = 0
  while i < len(a):
    j = i
    while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
      j += 1
    ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
    i = j + 1
  return ranks


def spearman(x, y) -> float:
  """Spearman's rho: Pearson correlation of the average ranks (NaN if a side is constant)."""
  rx, ry = rankdata(x), rankdata(y)
  if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
    return float("nan")
  return float(np.corrcoef(rx, ry)[0, 1])


def kendall(x, y) -> float:
  """Kendall's tau-b (ties in either variable corrected), O(n^2): grids are small."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  if n < 2:
    return float("nan")
  i, j = np.triu_indices(n, 1)
  dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
  s = float(np.sum(dx * dy))
  nx, ny = float(np.sum(dx != 0)), float(np.sum(dy != 0))
  if nx == 0 or ny == 0:
    return float("nan")
  return s / math.sqrt(nx * ny)


def rank_report(proxy: Sequence[float], whole: Sequence[float], names: Sequence[str], *,
                top_fraction: float = 0.05) -> dict:
  """Correlations of one proxy with the whole-set accuracies, all and top, and its pick."""
  proxy, whole = np.asarray(proxy, np.float64), np.asarray(whole, np.float64)
  k = min(len(whole), max(3, math.ceil(top_fraction * len(whole))))
  top = np.argsort(-whole, kind="mergesort")[:k]
  pick = int(np.argmax(proxy))
  return {"spearman": spearman(proxy, whole), "kendall": kendall(proxy, whole),
          "top_k": k, "spearman_top": spearman(proxy[top], whole[top]),
          "kendall_top": kendall(proxy[top], whole[top]),
          "picked": names[pick], "picked_whole_accuracy": float(whole[pick]),
          "picked_whole_rank": int(1 + np.sum(whole > whole[pick])),
          "best_whole": names[int(np.argmax(whole))],
          "best_whole_accuracy": float(np.max(whole))}


# ----------------------------------------------------------------------------- data

def balanced_subset(key, labels, num_classes: int, per_class: int) -> np.ndarray:
  """Seeded `per_class` indices per class (all of a class when it has fewer), sorted."""
  out = []
  for c in range(num_classes):
    idx = np.flatnonzero(np.asarray(labels) == c)
    if per_class and len(idx) > per_class:
      perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, c), len(idx)))
      idx = np.sort(idx[perm[:per_class]])
    out.append(idx)
  return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class NasSettings:
  """The search (module docstring); built from `config.nas` by `settings_from_config`."""
  archs: tuple
  proxies: tuple = ("dm", "random", "early")
  proxy_ipc: int = 50
  proxy_epochs: int = 300
  early_epochs: int = 20
  whole_epochs: int = 200
  num_nets: int = 1
  train_per_class: int = 0       # 0 = every training image is "the whole set"
  test_per_class: int = 0        # 0 = the whole test split
  whole_strategy: str = "none"   # DSA on the whole-set and early runs ("none" = off)
  top_fraction: float = 0.05
  seed: int = 0

  def __post_init__(self):
    if len(self.archs) < 2:
      raise ConfigError(f"nas grid: at least 2 architectures needed, got {len(self.archs)}")
    known = ("dm", "m3d", "ddm", "random", "early")
    bad = [p for p in self.proxies if p not in known]
    if not self.proxies or bad:
      raise ConfigError(f"nas.proxies: expected names from {known}, got {self.proxies!r}")
    for f in ("proxy_ipc", "proxy_epochs", "early_epochs", "whole_epochs", "num_nets"):
      if not isinstance(getattr(self, f), int) or getattr(self, f) < 1:
        raise ConfigError(f"nas.{f}: expected a positive int, got {getattr(self, f)!r}")
    if not 0 < self.top_fraction <= 1:
      raise ConfigError(f"nas.top_fraction: expected (0, 1], got {self.top_fraction!r}")


def settings_from_config(config) -> NasSettings:
  n = config.nas
  archs = tuple(grid(n.depths, n.widths, n.acts, n.norms, n.pools))
  return NasSettings(
      archs=archs, proxies=tuple(n.proxies), proxy_ipc=int(config.ipc),
      proxy_epochs=int(n.proxy_epochs), early_epochs=int(n.early_epochs),
      whole_epochs=int(n.whole_epochs), num_nets=int(n.num_nets),
      train_per_class=int(n.train_per_class), test_per_class=int(n.test_per_class),
      whole_strategy=str(n.whole_strategy), top_fraction=float(n.top_fraction),
      seed=int(config.seed))


# ----------------------------------------------------------------------------- the run

def shard_archs(archs, shard: str) -> list:
  """`shard` "i/n" -> archs[i::n] (processes sharing one workdir); "" -> all."""
  if not shard:
    return list(archs)
  try:
    i, n = (int(v) for v in shard.split("/"))
    if not 0 <= i < n:
      raise ValueError
  except ValueError:
    raise ConfigError(f"nas.shard: expected 'i/n' with 0 <= i < n, got {shard!r}") from None
  return list(archs)[i::n]


def _proxy_set(name, config, s, info, x_u8, y, x_norm, workdir, log, stop=None):
  """(images, labels, seconds to make) of a proxy set, saved under DIR/proxies/; before
  making one that is not there, a requested stop (`stop`) ends the run."""
  path = files.join(workdir, "proxies", f"{name}.npz")
  if stop is not None and not files.exists(path):
    stop.between(f"preempted before making the {name} proxy set: every finished result is "
                 f"in {workdir}; re-run the same command to resume")

  def make():
    t0 = time.perf_counter()
    if name == "random":
      key = jax.random.fold_in(rng.seed_key(s.seed), _RANDOM_PROXY_PURPOSE)
      idx = balanced_subset(key, y, info.num_classes, s.proxy_ipc)
      x, yy = x_norm[idx], y[idx].astype(np.int32)
    else:
      log(f"condensing the {name} proxy ({s.proxy_ipc}/class) ...")
      cfg = condense.classes_config(config, name)
      x, _ = condense.condense_classes(cfg, info, x_u8, y, range(info.num_classes),
                                       seed=s.seed, log=log)
      yy = np.repeat(np.arange(info.num_classes, dtype=np.int32), len(x) // info.num_classes)
    return {"x": x, "y": yy, "seconds": time.perf_counter() - t0}

  f = files.cached_npz(path, make)
  return f["x"], f["y"], float(f["seconds"])


def load_data(config, s: NasSettings, info, loader):
  """(uint8 train images, train labels, normalised train images, normalised test images,
  test labels), each split cut to `train_per_class` / `test_per_class` when set."""
  loader = loader or data.split_loader(config.dataset)
  x_u8, y = loader("train")
  y = np.asarray(y, np.int64)
  key = rng.seed_key(s.seed)
  if s.train_per_class:
    keep = balanced_subset(jax.random.fold_in(key, _SUBSET_PURPOSE), y, info.num_classes,
                           s.train_per_class)
    x_u8, y = np.asarray(x_u8)[keep], y[keep]
  x_norm = synthetic_io.normalize_uint8(x_u8, info.mean, info.std)
  xt, yt = loader("test")
  yt = np.asarray(yt, np.int64)
  if s.test_per_class:
    keep = balanced_subset(jax.random.fold_in(key, _TEST_PURPOSE), yt, info.num_classes,
                           s.test_per_class)
    xt, yt = np.asarray(xt)[keep], yt[keep]
  xt = synthetic_io.normalize_uint8(xt, info.mean, info.std)
  return x_u8, y, x_norm, xt, yt.astype(np.int32)


def eval_settings(config, s: NasSettings) -> dict:
  """The evaluation settings of each run: proxies, `early` and the `whole` target."""
  base = dataclasses.replace(evaluate.EvalSettings.from_config(config), num_nets=s.num_nets)
  evals = {p: dataclasses.replace(base, epochs=s.proxy_epochs) for p in s.proxies}
  evals["early"] = dataclasses.replace(base, epochs=s.early_epochs, strategy=s.whole_strategy)
  evals["whole"] = dataclasses.replace(base, epochs=s.whole_epochs, strategy=s.whole_strategy)
  return {"base": base, **evals}


def train_arch(a: Arch, p: str, x, yy, xt, yt, settings, info, seed: int) -> dict:
  """One architecture trained on one proxy (or the whole set): its result record."""
  net = arch_net(a, info.num_classes, tuple(int(v) for v in info.image_shape))
  out = evaluate.train_and_test(net, x, yy, xt, yt, settings=settings, seed=seed)
  last = out["checkpoint_accuracies"][-1]
  return {"arch": dataclasses.asdict(a), "proxy": p, "mean": float(np.mean(last)),
          "accuracies": last, "wall_s": out["wall_seconds"], "train_s": out["train_seconds"],
          "epochs": settings.epochs, "num_train": int(len(yy))}


def run(config, workdir: str, *, log: Callable | None = print, loader=None, info=None,
        stop: preemption.Preemption | None = None) -> dict[str, Any]:
  """The architecture search of `config` into `workdir` (resuming); returns the results
  dict also written to `workdir/results.json`. stop: the signal handling (module
  docstring; default `preemption.Preemption()`)."""
  if not workdir:
    raise ConfigError("workdir: required (--workdir DIR)")
  log = log or (lambda _: None)
  ds = config.dataset
  info = info or registry.get_info(ds.name, resolution=ds.resolution or None)
  s = settings_from_config(config)
  evals = eval_settings(config, s)
  for a in s.archs:   # ConfigError for a bad variant before any training
    arch_net(a, info.num_classes, tuple(int(v) for v in info.image_shape))
  if config.get("tensorboard", False):
    tblog.require()      # before any work: a one-line error when the writer is missing
  shard = str(config.nas.get("shard", "") or "")
  mine = shard_archs(s.archs, shard)
  name = "shard-{}-of-{}".format(*shard.split("/")) if shard else ""
  return workdir_lib.run_locked(
      workdir, lambda stop: _search(config, workdir, log, loader, info, s, evals, mine, stop),
      stop=stop, name=name, warn=log)


def _search(config, workdir, log, loader, info, s: NasSettings, evals, mine,
            stop: preemption.Preemption) -> dict[str, Any]:
  """`run` once its workdir is locked."""
  tb = tblog.for_workdir(workdir, bool(config.get("tensorboard", False)))
  stop.cleanups.append(tb.close)
  with stop.immediate(preemption.LOADING_DATA):
    x_u8, y, x_norm, xt, yt = load_data(config, s, info, loader)
  files.check_same_record(files.join(workdir, "search.json"),
                          {"settings": json.loads(json.dumps(dataclasses.asdict(s))),
                           "eval": evals["base"].to_dict(), "dataset": info.name,
                           "condense": {p: configs.to_jsonable(config.methods[p])
                                        for p in s.proxies if p in config.methods}})
  log(f"nas on {info.name}: {len(s.archs)} architectures, proxies {', '.join(s.proxies)}; "
      f"whole set {len(y)} images, test {len(yt)}")
  sets, make_s = {}, {}
  for p in s.proxies:
    if p != "early":
      x, yy, make_s[p] = _proxy_set(p, config, s, info, x_u8, y, x_norm, workdir, log, stop)
      sets[p] = (x, yy)
  sets["early"] = sets["whole"] = (x_norm, y.astype(np.int32))
  runs = list(s.proxies) + ["whole"]
  acc: dict[str, dict[str, float]] = {}
  secs: dict[str, float] = {p: 0.0 for p in runs}
  t_start = time.perf_counter()
  trained = 0
  for ai, a in enumerate(s.archs):
    if a not in mine:
      continue
    acc[a.name] = {}
    for p in runs:
      path = files.join(workdir, "archs", a.name, f"{p}.json")
      if not files.exists(path):
        stop.between(f"preempted before training {a.name} on {p}: every finished result is "
                     f"in {workdir}; re-run the same command to resume")
        files.makedirs(files.dirname(path))
        trained += 1
      rec = files.cached_json(path, lambda: train_arch(a, p, *sets[p], xt, yt, evals[p], info,
                                                       s.seed))
      acc[a.name][p] = rec["mean"]
      secs[p] += rec["wall_s"]
    log(f"[{ai + 1}/{len(s.archs)}] {a.name}: " +
        ", ".join(f"{p} {acc[a.name][p]:.1f}" for p in runs))
    tb.scalars(ai, acc[a.name], prefix="accuracy/")   # against the architecture's index
  if len(mine) < len(s.archs):
    log(f"shard {config.nas.shard}: {len(mine)} architectures done; run without "
        f"nas.shard to gather the results")
    return {"architectures": acc, "trained_this_run": trained}
  results = summarize(config, s, info, acc, secs, make_s, evals, runs, len(y), len(yt),
                      trained=trained, wall_s=time.perf_counter() - t_start)
  table = results_table(results)
  files.write_results(workdir, results, table)
  tb.scalars(0, {f"{k}/{p}": v for k in ("spearman", "kendall")
                 for p, v in results[k].items()}, prefix="rank_correlation/")
  tb.close()
  log(table)
  return results


def summarize(config, s: NasSettings, info, acc, secs, make_s, evals, runs, num_train,
              num_test, *, trained, wall_s) -> dict:
  """The results.json record: rank correlations of each proxy, picks, costs, accuracies."""
  names = [a.name for a in s.archs]
  whole = [acc[n]["whole"] for n in names]
  reports = {p: rank_report([acc[n][p] for n in names], whole, names,
                            top_fraction=s.top_fraction) for p in s.proxies}
  first = reports[s.proxies[0]]
  return {
      "spearman": {p: r["spearman"] for p, r in reports.items()},
      "kendall": {p: r["kendall"] for p, r in reports.items()},
      "spearman_top": {p: r["spearman_top"] for p, r in reports.items()},
      "kendall_top": {p: r["kendall_top"] for p, r in reports.items()},
      "top_k": first["top_k"],
      "picked": {p: {k: r[k] for k in ("picked", "picked_whole_accuracy", "picked_whole_rank")}
                 for p, r in reports.items()},
      "best_whole": {"arch": first["best_whole"], "accuracy": first["best_whole_accuracy"]},
      "cost_seconds": {p: secs[p] + make_s.get(p, 0.0) for p in s.proxies},
      "proxy_make_seconds": make_s,
      "train_seconds": secs, "whole_seconds": secs["whole"],
      "architectures": acc, "num_architectures": len(names),
      "grid": {k: list(config.nas[k]) for k in ("depths", "widths", "acts", "norms", "pools")},
      "dataset": info.name, "num_train": int(num_train), "num_test": int(num_test),
      "proxy_ipc": s.proxy_ipc,
      "epochs": {p: evals[p].epochs for p in runs}, "eval": evals["base"].to_dict(),
      "trained_this_run": trained, "wall_seconds_this_run": wall_s,
      "accuracy_unit": "percent",
      "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
  }


def results_table(r: dict) -> str:
  rows = ["| proxy | Spearman | Kendall | Spearman top | Kendall top | picks | its whole-set "
          "acc (rank) | cost (s) |", "|---|---|---|---|---|---|---|---|"]
  for p in r["spearman"]:
    pk = r["picked"][p]
    rows.append(f"| {p} | {r['spearman'][p]:.3f} | {r['kendall'][p]:.3f} | "
                f"{r['spearman_top'][p]:.3f} | {r['kendall_top'][p]:.3f} | {pk['picked']} | "
                f"{pk['picked_whole_accuracy']:.2f} ({pk['picked_whole_rank']}) | "
                f"{r['cost_seconds'][p]:.0f} |")
  rows.append(f"| whole (target) | 1 | 1 | 1 | 1 | {r['best_whole']['arch']} | "
              f"{r['best_whole']['accuracy']:.2f} (1) | {r['whole_seconds']:.0f} |")
  return "\n".join(rows) + (
      f"\n\n{r['num_architectures']} architectures on {r['dataset']} ({r['num_train']} "
      f"training images, {r['num_test']} test); top = the best {r['top_k']} by whole-set "
      f"accuracy; cost = condensing the proxy (if any) + training every architecture on "
      f"it.\n")


PROGRAM = cli.Program(
    "nas", "Architecture search on a proxy (DC/DM papers, arXiv 2006.05929, 2110.04181): "
    "rank ConvNet variants trained on a condensed set, a random subset and a short run "
    "against whole-set training.",
    examples=("python -m jaxcond.nas --config experiments/nas.py:runlocal "
              "--workdir runs/nas_local",))


def main(argv=None) -> int:
  """`python -m jaxcond.nas --config experiments/nas.py:ARG --workdir DIR`."""
  return cli.main(PROGRAM, lambda a: run(a.config, a.workdir,
                                         stop=preemption.Preemption(command_line=True)), argv)


if __name__ == "__main__":
  sys.exit(main())

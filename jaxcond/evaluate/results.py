"""Results of an evaluation: per-model summaries, the one record schema, summary lines,
tables and the results files (docs/evaluate.md, "Results").

`record(results, settings)` is the schema shared by `condense`'s eval.jsonl lines and the
evaluate program's results.json (which adds the set's source, the config and versions):
accuracies, mean, std (population, ddof 0, as the DM code reports), protocol, model,
num_nets, accuracy_unit, selection, measured_on, wall_s, [best_* under idc / ncfm], [pool].
"""
from __future__ import annotations

import sys

import flax
import jax
import jaxlib
import numpy as np
import optax

import jaxcond
from jaxcond import files
from jaxcond.evaluate.protocols import EvalSettings
from jaxcond.evaluate.train import steps_per_pass

_BEST = ("best_accuracies", "best_mean", "best_std", "best_selection")


def _mean_std(values) -> tuple[float, float]:
  a = np.asarray(values, np.float64)
  return float(a.mean()), float(a.std())


def summarize(run: dict, settings: EvalSettings, model: str, num_train: int,
              measured_on: str = "test") -> dict:
  """The result dict of one architecture (keys documented in docs/evaluate.md).

  measured_on: what x_test was (`test_split_name`), so that accuracies measured on a train
  holdout, and checkpoints selected on it, never read as test numbers."""
  last = run["checkpoint_accuracies"][-1]
  mean, std = _mean_std(last)
  res = {
      "accuracies": last, "mean": mean, "std": std,
      "protocol": settings.protocol, "model": model, "num_nets": len(last),
      "accuracy_unit": "percent", "selection": "last epoch",
      "checkpoint_passes": run["checkpoint_passes"],
      "checkpoint_accuracies": run["checkpoint_accuracies"],
      "train_images_per_net": num_train, "passes": settings.passes,
      "steps_per_pass": steps_per_pass(num_train, settings.batch_size),
      "wall_seconds": run["wall_seconds"], "train_seconds": run.get("train_seconds"),
      "test_seconds": run.get("test_seconds"),
      "first_step_seconds": run.get("first_step_seconds"), "devices": run["devices"],
      "layout": run.get("layout"),
      "loop": run["loop"], "vectorize": run["vectorize"], "measured_on": measured_on,
  }
  if settings.reports_best:
    best = np.max(np.asarray(run["checkpoint_accuracies"]), axis=0).tolist()
    res["best_accuracies"] = best
    res["best_mean"], res["best_std"] = _mean_std(best)
    passes = run["checkpoint_passes"]
    res["best_selection"] = (
        f"max over test checkpoints after passes {passes}: selected on the test set"
        if measured_on == "test" else
        f"max over checkpoints after passes {passes}: selected on {measured_on}")
  return res


def record(results: dict[str, dict], settings: EvalSettings) -> dict:
  """The one record of an evaluation (module docstring): the first model of the pool at the
  top, every model's mean/std under `pool` when there are several."""
  first = results[settings.pool[0]]
  out = {"accuracies": first["accuracies"], "mean": first["mean"], "std": first["std"],
         "protocol": settings.protocol, "model": first["model"],
         "num_nets": first["num_nets"], "accuracy_unit": "percent",
         "selection": first["selection"], "measured_on": first["measured_on"],
         "wall_s": float(sum(r["wall_seconds"] for r in results.values()))}
  out.update({k: first[k] for k in _BEST if k in first})
  if len(results) > 1:
    out["pool"] = {k: {"mean": v["mean"], "std": v["std"],
                       **{b: v[b] for b in ("best_mean", "best_std") if b in v}}
                   for k, v in results.items()}
  return out


def summary_line(res: dict, source: str = "") -> str:
  where = res.get("measured_on", "test")
  s = (f"{res['protocol']} {res['model']} x{res['num_nets']}"
       f"{' on ' + source if source else ''}: {res['mean']:.2f} ± {res['std']:.2f} % (last)")
  if "best_mean" in res:
    s += f", best {res['best_mean']:.2f} ± {res['best_std']:.2f} % (selected on {where}"
    s += " set)" if where == "test" else ")"
  if where != "test":
    s += f" [measured on {where}]"
  return s + f" [{res.get('wall_seconds', res.get('wall_s', 0.0)):.0f} s]"


def pool_table(results: dict[str, dict]) -> str:
  """Markdown table of a cross-architecture run."""
  where = next(iter(results.values())).get("measured_on", "test")
  rows = [f"| model | protocol | nets | last acc (%) | best acc (%, selected on {where}) "
          "| wall (s) |", "|---|---|---|---|---|---|"]
  for name, r in results.items():
    best = f"{r['best_mean']:.2f} ± {r['best_std']:.2f}" if "best_mean" in r else "–"
    rows.append(f"| {name} | {r['protocol']} | {r['num_nets']} | {r['mean']:.2f} ± "
                f"{r['std']:.2f} | {best} | {r['wall_seconds']:.0f} |")
  return "\n".join(rows) + "\n"


def versions() -> dict:
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "numpy": np.__version__, "jaxcond": jaxcond.__version__,
          "python": sys.version.split()[0], "backend": jax.default_backend()}


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating,)):
    return float(obj)
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if obj is None or isinstance(obj, (str, int, float, bool)):
    return obj
  return str(obj)


def write_results(workdir, record: dict) -> str:
  """WORKDIR/results.json, atomically, through `jaxcond.files` (local or bucket paths)."""
  files.makedirs(workdir)
  return files.write_json(files.join(workdir, "results.json"), _jsonable(record))
